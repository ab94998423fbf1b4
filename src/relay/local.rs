//! What the gateway answers itself: the handshake, the aggregated lists, log levels, resource
//! subscriptions, and telling every session when the catalog changes.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Gateway;
use crate::catalog::{List, ListText};
use crate::jsonrpc;
use crate::session::{Outgoing, Session};
use crate::upstream::handshake::{LATEST_PROTOCOL_VERSION, PROTOCOL_VERSIONS};

pub const SERVER_NAME: &str = "mcp-gateway";

const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Severity rank of an MCP log level (unknown levels rank lowest).
/// The name of a level [`level_rank`] ranked.
pub fn level_name(rank: u8) -> &'static str {
    LEVELS[usize::from(rank).min(LEVELS.len() - 1)]
}

pub fn level_rank(level: &str) -> u8 {
    LEVELS
        .iter()
        .position(|l| *l == level)
        .map_or(0, |i| i as u8)
}

/// The version to answer a client that asked for `requested`: its own when supported,
/// otherwise the newest the gateway speaks (the client then decides whether to go on).
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| PROTOCOL_VERSIONS.iter().find(|v| **v == r).copied())
        .unwrap_or(LATEST_PROTOCOL_VERSION)
}

// === impl Gateway ===

impl Gateway {
    pub(super) fn initialize(&self, session: &Session, id: Value, msg: &Value) -> Value {
        let params = jsonrpc::params(msg);
        let requested = params
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str);
        let version = negotiate(requested);
        {
            let mut st = session.state();
            st.protocol_version = version.to_owned();
            st.capabilities = params
                .and_then(|p| p.get("capabilities"))
                .cloned()
                .unwrap_or(json!({}));
            st.client_info = params
                .and_then(|p| p.get("clientInfo"))
                .cloned()
                .unwrap_or(json!({}));
        }
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": true},
                "prompts": {"listChanged": true},
                "resources": {"subscribe": true, "listChanged": true},
                "logging": {},
                "completions": {},
            },
            "serverInfo": {"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")},
        });
        if let Some(text) = self.instructions() {
            result["instructions"] = Value::from(text);
        }
        tracing::debug!(session = %session.id, frontend = session.frontend.as_str(), version, "client initialized");
        jsonrpc::result(id, result)
    }

    /// The backends' own instructions, each under its backend's name.
    fn instructions(&self) -> Option<String> {
        let parts: Vec<String> = self
            .upstreams
            .all()
            .iter()
            .filter_map(|b| {
                let conn = b.connection()?;
                let text = conn.init()?.instructions.as_deref()?.trim().to_owned();
                (!text.is_empty()).then(|| {
                    format!(
                        "## {} (tools prefixed '{}')\n{text}",
                        b.name,
                        b.spec().prefix
                    )
                })
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// A `*/list` answer: the whole list, or one page of `gateway.listPageSize` items from
    /// where `params.cursor` says, written from the snapshot as it is sent.
    pub(super) fn list(&self, id: Value, msg: &Value, list: List) -> Outgoing {
        let snap = self.catalog.current();
        let len = snap.len(list);
        let cursor = jsonrpc::params(msg).and_then(|p| p.get("cursor"));
        let start = match cursor {
            None | Some(Value::Null) => 0,
            Some(c) => match c.as_str().and_then(parse_cursor) {
                Some(start) => start.min(len),
                None => {
                    let why = "invalid cursor: pass the nextCursor of the previous page as it came";
                    return jsonrpc::error(id, jsonrpc::INVALID_PARAMS, why, None).into();
                }
            },
        };
        let end = match self.settings.list_page_size {
            Some(size) => start.saturating_add(size).min(len),
            None => len,
        };
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        // Writing a value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut head, &id);
        head.extend_from_slice(b",\"result\":{\"");
        head.extend_from_slice(list.field().as_bytes());
        head.extend_from_slice(b"\":[");
        let mut tail = b"]".to_vec();
        if end < len {
            tail.extend_from_slice(b",\"nextCursor\":\"");
            tail.extend_from_slice(cursor_at(end).as_bytes());
            tail.push(b'"');
        }
        tail.extend_from_slice(b"}}");
        Outgoing::List(Arc::new(ListText {
            head,
            snap,
            list,
            range: start..end,
            tail,
        }))
    }

    pub(super) async fn set_level(&self, session: &Session, id: Value, msg: &Value) -> Value {
        let Some(level) = jsonrpc::params(msg)
            .and_then(|p| p.get("level"))
            .and_then(Value::as_str)
        else {
            return jsonrpc::error(
                id,
                jsonrpc::INVALID_PARAMS,
                "logging/setLevel needs params.level",
                None,
            );
        };
        if !LEVELS.contains(&level) {
            return jsonrpc::error(
                id,
                jsonrpc::INVALID_PARAMS,
                format!("unknown log level '{level}'"),
                None,
            );
        }
        session.state().log_level = Some(level_rank(level));
        // Backends share one session, so they log at the most verbose level any client wants;
        // each client is then sent only what its own level lets through.
        let min = self
            .sessions
            .all()
            .iter()
            .filter_map(|s| s.state().log_level)
            .min()
            .unwrap_or(level_rank(level));
        let upstream_level = LEVELS[usize::from(min)];
        for b in self.upstreams.all() {
            if let Some(conn) = b.connection().filter(|c| c.has_capability("logging")) {
                let req = conn.request("logging/setLevel", Some(json!({"level": upstream_level})));
                if let Err(e) = req.await {
                    tracing::debug!(backend = %b.name, error = %e, "logging/setLevel failed");
                }
            }
            // A session of the client's own (`sessions: per-client`) logs at its level alone;
            // one opened later is told when it opens (`Backend::session_for`).
            if let Some(conn) = b
                .own_session(&session.id)
                .filter(|c| c.has_capability("logging"))
            {
                let req = conn.request("logging/setLevel", Some(json!({"level": level})));
                if let Err(e) = req.await {
                    tracing::debug!(backend = %b.name, error = %e, "logging/setLevel failed");
                }
            }
        }
        jsonrpc::result(id, json!({}))
    }

    pub(super) async fn subscribe(&self, session: &Session, msg: Value, on: bool) -> Value {
        let id = jsonrpc::id_or_null(&msg);
        let method = if on {
            "resources/subscribe"
        } else {
            "resources/unsubscribe"
        };
        let Some(uri) = jsonrpc::params(&msg)
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str)
        else {
            return jsonrpc::error(
                id,
                jsonrpc::INVALID_PARAMS,
                format!("{method} needs params.uri"),
                None,
            );
        };
        let Some(backend) = self.catalog.current().resource_backend(uri).cloned() else {
            return jsonrpc::error(
                id,
                jsonrpc::RESOURCE_NOT_FOUND,
                format!("no backend serves resource '{uri}'"),
                None,
            );
        };
        let key = (backend.clone(), uri.to_owned());
        if !on {
            if session.state().subscriptions.remove(&key) {
                self.release_subscription(&backend, uri).await;
            }
            return jsonrpc::result(id, json!({}));
        }
        if !session.state().subscriptions.insert(key.clone()) {
            return jsonrpc::result(id, json!({}));
        }
        if self.routes.subscribe(&backend, uri) {
            let conn = self.upstreams.get(&backend).and_then(|b| b.connection());
            let outcome = match conn {
                Some(c) => c
                    .request(method, Some(json!({"uri": uri})))
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("the backend is down".to_owned()),
            };
            if let Err(e) = outcome {
                session.state().subscriptions.remove(&key);
                self.routes.unsubscribe(&backend, uri);
                return jsonrpc::error(
                    id,
                    jsonrpc::BACKEND_UNAVAILABLE,
                    format!("backend '{backend}' refused to subscribe to '{uri}': {e}"),
                    None,
                );
            }
        }
        jsonrpc::result(id, json!({}))
    }

    pub(super) async fn release_subscription(&self, backend: &Arc<str>, uri: &str) {
        if !self.routes.unsubscribe(backend, uri) {
            return;
        }
        if let Some(conn) = self.upstreams.get(backend).and_then(|b| b.connection()) {
            let _ = conn
                .request("resources/unsubscribe", Some(json!({"uri": uri})))
                .await;
        }
    }

    /// Send a client notification (e.g. roots/list_changed) to every live backend.
    pub(super) async fn broadcast_upstream(&self, msg: Value) {
        for b in self.upstreams.all() {
            if let Some(conn) = b.connection() {
                let _ = conn.send(msg.clone()).await;
            }
        }
    }
}

/// A page's cursor: opaque to clients, the offset of the page's first item to the gateway.
const CURSOR_PREFIX: &str = "mcpgw1.";

fn cursor_at(offset: usize) -> String {
    format!("{CURSOR_PREFIX}{offset}")
}

fn parse_cursor(cursor: &str) -> Option<usize> {
    let digits = cursor.strip_prefix(CURSOR_PREFIX)?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Watch the catalog and tell every initialized session which lists changed.
pub async fn announce_changes(gateway: Arc<Gateway>) {
    let mut rx = gateway.catalog.subscribe();
    let mut seen = rx.borrow_and_update().clone();
    let shutdown = gateway.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let now = rx.borrow_and_update().clone();
        let [tools, prompts, resources] = now.changed_since(&seen);
        seen = now;
        let methods = [
            (tools, "notifications/tools/list_changed"),
            (prompts, "notifications/prompts/list_changed"),
            (resources, "notifications/resources/list_changed"),
        ];
        for (changed, method) in methods {
            if !changed {
                continue;
            }
            tracing::debug!(method, "catalog changed");
            for s in gateway.sessions.all() {
                if s.state().initialized {
                    s.push(jsonrpc::notification(method, None));
                    gateway.metrics.notification(method);
                }
            }
        }
    }
}
