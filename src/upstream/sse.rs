//! The legacy HTTP+SSE upstream transport (MCP protocol 2024-11-05).
//!
//! Older backends speak it: the client GETs an event stream, the server's first `endpoint`
//! event names the URL to POST messages to, and every server message arrives as a `message`
//! event on that one stream. The stream is the session: when it ends, the backend is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use reqwest::{Client, Url};
use serde_json::Value;
use tokio::task::AbortHandle;

use super::sse_stream::{
    EventStream, error_detail, header_map, parse_messages, parse_url, status_error,
};
use super::transport::{Inbound, InboundTx, TransportError};
use crate::spec::HttpSpec;

/// Boxed so that the `Transport` enum stays small.
pub struct SseTransport(Box<Inner>);

struct Inner {
    backend: String,
    client: Client,
    /// Where messages are POSTed, as announced by the `endpoint` event.
    endpoint: Url,
    /// Custom headers plus `Content-Type: application/json`.
    headers: HeaderMap,
    reader: AbortHandle,
    /// The stream ended or `close` was called.
    closed: Arc<AtomicBool>,
}

// === impl SseTransport ===

impl SseTransport {
    /// Open the event stream and wait (at most `connect_timeout`) for the `endpoint` event.
    pub async fn connect(
        backend: &str,
        spec: &HttpSpec,
        client: reqwest::Client,
        inbound: InboundTx,
        connect_timeout: Duration,
    ) -> Result<Self, TransportError> {
        let url = parse_url(&spec.url)?;
        let mut headers = header_map(spec)?;
        let opening = open(&client, &url, headers.clone(), backend);
        let (stream, endpoint) = tokio::time::timeout(connect_timeout, opening)
            .await
            .map_err(|_| TransportError::Timeout {
                what: format!(
                    "opening the event stream at {} and its endpoint event",
                    crate::redact::url(url.as_str())
                ),
                secs: timeout_secs(connect_timeout),
            })??;
        tracing::debug!(backend, endpoint = %crate::redact::url(endpoint.as_str()), "event stream open");

        let closed = Arc::new(AtomicBool::new(false));
        let reader = read_stream(backend.to_owned(), stream, inbound, Arc::clone(&closed));
        let reader = tokio::spawn(reader).abort_handle();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let backend = backend.to_owned();
        let inner = Inner {
            backend,
            client,
            endpoint,
            headers,
            reader,
            closed,
        };
        Ok(Self(Box::new(inner)))
    }

    /// POST one message to the endpoint; the reply arrives on the event stream.
    pub async fn send(&self, msg: Value) -> Result<(), TransportError> {
        let inner = &*self.0;
        if inner.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        let body = serde_json::to_vec(&msg)
            .map_err(|e| TransportError::Protocol(format!("cannot encode message: {e}")))?;
        let mut headers = inner.headers.clone();
        crate::telemetry::context::add_headers(&msg, &mut headers);
        let request = inner.client.post(inner.endpoint.clone());
        let sending = request.headers(headers).body(body).send();
        let response = sending.await.map_err(|e| TransportError::Connect {
            url: inner.endpoint.to_string(),
            detail: error_detail(&e),
        })?;
        if !response.status().is_success() {
            return Err(status_error(inner.endpoint.as_str(), response).await);
        }
        // Usually "Accepted"; read it so the connection can be reused.
        if let Err(e) = response.bytes().await {
            let error = error_detail(&e);
            tracing::debug!(backend = %inner.backend, %error, "reading a POST answer failed");
        }
        Ok(())
    }

    /// Stop reading the event stream, which ends the session for the server.
    pub async fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.reader.abort();
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.0.reader.abort();
    }
}

/// GET the event stream and read up to its `endpoint` event.
async fn open(
    client: &Client,
    url: &Url,
    mut headers: HeaderMap,
    backend: &str,
) -> Result<(EventStream, Url), TransportError> {
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    let connect_error = |detail: String| TransportError::Connect {
        url: url.to_string(),
        detail,
    };
    let response = client
        .get(url.clone())
        .headers(headers)
        .send()
        .await
        .map_err(|e| connect_error(error_detail(&e)))?;
    if !response.status().is_success() {
        return Err(status_error(url.as_str(), response).await);
    }
    let mut stream = EventStream::new(response);
    let data = loop {
        match stream.next_event().await {
            Ok(Some(event)) if event.event.as_deref() == Some("endpoint") => break event.data,
            Ok(Some(event)) => {
                tracing::debug!(backend, event = ?event.event, "event before the endpoint event ignored");
            }
            Ok(None) => {
                return Err(connect_error(
                    "the event stream ended before its endpoint event".to_owned(),
                ));
            }
            Err(e) => return Err(connect_error(e.to_string())),
        }
    };
    let endpoint = resolve_endpoint(url, &data)?;
    Ok((stream, endpoint))
}

/// Resolve the announced endpoint against the stream URL. It must stay on the same origin:
/// the custom headers (credentials, typically) go to it.
fn resolve_endpoint(base: &Url, data: &str) -> Result<Url, TransportError> {
    let endpoint = base
        .join(data.trim())
        .map_err(|e| TransportError::Protocol(format!("invalid endpoint {data:?}: {e}")))?;
    if endpoint.origin() != base.origin() {
        return Err(TransportError::Protocol(format!(
            "endpoint {endpoint} is not on the origin of {base}"
        )));
    }
    Ok(endpoint)
}

/// Deliver every message event until the stream ends, then report the end once.
async fn read_stream(
    backend: String,
    mut stream: EventStream,
    inbound: InboundTx,
    closed: Arc<AtomicBool>,
) {
    let reason = loop {
        match stream.next_event().await {
            Ok(Some(event)) if event.is_message() => {
                for msg in parse_messages(&backend, &event.data) {
                    let message = Inbound::Message { msg, related: None };
                    if inbound.send(message).await.is_err() {
                        return;
                    }
                }
            }
            Ok(Some(event)) => {
                tracing::debug!(backend, event = ?event.event, "unknown event ignored");
            }
            Ok(None) => break "the event stream ended".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    tracing::debug!(backend, %reason, "event stream closed");
    closed.store(true, Ordering::Release);
    let _ = inbound.send(Inbound::Closed(reason)).await;
}

fn timeout_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A scripted fake backend and a runner for the real reference server, for the tests of
/// both HTTP transports.
#[cfg(test)]
pub(crate) mod testing {
    use std::process::Stdio;
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::response::{IntoResponse, Response};
    use futures_util::stream;
    use http::{HeaderMap, Method};
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::sync::{mpsc, oneshot};

    use crate::jsonrpc;
    use crate::spec::HttpSpec;
    use crate::upstream::transport::{Inbound, Transport};

    pub const WAIT: Duration = Duration::from_secs(10);

    type Rx = mpsc::Receiver<Inbound>;

    /// One request the fake backend received; the test answers it.
    pub struct Seen {
        pub method: Method,
        pub uri: String,
        pub headers: HeaderMap,
        pub body: String,
        reply: oneshot::Sender<Response>,
    }

    impl Seen {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(|v| v.to_str().unwrap())
        }

        pub fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap()
        }

        pub fn reply(self, response: impl IntoResponse) {
            let _ = self.reply.send(response.into_response());
        }

        /// Answer with an event stream that the test writes to.
        pub fn reply_sse(self) -> Events {
            let (tx, rx) = mpsc::unbounded_channel::<String>();
            let body = stream::unfold(rx, |mut rx| async {
                let text = rx.recv().await?;
                Some((Ok::<_, std::convert::Infallible>(text), rx))
            });
            let headers = [("content-type", "text/event-stream")];
            self.reply((headers, Body::from_stream(body)));
            Events(tx)
        }
    }

    /// The writing end of an event-stream response; dropping it ends the stream.
    pub struct Events(mpsc::UnboundedSender<String>);

    impl Events {
        /// Raw event-stream text.
        pub fn send(&self, text: impl Into<String>) {
            self.0.send(text.into()).unwrap();
        }
    }

    /// An HTTP server that hands every request to the test.
    pub struct FakeServer {
        pub base: String,
        requests: mpsc::UnboundedReceiver<Seen>,
    }

    impl FakeServer {
        pub async fn start() -> Self {
            let (tx, requests) = mpsc::unbounded_channel();
            let app = axum::Router::new().fallback(record).with_state(tx);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self { base, requests }
        }

        pub async fn next(&mut self) -> Seen {
            let seen = tokio::time::timeout(WAIT, self.requests.recv()).await;
            seen.expect("no request arrived").expect("server gone")
        }
    }

    async fn record(State(tx): State<mpsc::UnboundedSender<Seen>>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let (reply, answer) = oneshot::channel();
        let _ = tx.send(Seen {
            method: parts.method,
            uri: parts.uri.to_string(),
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
            reply,
        });
        answer
            .await
            .unwrap_or_else(|_| http::StatusCode::GONE.into_response())
    }

    /// Run `sending` while the next request is handed to `answer`.
    pub async fn exchange<T, R>(
        server: &mut FakeServer,
        sending: impl Future<Output = T>,
        answer: impl FnOnce(Seen) -> R,
    ) -> (T, R) {
        let both = async { tokio::join!(sending, async { answer(server.next().await) }) };
        tokio::time::timeout(WAIT, both)
            .await
            .expect("exchange did not finish")
    }

    pub async fn recv(rx: &mut Rx) -> Inbound {
        let got = tokio::time::timeout(WAIT, rx.recv()).await;
        got.expect("nothing arrived inbound")
            .expect("inbound channel closed")
    }

    pub async fn recv_msg(rx: &mut Rx) -> (Value, Option<Value>) {
        match recv(rx).await {
            Inbound::Message { msg, related } => (msg, related),
            Inbound::Closed(reason) => panic!("closed: {reason}"),
        }
    }

    /// `@modelcontextprotocol/server-everything` in one of its HTTP modes, on a free port.
    pub struct Everything {
        child: tokio::process::Child,
        base: String,
    }

    impl Everything {
        /// `EVERYTHING_BIN` names the package's `mcp-server-everything` command.
        pub async fn start(mode: &str) -> Self {
            let bin = std::env::var("EVERYTHING_BIN").expect("EVERYTHING_BIN is not set");
            let filter = tracing_subscriber::EnvFilter::from_default_env();
            let logs = tracing_subscriber::fmt().with_env_filter(filter);
            let _ = logs.with_test_writer().try_init();
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = free.local_addr().unwrap().port();
            drop(free);
            let mut command = tokio::process::Command::new(bin);
            command
                .arg(mode)
                .env("PORT", port.to_string())
                .kill_on_drop(true);
            command.stdout(Stdio::null()).stderr(Stdio::piped());
            let mut child = command.spawn().unwrap();
            // Both modes print "... port N" on stderr once listening.
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let ready = async {
                while let Some(line) = lines.next_line().await.unwrap() {
                    if line.contains(&format!("port {port}")) {
                        return;
                    }
                }
                panic!("server-everything exited before listening");
            };
            tokio::time::timeout(WAIT, ready)
                .await
                .expect("not listening in time");
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let base = format!("http://127.0.0.1:{port}");
            Self { child, base }
        }

        pub fn spec(&self, path: &str) -> HttpSpec {
            let url = format!("{}{path}", self.base);
            HttpSpec {
                url,
                headers: [("X-Test".to_owned(), "1".to_owned())].into(),
            }
        }

        pub async fn stop(mut self) {
            self.child.kill().await.unwrap();
        }
    }

    type Tagged = (Value, Option<Value>);

    /// Send a request; returns its result and every message up to and including its response.
    async fn call(
        t: &Transport,
        rx: &mut Rx,
        id: i64,
        method: &str,
        params: Value,
    ) -> (Value, Vec<Tagged>) {
        t.send(jsonrpc::request(json!(id), method, Some(params)))
            .await
            .unwrap();
        let mut before = Vec::new();
        loop {
            let (msg, related) = recv_msg(rx).await;
            if jsonrpc::method(&msg).is_none() && msg["id"] == id {
                assert!(msg.get("error").is_none(), "{msg}");
                let result = msg["result"].clone();
                before.push((msg, related));
                return (result, before);
            }
            before.push((msg, related));
        }
    }

    /// Handshake, list the tools, call `echo` and a tool that reports progress; returns the
    /// tool names. `tagged`: whether the transport knows which request a message relates to.
    pub async fn exercise(t: &Transport, rx: &mut Rx, tagged: bool) -> Vec<String> {
        let related = |id: i64| tagged.then(|| json!(id));
        let init = json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "gateway-test", "version": "0.0.0"}});
        let (result, before) = call(t, rx, 1, "initialize", init).await;
        assert_eq!(result["protocolVersion"], "2025-06-18");
        assert_eq!(before.last().unwrap().1, related(1));
        let initialized = jsonrpc::notification("notifications/initialized", None);
        t.send(initialized).await.unwrap();

        let (result, _) = call(t, rx, 2, "tools/list", json!({})).await;
        let tools = result["tools"].as_array().unwrap().iter();
        let names: Vec<String> = tools.map(|t| t["name"].as_str().unwrap().into()).collect();
        assert!(names.iter().any(|n| n == "echo"), "{names:?}");

        let echo = json!({"name": "echo", "arguments": {"message": "hello gateway"}});
        let (result, _) = call(t, rx, 3, "tools/call", echo).await;
        assert_eq!(result["content"][0]["text"], "Echo: hello gateway");

        let long = json!({"name": "trigger-long-running-operation",
            "arguments": {"duration": 0.2, "steps": 2}, "_meta": {"progressToken": "p"}});
        let (result, before) = call(t, rx, 4, "tools/call", long).await;
        assert!(result["content"][0]["text"].is_string(), "{result}");
        let progress = before
            .iter()
            .filter(|(m, _)| m["params"]["progressToken"] == "p");
        let progress: Vec<&Tagged> = progress.collect();
        assert_eq!(progress.len(), 2, "{before:?}");
        assert!(before.iter().all(|(_, r)| *r == related(4)), "{before:?}");
        t.close().await;
        names
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::{Method, StatusCode};
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::testing::{
        Events, Everything, FakeServer, Seen, WAIT, exchange, exercise, recv, recv_msg,
    };
    use super::*;
    use crate::upstream::transport::Transport;

    fn spec(url: String) -> HttpSpec {
        let headers = BTreeMap::from([("Authorization".to_owned(), "Bearer t0k".to_owned())]);
        HttpSpec { url, headers }
    }

    /// Connect while the fake server answers the GET and announces `endpoint`.
    async fn connect(
        s: &mut FakeServer,
        endpoint: &str,
    ) -> (SseTransport, mpsc::Receiver<Inbound>, Events) {
        let (tx, rx) = mpsc::channel(16);
        let spec = spec(format!("{}/sse", s.base));
        let connecting = SseTransport::connect("b", &spec, Client::new(), tx, WAIT);
        let (transport, events) = exchange(s, connecting, |get| {
            assert_eq!((&get.method, get.uri.as_str()), (&Method::GET, "/sse"));
            assert_eq!(get.header("accept"), Some("text/event-stream"));
            assert_eq!(get.header("authorization"), Some("Bearer t0k"));
            let events = get.reply_sse();
            let text = format!(": hi\r\nevent: endpoint\r\ndata: {endpoint}\r\n\r\n");
            events.send(text);
            events
        })
        .await;
        (transport.unwrap(), rx, events)
    }

    #[tokio::test]
    async fn relative_endpoint_messages_and_end_of_stream() {
        let mut s = FakeServer::start().await;
        let (t, mut rx, events) = connect(&mut s, "/messages?sessionId=abc").await;

        let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
        let (sent, ()) = exchange(&mut s, t.send(ping.clone()), |post| {
            assert_eq!(
                (&post.method, post.uri.as_str()),
                (&Method::POST, "/messages?sessionId=abc")
            );
            assert_eq!(post.header("authorization"), Some("Bearer t0k"));
            assert_eq!(post.header("content-type"), Some("application/json"));
            assert_eq!(post.json(), ping);
            post.reply((StatusCode::ACCEPTED, "Accepted"));
        })
        .await;
        sent.unwrap();

        let reply = json!({"jsonrpc": "2.0", "id": 1, "result": {}});
        let batch = json!([{"jsonrpc": "2.0", "method": "a"}, {"jsonrpc": "2.0", "method": "b"}]);
        let text = format!("event: message\ndata: {reply}\n\ndata: not json\n\n");
        events.send(text + &format!("event: other\ndata: {{}}\n\ndata: {batch}\n\n"));
        assert_eq!(recv_msg(&mut rx).await, (reply, None));
        assert_eq!(recv_msg(&mut rx).await.0["method"], "a");
        assert_eq!(recv_msg(&mut rx).await.0["method"], "b");

        drop(events);
        assert!(matches!(recv(&mut rx).await, Inbound::Closed(_)));
        assert!(matches!(t.send(ping).await, Err(TransportError::Closed)));
        let end = tokio::time::timeout(WAIT, rx.recv()).await.unwrap();
        assert!(end.is_none(), "Closed is sent once and the task ends");
    }

    #[tokio::test]
    async fn absolute_endpoint_and_refused_post() {
        let mut s = FakeServer::start().await;
        let endpoint = format!("{}/abs/post", s.base);
        let (t, _rx, _events) = connect(&mut s, &endpoint).await;
        let note = json!({"jsonrpc": "2.0", "method": "n"});
        let (sent, ()) = exchange(&mut s, t.send(note), |post| {
            assert_eq!(post.uri, "/abs/post");
            post.reply((StatusCode::SERVICE_UNAVAILABLE, "x".repeat(500)));
        })
        .await;
        match sent {
            Err(TransportError::Status {
                status: 503, body, ..
            }) => assert_eq!(body.chars().count(), 200),
            other => panic!("{other:?}"),
        }
        t.close().await;
    }

    #[tokio::test]
    async fn no_endpoint_event_times_out_and_refusal_is_a_status() {
        let mut s = FakeServer::start().await;
        let spec = spec(format!("{}/sse", s.base));
        let (tx, _rx) = mpsc::channel(1);
        let wait = Duration::from_millis(300);
        let connecting = SseTransport::connect("b", &spec, Client::new(), tx.clone(), wait);
        let (result, _events) = exchange(&mut s, connecting, Seen::reply_sse).await;
        assert!(matches!(
            result,
            Err(TransportError::Timeout { secs: 1, .. })
        ));

        let connecting = SseTransport::connect("b", &spec, Client::new(), tx, wait);
        let refuse = |get: Seen| get.reply((StatusCode::UNAUTHORIZED, "no"));
        let (result, ()) = exchange(&mut s, connecting, refuse).await;
        assert!(matches!(
            result,
            Err(TransportError::Status { status: 401, .. })
        ));
    }

    #[test]
    fn endpoints_resolve_relative_and_absolute_on_the_same_origin() {
        let base = Url::parse("http://127.0.0.1:9/mcp/sse?x=1").unwrap();
        let cases = [
            ("/m?sessionId=a", Some("http://127.0.0.1:9/m?sessionId=a")),
            ("messages", Some("http://127.0.0.1:9/mcp/messages")),
            (" http://127.0.0.1:9/m \n", Some("http://127.0.0.1:9/m")),
            ("http://evil.example/m", None),
            ("https://127.0.0.1:9/m", None),
        ];
        for (data, want) in cases {
            let got = resolve_endpoint(&base, data).ok().map(String::from);
            assert_eq!(got.as_deref(), want, "{data}");
        }
        assert_eq!(timeout_secs(Duration::from_millis(200)), 1);
        assert_eq!(timeout_secs(Duration::from_secs(3)), 3);
    }

    /// Needs `EVERYTHING_BIN`: `cargo test -- --ignored everything`.
    #[tokio::test]
    #[ignore = "needs EVERYTHING_BIN (npm @modelcontextprotocol/server-everything)"]
    async fn everything_sse() {
        let server = Everything::start("sse").await;
        let (tx, mut rx) = mpsc::channel(64);
        let spec = server.spec("/sse");
        let t = SseTransport::connect("everything", &spec, Client::new(), tx, WAIT).await;
        let names = exercise(&Transport::Sse(t.unwrap()), &mut rx, false).await;
        println!("server-everything (sse) tools: {names:?}");
        server.stop().await;
    }
}
