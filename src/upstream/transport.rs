//! The contract between a backend's session logic and the wire it speaks over.
//!
//! A transport moves whole JSON-RPC messages: `send` puts one on the wire, and everything the
//! backend says arrives on the `Inbound` channel handed to the transport at connect time. When
//! the wire ends, the transport sends `Inbound::Closed` once and stops.

use serde_json::Value;
use tokio::sync::mpsc;

use super::{http::HttpTransport, sse::SseTransport, stdio::StdioTransport};

/// Something the backend said, or the end of the conversation.
#[derive(Debug)]
pub enum Inbound {
    /// One JSON-RPC message from the backend. `related` is the id of the gateway's upstream
    /// request this message was sent in the context of, when the transport knows it (the
    /// streamable-HTTP POST response stream it arrived on); `None` otherwise.
    Message { msg: Value, related: Option<Value> },
    /// The transport ended and will deliver nothing more; the text says why.
    Closed(String),
}

pub type InboundTx = mpsc::Sender<Inbound>;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("failed to start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach {}: {detail}", crate::redact::url(url))]
    Connect { url: String, detail: String },
    #[error("{} answered HTTP {status}{}", crate::redact::url(url), if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("the connection to the backend is closed")]
    Closed,
    #[error("{what} did not finish within {secs} s")]
    Timeout { what: String, secs: u64 },
}

/// One variant per wire, with the same methods.
pub enum Transport {
    Stdio(StdioTransport),
    Sse(SseTransport),
    Http(HttpTransport),
}

// === impl Transport ===

impl Transport {
    /// Put one message on the wire. Returns once the message is handed over (written to the
    /// pipe, or accepted by the HTTP server); replies arrive on the inbound channel.
    pub async fn send(&self, msg: Value) -> Result<(), TransportError> {
        match self {
            Self::Stdio(t) => t.send(msg).await,
            Self::Sse(t) => t.send(msg).await,
            Self::Http(t) => t.send(msg).await,
        }
    }

    /// End the conversation: kill the process group, end the HTTP session.
    pub async fn close(&self) {
        match self {
            Self::Stdio(t) => t.close().await,
            Self::Sse(t) => t.close().await,
            Self::Http(t) => t.close().await,
        }
    }
}
