//! What a reload of the config file says: what it changed, each warning once, and a failure
//! once for as long as the file stays as it was (a signal is always answered).

mod common;

use std::path::Path;
use std::time::Instant;

use common::{Running, WAIT, workspace_bin};
use serde_json::{Value, json};

/// `a` and `b` share a prefix (a warning), with `extra` more backends; `b` gets `b_env`.
fn write_config(path: &Path, b_env: Value, extra: &[&str]) {
    let fixture = workspace_bin("mcp-fixture").display().to_string();
    let backend = |name: &str| json!({"command": fixture, "args": ["--name", name]});
    let mut servers = json!({
        "a": {"command": fixture, "args": ["--name", "a"], "prefix": "fx"},
        "b": {"command": fixture, "args": ["--name", "b"], "prefix": "fx", "env": b_env},
    });
    for name in extra {
        servers[*name] = backend(name);
    }
    std::fs::write(path, json!({"mcpServers": servers}).to_string()).expect("write config");
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// Wait until the gateway has counted `n` reloads of the file that were refused.
async fn refused_reloads(base: &str, n: u64) {
    let wanted = format!("mcp_gateway_config_reloads_total{{result=\"invalid\"}} {n}");
    let deadline = Instant::now() + WAIT;
    loop {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        if text.lines().any(|l| l == wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "no `{wanted}` in:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_says_what_changed_and_each_thing_once() {
    const SHARED: &str = "share the prefix \"fx\"";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.json");
    write_config(&path, json!({}), &["c"]);
    let mut gw = Running::start(&["--config", path.to_str().expect("utf-8")], &[]);
    gw.wait_for(|l| l.contains("backends started in"));
    assert_eq!(count(&gw.stderr(), SHARED), 1);

    // b changed, c removed, d added; the warning still stands and is not repeated.
    write_config(&path, json!({"X": "1"}), &["d"]);
    let line = gw.wait_for(|l| l.contains("config reloaded:"));
    assert!(
        line.contains("config reloaded: 1 backend added (d), 1 changed (b), 1 removed (c)"),
        "{line}"
    );
    assert_eq!(count(&gw.stderr(), SHARED), 1, "{}", gw.stderr());

    // The same file written again.
    write_config(&path, json!({"X": "1"}), &["d"]);
    gw.wait_for(|l| l.contains("config reloaded: no change"));
    assert_eq!(count(&gw.stderr(), SHARED), 1);

    // The file goes: said once. Another change in its folder (a ConfigMap's `..data`) finds
    // it still missing, and says nothing new; a SIGHUP, a person asking, is answered.
    std::fs::remove_file(&path).expect("remove");
    gw.wait_for(|l| l.contains("config not reloaded"));
    refused_reloads(&gw.base, 1).await;
    std::fs::write(dir.path().join("..data"), "").expect("touch ..data");
    refused_reloads(&gw.base, 2).await;
    let pid = nix::unistd::Pid::from_raw(pid_of(&path) as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    refused_reloads(&gw.base, 3).await;
    // Back, with one more backend: every line before this one has been read.
    write_config(&path, json!({"X": "1"}), &["d", "e"]);
    gw.wait_for(|l| l.contains("config reloaded: 1 backend added (e)"));
    let log = gw.stderr();
    assert_eq!(count(&log, "config not reloaded"), 2, "{log}");
    assert_eq!(count(&log, "cannot read the config file"), 2, "{log}");
    assert_eq!(count(&log, SHARED), 1, "{log}");
    gw.terminate();
}

/// The gateway serving `config` (found by its command line).
fn pid_of(config: &Path) -> u32 {
    let config = config.to_str().expect("utf-8");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = args.split(|b| *b == 0).collect();
            args.contains(&b"serve".as_slice()) && args.contains(&config.as_bytes())
        })
        .expect("the gateway's process")
}
