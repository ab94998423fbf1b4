//! Distributed tracing: a SERVER span per client request, a CLIENT span per call to a backend,
//! exported over OTLP/HTTP when configured, and W3C trace context carried through.
//!
//! Spans follow the OpenTelemetry semantic conventions for MCP: named `{mcp.method.name}
//! {target}` (`tools/call github__search`), with `mcp.method.name`, `mcp.session.id`,
//! `jsonrpc.request.id`, `gen_ai.tool.name`, `network.transport` and, on failure,
//! `error.type`. Gateway-specific facts carry the `mcp_gateway.` prefix.
//!
//! Context comes in from a client's `params._meta.traceparent` (preferred, as the MCP
//! conventions ask) or the HTTP request's `traceparent` header, and goes out to every backend
//! in `params._meta` (and, for HTTP backends, as headers), so a backend that traces joins the
//! same trace. With tracing off, a context that came in is passed on unchanged.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;
use super::labels::Outcome;

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

/// What a request or upstream call is about, for span names and attributes.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    Resource(&'a str),
    None,
}

/// Where a span's peer is: `network.transport` and `network.protocol.name`.
#[derive(Clone, Copy, Debug)]
pub enum Wire {
    Pipe,
    Http,
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

    fn otel(&self) -> opentelemetry::Context {
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

// === spans ===

/// `{method} {target}` without formatting unless a span is actually built.
struct SpanName<'a>(&'a str, Option<&'a str>);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(target) => write!(f, "{} {target}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// A JSON-RPC id as `jsonrpc.request.id` wants it: strings bare, numbers as written.
struct IdText<'a>(&'a Value);

impl std::fmt::Display for IdText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Value::String(s) => f.write_str(s),
            other => write!(f, "{other}"),
        }
    }
}

impl Wire {
    fn transport(self) -> &'static str {
        match self {
            Self::Pipe => "pipe",
            Self::Http => "tcp",
        }
    }

    fn protocol(self) -> Option<&'static str> {
        match self {
            Self::Pipe => None,
            Self::Http => Some("http"),
        }
    }
}

/// What the span of a client request is made from.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub subject: Subject<'a>,
    /// Whether the subject is a name in the catalog (bounded, so it may go into the span
    /// name; a name a client made up stays in the attributes only).
    pub named: bool,
    pub id: &'a Value,
    pub session: &'a str,
    /// The frontend transport (`streamable-http`, `sse`, `stdio`).
    pub frontend: &'static str,
    pub wire: Wire,
}

/// The span of one client request; `remote` becomes its parent.
pub fn server_span(req: &Incoming<'_>, remote: Option<&TraceContext>) -> Span {
    let Incoming {
        method,
        subject,
        named,
        id: request_id,
        session: session_id,
        frontend,
        wire,
    } = *req;
    let target = match subject {
        Subject::Tool(n) | Subject::Prompt(n) if named => Some(n),
        _ => None,
    };
    let span = tracing::debug_span!(
        target: "mcp_gateway::request",
        "request",
        otel.name = %SpanName(method, target),
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        mcp.method.name = method,
        mcp.session.id = session_id,
        jsonrpc.request.id = %IdText(request_id),
        gen_ai.operation.name = Empty,
        gen_ai.tool.name = Empty,
        gen_ai.prompt.name = Empty,
        mcp.resource.uri = Empty,
        network.transport = wire.transport(),
        network.protocol.name = wire.protocol(),
        error.type = Empty,
        rpc.response.status_code = Empty,
        mcp_gateway.session.transport = frontend,
        mcp_gateway.backend = Empty,
        mcp_gateway.outcome = Empty,
    );
    record_subject(&span, subject);
    if let Some(remote) = remote {
        // Fails only when the span is disabled (tracing off): nothing to parent then.
        let _ = span.set_parent(remote.otel());
    }
    span
}

/// The span of one call to a backend, a child of the current (request) span.
pub fn client_span(
    method: &str,
    subject: Subject<'_>,
    upstream_id: u64,
    backend: &str,
    backend_transport: &'static str,
) -> Span {
    let target = match subject {
        Subject::Tool(n) | Subject::Prompt(n) => Some(n),
        Subject::Resource(_) | Subject::None => None,
    };
    let wire = if backend_transport == "stdio" {
        Wire::Pipe
    } else {
        Wire::Http
    };
    let span = tracing::debug_span!(
        target: "mcp_gateway::upstream",
        "upstream",
        otel.name = %SpanName(method, target),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        mcp.method.name = method,
        jsonrpc.request.id = upstream_id,
        gen_ai.operation.name = Empty,
        gen_ai.tool.name = Empty,
        gen_ai.prompt.name = Empty,
        mcp.resource.uri = Empty,
        network.transport = wire.transport(),
        network.protocol.name = wire.protocol(),
        error.type = Empty,
        rpc.response.status_code = Empty,
        mcp_gateway.backend = backend,
        mcp_gateway.backend.transport = backend_transport,
    );
    record_subject(&span, subject);
    span
}

fn record_subject(span: &Span, subject: Subject<'_>) {
    match subject {
        Subject::Tool(name) => {
            span.record("gen_ai.tool.name", name);
            span.record("gen_ai.operation.name", "execute_tool");
        }
        Subject::Prompt(name) => {
            span.record("gen_ai.prompt.name", name);
        }
        Subject::Resource(uri) => {
            span.record("mcp.resource.uri", uri);
        }
        Subject::None => {}
    }
}

/// Record how a request or call ended: `error.type`, the JSON-RPC error code and the span
/// status, following the conventions (`tool_error` for a result with `isError`).
pub fn record_outcome(span: &Span, outcome: Outcome, response: Option<&Value>) {
    if span.is_disabled() {
        return;
    }
    span.record("mcp_gateway.outcome", outcome.as_str());
    let error = response.and_then(|r| r.get("error"));
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_i64);
    if let Some(code) = code {
        span.record("rpc.response.status_code", code.to_string());
    }
    let error_type = match outcome {
        Outcome::Ok | Outcome::Cancelled => return,
        Outcome::ToolError => "tool_error".to_owned(),
        Outcome::Timeout => "timeout".to_owned(),
        Outcome::Error | Outcome::BackendDown => {
            code.map_or_else(|| outcome.as_str().to_owned(), |c| c.to_string())
        }
    };
    span.record("error.type", error_type);
    span.record("otel.status_code", "error");
    if let Some(message) = error.and_then(|e| e.get("message")).and_then(Value::as_str) {
        span.record("otel.status_description", message);
    }
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

// === export ===

/// Where spans go, when tracing is on: the provider to flush at exit.
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// Where spans go, as configured.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    /// A full traces URL from `--otlp-endpoint`.
    Flag(String),
    /// The exporter reads `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` itself.
    Environment,
}

/// Whether tracing is configured: the `--otlp-endpoint` flag (a base URL, like
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) or the standard variables, unless `OTEL_SDK_DISABLED=true`
/// or `OTEL_TRACES_EXPORTER=none`.
fn endpoint(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Option<Endpoint> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    if let Some(base) = flag.filter(|f| !f.trim().is_empty()) {
        let url = format!("{}/v1/traces", base.trim_end_matches('/'));
        return Some(Endpoint::Flag(url));
    }
    let from_env = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    from_env.then_some(Endpoint::Environment)
}

// === impl Tracing ===

impl Tracing {
    /// Start the exporter if tracing is configured. Call before any async runtime starts: the
    /// exporter's HTTP client and batch worker run on threads of their own.
    pub fn start(flag: Option<&str>) -> Result<Option<Self>, TelemetryError> {
        let Some(endpoint) = endpoint(flag, &|k| std::env::var(k).ok()) else {
            return Ok(None);
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
        if let Endpoint::Flag(url) = endpoint {
            use opentelemetry_otlp::WithExportConfig;
            builder = builder.with_endpoint(url);
        }
        let exporter = builder
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        // The SDK reads OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG)
        // and OTEL_BSP_*; the service is "mcp-gateway" unless they name it.
        let named = opentelemetry_sdk::Resource::builder()
            .build()
            .get(&opentelemetry::Key::new("service.name"))
            .is_some_and(|n| !n.as_str().starts_with("unknown_service"));
        let mut resource = opentelemetry_sdk::Resource::builder();
        if !named {
            resource = resource.with_service_name("mcp-gateway");
        }
        let resource = resource
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Some(Self { provider }))
    }

    /// The subscriber layer that turns the gateway's request and upstream spans into
    /// OpenTelemetry spans. Log events are not exported, except warnings and errors, which
    /// become events on the span they happen in.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.provider.tracer("mcp-gateway");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                if meta.is_span() {
                    meta.target().starts_with("mcp_gateway")
                } else {
                    *meta.level() <= tracing::Level::WARN
                }
            }))
    }

    /// Export what is still buffered and stop. Called once at exit, after the runtime ended.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("mcp-gateway: traces not all exported at exit: {e}");
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

    #[test]
    fn tracing_is_off_unless_configured() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(endpoint(None, &env(&[])), None);
        assert_eq!(
            endpoint(
                None,
                &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])
            ),
            Some(Endpoint::Environment),
            "the exporter reads the variables itself"
        );
        assert_eq!(
            endpoint(Some("http://c:4318/"), &env(&[])),
            Some(Endpoint::Flag("http://c:4318/v1/traces".to_owned()))
        );
        assert_eq!(
            endpoint(
                Some("http://c:4318"),
                &env(&[("OTEL_SDK_DISABLED", "true")])
            ),
            None
        );
        assert_eq!(
            endpoint(
                None,
                &env(&[
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "http://c:4318/v1/traces"
                    ),
                    ("OTEL_TRACES_EXPORTER", "none")
                ])
            ),
            None
        );
    }
}
