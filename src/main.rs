//! The `mcp-gateway` command: `serve`, `check`, `version`. Start-up and shutdown live here;
//! everything else is in the library.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use mcp_gateway::config::{self, Config};
use mcp_gateway::frontend::{self, HostGuard};
use mcp_gateway::relay::Gateway;
use mcp_gateway::upstream::State;

/// The port the gateway listens on when neither `--port` nor `gateway.port` says otherwise.
const DEFAULT_PORT: u16 = 8900;
const DEFAULT_HOST: &str = "127.0.0.1";
/// The config `serve` runs without `--config`: the built-in fixture server only.
const EMBEDDED_DEFAULT: &str = include_str!("../examples/gateway.yaml");

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
    /// Log level or filter (error, warn, info, debug, trace, or a RUST_LOG-style filter).
    #[arg(long, env = "MCP_GATEWAY_LOG", default_value = "info")]
    log_level: String,
    /// A Host header value accepted on /mcp and /sse besides loopback names (e.g. the
    /// Service's DNS names); repeat for several; `*` accepts any. Adds to gateway.allowedHosts.
    #[arg(
        long = "allowed-host",
        value_name = "HOST",
        env = "MCP_GATEWAY_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
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
        Command::Serve(args) => serve(*args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-gateway: {e:#}");
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
        None if kubernetes => Ok(config::parse(
            "mcpServers: {}",
            "no config",
            config::Format::Yaml,
            None,
            &|_| None,
        )?),
        None => Ok(config::parse(
            EMBEDDED_DEFAULT,
            "embedded default config",
            config::Format::Yaml,
            None,
            &|k| std::env::var(k).ok(),
        )?),
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = match filter {
        "error" | "warn" | "info" | "debug" | "trace" => {
            format!("{filter},hyper=warn,reqwest=warn,h2=warn,rustls=warn")
        }
        custom => custom.to_owned(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .with_context(|| format!("invalid --log-level {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level)?;
    let kubernetes = args.kubernetes.enabled;
    let cfg = load(args.config.as_deref(), kubernetes)?;
    for w in cfg
        .warnings
        .iter()
        .filter(|_| args.config.is_some() || !kubernetes)
    {
        tracing::warn!("{w}");
    }
    if args.config.is_none() && !kubernetes {
        tracing::info!("no --config given: serving the embedded default (examples/gateway.yaml)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args, cfg))
}

async fn run(args: ServeArgs, cfg: Config) -> anyhow::Result<()> {
    let host = match (args.host, cfg.gateway.host.as_deref()) {
        (Some(h), _) => h,
        (None, Some(h)) => h
            .parse()
            .with_context(|| format!("gateway.host {h:?} is not an IP address"))?,
        (None, None) => DEFAULT_HOST.parse()?,
    };
    let port = args.port.or(cfg.gateway.port).unwrap_or(DEFAULT_PORT);
    let mut allowed_hosts = cfg.gateway.allowed_hosts.clone();
    allowed_hosts.extend(
        args.allowed_hosts
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty()),
    );
    let grace = cfg.gateway.shutdown_grace;
    let gw = Gateway::new(cfg.gateway);
    gw.reconcile(cfg.backends).await;
    tokio::spawn(log_summary(gw.clone()));
    if let Some(path) = args.config.clone() {
        tokio::spawn(mcp_gateway::reload::watch(gw.clone(), path));
    }
    if args.kubernetes.enabled {
        let opts = kube_options(&args.kubernetes)?;
        let client = kube::Client::try_default()
            .await
            .context("cannot reach the Kubernetes API (KUBECONFIG or the pod's service account)")?;
        tokio::spawn(mcp_gateway::k8s::run(gw.clone(), client, opts));
    }

    let outcome = match args.transport {
        Transport::Stdio => {
            // Let backends come up first so the client's first tools/list is complete.
            let _ = tokio::time::timeout(gw.settings.startup_timeout, gw.settled()).await;
            tokio::select! {
                _ = frontend::stdio::serve(gw.clone(), tokio::io::stdin(), tokio::io::stdout()) => {}
                _ = shutdown_signal() => {}
            }
            Ok(())
        }
        Transport::Http => {
            serve_http(
                gw.clone(),
                SocketAddr::new(host, port),
                &allowed_hosts,
                grace,
            )
            .await
        }
    };
    gw.stop().await;
    outcome
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

async fn serve_http(
    gw: Arc<Gateway>,
    addr: SocketAddr,
    allowed_hosts: &[String],
    grace: Duration,
) -> anyhow::Result<()> {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => bail!("cannot listen on {addr}: {e}"),
    };
    let local = listener.local_addr().context("listener has no address")?;
    tracing::info!("listening on http://{local} (streamable HTTP at /mcp, SSE at /sse)");
    tokio::spawn(frontend::expire_idle_sessions(gw.clone()));
    let app = frontend::router(gw.clone(), HostGuard::new(addr.ip(), allowed_hosts));
    let stopping = gw.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        // Closing sessions ends their streams, which lets open connections finish.
        stopping.stop().await;
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        r = &mut server => r.context("the HTTP server failed")?,
        _ = async { gw.shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("connections still open after {} s; closing them", grace.as_secs());
        }
    }
    Ok(())
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

/// Once every backend has started or failed, one line each: what a person wants to see.
async fn log_summary(gw: Arc<Gateway>) {
    let _ = tokio::time::timeout(gw.settings.startup_timeout, gw.settled()).await;
    let snap = gw.catalog.current();
    let backends = gw.upstreams.all();
    for b in &backends {
        let s = b.status();
        let [tools, prompts, resources, _] = snap.counts(&b.name);
        match s.state {
            State::Down => tracing::warn!(
                backend = %b.name,
                transport = b.spec().transport_kind(),
                error = s.last_error.as_deref().unwrap_or("unknown"),
                "backend is down"
            ),
            state => tracing::info!(
                backend = %b.name,
                transport = b.spec().transport_kind(),
                state = state.as_str(),
                tools,
                prompts,
                resources,
                "backend"
            ),
        }
    }
    let up = backends
        .iter()
        .filter(|b| b.status().state == State::Ready)
        .count();
    tracing::info!(
        "{up}/{} backends ready, {} tools, {} prompts, {} resources",
        backends.len(),
        snap.tools.len(),
        snap.prompts.len(),
        snap.resources.len()
    );
}
