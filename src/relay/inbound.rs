//! What backends say on their own: progress, log messages, resource updates, and requests to
//! the client (sampling, elicitation, roots), each delivered to the session it concerns.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Gateway;
use super::local::level_rank;
use super::routes::Attribution;
use crate::catalog::Listing;
use crate::jsonrpc::{self, Kind};
use crate::session::{Flight, Session, Sink};
use crate::upstream::{Connection, Events};

// === impl Events for Gateway ===

impl Events for Gateway {
    fn on_message(&self, conn: &Arc<Connection>, msg: Value, related: Option<Value>) {
        match jsonrpc::classify(&msg) {
            Ok(Kind::Request) => self.server_request(conn, msg, related),
            Ok(Kind::Notification) => self.server_notification(conn, msg, related),
            _ => {}
        }
    }

    fn on_unmatched(&self, conn: &Arc<Connection>, late: bool) {
        self.metrics.unmatched_reply(&conn.backend);
        if late {
            tracing::debug!(backend = %conn.backend, "response to a request no longer waiting");
        } else {
            tracing::warn!(
                backend = %conn.backend,
                "backend sent a response that matches no request of the gateway's; dropped"
            );
        }
    }

    fn on_listing(&self, backend: &str, generation: u64, listing: Option<Arc<Listing>>) {
        // Only the backend currently registered under this name may set its listing.
        if self
            .upstreams
            .get(backend)
            .is_some_and(|b| b.generation == generation)
        {
            self.catalog.set_listing(backend, listing);
        }
    }
}

impl Gateway {
    /// The client a message from `conn` is for, and where to send it: the request whose stream
    /// it came on (`related`, streamable HTTP); else the one client whose requests the backend
    /// is answering on that upstream session (`routes::attribute`); else, on a client's own
    /// upstream session (`sessions: per-client`), that client. The sink is the request's
    /// stream; `None` for the session's own. `Err` says why it is for no one client.
    fn owner(
        &self,
        conn: &Connection,
        related: Option<&Value>,
    ) -> Result<(Arc<Session>, Option<Sink>), String> {
        let backend = &conn.backend;
        let of_flight = |f: Arc<Flight>| (f.session.clone(), Some(f.sink.clone()));
        let on_stream = related
            .and_then(Value::as_u64)
            .and_then(|id| self.routes.flight(conn.serial, id));
        if let Some(f) = on_stream {
            return Ok(of_flight(f));
        }
        let in_flight = match related {
            Some(_) => Attribution::Nobody,
            None => self.routes.attribute(conn.serial, &conn.unanswered()),
        };
        match (in_flight, &conn.client) {
            (Attribution::Flight(f), _) => Ok(of_flight(f)),
            (_, Some(client)) => match self.sessions.get(client) {
                Some(s) => Ok((s, None)),
                None => Err(format!(
                    "the client of this session of backend '{backend}' is gone"
                )),
            },
            (Attribution::Nobody, None) if related.is_some() => Err(format!(
                "the request it came with on backend '{backend}' is not a client's request \
                 in flight"
            )),
            (Attribution::Nobody, None) => Err(format!(
                "no client's request is in flight on backend '{backend}'"
            )),
            (Attribution::Several { sessions, requests }, None) => Err(format!(
                "{requests} requests from {sessions} different clients are in flight on backend \
                 '{backend}'; set `sessions: per-client` on backend '{backend}'"
            )),
        }
    }

    /// A notification the gateway cannot tie to one client is dropped, never broadcast.
    fn unattributed_notification(&self, conn: &Connection, method: &str, why: &str) {
        self.metrics.unattributed(&conn.backend, false, method);
        tracing::debug!(backend = %conn.backend, method, "notification dropped: {why}");
    }

    fn server_notification(&self, conn: &Arc<Connection>, mut msg: Value, related: Option<Value>) {
        let method = jsonrpc::method(&msg).unwrap_or_default().to_owned();
        let method = method.as_str();
        match method {
            "notifications/progress" => {
                let token = jsonrpc::params(&msg).and_then(|p| p.get("progressToken"));
                let up_id = token.and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok()));
                let Some(flight) = up_id.and_then(|id| self.routes.flight(conn.serial, id)) else {
                    tracing::debug!(backend = %conn.backend, "progress for no request in flight");
                    return;
                };
                let Some(client_token) = flight.progress_token.clone() else {
                    return;
                };
                if let Some(p) = jsonrpc::params_mut(&mut msg) {
                    p.insert("progressToken".into(), client_token);
                }
                flight.progress.notify_one();
                if flight.sink.try_send(msg.into()).is_err() {
                    tracing::debug!(session = %flight.session.id, "progress dropped: client stream is gone or full");
                } else {
                    self.metrics.notification("notifications/progress");
                }
            }
            "notifications/resources/updated" => {
                let Some(uri) = jsonrpc::params(&msg)
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str)
                else {
                    return;
                };
                let key = (conn.backend.clone(), uri.to_owned());
                for s in self.sessions.all() {
                    if s.state().subscriptions.contains(&key) {
                        s.push(msg.clone());
                        self.metrics.notification(method);
                    }
                }
            }
            // A log message, and anything else (including methods newer than the gateway),
            // goes to the client it concerns, and to no one when that is not known.
            _ => {
                let (session, sink) = match self.owner(conn, related.as_ref()) {
                    Ok(found) => found,
                    Err(why) => return self.unattributed_notification(conn, method, &why),
                };
                if method == "notifications/message" {
                    let rank = jsonrpc::params(&msg)
                        .and_then(|p| p.get("level"))
                        .and_then(Value::as_str)
                        .map(level_rank)
                        .unwrap_or(0);
                    if session.state().log_level.is_some_and(|min| rank < min) {
                        return;
                    }
                }
                match sink {
                    // The session's own stream: bounded like every notification queued there.
                    None => {
                        session.push(msg);
                        self.metrics.notification(method);
                    }
                    Some(sink) if sink.try_send(msg.into()).is_ok() => {
                        self.metrics.notification(method);
                    }
                    Some(_) => {
                        tracing::debug!(session = %session.id, method, "notification dropped: client stream is gone or full");
                    }
                }
            }
        }
    }

    /// A request from a backend to "the client": ask the client whose request it belongs to
    /// (see [`Self::owner`]) and send its answer back up with the backend's own id. When that
    /// is not known, the backend gets an error and no client is asked.
    fn server_request(&self, conn: &Arc<Connection>, msg: Value, related: Option<Value>) {
        let up_id = jsonrpc::id_or_null(&msg);
        let method = jsonrpc::method(&msg).unwrap_or_default().to_owned();
        let target = self.owner(conn, related.as_ref());
        let conn = conn.clone();
        if let Err(why) = &target {
            self.metrics.unattributed(&conn.backend, true, &method);
            tracing::warn!(
                backend = %conn.backend,
                method,
                "backend request refused: cannot tell which client it is for: {why}"
            );
        }
        let timeout = self.settings.request_timeout;
        tokio::spawn(async move {
            let answer = match target {
                Err(why) => jsonrpc::error(
                    up_id,
                    jsonrpc::UNATTRIBUTED,
                    format!("cannot tell which client this {method} is for: {why}"),
                    Some(json!({"backend": &*conn.backend})),
                ),
                Ok((session, sink)) => {
                    let sink = sink.unwrap_or_else(|| session.outbound().clone());
                    ask_client(&session, &sink, msg, up_id, &method, timeout).await
                }
            };
            if let Err(e) = conn.send(answer).await {
                tracing::debug!(backend = %conn.backend, error = %e, "could not answer backend request");
            }
        });
    }
}

fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Relay one server→client request to `session` and return the answer for the backend.
async fn ask_client(
    session: &Session,
    sink: &Sink,
    mut msg: Value,
    up_id: Value,
    method: &str,
    timeout: std::time::Duration,
) -> Value {
    if let Some(cap) = capability_for(method)
        && !session.has_capability(cap)
    {
        return jsonrpc::error(
            up_id,
            jsonrpc::METHOD_NOT_FOUND,
            format!(
                "the client does not support {method} (it did not declare the '{cap}' capability)"
            ),
            None,
        );
    }
    let (client_id, answer) = session.expect_answer();
    if let Some(obj) = msg.as_object_mut() {
        obj.insert("id".into(), Value::from(client_id));
    }
    if sink.send(msg.into()).await.is_err() {
        session.forget_answer(client_id);
        return jsonrpc::error(
            up_id,
            jsonrpc::INTERNAL_ERROR,
            "the client disconnected",
            None,
        );
    }
    let outcome = tokio::select! {
        a = answer => a.ok(),
        _ = session.closed.cancelled() => None,
        _ = tokio::time::sleep(timeout) => None,
    };
    session.forget_answer(client_id);
    match outcome {
        Some(mut resp) => {
            if let Some(obj) = resp.as_object_mut() {
                obj.insert("id".into(), up_id);
            }
            resp
        }
        None => jsonrpc::error(
            up_id,
            jsonrpc::REQUEST_TIMEOUT,
            format!("the client did not answer {method}"),
            Some(json!({"timeoutSeconds": timeout.as_secs()})),
        ),
    }
}
