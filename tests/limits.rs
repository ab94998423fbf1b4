//! What a shared gateway bounds, and what it refuses, at the protocol level: sessions,
//! requests in flight per session and per backend, batches, idle sessions, the Origin and
//! media-type guards, connections (count, slow headers, idleness), requests that must not
//! reach a backend (`id: null`, non-object `_meta`), and the drain.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mcp_gateway::frontend;
use mcp_gateway::relay::Gateway;
use mcp_gateway::spec::{GatewaySettings, Limits};
use mcp_gateway::telemetry::exposition::Format;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gateway_with(limits: Limits, tweak: impl FnOnce(&mut GatewaySettings)) -> Arc<Gateway> {
    let mut settings = settings();
    settings.limits = limits;
    tweak(&mut settings);
    let gw = Gateway::new(settings);
    gw.reconcile(vec![fixture("fx")]).await;
    tokio::time::timeout(WAIT, gw.settled())
        .await
        .expect("backends settle");
    gw
}

fn post(
    client: &reqwest::Client,
    base: &str,
    session: Option<&str>,
    body: Value,
) -> reqwest::RequestBuilder {
    let mut req = client
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req
}

fn initialize(version: &str) -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":version,
        "capabilities":{},"clientInfo":{"name":"t","version":"0"}}})
}

/// Open a session at `version`; its id.
async fn open(client: &reqwest::Client, base: &str, version: &str) -> String {
    let resp = post(client, base, None, initialize(version))
        .send()
        .await
        .expect("initialize");
    assert_eq!(resp.status(), 200);
    resp.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

async fn json_of(resp: reqwest::Response) -> Value {
    let bytes = resp.bytes().await.expect("a body");
    serde_json::from_slice(&bytes).expect("a JSON body")
}

fn slow(id: i64, steps: u32, interval_ms: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"fx__slow",
        "arguments":{"steps":steps,"interval_ms":interval_ms}}})
}

/// Wait until `n` requests are in flight to backend `fx`.
async fn wait_in_flight(gw: &Gateway, n: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = mcp_gateway::admin::exposition(gw, Format::Prometheus);
        let now = text
            .lines()
            .find(|l| l.starts_with("mcp_gateway_backend_requests_in_flight{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if now >= f64::from(n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} requests in flight (now {now})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_and_idle_ones_expire() {
    let limits = Limits {
        max_sessions: 2,
        session_idle: Duration::from_millis(400),
        ..Limits::default()
    };
    let gw = gateway_with(limits, |_| {}).await;
    let base = listen(&gw).await;
    tokio::spawn(frontend::expire_idle_sessions(gw.clone()));
    let client = reqwest::Client::new();
    let a = open(&client, &base, "2025-06-18").await;
    let _b = open(&client, &base, "2025-06-18").await;

    let full = post(&client, &base, None, initialize("2025-06-18"))
        .send()
        .await
        .expect("post");
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
    let body = json_of(full).await;
    assert_eq!(body["error"]["code"], -32003, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("maxSessions"),
        "{body}"
    );
    let sse = client.get(format!("{base}/sse")).send().await.expect("get");
    assert_eq!(sse.status(), 503, "the legacy transport counts too");

    // Session `a` keeps a GET stream open, so it is in use; the other one goes idle.
    let mut stream = client
        .get(format!("{base}/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &a)
        .send()
        .await
        .expect("get");
    assert_eq!(stream.status(), 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw.sessions.len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle session expires"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    let alive = post(&client, &base, Some(&a), ping.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(alive.status(), 200, "a session with an open stream stays");
    // Room again: a new session is accepted.
    let _c = open(&client, &base, "2025-06-18").await;
    drop(stream.chunk());
    gw.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_bounded_per_session_and_per_backend() {
    let limits = Limits {
        max_requests_per_session: 2,
        max_requests_per_backend: 3,
        queue_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let gw = gateway_with(limits, |_| {}).await;
    let mut one = Client::initialized(&gw).await;
    // Two slow calls fill the session's places; the third waits, then is told so.
    let a = one
        .start(
            "tools/call",
            json!({"name":"fx__slow","arguments":{"steps":40,"interval_ms":50}}),
        )
        .await;
    let b = one
        .start(
            "tools/call",
            json!({"name":"fx__slow","arguments":{"steps":40,"interval_ms":50}}),
        )
        .await;
    wait_in_flight(&gw, 2).await;
    let busy = one
        .request(
            "tools/call",
            json!({"name":"fx__echo","arguments":{"message":"x"}}),
        )
        .await;
    assert_eq!(busy["error"]["code"], -32003, "{busy}");
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("maxRequestsPerSession")
    );

    // Another session may still call, until the backend's three places are taken.
    let mut two = Client::initialized(&gw).await;
    let c = two
        .start(
            "tools/call",
            json!({"name":"fx__slow","arguments":{"steps":40,"interval_ms":50}}),
        )
        .await;
    wait_in_flight(&gw, 3).await;
    let full = two
        .request(
            "tools/call",
            json!({"name":"fx__echo","arguments":{"message":"y"}}),
        )
        .await;
    assert_eq!(full["error"]["code"], -32003, "{full}");
    assert!(
        full["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("maxRequestsPerBackend"),
        "{full}"
    );
    let ping = two.request("ping", json!({})).await;
    assert!(
        ping.get("result").is_some(),
        "requests the gateway answers itself still pass: {ping}"
    );

    for id in [a, b] {
        let done = one.response(id).await;
        assert!(done.get("result").is_some(), "{done}");
    }
    let done = two.response(c).await;
    assert!(done.get("result").is_some(), "{done}");
    let ok = two.call("fx__echo", json!({"message":"again"})).await;
    assert_eq!(text_of(&ok), "again", "places are given back: {ok}");
    gw.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_only_where_the_protocol_has_them_and_bounded() {
    let limits = Limits {
        max_batch: 3,
        ..Limits::default()
    };
    let gw = gateway_with(limits, |_| {}).await;
    let base = listen(&gw).await;
    let client = reqwest::Client::new();
    let ping = |id: i64| json!({"jsonrpc":"2.0","id":id,"method":"ping"});

    let modern = open(&client, &base, "2025-06-18").await;
    let refused = post(&client, &base, Some(&modern), json!([ping(1), ping(2)]))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 400);
    let body = json_of(refused).await;
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2025-06-18"),
        "{body}"
    );

    let old = open(&client, &base, "2025-03-26").await;
    let answered = post(&client, &base, Some(&old), json!([ping(1), ping(2)]))
        .send()
        .await
        .expect("post");
    assert_eq!(answered.status(), 200);
    let body = json_of(answered).await;
    assert_eq!(body.as_array().map(Vec::len), Some(2), "{body}");
    let long = post(
        &client,
        &base,
        Some(&old),
        json!([ping(1), ping(2), ping(3), ping(4)]),
    )
    .send()
    .await
    .expect("post");
    assert_eq!(long.status(), 400);
    let body = json_of(long).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("maxBatch"),
        "{body}"
    );
    let empty = post(&client, &base, Some(&old), json!([]))
        .send()
        .await
        .expect("post");
    assert_eq!(empty.status(), 400);
    gw.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_backend_could_not_answer_are_refused_before_it() {
    let gw = gateway_with(Limits::default(), |_| {}).await;
    let mut c = Client::initialized(&gw).await;
    c.send(json!({"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"fx__touch","arguments":{}}})).await;
    let null = c.wait_for(|m| m.get("error").is_some()).await;
    assert_eq!(null["error"]["code"], -32600, "{null}");
    assert_eq!(null["id"], Value::Null);
    for meta in [json!("s"), json!([1]), json!(3)] {
        let resp = c
            .request(
                "tools/call",
                json!({"name":"fx__echo","arguments":{"message":"x"},"_meta":meta}),
            )
            .await;
        assert_eq!(resp["error"]["code"], -32602, "{resp}");
    }
    let resp = c.request("tools/call", json!("params as a string")).await;
    assert_eq!(resp["error"]["code"], -32602, "{resp}");
    // None of them reached the backend: the touch call above would have notified.
    let count = c.call("fx__cancelled_count", json!({})).await;
    assert!(count.get("result").is_some(), "{count}");
    gw.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_media_type_and_details_are_guarded() {
    let gw = gateway_with(Limits::default(), |s| {
        s.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let base = listen(&gw).await;
    let client = reqwest::Client::new();
    let init = || post(&client, &base, None, initialize("2025-06-18"));

    let evil = init()
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(evil.status(), 403);
    let body = json_of(evil).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("allowedOrigins"),
        "{body}"
    );
    assert_eq!(
        init()
            .header("origin", "null")
            .send()
            .await
            .expect("post")
            .status(),
        403
    );
    assert_eq!(
        init()
            .header("origin", "http://localhost:6274")
            .send()
            .await
            .expect("post")
            .status(),
        200
    );
    assert_eq!(
        init()
            .header("origin", "https://app.example")
            .send()
            .await
            .expect("post")
            .status(),
        200
    );
    let sse = client
        .get(format!("{base}/sse"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(sse.status(), 403);
    let plain = client
        .post(format!("{base}/mcp"))
        .header("content-type", "text/plain")
        .body(initialize("2025-06-18").to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(plain.status(), 415);

    // A probe by pod IP gets the verdict; the details only pass the guards.
    let probe = client
        .get(format!("{base}/readyz"))
        .header("host", "10.0.0.7:8900")
        .send()
        .await
        .expect("get");
    assert_eq!(probe.status(), 200);
    let body = json_of(probe).await;
    assert!(body.get("backends").is_none(), "{body}");
    let local = json_of(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(local["backends"][0]["name"], "fx", "{local}");
    let api = client
        .get(format!("{base}/api/v1/backends"))
        .header("host", "10.0.0.7:8900")
        .send()
        .await
        .expect("get");
    assert_eq!(api.status(), 403);
    let metrics = client
        .get(format!("{base}/metrics"))
        .header("host", "10.0.0.7:8900")
        .send()
        .await
        .expect("get");
    assert_eq!(metrics.status(), 200);
    gw.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_and_slow_or_idle_ones_closed() {
    let limits = Limits {
        max_connections: 3,
        header_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(700),
        ..Limits::default()
    };
    let gw = gateway_with(limits, |_| {}).await;
    let base = listen(&gw).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let connect = || tokio::net::TcpStream::connect(addr.clone());

    // Idle connections take the places; one more gets a 503 at once.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect().await.expect("connect"));
    }
    let mut over = connect().await.expect("connect");
    let mut answer = String::new();
    tokio::time::timeout(WAIT, over.read_to_string(&mut answer))
        .await
        .expect("answered at once")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("-32003"), "{answer}");
    assert!(
        mcp_gateway::admin::exposition(&gw, Format::Prometheus)
            .contains("mcp_gateway_connections_refused_total 1")
    );

    // The idle ones are closed by the gateway after idleTimeout.
    for mut conn in idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "closed without an answer: {n:?}"
        );
    }

    // A client that sends its headers a byte at a time is cut off after headerTimeout.
    let mut slowloris = connect().await.expect("connect");
    let started = tokio::time::Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for byte in request {
        if slowloris.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), slowloris.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(!text.contains("200 OK"), "served a slow request: {text}");
                cut = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut, "the slow client was cut off");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the header timeout, roughly"
    );

    // And a normal client is served.
    let ok = reqwest::get(format!("{base}/healthz")).await.expect("get");
    assert_eq!(ok.status(), 200);
    gw.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_calls_finish_and_answers_the_rest() {
    let gw = gateway_with(Limits::default(), |_| {}).await;
    let base = listen(&gw).await;
    let client = reqwest::Client::new();
    let session = open(&client, &base, "2025-06-18").await;
    let mut calls = Vec::new();
    for i in 0..20 {
        // Half finish in about 0.3 s, half would take 30 s.
        let (steps, interval) = if i % 2 == 0 { (3, 100) } else { (300, 100) };
        let req = post(&client, &base, Some(&session), slow(i, steps, interval));
        calls.push(tokio::spawn(async move {
            req.send()
                .await
                .expect("post")
                .bytes()
                .await
                .map(|b| serde_json::from_slice::<Value>(&b))
        }));
    }
    wait_in_flight(&gw, 20).await;
    let drain = tokio::spawn({
        let gw = gw.clone();
        async move { gw.drain(Duration::from_secs(2)).await }
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("get");
        if ready.status() == 503 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz turns 503");
    }
    let refused = post(&client, &base, None, initialize("2025-06-18"))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 503, "no new sessions while draining");
    let mut finished = 0;
    let mut aborted = 0;
    for call in calls {
        let answer = call
            .await
            .expect("task")
            .expect("a body")
            .expect("one JSON answer each");
        if answer.get("result").is_some() {
            finished += 1;
        } else {
            assert_eq!(answer["error"]["code"], -32004, "{answer}");
            aborted += 1;
        }
    }
    assert_eq!((finished, aborted), (10, 10));
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("the drain ends")
        .expect("task");
    assert!(gw.upstreams.all().is_empty(), "backends stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_frontend_survives_bad_lines() {
    let gw = gateway_with(Limits::default(), |s| s.max_body_bytes = 1024).await;
    let mut c = Client::initialized(&gw).await;
    c.send_raw("\u{0}not json").await;
    let e = c.wait_for(|m| m.get("error").is_some()).await;
    assert_eq!(e["error"]["code"], -32700, "{e}");
    c.out_raw(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\",\"x\":\"\xff\xfe\"}\n")
        .await;
    let e = c.wait_for(|m| m.get("error").is_some()).await;
    assert_eq!(
        e["error"]["code"], -32700,
        "invalid UTF-8 is a parse error: {e}"
    );
    c.send_raw("[]").await;
    let e = c.wait_for(|m| m.get("error").is_some()).await;
    assert_eq!(e["error"]["code"], -32600, "{e}");
    c.send_raw(&format!("{{\"pad\":\"{}\"}}", "x".repeat(4000)))
        .await;
    let e = c.wait_for(|m| m.get("error").is_some()).await;
    assert_eq!(e["error"]["code"], -32600, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("maxBodyBytes"),
        "{e}"
    );
    let pong = c.request("ping", json!({})).await;
    assert!(pong.get("result").is_some(), "the session goes on: {pong}");
    gw.stop(Duration::from_secs(2)).await;
}
