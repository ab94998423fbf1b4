//! The stdio transport: newline-delimited JSON-RPC over a child process's stdin and stdout.
//!
//! Lines go to stdin through a queue and one writer task, so no sender ever waits on the pipe
//! while holding anything another sender needs. A backend that stops reading fills the pipe;
//! once a write has waited `gateway.writeTimeout`, the session is ended (the backend is then
//! restarted) rather than letting every caller, cancellations included, wait forever.

use std::sync::Arc;

use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{Mutex, mpsc};

use super::process::{self, Process};
use super::transport::{Inbound, InboundTx, TransportError};
use crate::spec::ProcessSpec;

/// Lines waiting for the writer; a sender beyond it waits (at most the write timeout).
const QUEUE: usize = 256;

pub struct StdioTransport {
    lines: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    process: Arc<Mutex<Option<Process>>>,
    write_timeout: Duration,
}

// === impl StdioTransport ===

impl StdioTransport {
    /// Start the process and its reader; fails at once if the command cannot be started.
    pub fn start(
        backend: &str,
        spec: &ProcessSpec,
        inbound: InboundTx,
        write_timeout: Duration,
    ) -> Result<Self, TransportError> {
        let (process, stdin, stdout) = process::spawn(backend, spec, true)?;
        let process = Arc::new(Mutex::new(Some(process)));
        let (lines, queued) = mpsc::channel(QUEUE);
        if let Some(stdin) = stdin {
            tokio::spawn(write_loop(stdin, queued, inbound.clone(), write_timeout));
        }
        if let Some(stdout) = stdout {
            tokio::spawn(read_loop(
                backend.to_owned(),
                stdout,
                inbound,
                process.clone(),
            ));
        }
        Ok(Self {
            lines: Mutex::new(Some(lines)),
            process,
            write_timeout,
        })
    }

    pub async fn send(&self, msg: Value) -> Result<(), TransportError> {
        let mut line =
            serde_json::to_vec(&msg).map_err(|e| TransportError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let lines = self
            .lines
            .lock()
            .await
            .clone()
            .ok_or(TransportError::Closed)?;
        match tokio::time::timeout(self.write_timeout, lines.send(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::Timeout {
                what: "writing to the backend's stdin".to_owned(),
                secs: self.write_timeout.as_secs(),
            }),
        }
    }

    pub async fn close(&self) {
        // Closing stdin is the polite request to exit; the group is killed regardless.
        self.lines.lock().await.take();
        if let Some(mut p) = self.process.lock().await.take() {
            p.kill().await;
        }
    }
}

/// Write queued lines to the child's stdin in order. A write that cannot finish within
/// `timeout` ends the session: the backend stopped reading.
async fn write_loop(
    mut stdin: ChildStdin,
    mut queued: mpsc::Receiver<Vec<u8>>,
    inbound: InboundTx,
    timeout: Duration,
) {
    while let Some(line) = queued.recv().await {
        let write = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {}
            // The pipe broke: the child is gone, and the reader reports how it ended.
            Ok(Err(_)) => return,
            Err(_) => {
                let reason = format!(
                    "the backend stopped reading its stdin (a write waited {} s, \
                     gateway.writeTimeout)",
                    timeout.as_secs_f64()
                );
                let _ = inbound.send(Inbound::Closed(reason)).await;
                return;
            }
        }
    }
}

async fn read_loop(
    backend: String,
    stdout: ChildStdout,
    inbound: InboundTx,
    process: Arc<Mutex<Option<Process>>>,
) {
    let mut lines = BufReader::new(stdout).lines();
    let reason = loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(Value::Array(batch)) => {
                        for msg in batch {
                            if inbound
                                .send(Inbound::Message { msg, related: None })
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    Ok(msg) => {
                        if inbound
                            .send(Inbound::Message { msg, related: None })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    // Servers that print banners on stdout are common; keep going.
                    Err(_) => tracing::warn!(
                        target: "mcp_gateway::backend",
                        backend = %backend,
                        "ignoring non-JSON line on stdout: {}",
                        crate::redact::text(truncate(line, 200))
                    ),
                }
            }
            Ok(None) => break None,
            Err(e) => break Some(format!("reading stdout failed: {e}")),
        }
    };
    // Bounded: a child that closed stdout but lingers must not block `close`.
    let exit = match process.lock().await.as_mut() {
        Some(p) => tokio::time::timeout(std::time::Duration::from_secs(2), p.wait())
            .await
            .unwrap_or_else(|_| "stdout closed".to_owned()),
        None => "process stopped".to_owned(),
    };
    let reason = match reason {
        Some(r) => format!("{r}; {exit}"),
        None => exit,
    };
    let _ = inbound.send(Inbound::Closed(reason)).await;
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
