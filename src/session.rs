//! Downstream sessions: one per connected client, whatever frontend it came through.
//!
//! A session owns what is per client: its negotiated protocol version and capabilities, its
//! requests in flight (so a `notifications/cancelled` or a disconnect reaches the right
//! upstream request), the gateway's own requests to it awaiting answers (sampling,
//! elicitation, roots), its log level and its resource subscriptions.

use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::IdKey;

/// Messages queued to a client beyond this are dropped (with a warning) rather than letting
/// a stalled client grow the gateway's memory. `list_changed` notifications never take more
/// than one place per list (see [`Session::push`]).
pub const OUTBOUND_CAPACITY: usize = 64;
/// What a streamable-HTTP session without a GET stream keeps besides `list_changed`: enough
/// for a client that opens its stream just after `initialize`, not a buffer for one that never
/// does (many never do).
const PARKED_CAPACITY: usize = 16;

/// The notifications that say "list again": one queued per kind is as good as a thousand.
const LIST_CHANGED: [&str; 3] = [
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
];

fn list_changed_bit(msg: &Value) -> Option<u8> {
    let method = msg.get("method")?.as_str()?;
    let i = LIST_CHANGED.iter().position(|m| *m == method)?;
    Some(1 << i)
}

/// Where messages for a client go: the session's own stream, or one request's response stream.
pub type Sink = mpsc::Sender<Outgoing>;

/// A message on its way to a client.
#[derive(Clone, Debug)]
pub enum Outgoing {
    Value(Value),
    /// One message already serialized as JSON text.
    Text(Bytes),
    /// A `*/list` answer, written from the catalog's text as it is sent: never built as a
    /// value, and never whole in memory on its way to an HTTP client.
    List(Arc<crate::catalog::ListText>),
}

impl Outgoing {
    /// The message as JSON text.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Self::Text(t) => t.clone(),
            other => {
                let mut out = Vec::new();
                other.write_to(&mut out);
                Bytes::from(out)
            }
        }
    }

    /// Append the message's JSON text to `out` (a frame being built around it).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            // Serializing a `Value` into a Vec cannot fail.
            Self::Value(v) => {
                let _ = serde_json::to_writer(&mut *out, v);
            }
            Self::Text(t) => out.extend_from_slice(t),
            Self::List(l) => l.write_to(out),
        }
    }

    pub fn value(&self) -> Option<&Value> {
        match self {
            Self::Value(v) => Some(v),
            Self::Text(_) | Self::List(_) => None,
        }
    }

    /// Whether this is a response (the last message of a request's stream). Text and lists
    /// are only ever responses.
    pub fn is_response(&self) -> bool {
        match self {
            Self::Value(v) => matches!(
                crate::jsonrpc::classify(v),
                Ok(crate::jsonrpc::Kind::Response)
            ),
            Self::Text(_) | Self::List(_) => true,
        }
    }
}

impl From<Value> for Outgoing {
    fn from(v: Value) -> Self {
        Self::Value(v)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frontend {
    StreamableHttp,
    Sse,
    Stdio,
}

impl Frontend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamableHttp => "streamable-http",
            Self::Sse => "sse",
            Self::Stdio => "stdio",
        }
    }
}

/// What the client told us in `initialize` (and later `logging/setLevel`).
#[derive(Debug, Default)]
pub struct ClientState {
    pub initialized: bool,
    pub protocol_version: String,
    pub capabilities: Value,
    pub client_info: Value,
    /// Minimum severity of `notifications/message` the client wants; `None` = all.
    pub log_level: Option<u8>,
    pub subscriptions: HashSet<(Arc<str>, String)>,
}

/// A downstream request being served by a backend.
pub struct Flight {
    pub session: Arc<Session>,
    pub downstream_id: Value,
    /// Where progress and server→client requests for this request go.
    pub sink: Sink,
    pub backend: Arc<str>,
    /// The upstream session it went on ([`crate::upstream::Connection::serial`]).
    pub conn: u64,
    pub upstream_id: u64,
    /// The client's own progress token, restored on the way down.
    pub progress_token: Option<Value>,
    pub cancel: CancellationToken,
    /// Ticks on progress, which resets the request timeout.
    pub progress: Notify,
}

pub struct Session {
    pub id: Arc<str>,
    pub frontend: Frontend,
    outbound: Sink,
    /// For streamable HTTP: the receiving end, taken by the GET stream while one is open.
    outbound_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    state: Mutex<ClientState>,
    flights: Mutex<HashMap<IdKey, Arc<Flight>>>,
    client_requests: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next_client_id: AtomicU64,
    pub closed: CancellationToken,
    last_seen: Mutex<Instant>,
    /// Set at the first dropped message, so a client that never reads is reported once.
    dropping: AtomicBool,
    /// One bit per kind of `list_changed` queued and not yet delivered.
    queued_changes: AtomicU8,
    /// Requests of this session being served; a request waits for a place (bounded).
    pub slots: Arc<Semaphore>,
}

// === impl Session ===

impl Session {
    /// A session and the receiving end of its outbound stream; it serves at most
    /// `max_requests` requests at once.
    pub fn new(frontend: Frontend, max_requests: usize) -> (Arc<Self>, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let session = Arc::new(Self {
            id: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            frontend,
            outbound: tx,
            outbound_rx: Mutex::new(None),
            state: Mutex::new(ClientState::default()),
            flights: Mutex::new(HashMap::new()),
            client_requests: Mutex::new(HashMap::new()),
            next_client_id: AtomicU64::new(1),
            closed: CancellationToken::new(),
            last_seen: Mutex::new(Instant::now()),
            dropping: AtomicBool::new(false),
            queued_changes: AtomicU8::new(0),
            slots: Arc::new(Semaphore::new(max_requests.max(1))),
        });
        (session, rx)
    }

    pub fn outbound(&self) -> &Sink {
        &self.outbound
    }

    /// Queue a message on the session's own stream; dropped if the client is not reading.
    /// A `list_changed` is not queued again while one of its kind waits undelivered, and a
    /// streamable-HTTP session without a GET stream keeps little else ([`PARKED_CAPACITY`]).
    pub fn push(&self, msg: Value) {
        let bit = list_changed_bit(&msg);
        let queued = OUTBOUND_CAPACITY - self.outbound.capacity();
        if bit.is_none() && queued >= PARKED_CAPACITY && !self.streaming() {
            return;
        }
        if let Some(bit) = bit
            && self.queued_changes.fetch_or(bit, Ordering::AcqRel) & bit != 0
        {
            return;
        }
        if self.outbound.try_send(Outgoing::Value(msg)).is_ok() {
            return;
        }
        if let Some(bit) = bit {
            self.queued_changes.fetch_and(!bit, Ordering::AcqRel);
        }
        if !self.closed.is_cancelled() && !self.dropping.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                session = %self.id,
                frontend = self.frontend.as_str(),
                "client is not reading its stream; dropping notifications for it"
            );
        }
    }

    /// Whoever reads the session's stream calls this for each message it hands on.
    pub fn delivered(&self, msg: &Outgoing) {
        if let Some(bit) = msg.value().and_then(list_changed_bit) {
            self.queued_changes.fetch_and(!bit, Ordering::AcqRel);
        }
    }

    /// Whether a client stream holds the session's messages (a GET stream, or the transport's
    /// own stream), so the session is in use even without requests.
    pub fn streaming(&self) -> bool {
        lock(&self.outbound_rx).is_none()
    }

    pub fn take_outbound(&self) -> Option<mpsc::Receiver<Outgoing>> {
        lock(&self.outbound_rx).take()
    }

    pub fn return_outbound(&self, rx: mpsc::Receiver<Outgoing>) {
        *lock(&self.outbound_rx) = Some(rx);
    }

    pub fn state(&self) -> MutexGuard<'_, ClientState> {
        lock(&self.state)
    }

    /// Whether the client declared `capability` (e.g. "sampling") in `initialize`.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.state()
            .capabilities
            .get(capability)
            .is_some_and(|c| !c.is_null())
    }

    pub fn add_flight(&self, flight: Arc<Flight>) {
        lock(&self.flights).insert(IdKey::of(&flight.downstream_id), flight);
    }

    pub fn remove_flight(&self, id: &Value) {
        lock(&self.flights).remove(&IdKey::of(id));
    }

    /// Cancel the request the client knows as `id`; false when none is in flight.
    pub fn cancel_flight(&self, id: &Value) -> bool {
        match lock(&self.flights).get(&IdKey::of(id)) {
            Some(f) => {
                f.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Register a gateway→client request; its answer arrives through [`Self::answer`].
    pub fn expect_answer(&self) -> (u64, oneshot::Receiver<Value>) {
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.client_requests).insert(id, tx);
        (id, rx)
    }

    pub fn forget_answer(&self, id: u64) {
        lock(&self.client_requests).remove(&id);
    }

    /// Deliver a client's response to a gateway request; false if nobody waits for it.
    pub fn answer(&self, msg: Value) -> bool {
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            return false;
        };
        match lock(&self.client_requests).remove(&id) {
            Some(tx) => tx.send(msg).is_ok(),
            None => false,
        }
    }

    pub fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    pub fn idle_for(&self) -> std::time::Duration {
        lock(&self.last_seen).elapsed()
    }

    /// End the session: cancel everything in flight and wake everything waiting on it.
    /// Returns the subscriptions it held, for the caller to release.
    pub fn close(&self) -> HashSet<(Arc<str>, String)> {
        self.closed.cancel();
        for f in lock(&self.flights).values() {
            f.cancel.cancel();
        }
        lock(&self.client_requests).clear();
        std::mem::take(&mut self.state().subscriptions)
    }
}

/// Every open session by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<Arc<str>, Arc<Session>>>,
}

// === impl Sessions ===

impl Sessions {
    /// Add `s` unless `max` sessions are open already.
    pub fn try_insert(&self, s: Arc<Session>, max: usize) -> bool {
        let mut map = lock(&self.map);
        if map.len() >= max {
            return false;
        }
        map.insert(s.id.clone(), s);
        true
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.map).get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.map).remove(id)
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.map).values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_changed_is_queued_once_per_kind_until_delivered() {
        let (s, mut rx) = Session::new(Frontend::Sse, 4);
        let tools = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"});
        let prompts = json!({"jsonrpc":"2.0","method":"notifications/prompts/list_changed"});
        for _ in 0..1000 {
            s.push(tools.clone());
            s.push(prompts.clone());
        }
        s.push(json!({"jsonrpc":"2.0","method":"notifications/message"}));
        let mut queued = Vec::new();
        while let Ok(m) = rx.try_recv() {
            s.delivered(&m);
            queued.push(
                m.value().expect("a value")["method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        assert_eq!(
            queued,
            [
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/message"
            ]
        );
        s.push(tools.clone());
        assert_eq!(
            rx.try_recv().ok().and_then(|m| m.value().cloned()),
            Some(tools),
            "delivered, so the next one queues"
        );
    }

    #[test]
    fn a_session_without_a_stream_keeps_little() {
        let (s, rx) = Session::new(Frontend::StreamableHttp, 4);
        s.return_outbound(rx);
        for _ in 0..100 {
            s.push(json!({"jsonrpc":"2.0","method":"notifications/message"}));
        }
        s.push(json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}));
        let mut rx = s.take_outbound().expect("parked");
        let mut kept = Vec::new();
        while let Ok(m) = rx.try_recv() {
            kept.push(
                m.value().expect("a value")["method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        assert_eq!(kept.len(), PARKED_CAPACITY + 1, "{kept:?}");
        assert_eq!(
            kept.last().map(String::as_str),
            Some("notifications/tools/list_changed")
        );
        for _ in 0..100 {
            s.push(json!({"jsonrpc":"2.0","method":"notifications/message"}));
        }
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(
            n, OUTBOUND_CAPACITY,
            "with the stream open, the whole queue is used"
        );
    }

    #[test]
    fn the_queue_is_bounded() {
        let (s, mut rx) = Session::new(Frontend::Sse, 4);
        for i in 0..OUTBOUND_CAPACITY * 3 {
            s.push(json!({"jsonrpc":"2.0","method":"notifications/message","params":{"i":i}}));
        }
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, OUTBOUND_CAPACITY);
    }

    #[test]
    fn sessions_are_capped() {
        let all = Sessions::default();
        for _ in 0..3 {
            assert!(all.try_insert(Session::new(Frontend::Sse, 1).0, 3));
        }
        assert!(!all.try_insert(Session::new(Frontend::Sse, 1).0, 3));
        assert_eq!(all.len(), 3);
    }
}
