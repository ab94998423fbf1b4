//! Ops endpoints: liveness, readiness with each backend's state, and read-only views of the
//! backends and the published tools.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, http::StatusCode};
use serde_json::{Value, json};

use crate::relay::Gateway;
use crate::upstream::{Backend, State as BackendState};

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/backends", get(backends))
        .route("/api/v1/tools", get(tools))
}

/// Ready once the config is loaded, the listener is up (this answer proves both) and, in
/// Kubernetes mode, the first list of McpBackends is applied; each backend's state is
/// reported, but a backend being down does not make the gateway unready.
async fn readyz(State(gw): State<Arc<Gateway>>) -> (StatusCode, Json<Value>) {
    if gw.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "shutting down"})),
        );
    }
    if gw.loading.load(std::sync::atomic::Ordering::Acquire) > 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"ready": false, "reason": "waiting for the first list of McpBackend resources"}),
            ),
        );
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
                .find(|c| c.kind == "tool" && c.renamed.as_deref() == Some(e.public.as_str()));
            let mut v = json!({
                "name": e.public,
                "backend": &*e.backend,
                "upstreamName": e.upstream,
                "description": e.def.get("description"),
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
