//! Legacy HTTP+SSE (protocol 2024-11-05): `GET /sse` opens a session whose stream first
//! announces where to POST (`endpoint`), then carries every message for the client;
//! `POST /messages?sessionId=…` delivers client messages, answered on the stream.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::streamable::error_response;
use super::{Outbound, json_response, parse_body};
use crate::jsonrpc;
use crate::relay::Gateway;
use crate::session::Frontend;
use crate::telemetry::TraceContext;

pub async fn connect(State(gw): State<Arc<Gateway>>) -> Response {
    let (session, rx) = gw.new_session(Frontend::Sse);
    if let Err(refusal) = gw.open(session.clone()) {
        return super::streamable::refused(&refusal);
    }
    tracing::debug!(session = %session.id, "SSE client connected");
    let endpoint = super::named_event("endpoint", &format!("/messages?sessionId={}", session.id));
    let closing = gw.clone();
    let out = Outbound::new(rx)
        .first(endpoint)
        .of(session.clone())
        .on_drop(move |_| {
            tokio::spawn(async move {
                tracing::debug!(session = %session.id, "SSE client disconnected");
                closing.close(&session).await;
            });
        });
    super::sse_response(out)
}

#[derive(Deserialize)]
pub struct SessionQuery {
    #[serde(rename = "sessionId", alias = "session_id")]
    session_id: Option<String>,
}

pub async fn message(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<SessionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(id) = q.session_id else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the sessionId query parameter is required",
        );
    };
    let Some(session) = gw.sessions.get(&id).filter(|s| s.frontend == Frontend::Sse) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "unknown or expired session: reconnect to /sse",
        );
    };
    let msg = match parse_body(&body) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    if let Err(why) = jsonrpc::classify(&msg).map(|_| ()).or_else(|e| match &msg {
        serde_json::Value::Array(_) => Ok(()),
        _ => Err(e),
    }) {
        return json_response(
            StatusCode::BAD_REQUEST,
            jsonrpc::invalid_request(&msg, &why),
        );
    }
    let messages = match msg {
        serde_json::Value::Array(batch) => {
            if let Err(refusal) = super::check_batch(&gw, &session, &batch) {
                return json_response(StatusCode::BAD_REQUEST, refusal);
            }
            batch
        }
        one => vec![one],
    };
    let trace = TraceContext::from_headers(&headers);
    for msg in messages {
        let gw = gw.clone();
        let session = session.clone();
        let trace = trace.clone();
        tokio::spawn(async move {
            let sink = session.outbound().clone();
            if let Some(resp) = gw.handle_traced(&session, msg, &sink, trace.as_ref()).await {
                let _ = sink.send(resp).await;
            }
        });
    }
    StatusCode::ACCEPTED.into_response()
}
