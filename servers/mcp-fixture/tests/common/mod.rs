//! A raw newline-delimited JSON-RPC client for the stdio integration tests of
//! the built-in servers (mcp-shell includes this file too).
//!
//! It deliberately uses no MCP library: the tests check the bytes a real
//! client would see. Every wait has a deadline so a broken server fails the
//! test instead of hanging it; deadlines are never used to order events.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::Duration,
};

use serde_json::{Value, json};

/// Longest wait for any one message.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct StdioClient {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    next_id: u64,
}

impl StdioClient {
    /// Starts `program` with `args`, stdin and stdout piped, stderr inherited.
    pub fn spawn(program: &str, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {program}: {error}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, incoming) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let message = serde_json::from_str(&line).unwrap_or_else(
                    |error| json!({ "unparseable": line, "error": error.to_string() }),
                );
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            incoming,
            next_id: 1,
        }
    }

    pub fn send(&mut self, message: &Value) {
        writeln!(self.stdin, "{message}").expect("write to the server");
        self.stdin.flush().expect("flush to the server");
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and returns its id.
    pub fn request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        id
    }

    /// The next message from the server.
    pub fn recv(&mut self) -> Value {
        match self.incoming.recv_timeout(WAIT) {
            Ok(message) => {
                assert!(
                    message.get("unparseable").is_none(),
                    "server wrote a line that is not JSON: {message}"
                );
                message
            }
            Err(RecvTimeoutError::Timeout) => panic!("no message from the server within {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed its stdout"),
        }
    }

    /// Reads until the response to request `id`; returns it and, in order,
    /// the messages that came before it.
    pub fn until_response(&mut self, id: u64) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let message = self.recv();
            let is_response = message.get("method").is_none() && message["id"] == json!(id);
            if is_response {
                return (message, before);
            }
            before.push(message);
        }
    }

    /// Sends a request and returns its `result`, failing on an error response.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        let (response, _) = self.until_response(id);
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// Runs the initialize handshake (protocol 2025-06-18) and returns the
    /// server's initialize result.
    pub fn initialize(&mut self, capabilities: Value) -> Value {
        let result = self.call(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": capabilities,
                "clientInfo": { "name": "raw-test-client", "version": "0.0.0" },
            }),
        );
        self.notify("notifications/initialized", json!({}));
        result
    }

    /// Calls a tool and returns the `CallToolResult`.
    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        self.call(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
    }
}

impl Drop for StdioClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the first content block of a tool result.
pub fn text_of(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result}"))
}
