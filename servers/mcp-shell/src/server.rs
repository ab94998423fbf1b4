//! The MCP face of `mcp-shell`: one tool, `run`, that executes a shell command
//! (see [`crate::exec`]) and reports its exit code and output both as text
//! for people and as structured content for programs.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rmcp::{
    RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig},
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::exec::{RunOutcome, RunSpec, run};

/// Limits and defaults fixed on the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub shell: PathBuf,
    /// Working directory of commands; relative `cwd` arguments resolve against it.
    pub cwd: PathBuf,
    pub default_timeout: Duration,
    /// Upper bound on `max_output_bytes`, and its default.
    pub max_output_bytes: usize,
}

#[derive(Clone)]
pub struct ShellServer {
    settings: Arc<Settings>,
    tool_router: Arc<ToolRouter<ShellServer>>,
}

impl ShellServer {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings: Arc::new(settings),
            tool_router: Arc::new(Self::tool_router()),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunArgs {
    /// The command line, passed to the shell with `-c`.
    pub command: String,
    /// Working directory; relative paths resolve against the server's directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Seconds before the command's process group is killed (at least 1).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Bytes kept of each of stdout and stderr; capped by the server's limit.
    #[serde(default)]
    pub max_output_bytes: Option<u64>,
}

const RUN_DESCRIPTION: &str = "Runs an arbitrary shell command on the server's machine, with the \
     server's permissions, as `SHELL -c COMMAND` in its own process group with stdin closed. \
     Returns the exit code, stdout and stderr (each capped at max_output_bytes), whether it timed \
     out and how long it took. On timeout or cancellation the whole process group is killed, as \
     are processes the command leaves running in its group when it exits.";

/// Resolves a call's working directory against the server's.
pub fn resolve_cwd(base: &Path, requested: Option<&str>) -> PathBuf {
    match requested {
        Some(dir) => base.join(dir),
        None => base.to_path_buf(),
    }
}

/// The text content of a run's result.
pub fn summarize(outcome: &RunOutcome, timeout: Duration, cap: usize) -> String {
    let mut text = match (outcome.exit_code, outcome.signal) {
        _ if outcome.timed_out => format!(
            "timed out after {} s; process group killed",
            timeout.as_secs()
        ),
        _ if outcome.cancelled => "cancelled; process group killed".to_owned(),
        (Some(code), _) => format!("exit code: {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "exit status unknown".to_owned(),
    };
    text.push_str(&format!(" ({} ms)\n", outcome.duration.as_millis()));
    for (name, output) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
        text.push_str(&format!("--- {name} ---\n"));
        text.push_str(output);
        if !output.is_empty() && !output.ends_with('\n') {
            text.push('\n');
        }
    }
    if outcome.truncated {
        text.push_str(&format!("[output truncated to {cap} bytes per stream]\n"));
    }
    text
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

#[tool_router(vis = "pub(crate)")]
impl ShellServer {
    #[tool(description = RUN_DESCRIPTION)]
    async fn run(
        &self,
        Parameters(args): Parameters<RunArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let settings = &self.settings;
        let timeout = match args.timeout_secs {
            Some(0) => return tool_error("timeout_secs must be at least 1"),
            Some(secs) => Duration::from_secs(secs),
            None => settings.default_timeout,
        };
        let cap = args
            .max_output_bytes
            .map_or(settings.max_output_bytes, |bytes| {
                usize::try_from(bytes).unwrap_or(usize::MAX)
            })
            .min(settings.max_output_bytes);
        let cwd = resolve_cwd(&settings.cwd, args.cwd.as_deref());
        if !cwd.is_dir() {
            return tool_error(format!(
                "working directory {} does not exist",
                cwd.display()
            ));
        }
        let spec = RunSpec {
            shell: settings.shell.clone(),
            command: args.command,
            cwd,
            timeout,
            max_output_bytes: cap,
        };
        let outcome = match run(&spec, context.ct.cancelled()).await {
            Ok(outcome) => outcome,
            Err(error) => {
                return tool_error(format!("cannot start {}: {error}", spec.shell.display()));
            }
        };
        let text = summarize(&outcome, timeout, cap);
        let structured = json!({
            "exitCode": outcome.exit_code,
            "stdout": outcome.stdout,
            "stderr": outcome.stderr,
            "timedOut": outcome.timed_out,
            "truncated": outcome.truncated,
            "durationMs": u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
        });
        let mut result = if outcome.is_error() {
            CallToolResult::error(vec![ContentBlock::text(text)])
        } else {
            CallToolResult::success(vec![ContentBlock::text(text)])
        };
        result.structured_content = Some(structured);
        result
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ShellServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-shell", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Runs shell commands on this machine with the `run` tool. Commands are \
                 arbitrary and run with this server's permissions.",
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> RunOutcome {
        RunOutcome {
            exit_code: Some(3),
            signal: None,
            stdout: "hi\n".into(),
            stderr: "err".into(),
            timed_out: false,
            cancelled: false,
            truncated: false,
            duration: Duration::from_millis(12),
        }
    }

    #[test]
    fn summary_lists_exit_code_and_both_streams() {
        let text = summarize(&outcome(), Duration::from_secs(30), 100);
        assert_eq!(
            text,
            "exit code: 3 (12 ms)\n--- stdout ---\nhi\n--- stderr ---\nerr\n"
        );
    }

    #[test]
    fn summary_reports_timeout_and_truncation() {
        let mut outcome = outcome();
        outcome.timed_out = true;
        outcome.exit_code = None;
        outcome.signal = Some(9);
        outcome.truncated = true;
        let text = summarize(&outcome, Duration::from_secs(2), 100);
        assert!(text.starts_with("timed out after 2 s"), "{text}");
        assert!(
            text.ends_with("[output truncated to 100 bytes per stream]\n"),
            "{text}"
        );
    }

    #[test]
    fn relative_cwd_resolves_against_the_server_directory() {
        let base = Path::new("/srv/work");
        assert_eq!(resolve_cwd(base, None), PathBuf::from("/srv/work"));
        assert_eq!(
            resolve_cwd(base, Some("sub")),
            PathBuf::from("/srv/work/sub")
        );
        assert_eq!(resolve_cwd(base, Some("/tmp")), PathBuf::from("/tmp"));
    }
}
