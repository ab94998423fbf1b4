//! `mcp-shell`: an MCP server, spoken over stdio, whose one tool runs shell
//! commands. It replaces the bash-runner server the gateway used to launch,
//! adding a per-command timeout that kills the whole process group, an output
//! cap, and cancellation.
//!
//! This file holds the command line and the stdio transport; see `server.rs`
//! for the tool and `exec.rs` for how commands are run. Linux and macOS only.
#![forbid(unsafe_code)]

mod exec;
mod server;

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use rmcp::ServiceExt;

use crate::server::{Settings, ShellServer};

/// An MCP server that runs shell commands.
#[derive(Debug, Parser)]
#[command(name = "mcp-shell", version, about)]
struct Cli {
    /// Working directory of commands (default: the current directory).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Default timeout of a command, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Most bytes kept of each of stdout and stderr; calls may ask for less.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    max_output: usize,
    /// Shell that runs the commands, as `SHELL -c COMMAND`.
    #[arg(long, value_name = "PATH", default_value = "/bin/sh")]
    shell: PathBuf,
}

fn init_tracing() {
    // rmcp logs every error response at WARN; keep those quiet unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rmcp=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let cwd = match cli.cwd {
        Some(dir) => {
            std::path::absolute(&dir).with_context(|| format!("bad --cwd {}", dir.display()))?
        }
        None => std::env::current_dir().context("no current directory")?,
    };
    anyhow::ensure!(cwd.is_dir(), "--cwd {} is not a directory", cwd.display());
    let server = ShellServer::new(Settings {
        shell: cli.shell,
        cwd,
        default_timeout: Duration::from_secs(cli.timeout),
        max_output_bytes: cli.max_output,
    });
    let service = server
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("MCP handshake on stdio failed")?;
    service.waiting().await.context("stdio service failed")?;
    Ok(())
}
