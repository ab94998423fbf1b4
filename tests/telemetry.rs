//! Traces and logs of the real `mcp-gateway` binary: spans reach an OTLP/HTTP collector (one
//! run inside this test) with the client's trace context, the backend sees the same trace,
//! spans still buffered at SIGTERM are not lost, JSON logs are JSON, and no secret from the
//! config reaches any log at any level.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{Running, WAIT, workspace_bin};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::{Value, json};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn config(dir: &Path, servers: Value) -> PathBuf {
    let path = dir.join("gateway.json");
    std::fs::write(&path, json!({ "mcpServers": servers }).to_string()).expect("config");
    path
}

/// Poll `/readyz` until every backend is ready.
async fn ready(base: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r: Option<Value> = match reqwest::get(format!("{base}/readyz")).await {
            Ok(r) => r
                .text()
                .await
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok()),
            Err(_) => None,
        };
        let backends = r.as_ref().and_then(|r| r["backends"].as_array().cloned());
        if backends.is_some_and(|b| !b.is_empty() && b.iter().all(|b| b["state"] == "ready")) {
            return;
        }
        assert!(Instant::now() < deadline, "backends not ready: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A streamable-HTTP client session; every request can carry extra headers.
struct Client {
    http: reqwest::Client,
    url: String,
    session: String,
}

impl Client {
    async fn connect(base: &str) -> Client {
        let http = reqwest::Client::new();
        let url = format!("{base}/mcp");
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}});
        let resp = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(init.to_string())
            .send()
            .await
            .expect("initialize");
        let session = resp.headers()["mcp-session-id"]
            .to_str()
            .expect("id")
            .to_owned();
        let c = Client { http, url, session };
        c.post(
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            &[],
        )
        .await;
        c
    }

    async fn post(&self, msg: Value, headers: &[(&str, &str)]) -> Option<Value> {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json")
            .header("mcp-session-id", &self.session)
            .header("content-type", "application/json")
            .body(msg.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("post");
        let text = resp.text().await.expect("body");
        serde_json::from_str(&text).ok()
    }

    async fn call(&self, tool: &str, args: Value, headers: &[(&str, &str)]) -> Value {
        let msg = json!({"jsonrpc":"2.0","id":"call-1","method":"tools/call",
            "params":{"name":tool,"arguments":args}});
        self.post(msg, headers).await.expect("a JSON response")
    }
}

// --- an OTLP/HTTP collector ----------------------------------------------------------------

type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

async fn collector() -> (String, Received) {
    async fn traces(State(got): State<Received>, body: Bytes) -> Vec<u8> {
        let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
        got.lock().expect("lock").push(req);
        ExportTraceServiceResponse::default().encode_to_vec()
    }
    let got = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let v = span.attributes.iter().find(|a| a.key == key)?;
    match v.value.as_ref()?.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        Any::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn spans(got: &Received) -> Vec<Span> {
    got.lock()
        .expect("lock")
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn service_names(got: &Received) -> Vec<String> {
    got.lock()
        .expect("lock")
        .iter()
        .flat_map(|r| &r.resource_spans)
        .filter_map(|r| r.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .filter(|a| a.key == "service.name")
        .filter_map(|a| match a.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

// --- tests ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_and_the_backend_joins_the_trace() {
    let (endpoint, got) = collector().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = workspace_bin("mcp-fixture");
    let cfg = config(
        dir.path(),
        json!({"fx": {"command": fixture, "args": ["--name", "fx"]}}),
    );
    let mut gw = Running::start(
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--log-format",
            "json",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            // Far beyond the test: only the flush at shutdown can deliver the spans.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    ready(&gw.base).await;
    let client = Client::connect(&gw.base).await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let resp = client
        .call(
            "fx__request_meta",
            json!({}),
            &[
                ("traceparent", traceparent.as_str()),
                ("tracestate", "vendor=1"),
            ],
        )
        .await;
    let seen = resp["result"]["structuredContent"]["meta"].clone();
    let unknown = client.call("fx__nope", json!({}), &[]).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");

    gw.wait_for(|l| l.contains("\"message\":\"gateway ready\""));
    gw.terminate();

    let deadline = Instant::now() + WAIT;
    let wanted = "tools/call fx__request_meta";
    while !spans(&got).iter().any(|s| s.name == wanted) {
        assert!(
            Instant::now() < deadline,
            "no `{wanted}` span exported; got {:?}",
            spans(&got).iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = spans(&got);
    let server = all.iter().find(|s| s.name == wanted).expect("server span");
    assert_eq!(
        hex(&server.trace_id),
        TRACE_ID,
        "the client's trace goes on"
    );
    assert_eq!(
        hex(&server.parent_span_id),
        CLIENT_SPAN,
        "the client's span is the parent"
    );
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(
        attr(server, "mcp.method.name").as_deref(),
        Some("tools/call")
    );
    assert_eq!(
        attr(server, "gen_ai.tool.name").as_deref(),
        Some("fx__request_meta")
    );
    assert_eq!(
        attr(server, "gen_ai.operation.name").as_deref(),
        Some("execute_tool")
    );
    assert_eq!(
        attr(server, "mcp.session.id").as_deref(),
        Some(client.session.as_str())
    );
    assert_eq!(
        attr(server, "jsonrpc.request.id").as_deref(),
        Some("call-1")
    );
    assert_eq!(attr(server, "network.transport").as_deref(), Some("tcp"));
    assert_eq!(
        attr(server, "mcp_gateway.session.transport").as_deref(),
        Some("streamable-http")
    );
    assert_eq!(attr(server, "mcp_gateway.backend").as_deref(), Some("fx"));
    assert_eq!(attr(server, "mcp_gateway.outcome").as_deref(), Some("ok"));
    assert_eq!(attr(server, "error.type"), None);

    let upstream = all
        .iter()
        .find(|s| s.parent_span_id == server.span_id)
        .expect("a child span for the upstream call");
    assert_eq!(
        upstream.name, "tools/call request_meta",
        "the upstream name"
    );
    assert_eq!(upstream.kind, SpanKind::Client as i32);
    assert_eq!(upstream.trace_id, server.trace_id);
    assert_eq!(attr(upstream, "mcp_gateway.backend").as_deref(), Some("fx"));
    assert_eq!(
        attr(upstream, "mcp_gateway.backend.transport").as_deref(),
        Some("stdio")
    );
    assert_eq!(attr(upstream, "network.transport").as_deref(), Some("pipe"));

    // The backend got the upstream span as its parent, in the same trace.
    assert_eq!(
        seen["traceparent"],
        format!("00-{TRACE_ID}-{}-01", hex(&upstream.span_id)),
        "{resp}"
    );
    assert_eq!(seen["tracestate"], "vendor=1", "{resp}");

    // A failed request says how it failed.
    let failed = all
        .iter()
        .find(|s| attr(s, "gen_ai.tool.name").as_deref() == Some("fx__nope"))
        .expect("the unknown tool's span");
    assert_eq!(
        failed.name, "tools/call",
        "a made-up name stays out of the span name"
    );
    assert_eq!(attr(failed, "error.type").as_deref(), Some("-32602"));
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(2),
        "status error"
    );

    assert!(service_names(&got).iter().all(|n| n == "mcp-gateway"));

    // --log-format json: every line is a JSON object; the summary is one event per backend.
    let stderr = gw.stderr();
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.is_object(), "{line}");
    }
    let backend_event = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "backend" && v["backend"] == "fx")
        .expect("a summary event for the backend");
    assert_eq!(backend_event["state"], "ready");
    assert_eq!(backend_event["transport"], "stdio");
    assert!(backend_event["tools"].as_u64().is_some_and(|n| n > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    const ENV_SECRET: &str = "env-s3cr3t-7d1f0a";
    const HEADER_SECRET: &str = "hdr-s3cr3t-92b4c6";
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    let fixture = workspace_bin("mcp-fixture");

    // A streamable-HTTP backend that is sent the secret header on every request.
    let mut http_backend = Command::new(&fixture)
        .args(["--transport", "http", "--port", "0", "--name", "web"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the fixture over HTTP");
    let mut first = String::new();
    BufReader::new(http_backend.stderr.take().expect("stderr"))
        .read_line(&mut first)
        .expect("its listening line");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("url")
        .to_owned();

    let cfg = config(
        dir.path(),
        json!({
            "fx": {"command": fixture, "args": ["--name", "fx"],
                   "env": {"API_TOKEN": ENV_SECRET, "RUST_LOG": "debug"}},
            "web": {"type": "streamable-http", "url": url,
                    "headers": {"Authorization": format!("Bearer {HEADER_SECRET}")}},
        }),
    );
    let mut gw = Running::start(
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--log-level",
            "trace",
            "--log-dir",
            logs.to_str().expect("utf-8"),
        ],
        &[],
    );
    ready(&gw.base).await;
    let client = Client::connect(&gw.base).await;
    for tool in ["fx__echo", "web__echo"] {
        let r = client.call(tool, json!({"message": "hi"}), &[]).await;
        assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    }
    gw.wait_for(|l| l.contains("BACKEND"));
    gw.terminate();
    let _ = http_backend.kill();
    let _ = http_backend.wait();

    let stderr = gw.stderr();
    assert!(
        stderr.contains(" TRACE ") || stderr.contains(" DEBUG "),
        "the most verbose level is on"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("mcp_gateway::backend") && l.contains("backend=fx")),
        "the backend's stderr is logged, tagged with its name:\n{stderr}"
    );
    let files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        name.starts_with("mcp-gateway-") && name.ends_with("Z-trace.log"),
        "{name}"
    );
    let file_text = std::fs::read_to_string(&files[0]).expect("read");
    assert!(file_text.contains("web__echo") || file_text.contains("backend ready"));
    for (what, text) in [("stderr", &stderr), ("the log file", &file_text)] {
        for secret in [ENV_SECRET, HEADER_SECRET] {
            assert!(!text.contains(secret), "{secret} appears in {what}");
        }
    }
}

/// With tracing off (no exporter, no subscriber here), a context that came in is passed on
/// as it came: from the HTTP header into `_meta`, and a `_meta` one (which wins) unchanged.
#[tokio::test]
async fn without_tracing_the_clients_context_is_passed_on() {
    let gw = common::gateway(vec![common::fixture("fx")]).await;
    let client = Client::connect(&common::listen(&gw).await).await;

    let header = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let r = client
        .call("fx__request_meta", json!({}), &[("traceparent", &header)])
        .await;
    let meta = &r["result"]["structuredContent"]["meta"];
    assert_eq!(meta["traceparent"], header.as_str(), "{r}");
    assert!(meta.get("tracestate").is_none(), "{r}");

    let in_meta = "00-11111111111111111111111111111111-2222222222222222-00";
    let msg = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"fx__request_meta","arguments":{},
        "_meta":{"traceparent":in_meta,"tracestate":"k=v","custom":1}}});
    let r = client
        .post(msg, &[("traceparent", &header)])
        .await
        .expect("response");
    let meta = &r["result"]["structuredContent"]["meta"];
    assert_eq!(
        meta["traceparent"], in_meta,
        "_meta wins over the header: {r}"
    );
    assert_eq!(meta["tracestate"], "k=v");
    assert_eq!(meta["custom"], 1, "the rest of _meta passes");

    let r = client.call("fx__request_meta", json!({}), &[]).await;
    let meta = &r["result"]["structuredContent"]["meta"];
    assert!(
        meta.get("traceparent").is_none(),
        "no context, none invented: {r}"
    );
}

/// Timeouts and cancellations are outcomes of their own, and nothing stays in flight.
#[tokio::test]
async fn timeouts_and_cancellations_are_counted_as_such() {
    use mcp_gateway::telemetry::exposition::Format;
    use mcp_gateway::telemetry::metrics::Sample;

    let mut fx = common::fixture("fx");
    fx.timeout = Some(Duration::from_millis(300));
    let gw = common::gateway(vec![fx]).await;
    let metrics = || gw.metrics.render(&Sample::default(), Format::Prometheus);
    let series = |outcome: &str| {
        format!(
            r#"mcp_gateway_requests_total{{method="tools/call",backend="fx",tool="fx__slow",outcome="{outcome}"}} 1"#
        )
    };
    let mut c = common::Client::initialized(&gw).await;

    let r = c
        .call("fx__slow", json!({"steps": 1000, "interval_ms": 50}))
        .await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(metrics().contains(&series("timeout")), "{}", metrics());

    let id = c
        .start(
            "tools/call",
            json!({"name": "fx__slow", "arguments": {"steps": 1000, "interval_ms": 20},
                   "_meta": {"progressToken": 1}}),
        )
        .await;
    c.wait_for(|m| m["method"] == "notifications/progress")
        .await;
    c.notify("notifications/cancelled", json!({"requestId": id}))
        .await;
    let deadline = Instant::now() + WAIT;
    while !metrics().contains(&series("cancelled")) {
        assert!(Instant::now() < deadline, "{}", metrics());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = metrics();
    assert!(
        text.contains(r#"mcp_gateway_backend_requests_in_flight{backend="fx"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mcp_gateway_notifications_sent_total{kind="progress"}"#),
        "{text}"
    );
    gw.stop(std::time::Duration::from_secs(2)).await;
}

/// `--otlp-endpoint` alone (no OTEL_* variables) turns tracing on; requests the gateway
/// answers itself are spans too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_turns_tracing_on() {
    let (endpoint, got) = collector().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = workspace_bin("mcp-fixture");
    let cfg = config(dir.path(), json!({"fx": {"command": fixture}}));
    let mut gw = Running::start(
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--otlp-endpoint",
            &endpoint,
        ],
        &[],
    );
    ready(&gw.base).await;
    let client = Client::connect(&gw.base).await;
    let list = client
        .post(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await
        .expect("a response");
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    gw.terminate();
    let deadline = Instant::now() + WAIT;
    while !spans(&got).iter().any(|s| s.name == "tools/list") {
        assert!(Instant::now() < deadline, "no tools/list span exported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = spans(&got);
    let list = all.iter().find(|s| s.name == "tools/list").expect("span");
    assert_eq!(list.kind, SpanKind::Server as i32);
    assert!(
        list.parent_span_id.is_empty(),
        "no context came in: a root span"
    );
    assert_eq!(attr(list, "mcp_gateway.backend"), None);
    assert!(
        all.iter().all(|s| s.parent_span_id != list.span_id),
        "answered by the gateway itself: no upstream call"
    );
}
