//! Keeping credentials out of everything the gateway shows: responses, logs, metrics, status.
//!
//! Two kinds of secret reach the gateway's text. URLs carry them in their userinfo
//! (`http://alice:PASSWORD@…`) and query (`?api_key=TOKEN`): every URL the gateway prints goes
//! through [`url`], and free text (errors of HTTP libraries, backend output) through [`text`],
//! which finds URLs inside it. Configured values — a backend's `env` and `headers` values and
//! its URL's credentials — are registered when the backend is applied ([`register`]) and
//! replaced by `***` wherever [`text`] sees them, so backend output that echoes one (`connecting
//! with token=…`) is scrubbed before it is logged, reported as `lastError`, or sent to a client.
//! The log writers run every line through [`text`] as well (see [`Writer`]), as a last net.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io;
use std::sync::{Arc, Mutex, RwLock};

use aho_corasick::AhoCorasick;

use crate::spec::{BackendSpec, HttpSpec, ProcessSpec, TransportSpec};
use crate::sync::lock;

/// What a redacted part reads as.
pub const MASK: &str = "***";
/// Values shorter than this are not scrubbed from free text: they cannot be told apart from
/// ordinary words and numbers (`1`, `dev`), and no credential is that short.
const MIN_SECRET_CHARS: usize = 4;

/// Whether a configured value is worth masking: not too short, and not a number or a switch
/// (`PORT: 3000`, `DEBUG: true`), which are settings, and masking them would garble every
/// line that mentions a port or a flag.
fn maskable(value: &str) -> bool {
    value.chars().count() >= MIN_SECRET_CHARS
        && !value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !["true", "false", "yes", "no", "on", "off"]
            .iter()
            .any(|w| value.eq_ignore_ascii_case(w))
}
/// Longest error text kept in a status (`lastError`, conditions, JSON-RPC error messages).
pub const MAX_ERROR_CHARS: usize = 1000;

/// Every registered secret value, and the matcher built from them.
struct Registry {
    values: BTreeSet<String>,
    matcher: Option<Arc<AhoCorasick>>,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    values: BTreeSet::new(),
    matcher: None,
});
/// Serialises rebuilds, so two registrations never race to install an older matcher.
static REBUILD: Mutex<()> = Mutex::new(());

/// Remember the secret values in `spec` (env and header values, URL credentials and query
/// values), so [`text`] scrubs them from now on.
pub fn register(spec: &BackendSpec) {
    let mut found = Vec::new();
    match &spec.transport {
        TransportSpec::Stdio(p) => process_secrets(p, &mut found),
        TransportSpec::Sse { http, launch } => {
            http_secrets(http, &mut found);
            if let Some(p) = launch {
                process_secrets(p, &mut found);
            }
        }
        TransportSpec::StreamableHttp(http) => http_secrets(http, &mut found),
    }
    register_values(found);
}

/// Remember these values as secrets.
pub fn register_values(values: impl IntoIterator<Item = String>) {
    let _rebuilding = lock(&REBUILD);
    let new: Vec<String> = {
        let registry = REGISTRY
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        values
            .into_iter()
            .filter(|v| maskable(v) && !registry.values.contains(v))
            .collect()
    };
    if new.is_empty() {
        return;
    }
    let mut all: Vec<String> = {
        let registry = REGISTRY
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        registry.values.iter().cloned().collect()
    };
    all.extend(new.iter().cloned());
    // Longest first, so a value that contains another is masked whole.
    all.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let matcher = AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(&all)
        .ok()
        .map(Arc::new);
    let mut registry = REGISTRY
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    registry.values.extend(new);
    registry.matcher = matcher;
}

fn process_secrets(p: &ProcessSpec, out: &mut Vec<String>) {
    out.extend(p.env.values().cloned());
}

fn http_secrets(h: &HttpSpec, out: &mut Vec<String>) {
    for value in h.headers.values() {
        out.push(value.clone());
        // `Bearer TOKEN`, `Basic CREDENTIALS`: the credential alone may be echoed too.
        out.extend(value.split_whitespace().skip(1).map(str::to_owned));
    }
    if let Ok(u) = url::Url::parse(&h.url) {
        for part in [u.username(), u.password().unwrap_or_default()] {
            out.push(part.to_owned());
            if let Ok(decoded) = percent_decode(part) {
                out.push(decoded);
            }
        }
        out.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
    }
}

fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// `raw` with its userinfo, query values and fragment masked:
/// `http://alice:pw@h/p?api_key=t&x` → `http://***@h/p?api_key=***&***`.
pub fn url(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    push_url(raw, &mut out);
    out
}

fn push_url(raw: &str, out: &mut String) {
    let Some(scheme_end) = raw.find("://") else {
        out.push_str(raw);
        return;
    };
    let rest_at = scheme_end + 3;
    out.push_str(&raw[..rest_at]);
    let rest = &raw[rest_at..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let rest = &rest[authority_end..];
    let (before_fragment, fragment) = match rest.find('#') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    match before_fragment.find('?') {
        Some(q) => {
            out.push_str(&before_fragment[..=q]);
            for (i, pair) in before_fragment[q + 1..].split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.find('=') {
                    Some(eq) => {
                        out.push_str(&pair[..=eq]);
                        out.push_str(MASK);
                    }
                    None if pair.is_empty() => {}
                    None => out.push_str(MASK),
                }
            }
        }
        None => out.push_str(before_fragment),
    }
    if let Some(f) = fragment {
        out.push('#');
        if !f.is_empty() {
            out.push_str(MASK);
        }
    }
}

/// Where a URL inside free text ends.
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | ')' | ']' | '}' | '|' | '`' | '\\'
        )
}

fn scheme_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
}

/// `text` with every URL in it passed through [`url`] and every registered secret masked.
pub fn text(text: &str) -> Cow<'_, str> {
    let urls = urls_in(text);
    let matcher = REGISTRY
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .matcher
        .clone();
    match matcher {
        Some(m) if m.is_match(urls.as_ref()) => {
            let mut out = String::with_capacity(urls.len());
            m.replace_all_with(&urls, &mut out, |_, _, dst| {
                dst.push_str(MASK);
                true
            });
            Cow::Owned(out)
        }
        _ => urls,
    }
}

/// `text` with every URL in it redacted.
fn urls_in(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let sep = search + found;
        let mut start = sep;
        while start > copied && scheme_char(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = text[sep..].find(ends_url).map_or(text.len(), |i| sep + i);
        // Sentence punctuation after a URL is not part of it (`cannot reach URL: refused`).
        while end > sep + 3 && matches!(bytes[end - 1], b'.' | b',' | b':' | b';') {
            end -= 1;
        }
        if start == sep {
            // No scheme before `://`: not a URL.
            search = sep + 3;
            continue;
        }
        out.push_str(&text[copied..start]);
        push_url(&text[start..end], &mut out);
        copied = end;
        search = end.max(sep + 3);
        if search >= text.len() {
            break;
        }
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// `text` cut to `max` characters, marked with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if text.len() > i + 1 => {
            let mut kept = text[..i].to_owned();
            kept.push('…');
            kept
        }
        _ => text.to_owned(),
    }
}

/// An error text fit for a status or a response: redacted and cut.
pub fn error(text_in: &str) -> String {
    cut(&text(text_in), MAX_ERROR_CHARS)
}

/// A log writer that redacts each formatted event before it reaches `inner`.
#[derive(Clone)]
pub struct Writer<M>(pub M);

/// The writer [`Writer`] hands out for one event.
pub struct Redacting<W: io::Write>(W);

impl<'a, M> tracing_subscriber::fmt::MakeWriter<'a> for Writer<M>
where
    M: tracing_subscriber::fmt::MakeWriter<'a>,
{
    type Writer = Redacting<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Redacting(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Redacting(self.0.make_writer_for(meta))
    }
}

impl<W: io::Write> io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(s) => self.0.write_all(text(s).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_queries_and_fragments() {
        let cases = [
            (
                "http://alice:PASSWORD@h:1/mcp?api_key=TOKEN",
                "http://***@h:1/mcp?api_key=***",
            ),
            ("https://h/p?a=1&b&c=", "https://h/p?a=***&***&c=***"),
            ("https://tok@h/", "https://***@h/"),
            ("http://h/p#access_token=x", "http://h/p#***"),
            ("http://h:8/mcp", "http://h:8/mcp"),
            ("http://h/p?", "http://h/p?"),
            ("not a url", "not a url"),
        ];
        for (raw, want) in cases {
            assert_eq!(url(raw), want, "{raw}");
        }
    }

    #[test]
    fn urls_inside_text_are_found() {
        let cases = [
            (
                "cannot reach http://alice:PW@h/mcp?api_key=T: refused",
                "cannot reach http://***@h/mcp?api_key=***: refused",
            ),
            (
                "error sending request for url (https://u:p@h/x?t=1)",
                "error sending request for url (https://***@h/x?t=***)",
            ),
            (
                "a redis://:pw@h b ws://h/?k=v",
                "a redis://***@h b ws://h/?k=***",
            ),
            ("odd ://x and :// alone", "odd ://x and :// alone"),
            ("no urls", "no urls"),
            ("ends with http://", "ends with http://"),
        ];
        for (raw, want) in cases {
            assert_eq!(urls_in(raw), want, "{raw}");
        }
    }

    #[test]
    fn registered_values_are_masked_and_short_ones_left() {
        register_values(["Zq8-registered-secret".to_owned(), "abc".to_owned()]);
        assert_eq!(
            text("token=Zq8-registered-secret; abc stays"),
            "token=***; abc stays"
        );
        assert_eq!(
            error(&format!("{} Zq8-registered-secret", "x".repeat(2000)))
                .chars()
                .count(),
            MAX_ERROR_CHARS
        );
    }

    #[test]
    fn a_spec_registers_env_header_and_url_secrets() {
        let spec = BackendSpec {
            name: "b".into(),
            transport: TransportSpec::StreamableHttp(HttpSpec {
                url: "http://u5er:pa%40ss9@h/mcp?api_key=Qk3query".into(),
                headers: [("Authorization".to_owned(), "Bearer Hd7token".to_owned())].into(),
            }),
            prefix: "b".into(),
            tools: Default::default(),
            timeout: None,
            disabled: false,
            sessions: Default::default(),
        };
        register(&spec);
        let shown = text("pa@ss9 pa%40ss9 u5er Qk3query Hd7token Bearer Hd7token");
        for secret in ["pa@ss9", "pa%40ss9", "u5er", "Qk3query", "Hd7token"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn numbers_and_switches_are_settings_not_secrets() {
        for value in ["3000", "127.0.0.1", "true", "FALSE", "off", "abc"] {
            assert!(!maskable(value), "{value}");
        }
        for value in ["s3cr3t", "ghp_abc123", "1234abcd", "production"] {
            assert!(maskable(value), "{value}");
        }
    }

    #[test]
    fn cut_marks_what_it_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abcd", 4), "abcd");
        assert_eq!(cut("ééééé", 3), "éé…");
    }
}
