//! The HTTP listener: streamable HTTP at `/mcp`, legacy SSE at `/sse` + `/messages`, and the
//! ops endpoints, on one axum router. Plus what the transports share: body parsing with the
//! gateway's error bodies, SSE response streams, the `Host` guard, idle-session expiry.

pub mod listener;
pub mod sse;
pub mod stdio;
pub mod streamable;

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde_json::Value;
use std::future::Future;
use tokio::sync::mpsc;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::jsonrpc;
use crate::relay::Gateway;
use crate::session::{Frontend, Outgoing};

/// Protocol versions that have JSON-RPC batches (2025-06-18 removed them).
const BATCH_VERSIONS: [&str; 2] = ["2024-11-05", "2025-03-26"];

/// Who may connect, by `Host` header (a guard against DNS rebinding when bound to loopback)
/// and by `Origin` header (a guard against web pages: the MCP transports require servers to
/// check it, and a cross-site `text/plain` POST needs no preflight).
#[derive(Clone)]
pub struct HostGuard {
    /// `None` accepts any host.
    allowed: Option<Arc<[String]>>,
    /// Bound to loopback: loopback origins are the gateway's own neighbours.
    loopback: bool,
    /// `Origin` values accepted besides loopback ones; `None` accepts any.
    origins: Option<Arc<[String]>>,
}

impl HostGuard {
    /// Bound to loopback: only loopback names plus `extra`. Bound elsewhere: any host, unless
    /// `extra` lists some. `"*"` in `extra` accepts any.
    pub fn new(bind: IpAddr, extra: &[String]) -> Self {
        let loopback = bind.is_loopback();
        let origins = Some(Arc::from([]));
        if extra.iter().any(|h| h == "*") || (!loopback && extra.is_empty()) {
            return Self {
                allowed: None,
                loopback,
                origins,
            };
        }
        let mut allowed: Vec<String> = extra.iter().map(|h| h.to_ascii_lowercase()).collect();
        if loopback {
            allowed.extend(["localhost", "127.0.0.1", "[::1]", "::1"].map(String::from));
        }
        Self {
            allowed: Some(allowed.into()),
            loopback,
            origins,
        }
    }

    /// Also accept these `Origin` values (`scheme://host[:port]`; `*` accepts any).
    pub fn with_origins(mut self, origins: &[String]) -> Self {
        self.origins = if origins.iter().any(|o| o == "*") {
            None
        } else {
            Some(
                origins
                    .iter()
                    .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            )
        };
        self
    }

    /// Whether a request with this `Origin` header may proceed: one without passes (it is not
    /// from a browser); `null` and unknown origins do not.
    fn allows_origin(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let Some(listed) = &self.origins else {
            return true;
        };
        let origin = origin.trim().to_ascii_lowercase();
        if listed.contains(&origin) {
            return true;
        }
        self.loopback && is_loopback_origin(&origin)
    }

    fn allows(&self, host: Option<&str>) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let Some(host) = host else { return false };
        let name = match host.rfind(':') {
            Some(i) if !host.ends_with(']') => &host[..i],
            _ => host,
        };
        let name = name.to_ascii_lowercase();
        allowed.iter().any(|a| *a == name || *a == host)
    }
}

/// `http(s)://localhost`, `127.x.y.z` or `[::1]`, with any port.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => return v6.split(']').next() == Some("::1"),
        None => rest.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The whole HTTP surface: the MCP transports and the admin API behind the guards, the probes
/// and the metrics reachable by pod IP.
pub fn router(gw: Arc<Gateway>, guard: HostGuard) -> Router {
    let limit = gw.settings.max_body_bytes;
    let guard = guard.with_origins(&gw.settings.allowed_origins);
    let guarded = Router::new()
        .route(
            "/mcp",
            post(streamable::post)
                .get(streamable::get)
                .delete(streamable::delete),
        )
        .route("/sse", get(sse::connect))
        .route("/messages", post(sse::message))
        .merge(crate::admin::api())
        .layer(middleware::from_fn_with_state(
            (guard.clone(), gw.clone()),
            check_request,
        ))
        .layer(DefaultBodyLimit::max(limit));
    Router::new()
        .merge(guarded)
        .merge(crate::admin::probes().layer(axum::Extension(guard)))
        .with_state(gw)
}

/// Host, then Origin, then for a POST the body's media type, size and deadline: the body is
/// read here, whole, within `gateway.bodyTimeout` and `gateway.maxBodyBytes`.
async fn check_request(
    State((guard, gw)): State<(HostGuard, Arc<Gateway>)>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = guard.check(req.headers()) {
        return *refusal;
    }
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    if !is_json(req.headers()) {
        return streamable::error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON: send Content-Type: application/json",
        );
    }
    let limit = gw.settings.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return streamable::error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over {limit} bytes (gateway.maxBodyBytes)"),
        );
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, limit);
    let bytes = match tokio::time::timeout(gw.settings.limits.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_over_limit(&e) => {
            return streamable::error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over {limit} bytes (gateway.maxBodyBytes)"),
            );
        }
        Ok(Err(_)) => {
            return streamable::error_response(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
        Err(_) => {
            return streamable::error_response(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time (gateway.bodyTimeout)",
            );
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

fn is_over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

impl HostGuard {
    /// Whether a request with these headers passes the Host and Origin checks; the 403 to
    /// answer when it does not.
    pub fn check(&self, headers: &axum::http::HeaderMap) -> Result<(), Box<Response>> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !self.allows(host) {
            return Err(Box::new(streamable::error_response(
                StatusCode::FORBIDDEN,
                &format!(
                    "Host {:?} is not allowed; add it to gateway.allowedHosts",
                    host.unwrap_or_default()
                ),
            )));
        }
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or("?"));
        if !self.allows_origin(origin) {
            return Err(Box::new(streamable::error_response(
                StatusCode::FORBIDDEN,
                &format!(
                    "Origin {:?} is not allowed; add it to gateway.allowedOrigins",
                    origin.unwrap_or_default()
                ),
            )));
        }
        Ok(())
    }
}

/// Parse a POST body as JSON, or answer 400 with a JSON-RPC parse error.
pub(crate) fn parse_body(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(json_response(
            StatusCode::BAD_REQUEST,
            jsonrpc::parse_error(e),
        ))
    })
}

pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    message_response(status, Outgoing::Value(body))
}

/// One message as an `application/json` body; a list answer is written as it is sent.
pub(crate) fn message_response(status: StatusCode, body: Outgoing) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match body {
        Outgoing::List(list) => {
            let pieces = ListPieces {
                at: Some(list.range.start),
                list,
            };
            (status, json, axum::body::Body::from_stream(pieces)).into_response()
        }
        other => (status, json, other.to_bytes()).into_response(),
    }
}

/// About this much of a list answer is written at a time: large enough for few writes,
/// small enough that 50,000 tools are never one buffer.
const LIST_PIECE: usize = 256 * 1024;

/// A list answer's body, piece by piece as the connection takes them.
struct ListPieces {
    list: Arc<crate::catalog::ListText>,
    /// Where the next piece starts; `None` once the answer is complete.
    at: Option<usize>,
}

impl Stream for ListPieces {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(at) = this.at else {
            return Poll::Ready(None);
        };
        let mut piece = Vec::with_capacity(16 * 1024);
        this.at = this.list.write_piece(at, &mut piece, LIST_PIECE);
        Poll::Ready(Some(Ok(Bytes::from(piece))))
    }
}

/// One message as a whole `text/event-stream` body of one `message` event: an answer that
/// was ready before the response began goes out in one write, headers and all.
pub(crate) fn one_event_response(msg: &Outgoing) -> Response {
    let mut body = b"event: message\ndata: ".to_vec();
    msg.write_to(&mut body);
    body.extend_from_slice(b"\n\n");
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A message as an SSE `message` event, ready to write. Serialized JSON has no line breaks,
/// so it is one `data` line; the message is written straight into the frame.
pub(crate) fn message_event(msg: &Outgoing) -> Bytes {
    let mut frame = Vec::with_capacity(256);
    frame.extend_from_slice(b"event: message\ndata: ");
    msg.write_to(&mut frame);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// An SSE event named `event` whose data is one line.
pub(crate) fn named_event(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// A stream with nothing to send for this long gets a comment, so that proxies and clients
/// that time out idle connections keep it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

type OnDrop = Box<dyn FnOnce(mpsc::Receiver<Outgoing>) + Send>;

/// A stream of JSON-RPC messages as SSE `message` events, optionally preceded by one event
/// and with an action when the client goes away (it is handed the receiver back).
pub(crate) struct Outbound {
    rx: Option<mpsc::Receiver<Outgoing>>,
    first: Option<Bytes>,
    on_drop: Option<OnDrop>,
    /// Ends the stream when the session is closed (DELETE, expiry, shutdown), once what was
    /// queued before is sent.
    until: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// The session whose own stream this is, told of each message handed on.
    session: Option<Arc<crate::session::Session>>,
    /// A request's stream: it ends with the response, without waiting for the sender to go.
    to_response: bool,
    /// Armed once the stream first waits; not reset by every event (that would cost a timer
    /// update per message): when it fires, a comment goes out only if nothing else did.
    keep_alive: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Something was sent since the keep-alive timer was last armed.
    sent: bool,
}

impl Outbound {
    pub(crate) fn new(rx: mpsc::Receiver<Outgoing>) -> Self {
        Self {
            rx: Some(rx),
            first: None,
            on_drop: None,
            until: None,
            session: None,
            to_response: false,
            keep_alive: None,
            sent: false,
        }
    }

    /// This is one request's stream: it ends once the response is handed on, so the end of
    /// the body goes out with the response rather than in a write of its own.
    pub(crate) fn until_response(mut self) -> Self {
        self.to_response = true;
        self
    }

    /// This is `session`'s own stream: it ends when the session closes.
    pub(crate) fn of(mut self, session: Arc<crate::session::Session>) -> Self {
        self.until = Some(Box::pin(session.closed.clone().cancelled_owned()));
        self.session = Some(session);
        self
    }

    pub(crate) fn first(mut self, event: Bytes) -> Self {
        self.first = Some(event);
        self
    }

    pub(crate) fn on_drop(
        mut self,
        f: impl FnOnce(mpsc::Receiver<Outgoing>) + Send + 'static,
    ) -> Self {
        self.on_drop = Some(Box::new(f));
        self
    }
}

impl Stream for Outbound {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        let closing = this
            .until
            .as_mut()
            .is_some_and(|until| until.as_mut().poll(cx).is_ready());
        let next = if closing {
            // Closed: hand on what was queued (answers of a drain), then end.
            Poll::Ready(rx.try_recv().ok())
        } else {
            rx.poll_recv(cx)
        };
        match next {
            Poll::Ready(Some(msg)) => {
                if let Some(s) = &this.session {
                    s.delivered(&msg);
                }
                if this.to_response && msg.is_response() {
                    // Dropping the receiver ends the stream at the next poll.
                    this.rx = None;
                }
                this.sent = true;
                Poll::Ready(Some(Ok(message_event(&msg))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => this.keep_alive(cx),
        }
    }
}

impl Outbound {
    /// Nothing to send now: a keep-alive comment if the timer fired on an idle stream.
    fn keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        let timer = self
            .keep_alive
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(KEEP_ALIVE)));
        while timer.as_mut().poll(cx).is_ready() {
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + KEEP_ALIVE);
            if !std::mem::take(&mut self.sent) {
                return Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE_COMMENT))));
            }
        }
        Poll::Pending
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if let (Some(rx), Some(f)) = (self.rx.take(), self.on_drop.take()) {
            f(rx);
        }
    }
}

/// An SSE response for `rx`; with `park`, the receiver goes back to that session when the
/// client disconnects, so a later GET can pick it up.
pub(crate) fn sse_body(
    rx: mpsc::Receiver<Outgoing>,
    park: Option<Arc<crate::session::Session>>,
) -> Response {
    let mut out = Outbound::new(rx);
    if let Some(s) = park {
        out = out.of(s.clone());
        out = out.on_drop(move |rx| s.return_outbound(rx));
    }
    sse_response(out)
}

/// A `text/event-stream` response carrying `out`.
pub(crate) fn sse_response(out: Outbound) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(out),
    )
        .into_response()
}

/// Close streamable-HTTP sessions nobody has used for `gateway.sessionIdleTimeout`: no
/// request, and no GET stream open.
pub async fn expire_idle_sessions(gw: Arc<Gateway>) {
    let idle = gw.settings.limits.session_idle;
    // Checked a few times per period, so a session lives at most a quarter longer.
    let mut tick = tokio::time::interval(
        (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(60)),
    );
    loop {
        tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for s in gw.sessions.all() {
            if s.frontend == Frontend::StreamableHttp && !s.streaming() && s.idle_for() > idle {
                tracing::debug!(session = %s.id, "closing idle session");
                gw.close(&s).await;
            }
        }
    }
}

/// Whether `batch` may be served on `session`: batches exist only on the protocol versions
/// that had them, are never empty, and are bounded (`gateway.maxBatch`). The error body when not.
pub(crate) fn check_batch(
    gw: &Gateway,
    session: &crate::session::Session,
    batch: &[Value],
) -> Result<(), Value> {
    let refuse = |why: String| {
        Err(jsonrpc::error(
            Value::Null,
            jsonrpc::INVALID_REQUEST,
            format!("invalid request: {why}"),
            None,
        ))
    };
    let max = gw.settings.limits.max_batch;
    if batch.is_empty() {
        return refuse("empty batch".into());
    }
    let version = session.state().protocol_version.clone();
    if !BATCH_VERSIONS.contains(&version.as_str()) {
        let negotiated = if version.is_empty() {
            "no protocol version yet (send initialize alone first)".to_owned()
        } else {
            format!("protocol version {version}")
        };
        return refuse(format!(
            "JSON-RPC batches are not part of {negotiated}; send one message per request"
        ));
    }
    if batch.len() > max {
        return refuse(format!(
            "a batch of {} messages is over the limit of {max} (gateway.maxBatch)",
            batch.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// An idle stream gets a comment every `KEEP_ALIVE`; a busy one none, and messages go out
    /// as whole `message` events.
    #[tokio::test(start_paused = true)]
    async fn streams_keep_alive_only_when_idle() {
        let (tx, rx) = mpsc::channel(4);
        let mut out = Outbound::new(rx).first(named_event("endpoint", "/messages?x=1"));
        let next = |out: &mut Outbound| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            Pin::new(out).poll_next(&mut cx)
        };
        assert_eq!(
            out.next().await.and_then(Result::ok).as_deref(),
            Some(&b"event: endpoint\ndata: /messages?x=1\n\n"[..])
        );
        assert!(next(&mut out).is_pending());
        tokio::time::advance(KEEP_ALIVE).await;
        assert_eq!(
            out.next().await.and_then(Result::ok).as_deref(),
            Some(KEEP_ALIVE_COMMENT)
        );
        // A message within the period: the timer's next firing sends nothing.
        tokio::time::advance(KEEP_ALIVE / 2).await;
        tx.send(Outgoing::Value(
            serde_json::json!({"jsonrpc": "2.0", "method": "m"}),
        ))
        .await
        .expect("open");
        assert_eq!(
            out.next().await.and_then(Result::ok).as_deref(),
            Some(&b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"m\"}\n\n"[..])
        );
        tokio::time::advance(KEEP_ALIVE / 2).await;
        assert!(
            next(&mut out).is_pending(),
            "a comment right after a message"
        );
        // Idle for a whole period since: a comment again.
        tokio::time::advance(KEEP_ALIVE).await;
        assert_eq!(
            out.next().await.and_then(Result::ok).as_deref(),
            Some(KEEP_ALIVE_COMMENT)
        );
        drop(tx);
        assert!(out.next().await.is_none());
    }

    #[test]
    fn host_guard() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let any: IpAddr = [0, 0, 0, 0].into();
        let g = HostGuard::new(lo, &[]);
        assert!(g.allows(Some("127.0.0.1:8900")));
        assert!(g.allows(Some("localhost")));
        assert!(g.allows(Some("[::1]:80")));
        assert!(!g.allows(Some("evil.example:8900")));
        assert!(!g.allows(None));
        let g = HostGuard::new(lo, &["gw.internal".into()]);
        assert!(g.allows(Some("gw.internal:8900")));
        assert!(HostGuard::new(any, &[]).allows(Some("anything")));
        let g = HostGuard::new(any, &["mcp-gateway.mcp.svc".into()]);
        assert!(g.allows(Some("mcp-gateway.mcp.svc:8900")));
        assert!(!g.allows(Some("other")));
        assert!(HostGuard::new(lo, &["*".into()]).allows(Some("x")));
    }

    #[test]
    fn origin_guard() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let any: IpAddr = [0, 0, 0, 0].into();
        let g = HostGuard::new(lo, &[]).with_origins(&["https://App.example".into()]);
        let cases = [
            (None, true),
            (Some("http://localhost:3000"), true),
            (Some("https://127.0.0.1"), true),
            (Some("http://127.8.9.1:1"), true),
            (Some("http://[::1]:6274"), true),
            (Some("https://app.example"), true),
            (Some("https://app.example/"), false),
            (Some("http://app.example"), false),
            (Some("http://evil.example"), false),
            (Some("http://localhost.evil.example"), false),
            (Some("null"), false),
            (Some("file://"), false),
        ];
        for (origin, want) in cases {
            assert_eq!(g.allows_origin(origin), want, "{origin:?}");
        }
        let wide = HostGuard::new(any, &[]).with_origins(&[]);
        assert!(
            !wide.allows_origin(Some("http://localhost:3000")),
            "loopback origins only on a loopback bind"
        );
        assert!(wide.allows_origin(None));
        let star = HostGuard::new(any, &[]).with_origins(&["*".into()]);
        assert!(star.allows_origin(Some("http://evil.example")));
    }
}
