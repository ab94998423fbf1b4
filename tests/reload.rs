//! Editing the config file changes the live catalog, and every session hears of it; an
//! invalid edit is refused and the running backends keep serving.

mod common;

use common::*;
use mcp_gateway::relay::Gateway;
use serde_json::json;

fn config(backends: &[&str]) -> String {
    let bin = workspace_bin("mcp-fixture");
    let mut out = String::from("gateway:\n  startupTimeout: 20s\nmcpServers:\n");
    for b in backends {
        out.push_str(&format!(
            "  {b}:\n    command: {}\n    args: [--name, {b}]\n",
            bin.display()
        ));
    }
    out
}

#[tokio::test]
async fn edits_to_the_config_file_are_applied_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config(&["one"])).expect("write");
    let cfg = mcp_gateway::config::load(&path).expect("valid");
    let gw = Gateway::new(cfg.gateway);
    gw.reconcile(cfg.backends).await;
    tokio::time::timeout(WAIT, gw.settled())
        .await
        .expect("settles");
    let mut snapshots = gw.catalog.subscribe();
    tokio::spawn(mcp_gateway::reload::watch(gw.clone(), path.clone()));
    let mut c = Client::initialized(&gw).await;
    assert!(tool_names(&c.request("tools/list", json!({})).await).contains(&"one__echo".into()));

    // Add a backend: its tools appear and the session is told.
    std::fs::write(&path, config(&["one", "two"])).expect("write");
    c.wait_for(|m| m["method"] == "notifications/tools/list_changed")
        .await;
    tokio::time::timeout(WAIT, snapshots.wait_for(|s| s.tool("two__echo").is_some()))
        .await
        .expect("two's tools in time")
        .expect("catalog alive");
    assert_eq!(
        text_of(&c.call("two__echo", json!({"message": "hi"})).await),
        "hi"
    );

    // A broken edit is refused; nothing stops.
    std::fs::write(&path, "mcpServers:\n  one:\n    comand: nope\n").expect("write");
    assert!(!mcp_gateway::reload::reload(&gw, &path).await);
    assert_eq!(
        text_of(&c.call("one__echo", json!({"message": "still"})).await),
        "still"
    );

    // Remove a backend: its tools go.
    std::fs::write(&path, config(&["two"])).expect("write");
    tokio::time::timeout(WAIT, snapshots.wait_for(|s| s.tool("one__echo").is_none()))
        .await
        .expect("one's tools gone in time")
        .expect("catalog alive");
    assert!(gw.upstreams.get("one").is_none());
    assert_eq!(
        text_of(&c.call("two__echo", json!({"message": "ok"})).await),
        "ok"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn reloads_are_counted_by_result() {
    use mcp_gateway::telemetry::exposition::Format;
    use mcp_gateway::telemetry::metrics::Sample;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config(&["one"])).expect("write");
    let gw = Gateway::new(settings());
    assert!(mcp_gateway::reload::reload(&gw, &path).await);
    std::fs::write(&path, "mcpServers:\n  one:\n    comand: nope\n").expect("write");
    assert!(!mcp_gateway::reload::reload(&gw, &path).await);
    assert!(!mcp_gateway::reload::reload(&gw, &path).await);
    let text = gw.metrics.render(&Sample::default(), Format::Prometheus);
    assert!(
        text.contains(r#"mcp_gateway_config_reloads_total{result="applied"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mcp_gateway_config_reloads_total{result="invalid"} 2"#),
        "{text}"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}
