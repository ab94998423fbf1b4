//! End-to-end tests of `mcp-fixture` over stdio, speaking raw JSON-RPC the way
//! the gateway's stdio backend connection does.

mod common;

use std::collections::BTreeSet;

use common::{StdioClient, text_of};
use serde_json::{Value, json};

const FIXTURE: &str = env!("CARGO_BIN_EXE_mcp-fixture");

fn started() -> StdioClient {
    let mut client = StdioClient::spawn(FIXTURE, &[]);
    client.initialize(json!({}));
    client
}

#[test]
fn initialize_reports_identity_and_capabilities() {
    let mut client = StdioClient::spawn(FIXTURE, &["--name", "backend-a"]);
    let result = client.initialize(json!({}));
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert_eq!(result["serverInfo"]["name"], "backend-a");
    assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    let capabilities = &result["capabilities"];
    for capability in ["tools", "prompts", "completions", "logging"] {
        assert!(
            capabilities[capability].is_object(),
            "{capability} missing: {result}"
        );
    }
    assert_eq!(capabilities["resources"]["subscribe"], true);
}

#[test]
fn lists_and_calls_the_plain_tools() {
    let mut client = started();
    let tools = client.call("tools/list", json!({}));
    let names: BTreeSet<&str> = tools["tools"]
        .as_array()
        .expect("tools array")
        .iter()
        .map(|tool| tool["name"].as_str().expect("tool name"))
        .collect();
    let expected: BTreeSet<&str> = [
        "add",
        "cancelled_count",
        "echo",
        "elicit",
        "fail",
        "request_meta",
        "sample",
        "slow",
        "touch",
    ]
    .into();
    assert_eq!(names, expected);

    let echo = client.call_tool("echo", json!({ "message": "héllo wörld" }));
    assert_eq!(text_of(&echo), "héllo wörld");
    assert_eq!(
        echo["structuredContent"],
        json!({ "message": "héllo wörld" })
    );
    assert_eq!(echo["isError"], false);

    let add = client.call_tool("add", json!({ "a": 2, "b": 3.5 }));
    assert_eq!(text_of(&add), "5.5");
    assert_eq!(add["structuredContent"]["sum"].as_f64(), Some(5.5));

    let fail = client.call_tool("fail", json!({ "message": "it broke" }));
    assert_eq!(fail["isError"], true);
    assert_eq!(text_of(&fail), "it broke");

    // rmcp reports arguments that do not fit the schema in-band, as a tool error.
    let bad = client.call_tool("add", json!({ "a": "two" }));
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(text_of(&bad).contains("failed to deserialize"), "{bad}");
}

#[test]
fn slow_reports_progress_before_its_result() {
    let mut client = started();
    let id = client.request(
        "tools/call",
        json!({
            "name": "slow",
            "arguments": { "steps": 3, "interval_ms": 10 },
            "_meta": { "progressToken": "tok-1" },
        }),
    );
    let (response, before) = client.until_response(id);
    let progress: Vec<&Value> = before
        .iter()
        .filter(|message| message["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "progress before the result: {before:?}");
    for (index, notification) in progress.iter().enumerate() {
        let step = index + 1;
        let params = &notification["params"];
        assert_eq!(params["progressToken"], "tok-1");
        assert_eq!(params["progress"].as_f64(), Some(step as f64));
        assert_eq!(params["total"].as_f64(), Some(3.0));
        assert_eq!(params["message"], format!("step {step}/3"));
    }
    assert_eq!(response["result"]["isError"], false, "{response}");
    assert_eq!(response["result"]["structuredContent"]["steps"], 3);
}

#[test]
fn slow_without_a_progress_token_sends_no_progress() {
    let mut client = started();
    let id = client.request(
        "tools/call",
        json!({ "name": "slow", "arguments": { "steps": 2, "interval_ms": 1 } }),
    );
    let (response, before) = client.until_response(id);
    assert!(before.is_empty(), "unexpected messages: {before:?}");
    assert_eq!(text_of(&response["result"]), "completed 2 steps");
}

#[test]
fn cancelling_slow_reaches_the_server() {
    let mut client = started();
    assert_eq!(
        text_of(&client.call_tool("cancelled_count", json!({}))),
        "0"
    );
    // A call that runs to completion is not counted.
    client.call_tool("slow", json!({ "steps": 1, "interval_ms": 1 }));
    assert_eq!(
        text_of(&client.call_tool("cancelled_count", json!({}))),
        "0"
    );

    // 100 steps of 100 ms: far longer than this test runs.
    let slow = client.request(
        "tools/call",
        json!({ "name": "slow", "arguments": { "steps": 100, "interval_ms": 100 } }),
    );
    client.notify(
        "notifications/cancelled",
        json!({ "requestId": slow, "reason": "test cancels" }),
    );
    // rmcp runs each request in its own task, so the count may lag the
    // notification: `at_least` makes the server wait for it (not the test).
    let count = client.request(
        "tools/call",
        json!({ "name": "cancelled_count", "arguments": { "at_least": 1 } }),
    );
    let (response, before) = client.until_response(count);
    assert_eq!(text_of(&response["result"]), "1", "{response}");
    assert_eq!(response["result"]["structuredContent"]["count"], 1);
    assert!(
        before.iter().all(|message| message["id"] != json!(slow)),
        "the cancelled call answered: {before:?}"
    );

    // A target that is never reached gives up and reports the real count.
    let capped = client.call_tool(
        "cancelled_count",
        json!({ "at_least": 5, "timeout_ms": 10 }),
    );
    assert_eq!(text_of(&capped), "1");
}

#[test]
fn resources_prompts_and_completion() {
    let mut client = started();

    let resources = client.call("resources/list", json!({}));
    assert_eq!(resources["resources"][0]["uri"], "fixture://readme");
    assert_eq!(resources["resources"][0]["mimeType"], "text/plain");
    let templates = client.call("resources/templates/list", json!({}));
    assert_eq!(
        templates["resourceTemplates"][0]["uriTemplate"],
        "fixture://items/{id}"
    );

    let readme = client.call("resources/read", json!({ "uri": "fixture://readme" }));
    let readme_text = readme["contents"][0]["text"].as_str().expect("readme text");
    assert!(readme_text.contains("mcp-fixture"), "{readme_text}");
    let item = client.call("resources/read", json!({ "uri": "fixture://items/42" }));
    assert_eq!(item["contents"][0]["text"], "item 42");
    assert_eq!(item["contents"][0]["uri"], "fixture://items/42");
    let id = client.request("resources/read", json!({ "uri": "fixture://missing" }));
    let (missing, _) = client.until_response(id);
    assert!(missing["error"].is_object(), "{missing}");

    let prompts = client.call("prompts/list", json!({}));
    let greet = &prompts["prompts"][0];
    assert_eq!(greet["name"], "greet");
    assert_eq!(greet["arguments"][0]["name"], "name");
    assert_eq!(greet["arguments"][0]["required"], true);
    assert_eq!(greet["arguments"][1]["name"], "style");
    let prompt = client.call(
        "prompts/get",
        json!({ "name": "greet", "arguments": { "name": "Ada", "style": "formal" } }),
    );
    assert_eq!(prompt["messages"][0]["role"], "user");
    assert_eq!(prompt["messages"][0]["content"]["text"], "Hello, Ada!");

    let names = client.call(
        "completion/complete",
        json!({
            "ref": { "type": "ref/prompt", "name": "greet" },
            "argument": { "name": "name", "value": "al" },
        }),
    );
    assert_eq!(names["completion"]["values"], json!(["alice", "albert"]));
    let ids = client.call(
        "completion/complete",
        json!({
            "ref": { "type": "ref/resource", "uri": "fixture://items/{id}" },
            "argument": { "name": "id", "value": "2" },
        }),
    );
    assert_eq!(ids["completion"]["values"], json!(["2"]));

    client.call("logging/setLevel", json!({ "level": "debug" }));
}

#[test]
fn subscriptions_drive_resource_updated_notifications() {
    let mut client = started();
    let uri = "fixture://items/7";

    let unsubscribed = client.call_tool("touch", json!({ "uri": uri }));
    assert_eq!(unsubscribed["structuredContent"]["notified"], false);

    client.call("resources/subscribe", json!({ "uri": uri }));
    let id = client.request(
        "tools/call",
        json!({ "name": "touch", "arguments": { "uri": uri } }),
    );
    let (response, before) = client.until_response(id);
    assert_eq!(response["result"]["structuredContent"]["notified"], true);
    assert_eq!(
        before,
        [json!({
            "jsonrpc": "2.0",
            "method": "notifications/resources/updated",
            "params": { "uri": uri },
        })]
    );

    client.call("resources/unsubscribe", json!({ "uri": uri }));
    let after = client.call_tool("touch", json!({ "uri": uri }));
    assert_eq!(after["structuredContent"]["notified"], false);
}

/// Answers the next server-to-client request, which must use `method`, and
/// returns that request.
fn answer_server_request(client: &mut StdioClient, method: &str, result: Value) -> Value {
    let request = client.recv();
    assert_eq!(request["method"], method, "{request}");
    client.send(&json!({ "jsonrpc": "2.0", "id": request["id"], "result": result }));
    request
}

#[test]
fn sample_and_elicit_round_trip_through_the_client() {
    let mut client = StdioClient::spawn(FIXTURE, &[]);
    client.initialize(json!({ "sampling": {}, "elicitation": {} }));

    let call = client.request(
        "tools/call",
        json!({ "name": "sample", "arguments": { "prompt": "What is 2+2?" } }),
    );
    let request = answer_server_request(
        &mut client,
        "sampling/createMessage",
        json!({
            "role": "assistant",
            "content": { "type": "text", "text": "four" },
            "model": "test-model",
            "stopReason": "endTurn",
        }),
    );
    let params = &request["params"];
    assert_eq!(params["maxTokens"], 100);
    assert_eq!(params["messages"][0]["role"], "user");
    assert_eq!(params["messages"][0]["content"]["text"], "What is 2+2?");
    let (response, _) = client.until_response(call);
    assert_eq!(text_of(&response["result"]), "four", "{response}");

    let call = client.request(
        "tools/call",
        json!({ "name": "elicit", "arguments": { "message": "Who are you?" } }),
    );
    let request = answer_server_request(
        &mut client,
        "elicitation/create",
        json!({ "action": "accept", "content": { "name": "Ada" } }),
    );
    assert_eq!(request["params"]["message"], "Who are you?");
    let schema = &request["params"]["requestedSchema"];
    assert_eq!(schema["properties"]["name"]["type"], "string");
    assert_eq!(schema["required"], json!(["name"]));
    let (response, _) = client.until_response(call);
    let answer: Value =
        serde_json::from_str(text_of(&response["result"])).expect("elicit returns JSON text");
    assert_eq!(
        answer,
        json!({ "action": "accept", "content": { "name": "Ada" } })
    );
}

#[test]
fn sample_needs_the_client_capability() {
    let mut client = started();
    let result = client.call_tool("sample", json!({ "prompt": "hi" }));
    assert_eq!(result["isError"], true);
    assert!(text_of(&result).contains("sampling"), "{result}");
}

#[test]
fn synthetic_tools_are_listed_beside_the_builtins_and_callable() {
    let mut client = StdioClient::spawn(FIXTURE, &["--synthetic-tools", "20", "--page-size", "8"]);
    client.initialize(json!({}));
    let mut tools = Vec::new();
    let mut cursor = None;
    loop {
        let params = cursor.map_or_else(|| json!({}), |c: String| json!({ "cursor": c }));
        let page = client.call("tools/list", params);
        tools.extend(
            page["tools"]
                .as_array()
                .expect("tools array")
                .iter()
                .cloned(),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(tools.len(), 9 + 20, "the builtins are still listed");
    let synthetic: Vec<&Value> = tools
        .iter()
        .filter(|t| t["name"].as_str().is_some_and(|n| n.ends_with("_0007")))
        .collect();
    let [tool] = synthetic[..] else {
        panic!("one tool numbered 0007: {synthetic:?}");
    };
    assert_eq!(tool["inputSchema"]["type"], "object");
    let name = tool["name"].as_str().expect("name");

    let result = client.call_tool(name, json!({ "workspace": "acme", "id": "7" }));
    assert_eq!(result["isError"], false);
    assert_eq!(text_of(&result), format!("{name}: ok"));
    assert_eq!(
        result["structuredContent"]["arguments"]["workspace"],
        "acme"
    );
    // The builtins still answer.
    assert_eq!(
        text_of(&client.call_tool("echo", json!({ "message": "hi" }))),
        "hi"
    );
}
