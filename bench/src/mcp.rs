//! MCP clients as a real SDK client behaves: `initialize`, `notifications/initialized`, the
//! session header and negotiated protocol version on every later request, unique ids, and
//! every answer matched by id and checked.
//!
//! Two transports: streamable HTTP (each POST answered with JSON or an SSE stream) and legacy
//! HTTP+SSE (one `GET /sse` stream carrying every answer, requests POSTed to the endpoint it
//! announces).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Method, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::http::{self, Client, Conn, Target};
use crate::sse;

/// Protocol versions asked for: a current one that the gateway and the fixture both speak
/// on `/mcp`, and the one legacy SSE belongs to.
const STREAMABLE_VERSION: &str = "2025-06-18";
const LEGACY_VERSION: &str = "2024-11-05";

/// Ids are unique across the whole run, so an answer delivered to the wrong session is caught.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// How the client reaches the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Streamable HTTP (`POST /mcp`).
    Mcp,
    /// Legacy HTTP+SSE (`GET /sse`, `POST /messages?sessionId=…`).
    Sse,
}

/// A checked answer: the `result`, the bytes that carried it, and when the last of them
/// arrived (before the client parsed them: what the server can be held to).
pub struct Answer {
    pub result: Value,
    pub bytes: usize,
    pub received: Instant,
}

/// An initialized MCP session.
pub enum Session {
    Streamable(Streamable),
    Legacy(Legacy),
}

impl Session {
    /// Opens a session and completes the handshake.
    pub async fn connect(transport: Transport, target: &Target) -> anyhow::Result<Self> {
        let mut session = match transport {
            Transport::Mcp => Self::Streamable(Streamable::new(target.clone())),
            Transport::Sse => Self::Legacy(Legacy::open(target).await?),
        };
        let version = match transport {
            Transport::Mcp => STREAMABLE_VERSION,
            Transport::Sse => LEGACY_VERSION,
        };
        let params = json!({
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "mcp-bench", "version": env!("CARGO_PKG_VERSION")},
        });
        let answer = session.request("initialize", params).await?;
        let negotiated = answer.result["protocolVersion"]
            .as_str()
            .context("initialize result without protocolVersion")?
            .to_owned();
        if let Self::Streamable(s) = &mut session {
            s.version = negotiated;
        }
        session.notify("notifications/initialized").await?;
        Ok(session)
    }

    /// Sends a request and waits for its checked answer.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Answer> {
        let id = next_id();
        let body = Bytes::from(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        match self {
            Self::Streamable(s) => s.request(id, body).await,
            Self::Legacy(s) => s.request(id, body).await,
        }
    }

    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        let body = Bytes::from(json!({"jsonrpc": "2.0", "method": method}).to_string());
        match self {
            Self::Streamable(s) => s.post(body).await.map(drop),
            Self::Legacy(s) => s.post(body).await,
        }
    }

    /// Ends the session as a client that is done does: DELETE (streamable HTTP), or closing
    /// the stream (legacy SSE). Bounded; failures are ignored.
    pub async fn close(self) {
        if let Self::Streamable(mut s) = self
            && let Some(id) = s.session.clone()
        {
            let target = s.client.target.clone();
            let headers = [
                ("mcp-session-id", id.as_str()),
                ("mcp-protocol-version", s.version.as_str()),
            ];
            let request = target.request(Method::DELETE, &target.path, &headers, Bytes::new());
            let delete = async {
                if let Ok(response) = s.client.send(request).await {
                    let _ = http::read_all(response.into_body()).await;
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), delete).await;
        }
    }

    /// Forgets the POST connection (after a timeout its state is unknown, or to free it).
    pub fn reset(&mut self) {
        match self {
            Self::Streamable(s) => s.client.reset(),
            Self::Legacy(s) => s.post.reset(),
        }
    }
}

/// Checks the message(s) `message` for the answer to `id`: a result, not an error.
fn answer_in(message: Value, id: u64) -> Option<anyhow::Result<Value>> {
    let mut candidates = match message {
        Value::Array(batch) => batch,
        single => vec![single],
    };
    let i = candidates
        .iter()
        .position(|m| m["id"].as_u64() == Some(id) && m.get("method").is_none())?;
    let mut answer = candidates.swap_remove(i);
    if let Some(error) = answer.get("error") {
        return Some(Err(anyhow::anyhow!("JSON-RPC error: {error}")));
    }
    Some(match answer.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(anyhow::anyhow!("answer without result: {answer}")),
    })
}

/// The status line and a bit of the body, for an error.
async fn refusal(response: Response<Incoming>) -> anyhow::Error {
    let status = response.status();
    let body = http::read_all(response.into_body())
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    anyhow::anyhow!("HTTP {status}: {text}")
}

// === impl Streamable ===

/// Streamable HTTP: every message is a POST on the client's connection.
pub struct Streamable {
    client: Client,
    session: Option<String>,
    version: String,
}

impl Streamable {
    fn new(target: Target) -> Self {
        Self {
            client: Client::new(target),
            session: None,
            version: STREAMABLE_VERSION.to_owned(),
        }
    }

    /// POSTs one message; `None` for 202 Accepted (a notification's answer).
    async fn post(&mut self, body: Bytes) -> anyhow::Result<Option<Response<Incoming>>> {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if let Some(session) = &self.session {
            headers.push(("mcp-session-id", session));
            headers.push(("mcp-protocol-version", &self.version));
        }
        let target = &self.client.target;
        let request = target.request(Method::POST, &target.path, &headers, body);
        let response = self.client.send(request).await?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        if self.session.is_none()
            && let Some(id) = http::header(&response, "mcp-session-id")
        {
            self.session = Some(id.to_owned());
        }
        if response.status() == hyper::StatusCode::ACCEPTED {
            http::read_all(response.into_body()).await?;
            return Ok(None);
        }
        Ok(Some(response))
    }

    async fn request(&mut self, id: u64, body: Bytes) -> anyhow::Result<Answer> {
        let response = self
            .post(body)
            .await?
            .context("a request was answered 202 Accepted")?;
        let is_stream = http::header(&response, "content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let mut body = response.into_body();
        if !is_stream {
            let bytes = http::read_all(body).await?;
            let received = Instant::now();
            let message: Value = serde_json::from_slice(&bytes).context("answer is not JSON")?;
            let result = answer_in(message, id).context("no answer with the request's id")??;
            return Ok(Answer {
                result,
                bytes: bytes.len(),
                received,
            });
        }
        // An SSE stream: progress and server requests may come first; read to its end.
        let mut parser = sse::Parser::default();
        let mut events = Vec::new();
        let mut found = None;
        let mut bytes = 0;
        let mut received = Instant::now();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.context("reading the SSE answer")?.into_data() else {
                continue;
            };
            bytes += data.len();
            parser.feed(&data, &mut events);
            let now = Instant::now();
            for event in events.drain(..) {
                if found.is_some() || event.data.is_empty() {
                    continue;
                }
                let message: Value =
                    serde_json::from_str(&event.data).context("SSE event is not JSON")?;
                found = answer_in(message, id);
                received = now;
            }
        }
        let result = found.context("the SSE answer ended without the response")??;
        Ok(Answer {
            result,
            bytes,
            received,
        })
    }
}

// === impl Legacy ===

/// Requests waiting for their answer on the stream: the answer and its size in bytes.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<(Value, usize, Instant)>>>>;

/// Legacy HTTP+SSE: answers arrive on the session's stream, matched to requests by id.
pub struct Legacy {
    post: Client,
    endpoint: String,
    pending: Pending,
    reader: JoinHandle<()>,
}

impl Drop for Legacy {
    fn drop(&mut self) {
        // Closing the stream ends the session.
        self.reader.abort();
    }
}

impl Legacy {
    async fn open(target: &Target) -> anyhow::Result<Self> {
        let mut conn = Conn::open(target).await?;
        let request = target.request(
            Method::GET,
            &target.path,
            &[("accept", "text/event-stream")],
            Bytes::new(),
        );
        let response = conn.send(request).await?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let pending = Pending::default();
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let reader = tokio::spawn(read_stream(
            conn,
            response.into_body(),
            endpoint_tx,
            pending.clone(),
        ));
        let endpoint = endpoint_rx
            .await
            .context("the SSE stream ended before its endpoint event")?;
        // The endpoint may be absolute; requests go to the same server either way.
        let endpoint = match endpoint.strip_prefix("http://") {
            Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
            None => endpoint,
        };
        Ok(Self {
            post: Client::new(target.clone()),
            endpoint,
            pending,
            reader,
        })
    }

    async fn post(&mut self, body: Bytes) -> anyhow::Result<()> {
        let request = self.post.target.request(
            Method::POST,
            &self.endpoint,
            &[("content-type", "application/json")],
            body,
        );
        let response = self.post.send(request).await?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        http::read_all(response.into_body()).await?;
        Ok(())
    }

    async fn request(&mut self, id: u64, body: Bytes) -> anyhow::Result<Answer> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let posted = self.post(body).await;
        if let Err(error) = posted {
            lock(&self.pending).remove(&id);
            return Err(error);
        }
        let (message, bytes, received) = rx
            .await
            .context("the SSE stream closed before the answer")?;
        let result = answer_in(message, id).context("answer with another id")??;
        Ok(Answer {
            result,
            bytes,
            received,
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads the session's stream: the endpoint first, then answers handed to their requests.
async fn read_stream(
    _conn: Conn,
    mut body: Incoming,
    endpoint: oneshot::Sender<String>,
    pending: Pending,
) {
    let mut endpoint = Some(endpoint);
    let mut parser = sse::Parser::default();
    let mut events = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        parser.feed(&data, &mut events);
        let received = Instant::now();
        for event in events.drain(..) {
            if event.name == "endpoint" {
                if let Some(tx) = endpoint.take() {
                    let _ = tx.send(event.data);
                }
                continue;
            }
            let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            let is_answer = message.get("method").is_none();
            if let (true, Some(id)) = (is_answer, message["id"].as_u64())
                && let Some(tx) = lock(&pending).remove(&id)
            {
                let _ = tx.send((message, event.data.len(), received));
            }
        }
    }
    // Every request still waiting learns the stream is gone.
    lock(&pending).clear();
}

/// Opens a stream and holds it until `close` turns true: `GET /sse`, or `GET /mcp` of an
/// initialized session. Returns once the stream is confirmed open (the endpoint event, or a
/// 200 answer); the task it returns ends the stream (and a streamable session, with DELETE)
/// when told to close.
pub async fn hold_stream(
    transport: Transport,
    target: &Target,
    mut close: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut session = Session::connect(transport, target).await?;
    // The stream is what is measured: free the POST connection.
    session.reset();
    let Session::Streamable(streamable) = &session else {
        return Ok(tokio::spawn(async move {
            let _ = close.wait_for(|closed| *closed).await;
            drop(session); // closes the stream, which ends the session
        }));
    };
    let id = streamable
        .session
        .clone()
        .context("initialize answered without Mcp-Session-Id")?;
    let mut conn = Conn::open(target).await?;
    let headers = [
        ("accept", "text/event-stream"),
        ("mcp-session-id", id.as_str()),
        ("mcp-protocol-version", streamable.version.as_str()),
    ];
    let request = target.request(Method::GET, &target.path, &headers, Bytes::new());
    let response = conn.send(request).await?;
    if !response.status().is_success() {
        return Err(refusal(response).await);
    }
    let mut body = response.into_body();
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = close.wait_for(|closed| *closed) => {}
            () = async { while let Some(Ok(_)) = body.frame().await {} } => {}
        }
        drop(body);
        drop(conn);
        session.close().await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_by_id_and_checked() {
        let ok = json!({"jsonrpc": "2.0", "id": 7, "result": {"x": 1}});
        assert_eq!(
            answer_in(ok.clone(), 7).map(|r| r.ok()),
            Some(Some(json!({"x": 1})))
        );
        assert!(answer_in(ok, 8).is_none(), "another id");
        let error =
            json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32000, "message": "down"}});
        assert!(matches!(answer_in(error, 7), Some(Err(_))));
        let request = json!({"jsonrpc": "2.0", "id": 7, "method": "ping"});
        assert!(
            answer_in(request, 7).is_none(),
            "a server request is not an answer"
        );
        let batch =
            json!([{"jsonrpc": "2.0", "method": "n"}, {"jsonrpc": "2.0", "id": 7, "result": {}}]);
        assert!(matches!(answer_in(batch, 7), Some(Ok(_))));
    }
}
