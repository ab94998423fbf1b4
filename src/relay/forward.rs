//! Forwarding a client's request to the backend that owns it.
//!
//! The public name (or URI) picks the backend; the request goes up on that backend's shared
//! session with a gateway-assigned id and, when the client asked for progress, a
//! gateway-assigned progress token; the response comes back down with the client's id. The
//! request ends by response, by cancellation (client or disconnect), or by timeout, and in the
//! last two cases the backend is told with `notifications/cancelled`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Gateway;
use super::local::level_name;
use crate::jsonrpc;
use crate::session::{Flight, Session, Sink};
use crate::telemetry::context;
use crate::telemetry::trace::{self, Subject};
use crate::telemetry::{Observed, Outcome};
use crate::upstream::NoSession;

// === impl Gateway ===

impl Gateway {
    /// `tools/call` and `prompts/get`: route by public name, send the upstream name.
    pub(super) async fn call_named(
        self: &Arc<Self>,
        session: &Arc<Session>,
        msg: Value,
        sink: &Sink,
        kind: &'static str,
        observed: &Observed,
    ) -> Value {
        let Some(name) = param_str(&msg, "name") else {
            let method = jsonrpc::method(&msg).unwrap_or_default();
            return invalid_params(&msg, &format!("{method} needs params.name"));
        };
        let snap = self.catalog.current();
        let entry = if kind == "tool" {
            snap.tool(name)
        } else {
            snap.prompt(name)
        };
        let Some(entry) = entry else {
            return self.unknown(&msg, kind, name);
        };
        let method = if kind == "tool" {
            "tools/call"
        } else {
            "prompts/get"
        };
        let target = Target {
            method,
            kind,
            name: &entry.public,
        };
        let msg = with_param(msg, "name", Value::from(&*entry.upstream));
        self.forward(session, sink, msg, &entry.backend, target, observed)
            .await
    }

    pub(super) async fn read_resource(
        self: &Arc<Self>,
        session: &Arc<Session>,
        msg: Value,
        sink: &Sink,
        observed: &Observed,
    ) -> Value {
        let Some(uri) = param_str(&msg, "uri").map(str::to_owned) else {
            return invalid_params(&msg, "resources/read needs params.uri");
        };
        let Some(backend) = self.catalog.current().resource_backend(&uri).cloned() else {
            return no_resource(&msg, &uri);
        };
        let target = Target {
            method: "resources/read",
            kind: "resource",
            name: &uri,
        };
        self.forward(session, sink, msg, &backend, target, observed)
            .await
    }

    /// `completion/complete`, routed by the prompt or resource template it completes.
    pub(super) async fn complete(
        self: &Arc<Self>,
        session: &Arc<Session>,
        msg: Value,
        sink: &Sink,
        observed: &Observed,
    ) -> Value {
        let reference = jsonrpc::params(&msg).and_then(|p| p.get("ref"));
        let field = |k: &str| {
            reference
                .and_then(|r| r.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let snap = self.catalog.current();
        let (backend, kind, name, upstream) = match field("type").as_str() {
            "ref/prompt" => {
                let name = field("name");
                let Some(entry) = snap.prompt(&name) else {
                    return self.unknown(&msg, "prompt", &name);
                };
                let upstream = Some(entry.upstream.clone());
                (
                    entry.backend.clone(),
                    "completion of prompt",
                    name,
                    upstream,
                )
            }
            "ref/resource" => {
                let uri = field("uri");
                let found = snap
                    .template_backend(&uri)
                    .or_else(|| snap.resource_backend(&uri));
                let Some(backend) = found.cloned() else {
                    return no_resource(&msg, &uri);
                };
                (backend, "completion of resource", uri, None)
            }
            _ => {
                return invalid_params(
                    &msg,
                    "completion/complete needs params.ref of type ref/prompt or ref/resource",
                );
            }
        };
        drop(snap);
        let mut msg = msg;
        if let Some(upstream) = upstream
            && let Some(r) = jsonrpc::params_mut(&mut msg)
                .and_then(|p| p.get_mut("ref"))
                .and_then(Value::as_object_mut)
        {
            r.insert("name".into(), Value::from(&*upstream));
        }
        let target = Target {
            method: "completion/complete",
            kind,
            name: &name,
        };
        self.forward(session, sink, msg, &backend, target, observed)
            .await
    }

    /// The error for a name the catalog does not have: invalid params ("unknown tool 'x'"),
    /// or a server error naming the backend when the name carries the prefix of one that is
    /// not serving (its tools are unlisted while it is down, and not yet published while it
    /// starts).
    fn unknown(&self, msg: &Value, kind: &str, name: &str) -> Value {
        let sep = &self.settings.separator;
        let owner = self.upstreams.all().into_iter().find(|b| {
            let prefix = &b.spec().prefix;
            !prefix.is_empty()
                && name
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_prefix(sep.as_str()))
                    .is_some_and(|rest| !rest.is_empty())
                && !b.serving()
        });
        let id = jsonrpc::id_or_null(msg);
        match owner {
            Some(b) => jsonrpc::error(
                id,
                jsonrpc::BACKEND_UNAVAILABLE,
                format!("{kind} '{name}' is unavailable: {}", b.unavailable_reason()),
                Some(json!({ kind: name, "backend": &*b.name })),
            ),
            None => jsonrpc::error(
                id,
                jsonrpc::INVALID_PARAMS,
                format!("unknown {kind} '{name}'"),
                Some(json!({ kind: name })),
            ),
        }
    }

    /// Send `msg` to `backend` and wait for its response, restoring the client's id.
    /// `Value::Null` means no response is due (the client cancelled the request).
    /// `what` names the target in error messages ("tool 'github__search'"); `observed`
    /// learns the backend and how the call ended.
    pub(super) async fn forward(
        self: &Arc<Self>,
        session: &Arc<Session>,
        sink: &Sink,
        mut msg: Value,
        backend_name: &Arc<str>,
        what: Target<'_>,
        observed: &Observed,
    ) -> Value {
        let down_id = jsonrpc::id_or_null(&msg);
        let method = what.method;
        observed.route(backend_name);
        let Some(backend) = self.upstreams.get(backend_name) else {
            observed.end_as(Outcome::BackendDown);
            return jsonrpc::error(
                down_id,
                jsonrpc::BACKEND_UNAVAILABLE,
                format!("{what}: backend '{backend_name}' is gone"),
                None,
            );
        };
        let log_level = session.state().log_level.map(level_name);
        let conn = match backend
            .session_for(&session.id, &session.closed, log_level)
            .await
        {
            Ok(conn) => conn,
            Err(NoSession::Unavailable(why)) => {
                observed.end_as(Outcome::BackendDown);
                return jsonrpc::error(
                    down_id,
                    jsonrpc::BACKEND_UNAVAILABLE,
                    format!("{what} is unavailable: {why}"),
                    Some(json!({"backend": &**backend_name})),
                );
            }
            Err(NoSession::Full(limit)) => {
                return jsonrpc::error(
                    down_id,
                    jsonrpc::BUSY,
                    format!(
                        "{what}: backend '{backend_name}' has {limit} client sessions of its own, \
                         its limit (gateway.maxClientSessionsPerBackend); try again later"
                    ),
                    Some(json!({"backend": &**backend_name})),
                );
            }
        };
        let limits = &self.settings.limits;
        let slot =
            tokio::time::timeout(limits.queue_timeout, backend.slots.clone().acquire_owned());
        let Ok(Ok(_slot)) = slot.await else {
            return jsonrpc::error(
                down_id,
                jsonrpc::BUSY,
                format!(
                    "{what}: backend '{backend_name}' has {} requests in flight, its limit \
                     (gateway.maxRequestsPerBackend); try again later",
                    limits.max_requests_per_backend
                ),
                Some(json!({"backend": &**backend_name})),
            );
        };
        let up_id = conn.next_id();
        if let Some(obj) = msg.as_object_mut() {
            obj.insert("id".into(), Value::from(up_id));
        }
        let progress_token = swap_progress_token(&mut msg, up_id);
        let span = {
            let subject = match what.kind {
                "tool" => param_str(&msg, "name").map_or(Subject::None, Subject::Tool),
                "prompt" => param_str(&msg, "name").map_or(Subject::None, Subject::Prompt),
                "resource" => Subject::Resource(what.name),
                _ => Subject::None,
            };
            trace::client_span(
                method,
                subject,
                up_id,
                backend_name,
                backend.spec().transport_kind(),
            )
        };
        context::propagate(&span, observed.remote.as_ref(), &mut msg);
        let flight = Arc::new(Flight {
            session: session.clone(),
            downstream_id: down_id.clone(),
            sink: sink.clone(),
            backend: backend_name.clone(),
            conn: conn.serial,
            upstream_id: up_id,
            progress_token,
            cancel: CancellationToken::new(),
            progress: Notify::new(),
        });
        let _tracked = self.routes.track(flight.clone());
        let timeout = backend
            .spec()
            .timeout
            .unwrap_or(self.settings.request_timeout);
        let _in_flight = self.metrics.in_flight(backend_name);
        let started = Instant::now();
        let call = conn.call(up_id, msg);
        tokio::pin!(call);
        let outcome = loop {
            tokio::select! {
                r = &mut call => break Ok(r),
                _ = flight.cancel.cancelled() => break Err("cancelled by the client"),
                _ = self.aborting.cancelled() => break Err(SHUTTING_DOWN),
                _ = flight.progress.notified() => continue,
                _ = tokio::time::sleep(timeout) => break Err("timed out"),
            }
        };
        match outcome {
            Ok(Ok(mut resp)) => {
                self.metrics
                    .upstream(backend_name, method, started.elapsed());
                trace::record_outcome(&span, Outcome::of_response(Some(&resp)), Some(&resp));
                if let Some(obj) = resp.as_object_mut() {
                    obj.insert("id".into(), down_id);
                }
                resp
            }
            Ok(Err(e)) => {
                observed.end_as(Outcome::BackendDown);
                let resp = jsonrpc::error(
                    down_id,
                    jsonrpc::BACKEND_UNAVAILABLE,
                    crate::redact::error(&format!(
                        "backend '{backend_name}' failed during {method} of {what}: {e}"
                    )),
                    Some(json!({"backend": &**backend_name})),
                );
                trace::record_outcome(&span, Outcome::BackendDown, Some(&resp));
                resp
            }
            Err(reason) => {
                let outcome = match reason {
                    "timed out" => Outcome::Timeout,
                    SHUTTING_DOWN => Outcome::BackendDown,
                    _ => Outcome::Cancelled,
                };
                observed.end_as(outcome);
                trace::record_outcome(&span, outcome, None);
                let cancel = jsonrpc::notification(
                    "notifications/cancelled",
                    Some(json!({"requestId": up_id, "reason": reason})),
                );
                let conn = conn.clone();
                tokio::spawn(async move {
                    let _ = conn.send(cancel).await;
                });
                if reason == SHUTTING_DOWN {
                    return jsonrpc::error(
                        down_id,
                        jsonrpc::SHUTTING_DOWN,
                        format!("{what}: the gateway is shutting down and did not finish it"),
                        Some(json!({"backend": &**backend_name})),
                    );
                }
                if reason != "timed out" {
                    // The client cancelled: as the specification asks, it gets no response.
                    return Value::Null;
                }
                jsonrpc::error(
                    down_id,
                    jsonrpc::REQUEST_TIMEOUT,
                    format!(
                        "{what} on backend '{backend_name}' timed out after {} s",
                        timeout.as_secs_f64()
                    ),
                    None,
                )
            }
        }
    }
}

/// Why a forwarded request ended without its response: the gateway's drain ran out of time.
const SHUTTING_DOWN: &str = "the gateway is shutting down";

/// What a forwarded request is about, for error messages. Formatted only when an error is
/// actually built, so the request path allocates no labels.
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    method: &'static str,
    kind: &'static str,
    name: &'a str,
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} '{}'", self.kind, self.name)
    }
}

/// Replace the client's progress token with the upstream request id (unique on that backend,
/// so progress finds its way back), returning the client's token.
pub fn swap_progress_token(msg: &mut Value, up_id: u64) -> Option<Value> {
    let meta = jsonrpc::params_mut(msg)?
        .get_mut("_meta")?
        .as_object_mut()?;
    let token = meta.get_mut("progressToken")?;
    Some(std::mem::replace(token, Value::from(up_id)))
}

fn param_str<'a>(msg: &'a Value, key: &str) -> Option<&'a str> {
    jsonrpc::params(msg)?.get(key)?.as_str()
}

/// `msg` with `params.<key>` set to `value` (every other member kept as it is).
pub fn with_param(mut msg: Value, key: &str, value: Value) -> Value {
    if let Some(p) = jsonrpc::params_mut(&mut msg) {
        p.insert(key.into(), value);
    }
    msg
}

fn invalid_params(msg: &Value, why: &str) -> Value {
    jsonrpc::error(jsonrpc::id_or_null(msg), jsonrpc::INVALID_PARAMS, why, None)
}

fn no_resource(msg: &Value, uri: &str) -> Value {
    jsonrpc::error(
        jsonrpc::id_or_null(msg),
        jsonrpc::RESOURCE_NOT_FOUND,
        format!("no backend serves resource '{uri}'"),
        Some(json!({"uri": uri})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_tokens_are_swapped_and_restorable() {
        let mut msg = json!({"jsonrpc":"2.0","id":"c-1","method":"tools/call",
            "params":{"name":"x","_meta":{"progressToken":"client-token","other":1}}});
        assert_eq!(
            swap_progress_token(&mut msg, 42),
            Some(json!("client-token"))
        );
        assert_eq!(msg["params"]["_meta"]["progressToken"], 42);
        assert_eq!(
            msg["params"]["_meta"]["other"], 1,
            "the rest of _meta passes"
        );
        let mut plain = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}});
        assert_eq!(swap_progress_token(&mut plain, 1), None);
    }

    #[test]
    fn with_param_keeps_unknown_fields() {
        let msg = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
            "params":{"name":"pub__x","arguments":{"a":1},"_meta":{"k":"v"},"future":true}});
        let out = with_param(msg, "name", json!("x"));
        assert_eq!(
            out["params"],
            json!({"name":"x","arguments":{"a":1},"_meta":{"k":"v"},"future":true})
        );
    }
}
