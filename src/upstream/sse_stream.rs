//! An incremental `text/event-stream` parser, shared by both HTTP transports.
//!
//! Backends answer over server-sent events in the legacy HTTP+SSE transport and, optionally,
//! in streamable HTTP. Bytes arrive in arbitrary chunks, so the parser keeps the unfinished
//! line between pushes and follows the WHATWG event-stream interpretation rules: any line
//! ending (`\n`, `\r\n`, `\r`, including a CRLF split across chunks), comments, fields
//! without a value, a leading BOM, and no dispatch for events without data or for a final
//! event that is not terminated by a blank line.
//!
//! It also holds the HTTP plumbing both transports share: responses from either client,
//! header maps that keep configured values out of logs, error details, status errors with a
//! body excerpt, and the rule that a body is one JSON-RPC message or a batch of them.

use std::collections::VecDeque;
use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use reqwest::Url;
use serde_json::Value;

use super::transport::TransportError;
use crate::spec::HttpSpec;

/// The most a single unfinished line plus the pending event data may hold. A backend that
/// streams more than this without an event boundary is misbehaving; the stream is ended
/// rather than letting memory grow without bound.
pub const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;

/// One dispatched server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` when absent or empty (the default type, `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id in force when this event was dispatched (ids persist across events
    /// as in the browser's `lastEventId`); `None` when never set or reset to empty.
    pub id: Option<String>,
    /// The `retry:` value given within this event's block, in milliseconds.
    pub retry: Option<u64>,
}

/// Longest body excerpt put into a [`TransportError::Status`], in characters.
const EXCERPT_CHARS: usize = 200;

/// Turns a byte stream into [`SseEvent`]s, one chunk at a time.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one belongs to it.
    pending_cr: bool,
    /// A line has been completed, so a BOM can no longer lead the stream.
    past_start: bool,
    data: String,
    /// Whether any `data` field was seen in the current block (data may be empty).
    has_data: bool,
    event: String,
    last_id: String,
    retry: Option<u64>,
    block_retry: Option<u64>,
}

/// Why an event stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum SseStreamError {
    #[error("reading the event stream failed: {0}")]
    Body(#[source] BodyError),
    #[error("an event exceeded {MAX_EVENT_BYTES} bytes")]
    TooLarge,
}

/// An HTTP response from either client: reqwest, or the bare hyper client that the
/// streamable-HTTP transport uses for its POSTs where it can (see `upstream::http`).
#[derive(Debug)]
pub enum Answer {
    Reqwest(reqwest::Response),
    Direct(http::Response<Incoming>),
}

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP response body read as server-sent events.
#[derive(Debug)]
pub struct EventStream {
    response: Answer,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
}

// === impl SseEvent ===

impl SseEvent {
    /// An event carrying a JSON-RPC message: the default type or `message`.
    pub fn is_message(&self) -> bool {
        matches!(self.event.as_deref(), None | Some("message"))
    }
}

// === impl SseParser ===

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        self.push_into(chunk, &mut out);
        out
    }

    /// Feed one chunk, appending completed events to `out`.
    pub fn push_into<E: Extend<SseEvent>>(&mut self, mut chunk: &[u8], out: &mut E) {
        if self.pending_cr && !chunk.is_empty() {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, rest) = chunk.split_at(pos);
            let ended_by_cr = rest[0] == b'\r';
            chunk = &rest[1..];
            if self.line.is_empty() {
                self.process_line(line, out);
            } else {
                let mut buffered = std::mem::take(&mut self.line);
                buffered.extend_from_slice(line);
                self.process_line(&buffered, out);
                buffered.clear();
                self.line = buffered;
            }
            if ended_by_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
        }
        self.line.extend_from_slice(chunk);
    }

    /// The last event id buffer: what a reconnect sends as `Last-Event-ID`. It is updated by
    /// `id:` fields even in blocks that dispatch no event.
    pub fn last_event_id(&self) -> Option<&str> {
        (!self.last_id.is_empty()).then_some(self.last_id.as_str())
    }

    /// The latest valid `retry:` value seen anywhere in the stream, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Bytes held for the unfinished line and event.
    pub fn buffered_len(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    fn process_line<E: Extend<SseEvent>>(&mut self, mut line: &[u8], out: &mut E) {
        if !std::mem::replace(&mut self.past_start, true) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &line[line.len()..]),
        };
        // Line endings never occur inside a UTF-8 sequence, so decoding per line is exact.
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.has_data = true;
                self.data.push_str(&value);
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&value);
            }
            b"id" if !value.contains('\0') => {
                self.last_id.clear();
                self.last_id.push_str(&value);
            }
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                    self.block_retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch<E: Extend<SseEvent>>(&mut self, out: &mut E) {
        let retry = self.block_retry.take();
        if !std::mem::take(&mut self.has_data) {
            self.event.clear();
            return;
        }
        let event = (!self.event.is_empty()).then(|| std::mem::take(&mut self.event));
        out.extend(std::iter::once(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.last_event_id().map(str::to_owned),
            retry,
        }));
    }
}

// === impl Answer ===

impl Answer {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Reqwest(r) => r.status(),
            Self::Direct(r) => r.status(),
        }
    }

    pub fn headers(&self) -> &HeaderMap {
        match self {
            Self::Reqwest(r) => r.headers(),
            Self::Direct(r) => r.headers(),
        }
    }

    /// The next piece of the body; `None` once it has ended.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        match self {
            Self::Reqwest(r) => Ok(r.chunk().await?),
            Self::Direct(r) => loop {
                match r.body_mut().frame().await.transpose()? {
                    // Trailers carry nothing for us.
                    Some(frame) => match frame.into_data() {
                        Ok(data) => return Ok(Some(data)),
                        Err(_) => continue,
                    },
                    None => return Ok(None),
                }
            },
        }
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, BodyError> {
        match self {
            Self::Reqwest(r) => Ok(r.bytes().await?),
            Self::Direct(r) => Ok(r.into_body().collect().await?.to_bytes()),
        }
    }
}

impl From<reqwest::Response> for Answer {
    fn from(response: reqwest::Response) -> Self {
        Self::Reqwest(response)
    }
}

impl From<http::Response<Incoming>> for Answer {
    fn from(response: http::Response<Incoming>) -> Self {
        Self::Direct(response)
    }
}

// === impl EventStream ===

impl EventStream {
    pub fn new(response: impl Into<Answer>) -> Self {
        Self {
            response: response.into(),
            parser: SseParser::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next event; `Ok(None)` once the body has ended (an unterminated last event is
    /// dropped, as the event-stream rules require).
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, SseStreamError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            match self.response.chunk().await.map_err(SseStreamError::Body)? {
                Some(chunk) => {
                    self.parser.push_into(&chunk, &mut self.ready);
                    if self.parser.buffered_len() > MAX_EVENT_BYTES {
                        return Err(SseStreamError::TooLarge);
                    }
                }
                None => return Ok(None),
            }
        }
    }

    /// See [`SseParser::last_event_id`].
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }
}

// === HTTP helpers shared by both transports ===

/// Whether a response's media type is `text/event-stream`.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    let value = headers.get(http::header::CONTENT_TYPE);
    let value = value.and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

pub(crate) fn parse_url(url: &str) -> Result<Url, TransportError> {
    let parsed = Url::parse(url).map_err(|e| TransportError::Connect {
        url: url.to_owned(),
        detail: format!("invalid URL: {e}"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TransportError::Connect {
            url: url.to_owned(),
            detail: "the URL must be http or https".to_owned(),
        });
    }
    Ok(parsed)
}

/// The configured custom headers, with values marked sensitive so that they never show up
/// in debug output. Errors name the header, never its value.
pub(crate) fn header_map(spec: &HttpSpec) -> Result<HeaderMap, TransportError> {
    let mut headers = HeaderMap::with_capacity(spec.headers.len() + 4);
    for (name, value) in &spec.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| TransportError::Protocol(format!("invalid header name `{name}`")))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| TransportError::Protocol(format!("invalid value for header `{name}`")))?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    Ok(headers)
}

/// A reqwest error with its causes, without the URL (the caller reports that).
pub(crate) fn error_detail(e: &reqwest::Error) -> String {
    with_causes(kind(e.is_timeout(), e.is_connect()), e.source())
}

/// The same for the direct client: its error is what reqwest's would have as its source.
pub(crate) fn direct_error_detail(e: &hyper_util::client::legacy::Error) -> String {
    let mut timed_out = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        timed_out |= cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout);
        source = cause.source();
    }
    with_causes(kind(timed_out, e.is_connect()), Some(e))
}

/// A body that could not be read, with its causes.
pub(crate) fn body_error_detail(e: &BodyError) -> String {
    match e.downcast_ref::<reqwest::Error>() {
        Some(e) => error_detail(e),
        None => with_causes("request failed", Some(&**e)),
    }
}

fn kind(timed_out: bool, connect: bool) -> &'static str {
    match (timed_out, connect) {
        (true, _) => "timed out",
        (false, true) => "connection failed",
        (false, false) => "request failed",
    }
}

fn with_causes(kind: &str, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut detail = kind.to_owned();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

/// A non-2xx answer, with a short excerpt of its body.
pub(crate) async fn status_error(url: &str, response: impl Into<Answer>) -> TransportError {
    let mut response = response.into();
    let status = response.status().as_u16();
    let mut raw = Vec::new();
    let read = async {
        while raw.len() < EXCERPT_CHARS * 4 {
            match response.chunk().await {
                Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    // The excerpt is a courtesy: a body that does not come is not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    TransportError::Status {
        url: url.to_owned(),
        status,
        body: excerpt(&String::from_utf8_lossy(&raw)),
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.chars().nth(EXCERPT_CHARS).is_none() {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(EXCERPT_CHARS - 1).collect();
    kept.push('…');
    kept
}

/// The JSON-RPC messages in one body or event: an object, or each element of a batch.
/// Anything else is logged and skipped.
pub(crate) fn parse_messages(backend: &str, data: &str) -> Vec<Value> {
    if data.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(data) {
        Ok(Value::Array(batch)) => batch,
        Ok(msg @ Value::Object(_)) => vec![msg],
        Ok(_) => {
            tracing::warn!(backend, "backend sent JSON that is not a message; skipped");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(backend, error = %e, "backend sent invalid JSON; skipped");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: id.map(str::to_owned),
            retry: None,
        }
    }

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        chunks.iter().flat_map(|c| p.push(c)).collect()
    }

    /// Every way of cutting `input` into two chunks, and one byte at a time, must give the
    /// same events as the whole input at once.
    fn parse_all_splits(input: &[u8]) -> Vec<SseEvent> {
        let whole = parse_chunks(&[input]);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(parse_chunks(&[a, b]), whole, "split at {cut} of {input:?}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes), whole, "byte by byte {input:?}");
        whole
    }

    #[test]
    fn table() {
        let d = |data: &str| ev(None, data, None);
        #[rustfmt::skip]
        let cases: Vec<(&str, &[u8], Vec<SseEvent>)> = vec![
            ("lf", b"data: a\n\n", vec![d("a")]),
            ("crlf", b"data: a\r\n\r\n", vec![d("a")]),
            ("cr", b"data: a\r\r", vec![d("a")]),
            ("mixed endings", b"data: a\r\ndata: b\rdata: c\n\r\n", vec![d("a\nb\nc")]),
            ("multi-line data", b"data: {\ndata: }\n\n", vec![d("{\n}")]),
            ("comments", b": keep-alive\ndata: x\n:another\n\n", vec![d("x")]),
            ("no space after colon", b"data:x\n\n", vec![d("x")]),
            ("one space stripped", b"data:  x\n\n", vec![d(" x")]),
            ("field without value", b"data\n\n", vec![d("")]),
            ("empty data, then text", b"data\ndata: x\n\n", vec![d("\nx")]),
            ("bom", b"\xEF\xBB\xBFdata: a\n\n", vec![d("a")]),
            ("only one bom stripped", b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n", vec![]),
            ("no data, no dispatch", b"event: x\nid: 1\n\n", vec![]),
            ("type reset when not dispatched", b"event: x\n\ndata: y\n\n", vec![d("y")]),
            ("unterminated last event", b"data: a\n\ndata: b\n", vec![d("a")]),
            ("unknown field", b"foo: bar\ndata: a\n\n", vec![d("a")]),
            ("id with NUL ignored", b"id: a\0b\ndata: x\n\n", vec![d("x")]),
            ("utf-8", "data: héllo ✓\n\n".as_bytes(), vec![d("héllo ✓")]),
            ("invalid utf-8", b"data: \xFF\n\n", vec![d("\u{FFFD}")]),
            ("blank lines only", b"\n\n\r\n\r", vec![]),
            ("named", b"event: endpoint\ndata: /m\n\n", vec![ev(Some("endpoint"), "/m", None)]),
            ("id", b"id: 7\ndata: a\n\n", vec![ev(None, "a", Some("7"))]),
            ("id persists", b"id: 1\n\ndata: a\n\n", vec![ev(None, "a", Some("1"))]),
            ("id reset", b"id: 1\ndata: a\n\nid\ndata: b\n\n", vec![ev(None, "a", Some("1")), d("b")]),
        ];
        for (name, input, want) in cases {
            assert_eq!(parse_all_splits(input), want, "{name}");
        }
    }

    #[test]
    fn retry_field() {
        let mut p = SseParser::new();
        let evs = p.push(b"retry: 1500\ndata: a\n\nretry: x1\ndata: b\n\nretry: 9\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].retry, Some(1500));
        assert_eq!(evs[1].retry, None);
        assert_eq!(p.retry(), Some(9));
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        // `\r` then `\n` in the next chunk must not yield an extra blank line (which would
        // dispatch the event too early and split it in two).
        let evs = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(evs, vec![ev(None, "a\nb", None)]);
        // A lone `\r` at the end of a chunk, followed by an empty chunk, is still pending.
        let evs = parse_chunks(&[b"data: a\r", b"", b"\n\n"]);
        assert_eq!(evs, vec![ev(None, "a", None)]);
    }

    #[test]
    fn default_is_new_and_strips_a_bom() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"\xEF\xBB\xBFdata: a\n\n")[0].data, "a");
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let bytes = "data: ✓✓\n\n".as_bytes();
        let evs = parse_chunks(&[&bytes[..7], &bytes[7..9], &bytes[9..]]);
        assert_eq!(evs, vec![ev(None, "✓✓", None)]);
    }

    #[test]
    fn last_event_id_tracks_undispatched_blocks() {
        let mut p = SseParser::new();
        assert_eq!(p.last_event_id(), None);
        assert!(p.push(b"id: prime\ndata\n\n")[0].data.is_empty());
        assert_eq!(p.last_event_id(), Some("prime"));
        assert!(p.push(b"id: 2\n\n").is_empty());
        assert_eq!(p.last_event_id(), Some("2"));
    }

    #[test]
    fn buffered_len_counts_the_unfinished_event() {
        let mut p = SseParser::new();
        p.push(b"data: 12345\ndata: 678");
        assert_eq!(p.buffered_len(), "12345".len() + "data: 678".len());
        p.push(b"\n\n");
        assert_eq!(p.buffered_len(), 0);
    }

    #[test]
    fn excerpts_are_short_and_cut_on_char_boundaries() {
        assert_eq!(excerpt("  short \n"), "short");
        assert_eq!(
            excerpt(&"x".repeat(EXCERPT_CHARS)),
            "x".repeat(EXCERPT_CHARS)
        );
        let long = "é".repeat(300);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn parses_objects_batches_and_skips_junk() {
        assert_eq!(parse_messages("b", r#"{"a":1}"#).len(), 1);
        assert_eq!(parse_messages("b", r#"[{"a":1},{"b":2}]"#).len(), 2);
        assert!(parse_messages("b", "not json").is_empty());
        assert!(parse_messages("b", "42").is_empty());
        assert!(parse_messages("b", "  ").is_empty());
    }

    #[test]
    fn header_errors_never_show_values() {
        let spec = HttpSpec {
            url: "http://x".into(),
            headers: [("Authorization".to_owned(), "secret\nvalue".to_owned())].into(),
        };
        let err = header_map(&spec)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("Authorization") && !err.contains("secret"),
            "{err}"
        );
    }
}
