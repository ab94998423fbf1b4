//! The streamable-HTTP upstream transport (MCP protocol 2025-03-26 and later).
//!
//! Every outgoing message is one POST; the backend answers with `202 Accepted`, a JSON body,
//! or an event stream that carries the response (and anything sent in its context). The
//! transport watches the `initialize` exchange itself to learn the session id and protocol
//! version that later requests must carry, keeps the optional standalone GET stream open for
//! server-initiated messages, and ends the session with DELETE on close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use reqwest::{Client, Response, Url};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::sse_stream::{
    EventStream, error_detail, header_map, is_event_stream, parse_messages, parse_url, status_error,
};
use super::transport::{Inbound, InboundTx, TransportError};
use crate::jsonrpc;
use crate::spec::HttpSpec;

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const APPLICATION_JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
const ACCEPT_POST: &str = "application/json, text/event-stream";

/// Standalone GET stream reconnect delays.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Upper bound for the DELETE that ends a session.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a POST stream delivered its response, how long to wait for the server to end it.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

pub struct HttpTransport {
    inner: Arc<Inner>,
}

/// Shared with the background tasks (POST response streams, the standalone GET stream).
struct Inner {
    backend: String,
    url: Url,
    client: Client,
    /// The configured custom headers; values are marked sensitive.
    headers: HeaderMap,
    inbound: InboundTx,
    state: Mutex<Session>,
    /// Set once `Closed` was sent or `close` was called: nothing more is delivered.
    closed: AtomicBool,
    get_started: AtomicBool,
    cancel: CancellationToken,
    delete_timeout: Duration,
}

#[derive(Default)]
struct Session {
    id: Option<HeaderValue>,
    protocol: Option<HeaderValue>,
    /// The id of the outgoing `initialize` whose result is still awaited.
    init_id: Option<Value>,
}

// === impl HttpTransport ===

impl HttpTransport {
    /// Prepare a transport; nothing is sent until the first message.
    pub async fn connect(
        backend: &str,
        spec: &HttpSpec,
        client: reqwest::Client,
        inbound: InboundTx,
        connect_timeout: Duration,
    ) -> Result<Self, TransportError> {
        let inner = Inner {
            backend: backend.to_owned(),
            url: parse_url(&spec.url)?,
            client,
            headers: header_map(spec)?,
            inbound,
            state: Mutex::new(Session::default()),
            closed: AtomicBool::new(false),
            get_started: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            delete_timeout: connect_timeout.min(DELETE_TIMEOUT),
        };
        let inner = Arc::new(inner);
        Ok(Self { inner })
    }

    /// POST one message. Returns once the response headers are in; whatever the response
    /// carries is delivered on the inbound channel by a background task.
    pub async fn send(&self, msg: Value) -> Result<(), TransportError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        let method = jsonrpc::method(&msg);
        let is_init = method == Some("initialize");
        let starts_get = method == Some("notifications/initialized");
        let related = method.and(jsonrpc::id(&msg)).cloned();
        let body = serde_json::to_vec(&msg)
            .map_err(|e| TransportError::Protocol(format!("cannot encode message: {e}")))?;

        let (request, had_session) = {
            let mut session = inner.session();
            if is_init {
                // A new handshake starts a new session.
                *session = Session {
                    init_id: related.clone(),
                    ..Session::default()
                };
            }
            let mut headers = inner.headers.clone();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
            headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_POST));
            session.add_headers(&mut headers);
            let request = inner.client.post(inner.url.clone()).headers(headers);
            (request.body(body), session.id.is_some())
        };
        let response = request.send().await.map_err(|e| TransportError::Connect {
            url: inner.url.to_string(),
            detail: error_detail(&e),
        })?;

        let status = response.status();
        if !status.is_success() {
            let error = status_error(inner.url.as_str(), response).await;
            if had_session && session_gone(status, &error) {
                inner.expire().await;
            }
            return Err(error);
        }
        if is_init && let Some(id) = response.headers().get(SESSION_ID) {
            inner.session().id = Some(id.clone());
        }
        if starts_get && !inner.get_started.swap(true, Ordering::AcqRel) {
            inner.spawn(Arc::clone(inner).run_get_stream());
        }

        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            // Nothing to deliver; read the (empty or tiny) body so the connection is reused.
            inner.spawn(async move {
                let _ = response.bytes().await;
            });
        } else if is_event_stream(&response) {
            inner.spawn(Arc::clone(inner).read_post_stream(response, related));
        } else {
            inner.spawn(Arc::clone(inner).read_json(response, related));
        }
        Ok(())
    }

    /// Stop the background tasks and end the session with DELETE. The outcome is only
    /// logged: 405 means the server does not let clients end sessions, which is fine.
    pub async fn close(&self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        inner.cancel.cancel();
        let headers = {
            let mut session = inner.session();
            if session.id.is_none() {
                return;
            }
            let mut headers = inner.headers.clone();
            session.add_headers(&mut headers);
            session.id = None;
            headers
        };
        let request = inner.client.delete(inner.url.clone()).headers(headers);
        let outcome = match tokio::time::timeout(inner.delete_timeout, request.send()).await {
            Ok(Ok(r)) => format!("HTTP {}", r.status().as_u16()),
            Ok(Err(e)) => error_detail(&e),
            Err(_) => "timed out".to_owned(),
        };
        tracing::debug!(backend = %inner.backend, %outcome, "DELETE of the session");
    }
}

impl Drop for HttpTransport {
    fn drop(&mut self) {
        self.inner.cancel.cancel();
    }
}

// === impl Session ===

impl Session {
    fn add_headers(&self, headers: &mut HeaderMap) {
        if let Some(id) = &self.id {
            headers.insert(SESSION_ID, id.clone());
        }
        if let Some(version) = &self.protocol {
            headers.insert(PROTOCOL_VERSION, version.clone());
        }
    }
}

/// Whether an error answer means the server no longer knows our session: 404 is what the
/// specification prescribes; several servers (the TypeScript SDK's among them) answer 400
/// with a message about the session id instead.
fn session_gone(status: StatusCode, error: &TransportError) -> bool {
    let body = match error {
        TransportError::Status { body, .. } => body.to_ascii_lowercase(),
        _ => String::new(),
    };
    status == StatusCode::NOT_FOUND
        || (status == StatusCode::BAD_REQUEST && body.contains("session"))
}

// === impl Inner ===

impl Inner {
    fn session(&self) -> MutexGuard<'_, Session> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(self.cancel.clone().run_until_cancelled_owned(task));
    }

    /// The server forgot the session: report the end once and stop everything.
    async fn expire(&self) {
        self.session().id = None;
        if !self.closed.swap(true, Ordering::AcqRel) {
            let reason = "session expired (the server no longer knows it)".to_owned();
            let _ = self.inbound.send(Inbound::Closed(reason)).await;
        }
        // Last: this may be running inside one of the tasks the token stops.
        self.cancel.cancel();
    }

    /// Remember the negotiated protocol version from the `initialize` result.
    fn observe(&self, msg: &Value) {
        let mut session = self.session();
        if session.init_id.is_none() || jsonrpc::id(msg) != session.init_id.as_ref() {
            return;
        }
        let version = msg
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str);
        session.protocol = version.and_then(|v| HeaderValue::from_str(v).ok());
        session.init_id = None;
    }

    /// Deliver messages unless the transport has ended; `false` once nothing more should be.
    async fn forward(&self, msgs: Vec<Value>, related: Option<&Value>) -> bool {
        for msg in msgs {
            self.observe(&msg);
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            let message = Inbound::Message {
                msg,
                related: related.cloned(),
            };
            if self.inbound.send(message).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn read_json(self: Arc<Self>, response: Response, related: Option<Value>) {
        match response.bytes().await {
            Ok(body) => {
                let msgs = parse_messages(&self.backend, &String::from_utf8_lossy(&body));
                self.forward(msgs, related.as_ref()).await;
            }
            Err(e) => {
                let error = error_detail(&e);
                tracing::warn!(backend = %self.backend, %error, "reading a response body failed");
            }
        }
    }

    /// Deliver the message events of one stream until it ends, or until shortly after the
    /// response to `related` went by.
    async fn pump(&self, stream: &mut EventStream, related: Option<&Value>) -> Pumped {
        let mut answered = false;
        loop {
            let next = if answered {
                match tokio::time::timeout(DRAIN_GRACE, stream.next_event()).await {
                    Ok(next) => next,
                    Err(_) => return Pumped::Answered,
                }
            } else {
                stream.next_event().await
            };
            match next {
                Ok(Some(event)) if event.is_message() => {
                    let msgs = parse_messages(&self.backend, &event.data);
                    answered |=
                        related.is_some_and(|id| msgs.iter().any(|m| is_response_to(m, id)));
                    if !self.forward(msgs, related).await {
                        return Pumped::Stop;
                    }
                }
                Ok(Some(_)) => {}
                _ if answered => return Pumped::Answered,
                Ok(None) => return Pumped::Ended("the stream ended".to_owned()),
                Err(e) => return Pumped::Ended(e.to_string()),
            }
        }
    }

    /// A POST's response stream, resumed once with `Last-Event-ID` if it drops before the
    /// response arrived.
    async fn read_post_stream(self: Arc<Self>, response: Response, related: Option<Value>) {
        let mut stream = EventStream::new(response);
        let reason = match self.pump(&mut stream, related.as_ref()).await {
            Pumped::Ended(reason) if related.is_some() => reason,
            _ => return,
        };
        let Some(last_id) = stream.last_event_id() else {
            tracing::warn!(backend = %self.backend, %reason, "response stream ended before the response");
            return;
        };
        tracing::debug!(backend = %self.backend, %reason, "response stream dropped; resuming");
        match self.open_get(Some(last_id)).await {
            Ok(response) if response.status().is_success() && is_event_stream(&response) => {
                let mut stream = EventStream::new(response);
                if let Pumped::Ended(reason) = self.pump(&mut stream, related.as_ref()).await {
                    tracing::warn!(backend = %self.backend, %reason, "resumed response stream ended early");
                }
            }
            refused => {
                let why = refused.map_or_else(|e| error_detail(&e), |r| r.status().to_string());
                tracing::warn!(backend = %self.backend, %why, "resuming a response stream failed");
            }
        }
    }

    async fn open_get(&self, last_event_id: Option<&str>) -> Result<Response, reqwest::Error> {
        let mut headers = self.headers.clone();
        headers.insert(ACCEPT, HeaderValue::from_static(EVENT_STREAM));
        self.session().add_headers(&mut headers);
        if let Some(id) = last_event_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert(LAST_EVENT_ID, id);
        }
        let request = self.client.request(Method::GET, self.url.clone());
        request.headers(headers).send().await
    }

    /// The standalone GET stream: server-initiated messages, reconnected with backoff.
    async fn run_get_stream(self: Arc<Self>) {
        let mut backoff = BACKOFF_MIN;
        let mut last_id: Option<String> = None;
        while !self.closed.load(Ordering::Acquire) {
            let status = match self.open_get(last_id.as_deref()).await {
                Ok(r) if r.status().is_success() && is_event_stream(&r) => {
                    let opened = Instant::now();
                    let mut stream = EventStream::new(r);
                    let Pumped::Ended(reason) = self.pump(&mut stream, None).await else {
                        return; // nothing more is to be delivered
                    };
                    tracing::debug!(backend = %self.backend, %reason, "standalone stream dropped");
                    last_id = stream.last_event_id().map(str::to_owned).or(last_id);
                    if opened.elapsed() >= BACKOFF_MAX {
                        backoff = BACKOFF_MIN;
                    }
                    None
                }
                Ok(r) => {
                    let status = r.status();
                    let had_session = self.session().id.is_some();
                    let error = status_error(self.url.as_str(), r).await;
                    if had_session && session_gone(status, &error) {
                        // The server restarted or dropped us: report it so the supervisor
                        // opens a new session without waiting for a client's call to fail.
                        return self.expire().await;
                    }
                    Some(status)
                }
                Err(e) => {
                    let error = error_detail(&e);
                    tracing::debug!(backend = %self.backend, %error, "standalone stream failed");
                    None
                }
            };
            match status {
                Some(StatusCode::METHOD_NOT_ALLOWED) => {
                    tracing::debug!(backend = %self.backend, "no standalone stream offered");
                    return;
                }
                Some(s) if !is_retryable(s) => {
                    let status = s.as_u16();
                    tracing::warn!(backend = %self.backend, status, "standalone stream refused");
                    return;
                }
                _ => {}
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// How one event stream ended.
enum Pumped {
    /// The response to the related request went by.
    Answered,
    /// Nothing more is to be delivered (transport ended, or nobody listens).
    Stop,
    /// The stream ended or failed before an answer.
    Ended(String),
}

/// Whether retrying a refused GET could succeed later (a 2xx that is no event stream: no).
fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS
        )
}

fn is_response_to(msg: &Value, id: &Value) -> bool {
    jsonrpc::id(msg) == Some(id) && (msg.get("result").is_some() || msg.get("error").is_some())
}

#[cfg(test)]
mod tests {
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
        let (sent, ()) = exchange(s, t.send(init), |req| {
            assert_eq!((req.method.as_str(), req.uri.as_str()), ("POST", "/mcp"));
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
}
