//! Test harness: a gateway built from the library, the built-in fixture server as backend,
//! and a raw JSON-RPC client over the stdio frontend (in-memory pipes) or HTTP.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mcp_gateway::relay::Gateway;
use mcp_gateway::spec::{BackendSpec, GatewaySettings, ProcessSpec, ToolFilter, TransportSpec};
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf,
};

/// Generous: CI machines are small, but a hang must still fail rather than block forever.
pub const WAIT: Duration = Duration::from_secs(30);

/// A built binary of the workspace (cargo builds them before running tests).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

pub fn settings() -> GatewaySettings {
    GatewaySettings {
        request_timeout: Duration::from_secs(20),
        startup_timeout: Duration::from_secs(20),
        ..GatewaySettings::default()
    }
}

pub fn stdio_spec(name: &str, command: PathBuf, args: &[&str]) -> BackendSpec {
    BackendSpec {
        name: name.into(),
        transport: TransportSpec::Stdio(ProcessSpec {
            command: command.to_string_lossy().into_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        prefix: name.into(),
        tools: ToolFilter::default(),
        timeout: None,
        disabled: false,
        sessions: Default::default(),
    }
}

pub fn fixture(name: &str) -> BackendSpec {
    stdio_spec(name, workspace_bin("mcp-fixture"), &["--name", name])
}

/// A gateway serving `specs`, once every backend has started or failed.
pub async fn gateway(specs: Vec<BackendSpec>) -> Arc<Gateway> {
    let gw = Gateway::new(settings());
    gw.reconcile(specs).await;
    tokio::time::timeout(WAIT, gw.settled())
        .await
        .expect("backends settle");
    gw
}

/// The gateway's own HTTP listener (limits and all) on a free loopback port; its base URL.
pub async fn listen(gw: &Arc<Gateway>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let guard = mcp_gateway::frontend::HostGuard::new(addr.ip(), &[]);
    let app = mcp_gateway::frontend::router(gw.clone(), guard);
    tokio::spawn(mcp_gateway::frontend::listener::serve(
        gw.clone(),
        listener,
        app,
    ));
    format!("http://{addr}")
}

/// A real `mcp-gateway serve` process on a free loopback port, its stderr collected.
pub struct Running {
    child: std::process::Child,
    stderr: Arc<std::sync::Mutex<String>>,
    /// The HTTP base URL it logged.
    pub base: String,
}

impl Running {
    /// Start the gateway with extra `args` and `env`; returns once it logs its URL.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"));
        cmd.arg("serve")
            .args(["--port", "0", "--host", "127.0.0.1"])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("MCP_GATEWAY_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Running::spawn(cmd)
    }

    /// Run `cmd` (a gateway's `serve` on port 0) with its stderr collected; returns once it
    /// logs its URL.
    pub fn spawn(mut cmd: std::process::Command) -> Running {
        use std::io::BufRead;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start mcp-gateway");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut me = Running {
            child,
            stderr,
            base: String::new(),
        };
        let line = me.wait_for(|l| l.contains("listening on http://"));
        let at = line.find("http://").expect("url");
        let url: String = line[at..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        me.base = url;
        me
    }

    /// Panics with the log when the gateway has exited, or when `deadline` has passed.
    pub fn still_running(&mut self, deadline: std::time::Instant, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the gateway exited ({status}):\n{}", self.stderr());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {WAIT:?}:\n{}",
            self.stderr()
        );
    }

    /// The first stderr line matching `pred`, polled until [`WAIT`] runs out.
    pub fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(l) = self.stderr().lines().find(|l| pred(l)) {
                return l.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the gateway exited ({status}):\n{}", self.stderr());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such line within {WAIT:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// SIGTERM, then wait (with a deadline) for a clean exit.
    pub fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exit {status}:\n{}", self.stderr());
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw JSON-RPC client on the gateway's stdio frontend.
pub struct Client {
    out: WriteHalf<DuplexStream>,
    lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
    next_id: i64,
    /// Messages that arrived while waiting for something else.
    pub seen: Vec<Value>,
}

impl Client {
    pub async fn connect(gw: &Arc<Gateway>) -> Client {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (their_in, their_out) = tokio::io::split(theirs);
        tokio::spawn(mcp_gateway::frontend::stdio::serve(
            gw.clone(),
            their_in,
            their_out,
        ));
        let (r, w) = tokio::io::split(ours);
        Client {
            out: w,
            lines: BufReader::new(r).lines(),
            next_id: 1,
            seen: Vec::new(),
        }
    }

    /// Connect and complete the handshake, declaring sampling and elicitation support.
    pub async fn initialized(gw: &Arc<Gateway>) -> Client {
        let mut c = Client::connect(gw).await;
        let init = c
            .request("initialize", json!({"protocolVersion": "2025-06-18",
                "capabilities": {"sampling": {}, "elicitation": {}}, "clientInfo": {"name": "t", "version": "0"}}))
            .await;
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
        c.notify("notifications/initialized", json!({})).await;
        c
    }

    pub async fn send_raw(&mut self, line: &str) {
        self.out.write_all(line.as_bytes()).await.expect("write");
        self.out.write_all(b"\n").await.expect("write");
    }

    pub async fn out_raw(&mut self, bytes: &[u8]) {
        self.out.write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_raw(&msg.to_string()).await;
    }

    pub async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("a message within the deadline")
            .expect("read")
            .expect("the gateway closed its output");
        serde_json::from_str(&line).expect("the gateway writes JSON")
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await;
    }

    /// Send a request without waiting; returns its id.
    pub async fn start(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        id
    }

    /// Wait for the response to `id`, keeping everything else in `seen`.
    pub async fn response(&mut self, id: i64) -> Value {
        let is_it = |m: &Value| m.get("id") == Some(&json!(id)) && m.get("method").is_none();
        if let Some(i) = self.seen.iter().position(is_it) {
            return self.seen.remove(i);
        }
        loop {
            let msg = self.recv().await;
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                return msg;
            }
            self.seen.push(msg);
        }
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.start(method, params).await;
        self.response(id).await
    }

    /// Wait until a message matching `pred` arrives (or is already in `seen`).
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        loop {
            let msg = self.recv().await;
            if pred(&msg) {
                return msg;
            }
            self.seen.push(msg);
        }
    }

    pub async fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
            .await
    }
}

pub fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn text_of(resp: &Value) -> String {
    resp["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
