//! The relay: what the gateway does with each message a client sends.
//!
//! Every frontend (streamable HTTP, legacy SSE, stdio) hands each incoming JSON-RPC message to
//! [`Gateway::handle`] together with the session and the sink where messages related to that
//! request belong. Lists and the handshake are answered from the catalog; calls are forwarded
//! to the owning backend over its shared session (`forward`); what backends send back on their
//! own is routed by `inbound`. Each request is described to metrics and traces (`observe`)
//! before it is served and recorded once it is answered.

mod forward;
mod inbound;
mod local;
mod observe;
mod routes;

use crate::sync::lock;
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::List;
use crate::catalog::{Catalog, CatalogHandle};
use crate::jsonrpc::{self, Kind};
use crate::session::{Frontend, Outgoing, Session, Sessions, Sink};
use crate::spec::{BackendSpec, GatewaySettings};
use crate::telemetry::{Metrics, Observed, TraceContext};
use crate::upstream::{Events, Upstreams};
/// Exposed for the micro-benchmarks (`bench/micro`), not an API.
#[doc(hidden)]
pub use forward::{swap_progress_token, with_param};
pub use local::SERVER_NAME;
#[doc(hidden)]
pub use routes::Routes;

/// What backends get to exit after SIGTERM when a drain used all of its grace.
pub const MIN_BACKEND_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// How long aborted requests get to hand their error answers to the client streams.
const ABORT_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// The shared state behind every frontend.
pub struct Gateway {
    pub settings: Arc<GatewaySettings>,
    pub catalog: CatalogHandle,
    pub upstreams: Upstreams,
    pub sessions: Sessions,
    /// Every metric the gateway keeps; also the Kubernetes controller's (`reconcile`,
    /// `watch_restart`).
    pub metrics: Arc<Metrics>,
    routes: Routes,
    /// Sources still loading their first set of backends; `/readyz` and [`Gateway::settled`]
    /// wait for them.
    pub loading: tokio::sync::watch::Sender<usize>,
    /// Which source declared each backend, so that each reconciles only its own.
    owners: std::sync::Mutex<std::collections::HashMap<String, Origin>>,
    /// Cancelled when a drain begins (SIGTERM): no new sessions, `/readyz` says 503, calls in
    /// flight may still finish.
    pub draining: CancellationToken,
    /// Cancelled when the drain's time is up: every call still open is answered with an error.
    aborting: CancellationToken,
    /// Requests being served, so that a drain can wait for them.
    requests: tokio::sync::watch::Sender<usize>,
    /// Cancelled once, when the gateway stops: sessions close, backends stop.
    pub shutdown: CancellationToken,
}

/// Why a new session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the gateway has {0} sessions open, its limit (gateway.maxSessions); try again later")]
    Full(usize),
    #[error("the gateway is shutting down")]
    Draining,
}

impl Refusal {
    /// The JSON-RPC error body for the refused client.
    pub fn to_error(&self) -> Value {
        let code = match self {
            Self::Full(_) => jsonrpc::BUSY,
            Self::Draining => jsonrpc::SHUTTING_DOWN,
        };
        jsonrpc::error(Value::Null, code, self.to_string(), None)
    }
}

/// Counts one request being served for as long as it lives.
struct Serving<'a>(&'a tokio::sync::watch::Sender<usize>);

impl<'a> Serving<'a> {
    fn start(count: &'a tokio::sync::watch::Sender<usize>) -> Self {
        count.send_modify(|n| *n += 1);
        Self(count)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Where a backend was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    File,
    Kubernetes,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::File => "config file",
            Self::Kubernetes => "McpBackend resources",
        })
    }
}

// === impl Gateway ===

impl Gateway {
    pub fn new(settings: GatewaySettings) -> Arc<Self> {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::new());
        let gateway = Arc::new_cyclic(|weak: &std::sync::Weak<Gateway>| {
            let events: std::sync::Weak<dyn Events> = weak.clone();
            Gateway {
                catalog: CatalogHandle::new(Catalog::new(settings.separator.clone())),
                upstreams: Upstreams::new(settings.clone(), events, metrics.clone()),
                sessions: Sessions::default(),
                metrics,
                routes: Routes::default(),
                owners: Default::default(),
                loading: tokio::sync::watch::Sender::new(0),
                settings,
                draining: CancellationToken::new(),
                aborting: CancellationToken::new(),
                requests: tokio::sync::watch::Sender::new(0),
                shutdown: CancellationToken::new(),
            }
        });
        tokio::spawn(local::announce_changes(gateway.clone()));
        gateway
    }

    /// Add or change a backend declared in the config file (see [`Gateway::apply_from`]).
    pub fn apply(&self, spec: BackendSpec) {
        let name = spec.name.clone();
        if let Err(owner) = self.apply_from(Origin::File, spec) {
            tracing::error!(backend = %name, "not applied: the {owner} declares a backend of that name");
        }
    }

    /// Add or change a backend. Naming and filter edits republish its names at once; a new
    /// transport replaces it, its old names leave, and its successor publishes its own.
    /// Refused, with the owner, when another source declared a backend of the same name.
    pub fn apply_from(&self, origin: Origin, spec: BackendSpec) -> Result<(), Origin> {
        {
            let mut owners = lock(&self.owners);
            match owners.get(&spec.name) {
                Some(owner) if *owner != origin => return Err(*owner),
                Some(_) => {}
                None => {
                    owners.insert(spec.name.clone(), origin);
                }
            }
        }
        self.catalog.apply(&spec);
        let name = spec.name.clone();
        self.upstreams
            .apply(spec, || self.catalog.set_listing(&name, None));
        Ok(())
    }

    /// Remove a backend: its names leave the catalog and its session is closed.
    pub async fn remove(&self, name: &str) -> bool {
        lock(&self.owners).remove(name);
        self.catalog.remove(name);
        self.upstreams.remove(name).await
    }

    /// Remove a backend if `origin` declared it.
    pub async fn remove_from(&self, origin: Origin, name: &str) -> bool {
        if lock(&self.owners).get(name) != Some(&origin) {
            return false;
        }
        self.remove(name).await
    }

    /// Make the config file's backends equal to `specs` (a load or reload).
    pub async fn reconcile(&self, specs: Vec<BackendSpec>) {
        self.reconcile_from(Origin::File, specs).await;
    }

    /// Make the backends `origin` declared equal to `specs`; other sources' are left alone.
    pub async fn reconcile_from(&self, origin: Origin, specs: Vec<BackendSpec>) {
        let wanted: std::collections::HashSet<String> =
            specs.iter().map(|s| s.name.clone()).collect();
        let owned: Vec<String> = lock(&self.owners)
            .iter()
            .filter(|(name, owner)| **owner == origin && !wanted.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in owned {
            self.remove(&name).await;
        }
        for spec in specs {
            let name = spec.name.clone();
            if let Err(owner) = self.apply_from(origin, spec) {
                tracing::error!(backend = %name, "not applied: the {owner} declares a backend of that name");
            }
        }
    }

    /// Wait until every source has loaded its backends and none is still starting.
    pub async fn settled(&self) {
        let _ = self.loading.subscribe().wait_for(|n| *n == 0).await;
        for b in self.upstreams.all() {
            b.settled().await;
        }
    }

    /// Serve one message from a client. Returns the response for a request; `None` for
    /// notifications, responses, and requests the client cancelled.
    pub async fn handle(
        self: &Arc<Self>,
        session: &Arc<Session>,
        msg: Value,
        sink: &Sink,
    ) -> Option<Outgoing> {
        self.handle_traced(session, msg, sink, None).await
    }

    /// [`Self::handle`] for a message that came with a trace context outside the message
    /// itself (the `traceparent` header of the HTTP request that carried it).
    pub async fn handle_traced(
        self: &Arc<Self>,
        session: &Arc<Session>,
        msg: Value,
        sink: &Sink,
        carrier: Option<&TraceContext>,
    ) -> Option<Outgoing> {
        session.touch();
        let kind = match jsonrpc::classify(&msg) {
            Ok(k) => k,
            Err(why) => return Some(jsonrpc::invalid_request(&msg, &why).into()),
        };
        match kind {
            Kind::Request => {
                if let Err(why) = jsonrpc::check_params(&msg) {
                    return Some(
                        jsonrpc::error(
                            jsonrpc::id_or_null(&msg),
                            jsonrpc::INVALID_PARAMS,
                            why,
                            None,
                        )
                        .into(),
                    );
                }
                let _serving = Serving::start(&self.requests);
                let limits = &self.settings.limits;
                let slot = tokio::time::timeout(
                    limits.queue_timeout,
                    session.slots.clone().acquire_owned(),
                );
                let Ok(Ok(_slot)) = slot.await else {
                    let why = format!(
                        "this session has {} requests in flight, its limit \
                         (gateway.maxRequestsPerSession); try again later",
                        limits.max_requests_per_session
                    );
                    let id = jsonrpc::id_or_null(&msg);
                    return Some(jsonrpc::error(id, jsonrpc::BUSY, why, None).into());
                };
                let observed = self.observe(session, &msg, carrier);
                let span = observed.span.clone();
                let response = self
                    .request(session, msg, sink, &observed)
                    .instrument(span)
                    .await;
                observed.finish_message(&response);
                match response {
                    Outgoing::Value(Value::Null) => None,
                    response => Some(response),
                }
            }
            Kind::Notification => {
                self.notification(session, &msg).await;
                None
            }
            Kind::Response => {
                if !session.answer(msg) {
                    tracing::debug!(session = %session.id, "response to no pending request");
                }
                None
            }
        }
    }

    async fn request(
        self: &Arc<Self>,
        session: &Arc<Session>,
        msg: Value,
        sink: &Sink,
        observed: &Observed,
    ) -> Outgoing {
        let id = jsonrpc::id_or_null(&msg);
        let method = jsonrpc::method(&msg).unwrap_or_default();
        let list = match method {
            "tools/list" => Some(List::Tools),
            "prompts/list" => Some(List::Prompts),
            "resources/list" => Some(List::Resources),
            "resources/templates/list" => Some(List::Templates),
            _ => None,
        };
        if let Some(list) = list {
            return self.list(id, &msg, list);
        }
        let answer = match method {
            "initialize" => self.initialize(session, id, &msg),
            "ping" => jsonrpc::result(id, serde_json::json!({})),
            "server/discover" => jsonrpc::error(
                id,
                jsonrpc::METHOD_NOT_FOUND,
                "server/discover is not supported by this gateway; use initialize",
                None,
            ),
            "tools/call" => self.call_named(session, msg, sink, "tool", observed).await,
            "prompts/get" => {
                self.call_named(session, msg, sink, "prompt", observed)
                    .await
            }
            "resources/read" => self.read_resource(session, msg, sink, observed).await,
            "completion/complete" => self.complete(session, msg, sink, observed).await,
            "resources/subscribe" => self.subscribe(session, msg, true).await,
            "resources/unsubscribe" => self.subscribe(session, msg, false).await,
            "logging/setLevel" => self.set_level(session, id, &msg).await,
            other => jsonrpc::error(
                id,
                jsonrpc::METHOD_NOT_FOUND,
                format!("method not found: {other}"),
                None,
            ),
        };
        answer.into()
    }

    async fn notification(self: &Arc<Self>, session: &Arc<Session>, msg: &Value) {
        match jsonrpc::method(msg).unwrap_or_default() {
            "notifications/initialized" => session.state().initialized = true,
            "notifications/cancelled" => {
                let id = jsonrpc::params(msg).and_then(|p| p.get("requestId"));
                if let Some(id) = id
                    && !session.cancel_flight(id)
                {
                    tracing::debug!(session = %session.id, "cancellation for no request in flight");
                }
            }
            "notifications/roots/list_changed" => self.broadcast_upstream(msg.clone()).await,
            other => {
                tracing::debug!(session = %session.id, method = other, "ignoring notification")
            }
        }
    }

    /// A new session for a client of `frontend`, with the gateway's per-session limits, and
    /// the receiving end of its stream. Not registered until [`Gateway::open`].
    pub fn new_session(
        &self,
        frontend: Frontend,
    ) -> (Arc<Session>, tokio::sync::mpsc::Receiver<Outgoing>) {
        Session::new(frontend, self.settings.limits.max_requests_per_session)
    }

    /// Register a session with the gateway (frontends call this when a client connects);
    /// refused while draining and beyond `gateway.maxSessions`.
    pub fn open(&self, session: Arc<Session>) -> Result<(), Refusal> {
        if self.draining.is_cancelled() {
            return Err(Refusal::Draining);
        }
        let max = self.settings.limits.max_sessions;
        let frontend = session.frontend.as_str();
        if !self.sessions.try_insert(session, max) {
            self.metrics.session_refused(frontend);
            return Err(Refusal::Full(max));
        }
        self.metrics.session_opened(frontend);
        Ok(())
    }

    /// A client went away: cancel its requests in flight and release its subscriptions.
    pub async fn close(self: &Arc<Self>, session: &Session) {
        if self.sessions.remove(&session.id).is_some() {
            self.metrics.session_closed(session.frontend.as_str());
        }
        let subs = session.close();
        for (backend, uri) in subs {
            self.release_subscription(&backend, &uri).await;
        }
    }

    /// Close every session and stop every backend (each gets `grace` to exit on its own).
    pub async fn stop(self: &Arc<Self>, grace: std::time::Duration) {
        self.draining.cancel();
        self.shutdown.cancel();
        for s in self.sessions.all() {
            self.close(&s).await;
        }
        self.upstreams.shutdown(grace).await;
    }

    /// Shut down within `grace`: refuse new sessions at once, let requests in flight finish
    /// until the time is up, answer those still open with an error, then stop with what is
    /// left of `grace` for the backends (at least [`MIN_BACKEND_GRACE`]).
    pub async fn drain(self: &Arc<Self>, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.draining.cancel();
        let mut requests = self.requests.subscribe();
        let open = *requests.borrow();
        if open > 0 {
            tracing::info!(requests = open, "draining: waiting for requests in flight");
        }
        let finished = tokio::time::timeout_at(deadline, requests.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if !finished {
            let open = *requests.borrow();
            tracing::warn!(
                requests = open,
                "requests still open after shutdownGrace ({} s); answering them with an error",
                grace.as_secs_f64()
            );
            self.aborting.cancel();
            // Aborted requests answer at once; this only lets their answers reach the streams.
            let _ = tokio::time::timeout(ABORT_FLUSH, requests.wait_for(|n| *n == 0)).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.stop(left.max(MIN_BACKEND_GRACE)).await;
    }
}
