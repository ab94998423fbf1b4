//! Distributed tracing: a SERVER span per client request, a CLIENT span per call to a backend,
//! exported over OTLP/HTTP when configured, and W3C trace context carried through.
//!
//! Spans follow the OpenTelemetry semantic conventions for MCP: named `{mcp.method.name}
//! {target}` (`tools/call github__search`), with `mcp.method.name`, `mcp.session.id`,
//! `jsonrpc.request.id`, `gen_ai.tool.name`, `network.transport` and, on failure,
//! `error.type`. Gateway-specific facts carry the `mcp_gateway.` prefix.
//!
//! The context a request came with (see `context`) is its span's parent.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;
use super::context::TraceContext;
use super::labels::Outcome;

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
