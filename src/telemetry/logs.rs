//! The `tracing` subscriber: what goes to stderr, to log files, and to the trace exporter.
//!
//! Which events are logged: `--log-level` (or `MCP_GATEWAY_LOG`) when given, else `RUST_LOG`,
//! else `info`. A plain level also quiets the HTTP and telemetry libraries to warnings, so that
//! `--log-level trace` shows the gateway's own detail, not every socket read; a filter
//! (`mcp_gateway=debug,hyper=trace`) is taken as written.

use std::path::PathBuf;
use std::sync::Arc;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::TelemetryError;
use super::console::{Console, Stderr};
use super::rotate::RotatingFile;
use super::trace::Tracing;

/// Libraries whose debug output is about sockets and exporters rather than the gateway. kube's
/// client logs every failed request as an error of its own, without saying what it was for;
/// the gateway logs each failure with that (`cannot reach the Kubernetes API at …`, `McpBackend
/// watch interrupted`), so kube's line would only say the same thing twice.
const QUIET: &str = "hyper=warn,reqwest=warn,h2=warn,rustls=warn,tower=warn,opentelemetry=warn,\
                     kube_client::client::builder=off";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// `--log-level`: a level or a filter; `None` defers to `RUST_LOG`, then `info`.
    pub level: Option<String>,
    pub format: LogFormat,
    /// Also write log files here.
    pub dir: Option<PathBuf>,
    pub max_files: usize,
    pub max_file_bytes: u64,
}

/// The installed logger. Dropping it flushes the log file.
pub struct Logging {
    pub format: LogFormat,
    /// Whether stderr is a terminal that gets colour (and `NO_COLOR` is not set).
    pub colour: bool,
    /// stderr, where the start-up table and its live view go.
    pub console: Arc<Console>,
    _file: Option<WorkerGuard>,
}

/// The filter directives for `level` (the flag) and `rust_log` (the variable).
pub fn directives(level: Option<&str>, rust_log: Option<&str>) -> String {
    let chosen = level
        .filter(|l| !l.trim().is_empty())
        .or(rust_log.filter(|l| !l.trim().is_empty()))
        .unwrap_or("info")
        .trim();
    match chosen {
        "error" | "warn" | "info" | "debug" | "trace" => format!("{chosen},{QUIET}"),
        custom => custom.to_owned(),
    }
}

fn filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(directives).map_err(|e| TelemetryError::Filter {
        filter: directives.to_owned(),
        detail: e.to_string(),
    })
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

fn fmt_layer<W>(format: LogFormat, writer: W, ansi: bool, filter: EnvFilter) -> Boxed
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(crate::redact::Writer(writer))
        .with_ansi(ansi);
    match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).with_filter(filter).boxed(),
    }
}

/// Install the global subscriber: stderr, the optional log files, and the trace exporter.
pub fn init(opts: &LogOptions, tracing: Option<&Tracing>) -> Result<Logging, TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = directives(opts.level.as_deref(), rust_log.as_deref());
    let stderr_filter = filter(&directives)?;
    let console = Arc::new(Console::stderr(opts.format));
    let colour = console.colour();
    let mut layers: Vec<Boxed> = Vec::new();
    let mut guard = None;
    if let Some(dir) = &opts.dir {
        let level = stderr_filter
            .max_level_hint()
            .map_or_else(|| "info".to_owned(), |l| l.to_string().to_ascii_lowercase());
        let file = RotatingFile::open(dir, &level, opts.max_file_bytes, opts.max_files).map_err(
            |source| TelemetryError::LogDir {
                dir: dir.clone(),
                source,
            },
        )?;
        let (writer, g) = tracing_appender::non_blocking(file);
        guard = Some(g);
        layers.push(fmt_layer(opts.format, writer, false, filter(&directives)?));
    }
    layers.push(fmt_layer(
        opts.format,
        Stderr(console.clone()),
        colour,
        stderr_filter,
    ));
    if let Some(t) = tracing {
        layers.push(t.layer().boxed());
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Logging {
        format: opts.format,
        colour,
        console,
        _file: guard,
    })
}

/// An error and its causes on one line, `outer: inner: innermost`, each cause once: many
/// errors already write their cause into their own message (kube's configuration errors do,
/// three levels deep), and would otherwise show it again and again.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    for cause in std::iter::successors(error.source(), |e| e.source()) {
        let cause = cause.to_string();
        if !cause.is_empty() && !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_rust_log_beats_info() {
        assert_eq!(
            directives(Some("debug"), Some("mcp_gateway=trace")),
            format!("debug,{QUIET}")
        );
        assert_eq!(
            directives(None, Some("mcp_gateway=trace")),
            "mcp_gateway=trace"
        );
        assert_eq!(directives(None, None), format!("info,{QUIET}"));
        assert_eq!(directives(Some(" "), Some("")), format!("info,{QUIET}"));
        assert_eq!(directives(Some("warn,x=debug"), None), "warn,x=debug");
        assert!(filter(&directives(Some("trace"), None)).is_ok());
        assert!(matches!(
            filter("mcp_gateway=loud"),
            Err(TelemetryError::Filter { .. })
        ));
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_chain_names_each_cause_once() {
        let io = Layer("No such file or directory (os error 2)", None);
        let read = Layer(
            "failed to read kubeconfig: No such file or directory (os error 2)",
            Some(Box::new(io)),
        );
        let infer = Layer(
            "failed to infer config: kubeconfig: (failed to read kubeconfig: No such file or directory (os error 2))",
            Some(Box::new(read)),
        );
        let top = Layer("cannot reach the API", Some(Box::new(infer)));
        assert_eq!(
            chain(&top),
            "cannot reach the API: failed to infer config: kubeconfig: (failed to read kubeconfig: No such file or directory (os error 2))"
        );
        let plain = Layer("outer", Some(Box::new(Layer("inner", None))));
        assert_eq!(chain(&plain), "outer: inner");
    }
}
