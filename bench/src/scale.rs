//! Probes of scale rather than throughput: how long until every backend is ready, how fast
//! the ops endpoints answer, and what many open streams cost the server in memory.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep, timeout};

use crate::http::{self, Client, Target};
use crate::mcp::{self, Transport};
use crate::stats::{Latencies, Probe, merge, status_kb};

/// Seconds since `since_ns` (Unix time in ns, taken by the script when it started the server),
/// or since this process started when not given.
struct Origin {
    since_ns: Option<u128>,
    started: Instant,
}

impl Origin {
    fn elapsed_s(&self) -> f64 {
        match self.since_ns {
            Some(since) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                now.saturating_sub(since) as f64 / 1e9
            }
            None => self.started.elapsed().as_secs_f64(),
        }
    }
}

/// One GET, its status checked; the body.
async fn get(client: &mut Client, path: &str) -> anyhow::Result<Bytes> {
    let request = client.target.request(
        Method::GET,
        path,
        &[("accept", "application/json")],
        Bytes::new(),
    );
    let response = client.send(request).await?;
    let status = response.status();
    let body = http::read_all(response.into_body()).await?;
    anyhow::ensure!(status.is_success(), "GET {path}: HTTP {status}");
    Ok(body)
}

pub struct ReadyOptions {
    pub target: Target,
    pub expect: usize,
    pub since_ns: Option<u128>,
    pub timeout: Duration,
    pub interval: Duration,
    pub pid: Option<u32>,
}

/// Polls `/api/v1/backends` until `expect` backends are ready (or the timeout).
pub async fn ready(options: ReadyOptions) -> anyhow::Result<Value> {
    let origin = Origin {
        since_ns: options.since_ns,
        started: Instant::now(),
    };
    let deadline = Instant::now() + options.timeout;
    let mut client = Client::new(options.target.clone());
    let mut polls = Latencies::default();
    let (mut listening, mut first_ready, mut ready_at) = (None, None, None);
    let (mut ready, mut down, mut total, mut tools) = (0, 0, 0, 0);
    let mut last_progress = Instant::now();
    while Instant::now() < deadline {
        let began = Instant::now();
        match timeout(
            Duration::from_secs(30),
            get(&mut client, "/api/v1/backends"),
        )
        .await
        {
            Ok(Ok(body)) => {
                polls.record(began.elapsed());
                listening.get_or_insert_with(|| origin.elapsed_s());
                let list: Value = serde_json::from_slice(&body).context("backends JSON")?;
                let list = list.as_array().context("backends is not an array")?;
                total = list.len();
                ready = list.iter().filter(|b| b["state"] == "ready").count();
                down = list.iter().filter(|b| b["state"] == "down").count();
                tools = list.iter().filter_map(|b| b["tools"].as_u64()).sum::<u64>();
                if ready > 0 {
                    first_ready.get_or_insert_with(|| origin.elapsed_s());
                }
                if total >= options.expect && ready >= options.expect {
                    ready_at = Some(origin.elapsed_s());
                    break;
                }
            }
            Ok(Err(_)) | Err(_) => client.reset(), // not listening yet
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "mcp-bench: {:.1} s: {ready}/{} backends ready, {down} down",
                origin.elapsed_s(),
                options.expect
            );
            last_progress = Instant::now();
        }
        sleep(options.interval).await;
    }
    let polls = polls.summary();
    Ok(json!({
        "mode": "ready",
        "expect": options.expect,
        "listening_s": listening,
        "first_ready_s": first_ready,
        "ready_s": ready_at,
        "timed_out": ready_at.is_none(),
        "backends": total,
        "ready": ready,
        "down": down,
        "tools": tools,
        "poll_p50_us": polls["p50_us"],
        "poll_max_us": polls["max_us"],
        "rss_kb": options.pid.and_then(|p| status_kb(p, "VmRSS")),
        "hwm_kb": options.pid.and_then(|p| status_kb(p, "VmHWM")),
        "errors": usize::from(ready_at.is_none()),
    }))
}

/// GETs `target` (its path) repeatedly for `duration` or `count` times, whichever first.
pub async fn get_latency(
    target: Target,
    count: usize,
    duration: Duration,
    pid: Option<u32>,
) -> anyhow::Result<Value> {
    let probe = Probe::new(pid);
    let mut client = Client::new(target.clone());
    let mut latencies = Latencies::default();
    let (mut errors, mut bytes) = (0, 0);
    let mut samples: Vec<String> = Vec::new();
    let mark = probe.mark();
    let started = Instant::now();
    let mut done = 0;
    while done < count && started.elapsed() < duration {
        done += 1;
        let began = Instant::now();
        match timeout(Duration::from_secs(30), get(&mut client, &target.path)).await {
            Ok(Ok(body)) => {
                latencies.record(began.elapsed());
                bytes = body.len();
            }
            Ok(Err(error)) => {
                errors += 1;
                if samples.len() < 3 {
                    samples.push(format!("{error:#}"));
                }
            }
            Err(_) => {
                errors += 1;
                client.reset();
            }
        }
    }
    let requests = latencies.len();
    let summary = json!({
        "mode": "get",
        "path": target.path,
        "requests": requests,
        "bytes": bytes,
        "errors": errors,
        "error_samples": samples,
    });
    let summary = merge(summary, latencies.summary());
    Ok(merge(summary, probe.report(mark, probe.mark(), requests)))
}

pub struct StreamsOptions {
    pub transport: Transport,
    pub target: Target,
    pub count: usize,
    pub parallel: usize,
    pub hold: Duration,
    pub pid: Option<u32>,
}

/// The sessions `/readyz` reports, if it says.
async fn sessions(target: &Target) -> Option<u64> {
    let mut client = Client::new(target.clone());
    let body = timeout(Duration::from_secs(10), get(&mut client, "/readyz"))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice::<Value>(&body).ok()?["sessions"].as_u64()
}

/// Opens `count` streams, holds them, closes them; the server's memory at each step.
pub async fn streams(options: StreamsOptions) -> anyhow::Result<Value> {
    let probe = Probe::new(options.pid);
    let sessions_before = sessions(&options.target).await;
    let rss_before = probe.rss_kb();
    let (close_tx, close_rx) = watch::channel(false);
    let permits = std::sync::Arc::new(Semaphore::new(options.parallel.max(1)));
    let began = Instant::now();
    let mut opening = Vec::with_capacity(options.count);
    for _ in 0..options.count {
        let permits = permits.clone();
        let target = options.target.clone();
        let close = close_rx.clone();
        let transport = options.transport;
        opening.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            timeout(
                Duration::from_secs(30),
                mcp::hold_stream(transport, &target, close),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("opening the stream timed out")))
        }));
    }
    let mut held = Vec::new();
    let mut samples: Vec<String> = Vec::new();
    let mut failed = 0;
    for task in opening {
        match task.await {
            Ok(Ok(handle)) => held.push(handle),
            Ok(Err(error)) => {
                failed += 1;
                let text = format!("{error:#}");
                if samples.len() < 3 && !samples.contains(&text) {
                    samples.push(text);
                }
            }
            Err(_) => failed += 1,
        }
    }
    let open_s = began.elapsed().as_secs_f64();
    sleep(Duration::from_secs(1)).await;
    let rss_open = probe.rss_kb();
    let sessions_open = sessions(&options.target).await;
    sleep(options.hold).await;

    let closing = Instant::now();
    let _ = close_tx.send(true);
    for handle in held.iter_mut() {
        let _ = timeout(Duration::from_secs(30), handle).await;
    }
    // Wait (bounded) for the server to see every session end.
    let mut sessions_after = sessions(&options.target).await;
    while sessions_after > sessions_before && closing.elapsed() < Duration::from_secs(20) {
        sleep(Duration::from_millis(200)).await;
        sessions_after = sessions(&options.target).await;
    }
    let close_s = closing.elapsed().as_secs_f64();
    sleep(Duration::from_secs(2)).await;
    let rss_after = probe.rss_kb();
    let opened = held.len();
    let per_stream = rss_before
        .zip(rss_open)
        .filter(|_| opened > 0)
        .map(|(a, b)| b.saturating_sub(a) as f64 / opened as f64);
    Ok(json!({
        "mode": "streams",
        "transport": match options.transport { Transport::Mcp => "mcp", Transport::Sse => "sse" },
        "streams": opened,
        "errors": failed,
        "error_samples": samples,
        "open_s": open_s,
        "close_s": close_s,
        "sessions_before": sessions_before,
        "sessions_open": sessions_open,
        "sessions_after": sessions_after,
        "rss_before_kb": rss_before,
        "rss_open_kb": rss_open,
        "rss_after_kb": rss_after,
        "kb_per_stream": per_stream.map(|kb| (kb * 10.0).round() / 10.0),
        "hwm_kb": options.pid.and_then(|p| status_kb(p, "VmHWM")),
    }))
}
