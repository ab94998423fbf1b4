//! The end-of-run tables, built from the JSON lines the other subcommands printed.
//!
//! Throughput rows are compared with the direct baseline at the same concurrency; scale
//! results are grouped by their label (a catalog size, the many-backends run, the streams).

use std::fmt::Write as _;

use serde_json::Value;

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn ms(v: &Value) -> String {
    f(v).map_or_else(|| "-".into(), |us| format!("{:.2}", us / 1000.0))
}

fn mb(kb: &Value) -> String {
    f(kb).map_or_else(|| "-".into(), |kb| format!("{:.1}", kb / 1024.0))
}

fn num(v: &Value, decimals: usize) -> String {
    f(v).map_or_else(|| "-".into(), |x| format!("{x:.decimals$}"))
}

/// Other processes' share of the server's CPUs, and of the load generator's when those are
/// others: `12%` or `12%/40%`.
fn noise(r: &Value) -> String {
    let pct = |v: &Value| f(v).map(|x| format!("{:.0}%", x * 100.0));
    match (pct(&r["other_load"]), pct(&r["other_load_loadgen"])) {
        (Some(server), Some(loadgen)) => format!("{server}/{loadgen}"),
        (Some(server), None) => server,
        _ => "-".into(),
    }
}

/// Renders the tables for `records`, comparing calls/s against the runs labelled `baseline`.
pub fn render(records: &[Value], baseline: &str) -> String {
    let mut out = String::new();
    // Grouped by configuration (in order of first appearance), then by concurrency.
    let mut calls: Vec<&Value> = records.iter().filter(|r| r["mode"] == "call").collect();
    let mut order: Vec<&str> = Vec::new();
    for r in &calls {
        let label = r["label"].as_str().unwrap_or("");
        if !order.contains(&label) {
            order.push(label);
        }
    }
    calls.sort_by_key(|r| {
        let label = r["label"].as_str().unwrap_or("");
        let group = order.iter().position(|l| *l == label).unwrap_or(usize::MAX);
        (group, r["concurrency"].as_u64().unwrap_or(0))
    });
    if !calls.is_empty() {
        let width = calls
            .iter()
            .filter_map(|r| r["label"].as_str())
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(13)
            .max(13);
        let _ = writeln!(
            out,
            "{:<width$} {:>4} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8} {:>6} {:>9} {:>9}",
            "configuration",
            "c",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "CPU µs/call",
            "backend µs",
            "RSS MB",
            "errors",
            "vs direct",
            "noise"
        );
        for r in &calls {
            let label = r["label"].as_str().unwrap_or("");
            let direct = calls
                .iter()
                .find(|b| b["label"] == baseline && b["concurrency"] == r["concurrency"])
                .and_then(|b| f(&b["calls_per_s"]))
                .filter(|x| *x > 0.0);
            let ratio = direct
                .zip(f(&r["calls_per_s"]))
                .map_or_else(|| "-".into(), |(d, x)| format!("{:.2}×", x / d));
            let _ = writeln!(
                out,
                "{:<width$} {:>4} {:>9} {:>8} {:>8} {:>8} {:>11} {:>10} {:>8} {:>6} {:>9} {:>9}",
                label,
                num(&r["concurrency"], 0),
                num(&r["calls_per_s"], 0),
                ms(&r["p50_us"]),
                ms(&r["p99_us"]),
                ms(&r["max_us"]),
                num(&r["cpu_us_per_op"], 1),
                num(&r["backend_cpu_us_per_op"], 1),
                mb(&r["rss_kb"]),
                num(&r["errors"], 0),
                ratio,
                noise(r)
            );
        }
    }
    scale(&mut out, records);
    out
}

fn scale(out: &mut String, records: &[Value]) {
    let mut labels: Vec<&str> = Vec::new();
    for r in records.iter().filter(|r| r["mode"] != "call") {
        let label = r["label"].as_str().unwrap_or("");
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    if labels.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nScale");
    for label in labels {
        let _ = writeln!(out, "{label}");
        for r in records.iter().filter(|r| r["label"] == label) {
            let line = match r["mode"].as_str() {
                Some("ready") => format!(
                    "  start-up: {}/{} backends ready ({} down, {} tools) in {} s from gateway \
                     start (listening {} s, first ready {} s){}; RSS {} MB",
                    num(&r["ready"], 0),
                    num(&r["expect"], 0),
                    num(&r["down"], 0),
                    num(&r["tools"], 0),
                    num(&r["ready_s"], 2),
                    num(&r["listening_s"], 2),
                    num(&r["first_ready_s"], 2),
                    if r["timed_out"] == true {
                        " TIMED OUT"
                    } else {
                        ""
                    },
                    mb(&r["rss_kb"]),
                ),
                Some("list") => format!(
                    "  {}: {} items, {} page(s), {:.2} MB; p50 {} ms, p99 {} ms, max {} ms \
                     (first {} ms, {} listings; p50 {} ms with the client's parsing); \
                     CPU {} ms/listing; RSS {} MB (peak {} MB)",
                    r["method"].as_str().unwrap_or("list"),
                    num(&r["items"], 0),
                    num(&r["pages"], 0),
                    f(&r["bytes"]).unwrap_or(0.0) / 1e6,
                    ms(&r["p50_us"]),
                    ms(&r["p99_us"]),
                    ms(&r["max_us"]),
                    ms(&r["first_us"]),
                    num(&r["listings"], 0),
                    ms(&r["parsed_p50_us"]),
                    f(&r["cpu_us_per_op"])
                        .map_or_else(|| "-".into(), |us| format!("{:.1}", us / 1000.0)),
                    mb(&r["rss_kb"]),
                    mb(&r["hwm_kb"]),
                ),
                Some("get") => format!(
                    "  GET {}: {} bytes; p50 {} ms, p99 {} ms, max {} ms ({} requests, {} errors)",
                    r["path"].as_str().unwrap_or("?"),
                    num(&r["bytes"], 0),
                    ms(&r["p50_us"]),
                    ms(&r["p99_us"]),
                    ms(&r["max_us"]),
                    num(&r["requests"], 0),
                    num(&r["errors"], 0),
                ),
                Some("streams") => format!(
                    "  {} streams: {} open ({} failed) in {} s; RSS {} → {} MB open ({} KB/stream), \
                     {} MB after close ({} s, sessions {} → {} → {}); peak {} MB",
                    r["transport"].as_str().unwrap_or("?"),
                    num(&r["streams"], 0),
                    num(&r["errors"], 0),
                    num(&r["open_s"], 1),
                    mb(&r["rss_before_kb"]),
                    mb(&r["rss_open_kb"]),
                    num(&r["kb_per_stream"], 1),
                    mb(&r["rss_after_kb"]),
                    num(&r["close_s"], 1),
                    num(&r["sessions_before"], 0),
                    num(&r["sessions_open"], 0),
                    num(&r["sessions_after"], 0),
                    mb(&r["hwm_kb"]),
                ),
                Some("failed") => format!("  FAILED: {}", r["error"].as_str().unwrap_or("?")),
                _ => continue,
            };
            let _ = writeln!(out, "{line}");
            for sample in r["error_samples"].as_array().into_iter().flatten().take(3) {
                let _ = writeln!(out, "    error: {}", sample.as_str().unwrap_or("?"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ratios_are_against_the_baseline_at_the_same_concurrency() {
        let records = vec![
            json!({"mode": "call", "label": "direct", "concurrency": 1, "calls_per_s": 1000.0}),
            json!({"mode": "call", "label": "direct", "concurrency": 8, "calls_per_s": 4000.0}),
            json!({"mode": "call", "label": "gw", "concurrency": 8, "calls_per_s": 2000.0}),
            json!({"mode": "ready", "label": "catalog 2x5", "expect": 2, "ready": 2, "ready_s": 0.5}),
        ];
        let table = render(&records, "direct");
        let gw = table
            .lines()
            .find(|l| l.starts_with("gw"))
            .unwrap_or_default();
        assert!(gw.contains(" 0.50× "), "{table}");
        assert!(
            table.contains("catalog 2x5\n  start-up: 2/2 backends ready"),
            "{table}"
        );
    }
}
