//! `serve --kubernetes` without a cluster to serve: it says why once, and exits before it
//! listens, rather than listening with nothing to serve.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous: the gateway gives up on an API server after 15 s; these fail at once.
const WAIT: Duration = Duration::from_secs(30);

/// `serve --kubernetes` with `kubeconfig` as KUBECONFIG and `home` as HOME, outside a pod;
/// its output once it exits.
fn serve_kubernetes(kubeconfig: &Path, home: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .args([
            "serve",
            "--kubernetes",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("RUST_LOG")
        .env_remove("MCP_GATEWAY_LOG")
        .env_remove("MCP_GATEWAY_KUBERNETES")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mcp-gateway");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_a_kubeconfig_it_says_so_once_and_does_not_listen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-kubeconfig");
    let out = serve_kubernetes(&missing, dir.path());
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains("listening"), "{text}");
    assert_eq!(text.lines().count(), 1, "one line:\n{text}");
    assert!(
        text.starts_with("mcp-gateway: --kubernetes: no cluster to connect to. Set KUBECONFIG"),
        "{text}"
    );
    // The file it tried, and why, once.
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("no-such-kubeconfig").count(), 1, "{text}");
}

#[test]
fn an_unreachable_api_server_is_named_once_and_nothing_listens() {
    const TOKEN: &str = "kube-t0ken-5e1f";
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: c, cluster: {{server: \"https://127.0.0.1:1\"}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n\
             users: [{{name: u, user: {{token: {TOKEN}}}}}]\n"
        ),
    )
    .expect("kubeconfig");
    let out = serve_kubernetes(&kubeconfig, dir.path());
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains("listening"), "{text}");
    assert_eq!(text.lines().count(), 1, "one line:\n{text}");
    assert!(
        text.starts_with(
            "mcp-gateway: --kubernetes: cannot reach the Kubernetes API at https://127.0.0.1:1/: "
        ),
        "{text}"
    );
    assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}
