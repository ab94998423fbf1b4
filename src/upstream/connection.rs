//! One live MCP session with a backend, shared by every downstream session.
//!
//! The gateway numbers its upstream requests itself (`next_id`), so ids from many downstream
//! sessions never clash on the shared session; responses find their caller through the
//! pending table. Everything else the backend says is handed to [`Events`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::transport::{Inbound, Transport, TransportError};
use crate::jsonrpc::{self, Kind};

/// What the backend announced in its `initialize` result.
#[derive(Clone, Debug, Default)]
pub struct ServerInit {
    pub protocol_version: String,
    pub capabilities: Value,
    pub server_info: Value,
    pub instructions: Option<String>,
}

/// Receives what a backend says that is not a response to the gateway: notifications and
/// server→client requests. Called in arrival order from the connection's reader, so
/// implementations must not block (hand work to channels or tasks).
pub trait Events: Send + Sync + 'static {
    fn on_message(&self, conn: &Arc<Connection>, msg: Value, related: Option<Value>);
    /// What a backend lists changed: set on connect and re-list, cleared (`None`) when it
    /// goes down or is stopped. `generation` names the backend instance it comes from, so a
    /// replaced backend's last word cannot overwrite its successor's listing.
    fn on_listing(
        &self,
        backend: &str,
        generation: u64,
        listing: Option<Arc<crate::catalog::Listing>>,
    );
    /// A response that answers no request of the gateway's in flight (`late`: one the gateway
    /// did send, already timed out or cancelled), or one without a usable id.
    fn on_unmatched(&self, _conn: &Arc<Connection>, _late: bool) {}
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("the connection closed: {0}")]
    Closed(String),
    #[error("backend answered error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("no answer to {method} within {secs} s")]
    Timeout { method: String, secs: f64 },
}

pub struct Connection {
    pub backend: Arc<str>,
    /// The backend instance this session belongs to (see [`Events::on_listing`]).
    pub generation: u64,
    /// Distinguishes this session from every other the gateway opens (to any backend).
    pub serial: u64,
    /// `sessions: per-client`: the id of the client session this upstream session serves;
    /// `None` for a backend's shared session.
    pub client: Option<Arc<str>>,
    transport: Transport,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next_id: AtomicU64,
    init: OnceLock<ServerInit>,
    closed: CancellationToken,
    close_reason: OnceLock<String>,
    /// Bound on each request the gateway makes on its own ([`Connection::request`]).
    own_timeout: std::time::Duration,
}

/// Removes a pending entry when its call ends in any way (answered, timed out, cancelled).
struct PendingGuard<'a> {
    conn: &'a Connection,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.pending().remove(&self.id);
    }
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

// === impl Connection ===

impl Connection {
    /// Wrap a started transport and spawn the reader that dispatches what arrives.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        backend: Arc<str>,
        generation: u64,
        client: Option<Arc<str>>,
        transport: Transport,
        mut inbound: mpsc::Receiver<Inbound>,
        events: Arc<dyn Events>,
        on_list_changed: impl Fn(&Arc<Connection>) + Send + 'static,
        own_timeout: std::time::Duration,
    ) -> Arc<Self> {
        let conn = Arc::new(Self {
            backend,
            generation,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            client,
            transport,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            init: OnceLock::new(),
            closed: CancellationToken::new(),
            close_reason: OnceLock::new(),
            own_timeout,
        });
        let reader = conn.clone();
        tokio::spawn(async move {
            let reason = loop {
                match inbound.recv().await {
                    Some(Inbound::Message { msg, related }) => {
                        reader.dispatch(msg, related, &*events, &on_list_changed)
                    }
                    Some(Inbound::Closed(reason)) => break reason,
                    None => break "transport ended".to_owned(),
                }
            };
            reader.mark_closed(reason);
        });
        conn
    }

    fn dispatch(
        self: &Arc<Self>,
        msg: Value,
        related: Option<Value>,
        events: &dyn Events,
        on_list_changed: &impl Fn(&Arc<Connection>),
    ) {
        match jsonrpc::classify(&msg) {
            Ok(Kind::Response) => {
                let id = msg.get("id").and_then(Value::as_u64);
                match id.and_then(|id| self.pending().remove(&id)) {
                    Some(tx) => {
                        let _ = tx.send(msg);
                    }
                    None => {
                        let late = id.is_some_and(|id| id < self.next_id.load(Ordering::Relaxed));
                        events.on_unmatched(self, late);
                    }
                }
            }
            Ok(Kind::Request) if jsonrpc::method(&msg) == Some("ping") => {
                let id = jsonrpc::id_or_null(&msg);
                let conn = self.clone();
                tokio::spawn(async move {
                    let _ = conn.send(jsonrpc::result(id, serde_json::json!({}))).await;
                });
            }
            Ok(Kind::Notification)
                if matches!(
                    jsonrpc::method(&msg),
                    Some(
                        "notifications/tools/list_changed"
                            | "notifications/prompts/list_changed"
                            | "notifications/resources/list_changed"
                    )
                ) =>
            {
                on_list_changed(self)
            }
            Ok(_) => events.on_message(self, msg, related),
            Err(_) if msg.get("result").is_some() || msg.get("error").is_some() => {
                events.on_unmatched(self, false)
            }
            Err(e) => {
                tracing::warn!(backend = %self.backend, error = %e, "ignoring invalid message from backend")
            }
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Value>>> {
        crate::sync::lock(&self.pending)
    }

    fn mark_closed(&self, reason: String) {
        let reason = crate::redact::error(&reason);
        tracing::debug!(backend = %self.backend, %reason, "connection closed");
        let _ = self.close_reason.set(reason);
        // Dropping the senders fails every call in flight.
        self.pending().clear();
        self.closed.cancel();
    }

    /// The ids of the requests the backend has been sent and has not answered yet: those a
    /// message it sends now can be about.
    pub fn unanswered(&self) -> Vec<u64> {
        self.pending().keys().copied().collect()
    }

    /// A fresh upstream request id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Send `msg` (whose `id` must be `id`) and wait for the backend's response message.
    /// Dropping the future forgets the request; sending `notifications/cancelled` is the
    /// caller's decision.
    pub async fn call(&self, id: u64, msg: Value) -> Result<Value, CallError> {
        let (tx, rx) = oneshot::channel();
        if self.closed.is_cancelled() {
            return Err(CallError::Closed(self.close_reason()));
        }
        self.pending().insert(id, tx);
        let _guard = PendingGuard { conn: self, id };
        self.transport.send(msg).await?;
        rx.await.map_err(|_| CallError::Closed(self.close_reason()))
    }

    /// A request of the gateway's own (initialize, lists, log level, subscriptions): the
    /// `result`, or the error. One the backend does not answer in time is cancelled upstream.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, CallError> {
        let id = self.next_id();
        let call = self.call(id, jsonrpc::request(Value::from(id), method, params));
        let Ok(resp) = tokio::time::timeout(self.own_timeout, call).await else {
            let cancel = jsonrpc::notification(
                "notifications/cancelled",
                Some(serde_json::json!({"requestId": id, "reason": "timed out"})),
            );
            let _ = self.send(cancel).await;
            return Err(CallError::Timeout {
                method: method.to_owned(),
                secs: self.own_timeout.as_secs_f64(),
            });
        };
        let mut resp = resp?;
        if let Some(result) = resp.get_mut("result") {
            return Ok(result.take());
        }
        let err = resp.get("error");
        Err(CallError::Rpc {
            code: err
                .and_then(|e| e.get("code"))
                .and_then(Value::as_i64)
                .unwrap_or(jsonrpc::INTERNAL_ERROR),
            message: err
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned(),
        })
    }

    /// Send a notification or a response; bounded like the gateway's own requests, so a
    /// backend that takes nothing in never holds the sender.
    pub async fn send(&self, msg: Value) -> Result<(), TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        match tokio::time::timeout(self.own_timeout, self.transport.send(msg)).await {
            Ok(sent) => sent,
            Err(_) => Err(TransportError::Timeout {
                what: "sending a message to the backend".to_owned(),
                secs: self.own_timeout.as_secs(),
            }),
        }
    }

    pub fn set_init(&self, init: ServerInit) {
        let _ = self.init.set(init);
    }

    pub fn init(&self) -> Option<&ServerInit> {
        self.init.get()
    }

    /// Whether the backend declared `capability` (e.g. "tools", "logging") at initialize.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.init()
            .and_then(|i| i.capabilities.get(capability))
            .is_some_and(|c| !c.is_null())
    }

    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub fn close_reason(&self) -> String {
        self.close_reason
            .get()
            .cloned()
            .unwrap_or_else(|| "closed".to_owned())
    }

    /// End the session and its transport.
    pub async fn close(&self) {
        self.transport.close().await;
        self.mark_closed("stopped by the gateway".to_owned());
    }
}
