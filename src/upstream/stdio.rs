//! The stdio transport: newline-delimited JSON-RPC over a child process's stdin and stdout.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::Mutex;

use super::process::{self, Process};
use super::transport::{Inbound, InboundTx, TransportError};
use crate::spec::ProcessSpec;

pub struct StdioTransport {
    stdin: Mutex<Option<ChildStdin>>,
    process: Arc<Mutex<Option<Process>>>,
}

// === impl StdioTransport ===

impl StdioTransport {
    /// Start the process and its reader; fails at once if the command cannot be started.
    pub fn start(
        backend: &str,
        spec: &ProcessSpec,
        inbound: InboundTx,
    ) -> Result<Self, TransportError> {
        let (process, stdin, stdout) = process::spawn(backend, spec, true)?;
        let process = Arc::new(Mutex::new(Some(process)));
        if let Some(stdout) = stdout {
            tokio::spawn(read_loop(
                backend.to_owned(),
                stdout,
                inbound,
                process.clone(),
            ));
        }
        Ok(Self {
            stdin: Mutex::new(stdin),
            process,
        })
    }

    pub async fn send(&self, msg: Value) -> Result<(), TransportError> {
        let mut line =
            serde_json::to_vec(&msg).map_err(|e| TransportError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        let pipe = stdin.as_mut().ok_or(TransportError::Closed)?;
        let written = async {
            pipe.write_all(&line).await?;
            pipe.flush().await
        }
        .await;
        if written.is_err() {
            *stdin = None;
            return Err(TransportError::Closed);
        }
        Ok(())
    }

    pub async fn close(&self) {
        // Closing stdin is the polite request to exit; the group is killed regardless.
        self.stdin.lock().await.take();
        if let Some(mut p) = self.process.lock().await.take() {
            p.kill().await;
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
                        truncate(line, 200)
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
