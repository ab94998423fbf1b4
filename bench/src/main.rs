//! `mcp-bench`: the load generator of mcp-gateway's benchmark (`scripts/bench.sh`).
//!
//! Every subcommand prints one JSON object on one line of stdout, so the script can collect
//! runs and build its table; diagnostics go to stderr.
//!
//! - `http`: the one-connection-per-client HTTP/1.1 layer (loopback only, `TCP_NODELAY`);
//! - `sse`: the incremental `text/event-stream` parser;
//! - `mcp`: MCP sessions over streamable HTTP and legacy SSE, answers matched and checked;
//! - `run`: closed-loop `tools/call` load, timed `tools/list`;
//! - `scale`: time to all backends ready, ops endpoint latency, many open streams;
//! - `stats`: percentiles, CPU time and memory from `/proc`;
//! - `report`: the tables printed at the end of a run.
#![forbid(unsafe_code)]

mod http;
mod mcp;
mod report;
mod run;
mod scale;
mod sse;
mod stats;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::http::Target;
use crate::mcp::Transport;

#[derive(Debug, Parser)]
#[command(name = "mcp-bench", version, about = "Load generator for mcp-gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What every subcommand shares.
#[derive(Debug, Args)]
struct Common {
    /// Server URL, loopback only: `http://127.0.0.1:PORT/mcp`, `.../sse`, `.../metrics`, ...
    #[arg(long)]
    url: String,
    /// Process whose CPU time and memory are reported (the gateway, or the direct server).
    #[arg(long)]
    pid: Option<u32>,
    /// A name for this run, copied into the output.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// C clients calling a tool in a closed loop.
    Call {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Transport::Mcp)]
        transport: Transport,
        #[arg(short, long, default_value_t = 1)]
        concurrency: usize,
        /// Seconds of calls before the measured window.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Seconds measured.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Tool to call; `echo` (or `fixture__echo` through a gateway) has its answer checked.
        #[arg(long, default_value = "echo")]
        tool: String,
        /// Arguments (JSON) for a tool other than `echo`.
        #[arg(long, default_value = "{}")]
        arguments: String,
        /// Seconds one call may take before it counts as an error.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// A backend process (not a descendant of --pid) whose CPU time is reported too.
        #[arg(long)]
        backend_pid: Option<u32>,
    },
    /// Timed listings (`tools/list` with every page).
    List {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Transport::Mcp)]
        transport: Transport,
        #[arg(long, default_value = "tools/list")]
        method: String,
        /// Keep listing for this many seconds...
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        /// ...but at least this many times...
        #[arg(long, default_value_t = 3)]
        min_iterations: usize,
        /// ...and at most this many.
        #[arg(long, default_value_t = 1000)]
        max_iterations: usize,
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Latency of a plain GET (`/metrics`, `/api/v1/backends`).
    Get {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
    /// Waits until N backends are ready (`/api/v1/backends`); URL is the gateway's base.
    Ready {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        expect: usize,
        /// When the gateway was started (Unix time, ns; `date +%s%N`): times count from it.
        #[arg(long)]
        since_ns: Option<u128>,
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
    /// Opens N concurrent streams, holds them, closes them; memory at each step.
    Streams {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Transport::Sse)]
        transport: Transport,
        #[arg(long)]
        count: usize,
        /// Streams being opened at once.
        #[arg(long, default_value_t = 64)]
        parallel: usize,
        /// Seconds to hold them open.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// Prints the tables for a file of the JSON lines the other subcommands printed.
    Report {
        file: std::path::PathBuf,
        /// Label of the direct runs that calls/s are compared with.
        #[arg(long, default_value = "direct")]
        baseline: String,
    },
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

async fn run(command: Command) -> anyhow::Result<(Common, Value)> {
    Ok(match command {
        Command::Call {
            common,
            transport,
            concurrency,
            warmup,
            duration,
            tool,
            arguments,
            timeout,
            backend_pid,
        } => {
            let options = run::CallOptions {
                transport,
                target: Target::parse(&common.url).await?,
                concurrency: concurrency.max(1),
                warmup: seconds(warmup),
                duration: seconds(duration),
                tool,
                arguments: serde_json::from_str(&arguments).context("--arguments is not JSON")?,
                timeout: seconds(timeout),
                pid: common.pid,
                backend_pid,
            };
            let out = run::call(options).await?;
            (common, out)
        }
        Command::List {
            common,
            transport,
            method,
            duration,
            min_iterations,
            max_iterations,
            timeout,
        } => {
            let options = run::ListOptions {
                transport,
                target: Target::parse(&common.url).await?,
                method,
                duration: seconds(duration),
                min_iterations,
                max_iterations,
                timeout: seconds(timeout),
                pid: common.pid,
            };
            let out = run::list(options).await?;
            (common, out)
        }
        Command::Get {
            common,
            count,
            duration,
        } => {
            let target = Target::parse(&common.url).await?;
            let out = scale::get_latency(target, count, seconds(duration), common.pid).await?;
            (common, out)
        }
        Command::Ready {
            common,
            expect,
            since_ns,
            timeout,
            interval_ms,
        } => {
            let options = scale::ReadyOptions {
                target: Target::parse(&common.url).await?,
                expect,
                since_ns,
                timeout: seconds(timeout),
                interval: Duration::from_millis(interval_ms),
                pid: common.pid,
            };
            let out = scale::ready(options).await?;
            (common, out)
        }
        Command::Streams {
            common,
            transport,
            count,
            parallel,
            hold,
        } => {
            let options = scale::StreamsOptions {
                transport,
                target: Target::parse(&common.url).await?,
                count,
                parallel,
                hold: seconds(hold),
                pid: common.pid,
            };
            let out = scale::streams(options).await?;
            (common, out)
        }
        Command::Report { .. } => anyhow::bail!("report is not a run"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Report { file, baseline } = &cli.command {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let records: Vec<Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        print!("{}", report::render(&records, baseline));
        return Ok(());
    }
    let (common, out) = run(cli.command).await?;
    let out = stats::merge(json!({"label": common.label}), out);
    println!("{out}");
    Ok(())
}
