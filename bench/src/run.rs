//! Closed-loop load: C clients, each one MCP session sending its next request as soon as the
//! last is answered, for a fixed time after a warm-up; and timed listings (`tools/list` with
//! every page).
//!
//! The clock starts only when every client has finished its handshake, so `initialize` is
//! never measured; the server's CPU time is read exactly at the start and end of the measured
//! window.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

use crate::http::Target;
use crate::mcp::{Session, Transport};
use crate::stats::{Latencies, Probe, merge};

/// How long a client may take to connect and complete `initialize`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct error messages kept as examples.
const ERROR_SAMPLES: usize = 5;

pub struct CallOptions {
    pub transport: Transport,
    pub target: Target,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub tool: String,
    /// Arguments for tools other than `echo` (whose message is made unique per call and
    /// checked in the answer).
    pub arguments: Value,
    pub timeout: Duration,
    pub pid: Option<u32>,
    pub backend_pid: Option<u32>,
}

/// What one client saw in the measured window.
#[derive(Default)]
struct Tally {
    latencies: Latencies,
    errors: usize,
    samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, error: &anyhow::Error) {
        self.errors += 1;
        let text = format!("{error:#}");
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&text) {
            self.samples.push(text);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.merge(other.latencies);
        self.errors += other.errors;
        for sample in other.samples {
            if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&sample) {
                self.samples.push(sample);
            }
        }
    }
}

/// Runs `tools/call` in a closed loop and summarises the measured window.
pub async fn call(options: CallOptions) -> anyhow::Result<Value> {
    let probe = Probe::new(options.pid).with_backend(options.backend_pid);
    let options = std::sync::Arc::new(options);
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(1024);
    let mut clients = Vec::with_capacity(options.concurrency);
    for client in 0..options.concurrency {
        let options = options.clone();
        let mut start_rx = start_rx.clone();
        let ready_tx = ready_tx.clone();
        clients.push(tokio::spawn(async move {
            let connected = timeout(
                HANDSHAKE_TIMEOUT,
                Session::connect(options.transport, &options.target),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("handshake timed out")));
            let mut session = match connected {
                Ok(session) => session,
                Err(error) => {
                    let _ = ready_tx.send(Err(format!("{error:#}"))).await;
                    return Tally::default();
                }
            };
            let _ = ready_tx.send(Ok(())).await;
            let Ok(start) = start_rx
                .wait_for(Option::is_some)
                .await
                .map(|s| s.unwrap_or_else(Instant::now))
            else {
                return Tally::default();
            };
            let tally = client_loop(&mut session, client, &options, start).await;
            session.close().await;
            tally
        }));
    }
    drop(ready_tx);

    let mut handshake_errors = Vec::new();
    for _ in 0..options.concurrency {
        match timeout(HANDSHAKE_TIMEOUT * 2, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(error))) => handshake_errors.push(error),
            Ok(None) | Err(_) => break,
        }
    }
    let start = Instant::now();
    let _ = start_tx.send(Some(start));
    sleep_until(start + options.warmup).await;
    let first = probe.mark();
    sleep_until(start + options.warmup + options.duration).await;
    let last = probe.mark();

    let mut tally = Tally::default();
    for client in clients {
        // Every client stops at the end of the window, plus at most one call's timeout.
        if let Ok(Ok(client)) = timeout(options.timeout + Duration::from_secs(5), client).await {
            tally.merge(client);
        }
    }
    let calls = tally.latencies.len();
    let seconds = options.duration.as_secs_f64();
    handshake_errors.truncate(ERROR_SAMPLES);
    let mut samples = tally.samples;
    samples.extend(handshake_errors.iter().cloned());
    let summary = json!({
        "mode": "call",
        "transport": transport_name(options.transport),
        "tool": options.tool,
        "concurrency": options.concurrency,
        "clients_connected": options.concurrency - handshake_errors.len(),
        "duration_s": seconds,
        "calls": calls,
        "calls_per_s": (calls as f64 / seconds).round(),
        "errors": tally.errors + handshake_errors.len(),
        "error_samples": samples,
    });
    let summary = merge(summary, tally.latencies.summary());
    Ok(merge(summary, probe.report(first, last, calls)))
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Mcp => "mcp",
        Transport::Sse => "sse",
    }
}

/// One client's closed loop: calls until the window ends, recording those started in it.
async fn client_loop(
    session: &mut Session,
    client: usize,
    options: &CallOptions,
    start: Instant,
) -> Tally {
    let measured_from = start + options.warmup;
    let end = measured_from + options.duration;
    let mut tally = Tally::default();
    let mut seq = 0u64;
    loop {
        let began = Instant::now();
        if began >= end {
            break;
        }
        seq += 1;
        let message = format!("bench c{client} #{seq}");
        let arguments = if is_echo(&options.tool) {
            json!({"message": message})
        } else {
            options.arguments.clone()
        };
        let params = json!({"name": options.tool, "arguments": arguments});
        let outcome = match timeout(options.timeout, session.request("tools/call", params)).await {
            Ok(answer) => answer.and_then(|a| check_call(&a.result, &options.tool, &message)),
            Err(_) => {
                session.reset();
                Err(anyhow::anyhow!("no answer within {:?}", options.timeout))
            }
        };
        let latency = began.elapsed();
        if began < measured_from {
            continue;
        }
        match outcome {
            Ok(()) => tally.latencies.record(latency),
            Err(error) => tally.error(&error),
        }
    }
    tally
}

/// `echo`, also behind a gateway's prefix (`fixture__echo`): its answer is checked.
fn is_echo(tool: &str) -> bool {
    tool.ends_with("echo")
}

/// A tool result that is not a tool error, and for `echo` the message sent.
fn check_call(result: &Value, tool: &str, message: &str) -> anyhow::Result<()> {
    if result["isError"] == Value::Bool(true) {
        anyhow::bail!("tool error: {}", result["content"]);
    }
    if is_echo(tool) && result["content"][0]["text"].as_str() != Some(message) {
        anyhow::bail!("echo answered {} to {message:?}", result["content"]);
    }
    Ok(())
}

pub struct ListOptions {
    pub transport: Transport,
    pub target: Target,
    pub method: String,
    pub duration: Duration,
    pub min_iterations: usize,
    pub max_iterations: usize,
    pub timeout: Duration,
    pub pid: Option<u32>,
}

/// One full listing: every page, following `nextCursor`.
struct Listing {
    items: usize,
    pages: usize,
    bytes: usize,
    /// When the last page's answer had arrived in full.
    received: Instant,
}

/// Lists repeatedly (one untimed listing first) and summarises the timed ones.
pub async fn list(options: ListOptions) -> anyhow::Result<Value> {
    let probe = Probe::new(options.pid);
    let key = options
        .method
        .split('/')
        .next()
        .unwrap_or("tools")
        .to_owned();
    let mut session = timeout(
        HANDSHAKE_TIMEOUT,
        Session::connect(options.transport, &options.target),
    )
    .await
    .context("handshake timed out")??;

    let began = Instant::now();
    let first = list_once(&mut session, &options, &key).await?;
    let first_us = began.elapsed().as_micros();

    // Until the last byte of the last page arrived: the server's part. With the client's
    // own parsing of the answers (a full `Value` tree, as an SDK builds) on top, separately.
    let mut latencies = Latencies::default();
    let mut parsed = Latencies::default();
    let mark = probe.mark();
    let started = Instant::now();
    let mut last = first;
    let mut iterations = 0;
    while iterations < options.max_iterations
        && (iterations < options.min_iterations || started.elapsed() < options.duration)
    {
        let began = Instant::now();
        let listing = list_once(&mut session, &options, &key).await?;
        parsed.record(began.elapsed());
        latencies.record(listing.received.saturating_duration_since(began));
        if listing.items != last.items {
            eprintln!(
                "mcp-bench: the listing changed size: {} then {}",
                last.items, listing.items
            );
        }
        last = listing;
        iterations += 1;
    }
    let end = probe.mark();
    let summary = json!({
        "mode": "list",
        "method": options.method,
        "transport": transport_name(options.transport),
        "listings": iterations,
        "items": last.items,
        "pages": last.pages,
        "bytes": last.bytes,
        "first_us": first_us,
        "errors": 0,
    });
    let summary = merge(summary, latencies.summary());
    let summary = merge(
        summary,
        json!({"parsed_p50_us": parsed.summary()["p50_us"]}),
    );
    Ok(merge(summary, probe.report(mark, end, iterations)))
}

async fn list_once(
    session: &mut Session,
    options: &ListOptions,
    key: &str,
) -> anyhow::Result<Listing> {
    let mut listing = Listing {
        items: 0,
        pages: 0,
        bytes: 0,
        received: Instant::now(),
    };
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(cursor) => json!({"cursor": cursor}),
            None => json!({}),
        };
        let answer = timeout(options.timeout, session.request(&options.method, params))
            .await
            .with_context(|| format!("{} took over {:?}", options.method, options.timeout))??;
        listing.items += answer.result[key]
            .as_array()
            .with_context(|| format!("{} result without {key}", options.method))?
            .len();
        listing.pages += 1;
        listing.bytes += answer.bytes;
        listing.received = answer.received;
        cursor = answer.result["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok(listing);
        }
        anyhow::ensure!(listing.pages < 100_000, "more than 100,000 pages");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_results_are_checked() {
        let echo = json!({"content": [{"type": "text", "text": "hi"}]});
        assert!(check_call(&echo, "echo", "hi").is_ok());
        assert!(check_call(&echo, "echo", "other").is_err());
        assert!(check_call(&echo, "fixture__echo", "other").is_err());
        assert!(check_call(&json!({"isError": true, "content": []}), "add", "").is_err());
        assert!(check_call(&json!({"content": []}), "add", "").is_ok());
    }
}
