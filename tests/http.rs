//! The HTTP frontends at the protocol level: streamable-HTTP sessions and streams, legacy SSE,
//! and the HTTP-level errors the specification asks for.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

struct Http {
    client: reqwest::Client,
    url: String,
    session: Option<String>,
}

impl Http {
    fn new(base: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            url: format!("{base}/mcp"),
            session: None,
        }
    }

    fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req
    }

    async fn initialize(&mut self) {
        let resp = self
            .post(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"0"}}}).to_string())
            .send()
            .await
            .expect("initialize");
        assert_eq!(resp.status(), 200);
        self.session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert!(self.session.is_some(), "initialize returns a session id");
        let ack = self
            .post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string())
            .send()
            .await
            .expect("ack");
        assert_eq!(ack.status(), 202);
    }

    /// POST one request and collect every message of its answer (JSON or SSE).
    async fn request(&self, method: &str, params: Value) -> Vec<Value> {
        let resp = self
            .post(json!({"jsonrpc":"2.0","id":7,"method":method,"params":params}).to_string())
            .send()
            .await
            .expect("post");
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let body = resp.text().await.expect("body");
        if !sse {
            return vec![serde_json::from_str(&body).expect("json")];
        }
        body.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).expect("event json"))
            .collect()
    }
}

#[tokio::test]
async fn streamable_http_session_lifecycle() {
    let gw = gateway(vec![fixture("fx")]).await;
    let base = listen(&gw).await;
    let mut h = Http::new(&base);
    h.initialize().await;
    assert_eq!(gw.sessions.len(), 1);

    let list = h.request("tools/list", json!({})).await;
    assert!(
        tool_names(&list[0]).contains(&"fx__echo".to_string()),
        "{list:?}"
    );
    // A forwarded request streams its progress before its result, on its own response.
    let msgs = h.request("tools/call", json!({"name":"fx__slow","arguments":{"steps":2,"interval_ms":5},"_meta":{"progressToken":"t"}})).await;
    let kinds: Vec<&str> = msgs
        .iter()
        .map(|m| m["method"].as_str().unwrap_or("response"))
        .collect();
    assert_eq!(
        kinds,
        [
            "notifications/progress",
            "notifications/progress",
            "response"
        ],
        "{msgs:?}"
    );
    assert_eq!(msgs[2]["id"], 7);

    // The GET stream carries what is not tied to a request: list_changed here.
    let mut get = h.client.get(&h.url).header("accept", "text/event-stream");
    get = get.header("mcp-session-id", h.session.clone().unwrap_or_default());
    let stream = get.send().await.expect("get");
    assert_eq!(stream.status(), 200);
    let second = h
        .client
        .get(&h.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", h.session.clone().unwrap_or_default())
        .send()
        .await
        .expect("get");
    assert_eq!(second.status(), 409, "one GET stream per session");
    gw.apply(fixture("late"));
    let mut body = stream.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("notifications/tools/list_changed") {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let del = h
        .client
        .delete(&h.url)
        .header("mcp-session-id", h.session.clone().unwrap_or_default())
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 200);
    assert_eq!(gw.sessions.len(), 0);
    let after = h
        .post(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(after.status(), 404, "a deleted session is unknown");
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn http_level_errors() {
    let gw = gateway(vec![fixture("fx")]).await;
    let base = listen(&gw).await;
    let mut h = Http::new(&base);

    let no_session = h
        .post(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(no_session.status(), 400);
    let discover = h
        .post(json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(discover.status(), 200);
    let body: Value = serde_json::from_str(&discover.text().await.expect("body")).expect("json");
    assert_eq!(
        body["error"]["code"], -32601,
        "discover probes fall back at once: {body}"
    );

    h.initialize().await;
    let bad = h.post("{\"jsonrpc\": ").send().await.expect("post");
    assert_eq!(bad.status(), 400);
    let body: Value = serde_json::from_str(&bad.text().await.expect("body")).expect("json");
    assert_eq!(body["error"]["code"], -32700);
    let invalid = h.request("", json!({})).await;
    assert_eq!(invalid[0]["error"]["code"], -32601);
    let not_rpc = h
        .post(json!({"jsonrpc":"2.0","id":{"x":1},"method":"ping"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(not_rpc.status(), 400);
    let body: Value = serde_json::from_str(&not_rpc.text().await.expect("body")).expect("json");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    let big = h
        .post(vec![b' '; 9 * 1024 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(big.status(), 413);
    let version = h
        .post(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .header("mcp-protocol-version", "1999-01-01")
        .send()
        .await
        .expect("post");
    assert_eq!(version.status(), 400);
    let mut stranger = Http::new(&base);
    stranger.session = Some("not-a-session".into());
    let unknown = stranger
        .post(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 404);
    let evil = h
        .client
        .post(&h.url)
        .header("host", "evil.example")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(
        evil.status(),
        403,
        "DNS-rebinding guard on a loopback listener"
    );
    // Still serving after all of that.
    let ok = h
        .request(
            "tools/call",
            json!({"name":"fx__echo","arguments":{"message":"fine"}}),
        )
        .await;
    assert_eq!(text_of(ok.last().expect("answer")), "fine");
    gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn legacy_sse_session_subscriptions_and_logging() {
    let gw = gateway(vec![fixture("fx")]).await;
    let base = listen(&gw).await;
    let client = reqwest::Client::new();
    let stream = client
        .get(format!("{base}/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse");
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    let mut buf = String::new();
    let mut next_event = async || -> (String, String) {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let ev = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or("message")
                    .to_owned();
                let data = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue;
                }
                return (ev, data);
            }
            let chunk = tokio::time::timeout(WAIT, body.next())
                .await
                .expect("event in time")
                .expect("open")
                .expect("chunk");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let (ev, endpoint) = next_event().await;
    assert_eq!(ev, "endpoint");
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    let post = |msg: Value| {
        client
            .post(format!("{base}{endpoint}"))
            .header("content-type", "application/json")
            .body(msg.to_string())
            .send()
    };

    assert_eq!(post(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"0"}}})).await.expect("post").status(), 202);
    let (_, init) = next_event().await;
    assert!(
        init.contains("\"protocolVersion\":\"2024-11-05\""),
        "{init}"
    );
    post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await
        .expect("post");

    // Subscribed resources report updates to this session; others do not get them.
    post(json!({"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"fixture://readme"}})).await.expect("post");
    let (_, sub) = next_event().await;
    assert!(sub.contains("\"id\":2") && sub.contains("result"), "{sub}");
    post(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fx__touch","arguments":{"uri":"fixture://readme"}}})).await.expect("post");
    let mut got_update = false;
    let mut got_result = false;
    while !(got_update && got_result) {
        let (_, data) = next_event().await;
        got_update |=
            data.contains("notifications/resources/updated") && data.contains("fixture://readme");
        got_result |= data.contains("\"id\":3");
    }
    post(json!({"jsonrpc":"2.0","id":4,"method":"logging/setLevel","params":{"level":"debug"}}))
        .await
        .expect("post");
    let (_, lvl) = next_event().await;
    assert!(lvl.contains("\"id\":4") && lvl.contains("result"), "{lvl}");

    // The trace context of the POST that carried a request goes on to the backend.
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let traced = client
        .post(format!("{base}{endpoint}"))
        .header("content-type", "application/json")
        .header("traceparent", traceparent)
        .body(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"fx__request_meta","arguments":{}}}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(traced.status(), 202);
    let (_, meta) = next_event().await;
    let meta: Value = serde_json::from_str(&meta).expect("json");
    assert_eq!(meta["id"], 5, "{meta}");
    assert_eq!(
        meta["result"]["structuredContent"]["meta"]["traceparent"], traceparent,
        "{meta}"
    );

    let bad = client
        .post(format!("{base}{endpoint}"))
        .header("content-type", "application/json")
        .body("nope")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
    // A body that is not declared JSON is refused before it is read: a web page can send
    // text/plain cross-site without a preflight.
    let plain = client
        .post(format!("{base}{endpoint}"))
        .header("content-type", "text/plain")
        .body(json!({"jsonrpc":"2.0","id":6,"method":"ping"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(plain.status(), 415);
    let unknown = client
        .post(format!("{base}/messages?sessionId=unknown"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 404);

    // Closing the stream ends the session and releases its subscription.
    drop(body);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !gw.sessions.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session closed after disconnect"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gw.stop(std::time::Duration::from_secs(2)).await;
}
