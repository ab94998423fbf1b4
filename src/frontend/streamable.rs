//! Streamable HTTP at `/mcp` (protocol 2025-03-26 and later), written against the JSON-RPC
//! relay rather than a typed server so that every message passes through unchanged.
//!
//! POST carries client messages: `initialize` opens a session (answered with `Mcp-Session-Id`);
//! a request the gateway forwards is answered with an SSE stream that carries its progress and
//! any server→client requests before the response; one answered locally gets plain JSON;
//! notifications and responses get 202. GET opens the session's own stream (list_changed,
//! log messages, resource updates). DELETE ends the session.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Outbound, json_response, message_response, one_event_response, parse_body, sse_body};
use crate::jsonrpc::{self, Kind};
use crate::relay::Gateway;
use crate::session::{Frontend, Outgoing, Session};
use crate::telemetry::TraceContext;
use crate::upstream::handshake::PROTOCOL_VERSIONS;

pub const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// How long a streamed request waits for its first message before the response begins.
const FIRST_MESSAGE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Methods whose answer may be preceded by progress or server→client requests: they get an
/// SSE response stream when the client accepts one.
fn streams(method: Option<&str>) -> bool {
    matches!(
        method,
        Some("tools/call" | "prompts/get" | "resources/read" | "completion/complete")
    )
}

pub async fn post(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let msg = match parse_body(&body) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    if let Some(resp) = check_version(&headers) {
        return resp;
    }
    let is_initialize = jsonrpc::method(&msg) == Some("initialize");
    let session = match session_of(&gw, &headers) {
        Ok(Some(s)) if !is_initialize => s,
        Ok(_) if is_initialize => {
            // The session's stream waits, parked, until a GET stream takes it.
            let (s, rx) = gw.new_session(Frontend::StreamableHttp);
            s.return_outbound(rx);
            if let Err(refusal) = gw.open(s.clone()) {
                return refused(&refusal);
            }
            s
        }
        Ok(_) if jsonrpc::method(&msg) == Some("server/discover") => {
            // Answered without a session so that probing clients fall back to initialize.
            let (s, _) = gw.new_session(Frontend::StreamableHttp);
            let sink = s.outbound().clone();
            let resp = gw.handle(&s, msg, &sink).await;
            return message_response(StatusCode::OK, resp.unwrap_or(Outgoing::Value(Value::Null)));
        }
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "the Mcp-Session-Id header is required after initialize",
            );
        }
        Err(resp) => return *resp,
    };

    let trace = TraceContext::from_headers(&headers);
    match msg {
        Value::Array(batch) => post_batch(gw, session, batch, trace).await,
        msg => {
            post_one(
                gw,
                session,
                msg,
                accepts_sse(&headers),
                is_initialize,
                trace,
            )
            .await
        }
    }
}

async fn post_one(
    gw: Arc<Gateway>,
    session: Arc<Session>,
    msg: Value,
    sse_ok: bool,
    new_session: bool,
    trace: Option<TraceContext>,
) -> Response {
    let kind = jsonrpc::classify(&msg);
    if !matches!(kind, Ok(Kind::Request)) {
        let sink = session.outbound().clone();
        return match gw.handle(&session, msg, &sink).await {
            // An invalid message gets its error back directly.
            Some(err) => message_response(StatusCode::BAD_REQUEST, err),
            None => StatusCode::ACCEPTED.into_response(),
        };
    }
    if sse_ok && streams(jsonrpc::method(&msg)) {
        let (tx, mut rx) = mpsc::channel(64);
        tokio::spawn(async move {
            if let Some(resp) = gw.handle_traced(&session, msg, &tx, trace.as_ref()).await {
                let _ = tx.send(resp).await;
            }
        });
        // Most answers come at once: wait a moment for the first message, so that a quick
        // answer goes out with the headers in one write. A slow one gets its stream (and
        // the client its headers) after `FIRST_MESSAGE_WAIT`.
        let first = match tokio::time::timeout(FIRST_MESSAGE_WAIT, rx.recv()).await {
            Ok(Some(first)) if first.is_response() => return one_event_response(&first),
            Ok(Some(first)) => Some(first),
            // The request was cancelled or dropped unanswered: an empty stream, as before.
            Ok(None) | Err(_) => None,
        };
        let mut out = Outbound::new(rx).until_response();
        if let Some(first) = first {
            out = out.first(super::message_event(&first));
        }
        return super::sse_response(out);
    }
    let sink = session.outbound().clone();
    let resp = gw
        .handle_traced(&session, msg, &sink, trace.as_ref())
        .await
        .unwrap_or(Outgoing::Value(Value::Null));
    let mut out = message_response(StatusCode::OK, resp);
    if new_session && let Ok(v) = HeaderValue::from_str(&session.id) {
        out.headers_mut().insert(SESSION_HEADER, v);
    }
    out
}

async fn post_batch(
    gw: Arc<Gateway>,
    session: Arc<Session>,
    batch: Vec<Value>,
    trace: Option<TraceContext>,
) -> Response {
    if let Err(refusal) = super::check_batch(&gw, &session, &batch) {
        return json_response(StatusCode::BAD_REQUEST, refusal);
    }
    let sink = session.outbound().clone();
    let answers = futures_util::future::join_all(
        batch
            .into_iter()
            .map(|m| gw.handle_traced(&session, m, &sink, trace.as_ref())),
    )
    .await;
    let answers: Vec<Outgoing> = answers.into_iter().flatten().collect();
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let mut body = b"[".to_vec();
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        a.write_to(&mut body);
    }
    body.push(b']');
    message_response(StatusCode::OK, Outgoing::Text(body.into()))
}

/// GET: the session's own stream of messages not tied to a request.
pub async fn get(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if !accepts_sse(&headers) {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            "GET /mcp needs Accept: text/event-stream",
        );
    }
    let session = match session_of(&gw, &headers) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "the Mcp-Session-Id header is required",
            );
        }
        Err(resp) => return *resp,
    };
    let Some(rx) = session.take_outbound() else {
        return error_response(
            StatusCode::CONFLICT,
            "this session already has a GET stream open",
        );
    };
    sse_body(rx, Some(session))
}

/// DELETE: the client ends its session.
pub async fn delete(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    match session_of(&gw, &headers) {
        Ok(Some(s)) => {
            gw.close(&s).await;
            StatusCode::OK.into_response()
        }
        Ok(None) => error_response(
            StatusCode::BAD_REQUEST,
            "the Mcp-Session-Id header is required",
        ),
        Err(resp) => *resp,
    }
}

/// The session named by the request: `Ok(None)` without a header, 404 for an unknown one.
fn session_of(gw: &Gateway, headers: &HeaderMap) -> Result<Option<Arc<Session>>, Box<Response>> {
    let Some(id) = headers.get(SESSION_HEADER) else {
        return Ok(None);
    };
    let id = id.to_str().unwrap_or_default();
    match gw.sessions.get(id) {
        Some(s) if s.frontend == Frontend::StreamableHttp => Ok(Some(s)),
        _ => Err(Box::new(error_response(
            StatusCode::NOT_FOUND,
            "unknown or expired session: start a new one with initialize",
        ))),
    }
}

fn check_version(headers: &HeaderMap) -> Option<Response> {
    let v = headers.get(VERSION_HEADER)?.to_str().unwrap_or_default();
    if PROTOCOL_VERSIONS.contains(&v) {
        return None;
    }
    Some(error_response(
        StatusCode::BAD_REQUEST,
        &format!(
            "unsupported MCP-Protocol-Version {v:?}; supported: {}",
            PROTOCOL_VERSIONS.join(", ")
        ),
    ))
}

fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream") || v.contains("*/*"))
}

/// 503 for a session the gateway will not open now, with the reason as a JSON-RPC error.
pub fn refused(refusal: &crate::relay::Refusal) -> Response {
    let mut out = json_response(StatusCode::SERVICE_UNAVAILABLE, refusal.to_error());
    out.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    out
}

/// An HTTP-level error with a JSON-RPC error body, as the SDKs expect.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        jsonrpc::error(Value::Null, jsonrpc::INVALID_REQUEST, message, None),
    )
}
