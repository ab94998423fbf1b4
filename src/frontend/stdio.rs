//! The gateway as a stdio MCP server (for clients that launch their servers, like Claude
//! Desktop): one session, newline-delimited JSON-RPC on stdin/stdout, logs on stderr.
//! The session ends, and the gateway with it, when stdin closes.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::jsonrpc;
use crate::relay::Gateway;
use crate::session::{Frontend, Session};

/// Serve one client over `input`/`output` until `input` ends or the gateway shuts down.
pub async fn serve(
    gw: Arc<Gateway>,
    input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin + Send + 'static,
) {
    let (session, mut rx) = Session::new(Frontend::Stdio);
    gw.open(session.clone());
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut line = msg.to_string().into_bytes();
            line.push(b'\n');
            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(input).lines();
    loop {
        let line = tokio::select! {
            _ = gw.shutdown.cancelled() => break,
            l = lines.next_line() => l,
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) | Err(_) => break,
        };
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                session.push(jsonrpc::parse_error(e));
                continue;
            }
        };
        let messages = match msg {
            Value::Array(batch) => batch,
            one => vec![one],
        };
        for msg in messages {
            dispatch(&gw, &session, msg).await;
        }
    }
    gw.close(&session).await;
    drop(session);
    // The writer ends once every sink is gone; requests still unwinding get a moment.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}

/// Requests run concurrently (a slow tool must not block a ping); notifications and
/// responses are handled in order, at once.
async fn dispatch(gw: &Arc<Gateway>, session: &Arc<Session>, msg: Value) {
    let sink = session.outbound().clone();
    if jsonrpc::classify(&msg) == Ok(jsonrpc::Kind::Request) {
        let gw = gw.clone();
        let session = session.clone();
        tokio::spawn(async move {
            if let Some(resp) = gw.handle(&session, msg, &sink).await {
                let _ = sink.send(resp).await;
            }
        });
    } else if let Some(resp) = gw.handle(session, msg, &sink).await {
        let _ = sink.send(resp).await;
    }
}
