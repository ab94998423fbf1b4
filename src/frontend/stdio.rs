//! The gateway as a stdio MCP server (for clients that launch their servers, like Claude
//! Desktop): one session, newline-delimited JSON-RPC on stdin/stdout, logs on stderr.
//! The session ends, and the gateway with it, when stdin closes.
//!
//! A bad line never ends the session: invalid UTF-8 or JSON gets a parse error, an empty
//! batch or a line over `gateway.maxBodyBytes` an invalid-request error, and the next line
//! is read as usual.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::jsonrpc;
use crate::relay::Gateway;
use crate::session::{Frontend, Session};

/// Serve one client over `input`/`output` until `input` ends or the gateway shuts down.
pub async fn serve(
    gw: Arc<Gateway>,
    input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin + Send + 'static,
) {
    let (session, mut rx) = gw.new_session(Frontend::Stdio);
    if let Err(refusal) = gw.open(session.clone()) {
        let mut line = refusal.to_error().to_string().into_bytes();
        line.push(b'\n');
        let _ = output.write_all(&line).await;
        let _ = output.flush().await;
        return;
    }
    let told = Arc::downgrade(&session);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let Some(s) = told.upgrade() {
                s.delivered(&msg);
            }
            let mut line = Vec::new();
            msg.write_to(&mut line);
            line.push(b'\n');
            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    let limit = gw.settings.max_body_bytes;
    let mut input = BufReader::new(input);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let line = tokio::select! {
            _ = gw.shutdown.cancelled() => break,
            l = read_line(&mut input, &mut buf, limit) => l,
        };
        match line {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => session.push(jsonrpc::error(
                Value::Null,
                jsonrpc::INVALID_REQUEST,
                format!("invalid request: a message over {limit} bytes (gateway.maxBodyBytes)"),
                None,
            )),
            Ok(Line::Complete) => {
                if buf.trim_ascii().is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Value>(&buf) {
                    Ok(Value::Array(batch)) => {
                        if let Err(refusal) = super::check_batch(&gw, &session, &batch) {
                            session.push(refusal);
                            continue;
                        }
                        for msg in batch {
                            dispatch(&gw, &session, msg).await;
                        }
                    }
                    Ok(msg) => dispatch(&gw, &session, msg).await,
                    // Includes invalid UTF-8: serde_json checks it.
                    Err(e) => session.push(jsonrpc::parse_error(e)),
                }
            }
        }
    }
    gw.close(&session).await;
    drop(session);
    // The writer ends once every sink is gone; requests still unwinding get a moment.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}

enum Line {
    Complete,
    /// Longer than the limit: skipped up to its newline.
    TooLong,
    Eof,
}

/// Read one line (without its newline) into `buf`, keeping at most `limit` bytes of it.
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    let mut too_long = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
        let (chunk, ends) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long && buf.len() + chunk.len() > limit {
            too_long = true;
            buf.clear();
        }
        if !too_long {
            buf.extend_from_slice(chunk);
        }
        let used = ends.unwrap_or(available.len());
        input.consume(used);
        if ends.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_whole_bounded_and_raw() {
        let input: &[u8] = b"{\"a\":1}\n\xff\xfe\n0123456789abcdef\nlast";
        let mut input = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        loop {
            buf.clear();
            match read_line(&mut input, &mut buf, 10).await.unwrap() {
                Line::Eof => break,
                Line::TooLong => seen.push("too long".to_owned()),
                Line::Complete => seen.push(String::from_utf8_lossy(&buf).into_owned()),
            }
        }
        assert_eq!(seen, ["{\"a\":1}", "\u{fffd}\u{fffd}", "too long", "last"]);
    }
}
