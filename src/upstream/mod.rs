//! The upstream pool: one supervised, shared session per backend.
//!
//! Each [`Backend`] has a supervisor task that connects (starting the process or opening the
//! HTTP session), initializes once, lists everything, publishes the listing, and then waits:
//! when the session dies it reports the backend down with its last error and reconnects with
//! backoff. A backend that fails never touches the others. Stopping a backend (removal,
//! replacement, shutdown) closes its session and kills its process group. Backends that start
//! a process take turns: at most `startupConcurrency` of them are starting at once, so that a
//! thousand of them do not all compete for a few cores (see [`Ctx::turn`]).

pub mod connection;
pub mod env;
pub mod handshake;
pub mod http;
pub mod process;
pub mod sse;
pub mod sse_stream;
pub mod stdio;
pub mod transport;

use crate::sync::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use connection::{CallError, Connection, Events, ServerInit};
use process::Process;
use transport::{Transport, TransportError};

use crate::catalog::Listing;
use crate::spec::{BackendSpec, GatewaySettings, Sessions, TransportSpec};
use crate::telemetry::Metrics;
use crate::telemetry::console::STARTUP;
use crate::telemetry::table::seconds;

static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Longest wait for a backend's answer to a request of the gateway's own (re-listing, log
/// level, subscriptions), unless `requestTimeout` is shorter.
const OWN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A session that was ready this long resets the backoff: it was a crash, not a crash loop.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Starting,
    Ready,
    Down,
    Disabled,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Down => "down",
            Self::Disabled => "disabled",
            Self::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Status {
    pub state: State,
    pub last_error: Option<String>,
    /// When `state` was entered.
    pub since: Instant,
    /// When the current attempt to start began (its process started, or its connection
    /// opened); `None` while it waits for its turn.
    pub attempt: Option<Instant>,
    /// How long the last attempt to start took to end ready or failed.
    pub took: Option<Duration>,
    pub restarts: u32,
    pub server_info: Option<Value>,
    pub protocol_version: Option<String>,
}

pub struct Backend {
    pub name: Arc<str>,
    /// Distinguishes this instance from earlier and later backends of the same name.
    pub generation: u64,
    /// Fixed for the instance's life: a change of `disabled` makes a new instance.
    disabled: bool,
    /// Replaced in place by edits that keep the session (see `BackendSpec::same_session`).
    spec: std::sync::RwLock<Arc<BackendSpec>>,
    status: watch::Sender<Status>,
    conn: Mutex<Option<Arc<Connection>>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Requests in flight to this backend; more wait for a place (bounded).
    pub slots: Arc<tokio::sync::Semaphore>,
    /// `sessions: per-client`: each client session's own upstream session, by its id.
    clients: Mutex<HashMap<Arc<str>, OwnSlot>>,
    ctx: Ctx,
}

/// What a session does when its backend says a list changed.
type OnListChanged = dyn Fn(&Arc<Connection>) + Send;

/// A client's own upstream session (`sessions: per-client`); empty until it is opened, and
/// again after it failed to open.
type OwnSlot = Arc<tokio::sync::Mutex<Option<Own>>>;

struct Own {
    conn: Arc<Connection>,
    launched: Option<Process>,
}

/// Why a client's request has no upstream session to go on.
#[derive(Debug)]
pub enum NoSession {
    /// The backend is not serving, or could not open the client's session: why.
    Unavailable(String),
    /// As many client sessions as the limit (`maxClientSessionsPerBackend`) have their own
    /// upstream session already.
    Full(usize),
}

/// How many backends are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub starting: usize,
    pub ready: usize,
    pub down: usize,
    pub disabled: usize,
    pub stopped: usize,
}

#[derive(Clone)]
struct Ctx {
    http: reqwest::Client,
    settings: Arc<GatewaySettings>,
    events: Weak<dyn Events>,
    metrics: Arc<Metrics>,
    /// Turns to start a process (`startupConcurrency`), shared by every backend.
    turns: Arc<Semaphore>,
    /// Where listings are published; `None` if its thread could not be started.
    publisher: Option<Arc<Publisher>>,
}

/// A thread that publishes backends' listings (see [`publish`]). One thread rather than the
/// runtime's blocking pool: publishes take the catalog's lock one at a time anyway, and a
/// thousand backends listing at once would otherwise park a thousand pool threads on it.
struct Publisher(std::sync::mpsc::Sender<Job>);

type Job = Box<dyn FnOnce() + Send>;

/// Every backend by name.
pub struct Upstreams {
    backends: Mutex<BTreeMap<Arc<str>, Arc<Backend>>>,
    ctx: Ctx,
}

// === impl Upstreams ===

impl Upstreams {
    pub fn new(
        settings: Arc<GatewaySettings>,
        events: Weak<dyn Events>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.startup_timeout)
            .build()
            .unwrap_or_default();
        Self {
            backends: Mutex::new(BTreeMap::new()),
            ctx: Ctx {
                http,
                turns: Arc::new(Semaphore::new(settings.startup_concurrency.max(1))),
                publisher: Publisher::start().map(Arc::new),
                settings,
                events,
                metrics,
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Arc<Backend>>> {
        lock(&self.backends)
    }

    /// Start `spec`. A backend of the same name keeps its session when the new spec allows
    /// (`BackendSpec::same_session`) and takes the new naming, filters and timeout in place;
    /// otherwise it is replaced, and `before_start` runs just before its successor starts.
    pub fn apply(&self, spec: BackendSpec, before_start: impl FnOnce()) {
        crate::redact::register(&spec);
        let mut backends = self.lock();
        if let Some(b) = backends.get(spec.name.as_str())
            && b.spec().same_session(&spec)
        {
            *b.spec.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(spec);
            return;
        }
        before_start();
        let backend = Backend::start(spec, self.ctx.clone());
        if let Some(old) = backends.insert(backend.name.clone(), backend) {
            tokio::spawn(async move { old.stop().await });
        }
    }

    /// Stop and forget a backend.
    pub async fn remove(&self, name: &str) -> bool {
        let removed = self.lock().remove(name);
        match removed {
            Some(b) => {
                b.stop().await;
                true
            }
            None => false,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Backend>> {
        self.lock().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Backend>> {
        self.lock().values().cloned().collect()
    }

    /// How many backends are in each state now.
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for b in self.lock().values() {
            let count = match b.status.borrow().state {
                State::Starting => &mut census.starting,
                State::Ready => &mut census.ready,
                State::Down => &mut census.down,
                State::Disabled => &mut census.disabled,
                State::Stopped => &mut census.stopped,
            };
            *count += 1;
        }
        census
    }

    /// Stop every backend, in parallel; each process gets `grace` to exit after SIGTERM.
    pub async fn shutdown(&self, grace: Duration) {
        process::set_kill_grace(grace);
        let all: Vec<_> = std::mem::take(&mut *self.lock()).into_values().collect();
        futures_util::future::join_all(all.iter().map(|b| b.stop())).await;
    }
}

// === impl Backend ===

impl Backend {
    fn start(spec: BackendSpec, ctx: Ctx) -> Arc<Self> {
        let initial = if spec.disabled {
            State::Disabled
        } else {
            State::Starting
        };
        let backend = Arc::new(Self {
            name: Arc::from(spec.name.as_str()),
            disabled: spec.disabled,
            generation: NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            spec: std::sync::RwLock::new(Arc::new(spec)),
            status: watch::Sender::new(Status {
                state: initial,
                last_error: None,
                since: Instant::now(),
                attempt: None,
                took: None,
                restarts: 0,
                server_info: None,
                protocol_version: None,
            }),
            conn: Mutex::new(None),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
            slots: Arc::new(tokio::sync::Semaphore::new(
                ctx.settings.limits.max_requests_per_backend.max(1),
            )),
            clients: Mutex::new(HashMap::new()),
            ctx: ctx.clone(),
        });
        if !backend.disabled {
            let task = tokio::spawn(supervise(backend.clone(), ctx));
            *lock(&backend.task) = Some(task);
        }
        backend
    }

    /// The backend's current spec.
    pub fn spec(&self) -> Arc<BackendSpec> {
        self.spec
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The live session, if the backend is up.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        lock(&self.conn).clone().filter(|c| !c.is_closed())
    }

    /// Whether the backend takes requests: ready, with a live session. A backend that has
    /// connected but whose names are still being published is not.
    pub fn serving(&self) -> bool {
        self.status.borrow().state == State::Ready && self.connection().is_some()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Every change of the backend's status, for whoever needs to wait on one.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Wait until the backend is no longer starting (ready, down or disabled).
    pub async fn settled(&self) {
        let mut rx = self.status.subscribe();
        let _ = rx.wait_for(|s| s.state != State::Starting).await;
    }

    /// Why the backend cannot take a request right now, for an error message.
    pub fn unavailable_reason(&self) -> String {
        let s = self.status();
        match (s.state, s.last_error) {
            (State::Disabled, _) => format!("backend '{}' is disabled", self.name),
            (State::Starting, _) => format!("backend '{}' is still starting", self.name),
            // The session just ended; the supervisor has not reported it yet.
            (State::Ready, _) => format!("backend '{}' lost its connection", self.name),
            (_, Some(e)) => format!("backend '{}' is down: {e}", self.name),
            (state, None) => format!("backend '{}' is {}", self.name, state.as_str()),
        }
    }

    /// The upstream session a request of client session `client` goes on: the backend's
    /// shared one, or with `sessions: per-client` the client's own, opened on its first
    /// request (with the same transport spec) and closed when `closed` is cancelled (the
    /// client session ended) or the backend stops. The backend's shared session must be up
    /// either way: it is the one that lists the backend's tools.
    ///
    /// A client's own session is told the client's `log_level` as it opens, if it has one.
    pub async fn session_for(
        self: &Arc<Self>,
        client: &Arc<str>,
        closed: &CancellationToken,
        log_level: Option<&str>,
    ) -> Result<Arc<Connection>, NoSession> {
        let shared = self
            .connection()
            .ok_or_else(|| NoSession::Unavailable(self.unavailable_reason()))?;
        if self.spec().sessions == Sessions::Shared {
            return Ok(shared);
        }
        let slot = {
            let mut clients = lock(&self.clients);
            match clients.get(client) {
                Some(slot) => slot.clone(),
                None => {
                    let limit = self
                        .ctx
                        .settings
                        .limits
                        .max_client_sessions_per_backend
                        .max(1);
                    if clients.len() >= limit {
                        return Err(NoSession::Full(limit));
                    }
                    let slot = OwnSlot::default();
                    clients.insert(client.clone(), slot.clone());
                    self.reap_when_closed(client.clone(), closed.clone());
                    slot
                }
            }
        };
        let mut own = slot.lock().await;
        if let Some(o) = own.as_ref().filter(|o| !o.conn.is_closed()) {
            return Ok(o.conn.clone());
        }
        if let Some(dead) = own.take() {
            dead.close().await;
        }
        if self.stop.is_cancelled() || closed.is_cancelled() {
            return Err(NoSession::Unavailable(format!(
                "backend '{}' is stopping",
                self.name
            )));
        }
        let opened = tokio::select! {
            r = connect(self, &self.ctx, Some(client.clone())) => r,
            _ = self.stop.cancelled() => Err("the backend is stopping".to_owned()),
        };
        match opened {
            Ok((conn, launched, _)) => {
                tracing::info!(backend = %self.name, "opened a session of the backend's for one client");
                if let Some(level) = log_level.filter(|_| conn.has_capability("logging")) {
                    let req = conn.request("logging/setLevel", Some(json!({"level": level})));
                    if let Err(e) = req.await {
                        tracing::debug!(backend = %self.name, error = %e, "logging/setLevel failed");
                    }
                }
                *own = Some(Own {
                    conn: conn.clone(),
                    launched,
                });
                Ok(conn)
            }
            Err(e) => {
                let e = crate::redact::error(&e);
                tracing::warn!(backend = %self.name, "could not open a session of the backend's for one client: {e}");
                Err(NoSession::Unavailable(format!(
                    "backend '{}' could not open a session for this client: {e}",
                    self.name
                )))
            }
        }
    }

    /// How many client sessions have an upstream session of their own (or one opening), with
    /// `sessions: per-client`.
    pub fn client_sessions(&self) -> usize {
        lock(&self.clients).len()
    }

    /// `client`'s own upstream session (`sessions: per-client`), if it has one open and it is
    /// not being opened right now.
    pub fn own_session(&self, client: &str) -> Option<Arc<Connection>> {
        let slot = lock(&self.clients).get(client)?.clone();
        let own = slot.try_lock().ok()?;
        own.as_ref()
            .map(|o| o.conn.clone())
            .filter(|c| !c.is_closed())
    }

    /// Close `client`'s own upstream session when `closed` is cancelled (or the backend stops).
    fn reap_when_closed(self: &Arc<Self>, client: Arc<str>, closed: CancellationToken) {
        let backend = Arc::downgrade(self);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = closed.cancelled() => {}
                _ = stop.cancelled() => {}
            }
            // A backend that is gone dropped its sessions, and dropping kills their processes.
            let Some(backend) = backend.upgrade() else {
                return;
            };
            let slot = lock(&backend.clients).remove(&client);
            if let Some(slot) = slot {
                Own::close_slot(slot).await;
                tracing::debug!(backend = %backend.name, "closed a client's own session: the client left");
            }
        });
    }

    async fn stop(&self) {
        self.stop.cancel();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let own: Vec<OwnSlot> = lock(&self.clients).drain().map(|(_, s)| s).collect();
        futures_util::future::join_all(own.into_iter().map(Own::close_slot)).await;
    }

    /// Enter `state`; `error` is redacted and cut before anyone can read it.
    fn set(&self, state: State, error: Option<String>) {
        self.set_after(state, error, None);
    }

    /// [`Self::set`] at the end of an attempt to start that took `took`.
    fn set_after(&self, state: State, error: Option<String>, took: Option<Duration>) {
        let error = error.map(|e| crate::redact::error(&e));
        self.status.send_modify(|s| {
            if took.is_some() {
                s.took = took;
            }
            // Every failure, a session that ended or a start that failed, is retried.
            if state == State::Down {
                s.restarts += 1;
            }
            s.state = state;
            s.since = Instant::now();
            if error.is_some() || state == State::Ready {
                s.last_error = error;
            }
        });
    }

    fn set_conn(&self, conn: Option<Arc<Connection>>) {
        *lock(&self.conn) = conn;
    }
}

// === impl Own ===

impl Own {
    async fn close(mut self) {
        self.conn.close().await;
        if let Some(p) = self.launched.as_mut() {
            p.kill().await;
        }
    }

    async fn close_slot(slot: OwnSlot) {
        let own = slot.lock().await.take();
        if let Some(own) = own {
            own.close().await;
        }
    }
}

// === impl Census ===

impl Census {
    pub fn total(&self) -> usize {
        self.starting + self.ready + self.down + self.disabled + self.stopped
    }
}

// === impl Publisher ===

impl Publisher {
    /// The thread ends once every `Ctx` is gone.
    fn start() -> Option<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("mcp-publish".into())
            .spawn(move || rx.into_iter().for_each(|job| job()));
        match spawned {
            Ok(_) => Some(Self(tx)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the thread that publishes listings; publishing on the runtime's workers");
                None
            }
        }
    }

    /// Run `job` on the publisher's thread (`publisher`) and wait until it has run; here if
    /// that thread is gone (a publish panicked) or never started. False if the job panicked.
    async fn run(publisher: Option<&Self>, job: impl FnOnce() + Send + 'static) -> bool {
        let (done, ran) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            job();
            let _ = done.send(());
        });
        let unsent = match publisher {
            Some(p) => p.0.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        match unsent {
            Some(job) => {
                job();
                true
            }
            None => ran.await.is_ok(),
        }
    }
}

// === impl Ctx ===

impl Ctx {
    /// Wait for a turn to start `backend` if it starts a process; the backend stays
    /// `starting` meanwhile. A remote server costs the gateway little to connect to, and one
    /// that does not answer must not hold up the others: it starts without a turn.
    async fn turn(&self, backend: &Backend) -> Option<OwnedSemaphorePermit> {
        if !backend.spec().transport.launches() {
            return None;
        }
        // The semaphore is never closed.
        self.turns.clone().acquire_owned().await.ok()
    }
}

/// The supervisor: connect, serve until the session dies, report, back off, repeat. A turn
/// (`Ctx::turn`) is held from before the process starts until the attempt is reported ready
/// or down, never while serving.
async fn supervise(backend: Arc<Backend>, ctx: Ctx) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let turn = tokio::select! {
            _ = backend.stop.cancelled() => break,
            t = ctx.turn(&backend) => t,
        };
        let began = Instant::now();
        backend.status.send_modify(|s| s.attempt = Some(began));
        tracing::info!(
            target: STARTUP,
            backend = %backend.name,
            transport = backend.spec().transport_kind(),
            "backend starting"
        );
        let attempt = tokio::select! {
            _ = backend.stop.cancelled() => break,
            r = connect(&backend, &ctx, None) => r,
        };
        match attempt {
            Ok((conn, mut launched, listing)) => {
                let up_since = Instant::now();
                backend.status.send_modify(|s| {
                    let init = conn.init();
                    s.server_info = init.map(|i| i.server_info.clone());
                    s.protocol_version = init.map(|i| i.protocol_version.clone());
                });
                // Callable before its names are published, ready once they are.
                backend.set_conn(Some(conn.clone()));
                publish(&backend, &ctx, Some(listing)).await;
                let took = began.elapsed();
                backend.set_after(State::Ready, None, Some(took));
                drop(turn);
                tracing::info!(
                    target: STARTUP,
                    backend = %backend.name,
                    transport = backend.spec().transport_kind(),
                    startup_ms = took.as_millis() as u64,
                    "backend ready in {}",
                    seconds(took)
                );
                let stopped = tokio::select! {
                    _ = backend.stop.cancelled() => true,
                    _ = conn.closed() => false,
                };
                backend.set_conn(None);
                publish(&backend, &ctx, None).await;
                conn.close().await;
                if let Some(p) = launched.as_mut() {
                    p.kill().await;
                }
                if stopped {
                    break;
                }
                let reason = crate::redact::error(&conn.close_reason());
                tracing::warn!(backend = %backend.name, %reason, "backend went down");
                ctx.metrics.backend_restart(&backend.name);
                backend.set(State::Down, Some(reason));
                if up_since.elapsed() > HEALTHY_AFTER {
                    backoff = BACKOFF_MIN;
                }
            }
            Err(e) => {
                let e = crate::redact::error(&e);
                let took = began.elapsed();
                tracing::warn!(
                    target: STARTUP,
                    backend = %backend.name,
                    transport = backend.spec().transport_kind(),
                    startup_ms = took.as_millis() as u64,
                    "backend failed after {}: {e}",
                    seconds(took)
                );
                ctx.metrics.backend_restart(&backend.name);
                backend.set_after(State::Down, Some(e), Some(took));
                drop(turn);
            }
        }
        tokio::select! {
            _ = backend.stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        backend.status.send_modify(|s| {
            s.state = State::Starting;
            s.attempt = None;
        });
    }
    backend.set(State::Stopped, None);
}

/// Open, initialize and list one session. On error the message says what failed. A client's
/// own session (`client`, `sessions: per-client`) is not listed: the catalog comes from the
/// shared one.
async fn connect(
    backend: &Arc<Backend>,
    ctx: &Ctx,
    client: Option<Arc<str>>,
) -> Result<(Arc<Connection>, Option<Process>, Listing), String> {
    let name = &backend.name;
    let startup = ctx.settings.startup_timeout;
    let events = ctx.events.upgrade().ok_or("the gateway is shutting down")?;
    let (tx, rx) = mpsc::channel(256);
    let mut launched = None;
    let spec = backend.spec();
    let transport = match &spec.transport {
        TransportSpec::Stdio(p) => {
            let write_timeout = ctx.settings.limits.write_timeout;
            Transport::Stdio(stdio::StdioTransport::start(name, p, tx, write_timeout).map_err(err)?)
        }
        TransportSpec::Sse { http, launch } => {
            if let Some(l) = launch {
                let (mut p, _, _) = process::spawn(name, l, false).map_err(err)?;
                wait_until_answers(&ctx.http, &http.url, startup, &mut p).await?;
                launched = Some(p);
            }
            Transport::Sse(
                sse::SseTransport::connect(name, http, ctx.http.clone(), tx, startup)
                    .await
                    .map_err(err)?,
            )
        }
        TransportSpec::StreamableHttp(http) => Transport::Http(
            http::HttpTransport::connect(name, http, ctx.http.clone(), tx, startup)
                .await
                .map_err(err)?,
        ),
    };
    let own = client.is_some();
    let relist: Box<OnListChanged> = match own {
        false => Box::new(relister(events.clone(), ctx.publisher.clone())),
        true => Box::new(|_: &Arc<Connection>| {}),
    };
    let conn = Connection::start(
        name.clone(),
        backend.generation,
        client,
        transport,
        rx,
        events.clone(),
        relist,
        ctx.settings.request_timeout.min(OWN_CALL_TIMEOUT),
    );
    let opened = async {
        let init = handshake::initialize(&conn)
            .await
            .map_err(|e| e.to_string())?;
        conn.set_init(init);
        if own {
            return Ok(Listing::default());
        }
        Ok::<_, String>(handshake::list_all(&conn).await)
    };
    let listing = match tokio::time::timeout(startup, opened).await {
        Ok(Ok(listing)) => listing,
        Ok(Err(e)) => {
            conn.close().await;
            return Err(e);
        }
        Err(_) => {
            conn.close().await;
            let secs = startup.as_secs();
            return Err(format!("no answer to initialize within {secs} s"));
        }
    };
    Ok((conn, launched, listing))
}

/// Hand a backend's listing to the catalog, or (`None`, when its session ended) take its names
/// out. Compacting a listing (serializing every definition) and publishing it cost time
/// proportional to the listing: on the publisher's thread, so that the runtime's workers keep
/// serving (HTTP, the other backends) meanwhile, and in order: a clear runs after any listing
/// queued before it, and a re-listing queued after it finds the session closed.
async fn publish(backend: &Backend, ctx: &Ctx, listing: Option<Listing>) {
    let Some(events) = ctx.events.upgrade() else {
        return;
    };
    let (name, generation) = (backend.name.clone(), backend.generation);
    let listing = listing.map(Arc::new);
    let job = move || events.on_listing(&name, generation, listing);
    if !Publisher::run(ctx.publisher.as_deref(), job).await {
        tracing::error!(backend = %backend.name, "publishing the listing failed");
    }
}

fn err(e: TransportError) -> String {
    e.to_string()
}

/// A callback for `list_changed` that re-lists on a task of its own; bursts coalesce because
/// at most one re-list waits behind the running one. The new listing is published on the
/// publisher's thread, like the first ([`publish`]).
fn relister(
    events: Arc<dyn Events>,
    publisher: Option<Arc<Publisher>>,
) -> impl Fn(&Arc<Connection>) + Send + 'static {
    let (kick, mut kicked) = mpsc::channel::<Arc<Connection>>(1);
    tokio::spawn(async move {
        while let Some(conn) = kicked.recv().await {
            let listing = handshake::list_all(&conn).await;
            if conn.is_closed() {
                continue;
            }
            tracing::debug!(backend = %conn.backend, "re-listed after list_changed");
            let backend = conn.backend.clone();
            let events = events.clone();
            let job = move || {
                // A session that closed while the job waited its turn lists nothing any more.
                if !conn.is_closed() {
                    events.on_listing(&conn.backend, conn.generation, Some(Arc::new(listing)));
                }
            };
            if !Publisher::run(publisher.as_deref(), job).await {
                tracing::error!(%backend, "publishing the re-listing failed");
            }
        }
    });
    move |conn: &Arc<Connection>| {
        let _ = kick.try_send(conn.clone());
    }
}

/// Poll `url` until it answers at all (any HTTP status), the process dies, or the deadline.
async fn wait_until_answers(
    http: &reqwest::Client,
    url: &str,
    deadline: Duration,
    process: &mut Process,
) -> Result<(), String> {
    let until = Instant::now() + deadline;
    let mut pause = Duration::from_millis(50);
    loop {
        if let Some(exit) = process.exited() {
            return Err(format!(
                "the launched server exited before {url} answered: {exit}"
            ));
        }
        let probe = http
            .get(url)
            .header("accept", "text/event-stream")
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if probe.is_ok() {
            return Ok(());
        }
        if Instant::now() + pause > until {
            return Err(format!(
                "{} did not answer within {} s of starting the server",
                crate::redact::url(url),
                deadline.as_secs()
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
