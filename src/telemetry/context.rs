//! W3C trace context at the gateway's edges: read from a client's `params._meta` or HTTP
//! headers, checked for shape, and written into the `params._meta` of every forwarded request
//! (and from there into HTTP backends' headers). The MCP conventions put it in `_meta` because
//! one HTTP request may carry many MCP messages and one message may take several requests.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::{Map, Value};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` passed on (the W3C limit is 32 members; this bounds the bytes).
const TRACESTATE_MAX: usize = 512;

/// A W3C trace context as received, checked for shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

// === impl TraceContext ===

impl TraceContext {
    /// From the `traceparent` / `tracestate` headers of an HTTP request.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self::checked(get(TRACEPARENT)?, get(TRACESTATE))
    }

    /// From `params._meta` of a JSON-RPC message.
    pub fn from_meta(msg: &Value) -> Option<Self> {
        let meta = msg.get("params")?.get("_meta")?;
        let get = |name: &str| meta.get(name).and_then(Value::as_str);
        Self::checked(get(TRACEPARENT)?, get(TRACESTATE))
    }

    fn checked(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        if !valid_traceparent(traceparent) {
            return None;
        }
        let tracestate = tracestate
            .filter(|s| !s.is_empty() && s.len() <= TRACESTATE_MAX)
            .filter(|s| s.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .map(str::to_owned);
        Some(Self {
            traceparent: traceparent.to_owned(),
            tracestate,
        })
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The id of the span this context names as parent (16 hex digits).
    pub fn span_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    pub(super) fn otel(&self) -> opentelemetry::Context {
        TraceContextPropagator::new().extract(self)
    }
}

impl Extractor for TraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(&self.traceparent),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, ids not all zero (version 00; later
/// versions may append fields after the flags).
fn valid_traceparent(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |p: &str| p.bytes().any(|b| b != b'0');
    let mut parts = s.split('-');
    let (Some(version), Some(trace), Some(span), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = version != "00" || parts.next().is_none();
    hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && nonzero(trace)
        && hex(span, 16)
        && nonzero(span)
        && hex(flags, 2)
        && rest_ok
        && s.bytes().all(|b| !b.is_ascii_uppercase())
}

/// Put the trace context for a forwarded request into its `params._meta`: the upstream
/// span's own when tracing, else the one that came in (if any), else nothing.
pub fn propagate(span: &Span, remote: Option<&TraceContext>, msg: &mut Value) {
    let cx = span.context();
    let fields = if cx.span().span_context().is_valid() {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        carrier
    } else if let Some(remote) = remote {
        let mut carrier = HashMap::from([(TRACEPARENT.to_owned(), remote.traceparent.clone())]);
        if let Some(state) = &remote.tracestate {
            carrier.insert(TRACESTATE.to_owned(), state.clone());
        }
        carrier
    } else {
        return;
    };
    let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut) else {
        return;
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if !fields.contains_key(TRACESTATE) {
        // A stale tracestate must not ride along with a new traceparent.
        meta.remove(TRACESTATE);
    }
    for (k, v) in fields {
        meta.insert(k, Value::from(v));
    }
}

/// The trace context headers for an HTTP request carrying `msg`: the ones in its `_meta`.
pub fn add_headers(msg: &Value, headers: &mut http::HeaderMap) {
    let Some(cx) = TraceContext::from_meta(msg) else {
        return;
    };
    if let Ok(v) = http::HeaderValue::from_str(&cx.traceparent) {
        headers.insert(TRACEPARENT, v);
    }
    match cx.tracestate.map(|s| http::HeaderValue::from_str(&s)) {
        Some(Ok(v)) => {
            headers.insert(TRACESTATE, v);
        }
        _ => {
            headers.remove(TRACESTATE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_shape_is_checked() {
        assert!(valid_traceparent(TP));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            assert!(!valid_traceparent(bad), "{bad:?}");
        }
        let cx = TraceContext::checked(TP, Some("a=1")).expect("valid");
        assert_eq!(cx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.span_id(), "00f067aa0ba902b7");
        assert_eq!(cx.tracestate.as_deref(), Some("a=1"));
        assert_eq!(
            TraceContext::checked(TP, Some("bad\u{7}state")).and_then(|c| c.tracestate),
            None
        );
    }

    #[test]
    fn context_is_read_from_meta_and_headers() {
        let msg = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
            "params":{"name":"x","_meta":{"traceparent":TP,"tracestate":"k=v"}}});
        let cx = TraceContext::from_meta(&msg).expect("in _meta");
        assert_eq!(cx.tracestate.as_deref(), Some("k=v"));
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static(TP));
        assert_eq!(
            TraceContext::from_headers(&headers).map(|c| c.traceparent),
            Some(TP.to_owned())
        );
        assert!(
            TraceContext::from_meta(&json!({"params":{"_meta":{"traceparent":"x"}}})).is_none()
        );
    }

    #[test]
    fn without_tracing_an_incoming_context_is_passed_on() {
        let remote = TraceContext::checked(TP, None).expect("valid");
        let mut msg = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
            "params":{"name":"x","_meta":{"progressToken":7,"tracestate":"stale=1"}}});
        propagate(&Span::none(), Some(&remote), &mut msg);
        assert_eq!(
            msg["params"]["_meta"],
            json!({"progressToken":7,"traceparent":TP}),
            "traceparent set, the stale tracestate dropped, the rest kept"
        );

        let mut untouched =
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}});
        propagate(&Span::none(), None, &mut untouched);
        assert_eq!(
            untouched["params"],
            json!({"name":"x"}),
            "no context, no _meta"
        );

        let mut headers = http::HeaderMap::new();
        add_headers(&msg, &mut headers);
        assert_eq!(
            headers.get("traceparent").map(|v| v.as_bytes()),
            Some(TP.as_bytes())
        );
        assert!(headers.get("tracestate").is_none());
    }
}
