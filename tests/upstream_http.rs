//! A streamable-HTTP backend (the fixture served by rmcp's HTTP server): calls, progress and
//! sampling travel over the backend's POST response streams, and a backend restart is noticed
//! and reconnected.

mod common;

use std::process::Stdio;

use common::*;
use mcp_gateway::spec::{BackendSpec, HttpSpec, ToolFilter, TransportSpec};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Start the fixture over streamable HTTP; returns the child and its URL.
async fn http_fixture(port: u16) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(workspace_bin("mcp-fixture"))
        .args([
            "--transport",
            "http",
            "--port",
            &port.to_string(),
            "--name",
            "web",
        ])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start fixture");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("mcp-fixture listening on ") {
                return url.to_owned();
            }
        }
        panic!("fixture exited before listening");
    })
    .await
    .expect("fixture listens in time");
    (child, url)
}

fn http_spec(url: &str) -> BackendSpec {
    BackendSpec {
        name: "web".into(),
        transport: TransportSpec::StreamableHttp(HttpSpec {
            url: url.into(),
            headers: Default::default(),
        }),
        prefix: "web".into(),
        tools: ToolFilter::default(),
        timeout: None,
        disabled: false,
        sessions: Default::default(),
    }
}

#[tokio::test]
async fn streamable_http_backend_round_trips() {
    let (mut child, url) = http_fixture(0).await;
    let gw = gateway(vec![http_spec(&url)]).await;
    assert_eq!(
        gw.upstreams.get("web").map(|b| b.status().state.as_str()),
        Some("ready")
    );
    let mut c = Client::initialized(&gw).await;
    assert_eq!(
        text_of(&c.call("web__echo", json!({"message": "over http"})).await),
        "over http"
    );

    let id = c
        .start("tools/call", json!({"name": "web__slow", "arguments": {"steps": 2, "interval_ms": 5}, "_meta": {"progressToken": "pt"}}))
        .await;
    let resp = c.response(id).await;
    assert!(resp.get("result").is_some(), "{resp}");
    let progress = c
        .seen
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert_eq!(progress, 2, "{:?}", c.seen);

    // The sampling request arrives on the POST stream of the call it belongs to.
    let id = c
        .start(
            "tools/call",
            json!({"name": "web__sample", "arguments": {"prompt": "via http"}}),
        )
        .await;
    let req = c
        .wait_for(|m| m["method"] == "sampling/createMessage")
        .await;
    c.send(json!({"jsonrpc": "2.0", "id": req["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "m"}})).await;
    assert!(c.response(id).await.to_string().contains("sampled"));
    gw.stop(std::time::Duration::from_secs(2)).await;
    let _ = child.kill().await;
}

#[tokio::test]
async fn a_restarted_http_backend_is_reconnected() {
    let (mut child, url) = http_fixture(0).await;
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches("/mcp").parse().ok())
        .expect("port");
    let gw = gateway(vec![http_spec(&url)]).await;
    let backend = gw.upstreams.get("web").expect("backend");
    let mut c = Client::initialized(&gw).await;
    assert_eq!(
        text_of(&c.call("web__echo", json!({"message": "one"})).await),
        "one"
    );

    // A new server process on the same port knows nothing of the old session. The gateway
    // notices through its GET stream (no client call needed) and opens a new session.
    let mut status = backend.watch_status();
    let _ = child.kill().await;
    let _ = child.wait().await;
    let (mut again, _) = http_fixture(port).await;
    tokio::time::timeout(
        WAIT,
        status.wait_for(|s| s.restarts >= 1 && s.state.as_str() == "ready"),
    )
    .await
    .expect("reconnected in time")
    .expect("backend alive");
    assert_eq!(
        text_of(&c.call("web__echo", json!({"message": "two"})).await),
        "two"
    );
    assert!(backend.status().restarts >= 1, "{:?}", backend.status());
    gw.stop(std::time::Duration::from_secs(2)).await;
    let _ = again.kill().await;
}
