//! Runs one shell command under the limits a `run` call asks for.
//!
//! The command runs as `SHELL -c COMMAND` in a process group of its own, with
//! stdin closed. stdout and stderr are read concurrently (so a chatty child
//! never blocks on a full pipe) into buffers capped at a byte limit; output
//! past the cap is read and dropped. On timeout or cancellation the whole
//! process group is killed, not just the shell, and so are processes the
//! command leaves running in its group when it exits.

use std::{
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{io::AsyncReadExt, process::Command};

/// How long to keep reading the pipes once the command has ended or been
/// killed. Only a process that left the group while holding a pipe open can
/// make this run out.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Read size for each pipe.
const CHUNK: usize = 8 * 1024;

/// What to run, and within which limits.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub shell: PathBuf,
    pub command: String,
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// Cap, in bytes, on each of stdout and stderr.
    pub max_output_bytes: usize,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code, or `None` when the shell was ended by a signal.
    pub exit_code: Option<i32>,
    /// The signal that ended the shell, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Whether stdout or stderr went past the cap.
    pub truncated: bool,
    pub duration: Duration,
}

impl RunOutcome {
    /// A run is a failure when it timed out or did not exit with status 0.
    pub fn is_error(&self) -> bool {
        self.timed_out || self.exit_code != Some(0)
    }
}

/// A byte buffer that keeps at most `cap` bytes and remembers whether more came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CappedBuffer {
    data: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl CappedBuffer {
    pub fn new(cap: usize) -> Self {
        Self {
            data: Vec::new(),
            cap,
            truncated: false,
        }
    }

    /// Appends what still fits of `chunk`; notes the loss of the rest.
    pub fn push(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.data.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The text, decoded lossily as UTF-8. When the cap cut a multi-byte
    /// character in two, the partial character is dropped rather than shown
    /// as a replacement character.
    pub fn into_text(self) -> String {
        let mut data = self.data;
        if self.truncated
            && let Err(error) = std::str::from_utf8(&data)
            && error.error_len().is_none()
        {
            data.truncate(error.valid_up_to());
        }
        match String::from_utf8(data) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        }
    }
}

/// Sends SIGKILL to a process group, and again on drop unless disarmed, so a
/// run whose future is dropped (e.g. at shutdown) leaves nothing behind.
struct GroupKiller {
    pgid: Option<Pid>,
}

impl GroupKiller {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH just means the group is already gone.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    fn kill_and_disarm(&mut self) {
        self.kill();
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `spec`, killing the command's process group if `cancelled` resolves first.
pub async fn run(
    spec: &RunSpec,
    cancelled: impl Future<Output = ()>,
) -> std::io::Result<RunOutcome> {
    let started = Instant::now();
    let mut child = Command::new(&spec.shell)
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    // With process_group(0) the group id is the child's pid.
    let mut group = GroupKiller {
        pgid: child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw),
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out = CappedBuffer::new(spec.max_output_bytes);
    let mut err = CappedBuffer::new(spec.max_output_bytes);
    let mut out_chunk = vec![0u8; CHUNK];
    let mut err_chunk = vec![0u8; CHUNK];

    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    let mut was_cancelled = false;
    // Either the command's deadline or, once it has ended, the drain deadline.
    let mut ending = false;
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    tokio::pin!(cancelled);

    while status.is_none() || stdout.is_some() || stderr.is_some() {
        tokio::select! {
            read = read_some(stdout.as_mut(), &mut out_chunk), if stdout.is_some() => match read {
                Ok(0) | Err(_) => stdout = None,
                Ok(n) => out.push(&out_chunk[..n]),
            },
            read = read_some(stderr.as_mut(), &mut err_chunk), if stderr.is_some() => match read {
                Ok(0) | Err(_) => stderr = None,
                Ok(n) => err.push(&err_chunk[..n]),
            },
            exited = child.wait(), if status.is_none() => {
                status = Some(exited?);
                // Reap stragglers still in the group. The group id cannot have
                // been reused: a group with live members keeps it, and a pid
                // freed just now is not handed out again until the pid space
                // wraps around.
                group.kill_and_disarm();
                if !ending {
                    ending = true;
                    deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
            },
            () = &mut deadline => {
                if ending {
                    tracing::warn!("output pipes still open after the command ended; giving up on them");
                    break;
                }
                timed_out = true;
                ending = true;
                group.kill();
                deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            },
            () = &mut cancelled, if !was_cancelled => {
                was_cancelled = true;
                group.kill();
                if !ending {
                    ending = true;
                    deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
            },
        }
    }
    if status.is_none() {
        // The group was killed, so this returns at once.
        group.kill();
        status = child.wait().await.ok();
        group.kill_and_disarm();
    }

    let (exit_code, signal) = match status {
        Some(status) => (status.code(), exit_signal(status)),
        None => (None, None),
    };
    let truncated = out.truncated() || err.truncated();
    Ok(RunOutcome {
        exit_code,
        signal,
        stdout: out.into_text(),
        stderr: err.into_text(),
        timed_out,
        cancelled: was_cancelled,
        truncated,
        duration: started.elapsed(),
    })
}

async fn read_some<R: AsyncReadExt + Unpin>(
    reader: Option<&mut R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match reader {
        Some(reader) => reader.read(buf).await,
        None => Ok(0),
    }
}

fn exit_signal(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_buffer_keeps_the_head_and_flags_the_rest() {
        let mut buffer = CappedBuffer::new(5);
        buffer.push(b"abc");
        assert!(!buffer.truncated());
        buffer.push(b"def");
        assert!(buffer.truncated());
        buffer.push(b"ghi");
        assert_eq!(buffer.into_text(), "abcde");
    }

    #[test]
    fn capped_buffer_at_exact_cap_is_not_truncated() {
        let mut buffer = CappedBuffer::new(3);
        buffer.push(b"abc");
        buffer.push(b"");
        assert!(!buffer.truncated());
        assert_eq!(buffer.into_text(), "abc");
    }

    #[test]
    fn zero_cap_keeps_nothing() {
        let mut buffer = CappedBuffer::new(0);
        buffer.push(b"x");
        assert!(buffer.truncated());
        assert_eq!(buffer.into_text(), "");
    }

    #[test]
    fn a_character_split_by_the_cap_is_dropped() {
        // "é" is two bytes; a cap of 2 cuts it after its first byte.
        let mut buffer = CappedBuffer::new(2);
        buffer.push("aé".as_bytes());
        assert!(buffer.truncated());
        assert_eq!(buffer.into_text(), "a");
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let mut buffer = CappedBuffer::new(16);
        buffer.push(b"a\xffb");
        assert_eq!(buffer.into_text(), "a\u{fffd}b");
    }
}
