//! `mcp-fixture`: a small, predictable MCP server that the gateway uses as its
//! default backend, in integration tests and in benchmarks.
//!
//! It exists so the gateway can be exercised end to end against a server whose
//! every answer is known in advance: tools (echo, add, a slow tool with
//! progress and cancellation, a failing tool, sampling and elicitation round
//! trips), resources with subscriptions, a prompt with argument completion.
//! This file holds the command line and the two transports (stdio and
//! streamable HTTP); the MCP behaviour lives in the sibling modules.
//!
//! [`run`] is the whole program: the `mcp-fixture` binary calls it, and so does
//! `mcp-gateway fixture`, so that an installed gateway carries its default backend
//! inside its own executable.
#![forbid(unsafe_code)]

mod prompts;
mod resources;
mod server;
mod synthetic;
mod tools;

use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use clap::{Parser, ValueEnum};
use rmcp::{
    ServiceExt,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use tokio_util::sync::CancellationToken;

use crate::server::Fixture;

/// How the fixture talks to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// Newline-delimited JSON-RPC on stdin/stdout.
    Stdio,
    /// Streamable HTTP served at `/mcp`.
    Http,
}

/// A well-behaved MCP server for tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "mcp-fixture", version, about)]
struct Cli {
    /// Transport to serve.
    #[arg(long, value_enum, default_value_t = Transport::Stdio)]
    transport: Transport,
    /// Address to bind in http mode.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind in http mode (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Extra `Host` header values accepted in http mode, besides the loopback
    /// names and the bind host (repeatable).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// The `serverInfo.name` reported to clients.
    #[arg(long, default_value = "mcp-fixture")]
    name: String,
    /// Serve every list in pages of this many items (exercises clients' pagination).
    #[arg(long, value_name = "N")]
    page_size: Option<usize>,
    /// Also list this many synthetic tools with realistic names, ~150-byte descriptions and
    /// input schemas (benchmarks of catalog scale); each answers with its name and arguments.
    #[arg(long, value_name = "N", default_value_t = 0)]
    synthetic_tools: usize,
}

fn init_tracing() {
    // rmcp logs every error response at WARN; keep those quiet unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rmcp=error"));
    // A program that runs the fixture inside itself may have set a subscriber already.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Run the fixture as a program: `args` is its command line, the program's name first
/// (`--help` and a bad argument print and exit, as for any command).
pub fn run<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let fixture = Fixture::new(cli.name.clone())
        .with_page_size(cli.page_size)
        .with_synthetic_tools(cli.synthetic_tools);
    match cli.transport {
        Transport::Stdio => serve_stdio(fixture).await,
        Transport::Http => serve_http(fixture, &cli).await,
    }
}

async fn serve_stdio(fixture: Fixture) -> anyhow::Result<()> {
    let service = fixture
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("MCP handshake on stdio failed")?;
    service.waiting().await.context("stdio service failed")?;
    Ok(())
}

async fn serve_http(fixture: Fixture, cli: &Cli) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((cli.host.as_str(), cli.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", cli.host, cli.port))?;
    let addr = listener.local_addr().context("no local address")?;
    // Nagle off: otherwise the last small write of an SSE-framed answer waits for the
    // client's delayed ACK, and every call takes ~40 ms (the benchmark's direct baseline).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });

    let shutdown = CancellationToken::new();
    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    // rmcp accepts only loopback Host headers by default (DNS-rebinding
    // protection). Keep that list and add the bind host and any explicit
    // extras, so binding a non-loopback address still answers.
    let mut allowed = config.allowed_hosts.clone();
    for host in std::iter::once(&cli.host).chain(&cli.allow_hosts) {
        let host = host.trim_matches(['[', ']']);
        if !allowed.iter().any(|known| known.eq_ignore_ascii_case(host)) {
            allowed.push(host.to_owned());
        }
    }
    let config = config.with_allowed_hosts(allowed);

    let service: StreamableHttpService<Fixture, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(fixture.for_new_session()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().route_service("/mcp", service);

    // Tests parse this exact line; it must be the only thing printed here.
    eprintln!("mcp-fixture listening on http://{addr}/mcp");

    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            wait_for_shutdown_signal().await;
            // End the long-lived SSE streams so graceful shutdown can finish.
            shutdown.cancel();
        })
        .await
        .context("http server failed")?;
    Ok(())
}

async fn wait_for_shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
