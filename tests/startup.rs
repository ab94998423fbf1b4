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
