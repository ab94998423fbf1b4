//! Opening a backend session: `initialize`, `notifications/initialized`, and reading every
//! list to its last page.

use serde_json::{Value, json};

use super::connection::{CallError, Connection, ServerInit};
use crate::catalog::Listing;
use crate::jsonrpc;

/// Protocol versions the gateway speaks, oldest first; the last is proposed upstream.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_PROTOCOL_VERSION: &str = PROTOCOL_VERSIONS[PROTOCOL_VERSIONS.len() - 1];
/// A backend that keeps handing out cursors is cut off here rather than looping forever.
const MAX_PAGES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("initialize failed: {0}")]
    Initialize(CallError),
    #[error("backend speaks protocol version {0:?}, which the gateway does not support")]
    Version(String),
    #[error("initialize result is malformed: {0}")]
    Malformed(&'static str),
    #[error("sending notifications/initialized failed: {0}")]
    Initialized(super::transport::TransportError),
}

pub async fn initialize(conn: &Connection) -> Result<ServerInit, HandshakeError> {
    let params = json!({
        "protocolVersion": LATEST_PROTOCOL_VERSION,
        "capabilities": {
            "roots": {"listChanged": true},
            "sampling": {},
            "elicitation": {},
        },
        "clientInfo": {"name": "mcp-gateway", "version": env!("CARGO_PKG_VERSION")},
    });
    let result = conn
        .request("initialize", Some(params))
        .await
        .map_err(HandshakeError::Initialize)?;
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or(HandshakeError::Malformed("no protocolVersion"))?;
    if !PROTOCOL_VERSIONS.contains(&version) {
        return Err(HandshakeError::Version(version.to_owned()));
    }
    let init = ServerInit {
        protocol_version: version.to_owned(),
        capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
        server_info: result.get("serverInfo").cloned().unwrap_or(json!({})),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    conn.send(jsonrpc::notification("notifications/initialized", None))
        .await
        .map_err(HandshakeError::Initialized)?;
    Ok(init)
}

/// Everything the backend offers, per the capabilities it declared. A list that fails is
/// logged and left empty: one broken list must not hide the backend's other features.
pub async fn list_all(conn: &Connection) -> Listing {
    let mut listing = Listing::default();
    if conn.has_capability("tools") {
        listing.tools = list(conn, "tools/list", "tools").await;
    }
    if conn.has_capability("prompts") {
        listing.prompts = list(conn, "prompts/list", "prompts").await;
    }
    if conn.has_capability("resources") {
        listing.resources = list(conn, "resources/list", "resources").await;
        listing.templates = list(conn, "resources/templates/list", "resourceTemplates").await;
    }
    listing
}

async fn list(conn: &Connection, method: &str, field: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.take().map(|c| json!({ "cursor": c }));
        let mut page = match conn.request(method, params).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(backend = %conn.backend, method, error = %e, "listing failed");
                return items;
            }
        };
        if let Some(Value::Array(page_items)) = page.get_mut(field).map(Value::take) {
            items.extend(page_items);
        }
        match page.get("nextCursor") {
            Some(c) if !c.is_null() && c.as_str() != Some("") => cursor = Some(c.clone()),
            _ => return items,
        }
    }
    tracing::warn!(backend = %conn.backend, method, "stopped listing after {MAX_PAGES} pages");
    items
}
