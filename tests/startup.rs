//! Start-up at scale: backends that start a process take turns (`startupConcurrency`), and the
//! gateway serves HTTP and logs its progress while they do.
//!
//! The backends here are gated: each records that its process started, then waits until the
//! test opens its gate (a FIFO) before it becomes the fixture server. So none is ready until
//! the test says so, and what started when is known exactly.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Running, WAIT, settings, stdio_spec, workspace_bin};
use mcp_gateway::relay::Gateway;
use mcp_gateway::spec::{BackendSpec, GatewaySettings};
use mcp_gateway::upstream::State;
use serde_json::{Value, json};

/// Records `$1` in `started`, waits for a line on its gate, then runs the fixture as `$1`.
const GATED: &str = r#"mkfifo "$GATES/$1" && echo "$1" >>"$GATES/started" && read -r _ <"$GATES/$1" && exec "$FIXTURE" --name "$1""#;

/// A stdio backend running [`GATED`] with its gates in `dir`.
fn gated(dir: &Path, name: &str) -> BackendSpec {
    let mut spec = stdio_spec(name, PathBuf::from("sh"), &["-c", GATED, "sh", name]);
    if let mcp_gateway::spec::TransportSpec::Stdio(p) = &mut spec.transport {
        p.env.insert("GATES".into(), dir.display().to_string());
        p.env.insert(
            "FIXTURE".into(),
            workspace_bin("mcp-fixture").display().to_string(),
        );
    }
    spec
}

/// The names of the backends whose process started, in order, once there are at least `n`.
async fn started(dir: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let names: Vec<String> = std::fs::read_to_string(dir.join("started"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if names.len() >= n {
            return names;
        }
        assert!(
            Instant::now() < deadline,
            "{n} backend processes did not start within {WAIT:?}; started: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Let backend `name`'s process go on to become the fixture.
async fn open_gate(dir: &Path, name: &str) {
    use tokio::io::AsyncWriteExt as _;
    let gate = dir.join(name);
    let deadline = Instant::now() + WAIT;
    // Without a reader yet, a FIFO does not open for writing (ENXIO) rather than block.
    let mut writer = loop {
        match tokio::net::unix::pipe::OpenOptions::new().open_sender(&gate) {
            Ok(w) => break w,
            Err(e) => assert!(Instant::now() < deadline, "gate {name}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    writer.write_all(b"go\n").await.expect("write to the gate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_take_turns_to_start() {
    const BACKENDS: usize = 8;
    const TURNS: usize = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::new(GatewaySettings {
        startup_concurrency: TURNS,
        ..settings()
    });
    let names: Vec<String> = (0..BACKENDS).map(|i| format!("b{i}")).collect();
    gw.reconcile(names.iter().map(|n| gated(dir.path(), n)).collect())
        .await;

    let mut opened: Vec<String> = Vec::new();
    while opened.len() < BACKENDS {
        // Every backend opened so far is ready and gave its turn back; those still at their
        // gate hold theirs. So exactly `TURNS` more may have started, and no more.
        let now = started(dir.path(), (opened.len() + TURNS).min(BACKENDS)).await;
        assert!(
            now.len() <= opened.len() + TURNS,
            "{} processes started with {} backends ready and {TURNS} turns: {now:?}",
            now.len(),
            opened.len()
        );
        for b in gw.upstreams.all() {
            if !opened.iter().any(|o| **o == *b.name) {
                assert_eq!(b.status().state, State::Starting, "{}", b.name);
            }
        }
        let next = now
            .into_iter()
            .find(|n| !opened.contains(n))
            .expect("a backend at its gate");
        open_gate(dir.path(), &next).await;
        let backend = gw.upstreams.get(&next).expect("backend");
        let mut status = backend.watch_status();
        tokio::time::timeout(WAIT, status.wait_for(|s| s.state == State::Ready))
            .await
            .expect("ready in time")
            .expect("status");
        opened.push(next);
    }
    tokio::time::timeout(WAIT, gw.settled())
        .await
        .expect("settled");
    let census = gw.upstreams.census();
    assert_eq!((census.ready, census.total()), (BACKENDS, BACKENDS));
    gw.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_without_a_process_needs_no_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::new(GatewaySettings {
        startup_concurrency: 1,
        ..settings()
    });
    // The only turn is held by a process at its gate; an HTTP backend connects regardless
    // (and fails at once: nothing listens there).
    let mut remote = common::fixture("remote");
    remote.transport =
        mcp_gateway::spec::TransportSpec::StreamableHttp(mcp_gateway::spec::HttpSpec {
            url: "http://127.0.0.1:9/mcp".into(),
            headers: Default::default(),
        });
    gw.apply(gated(dir.path(), "a"));
    started(dir.path(), 1).await;
    gw.apply(remote);
    let remote = gw.upstreams.get("remote").expect("remote");
    tokio::time::timeout(WAIT, remote.settled())
        .await
        .expect("the remote backend did not wait for a turn");
    assert_eq!(remote.status().state, State::Down);
    assert_eq!(
        gw.upstreams.get("a").expect("a").status().state,
        State::Starting
    );
    gw.stop(Duration::from_secs(1)).await;
}

async fn get_json(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect(url);
    let status = resp.status().as_u16();
    let body = serde_json::from_str(&resp.text().await.expect("body")).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_and_reports_progress_while_backends_start() {
    const BACKENDS: usize = 5;
    let dir = tempfile::tempdir().expect("tempdir");
    let servers: serde_json::Map<String, Value> = (0..BACKENDS)
        .map(|i| {
            let name = format!("b{i}");
            let spec = json!({
                "command": "sh",
                "args": ["-c", GATED, "sh", &name],
                "env": {
                    "GATES": dir.path().display().to_string(),
                    "FIXTURE": workspace_bin("mcp-fixture").display().to_string(),
                },
            });
            (name, spec)
        })
        .collect();
    let config = dir.path().join("gateway.json");
    let text = json!({"gateway": {"startupConcurrency": 2}, "mcpServers": servers});
    std::fs::write(&config, text.to_string()).expect("config");
    let mut gw = Running::start(&["--config", config.to_str().expect("utf-8")], &[]);

    // Serving while no backend is ready yet: the probes, the metrics and the admin API.
    let (status, _) = get_json(&format!("{}/healthz", gw.base)).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + WAIT;
    let backends = loop {
        let (status, body) = get_json(&format!("{}/readyz", gw.base)).await;
        if status == 200 {
            break body["backends"].as_array().cloned().expect("backends");
        }
        assert_eq!(body["ready"], false, "{body}");
        assert!(Instant::now() < deadline, "not ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(backends.len(), BACKENDS);
    assert!(
        backends.iter().all(|b| b["state"] == "starting"),
        "{backends:?}"
    );
    let (status, listed) = get_json(&format!("{}/api/v1/backends", gw.base)).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(BACKENDS));
    let metrics = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);

    // Two processes at their gates, three waiting for a turn: all five are starting.
    started(dir.path(), 2).await;
    gw.wait_for(|l| l.contains("starting backends: 0/5 ready, 0 down, 5 starting"));

    let mut opened = 0;
    while opened < BACKENDS {
        let now = started(dir.path(), opened + 1).await;
        for name in &now[opened..] {
            open_gate(dir.path(), name).await;
        }
        opened = now.len();
    }
    let done = gw.wait_for(|l| l.contains("backends started in"));
    assert!(done.ends_with("5/5 ready, 0 down"), "{done}");
    gw.wait_for(|l| l.contains("total") && l.contains("5 backends") && l.contains("5 ready"));
    gw.terminate();
}

/// The line of `log` that says `what` about backend `name`, and where it is.
fn event<'l>(log: &'l str, name: &str, what: &str) -> Option<(usize, &'l str)> {
    log.lines()
        .enumerate()
        .find(|(_, l)| l.contains(what) && l.contains(&format!("backend={name} ")))
}

/// The seconds in `… in 2.1 s …` or `… after 0.3 s…`, as the line writes them.
fn seconds_in(line: &str, after: &str) -> f64 {
    let at = line.find(after).expect(after) + after.len();
    let number: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    assert!(
        line[at + number.len()..].starts_with(" s"),
        "no duration in {line}"
    );
    number.parse().expect("seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_logs_starting_then_ready_or_failed_with_the_time_it_took() {
    const SECRET: &str = "s3cr3t-9f2a7c";
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.json");
    let text = json!({"mcpServers": {
        "gated": {
            "command": "sh",
            "args": ["-c", GATED, "sh", "gated"],
            "env": {
                "GATES": dir.path().display().to_string(),
                "FIXTURE": workspace_bin("mcp-fixture").display().to_string(),
            },
        },
        // Fails at once, saying its secret: the reason is logged, the secret is not.
        "broken": {
            "command": "sh",
            "args": ["-c", "echo \"token=$API_TOKEN\" >&2; exit 3"],
            "env": {"API_TOKEN": SECRET},
        },
    }});
    std::fs::write(&config, text.to_string()).expect("config");
    let mut gw = Running::start(&["--config", config.to_str().expect("utf-8")], &[]);

    gw.wait_for(|l| l.contains("backend failed after") && l.contains("backend=broken "));
    started(dir.path(), 1).await;
    let log = gw.stderr();
    let (starting, _) = event(&log, "broken", "backend starting").expect("broken starting");
    let (failed, line) = event(&log, "broken", "backend failed after").expect("broken failed");
    assert!(starting < failed, "{log}");
    seconds_in(line, "backend failed after ");
    assert!(
        line.contains("exit status: 3") && line.contains("token=***"),
        "the reason, redacted: {line}"
    );
    assert!(!log.contains(SECRET), "{log}");
    // Still at its gate: starting, and nothing more.
    let (gated_starting, _) = event(&log, "gated", "backend starting").expect("gated starting");
    assert!(event(&log, "gated", "backend ready").is_none(), "{log}");

    open_gate(dir.path(), "gated").await;
    gw.wait_for(|l| l.contains("backend ready in") && l.contains("backend=gated "));
    let log = gw.stderr();
    let (ready, line) = event(&log, "gated", "backend ready in").expect("gated ready");
    assert!(gated_starting < ready, "{log}");
    let took = seconds_in(line, "backend ready in ");
    assert!(took < WAIT.as_secs_f64(), "{line}");
    // The table says the same: each backend's time, templates apart from resources.
    let total = gw.wait_for(|l| l.trim_start().starts_with("total") && l.contains("backends"));
    let header = gw.wait_for(|l| l.contains("BACKEND"));
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "BACKEND",
            "TRANSPORT",
            "STATE",
            "TIME",
            "TOOLS",
            "PROMPTS",
            "RESOURCES",
            "TEMPLATES"
        ]
    );
    assert!(total.contains("2 backends"), "{total}");
    gw.terminate();
}

/// A process whose output (one stream of it) is collected as it comes.
struct Captured {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Captured {
    /// Start `cmd`, collecting its stdout (`stderr` false) or its stderr.
    fn spawn(mut cmd: std::process::Command, stderr: bool) -> Captured {
        use std::io::Read as _;
        use std::process::Stdio;
        cmd.stdin(Stdio::null())
            .env_remove("RUST_LOG")
            .env_remove("MCP_GATEWAY_LOG")
            .env_remove("MCP_GATEWAY_LOG_FORMAT")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        if stderr {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("start");
        let mut pipe: Box<dyn std::io::Read + Send> = if stderr {
            Box::new(child.stderr.take().expect("stderr"))
        } else {
            Box::new(child.stdout.take().expect("stdout"))
        };
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        Captured { child, out }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().expect("lock")).into_owned()
    }

    /// All the output so far, once it satisfies `pred` (polled until [`WAIT`] runs out).
    fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text();
            if pred(&text) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited ({status}):\n{text:?}");
            }
            assert!(Instant::now() < deadline, "not within {WAIT:?}:\n{text:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to `pid`, then wait for this process to end.
    fn stop(&mut self, pid: u32) {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config of the fixture as `fx`, and a backend `gated` (see [`GATED`]) if `gate`.
fn fixture_config(dir: &Path, gate: bool) -> PathBuf {
    let fixture = workspace_bin("mcp-fixture").display().to_string();
    let mut servers = json!({"fx": {"command": fixture, "args": ["--name", "fx"]}});
    if gate {
        servers["gated"] = json!({
            "command": "sh",
            "args": ["-c", GATED, "sh", "gated"],
            "env": {"GATES": dir.display().to_string(), "FIXTURE": fixture},
        });
    }
    let config = dir.join("gateway.json");
    std::fs::write(&config, json!({"mcpServers": servers}).to_string()).expect("config");
    config
}

/// `mcp-gateway serve --config CONFIG` on a pseudo-terminal (`script` gives it one and copies
/// the screen's bytes to its stdout), with `env`; the gateway's pid is written to `pid`.
fn on_terminal(config: &Path, pid: &Path, env: &[(&str, &str)]) -> Captured {
    let command = format!(
        "echo $$ >'{}' && exec '{}' serve --host 127.0.0.1 --port 0 --config '{}'",
        pid.display(),
        env!("CARGO_BIN_EXE_mcp-gateway"),
        config.display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qfec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Captured::spawn(cmd, false)
}

fn pid_in(file: &Path) -> u32 {
    let text = std::fs::read_to_string(file).expect("pid file");
    text.trim().parse().expect("pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_table_is_live_then_final_and_in_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path(), true);
    let pid = dir.path().join("pid");
    let mut term = on_terminal(&config, &pid, &[]);

    // While `gated` waits at its gate, the live view shows it starting.
    started(dir.path(), 1).await;
    term.wait_for(|t| t.contains("\x1b[?7l") && t.contains("\x1b[33m starting"));
    open_gate(dir.path(), "gated").await;
    // The final table replaces the live view in place (erase, then the table).
    let screen = term.wait_for(|t| {
        t.rfind("\x1b[J\x1b[1mmcp-gateway ")
            .is_some_and(|at| t[at..].contains("2 ready"))
    });
    term.stop(pid_in(&pid));

    assert!(
        !screen.contains("\\x1b"),
        "escape codes written as text:\n{screen:?}"
    );
    let last = &screen[screen
        .rfind("\x1b[J\x1b[1mmcp-gateway ")
        .expect("final table")..];
    let gated = last
        .lines()
        .find(|l| l.trim_start().starts_with("gated"))
        .expect("gated's row");
    assert!(gated.contains("\x1b[32m ready"), "green: {gated:?}");
    assert!(last.contains("\x1b[1m  BACKEND"), "a bold header: {last:?}");
    // The live view showed the progress: no start-up lines scrolled past it.
    assert!(!screen.contains("backend starting"), "{screen:?}");
    // Log lines are coloured too, not escaped.
    assert!(screen.contains("\x1b[32m INFO\x1b[0m"), "{screen:?}");
}

#[test]
fn no_colour_on_a_terminal_with_no_color_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path(), false);
    let pid = dir.path().join("pid");
    let mut term = on_terminal(&config, &pid, &[("NO_COLOR", "1")]);
    let screen = term.wait_for(|t| t.contains("1 ready"));
    term.stop(pid_in(&pid));
    assert!(screen.contains("BACKEND"), "{screen:?}");
    for sgr in ["\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[32m"] {
        assert!(!screen.contains(sgr), "{sgr:?} in {screen:?}");
    }
}

#[test]
fn into_a_pipe_the_table_is_plain_text_at_any_log_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path(), false);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"));
    cmd.args([
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-level",
        "warn",
    ])
    .arg("--config")
    .arg(&config);
    let mut gw = Captured::spawn(cmd, true);
    let out = gw.wait_for(|t| {
        t.lines()
            .any(|l| l.contains("total") && l.contains("1 ready"))
    });
    let id = gw.child.id();
    gw.stop(id);
    assert!(out.starts_with("mcp-gateway "), "{out:?}");
    assert!(out.contains("BACKEND") && out.contains("/mcp"), "{out:?}");
    assert!(!out.contains('\x1b'), "escape codes in a pipe: {out:?}");
    assert!(!out.contains(" INFO "), "the level is warn: {out:?}");
}
