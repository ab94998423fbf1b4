//! Latency summaries and what `/proc` says about a server: CPU time and resident memory.
//!
//! CPU time is `utime + stime` of `/proc/PID/stat`, read at the start and end of the measured
//! window, so warm-up and handshakes are not charged to the calls; the server's descendants
//! (a gateway's stdio backends) are read the same way and reported apart.

use std::time::Duration;

use serde_json::{Value, json};

/// Latencies in microseconds.
#[derive(Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.0
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `p50_us`, `p90_us`, `p99_us`, `max_us`, `mean_us` (null when empty).
    pub fn summary(mut self) -> Value {
        self.0.sort_unstable();
        let v = &self.0;
        let pick = |q: f64| -> Option<u64> {
            // Nearest rank.
            let rank = (q * v.len() as f64).ceil() as usize;
            v.get(rank.clamp(1, v.len().max(1)) - 1).copied()
        };
        let mean = (!v.is_empty()).then(|| v.iter().sum::<u64>() as f64 / v.len() as f64);
        json!({
            "p50_us": pick(0.50),
            "p90_us": pick(0.90),
            "p99_us": pick(0.99),
            "max_us": v.last(),
            "mean_us": mean.map(|m| m.round()),
        })
    }
}

/// Clock ticks per second of `/proc/PID/stat` times.
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// `utime + stime` of a process, in ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The direct children of a process.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Every descendant of a process (a backend may run under a shell or a launcher).
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = children(pid);
    let mut i = 0;
    while i < found.len() && found.len() < 100_000 {
        let more = children(found[i]);
        found.extend(more);
        i += 1;
    }
    found
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The CPUs a process may run on (`Cpus_allowed_list`: `0`, `0-1`, `0,2-3`).
fn allowed_cpus(pid: u32) -> Vec<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    list.trim()
        .split(',')
        .flat_map(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) => (a..=b).collect(),
                _ => Vec::new(),
            }
        })
        .collect()
}

/// Busy ticks (all but idle and iowait) of the given CPUs, from `/proc/stat`.
fn busy_ticks(cpus: &[usize]) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut busy = 0;
    for line in stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let Some(Ok(cpu)) = fields.next().map(str::parse::<usize>) else {
            continue; // the all-CPUs line
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        let ticks: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = ticks.iter().take(8).sum();
        busy += total - ticks.get(3).copied().unwrap_or(0) - ticks.get(4).copied().unwrap_or(0);
    }
    Some(busy)
}

/// The server's CPU time (and its backends' and the load generator's), and how busy the CPUs
/// of each were, at one instant.
#[derive(Clone, Copy)]
pub struct CpuMark {
    server: Option<u64>,
    backends: u64,
    /// This process: the load generator.
    own: u64,
    server_cpus_busy: Option<u64>,
    /// The load generator's CPUs, when they are not the server's.
    own_cpus_busy: Option<u64>,
    at: std::time::Instant,
}

/// Reads CPU time of the server process (if any) at marks, and its memory; and the CPU time
/// of its backends: its descendants, or a backend process of its own.
pub struct Probe {
    pid: Option<u32>,
    backend: Option<u32>,
    ticks_per_s: u64,
}

/// Where the server and the load generator run.
struct Placement {
    server: Vec<usize>,
    own: Vec<usize>,
}

impl Placement {
    fn of(pid: u32) -> Self {
        Self {
            server: allowed_cpus(pid),
            own: allowed_cpus(std::process::id()),
        }
    }

    /// Whether the load generator may run on the server's CPUs.
    fn shared(&self) -> bool {
        self.own.iter().any(|cpu| self.server.contains(cpu))
    }
}

impl Probe {
    pub fn new(pid: Option<u32>) -> Self {
        Self {
            pid,
            backend: None,
            ticks_per_s: clock_ticks(),
        }
    }

    /// Counts `backend` (a server the measured one talks to over HTTP) as its backend.
    pub fn with_backend(mut self, backend: Option<u32>) -> Self {
        self.backend = backend;
        self
    }

    pub fn mark(&self) -> CpuMark {
        let at = std::time::Instant::now();
        let own = cpu_ticks(std::process::id()).unwrap_or(0);
        let Some(pid) = self.pid else {
            return CpuMark {
                server: None,
                backends: 0,
                own,
                server_cpus_busy: None,
                own_cpus_busy: None,
                at,
            };
        };
        let backends = descendants(pid).into_iter().chain(self.backend);
        let placement = Placement::of(pid);
        CpuMark {
            server: cpu_ticks(pid),
            backends: backends.filter_map(cpu_ticks).sum(),
            own,
            server_cpus_busy: busy_ticks(&placement.server),
            own_cpus_busy: (!placement.shared())
                .then(|| busy_ticks(&placement.own))
                .flatten(),
            at,
        }
    }

    /// The share of the server's CPUs, and of the load generator's when they are others, used
    /// by other processes between two marks (everything but the server, its backends and this
    /// load generator): the noise a shared machine adds, 0 to 1 per CPU.
    fn other_load(&self, start: &CpuMark, end: &CpuMark) -> (Option<f64>, Option<f64>) {
        let Some(placement) = self.pid.map(Placement::of) else {
            return (None, None);
        };
        let seconds = end.at.duration_since(start.at).as_secs_f64();
        let share = |busy: u64, ours: u64, cpus: usize| -> Option<f64> {
            (seconds > 0.0).then(|| {
                let other = busy.saturating_sub(ours) as f64 / self.ticks_per_s as f64;
                (other / seconds / cpus.max(1) as f64 * 100.0).round() / 100.0
            })
        };
        let delta = |a: Option<u64>, b: Option<u64>| b.zip(a).map(|(b, a)| b.saturating_sub(a));
        let own = end.own.saturating_sub(start.own);
        let server = delta(start.server, end.server).map(|server| {
            server
                + end.backends.saturating_sub(start.backends)
                + if placement.shared() { own } else { 0 }
        });
        let on_server = delta(start.server_cpus_busy, end.server_cpus_busy)
            .zip(server)
            .and_then(|(busy, ours)| share(busy, ours, placement.server.len()));
        let on_own = delta(start.own_cpus_busy, end.own_cpus_busy)
            .and_then(|busy| share(busy, own, placement.own.len()));
        (on_server, on_own)
    }

    /// CPU per operation between two marks, and memory now.
    pub fn report(&self, start: CpuMark, end: CpuMark, operations: usize) -> Value {
        let (on_server, on_loadgen) = self.other_load(&start, &end);
        let per_op = |ticks: u64| -> Option<f64> {
            (operations > 0).then(|| {
                let us = ticks as f64 * 1e6 / self.ticks_per_s as f64;
                (us / operations as f64 * 10.0).round() / 10.0
            })
        };
        let server = start
            .server
            .zip(end.server)
            .and_then(|(a, b)| per_op(b.saturating_sub(a)));
        // Backends that started or ended in the window make this approximate.
        let backends = self
            .pid
            .and_then(|_| per_op(end.backends.saturating_sub(start.backends)));
        json!({
            "cpu_us_per_op": server,
            "backend_cpu_us_per_op": backends,
            "cpu_s": start.server.zip(end.server)
                .map(|(a, b)| b.saturating_sub(a) as f64 / self.ticks_per_s as f64),
            "other_load": on_server,
            "other_load_loadgen": on_loadgen,
            "rss_kb": self.pid.and_then(|p| status_kb(p, "VmRSS")),
            "hwm_kb": self.pid.and_then(|p| status_kb(p, "VmHWM")),
        })
    }

    pub fn rss_kb(&self) -> Option<u64> {
        self.pid.and_then(|p| status_kb(p, "VmRSS"))
    }
}

/// Merges the fields of `extra` into `base` (both objects).
pub fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s["p50_us"], 50);
        assert_eq!(s["p99_us"], 99);
        assert_eq!(s["max_us"], 100);
        assert_eq!(Latencies::default().summary()["p50_us"], Value::Null);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(status_kb(pid, "VmRSS").is_some_and(|kb| kb > 0));
        let cpus = allowed_cpus(pid);
        assert!(!cpus.is_empty());
        assert!(busy_ticks(&cpus).is_some());
    }
}
