//! Streamable-HTTP transport tests against scripted servers and the real server-everything.
use std::collections::BTreeMap;

use serde_json::json;
use tokio::sync::mpsc;

use super::*;
use crate::upstream::sse::testing::{
    Everything, FakeServer, Seen, WAIT, exchange, exercise, recv, recv_msg,
};
use crate::upstream::transport::Transport;

async fn start() -> (FakeServer, HttpTransport, mpsc::Receiver<Inbound>) {
    let server = FakeServer::start().await;
    let (tx, rx) = mpsc::channel(16);
    let headers = BTreeMap::from([("X-Api-Key".to_owned(), "k3y".to_owned())]);
    let spec = HttpSpec {
        url: format!("{}/mcp", server.base),
        headers,
    };
    let t = HttpTransport::connect("b", &spec, Client::new(), tx, WAIT);
    (server, t.await.unwrap(), rx)
}

/// `initialize` (answered in JSON with a session id) and `notifications/initialized`;
/// returns the standalone GET that follows.
async fn handshake(
    s: &mut FakeServer,
    t: &HttpTransport,
    rx: &mut mpsc::Receiver<Inbound>,
) -> Seen {
    let params = json!({"protocolVersion": "2025-06-18"});
    let init = jsonrpc::request(json!(1), "initialize", Some(params));
    let host = s.base.trim_start_matches("http://").to_owned();
    let (sent, ()) = exchange(s, t.send(init), |req| {
        assert_eq!((req.method.as_str(), req.uri.as_str()), ("POST", "/mcp"));
        assert_eq!(req.header("host"), Some(host.as_str()));
        assert_eq!(req.header("accept"), Some(ACCEPT_POST));
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.header("x-api-key"), Some("k3y"));
        assert_eq!(req.header("mcp-session-id"), None);
        let result = jsonrpc::result(json!(1), json!({"protocolVersion": "2025-03-26"}));
        req.reply(([("mcp-session-id", "s-1")], axum::Json(result)));
    })
    .await;
    sent.unwrap();
    let (msg, related) = recv_msg(rx).await;
    assert_eq!((&msg["id"], related), (&json!(1), Some(json!(1))));

    let initialized = jsonrpc::notification("notifications/initialized", None);
    let (sent, ()) = exchange(s, t.send(initialized), |req| {
        assert_eq!(req.header("mcp-session-id"), Some("s-1"));
        assert_eq!(req.header("mcp-protocol-version"), Some("2025-03-26"));
        req.reply(StatusCode::ACCEPTED);
    })
    .await;
    sent.unwrap();
    let get = s.next().await;
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.header("accept"), Some(EVENT_STREAM));
    assert_eq!(get.header("mcp-session-id"), Some("s-1"));
    assert_eq!(get.header("x-api-key"), Some("k3y"));
    get
}

#[tokio::test]
async fn trace_context_in_meta_goes_out_as_headers() {
    let (mut s, t, mut rx) = start().await;
    let _get = handshake(&mut s, &t, &mut rx).await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let params = json!({"name": "x", "_meta": {"traceparent": traceparent, "tracestate": "a=1"}});
    let call = jsonrpc::request(json!(2), "tools/call", Some(params));
    let (sent, ()) = exchange(&mut s, t.send(call), |req| {
        assert_eq!(req.header("traceparent"), Some(traceparent));
        assert_eq!(req.header("tracestate"), Some("a=1"));
        assert_eq!(req.header("x-api-key"), Some("k3y"), "custom headers stay");
        req.reply(StatusCode::ACCEPTED);
    })
    .await;
    sent.unwrap();
    let plain = jsonrpc::request(json!(3), "tools/call", Some(json!({"name": "x"})));
    let (sent, ()) = exchange(&mut s, t.send(plain), |req| {
        assert_eq!(req.header("traceparent"), None, "no context, no header");
        req.reply(StatusCode::ACCEPTED);
    })
    .await;
    sent.unwrap();
}

#[tokio::test]
async fn responses_are_tagged_and_the_session_expires_on_404() {
    let (mut s, t, mut rx) = start().await;
    let get = handshake(&mut s, &t, &mut rx).await;
    let standalone = get.reply_sse();
    standalone.send("data: {\"jsonrpc\":\"2.0\",\"method\":\"hi\"}\n\n");
    let (msg, related) = recv_msg(&mut rx).await;
    assert_eq!((&msg["method"], related), (&json!("hi"), None));

    // `send` returns with the headers: the events are written only afterwards.
    let call = jsonrpc::request(json!(2), "tools/call", Some(json!({"name": "x"})));
    let (sent, events) = exchange(&mut s, t.send(call), Seen::reply_sse).await;
    sent.unwrap();
    let progress = jsonrpc::notification("notifications/progress", Some(json!({})));
    let done = jsonrpc::result(json!(2), json!({"content": []}));
    events.send(format!(
        "id: 1\ndata: {progress}\n\nid: 2\ndata: {done}\n\n"
    ));
    assert_eq!(recv_msg(&mut rx).await, (progress.clone(), Some(json!(2))));
    assert_eq!(recv_msg(&mut rx).await, (done, Some(json!(2))));

    let list = jsonrpc::request(json!("three"), "tools/list", None);
    let batch = json!([
        progress,
        jsonrpc::result(json!("three"), json!({"tools": []}))
    ]);
    let (sent, ()) = exchange(&mut s, t.send(list), |req| req.reply(axum::Json(batch))).await;
    sent.unwrap();
    assert_eq!(recv_msg(&mut rx).await.1, Some(json!("three")));
    assert_eq!(recv_msg(&mut rx).await.0["id"], "three");

    let ping = jsonrpc::request(json!(4), "ping", None);
    let (sent, ()) = exchange(&mut s, t.send(ping.clone()), |req| {
        req.reply(StatusCode::NOT_FOUND)
    })
    .await;
    assert!(
        matches!(sent, Err(TransportError::Status { status: 404, .. })),
        "{sent:?}"
    );
    match recv(&mut rx).await {
        Inbound::Closed(reason) => assert!(reason.starts_with("session expired"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(t.send(ping).await, Err(TransportError::Closed)));
    drop(standalone);
}

#[tokio::test]
async fn get_stream_reconnects_with_last_event_id_and_close_deletes() {
    let (mut s, t, mut rx) = start().await;
    let events = handshake(&mut s, &t, &mut rx).await.reply_sse();
    events.send("id: e7\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n\n");
    assert_eq!(recv_msg(&mut rx).await.0["method"], "a");
    drop(events);
    let again = s.next().await;
    assert_eq!(
        (again.method.as_str(), again.header("last-event-id")),
        ("GET", Some("e7"))
    );
    again.reply(StatusCode::METHOD_NOT_ALLOWED);

    exchange(&mut s, t.close(), |delete| {
        assert_eq!(delete.method, Method::DELETE);
        assert_eq!(delete.header("mcp-session-id"), Some("s-1"));
        assert_eq!(delete.header("x-api-key"), Some("k3y"));
        delete.reply(StatusCode::METHOD_NOT_ALLOWED);
    })
    .await;
    let ping = jsonrpc::request(json!(9), "ping", None);
    assert!(matches!(t.send(ping).await, Err(TransportError::Closed)));
}

#[tokio::test]
async fn refusals_and_a_dropped_response_stream_resumed_once() {
    let (mut s, t, mut rx) = start().await;
    // Without a session, a 404 is only an error (with a short excerpt of the body).
    let refuse = |req: Seen| req.reply((StatusCode::NOT_FOUND, "é".repeat(300)));
    let (sent, ()) = exchange(&mut s, t.send(json!({})), refuse).await;
    let Err(TransportError::Status {
        status: 404, body, ..
    }) = sent
    else {
        panic!()
    };
    assert_eq!(body.chars().count(), 200);
    assert!(rx.try_recv().is_err(), "no session, so no Closed");

    handshake(&mut s, &t, &mut rx)
        .await
        .reply(StatusCode::METHOD_NOT_ALLOWED);
    let call = jsonrpc::request(json!(2), "tools/call", None);
    let (sent, events) = exchange(&mut s, t.send(call), Seen::reply_sse).await;
    sent.unwrap();
    let progress = jsonrpc::notification("notifications/progress", None);
    events.send(format!("id: r1\ndata: {progress}\n\n"));
    assert_eq!(recv_msg(&mut rx).await, (progress, Some(json!(2))));
    drop(events);

    let resume = s.next().await;
    assert_eq!(
        (resume.method.as_str(), resume.header("last-event-id")),
        ("GET", Some("r1"))
    );
    let done = jsonrpc::result(json!(2), json!({}));
    resume.reply_sse().send(format!("id: r2\ndata: {done}\n\n"));
    assert_eq!(recv_msg(&mut rx).await, (done, Some(json!(2))));
}

/// Needs `EVERYTHING_BIN`: `cargo test -- --ignored everything`.
#[tokio::test]
#[ignore = "needs EVERYTHING_BIN (npm @modelcontextprotocol/server-everything)"]
async fn everything_streamable_http() {
    let server = Everything::start("streamableHttp").await;
    let (tx, mut rx) = mpsc::channel(64);
    let spec = server.spec("/mcp");
    let t = HttpTransport::connect("everything", &spec, Client::new(), tx, WAIT);
    let t = Transport::Http(t.await.unwrap());
    let names = exercise(&t, &mut rx, true).await;
    println!("server-everything (streamableHttp) tools: {names:?}");
    server.stop().await;
}

#[test]
fn which_errors_mean_the_session_is_gone() {
    let err = |status: u16, body: &str| TransportError::Status {
        url: "u".into(),
        status,
        body: body.into(),
    };
    assert!(session_gone(StatusCode::NOT_FOUND, &err(404, "")));
    assert!(session_gone(
        StatusCode::BAD_REQUEST,
        &err(400, "Bad Request: No valid session ID provided")
    ));
    assert!(!session_gone(
        StatusCode::BAD_REQUEST,
        &err(400, "invalid params")
    ));
    assert!(!session_gone(
        StatusCode::INTERNAL_SERVER_ERROR,
        &err(500, "session store down")
    ));
}

/// Answers `times` POSTs to `/mcp` with `redirect` to `/mcp/`; the message must come
/// again there.
async fn redirected(
    s: &mut FakeServer,
    t: &HttpTransport,
    id: i64,
    redirect: StatusCode,
    times: usize,
) {
    let ping = jsonrpc::request(json!(id), "ping", None);
    let answer = async {
        for _ in 0..times {
            let first = s.next().await;
            assert_eq!(
                (first.method.as_str(), first.uri.as_str()),
                ("POST", "/mcp")
            );
            first.reply((redirect, [("location", "/mcp/")]));
        }
        let again = s.next().await;
        assert_eq!(
            (again.method.as_str(), again.uri.as_str()),
            ("POST", "/mcp/")
        );
        assert_eq!(again.json(), ping, "the same message, sent again");
        assert_eq!(again.header("x-api-key"), Some("k3y"));
        again.reply(axum::Json(jsonrpc::result(json!(id), json!({}))));
    };
    let both = async { tokio::join!(t.send(ping.clone()), answer) };
    let (sent, ()) = tokio::time::timeout(WAIT, both).await.unwrap();
    sent.unwrap();
}

#[tokio::test]
async fn a_redirected_post_is_followed_and_later_posts_go_through_reqwest() {
    let (mut s, t, mut rx) = start().await;
    assert!(
        t.inner.direct.is_some(),
        "plain http, no proxy: the direct client"
    );
    // The direct client's POST, then reqwest's, which follows the redirect.
    redirected(&mut s, &t, 1, StatusCode::TEMPORARY_REDIRECT, 2).await;
    assert_eq!(recv_msg(&mut rx).await.1, Some(json!(1)));
    assert!(t.inner.redirects.load(Ordering::Relaxed));
    redirected(&mut s, &t, 2, StatusCode::PERMANENT_REDIRECT, 1).await;
    assert_eq!(recv_msg(&mut rx).await.1, Some(json!(2)));
}

#[test]
fn only_plain_http_goes_direct_with_the_host_hyper_would_send() {
    let direct = |url: &str| Direct::for_url(&Url::parse(url).unwrap(), WAIT);
    for url in ["https://example.com/mcp", "http://user:pw@example.com/mcp"] {
        assert!(direct(url).is_none(), "{url}");
    }
    let host = |url: &str| direct(url).map(|d| d.host.to_str().unwrap().to_owned());
    assert_eq!(
        host("http://127.0.0.1:80/mcp").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(host("http://[::1]:8080/mcp").as_deref(), Some("[::1]:8080"));
}

#[tokio::test]
async fn a_refused_connection_reads_as_it_did_through_reqwest() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", closed.local_addr().unwrap());
    drop(closed);
    let spec = HttpSpec {
        url: url.clone(),
        headers: BTreeMap::new(),
    };
    let (tx, _rx) = mpsc::channel(1);
    let t = HttpTransport::connect("b", &spec, Client::new(), tx, WAIT);
    let t = t.await.unwrap();
    assert!(t.inner.direct.is_some());
    let sent = t.send(jsonrpc::request(json!(1), "ping", None)).await;
    let Err(TransportError::Connect { detail, .. }) = sent else {
        panic!("{sent:?}")
    };
    let through_reqwest = Client::new().post(&url).send().await.unwrap_err();
    assert_eq!(detail, error_detail(&through_reqwest));
    assert!(detail.starts_with("connection failed: "), "{detail}");
}
