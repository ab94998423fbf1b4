//! What an operator sees of the gateway: metrics, traces and logs.
//!
//! - `metrics`: the Prometheus series behind `GET /metrics`; `labels` keeps their label
//!   values bounded and `exposition` writes them as OpenMetrics or classic Prometheus text.
//! - `trace`: OpenTelemetry spans for client requests and upstream calls, exported over
//!   OTLP/HTTP when configured; `context` carries W3C trace context from clients to backends.
//! - `request`: one client request as both of those see it.
//! - `logs`: the `tracing` subscriber: human or JSON lines on stderr, optional rotated files.
//! - `table`: the start-up summary of listeners and backends.
//! - `console`: stderr as a person sees it: that table (live while backends start, on a
//!   terminal) and the log lines around it.

pub mod console;
pub mod context;
pub mod exposition;
pub mod labels;
pub mod logs;
pub mod metrics;
pub mod request;
pub mod rotate;
pub mod table;
pub mod trace;

pub use context::TraceContext;
pub use labels::Outcome;
pub use metrics::Metrics;
pub use request::Observed;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log level or filter {filter:?}: {detail}")]
    Filter { filter: String, detail: String },
    #[error("cannot write logs to {dir}: {source}")]
    LogDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the OTLP trace exporter: {0}")]
    Exporter(String),
    #[error("a logger is already installed")]
    AlreadyInstalled,
}
