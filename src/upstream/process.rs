//! Child processes of the gateway: stdio backends and the servers that `sse` backends launch.
//!
//! Each child runs in its own process group so that everything it starts (`npx` → `node`,
//! `uvx` → `python`) is signalled together; its stderr is read line by line into the log,
//! tagged with the backend name; and the group is killed when the backend is stopped, removed,
//! or the gateway shuts down. Dropping a [`Process`] kills its group too, so no path leaves an
//! orphan behind.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::transport::TransportError;
use crate::spec::ProcessSpec;

/// How many of the last stderr lines are kept to explain a failure.
const STDERR_TAIL: usize = 8;
/// Longest output line logged and kept, in characters.
const LINE_CHARS: usize = 1000;
/// How long a child may take to exit after SIGTERM before its group gets SIGKILL, in ms: 2 s
/// while the gateway runs; at shutdown, what is left of `shutdownGrace` ([`set_kill_grace`]).
static KILL_GRACE_MS: AtomicU64 = AtomicU64::new(2000);

/// From now on, children get `grace` to exit after SIGTERM.
pub fn set_kill_grace(grace: Duration) {
    let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    KILL_GRACE_MS.store(ms, Ordering::Relaxed);
}

fn kill_grace() -> Duration {
    Duration::from_millis(KILL_GRACE_MS.load(Ordering::Relaxed))
}

pub struct Process {
    child: Child,
    pgid: Option<Pid>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// The tasks logging the child's output: a finished child's last lines are in the tail
    /// once they end.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// After the child exited, how long its last output may take to be read (a grandchild that
/// keeps the pipe open must not hold up the report).
const OUTPUT_SETTLE: Duration = Duration::from_millis(500);

/// Resolve a bare command name that names one of the built-in servers installed next to the
/// gateway's own executable (`mcp-fixture`, `mcp-shell`), so configs need no absolute paths.
pub fn resolve_command(command: &str) -> PathBuf {
    if !command.contains('/')
        && let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let sibling = dir.join(command);
        if sibling.is_file() {
            return sibling;
        }
    }
    PathBuf::from(command)
}

/// Start `spec` in a new process group. With `piped`, stdin and stdout are pipes for the
/// protocol; otherwise stdin is closed and stdout is logged like stderr.
pub fn spawn(
    backend: &str,
    spec: &ProcessSpec,
    piped: bool,
) -> Result<(Process, Option<ChildStdin>, Option<ChildStdout>), TransportError> {
    let program = resolve_command(&spec.command);
    let mut cmd = Command::new(&program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(super::env::child_env(std::env::vars_os(), spec))
        .process_group(0)
        .kill_on_drop(true)
        .stderr(Stdio::piped());
    if piped {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|source| TransportError::Spawn {
        command: describe(&program, spec.cwd.as_deref()),
        source,
    })?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
    let mut readers = Vec::with_capacity(2);
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(log_lines(
            backend.to_owned(),
            stderr,
            tail.clone(),
        )));
    }
    let (stdin, stdout) = if piped {
        (child.stdin.take(), child.stdout.take())
    } else {
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(log_lines(
                backend.to_owned(),
                stdout,
                tail.clone(),
            )));
        }
        (None, None)
    };
    tracing::debug!(backend, command = %program.display(), pid = ?pgid, "started process");
    let process = Process {
        child,
        pgid,
        tail,
        readers,
    };
    Ok((process, stdin, stdout))
}

fn describe(program: &Path, cwd: Option<&Path>) -> String {
    match cwd {
        Some(cwd) => format!("{}` in `{}", program.display(), cwd.display()),
        None => program.display().to_string(),
    }
}

async fn log_lines(
    backend: String,
    stream: impl tokio::io::AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        // Output may echo a configured secret (`connecting with token=…`).
        let line = crate::redact::cut(&crate::redact::text(&line), LINE_CHARS);
        tracing::info!(target: "mcp_gateway::backend", backend = %backend, "{line}");
        let mut t = crate::sync::lock(&tail);
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}

// === impl Process ===

impl Process {
    /// Wait for the child to exit on its own; says how it ended, with its last stderr lines.
    pub async fn wait(&mut self) -> String {
        let status = match self.child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status ({e})"),
        };
        let settled = tokio::time::Instant::now() + OUTPUT_SETTLE;
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout_at(settled, reader).await;
        }
        let tail = self.stderr_tail();
        if tail.is_empty() {
            format!("process exited ({status})")
        } else {
            format!("process exited ({status}); last output: {tail}")
        }
    }

    /// If the child has exited, how it ended.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("process exited ({status}): {}", self.stderr_tail())),
            _ => None,
        }
    }

    /// The last lines the child wrote to stderr, joined for an error message.
    pub fn stderr_tail(&self) -> String {
        let t = crate::sync::lock(&self.tail);
        t.iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    /// SIGTERM the group, SIGKILL it after a grace period, and reap the child.
    pub async fn kill(&mut self) {
        self.signal(Signal::SIGTERM);
        if tokio::time::timeout(kill_grace(), self.child.wait())
            .await
            .is_err()
        {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        // Children that outlived the leader still belong to the group.
        self.signal(Signal::SIGKILL);
        self.pgid = None;
    }

    fn signal(&self, sig: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (group already gone) is the expected outcome after exit.
            let _ = killpg(pgid, sig);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}
