//! Start-up at scale: backends that start a process take turns (`startupConcurrency`).
//!
//! The backends here are gated: each records that its process started, then waits until the
//! test opens its gate (a FIFO) before it becomes the fixture server. So none is ready until
//! the test says so, and what started when is known exactly.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{WAIT, settings, stdio_spec, workspace_bin};
use mcp_gateway::relay::Gateway;
use mcp_gateway::spec::{BackendSpec, GatewaySettings};
use mcp_gateway::upstream::State;

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
