//! End-to-end tests of `mcp-shell` over stdio with raw JSON-RPC.

// The raw JSON-RPC client is shared with the fixture's tests.
#[path = "../../mcp-fixture/tests/common/mod.rs"]
mod common;

use std::{
    fs,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::Command,
    sync::mpsc::channel,
    thread,
    time::{Duration, Instant},
};

use common::{StdioClient, WAIT, text_of};
use serde_json::json;

const SHELL: &str = env!("CARGO_BIN_EXE_mcp-shell");

fn started(args: &[&str]) -> StdioClient {
    let mut client = StdioClient::spawn(SHELL, args);
    client.initialize(json!({}));
    client
}

/// A fresh, empty directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-shell-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir.canonicalize().expect("canonical scratch dir")
}

#[test]
fn lists_the_run_tool() {
    let mut client = started(&[]);
    let tools = client.call("tools/list", json!({}));
    let tools = tools["tools"].as_array().expect("tools array");
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["name"], "run");
    let description = tools[0]["description"].as_str().expect("description");
    assert!(
        description.contains("arbitrary shell command"),
        "{description}"
    );
    let properties = &tools[0]["inputSchema"]["properties"];
    for argument in ["command", "cwd", "timeout_secs", "max_output_bytes"] {
        assert!(properties[argument].is_object(), "{argument} missing");
    }
    assert_eq!(tools[0]["inputSchema"]["required"], json!(["command"]));
}

#[test]
fn run_reports_exit_code_and_both_streams() {
    let mut client = started(&[]);
    let result = client.call_tool("run", json!({ "command": "echo hi; echo err >&2; exit 3" }));
    let structured = &result["structuredContent"];
    assert_eq!(structured["exitCode"], 3);
    assert_eq!(structured["stdout"], "hi\n");
    assert_eq!(structured["stderr"], "err\n");
    assert_eq!(structured["timedOut"], false);
    assert_eq!(structured["truncated"], false);
    assert!(structured["durationMs"].is_u64());
    assert_eq!(result["isError"], true);
    let text = text_of(&result);
    assert!(text.starts_with("exit code: 3"), "{text}");
    assert!(text.contains("hi\n") && text.contains("err\n"), "{text}");

    let ok = client.call_tool("run", json!({ "command": "printf ok" }));
    assert_eq!(ok["isError"], false);
    assert_eq!(ok["structuredContent"]["exitCode"], 0);
    assert_eq!(ok["structuredContent"]["stdout"], "ok");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let mut client = started(&[]);
    let started = Instant::now();
    // The background sleep keeps stdout open: if only the shell were killed,
    // the server would wait out its 2 s drain grace as well.
    let result = client.call_tool(
        "run",
        json!({ "command": "sleep 10 & sleep 10", "timeout_secs": 1 }),
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
    let structured = &result["structuredContent"];
    assert_eq!(structured["timedOut"], true);
    assert_eq!(structured["exitCode"], serde_json::Value::Null);
    assert_eq!(result["isError"], true);
    assert!(text_of(&result).starts_with("timed out after 1 s"));
}

#[test]
fn leftover_background_processes_do_not_hold_the_call() {
    let mut client = started(&[]);
    let result = client.call_tool("run", json!({ "command": "sleep 30 & echo started" }));
    let structured = &result["structuredContent"];
    assert_eq!(structured["exitCode"], 0);
    assert_eq!(structured["stdout"], "started\n");
    // Shorter than the drain grace, so the sleep was killed, not waited out.
    assert!(
        structured["durationMs"].as_u64().expect("durationMs") < 1500,
        "{structured}"
    );
}

#[test]
fn output_is_capped_by_the_call_and_by_the_server() {
    let mut client = started(&["--max-output", "64"]);
    // 100 kB is more than a pipe buffer: the server must keep reading past the cap.
    let command = "head -c 100000 /dev/zero | tr '\\0' a; echo done >&2";
    let small = client.call_tool("run", json!({ "command": command, "max_output_bytes": 10 }));
    assert_eq!(small["structuredContent"]["stdout"], "a".repeat(10));
    assert_eq!(small["structuredContent"]["stderr"], "done\n");
    assert_eq!(small["structuredContent"]["truncated"], true);
    assert_eq!(small["structuredContent"]["exitCode"], 0);
    assert_eq!(small["isError"], false);

    let large = client.call_tool(
        "run",
        json!({ "command": command, "max_output_bytes": 100000 }),
    );
    assert_eq!(large["structuredContent"]["stdout"], "a".repeat(64));
    assert_eq!(large["structuredContent"]["truncated"], true);
}

#[test]
fn working_directory_comes_from_the_server_or_the_call() {
    let dir = scratch_dir("cwd");
    fs::create_dir(dir.join("sub")).expect("create sub");
    let dir_arg = dir.to_str().expect("UTF-8 path");
    let mut client = started(&["--cwd", dir_arg]);

    let here = client.call_tool("run", json!({ "command": "pwd -P" }));
    assert_eq!(here["structuredContent"]["stdout"], format!("{dir_arg}\n"));
    let sub = client.call_tool("run", json!({ "command": "pwd -P", "cwd": "sub" }));
    assert_eq!(
        sub["structuredContent"]["stdout"],
        format!("{dir_arg}/sub\n")
    );
    let missing = client.call_tool("run", json!({ "command": "pwd", "cwd": "nope" }));
    assert_eq!(missing["isError"], true);
    assert!(text_of(&missing).contains("does not exist"), "{missing}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn cancellation_kills_the_command() {
    let dir = scratch_dir("cancel");
    let fifo = dir.join("ready");
    let status = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");

    // The command holds the FIFO open (the shell and the sleep both inherit
    // fd 3) and writes one line once it runs. The reader sees end-of-file
    // only when every process holding it has died.
    let (lines, received) = channel();
    let reader_path = fifo.clone();
    thread::spawn(move || {
        let file = fs::File::open(reader_path).expect("open the FIFO for reading");
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            let _ = lines.send(Some(line));
        }
        let _ = lines.send(None);
    });

    let mut client = started(&[]);
    let command = format!("exec 3>'{}'; echo running >&3; sleep 30", fifo.display());
    let call = client.request(
        "tools/call",
        json!({ "name": "run", "arguments": { "command": command } }),
    );
    let first = received.recv_timeout(WAIT).expect("the command started");
    assert_eq!(first.as_deref(), Some("running"));

    client.notify("notifications/cancelled", json!({ "requestId": call }));
    // A 30 s sleep would hold the FIFO well past this wait.
    let end = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the command's processes died after cancellation");
    assert_eq!(end, None);

    // The server is still serving, and did not answer the cancelled call.
    let ping = client.request("ping", json!({}));
    let (_, before) = client.until_response(ping);
    assert!(
        before.iter().all(|message| message["id"] != json!(call)),
        "the cancelled call answered: {before:?}"
    );
    let _ = fs::remove_dir_all(&dir);
}
