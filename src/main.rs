//! The `mcp-gateway` command: `serve`, `check`, `version`. Start-up and shutdown live here;
//! everything else is in the library.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use mcp_gateway::config::{self, Config};
use mcp_gateway::frontend::{self, HostGuard};
use mcp_gateway::relay::Gateway;
use mcp_gateway::spec::BackendSpec;
use mcp_gateway::telemetry::console::{Console, STARTUP};
use mcp_gateway::telemetry::logs::{self, LogFormat, LogOptions};
use mcp_gateway::telemetry::table::{Row, Summary};
use mcp_gateway::telemetry::trace::Tracing;
use mcp_gateway::upstream::State;

/// The port the gateway listens on when neither `--port` nor `gateway.port` says otherwise.
const DEFAULT_PORT: u16 = 8900;
const DEFAULT_HOST: &str = "127.0.0.1";
/// The config `serve` runs without `--config`: the built-in fixture server only.
const EMBEDDED_DEFAULT: &str = include_str!("../examples/gateway.yaml");
/// How often start-up progress is logged while backends are starting.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often, at most, the live start-up table is drawn again on a terminal.
const LIVE_EVERY: Duration = Duration::from_millis(250);
/// Longest the initial load of backends runs before it lets other tasks run.
const LOAD_SLICE: Duration = Duration::from_millis(10);

/// mimalloc rather than the system allocator: freed memory goes back to the system (glibc's
/// per-thread arenas kept a burst's peak — 10,000 streams, a large listing — for good), and
/// its small allocations on the request path are cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers (`mi_option_e` of mimalloc 3, which libmimalloc-sys builds).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Runs before `main` (a constructor in `.init_array`), so before the first allocation
/// reserves an arena: memory is committed as it is used rather than an arena at a time, and
/// freed pages go back to the system at once rather than after a delay. Measured with 10,000
/// open streams: 23 KB each instead of 35, and back to the starting RSS within a second of
/// their closing. The environment (`MIMALLOC_*`) still overrides both.
extern "C" fn tune_allocator() {
    for (option, env) in [
        (MI_OPTION_ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT"),
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
    ] {
        // An unset variable is read without allocating: mimalloc is not initialized yet.
        if std::env::var_os(env).is_none() {
            // SAFETY: setting an option is a plain store mimalloc allows at any time.
            unsafe { libmimalloc_sys::mi_option_set(option, 0) };
        }
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

/// How often an idle runtime thread hands what it freed back to the system.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// Called when a runtime thread has nothing to do: at most every [`RELEASE_EVERY`], return
/// its freed memory to the system. mimalloc purges on its own only while a thread keeps
/// allocating, so a burst that ended (10,000 streams closed) would otherwise stay resident.
fn release_freed_memory() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    if LAST
        .get()
        .is_some_and(|t| now.duration_since(t) < RELEASE_EVERY)
    {
        return;
    }
    LAST.set(Some(now));
    // SAFETY: mi_collect only walks the calling thread's own heap and mimalloc's shared
    // structures, under mimalloc's own synchronisation; it may be called at any time.
    unsafe { libmimalloc_sys::mi_collect(false) };
}

#[derive(Parser)]
#[command(
    name = "mcp-gateway",
    version,
    about = "One MCP endpoint for every MCP server: stdio, SSE and streamable-HTTP backends behind /mcp, /sse and stdio."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(Box<ServeArgs>),
    /// Validate a config file; exits non-zero listing every problem.
    Check {
        /// The config file (YAML or JSON).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the McpBackend CustomResourceDefinition (YAML) for `kubectl apply -f -`.
    Crd,
    /// Run the built-in fixture MCP server (the embedded default's backend) on stdio; takes
    /// the arguments of `mcp-fixture` (`fixture --help` lists them).
    #[command(disable_help_flag = true)]
    Fixture {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Config file (YAML or JSON, `mcpServers` format). Without it, the embedded default runs.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on [default: gateway.host, else 127.0.0.1].
    #[arg(long)]
    host: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one [default: gateway.port, else 8900].
    #[arg(long, short)]
    port: Option<u16>,
    /// Log level or filter (error, warn, info, debug, trace, or a RUST_LOG-style filter)
    /// [default: RUST_LOG, else info].
    #[arg(long, env = "MCP_GATEWAY_LOG")]
    log_level: Option<String>,
    /// Log lines for people (text) or for log collectors (json: one object per line).
    #[arg(long, value_enum, env = "MCP_GATEWAY_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Also write logs to files in this directory, named for their start time and level.
    #[arg(long, env = "MCP_GATEWAY_LOG_DIR", value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Log files kept in --log-dir; the oldest are deleted.
    #[arg(long, default_value_t = 10, value_name = "N")]
    log_max_files: usize,
    /// Size at which a log file is closed and a new one started (e.g. 512KiB, 64MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    log_max_size: u64,
    /// Export traces over OTLP/HTTP to this collector (base URL, like
    /// OTEL_EXPORTER_OTLP_ENDPOINT; /v1/traces is appended). The OTEL_* variables also work.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// A Host header value accepted on /mcp and /sse besides loopback names (e.g. the
    /// Service's DNS names); repeat for several; `*` accepts any. Adds to gateway.allowedHosts.
    #[arg(
        long = "allowed-host",
        value_name = "HOST",
        env = "MCP_GATEWAY_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// An Origin header value accepted on /mcp, /sse and /api besides loopback origins on a
    /// loopback bind (e.g. `https://app.example`); repeat for several; `*` accepts any. Adds to
    /// gateway.allowedOrigins.
    #[arg(
        long = "allowed-origin",
        value_name = "ORIGIN",
        env = "MCP_GATEWAY_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// How clients connect: one HTTP listener (/mcp and /sse), or this process's stdin/stdout.
    #[arg(long, value_enum, default_value_t = Transport::Http)]
    transport: Transport,
    #[command(flatten)]
    kubernetes: KubeArgs,
}

/// Serving `McpBackend` resources from a cluster.
#[derive(clap::Args)]
#[command(next_help_heading = "Kubernetes")]
struct KubeArgs {
    /// Watch McpBackend resources and serve them (with the config file's backends, if any).
    /// The API is reached through KUBECONFIG or the pod's service account.
    #[arg(long = "kubernetes", env = "MCP_GATEWAY_KUBERNETES")]
    enabled: bool,
    /// A namespace to watch; repeat for several [default: all namespaces].
    #[arg(
        long = "namespace",
        value_name = "NS",
        env = "MCP_GATEWAY_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Only McpBackends matching this label selector, e.g. `team=a,tier!=test`.
    #[arg(long, env = "MCP_GATEWAY_SELECTOR")]
    selector: Option<String>,
    /// A command stdio McpBackends may run in the gateway's pod (glob; `*` allows any);
    /// repeat for several [default: none is allowed].
    #[arg(
        long = "allow-command",
        value_name = "GLOB",
        env = "MCP_GATEWAY_ALLOW_COMMANDS",
        value_delimiter = ','
    )]
    allow_commands: Vec<String>,
    /// The Lease that elects the replica writing McpBackend status.
    #[arg(long, env = "MCP_GATEWAY_LEASE_NAME", default_value = "mcp-gateway")]
    lease_name: String,
    /// The Lease's namespace [default: the pod's namespace, else `default`].
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease [default: the pod name, else the host name].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How often Secret and ConfigMap references are read again, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    resync: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Http,
    Stdio,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Version => {
            println!("mcp-gateway {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Crd => {
            print!("{}", mcp_gateway::k8s::crd_yaml());
            Ok(())
        }
        Command::Check { config } => check(&config),
        Command::Fixture { args } => mcp_fixture::run(
            std::iter::once(std::ffi::OsString::from("mcp-gateway fixture")).chain(args),
        ),
        Command::Serve(args) => serve(*args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-gateway: {}", logs::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> anyhow::Result<()> {
    let cfg = config::load(path)?;
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    let enabled = cfg.backends.iter().filter(|b| !b.disabled).count();
    println!(
        "{}: ok ({} backends, {enabled} enabled)",
        path.display(),
        cfg.backends.len()
    );
    Ok(())
}

fn load(path: Option<&Path>, kubernetes: bool) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(config::load(p)?),
        // In a cluster the backends come from McpBackend resources.
        None if kubernetes => Ok(Config {
            gateway: Default::default(),
            backends: Vec::new(),
            warnings: Vec::new(),
        }),
        None => {
            let mut cfg = config::parse(
                EMBEDDED_DEFAULT,
                "embedded default config",
                config::Format::Yaml,
                None,
                &|k| std::env::var(k).ok(),
            )?;
            run_self_as(&mut cfg, SELF_COMMAND);
            Ok(cfg)
        }
    }
}

/// The command by which the embedded default runs the gateway's own executable.
const SELF_COMMAND: &str = "mcp-gateway";

/// Backends whose command is `name` run this very executable (wherever it is installed and
/// whatever it is called), not whatever `name` would be found on PATH. Should the path be
/// unknown or not UTF-8, `name` stays, and is looked for next to the executable, then on PATH.
fn run_self_as(cfg: &mut Config, name: &str) {
    let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
    else {
        return;
    };
    for backend in &mut cfg.backends {
        if let mcp_gateway::spec::TransportSpec::Stdio(process) = &mut backend.transport
            && process.command == name
        {
            process.command.clone_from(&exe);
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    config::parse_size(text).map(|n| n as u64)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Backends run as the gateway's user; without this, one that can read files (a
    // filesystem server, a shell) could read the gateway's secrets from
    // /proc/<gateway>/environ and /proc/<gateway>/mem. Children are dumpable again after exec.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("mcp-gateway: cannot protect the process from its children (prctl): {e}");
    }
    // Before the runtime: the exporter's HTTP client and batch worker run on threads of
    // their own.
    let tracing = Tracing::start(args.otlp_endpoint.as_deref())?;
    let logging = logs::init(
        &LogOptions {
            level: args.log_level.clone(),
            format: args.log_format,
            dir: args.log_dir.clone(),
            max_files: args.log_max_files,
            max_file_bytes: args.log_max_size,
        },
        tracing.as_ref(),
    )?;
    if tracing.is_some() {
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    let kubernetes = args.kubernetes.enabled;
    let outcome = load(args.config.as_deref(), kubernetes).and_then(|cfg| {
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        if args.config.is_none() && !kubernetes {
            tracing::info!(
                "no --config given: serving the embedded default (examples/gateway.yaml)"
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .on_thread_park(release_freed_memory)
            .build()
            .context("cannot start the async runtime")?;
        let outcome = runtime.block_on(run(args, cfg, logging.console.clone()));
        // Not `drop`: that waits for blocking reads, and a stdio client's stdin may never end.
        runtime.shutdown_timeout(Duration::from_secs(1));
        outcome
    });
    // Spans still buffered go out now, so a SIGTERM loses none.
    if let Some(t) = tracing {
        t.shutdown();
    }
    drop(logging);
    outcome
}

async fn run(args: ServeArgs, cfg: Config, console: Arc<Console>) -> anyhow::Result<()> {
    let began = Instant::now();
    let host = match (args.host, cfg.gateway.host.as_deref()) {
        (Some(h), _) => h,
        (None, Some(h)) => h
            .parse()
            .with_context(|| format!("gateway.host {h:?} is not an IP address"))?,
        (None, None) => DEFAULT_HOST.parse()?,
    };
    let port = args.port.or(cfg.gateway.port).unwrap_or(DEFAULT_PORT);
    let grace = cfg.gateway.shutdown_grace;
    let mut settings = cfg.gateway;
    add_listed(&mut settings.allowed_hosts, &args.allowed_hosts);
    add_listed(&mut settings.allowed_origins, &args.allowed_origins);
    let allowed_hosts = settings.allowed_hosts.clone();
    // Before listening: a gateway for a cluster it cannot reach has nothing to serve.
    let kubernetes = if args.kubernetes.enabled {
        let opts = kube_options(&args.kubernetes)?;
        let client = mcp_gateway::k8s::connect(mcp_gateway::k8s::CONNECT_TIMEOUT).await?;
        Some((client, opts))
    } else {
        None
    };
    let listener = match args.transport {
        Transport::Http => Some(bind(SocketAddr::new(host, port)).await?),
        Transport::Stdio => None,
    };
    let gw = Gateway::new(settings);
    // Loading until the config file's backends are applied: `/readyz` says 503 and
    // `Gateway::settled` waits, while the listener already serves.
    gw.loading.send_modify(|n| *n += 1);
    tokio::spawn(load_backends(
        gw.clone(),
        cfg.backends,
        kubernetes,
        args.config.clone().map(|path| (path, cfg.warnings)),
    ));
    let listen = listener
        .as_ref()
        .map(|(_, local)| format!("http://{local}"));
    tokio::spawn(report_startup(gw.clone(), began, listen, console));

    match args.transport {
        Transport::Stdio => {
            // Let backends come up first so the client's first tools/list is complete.
            let _ = tokio::time::timeout(gw.settings.startup_timeout, gw.settled()).await;
            let client =
                frontend::stdio::serve(gw.clone(), tokio::io::stdin(), tokio::io::stdout());
            let mut client = tokio::spawn(client);
            tokio::select! {
                // stdin closed: the client is gone, nothing is left to drain.
                _ = &mut client => gw.stop(grace).await,
                _ = shutdown_signal() => {
                    tracing::info!("shutting down");
                    gw.drain(grace).await;
                    let _ = client.await;
                }
            }
        }
        Transport::Http => {
            if let Some((listener, _)) = listener {
                serve_http(gw.clone(), listener, host, &allowed_hosts, grace).await;
            }
        }
    }
    Ok(())
}

/// Apply the config file's backends, and only then start what adds or changes backends later:
/// the Kubernetes controller (so the file keeps a name both declare, as before) and the file's
/// watcher (with the warnings already logged for the file). Yields every [`LOAD_SLICE`] so
/// that the listener keeps answering, but not after each backend: every apply republishes the
/// catalog, which costs more with every backend that has listed meanwhile.
async fn load_backends(
    gw: Arc<Gateway>,
    specs: Vec<BackendSpec>,
    kubernetes: Option<(kube::Client, mcp_gateway::k8s::Options)>,
    config: Option<(PathBuf, Vec<String>)>,
) {
    let mut slice = Instant::now();
    for spec in specs {
        gw.apply(spec);
        if slice.elapsed() >= LOAD_SLICE {
            tokio::task::yield_now().await;
            slice = Instant::now();
        }
    }
    // The controller counts itself as loading before the file stops: never 0 in between.
    if let Some((client, opts)) = kubernetes {
        mcp_gateway::k8s::spawn(gw.clone(), client, opts);
    }
    gw.loading.send_modify(|n| *n = n.saturating_sub(1));
    if let Some((path, warnings)) = config {
        tokio::spawn(mcp_gateway::reload::watch_logged(gw, path, warnings));
    }
}

/// Add the non-empty values of a repeated or comma-separated flag to a list of the config's.
fn add_listed(list: &mut Vec<String>, flag: &[String]) {
    list.extend(
        flag.iter()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
    );
}

fn kube_options(args: &KubeArgs) -> anyhow::Result<mcp_gateway::k8s::Options> {
    let policy =
        mcp_gateway::k8s::StdioPolicy::new(&args.allow_commands).map_err(anyhow::Error::msg)?;
    let identity = match &args.identity {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "mcp-gateway".into());
            format!("{host}-{}", std::process::id())
        }
    };
    if args.resync == 0 {
        bail!("--resync must be at least 1 second");
    }
    Ok(mcp_gateway::k8s::Options {
        namespaces: args
            .namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
        selector: args.selector.clone().filter(|s| !s.is_empty()),
        policy,
        lease_name: args.lease_name.clone(),
        lease_namespace: args
            .lease_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
        identity,
        resync: Duration::from_secs(args.resync),
    })
}

async fn bind(addr: SocketAddr) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => bail!("cannot listen on {addr}: {e}"),
    };
    let local = listener.local_addr().context("listener has no address")?;
    tracing::info!("listening on http://{local} (streamable HTTP at /mcp, SSE at /sse)");
    if !local.ip().is_loopback() {
        tracing::warn!(
            "listening on {} without authentication: anyone who can reach this port can use \
             every backend and its credentials. Bind to 127.0.0.1, or put the gateway behind \
             an authenticating proxy or a NetworkPolicy",
            local.ip()
        );
    }
    Ok((listener, local))
}

/// Serve HTTP until SIGTERM or Ctrl-C, then drain: no new sessions, calls in flight finish
/// within `grace` (or are answered with an error), backends stop, connections close.
async fn serve_http(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    host: IpAddr,
    allowed_hosts: &[String],
    grace: Duration,
) {
    tokio::spawn(frontend::expire_idle_sessions(gw.clone()));
    let app = frontend::router(gw.clone(), HostGuard::new(host, allowed_hosts));
    let server = tokio::spawn(frontend::listener::serve(gw.clone(), listener, app));
    shutdown_signal().await;
    tracing::info!("shutting down");
    // The listener keeps serving the open sessions while they drain; it stops with the gateway.
    gw.drain(grace).await;
    let _ = server.await;
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// While backends start, a progress line every [`PROGRESS_EVERY`] (and each backend's state
/// changes, logged where they happen); on a terminal, a live table instead, drawn again at
/// most every [`LIVE_EVERY`]. Once every backend has started or failed, a line with the time
/// it took since `began`. The summary table follows it, or comes after `startupTimeout` if
/// backends are still starting then.
async fn report_startup(
    gw: Arc<Gateway>,
    began: Instant,
    listen: Option<String>,
    console: Arc<Console>,
) {
    let settled = gw.settled();
    tokio::pin!(settled);
    let table_due = tokio::time::sleep(gw.settings.startup_timeout);
    tokio::pin!(table_due);
    let mut table_shown = false;
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A start-up quicker than one frame shows only the final table.
    let mut redraw = tokio::time::interval_at(tokio::time::Instant::now() + LIVE_EVERY, LIVE_EVERY);
    redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = console.live();
    loop {
        tokio::select! {
            _ = &mut settled => break,
            _ = progress.tick() => {
                let c = gw.upstreams.census();
                if c.starting == 0 {
                    continue;
                }
                let enabled = c.total() - c.disabled;
                tracing::info!(
                    target: STARTUP,
                    "starting backends: {}/{enabled} ready, {} down, {} starting",
                    c.ready,
                    c.down,
                    c.starting
                );
            }
            _ = redraw.tick(), if live && !table_shown => {
                console.show_live(&summary(&gw, listen.clone(), began), terminal_rows());
            }
            _ = &mut table_due, if !table_shown => {
                console.print_summary(&summary(&gw, listen.clone(), began));
                table_shown = true;
            }
        }
    }
    let c = gw.upstreams.census();
    let enabled = c.total() - c.disabled;
    if enabled > 0 {
        tracing::info!(
            target: STARTUP,
            "backends started in {:.1} s: {}/{enabled} ready, {} down",
            began.elapsed().as_secs_f64(),
            c.ready,
            c.down
        );
    }
    if !table_shown {
        console.print_summary(&summary(&gw, listen, began));
    }
}

/// The terminal's height in rows (stderr's), or a common one if it cannot be told.
fn terminal_rows() -> usize {
    let mut size = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only fills in the winsize it is pointed at, which outlives the call.
    let read = unsafe { nix::libc::ioctl(2, nix::libc::TIOCGWINSZ, &mut size) } == 0;
    if read && size.ws_row > 0 {
        usize::from(size.ws_row)
    } else {
        24
    }
}

/// The summary a person reads first. `listen` is the HTTP base URL (`None` when serving
/// stdio).
fn summary(gw: &Gateway, listen: Option<String>, began: Instant) -> Summary {
    let snap = gw.catalog.current();
    let backends = gw
        .upstreams
        .all()
        .iter()
        .map(|b| {
            let s = b.status();
            let [tools, prompts, resources, templates] = snap.counts(&b.name);
            Row {
                name: b.name.to_string(),
                transport: b.spec().transport_kind(),
                state: s.state.as_str(),
                time: match s.state {
                    State::Starting => s.attempt.map(|t| t.elapsed()),
                    State::Ready | State::Down => s.took,
                    State::Disabled | State::Stopped => None,
                },
                tools,
                prompts,
                resources,
                templates,
                error: s.last_error,
            }
        })
        .collect();
    Summary {
        listen,
        backends,
        tools: snap.tools.len(),
        prompts: snap.prompts.len(),
        resources: snap.resources.len(),
        templates: snap.templates.len(),
        elapsed: Some(began.elapsed()),
    }
}
