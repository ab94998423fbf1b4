//! The streamable-HTTP upstream transport (MCP protocol 2025-03-26 and later).
//!
//! Every outgoing message is one POST; the backend answers with `202 Accepted`, a JSON body,
//! or an event stream that carries the response (and anything sent in its context). The
//! transport watches the `initialize` exchange itself to learn the session id and protocol
//! version that later requests must carry, keeps the optional standalone GET stream open for
//! server-initiated messages, and ends the session with DELETE on close.
//!
//! POSTs to a plain-http URL without credentials that no proxy applies to (the usual backend:
//! a sidecar, a service in the same cluster) go through hyper's pooled client directly:
//! reqwest's layers around it (redirect policy, retries, proxy matching, the URL re-parsed
//! per request) were about a sixth of the gateway's CPU time per call. Everything else
//! (https, proxies, a backend that redirects, the GET stream, DELETE) stays with reqwest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::{self, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::{Client, Response, Url};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::sse_stream::{
    Answer, EventStream, body_error_detail, direct_error_detail, error_detail, header_map,
    is_event_stream, parse_messages, parse_url, status_error,
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
/// The direct client's pool and TCP settings: reqwest's defaults.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

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
    /// The same plus the content type and accept of every POST.
    post_headers: HeaderMap,
    /// For POSTs, when the URL allows it.
    direct: Option<Direct>,
    /// The backend answered a POST with a redirect: reqwest, which follows them, sends the
    /// POSTs from then on.
    redirects: AtomicBool,
    inbound: InboundTx,
    state: Mutex<Session>,
    /// Set once `Closed` was sent or `close` was called: nothing more is delivered.
    closed: AtomicBool,
    get_started: AtomicBool,
    cancel: CancellationToken,
    delete_timeout: Duration,
}

/// hyper's pooled client, as reqwest configures it, without reqwest around it.
struct Direct {
    client: legacy::Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    /// What hyper would otherwise format for every request.
    host: HeaderValue,
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
        let url = parse_url(&spec.url)?;
        let headers = header_map(spec)?;
        let mut post_headers = headers.clone();
        post_headers.insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
        post_headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_POST));
        let inner = Inner {
            backend: backend.to_owned(),
            direct: Direct::for_url(&url, connect_timeout),
            url,
            client,
            headers,
            post_headers,
            redirects: AtomicBool::new(false),
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

        let (headers, had_session) = {
            let mut session = inner.session();
            if is_init {
                // A new handshake starts a new session.
                *session = Session {
                    init_id: related.clone(),
                    ..Session::default()
                };
            }
            (inner.headers_for(&session, &msg), session.id.is_some())
        };
        let response = inner.post(headers, Bytes::from(body), &msg).await?;

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
        } else if is_event_stream(response.headers()) {
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

// === impl Direct ===

impl Direct {
    /// A client for POSTs to `url` when reqwest would send them straight to it over plain
    /// TCP, as they are: an http URL without credentials (reqwest turns those into an
    /// `Authorization` header) that no proxy from the environment applies to.
    fn for_url(url: &Url, connect_timeout: Duration) -> Option<Self> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let uri: Uri = url.as_str().parse().ok()?;
        let host = match uri.port_u16() {
            None | Some(80) => HeaderValue::from_str(uri.host()?),
            Some(port) => HeaderValue::from_str(&format!("{}:{port}", uri.host()?)),
        };
        let host = host.ok()?;
        let proxies = hyper_util::client::proxy::matcher::Matcher::from_system();
        if proxies.intercept(&uri).is_some() {
            return None;
        }
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_interval(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        let client = legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(tcp);
        Some(Self { client, uri, host })
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
        crate::sync::lock(&self.state)
    }

    /// The headers of a POST carrying `msg`.
    fn headers_for(&self, session: &Session, msg: &Value) -> HeaderMap {
        let mut headers = self.post_headers.clone();
        session.add_headers(&mut headers);
        crate::telemetry::context::add_headers(msg, &mut headers);
        headers
    }

    /// POST `body`; the answer once its headers are in.
    async fn post(
        &self,
        headers: HeaderMap,
        body: Bytes,
        msg: &Value,
    ) -> Result<Answer, TransportError> {
        let connect_error = |detail| TransportError::Connect {
            url: self.url.to_string(),
            detail,
        };
        let headers = match &self.direct {
            Some(direct) if !self.redirects.load(Ordering::Relaxed) => {
                let mut request = http::Request::new(Full::new(body.clone()));
                *request.method_mut() = Method::POST;
                *request.uri_mut() = direct.uri.clone();
                *request.headers_mut() = headers;
                let headers = request.headers_mut();
                headers.entry(HOST).or_insert_with(|| direct.host.clone());
                let response = direct.client.request(request).await;
                let response = response.map_err(|e| connect_error(direct_error_detail(&e)))?;
                if !is_redirect(response.status()) {
                    return Ok(response.into());
                }
                let status = response.status().as_u16();
                tracing::debug!(backend = %self.backend, status, "POST redirected; reqwest follows");
                self.redirects.store(true, Ordering::Relaxed);
                self.headers_for(&self.session(), msg)
            }
            _ => headers,
        };
        let request = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body);
        let response = request.send().await;
        Ok(response
            .map_err(|e| connect_error(error_detail(&e)))?
            .into())
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

    async fn read_json(self: Arc<Self>, response: Answer, related: Option<Value>) {
        match response.bytes().await {
            Ok(body) => {
                let msgs = parse_messages(&self.backend, &String::from_utf8_lossy(&body));
                self.forward(msgs, related.as_ref()).await;
            }
            Err(e) => {
                let error = body_error_detail(&e);
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
    async fn read_post_stream(self: Arc<Self>, response: Answer, related: Option<Value>) {
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
        // Boxed: every POST spawns this task, and resuming is rare.
        Box::pin(self.resume_post_stream(last_id, related.as_ref())).await;
    }

    async fn resume_post_stream(&self, last_id: &str, related: Option<&Value>) {
        match self.open_get(Some(last_id)).await {
            Ok(response)
                if response.status().is_success() && is_event_stream(response.headers()) =>
            {
                let mut stream = EventStream::new(response);
                if let Pumped::Ended(reason) = self.pump(&mut stream, related).await {
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
                Ok(r) if r.status().is_success() && is_event_stream(r.headers()) => {
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

/// The redirects reqwest follows.
fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

fn is_response_to(msg: &Value, id: &Value) -> bool {
    jsonrpc::id(msg) == Some(id) && (msg.get("result").is_some() || msg.get("error").is_some())
}

#[cfg(test)]
mod tests;
