//! End-to-end test of `mcp-fixture --transport http`: the listening line on
//! stderr, then raw HTTP/1.1 POSTs to `/mcp` (streamable HTTP with sessions).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::mpsc::channel,
    thread,
    time::Duration,
};

use serde_json::{Value, json};

const FIXTURE: &str = env!("CARGO_BIN_EXE_mcp-fixture");
const WAIT: Duration = Duration::from_secs(20);
const LISTENING: &str = "mcp-fixture listening on http://";

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the fixture in http mode on an ephemeral port; returns it and the
/// `host:port` it printed.
fn start() -> (Server, String) {
    let mut child = Command::new(FIXTURE)
        .args(["--transport", "http", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mcp-fixture");
    let stderr = child.stderr.take().expect("piped stderr");
    let server = Server(child);
    let (sender, lines) = channel();
    thread::spawn(move || {
        // Keep draining stderr so the server never blocks on it.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let first = lines
        .recv_timeout(WAIT)
        .expect("the server printed its listening line");
    let url = first
        .strip_prefix(LISTENING)
        .unwrap_or_else(|| panic!("unexpected first stderr line: {first:?}"));
    let authority = url
        .strip_suffix("/mcp")
        .unwrap_or_else(|| panic!("listening URL does not end in /mcp: {first:?}"));
    assert!(authority.starts_with("127.0.0.1:"), "{first:?}");
    (server, authority.to_owned())
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The JSON-RPC messages in an SSE body (empty `data:` priming events skipped).
    fn sse_messages(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(str::trim)
            .filter(|data| !data.is_empty())
            .map(|data| serde_json::from_str(data).expect("SSE data is JSON"))
            .collect()
    }
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|pair| pair == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&raw[..line_end]).expect("ASCII chunk size");
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// POSTs one JSON-RPC message to `/mcp` on `authority`, sending `host` as the
/// Host header, and reads the whole response (the connection is closed after it).
fn post(authority: &str, host: &str, session: Option<&str>, message: &Value) -> Response {
    let body = message.to_string();
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    if let Some(session) = session {
        request.push_str(&format!(
            "Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-06-18\r\n"
        ));
    }
    request.push_str("\r\n");
    request.push_str(&body);

    let mut stream = TcpStream::connect(authority).expect("connect to the fixture");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("read the whole response");

    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut head_lines = head.split("\r\n");
    let status_line = head_lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = head_lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: String::new(),
    };
    let raw_body = &raw[split + 4..];
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    response.body = String::from_utf8(body).expect("UTF-8 body");
    response
}

fn initialize_message() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "raw-http-test", "version": "0.0.0" },
        },
    })
}

#[test]
fn streamable_http_serves_initialize_and_tool_calls() {
    let (_server, authority) = start();

    let init = post(&authority, &authority, None, &initialize_message());
    assert_eq!(init.status, 200, "{}", init.body);
    assert!(
        init.header("content-type")
            .is_some_and(|value| value.starts_with("text/event-stream")),
        "{:?}",
        init.headers
    );
    let session = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_owned();
    let messages = init.sse_messages();
    assert_eq!(messages.len(), 1, "{}", init.body);
    assert_eq!(messages[0]["id"], 1);
    assert_eq!(messages[0]["result"]["serverInfo"]["name"], "mcp-fixture");
    assert_eq!(messages[0]["result"]["protocolVersion"], "2025-06-18");

    let initialized = post(
        &authority,
        &authority,
        Some(&session),
        &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
    );
    assert_eq!(initialized.status, 202, "{}", initialized.body);

    let call = post(
        &authority,
        &authority,
        Some(&session),
        &json!({
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": { "name": "echo", "arguments": { "message": "over http" } },
        }),
    );
    assert_eq!(call.status, 200, "{}", call.body);
    let messages = call.sse_messages();
    assert_eq!(messages.len(), 1, "{}", call.body);
    assert_eq!(messages[0]["id"], 2);
    assert_eq!(
        messages[0]["result"]["structuredContent"]["message"],
        "over http"
    );
}

#[test]
fn loopback_host_names_are_accepted_and_others_refused() {
    let (_server, authority) = start();
    let port = authority.rsplit_once(':').expect("host:port").1;

    let localhost = post(
        &authority,
        &format!("localhost:{port}"),
        None,
        &initialize_message(),
    );
    assert_eq!(localhost.status, 200, "{}", localhost.body);
    assert_eq!(localhost.sse_messages()[0]["id"], 1);

    let foreign = post(
        &authority,
        &format!("evil.example:{port}"),
        None,
        &initialize_message(),
    );
    assert_eq!(foreign.status, 403, "{}", foreign.body);
}
