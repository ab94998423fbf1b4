//! The relay end to end through the stdio frontend, with the built-in fixture server as the
//! backend: names, calls, progress, cancellation, server→client requests, list_changed,
//! collisions, and backends that fail.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn lists_and_calls_through_prefixed_names() {
    let gw = gateway(vec![fixture("fx")]).await;
    let mut c = Client::initialized(&gw).await;
    let tools = c.request("tools/list", json!({})).await;
    let names = tool_names(&tools);
    for want in ["fx__echo", "fx__add", "fx__slow"] {
        assert!(
            names.contains(&want.to_string()),
            "{want} missing from {names:?}"
        );
    }
    let echo = c.call("fx__echo", json!({"message": "héllo"})).await;
    assert_eq!(text_of(&echo), "héllo", "{echo}");
    assert_eq!(
        echo["result"]["structuredContent"]["message"], "héllo",
        "structuredContent passes through: {echo}"
    );
    let add = c.call("fx__add", json!({"a": 2, "b": 40})).await;
    assert!(text_of(&add).contains("42"), "{add}");

    let prompts = c.request("prompts/list", json!({})).await;
    assert!(
        prompts["result"]["prompts"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "fx__greet")),
        "{prompts}"
    );
    let got = c
        .request(
            "prompts/get",
            json!({"name": "fx__greet", "arguments": {"name": "Ada"}}),
        )
        .await;
    assert!(got.to_string().contains("Ada"), "{got}");
    let done = c
        .request("completion/complete", json!({"ref": {"type": "ref/prompt", "name": "fx__greet"}, "argument": {"name": "name", "value": "al"}}))
        .await;
    let values = done["result"]["completion"]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !values.is_empty()
            && values
                .iter()
                .all(|v| v.as_str().is_some_and(|s| s.starts_with("al"))),
        "{done}"
    );

    let res = c
        .request("resources/read", json!({"uri": "fixture://readme"}))
        .await;
    assert!(res["result"]["contents"][0]["text"].is_string(), "{res}");
    let item = c
        .request("resources/read", json!({"uri": "fixture://items/7"}))
        .await;
    assert!(
        item.to_string().contains("item 7"),
        "template routing: {item}"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn progress_reaches_the_caller_with_its_own_token() {
    let gw = gateway(vec![fixture("fx")]).await;
    let mut c = Client::initialized(&gw).await;
    let id = c
        .start("tools/call", json!({"name": "fx__slow", "arguments": {"steps": 3, "interval_ms": 20}, "_meta": {"progressToken": "my-token"}}))
        .await;
    let resp = c.response(id).await;
    assert!(resp.get("result").is_some(), "{resp}");
    let progress: Vec<&Value> = c
        .seen
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(
        progress.len(),
        3,
        "one per step, before the result: {:?}",
        c.seen
    );
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "my-token")
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn cancellation_reaches_the_backend() {
    let gw = gateway(vec![fixture("fx")]).await;
    let mut c = Client::initialized(&gw).await;
    let id = c
        .start("tools/call", json!({"name": "fx__slow", "arguments": {"steps": 1000, "interval_ms": 50}, "_meta": {"progressToken": 1}}))
        .await;
    // Once progress arrives the call is certainly running on the backend.
    c.wait_for(|m| m["method"] == "notifications/progress")
        .await;
    c.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "test"}),
    )
    .await;
    // The fixture answers once it has seen the cancellation (or after its own deadline).
    let count = c
        .call(
            "fx__cancelled_count",
            json!({"at_least": 1, "timeout_ms": 20000}),
        )
        .await;
    assert_eq!(text_of(&count), "1", "{count}");
    assert!(
        !c.seen.iter().any(|m| m["id"] == json!(id)),
        "a cancelled request gets no response: {:?}",
        c.seen
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_request_that_times_out_is_cancelled_upstream() {
    let mut fx = fixture("fx");
    fx.timeout = Some(std::time::Duration::from_millis(300));
    let gw = gateway(vec![fx]).await;
    let mut c = Client::initialized(&gw).await;
    // No progress token: nothing resets the timeout.
    let r = c
        .call("fx__slow", json!({"steps": 1000, "interval_ms": 50}))
        .await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("fx__slow") && msg.contains("timed out"), "{r}");
    let count = c
        .call(
            "fx__cancelled_count",
            json!({"at_least": 1, "timeout_ms": 20000}),
        )
        .await;
    assert_eq!(text_of(&count), "1", "the backend was told: {count}");
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn sampling_round_trips_through_the_gateway() {
    let gw = gateway(vec![fixture("fx")]).await;
    let mut c = Client::initialized(&gw).await;
    let id = c
        .start(
            "tools/call",
            json!({"name": "fx__sample", "arguments": {"prompt": "say hi"}}),
        )
        .await;
    let req = c
        .wait_for(|m| m["method"] == "sampling/createMessage")
        .await;
    assert!(req.to_string().contains("say hi"), "{req}");
    c.send(json!({"jsonrpc": "2.0", "id": req["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "hi from the client"}, "model": "test-model"}}))
        .await;
    let resp = c.response(id).await;
    assert!(resp.to_string().contains("hi from the client"), "{resp}");
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn elicitation_round_trips_through_the_gateway() {
    let gw = gateway(vec![fixture("fx")]).await;
    let mut c = Client::initialized(&gw).await;
    let id = c
        .start(
            "tools/call",
            json!({"name": "fx__elicit", "arguments": {"message": "who?"}}),
        )
        .await;
    let req = c.wait_for(|m| m["method"] == "elicitation/create").await;
    c.send(json!({"jsonrpc": "2.0", "id": req["id"], "result": {"action": "accept", "content": {"name": "Grace"}}})).await;
    let resp = c.response(id).await;
    assert!(resp.to_string().contains("Grace"), "{resp}");
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn clashing_names_both_stay_callable() {
    let mut a = fixture("a");
    let mut b = fixture("b");
    a.prefix = String::new();
    b.prefix = String::new();
    let gw = gateway(vec![b, a]).await;
    let mut c = Client::initialized(&gw).await;
    let tools = c.request("tools/list", json!({})).await;
    let echoes: Vec<String> = tool_names(&tools)
        .into_iter()
        .filter(|n| n.starts_with("echo"))
        .collect();
    assert_eq!(echoes.len(), 2, "{echoes:?}");
    assert!(
        echoes.contains(&"echo".to_string()),
        "backend 'a' (first by name) keeps the plain name"
    );
    for name in &echoes {
        let r = c.call(name, json!({"message": name})).await;
        assert_eq!(text_of(&r), *name, "{r}");
    }
    let snap = gw.catalog.current();
    let owners: Vec<&str> = echoes
        .iter()
        .filter_map(|n| snap.tool(n))
        .map(|e| &*e.backend)
        .collect();
    assert!(owners.contains(&"a") && owners.contains(&"b"), "{owners:?}");
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn bad_input_gets_the_right_errors() {
    let gw = gateway(vec![fixture("fx")]).await;
    let mut c = Client::initialized(&gw).await;
    c.send_raw("{not json").await;
    let e = c.recv().await;
    assert_eq!(e["error"]["code"], -32700, "{e}");
    c.send(json!({"jsonrpc": "2.0", "id": 99, "method": 5}))
        .await;
    let e = c.response(99).await;
    assert_eq!(e["error"]["code"], -32600, "{e}");
    let e = c.request("no/such/method", json!({})).await;
    assert_eq!(e["error"]["code"], -32601, "{e}");
    let e = c.call("fx__nope", json!({})).await;
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("fx__nope")),
        "{e}"
    );
    let e = c.request("tools/call", json!({})).await;
    assert_eq!(e["error"]["code"], -32602, "{e}");
    let e = c.request("server/discover", json!({})).await;
    assert_eq!(
        e["error"]["code"], -32601,
        "answered at once so clients fall back: {e}"
    );
    // A tool error from the backend passes through as a result with isError.
    let r = c.call("fx__fail", json!({"message": "boom"})).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    // Still serving.
    assert_eq!(
        text_of(&c.call("fx__echo", json!({"message": "ok"})).await),
        "ok"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_backend_that_cannot_start_is_reported_and_the_others_serve() {
    let broken = stdio_spec("broken", "/nonexistent/mcp-server-xyz".into(), &[]);
    let gw = gateway(vec![fixture("fx"), broken]).await;
    let b = gw.upstreams.get("broken").expect("known");
    let status = b.status();
    assert_eq!(status.state.as_str(), "down");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("/nonexistent/mcp-server-xyz")),
        "{status:?}"
    );
    let mut c = Client::initialized(&gw).await;
    assert_eq!(
        text_of(&c.call("fx__echo", json!({"message": "alive"})).await),
        "alive"
    );
    let e = c.call("broken__anything", json!({})).await;
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("broken__anything") && msg.contains("backend 'broken'"),
        "{e}"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_backend_killed_mid_call_fails_that_call_only() {
    let marker = format!("victim-{}", std::process::id());
    let gw = gateway(vec![fixture("fx"), fixture(&marker)]).await;
    let mut c = Client::initialized(&gw).await;
    let tool = format!("{marker}__slow");
    let id = c
        .start("tools/call", json!({"name": tool, "arguments": {"steps": 1000, "interval_ms": 50}, "_meta": {"progressToken": 1}}))
        .await;
    c.wait_for(|m| m["method"] == "notifications/progress")
        .await;
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &marker])
        .status()
        .expect("pkill");
    assert!(killed.success());
    let resp = c.response(id).await;
    let msg = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(&marker), "the error names the backend: {resp}");
    assert_eq!(
        text_of(&c.call("fx__echo", json!({"message": "still here"})).await),
        "still here"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn config_changes_reach_every_session_as_list_changed() {
    let gw = gateway(vec![fixture("fx")]).await;
    let mut c = Client::initialized(&gw).await;
    gw.apply(fixture("late"));
    c.wait_for(|m| m["method"] == "notifications/tools/list_changed")
        .await;
    // The notification may precede the listing of the new backend by a moment; wait for it.
    tokio::time::timeout(WAIT, gw.settled())
        .await
        .expect("settles");
    let names = tool_names(&c.request("tools/list", json!({})).await);
    assert!(names.contains(&"late__echo".to_string()), "{names:?}");
    assert!(gw.remove("late").await);
    c.wait_for(|m| m["method"] == "notifications/tools/list_changed")
        .await;
    let names = tool_names(&c.request("tools/list", json!({})).await);
    assert!(!names.iter().any(|n| n.starts_with("late__")), "{names:?}");
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn tool_filters_and_protocol_negotiation() {
    let mut fx = fixture("fx");
    fx.tools.include = vec!["e*".into(), "add".into()];
    fx.tools.exclude = vec!["elicit".into()];
    let gw = gateway(vec![fx]).await;
    let mut c = Client::connect(&gw).await;
    let init = c.request("initialize", json!({"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "old", "version": "1"}})).await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    let init = c.request("initialize", json!({"protocolVersion": "1999-01-01", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}})).await;
    assert_eq!(
        init["result"]["protocolVersion"], "2025-11-25",
        "unknown versions get the newest"
    );
    let mut names = tool_names(&c.request("tools/list", json!({})).await);
    names.sort();
    assert_eq!(names, ["fx__add", "fx__echo"]);
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn every_page_of_every_list_is_published() {
    // The same server twice: once listing everything at once, once one item per page.
    let whole = fixture("whole");
    let paged = stdio_spec("paged", workspace_bin("mcp-fixture"), &["--page-size", "1"]);
    let gw = gateway(vec![whole, paged]).await;
    let snap = gw.catalog.current();
    let [tools, prompts, resources, templates] = snap.counts("whole");
    assert!(tools > 1, "the fixture has several tools");
    let [p_tools, p_prompts, p_resources, p_templates] = snap.counts("paged");
    assert_eq!(
        [p_tools, p_prompts, p_templates],
        [tools, prompts, templates]
    );
    // Both list the same resource URI: one serves it, the other's is reported as a collision.
    assert_eq!(p_resources + resources, 1);
    assert!(
        snap.collisions
            .iter()
            .any(|c| c.kind == "resource" && [&c.winner, &c.loser].contains(&&"paged".to_string())),
        "{:?}",
        snap.collisions
    );
    let mut c = Client::initialized(&gw).await;
    let names = tool_names(&c.request("tools/list", json!({})).await);
    for t in snap.tools.iter().filter(|e| &*e.backend == "whole") {
        let twin = format!("paged__{}", t.upstream);
        assert!(names.contains(&twin), "{twin} missing from {names:?}");
    }
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_replaced_backend_publishes_only_its_successors_names() {
    let gw = gateway(vec![fixture("fx")]).await;
    let old = gw.upstreams.get("fx").expect("fx");
    let mut snapshots = gw.catalog.subscribe();
    // A different command line is a different upstream session: a new instance.
    let mut replaced = stdio_spec("fx", workspace_bin("mcp-fixture"), &["--name", "successor"]);
    replaced.prefix = "new".into();
    replaced.tools.include = vec!["echo".into()];
    gw.apply(replaced);
    let new = gw.upstreams.get("fx").expect("fx");
    assert_ne!(
        old.generation, new.generation,
        "a new transport starts a new instance"
    );
    tokio::time::timeout(WAIT, snapshots.wait_for(|s| s.tool("new__echo").is_some()))
        .await
        .expect("successor listed in time")
        .expect("catalog alive");
    let mut old_status = old.watch_status();
    tokio::time::timeout(WAIT, old_status.wait_for(|s| s.state.as_str() == "stopped"))
        .await
        .expect("old instance stops in time")
        .expect("status alive");
    let snap = gw.catalog.current();
    let names: Vec<&str> = snap.tools.iter().map(|e| &*e.public).collect();
    assert_eq!(
        names,
        ["new__echo"],
        "the old instance's stop must not clear or add names"
    );
    let info = new.status().server_info.unwrap_or_default();
    assert_eq!(info["name"], "successor", "{info}");
    let mut c = Client::initialized(&gw).await;
    assert_eq!(
        text_of(&c.call("new__echo", json!({"message": "m"})).await),
        "m"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn naming_and_filter_edits_keep_the_backend_session() {
    let gw = gateway(vec![fixture("fx")]).await;
    let before = gw.upstreams.get("fx").expect("fx");
    let session = before.connection().expect("up");
    let mut edited = fixture("fx");
    edited.prefix = "renamed".into();
    edited.tools.include = vec!["echo".into()];
    edited.timeout = Some(std::time::Duration::from_secs(7));
    gw.apply(edited);
    // The names change at once, without waiting for the backend.
    let names: Vec<String> = gw
        .catalog
        .current()
        .tools
        .iter()
        .map(|e| e.public.to_string())
        .collect();
    assert_eq!(names, ["renamed__echo"]);
    let after = gw.upstreams.get("fx").expect("fx");
    assert_eq!(before.generation, after.generation, "same instance");
    assert!(
        std::sync::Arc::ptr_eq(&session, &after.connection().expect("still up")),
        "same session"
    );
    assert_eq!(
        after.spec().timeout,
        Some(std::time::Duration::from_secs(7))
    );
    assert_eq!(after.status().restarts, 0);
    let mut c = Client::initialized(&gw).await;
    assert_eq!(
        text_of(&c.call("renamed__echo", json!({"message": "kept"})).await),
        "kept"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

/// The stdio frontend's sessions are counted like the HTTP ones (a stdio gateway has no
/// `/metrics` of its own, so the exposition is taken in-process).
#[tokio::test]
async fn stdio_sessions_are_counted() {
    use mcp_gateway::telemetry::exposition::Format;
    let gw = gateway(vec![fixture("fx")]).await;
    let scrape = || mcp_gateway::admin::exposition(&gw, Format::Prometheus);
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    let open = r#"mcp_gateway_sessions_open{transport="stdio"}"#;
    let closed = r#"mcp_gateway_sessions_closed_total{transport="stdio"}"#;
    assert_eq!(value(&scrape(), open), Some(0.0));

    let mut c = Client::initialized(&gw).await;
    let echo = c.call("fx__echo", json!({"message": "counted"})).await;
    assert_eq!(text_of(&echo), "counted");
    let text = scrape();
    assert_eq!(value(&text, open), Some(1.0), "{text}");
    let calls = r#"mcp_gateway_requests_total{method="tools/call",backend="fx",tool="fx__echo",outcome="ok"}"#;
    assert_eq!(value(&text, calls), Some(1.0), "{text}");

    drop(c); // stdin closes: the session ends
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape();
        if value(&text, open) == Some(0.0) && value(&text, closed) == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never closed:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await; // poll interval
    }
    gw.stop(std::time::Duration::from_secs(2)).await;
}

/// With `gateway.listPageSize`, every list comes in pages joined by `nextCursor`; the pages
/// together are the whole list, in order, and a cursor the gateway did not make is refused.
#[tokio::test]
async fn lists_come_in_pages_when_a_page_size_is_set() {
    let specs = vec![
        stdio_spec(
            "a",
            workspace_bin("mcp-fixture"),
            &["--synthetic-tools", "7"],
        ),
        fixture("b"),
    ];
    let whole = gateway(specs.clone()).await;
    let mut c = Client::initialized(&whole).await;
    let all = c.request("tools/list", json!({})).await;
    assert!(all["result"].get("nextCursor").is_none(), "{all}");
    let want = all["result"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(want.len() > 10, "{all}");
    whole.stop(std::time::Duration::from_secs(2)).await;

    let settings = mcp_gateway::spec::GatewaySettings {
        list_page_size: Some(4),
        ..settings()
    };
    let gw = mcp_gateway::relay::Gateway::new(settings);
    gw.reconcile(specs).await;
    tokio::time::timeout(WAIT, gw.settled())
        .await
        .expect("settle");
    let mut c = Client::initialized(&gw).await;
    let (mut got, mut pages, mut cursor) = (Vec::new(), 0, None::<Value>);
    loop {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let page = c.request("tools/list", params).await;
        let tools = page["result"]["tools"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(tools.len() <= 4, "{page}");
        got.extend(tools);
        pages += 1;
        match page["result"].get("nextCursor") {
            Some(next) => cursor = Some(next.clone()),
            None => break,
        }
        assert!(pages <= want.len(), "the cursor goes nowhere: {page}");
    }
    assert_eq!(got, want, "the pages are the whole list, in order");
    assert_eq!(pages, want.len().div_ceil(4));

    for bad in [
        json!("nonsense"),
        json!(7),
        json!("mcpgw1.99999999999999999999"),
    ] {
        let refused = c.request("tools/list", json!({"cursor": bad})).await;
        assert_eq!(refused["error"]["code"], -32602, "{refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cursor")),
            "{refused}"
        );
    }
    gw.stop(std::time::Duration::from_secs(2)).await;
}
