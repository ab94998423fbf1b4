//! The gateway's Prometheus metrics, served at `GET /metrics`.
//!
//! Two kinds of series live here. Events (requests, restarts, sessions opened, reloads) are
//! counted where they happen, through the methods of [`Metrics`]; each touches one series and
//! takes no lock wider than that series' family. State (which backends are up, how many tools
//! each lists, how many sessions are open) is read from the gateway when a scrape arrives
//! ([`Sample`]), so it can never drift from what `/api/v1/backends` shows and a removed
//! backend's series disappear with it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::exposition::{self, Format};
use super::labels::{self, Label, Names, Outcome};

/// Histogram buckets, in seconds: from sub-millisecond gateway overhead (lists answered from
/// the catalog) to tool calls that run for minutes (the default request timeout is 5 min).
pub const DURATION_BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];

/// Frontend transports, as the `transport` label of session series spells them.
pub const FRONTENDS: [&str; 3] = ["streamable-http", "sse", "stdio"];
/// Backend states, as the `state` label spells them.
pub const STATES: [&str; 5] = ["starting", "ready", "down", "disabled", "stopped"];
/// What a backend lists, as the `kind` label spells it (the order of `Snapshot::counts`).
pub const ENTRY_KINDS: [&str; 4] = ["tools", "prompts", "resources", "resource_templates"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    backend: Label,
    tool: Label,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendTransportLabels {
    backend: Label,
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendStateLabels {
    backend: Label,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendKindLabels {
    backend: Label,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnattributedLabels {
    backend: Label,
    /// `request` (refused) or `notification` (dropped).
    kind: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    backend: Label,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn timings<L: Clone + std::hash::Hash + Eq>() -> Timings<L> {
    Family::new_with_constructor(histogram)
}

/// Every metric family of the gateway. One per gateway, shared as `Gateway::metrics`.
pub struct Metrics {
    registry: Registry,
    /// Serialises scrapes: each one rewrites the state families before encoding them.
    scrape: Mutex<()>,
    tools: Names,

    requests: Family<RequestLabels, Counter>,
    request_duration: Timings<RequestLabels>,

    backend_up: Family<BackendTransportLabels, Gauge>,
    backend_state: Family<BackendStateLabels, Gauge>,
    backend_entries: Family<BackendKindLabels, Gauge>,
    backend_restarts: Family<BackendLabels, Counter>,
    backend_in_flight: Family<BackendLabels, Gauge>,
    backend_request_duration: Timings<UpstreamLabels>,

    sessions_open: Family<TransportLabels, Gauge>,
    sessions_opened: Family<TransportLabels, Counter>,
    sessions_closed: Family<TransportLabels, Counter>,
    sessions_refused: Family<TransportLabels, Counter>,
    connections_refused: Counter,
    unmatched_replies: Family<BackendLabels, Counter>,
    unattributed: Family<UnattributedLabels, Counter>,
    notifications: Family<KindLabels, Counter>,

    catalog_entries: Family<KindLabels, Gauge>,
    catalog_collisions: Gauge,
    config_reloads: Family<ResultLabels, Counter>,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Timings<ResultLabels>,
    watch_restarts: Counter,
}

/// The gateway's state at scrape time, gathered by whoever can see the gateway.
#[derive(Default)]
pub struct Sample {
    pub backends: Vec<BackendSample>,
    /// Catalog sizes, in the order of [`ENTRY_KINDS`].
    pub catalog: [usize; 4],
    pub collisions: usize,
    /// Open sessions, in the order of [`FRONTENDS`].
    pub sessions: [usize; 3],
}

pub struct BackendSample {
    pub name: Arc<str>,
    pub transport: &'static str,
    pub state: &'static str,
    /// Listed entries, in the order of [`ENTRY_KINDS`].
    pub entries: [usize; 4],
}

/// Counts a request in flight on a backend until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === impl Sample ===

impl Sample {
    /// Count one open session on `transport` (one of [`FRONTENDS`]).
    pub fn count_session(&mut self, transport: &str) {
        if let Some(i) = FRONTENDS.iter().position(|t| *t == transport) {
            self.sessions[i] += 1;
        }
    }
}

// === impl Metrics ===

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            scrape: Mutex::new(()),
            tools: Names::default(),
            requests: Family::default(),
            request_duration: timings(),
            backend_up: Family::default(),
            backend_state: Family::default(),
            backend_entries: Family::default(),
            backend_restarts: Family::default(),
            backend_in_flight: Family::default(),
            backend_request_duration: timings(),
            sessions_open: Family::default(),
            sessions_opened: Family::default(),
            sessions_closed: Family::default(),
            sessions_refused: Family::default(),
            connections_refused: Counter::default(),
            unmatched_replies: Family::default(),
            unattributed: Family::default(),
            notifications: Family::default(),
            catalog_entries: Family::default(),
            catalog_collisions: Gauge::default(),
            config_reloads: Family::default(),
            reconciles: Family::default(),
            reconcile_duration: timings(),
            watch_restarts: Counter::default(),
        };
        m.register()
    }

    fn register(mut self) -> Self {
        let r = self.registry.sub_registry_with_prefix("mcp_gateway");
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        r.register("build_info", "The gateway's version; always 1", info);
        r.register(
            "requests",
            "Client requests by method, owning backend, tool (public name) and outcome",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from receiving a client request to answering it",
            self.request_duration.clone(),
        );
        r.register(
            "backend_up",
            "1 when the backend's session is ready, else 0",
            self.backend_up.clone(),
        );
        r.register(
            "backend_state",
            "1 for the state the backend is in, 0 for the others",
            self.backend_state.clone(),
        );
        r.register(
            "backend_entries",
            "Tools, prompts, resources and resource templates the backend lists",
            self.backend_entries.clone(),
        );
        r.register(
            "backend_restarts",
            "Times the backend's session ended unexpectedly and was started again",
            self.backend_restarts.clone(),
        );
        r.register(
            "backend_requests_in_flight",
            "Client requests waiting on the backend",
            self.backend_in_flight.clone(),
        );
        r.register(
            "backend_request_duration_seconds",
            "Time the backend took to answer a forwarded request",
            self.backend_request_duration.clone(),
        );
        r.register(
            "sessions_open",
            "Client sessions open, by frontend transport",
            self.sessions_open.clone(),
        );
        r.register(
            "sessions_opened",
            "Client sessions opened, by frontend transport",
            self.sessions_opened.clone(),
        );
        r.register(
            "sessions_closed",
            "Client sessions closed, by frontend transport",
            self.sessions_closed.clone(),
        );
        r.register(
            "sessions_refused",
            "New client sessions refused (gateway.maxSessions reached, or shutting down)",
            self.sessions_refused.clone(),
        );
        r.register(
            "connections_refused",
            "HTTP connections refused because gateway.maxConnections were open",
            self.connections_refused.clone(),
        );
        r.register(
            "unmatched_replies",
            "Messages from a backend that answer no request of the gateway's (dropped)",
            self.unmatched_replies.clone(),
        );
        r.register(
            "unattributed_messages",
            "Requests (refused) and notifications (dropped) from a backend that the gateway \
             cannot tie to one client, by kind and method",
            self.unattributed.clone(),
        );
        r.register(
            "notifications_sent",
            "Notifications sent to clients, by kind",
            self.notifications.clone(),
        );
        r.register(
            "catalog_entries",
            "Tools, prompts, resources and resource templates the gateway publishes",
            self.catalog_entries.clone(),
        );
        r.register(
            "catalog_collisions",
            "Public names two backends both produced (one of them was renamed)",
            self.catalog_collisions.clone(),
        );
        r.register(
            "config_reloads",
            "Config file reloads by result (applied, or invalid and refused)",
            self.config_reloads.clone(),
        );
        r.register(
            "reconciles",
            "Kubernetes reconciles by result",
            self.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time a Kubernetes reconcile took, by result",
            self.reconcile_duration.clone(),
        );
        r.register(
            "watch_restarts",
            "Times the Kubernetes watch was restarted",
            self.watch_restarts.clone(),
        );
        // Series a dashboard compares against from the start, so they exist at zero.
        for transport in FRONTENDS {
            let l = TransportLabels { transport };
            drop(self.sessions_opened.get_or_create(&l));
            drop(self.sessions_closed.get_or_create(&l));
            drop(self.sessions_refused.get_or_create(&l));
        }
        for result in ["applied", "invalid"] {
            drop(self.config_reloads.get_or_create(&ResultLabels { result }));
        }
        self
    }

    /// The `tool` label for a public tool name found in the catalog.
    pub fn tool_label(&self, name: &str) -> Label {
        self.tools.label(name)
    }

    /// One client request answered (or cancelled).
    pub fn request(
        &self,
        method: &'static str,
        backend: Label,
        tool: Label,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let labels = RequestLabels {
            method,
            backend,
            tool,
            outcome: outcome.as_str(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// A request goes to `backend`; it counts as in flight until the guard is dropped.
    pub fn in_flight(&self, backend: &Arc<str>) -> InFlight {
        let gauge = self.backend_in_flight.get_or_create_owned(&BackendLabels {
            backend: backend.into(),
        });
        gauge.inc();
        InFlight(gauge)
    }

    /// `backend` answered a forwarded `method` request after `elapsed`.
    pub fn upstream(&self, backend: &Arc<str>, method: &'static str, elapsed: Duration) {
        self.backend_request_duration
            .get_or_create(&UpstreamLabels {
                backend: backend.into(),
                method,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// `backend`'s session ended on its own (it will be started again).
    pub fn backend_restart(&self, backend: &Arc<str>) {
        self.backend_restarts
            .get_or_create(&BackendLabels {
                backend: backend.into(),
            })
            .inc();
    }

    pub fn session_opened(&self, transport: &'static str) {
        self.sessions_opened
            .get_or_create(&TransportLabels { transport })
            .inc();
    }

    pub fn session_refused(&self, transport: &'static str) {
        self.sessions_refused
            .get_or_create(&TransportLabels { transport })
            .inc();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A backend sent a response that matches no request in flight (or has no usable id).
    pub fn unmatched_reply(&self, backend: &Arc<str>) {
        self.unmatched_replies
            .get_or_create(&BackendLabels {
                backend: backend.into(),
            })
            .inc();
    }

    /// A backend's request (refused) or notification (dropped), `method`, could not be tied
    /// to one client.
    pub fn unattributed(&self, backend: &Arc<str>, request: bool, method: &str) {
        let (kind, method) = if request {
            ("request", labels::server_request(method))
        } else {
            ("notification", labels::notification(method))
        };
        self.unattributed
            .get_or_create(&UnattributedLabels {
                backend: backend.into(),
                kind,
                method,
            })
            .inc();
    }

    pub fn session_closed(&self, transport: &'static str) {
        self.sessions_closed
            .get_or_create(&TransportLabels { transport })
            .inc();
    }

    /// A notification (`method`) was sent to one client.
    pub fn notification(&self, method: &str) {
        self.notifications
            .get_or_create(&KindLabels {
                kind: labels::notification(method),
            })
            .inc();
    }

    /// The config file was reloaded: applied, or refused as invalid.
    pub fn config_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "invalid" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One Kubernetes reconcile finished with `result` (e.g. "ok", or an error variant's
    /// name) after `elapsed`. For the Kubernetes controller.
    pub fn reconcile(&self, result: &'static str, elapsed: Duration) {
        let labels = ResultLabels { result };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The Kubernetes watch ended and was started again. For the Kubernetes controller.
    pub fn watch_restart(&self) {
        self.watch_restarts.inc();
    }

    /// The whole exposition: the state in `sample` plus every counted event.
    pub fn render(&self, sample: &Sample, format: Format) -> String {
        let _one_at_a_time = crate::sync::lock(&self.scrape);
        self.set_state(sample);
        exposition::encode(&self.registry, format)
    }

    fn set_state(&self, sample: &Sample) {
        self.backend_up.clear();
        self.backend_state.clear();
        self.backend_entries.clear();
        for b in &sample.backends {
            let backend = Label::from(&b.name);
            let up = i64::from(b.state == "ready");
            self.backend_up
                .get_or_create(&BackendTransportLabels {
                    backend: backend.clone(),
                    transport: b.transport,
                })
                .set(up);
            for state in STATES {
                self.backend_state
                    .get_or_create(&BackendStateLabels {
                        backend: backend.clone(),
                        state,
                    })
                    .set(i64::from(state == b.state));
            }
            for (kind, n) in ENTRY_KINDS.into_iter().zip(b.entries) {
                self.backend_entries
                    .get_or_create(&BackendKindLabels {
                        backend: backend.clone(),
                        kind,
                    })
                    .set(gauge_value(n));
            }
        }
        for (kind, n) in ENTRY_KINDS.into_iter().zip(sample.catalog) {
            self.catalog_entries
                .get_or_create(&KindLabels { kind })
                .set(gauge_value(n));
        }
        self.catalog_collisions.set(gauge_value(sample.collisions));
        for (transport, n) in FRONTENDS.into_iter().zip(sample.sessions) {
            self.sessions_open
                .get_or_create(&TransportLabels { transport })
                .set(gauge_value(n));
        }
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
