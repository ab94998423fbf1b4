//! API-call scenarios: the controller against a mocked API server (`tower-test`), asserting
//! each request it makes and answering as the API server would.

use std::path::PathBuf;

use futures_util::FutureExt;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::*;
use crate::spec::{GatewaySettings, TransportSpec};

const WAIT: Duration = Duration::from_secs(30);

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn fixture_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("mcp-fixture")
}

fn controller(policy: &[&str]) -> (Arc<Controller>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let settings = GatewaySettings {
        startup_timeout: WAIT,
        ..GatewaySettings::default()
    };
    let policy: Vec<String> = policy.iter().map(|p| p.to_string()).collect();
    let controller = Arc::new(Controller {
        gw: Gateway::new(settings),
        client,
        opts: Options {
            namespaces: Vec::new(),
            selector: None,
            policy: StdioPolicy::new(&policy).expect("policy"),
            lease_name: "mcp-gateway".into(),
            lease_namespace: "mcp".into(),
            identity: "gw-0".into(),
            resync: Duration::from_secs(60),
        },
        tracked: Mutex::new(BTreeMap::new()),
        dirty: Arc::new(Notify::new()),
    });
    (controller, handle)
}

fn resource(name: &str, generation: i64, spec: Value) -> McpBackend {
    serde_json::from_value(json!({
        "apiVersion": "mcpgateway.dev/v1alpha1",
        "kind": "McpBackend",
        "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"),
                     "generation": generation, "resourceVersion": "7"},
        "spec": spec,
    }))
    .expect("resource")
}

fn recorder(c: &Controller) -> Recorder {
    Recorder::new(
        c.client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some("gw-0".into()),
        },
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

/// The next request, with its body parsed (or `Null`).
async fn next(
    handle: &mut ApiHandle,
) -> (
    Method,
    String,
    Option<String>,
    Value,
    mock::SendResponse<Response<Body>>,
) {
    let (request, send) = tokio::time::timeout(WAIT, handle.next_request())
        .await
        .expect("a request in time")
        .expect("a request");
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        parts.method,
        parts.uri.to_string(),
        content_type,
        value,
        send,
    )
}

fn not_found(kind: &str, name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{kind} \"{name}\" not found"), "reason": "NotFound", "code": 404})
}

/// Answer a status patch the way the API server does: the object with the applied status.
fn answer_status(resource: &McpBackend, patch: &Value, send: mock::SendResponse<Response<Body>>) {
    let mut object = serde_json::to_value(resource).expect("object");
    object["status"] = patch["status"].clone();
    send.send_response(json_response(StatusCode::OK, &object));
}

/// What one status pass sent: the status patch and the Event that followed it.
struct Written {
    status_uri: String,
    content_type: Option<String>,
    patch: Value,
    event_uri: String,
    event: Value,
}

/// Run one status pass, answering its status patch and its Event as the API server would.
async fn write_pass(c: &Arc<Controller>, api: &mut ApiHandle, resource: &McpBackend) -> Written {
    let write = tokio::spawn({
        let c = c.clone();
        async move { c.write_all(&recorder(&c)).await }
    });
    let (method, status_uri, content_type, patch, send) = next(api).await;
    assert_eq!(method, Method::PATCH, "{status_uri}");
    answer_status(resource, &patch, send);
    let (method, event_uri, _, event, send) = next(api).await;
    assert_eq!(method, Method::POST, "{event_uri}");
    send.send_response(json_response(StatusCode::CREATED, &event));
    tokio::time::timeout(WAIT, write)
        .await
        .expect("written")
        .expect("task");
    Written {
        status_uri,
        content_type,
        patch,
        event_uri,
        event,
    }
}

#[tokio::test]
async fn a_resource_with_a_secret_is_served_and_reported_ready() {
    let (c, mut api) = controller(&["*"]);
    let fixture = fixture_bin().to_string_lossy().into_owned();
    let r = resource(
        "tools",
        3,
        json!({
            "transport": "stdio", "command": fixture, "args": ["--name", "tools"],
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}],
        }),
    );

    let reconcile = tokio::spawn({
        let (c, r) = (c.clone(), r.clone());
        async move { c.reconcile(r).await }
    });
    let (method, uri, _, _, send) = next(&mut api).await;
    assert_eq!(
        (method, uri.as_str()),
        (Method::GET, "/api/v1/namespaces/team-a/secrets/api")
    );
    send.send_response(json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "api", "namespace": "team-a"},
            "data": {"token": "czNjcmV0"}, // "s3cret"
        }),
    ));
    reconcile.await.expect("reconciled");

    let backend = c.gw.upstreams.get("team-a/tools").expect("backend applied");
    let TransportSpec::Stdio(process) = &backend.spec().transport else {
        panic!("stdio")
    };
    assert_eq!(process.env.get("TOKEN").map(String::as_str), Some("s3cret"));
    tokio::time::timeout(WAIT, c.gw.settled())
        .await
        .expect("settles");
    let snapshot = c.gw.catalog.current();
    assert!(
        snapshot.tool("tools__echo").is_some(),
        "the resource's name is the prefix"
    );
    let tools = snapshot.counts("team-a/tools")[0];

    let Written {
        status_uri: uri,
        content_type,
        patch,
        event_uri,
        event,
    } = write_pass(&c, &mut api, &r).await;
    assert!(
        uri.starts_with(
            "/apis/mcpgateway.dev/v1alpha1/namespaces/team-a/mcpbackends/tools/status?"
        ),
        "{uri}"
    );
    assert!(
        uri.contains("fieldManager=mcp-gateway") && uri.contains("force=true"),
        "{uri}"
    );
    assert_eq!(
        content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(patch["kind"], "McpBackend");
    let status = &patch["status"];
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["tools"], json!(tools));
    assert_eq!(status["serverInfo"]["name"], "tools");
    let ready = &status["conditions"][0];
    assert_eq!(
        (
            ready["type"].as_str(),
            ready["status"].as_str(),
            ready["reason"].as_str()
        ),
        (Some("Ready"), Some("True"), Some("Connected"))
    );
    assert_eq!(ready["observedGeneration"], 3);
    assert_eq!(
        event_uri,
        "/apis/events.k8s.io/v1/namespaces/team-a/events?"
    );
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Normal"), Some("Connected"))
    );
    assert_eq!(event["regarding"]["name"], "tools");
    assert_eq!(event["regarding"]["kind"], "McpBackend");

    // Nothing changed: a second pass writes nothing (it would block on the mock otherwise).
    tokio::time::timeout(WAIT, c.write_all(&recorder(&c)))
        .await
        .expect("no request");
    assert!(api.next_request().now_or_never().is_none());
    c.gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_missing_secret_is_reported_not_crashed_on() {
    let (c, mut api) = controller(&["*"]);
    let r = resource(
        "tools",
        1,
        json!({
            "transport": "streamable-http", "url": "http://tools.team-a.svc:80/mcp",
            "headers": [{"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}],
        }),
    );
    let reconcile = tokio::spawn({
        let (c, r) = (c.clone(), r.clone());
        async move { c.reconcile(r).await }
    });
    let (_, uri, _, _, send) = next(&mut api).await;
    assert_eq!(uri, "/api/v1/namespaces/team-a/secrets/api");
    send.send_response(json_response(
        StatusCode::NOT_FOUND,
        &not_found("secrets", "api"),
    ));
    reconcile.await.expect("reconciled");
    assert!(c.gw.upstreams.get("team-a/tools").is_none(), "not served");

    let Written {
        status_uri,
        patch,
        event,
        ..
    } = write_pass(&c, &mut api, &r).await;
    assert!(
        status_uri.contains("/mcpbackends/tools/status"),
        "{status_uri}"
    );
    let ready = &patch["status"]["conditions"][0];
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("SecretNotFound"))
    );
    assert_eq!(
        ready["message"],
        "spec.headers[Authorization]: Secret \"api\" not found"
    );
    assert!(patch["status"].get("tools").is_none());
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("SecretNotFound"))
    );
}

#[tokio::test]
async fn a_refused_command_gets_a_reason_and_runs_nothing() {
    let (c, mut api) = controller(&["npx"]);
    let r = resource(
        "shell",
        2,
        json!({"transport": "stdio", "command": "/bin/sh", "args": ["-c", "id"]}),
    );
    // No references: no API call before the decision.
    tokio::time::timeout(WAIT, c.reconcile(r.clone()))
        .await
        .expect("reconciled");
    assert!(c.gw.upstreams.all().is_empty());
    let Written { patch, event, .. } = write_pass(&c, &mut api, &r).await;
    let ready = &patch["status"]["conditions"][0];
    assert_eq!(ready["reason"], "CommandNotAllowed");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"/bin/sh\"") && m.contains("npx"))
    );
    assert_eq!(event["reason"], "CommandNotAllowed");
}

#[tokio::test]
async fn a_relist_removes_what_was_deleted_while_the_watch_was_down() {
    let (c, _api) = controller(&["*"]);
    let fixture = fixture_bin().to_string_lossy().into_owned();
    let spec = |name: &str| json!({"transport": "stdio", "command": fixture.clone(), "args": ["--name", name]});
    let (a, b) = (resource("a", 1, spec("a")), resource("b", 1, spec("b")));
    let mut listing = HashMap::new();
    for event in [
        Event::Init,
        Event::InitApply(a.clone()),
        Event::InitApply(b),
        Event::InitDone,
    ] {
        c.handle(None, event, &mut listing).await;
    }
    let mut names: Vec<String> =
        c.gw.upstreams
            .all()
            .iter()
            .map(|b| b.name.to_string())
            .collect();
    names.sort();
    assert_eq!(names, ["team-a/a", "team-a/b"]);
    // The config file's reload leaves McpBackends alone.
    c.gw.reconcile(Vec::new()).await;
    assert_eq!(c.gw.upstreams.all().len(), 2);
    // 410 Gone → a fresh list that no longer has `b`.
    for event in [Event::Init, Event::InitApply(a), Event::InitDone] {
        c.handle(None, event, &mut listing).await;
    }
    let names: Vec<String> =
        c.gw.upstreams
            .all()
            .iter()
            .map(|b| b.name.to_string())
            .collect();
    assert_eq!(names, ["team-a/a"]);
    assert!(lock(&c.tracked).get("team-a/b").is_none());
    c.gw.stop(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_file_backend_keeps_its_name() {
    let (c, _api) = controller(&["*"]);
    let fixture = fixture_bin().to_string_lossy().into_owned();
    let file = crate::config::parse(
        &format!("mcpServers:\n  team-a/x:\n    command: {fixture}\n"),
        "test",
        crate::config::Format::Yaml,
        None,
        &|_| None,
    )
    .expect("config");
    c.gw.reconcile(file.backends).await;
    let r = resource("x", 1, json!({"transport": "stdio", "command": fixture}));
    c.reconcile(r).await;
    let refusal = lock(&c.tracked)["team-a/x"]
        .outcome
        .clone()
        .expect_err("refused");
    assert_eq!(refusal.reason, "NameConflict");
    assert!(refusal.message.contains("config file"), "{refusal:?}");
    c.gw.stop(std::time::Duration::from_secs(2)).await;
}
