//! `BackendSpec`: the one internal representation of a backend.
//!
//! Every source of backends (the config file, later the admin API and `McpBackend` resources)
//! normalises into these types through a pure function, so that the catalog and the upstream
//! pool never care where a backend was declared.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default public-name separator between a backend's prefix and an upstream name.
pub const DEFAULT_SEPARATOR: &str = "__";

/// One MCP server behind the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Unique name (the key under `mcpServers`).
    pub name: String,
    pub transport: TransportSpec,
    /// Prefix of public names; `""` means the upstream names are public as they are.
    pub prefix: String,
    pub tools: ToolFilter,
    /// Per-request timeout for this backend; `None` uses the gateway's default.
    pub timeout: Option<Duration>,
    /// A disabled backend is known to the gateway but never started.
    pub disabled: bool,
    /// Whether clients share one upstream session or each gets its own.
    pub sessions: Sessions,
}

/// How a backend's upstream sessions are shared among clients (`sessions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sessions {
    /// One upstream session (one process) for every client: a request the backend sends to
    /// "the client" reaches the client only when the gateway can tell which one it is for.
    #[default]
    Shared,
    /// Each client session that calls the backend gets an upstream session (a process) of
    /// its own, so whatever the backend sends on it is that client's.
    PerClient,
}

impl Sessions {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::PerClient => "per-client",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportSpec {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio(ProcessSpec),
    /// Legacy HTTP+SSE: GET an event stream, POST to the endpoint it announces.
    /// With `launch`, the gateway starts that process first and waits for the URL to answer.
    Sse {
        http: HttpSpec,
        launch: Option<ProcessSpec>,
    },
    /// Streamable HTTP (protocol 2025-03-26 and later).
    StreamableHttp(HttpSpec),
}

/// `Debug` shows the names of `env` entries, never their values (they hold secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    pub command: String,
    pub args: Vec<String>,
    /// Set on top of what the process inherits (see [`InheritEnv`]); `envFile` entries are
    /// already merged in, under these.
    pub env: BTreeMap<String, String>,
    /// Which of the gateway's own environment variables the process gets.
    pub inherit_env: InheritEnv,
    pub cwd: Option<PathBuf>,
}

/// Variables of the gateway that no child gets, whatever its `inheritEnv`: in a pod, the API
/// server's address (`KUBERNETES_SERVICE_HOST`, `KUBERNETES_PORT_443_TCP…`), which together
/// with the service-account token is what a process needs to act as the gateway.
pub const NEVER_INHERITED: &str = "KUBERNETES_";

/// Which of the gateway's environment variables a child process inherits
/// (`crate::upstream::env` computes the result). [`NEVER_INHERITED`] ones never pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InheritEnv {
    /// Only what a process needs to run: `PATH`, `HOME`, locale, proxies, CA bundles,
    /// npm, uv and pip settings.
    #[default]
    Minimal,
    /// Everything (`inheritEnv: true`).
    All,
    /// The minimal set plus these names; a trailing `*` makes a name a prefix (`AWS_*`).
    /// Never empty: an empty list is `Minimal`.
    Names(Vec<String>),
}

/// `Debug` shows the names of `headers`, never their values (they hold credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSpec {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

/// A map whose values are shown as `<redacted>`.
struct Redacted<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, format_args!("<redacted>"))))
            .finish()
    }
}

impl std::fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &Redacted(&self.env))
            .field("inherit_env", &self.inherit_env)
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl std::fmt::Debug for HttpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSpec")
            .field("url", &crate::redact::url(&self.url))
            .field("headers", &Redacted(&self.headers))
            .finish()
    }
}

/// Which upstream tools are published, by glob over the *upstream* tool name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolFilter {
    /// Empty means every tool.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// Gateway-wide settings (the `gateway:` section of the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    pub separator: String,
    /// Default per-request timeout towards a backend (reset by progress notifications).
    pub request_timeout: Duration,
    /// How long a backend may take to start and answer `initialize`.
    pub startup_timeout: Duration,
    /// Backend processes being started (spawned, initialized and listed) at once; the others
    /// wait their turn in state `starting`. Starting them all at once on a few cores makes
    /// every one of them slow.
    pub startup_concurrency: usize,
    /// Largest accepted HTTP request body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for sessions and backends before killing.
    pub shutdown_grace: Duration,
    /// Extra `Host` header values accepted besides loopback ones (DNS-rebinding guard);
    /// `["*"]` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Address to listen on; `None` leaves the choice to the command line or its default.
    pub host: Option<String>,
    /// Port to listen on; `None` leaves the choice to the command line or its default.
    pub port: Option<u16>,
    /// `Origin` header values accepted besides loopback ones on a loopback bind; `["*"]`
    /// accepts any. A request without `Origin` (not from a browser) is not affected.
    pub allowed_origins: Vec<String>,
    /// Items per page of the gateway's own lists (`tools/list`, …); `None` sends every item
    /// in one answer, for clients that never follow `nextCursor`.
    pub list_page_size: Option<usize>,
    pub limits: Limits,
}

/// What one client, or all of them together, may hold of the gateway at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open sessions (all frontends); beyond, new sessions get 503.
    pub max_sessions: usize,
    /// A streamable-HTTP session with no request and no open stream for this long is closed.
    pub session_idle: Duration,
    /// Requests of one session being served at once; more wait up to `queue_timeout`.
    pub max_requests_per_session: usize,
    /// Requests in flight to one backend at once; more wait up to `queue_timeout`.
    pub max_requests_per_backend: usize,
    /// Upstream sessions (processes) of one `sessions: per-client` backend, one per client
    /// session that calls it; a client beyond gets a "busy" error.
    pub max_client_sessions_per_backend: usize,
    /// How long a request waits for a slot before it gets a "busy" error.
    pub queue_timeout: Duration,
    /// Messages in one JSON-RPC batch (on the protocol versions that have batches).
    pub max_batch: usize,
    /// Open HTTP connections; beyond, new ones get 503 and are closed.
    pub max_connections: usize,
    /// Time to receive a request's headers.
    pub header_timeout: Duration,
    /// Time to receive a request's body.
    pub body_timeout: Duration,
    /// A connection with no request in progress and no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A write to a backend's stdin that cannot finish in this time marks the backend down.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            session_idle: Duration::from_secs(10 * 60),
            max_requests_per_session: 64,
            max_requests_per_backend: 256,
            max_client_sessions_per_backend: 32,
            queue_timeout: Duration::from_secs(10),
            max_batch: 32,
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            separator: DEFAULT_SEPARATOR.to_owned(),
            request_timeout: Duration::from_secs(300),
            startup_timeout: Duration::from_secs(60),
            startup_concurrency: default_startup_concurrency(),
            max_body_bytes: 8 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
            allowed_hosts: Vec::new(),
            host: None,
            port: None,
            allowed_origins: Vec::new(),
            list_page_size: None,
            limits: Limits::default(),
        }
    }
}

/// `startupConcurrency` when the config does not say: four backends per core the gateway may
/// run on, at least 8 (a backend's start is mostly waiting for its process, not computing).
pub fn default_startup_concurrency() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (4 * cores).max(8)
}

// === impl TransportSpec ===

impl TransportSpec {
    /// The name used in config files, logs and the admin API.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio(_) => "stdio",
            Self::Sse { .. } => "sse",
            Self::StreamableHttp(_) => "streamable-http",
        }
    }

    /// Whether starting the backend starts a process of the gateway's (stdio, or an SSE
    /// server it launches).
    pub fn launches(&self) -> bool {
        matches!(
            self,
            Self::Stdio(_)
                | Self::Sse {
                    launch: Some(_),
                    ..
                }
        )
    }
}

// === impl BackendSpec ===

impl BackendSpec {
    pub fn transport_kind(&self) -> &'static str {
        self.transport.kind()
    }

    /// Whether `other` can keep this backend's upstream session: only the transport (what to
    /// run or reach), `disabled` and `sessions` define it; naming, filters and timeouts apply
    /// in place.
    pub fn same_session(&self, other: &BackendSpec) -> bool {
        self.transport == other.transport
            && self.disabled == other.disabled
            && self.sessions == other.sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdio(command: &str) -> BackendSpec {
        BackendSpec {
            name: "b".into(),
            transport: TransportSpec::Stdio(ProcessSpec {
                command: command.into(),
                ..Default::default()
            }),
            prefix: "b".into(),
            tools: ToolFilter::default(),
            timeout: None,
            disabled: false,
            sessions: Default::default(),
        }
    }

    #[test]
    fn debug_never_shows_env_or_header_values() {
        let mut spec = stdio("srv");
        if let TransportSpec::Stdio(p) = &mut spec.transport {
            p.env.insert("API_TOKEN".into(), "s3cr3t-env".into());
        }
        let http = HttpSpec {
            url: "https://x/mcp".into(),
            headers: [("Authorization".to_owned(), "Bearer s3cr3t-hdr".to_owned())].into(),
        };
        let shown = format!("{spec:?} {spec:#?} {http:?} {http:#?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("API_TOKEN") && shown.contains("Authorization"));
        assert!(shown.contains("<redacted>") && shown.contains("https://x/mcp"));
    }

    #[test]
    fn only_transport_disabled_and_sessions_define_the_session() {
        let base = stdio("srv");
        let mut renamed = base.clone();
        renamed.prefix = "x".into();
        renamed.tools.include = vec!["a*".into()];
        renamed.timeout = Some(Duration::from_secs(1));
        assert!(base.same_session(&renamed));
        assert!(!base.same_session(&stdio("other")));
        let mut off = base.clone();
        off.disabled = true;
        assert!(!base.same_session(&off));
        let mut own = base.clone();
        own.sessions = Sessions::PerClient;
        assert!(
            !base.same_session(&own),
            "a change of sharing restarts the backend"
        );
        // What the process inherits is part of what runs: a change restarts it.
        let mut inherits = base.clone();
        if let TransportSpec::Stdio(p) = &mut inherits.transport {
            p.inherit_env = InheritEnv::Names(vec!["AWS_*".into()]);
        }
        assert!(!base.same_session(&inherits));
    }
}
