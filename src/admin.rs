//! Ops endpoints: liveness, readiness with each backend's state, Prometheus metrics, and
//! read-only views of the backends and the published tools.
//!
//! Probes and scrapers reach the gateway by pod IP, so `/healthz`, `/readyz` and `/metrics`
//! answer any `Host`, and carry nothing sensitive; `/readyz` adds each backend's state only for
//! a request that passes the Host and Origin guards. The `/api/v1` views sit behind the guards
//! with the MCP transports (see `frontend::router`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, http::StatusCode};
use serde_json::{Value, json};

use crate::frontend::HostGuard;
use crate::relay::Gateway;
use crate::telemetry::exposition::Format;
use crate::telemetry::metrics::{BackendSample, Sample};
use crate::upstream::{Backend, State as BackendState};

/// The probes and the metrics: any `Host`.
pub fn probes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The admin API: only behind the guards.
pub fn api() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/v1/backends", get(backends))
        .route("/api/v1/tools", get(tools))
}

/// Ready once the listener is up (this answer proves it), the config file's backends are
/// applied and, in Kubernetes mode, the first list of McpBackends is; each backend's state is
/// reported, but a backend being down or still starting does not make the gateway unready.
async fn readyz(
    State(gw): State<Arc<Gateway>>,
    Extension(guard): Extension<HostGuard>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if gw.draining.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "shutting down"})),
        );
    }
    if *gw.loading.borrow() > 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"ready": false, "reason": "the first backends are still being applied (the config file's, or the first list of McpBackend resources)"}),
            ),
        );
    }
    if guard.check(&headers).is_err() {
        // A probe by pod IP: the verdict, without details.
        return (StatusCode::OK, Json(json!({"ready": true})));
    }
    let backends: Vec<Value> = gw
        .upstreams
        .all()
        .iter()
        .map(|b| {
            let s = b.status();
            json!({
                "name": &*b.name,
                "transport": b.spec().transport_kind(),
                "state": s.state.as_str(),
                "lastError": s.last_error,
            })
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({"ready": true, "sessions": gw.sessions.len(), "backends": backends})),
    )
}

/// The exposition, in OpenMetrics when the scraper asks for it, else Prometheus text.
async fn metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = exposition(&gw, format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// Every metric, with the state families sampled from the gateway now.
pub fn exposition(gw: &Gateway, format: Format) -> String {
    let snap = gw.catalog.current();
    let mut sample = Sample {
        backends: gw
            .upstreams
            .all()
            .iter()
            .map(|b| BackendSample {
                name: b.name.clone(),
                transport: b.spec().transport_kind(),
                state: b.status().state.as_str(),
                entries: snap.counts(&b.name),
            })
            .collect(),
        catalog: [
            snap.tools.len(),
            snap.prompts.len(),
            snap.resources.len(),
            snap.templates.len(),
        ],
        collisions: snap.collisions.len(),
        sessions: [0; 3],
    };
    for s in gw.sessions.all() {
        sample.count_session(s.frontend.as_str());
    }
    gw.metrics.render(&sample, format)
}

async fn backends(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let snap = gw.catalog.current();
    let list: Vec<Value> = gw
        .upstreams
        .all()
        .iter()
        .map(|b| describe(b, snap.counts(&b.name)))
        .collect();
    Json(Value::Array(list))
}

fn describe(b: &Backend, [tools, prompts, resources, templates]: [usize; 4]) -> Value {
    let s = b.status();
    let uptime = (s.state == BackendState::Ready).then(|| s.since.elapsed().as_secs());
    json!({
        "name": &*b.name,
        "transport": b.spec().transport_kind(),
        "prefix": b.spec().prefix,
        "state": s.state.as_str(),
        "lastError": s.last_error,
        "uptimeSeconds": uptime,
        "restarts": s.restarts,
        "sessions": b.spec().sessions.as_str(),
        "clientSessions": b.client_sessions(),
        "serverInfo": s.server_info,
        "protocolVersion": s.protocol_version,
        "tools": tools,
        "prompts": prompts,
        "resources": resources,
        "resourceTemplates": templates,
    })
}

async fn tools(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let snap = gw.catalog.current();
    let list: Vec<Value> = snap
        .tools
        .iter()
        .map(|e| {
            let collision = snap
                .collisions
                .iter()
                .find(|c| c.kind == "tool" && c.renamed.as_deref() == Some(&*e.public));
            let mut v = json!({
                "name": &*e.public,
                "backend": &*e.backend,
                "upstreamName": &*e.upstream,
                "description": e.to_value().get("description"),
            });
            if let Some(c) = collision {
                v["renamedFrom"] = Value::from(c.name.as_str());
                v["collidedWith"] = Value::from(c.winner.as_str());
            }
            v
        })
        .collect();
    Json(Value::Array(list))
}
