//! What a newcomer gets: `cargo install --path .` installs the `mcp-gateway` executable alone,
//! and `mcp-gateway serve` without a config must still come up with its default backend; the
//! examples the README points at must load and name only folders that exist on any machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::Running;
use mcp_gateway::config;
use mcp_gateway::spec::TransportSpec;
use serde_json::{Value, json};

/// Generous: CI machines are small, but a hang must still fail rather than block forever.
const WAIT: Duration = Duration::from_secs(30);
const GATEWAY: &str = env!("CARGO_BIN_EXE_mcp-gateway");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The gateway executable alone in a folder of its own, as `cargo install` leaves it: no
/// `mcp-fixture` beside it. A hard link where it can be (nothing is written, so the file is
/// never busy for exec), a copy otherwise.
fn lone_gateway(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("create bin/");
    let exe = bin.join("mcp-gateway");
    if std::fs::hard_link(GATEWAY, &exe).is_err() {
        std::fs::copy(GATEWAY, &exe).expect("copy the gateway executable");
    }
    let siblings: Vec<_> = std::fs::read_dir(&bin)
        .expect("read bin/")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(siblings, ["mcp-gateway"], "only the gateway is installed");
    exe
}

/// `serve` with no config, from an empty folder, with no PATH: nothing can be found but the
/// executable itself.
fn serve_alone(exe: &Path, home: &Path) -> Running {
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--port", "0", "--host", "127.0.0.1"])
        .env_clear()
        .env("HOME", home)
        .current_dir(home);
    Running::spawn(cmd)
}

/// POST one JSON-RPC message to /mcp; the messages of the answer (JSON or an SSE stream) and
/// the session id it carries.
async fn post(
    client: &reqwest::Client,
    base: &str,
    session: Option<&str>,
    msg: Value,
) -> (Vec<Value>, Option<String>) {
    let mut req = client
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(msg.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.expect("POST /mcp");
    assert!(resp.status().is_success(), "POST /mcp: {}", resp.status());
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = resp.text().await.expect("body");
    let messages = if body.is_empty() {
        Vec::new()
    } else if sse {
        body.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).expect("event json"))
            .collect()
    } else {
        vec![serde_json::from_str(&body).expect("json")]
    };
    (messages, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_gateway_alone_serves_its_embedded_default() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let exe = lone_gateway(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("create home");
    let mut gw = serve_alone(&exe, &home);

    // /readyz lists each backend's state: the fixture must become ready, not restart forever.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = client
            .get(format!("{}/readyz", gw.base))
            .send()
            .await
            .expect("GET /readyz");
        let body: Value =
            serde_json::from_str(&resp.text().await.expect("readyz body")).expect("readyz json");
        let backends = body["backends"].as_array().cloned().unwrap_or_default();
        if backends.iter().any(|b| b["state"] == "ready") {
            assert_eq!(backends.len(), 1, "{body}");
            assert_eq!(backends[0]["name"], "fixture", "{body}");
            break;
        }
        assert!(
            backends.iter().all(|b| b["state"] == "starting"),
            "the default backend failed: {body}\n{}",
            gw.stderr()
        );
        gw.still_running(deadline, "the default backend not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A client sees the fixture's tools through /mcp.
    let (init, session) = post(
        &client,
        &gw.base,
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"newcomer","version":"0"}}}),
    )
    .await;
    assert!(init[0]["result"]["serverInfo"].is_object(), "{init:?}");
    let session = session.expect("initialize returns a session id");
    post(
        &client,
        &gw.base,
        Some(&session),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    let (listed, _) = post(
        &client,
        &gw.base,
        Some(&session),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}),
    )
    .await;
    let names: Vec<&str> = listed[0]["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in ["fixture__echo", "fixture__add", "fixture__slow"] {
        assert!(names.contains(&tool), "{tool} not listed: {names:?}");
    }
    let log = gw.stderr();
    assert!(
        !log.contains("restart"),
        "the default backend restarted:\n{log}"
    );
}

#[test]
fn fixture_subcommand_takes_the_fixture_arguments() {
    let out = Command::new(GATEWAY)
        .args(["fixture", "--help"])
        .output()
        .expect("run mcp-gateway fixture --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for flag in ["--name", "--transport", "--page-size"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// Every example config the README mentions loads, as `mcp-gateway check` reads it.
#[test]
fn example_configs_pass_check() {
    for name in ["claude-desktop.json", "gateway.yaml", "shell.yaml"] {
        let path = Path::new(ROOT).join("examples").join(name);
        let out = Command::new(GATEWAY)
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run mcp-gateway check");
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Claude Desktop example starts on a fresh machine: the folder its filesystem server is
/// given exists whatever the user's home holds (with no variable set but HOME, pointing at an
/// empty folder).
#[test]
fn claude_desktop_example_names_a_folder_that_exists() {
    let path = Path::new(ROOT).join("examples").join("claude-desktop.json");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let home = tempfile::tempdir().expect("tempdir");
    let home_str = home.path().to_str().expect("utf-8 temp path").to_owned();
    let cfg = config::parse(
        &text,
        "examples/claude-desktop.json",
        config::Format::Json,
        path.parent(),
        &|k| (k == "HOME").then(|| home_str.clone()),
    )
    .expect("the example parses");
    let fs = cfg
        .backends
        .iter()
        .find(|b| b.name == "filesystem")
        .expect("a filesystem backend");
    let TransportSpec::Stdio(process) = &fs.transport else {
        panic!("filesystem is a stdio backend");
    };
    let root = process.args.last().expect("the folder argument");
    let cwd = process.cwd.clone().unwrap_or_else(|| PathBuf::from(ROOT));
    let folder = cwd.join(root);
    assert!(
        folder.is_dir(),
        "examples/claude-desktop.json: filesystem serves {}, which does not exist",
        folder.display()
    );
}
