//! One backend entry (`mcpServers.NAME`) → `BackendSpec`.
//!
//! The entry's keys are read first, each checked on its own; the transport rules (which
//! keys each transport needs and which it cannot use) are applied afterwards to what was
//! present, so that a key with a bad value is not also reported as missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::fields::{self, Report, index_path, key_path};
use super::{envfile, units};
use crate::spec::{
    BackendSpec, HttpSpec, InheritEnv, NEVER_INHERITED, ProcessSpec, Sessions, ToolFilter,
    TransportSpec,
};

/// Keys of a backend entry.
pub(super) const KEYS: &[&str] = &[
    "type",
    "transport",
    "command",
    "args",
    "env",
    "cwd",
    "envFile",
    "inheritEnv",
    "url",
    "headers",
    "prefix",
    "tools",
    "timeout",
    "disabled",
    "sessions",
    "autoApprove",
    "alwaysAllow",
    "description",
];

/// Keys that some clients write and that mean nothing to a gateway, with the reason.
const IGNORED: &[(&str, &str)] = &[
    (
        "autoApprove",
        "ignored: the gateway does not ask for approval of tool calls",
    ),
    (
        "alwaysAllow",
        "ignored: the gateway does not ask for approval of tool calls",
    ),
    ("description", "ignored"),
];

/// Keys that configure the process of a stdio backend (or the launcher of an sse one).
/// `command` comes first: an sse backend without it may use none of the others.
const PROCESS_KEYS: &[&str] = &["command", "args", "env", "cwd", "envFile", "inheritEnv"];

/// Keys that configure an HTTP connection.
const HTTP_KEYS: &[&str] = &["url", "headers"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Stdio,
    Sse,
    StreamableHttp,
}

/// What the keys of one entry said, each already checked on its own.
#[derive(Default)]
struct Fields {
    /// The transport named by `type`/`transport`.
    kind: Option<Kind>,
    command: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    env_file: Option<PathBuf>,
    inherit_env: InheritEnv,
    url: Option<String>,
    headers: BTreeMap<String, String>,
    prefix: Option<String>,
    tools: ToolFilter,
    timeout: Option<Duration>,
    disabled: bool,
    sessions: Sessions,
    /// Keys present, whether or not their values were good.
    present: BTreeSet<&'static str>,
}

// === impl Kind ===

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Sse => "sse",
            Self::StreamableHttp => "streamable-http",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "stdio" => Some(Self::Stdio),
            "sse" => Some(Self::Sse),
            "streamable-http" | "http" | "streamableHttp" | "streamable_http" => {
                Some(Self::StreamableHttp)
            }
            _ => None,
        }
    }
}

// === impl Fields ===

impl Fields {
    fn has(&self, key: &str) -> bool {
        self.present.contains(key)
    }
}

/// Reads the backend `name` under `parent` (`"mcpServers"`, or `""` for the older format).
/// `None` when it has problems, which are in `report`.
pub(super) fn backend(
    report: &mut Report,
    parent: &str,
    name: &str,
    value: &Value,
    base_dir: Option<&Path>,
) -> Option<BackendSpec> {
    let path = key_path(parent, name);
    let before = report.count();
    if name.is_empty() {
        report.problem(&path, "backend names must not be empty");
    }
    let entries = match value {
        Value::Object(map) => map,
        other => {
            fields::expected(report, &path, "an object describing the backend", other);
            return None;
        }
    };
    let mut fields = Fields::default();
    for (key, value) in entries {
        read_key(report, &path, key, value, base_dir, &mut fields);
    }
    let transport = transport(report, &path, &fields)?;
    let Fields {
        prefix,
        tools,
        timeout,
        disabled,
        sessions,
        ..
    } = fields;
    (report.count() == before).then(|| BackendSpec {
        name: name.to_owned(),
        transport,
        prefix: prefix.unwrap_or_else(|| default_prefix(name)),
        tools,
        timeout,
        disabled,
        sessions,
    })
}

/// `name` with every char outside `[A-Za-z0-9_-]` replaced by `_`.
pub(super) fn default_prefix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read_key(
    report: &mut Report,
    parent: &str,
    key: &str,
    value: &Value,
    base_dir: Option<&Path>,
    fields: &mut Fields,
) {
    let path = key_path(parent, key);
    let path = path.as_str();
    if let Some(known) = KEYS.iter().find(|k| **k == key) {
        fields.present.insert(known);
    }
    match key {
        "type" | "transport" => read_kind(report, path, key, value, fields),
        "command" => fields.command = fields::non_empty(report, path, value),
        "args" => fields.args = fields::string_list(report, path, value, true).unwrap_or_default(),
        "env" => fields.env = read_env(report, path, value),
        "cwd" => fields.cwd = fields::non_empty(report, path, value).map(|p| resolve(base_dir, &p)),
        "envFile" => {
            fields.env_file = fields::non_empty(report, path, value).map(|p| resolve(base_dir, &p));
        }
        "inheritEnv" => fields.inherit_env = read_inherit_env(report, path, value),
        "url" => fields.url = read_url(report, path, value),
        "headers" => fields.headers = read_headers(report, path, value),
        "prefix" => fields.prefix = read_prefix(report, path, value),
        "tools" => fields.tools = read_tools(report, path, value),
        "timeout" => match units::duration(value) {
            Ok(timeout) => fields.timeout = Some(timeout),
            Err(message) => report.problem(path, message),
        },
        "disabled" => fields.disabled = fields::boolean(report, path, value).unwrap_or(false),
        "sessions" => fields.sessions = read_sessions(report, path, value),
        _ => match IGNORED.iter().find(|(ignored, _)| *ignored == key) {
            Some((_, why)) => report.warn(path, why),
            None => fields::unknown_key(report, path, key, KEYS),
        },
    }
}

fn read_kind(report: &mut Report, path: &str, key: &str, value: &Value, fields: &mut Fields) {
    let Some(text) = fields::string(report, path, value) else {
        return;
    };
    let Some(kind) = Kind::parse(&text) else {
        let known = ["stdio", "sse", "streamable-http", "http"];
        let hint = fields::suggest(&text, &known)
            .map(|meant| format!("; did you mean \"{meant}\"?"))
            .unwrap_or_default();
        report.problem(
            path,
            format!(
                "unknown transport \"{text}\"; expected \"stdio\", \"sse\" or \
                 \"streamable-http\" (also written \"http\"){hint}"
            ),
        );
        return;
    };
    match fields.kind {
        Some(other) if other != kind => {
            let other_key = if key == "type" { "transport" } else { "type" };
            report.problem(
                path,
                format!(
                    "says {} but `{other_key}` says {}; give one of them",
                    kind.name(),
                    other.name()
                ),
            );
            // Unknown now: the transport rules would only add noise.
            fields.kind = None;
        }
        _ => fields.kind = Some(kind),
    }
}

/// `shared` (the default) or `per-client`.
fn read_sessions(report: &mut Report, path: &str, value: &Value) -> Sessions {
    let Some(text) = fields::string(report, path, value) else {
        return Sessions::Shared;
    };
    match text.as_str() {
        "shared" => Sessions::Shared,
        "per-client" => Sessions::PerClient,
        _ => {
            let known = ["shared", "per-client"];
            let hint = fields::suggest(&text, &known)
                .map(|meant| format!("; did you mean \"{meant}\"?"))
                .unwrap_or_default();
            report.problem(
                path,
                format!("unknown sharing \"{text}\"; expected \"shared\" or \"per-client\"{hint}"),
            );
            Sessions::Shared
        }
    }
}

/// Relative paths are taken from the config file's directory.
fn resolve(base_dir: Option<&Path>, path: &str) -> PathBuf {
    match base_dir {
        Some(base) if Path::new(path).is_relative() => base.join(path),
        _ => PathBuf::from(path),
    }
}

fn read_env(report: &mut Report, path: &str, value: &Value) -> Vec<(String, String)> {
    let entries = fields::string_map(report, path, value).unwrap_or_default();
    for (name, value) in &entries {
        let entry_path = key_path(path, name);
        if name.is_empty() || name.contains(['=', '\0']) {
            report.problem(&entry_path, "invalid environment variable name");
        } else if value.contains('\0') {
            report.problem(&entry_path, "the value contains a NUL character");
        }
    }
    entries
}

/// `true`, `false`, or a list of names of the gateway's environment variables, each a name or a
/// prefix ending in `*`.
fn read_inherit_env(report: &mut Report, path: &str, value: &Value) -> InheritEnv {
    let names = match value {
        Value::Bool(true) => return InheritEnv::All,
        Value::Bool(false) => return InheritEnv::Minimal,
        // What `${VAR}` expansion produces.
        Value::String(text) if text == "true" => return InheritEnv::All,
        Value::String(text) if text == "false" => return InheritEnv::Minimal,
        Value::Array(items) => items,
        other => {
            let what = "true, false or a list of variable names";
            fields::expected(report, path, what, other);
            return InheritEnv::Minimal;
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for (index, item) in names.iter().enumerate() {
        let item_path = index_path(path, index);
        let Some(name) = fields::string(report, &item_path, item) else {
            continue;
        };
        let stem = name.strip_suffix('*').unwrap_or(&name);
        if stem.is_empty() || stem.contains(['=', '\0', '*']) {
            report.problem(
                &item_path,
                "expected a variable name, or a prefix ending in `*` (`AWS_*`)",
            );
        } else if stem.starts_with(NEVER_INHERITED) {
            let message = format!("{NEVER_INHERITED}* variables are never passed to a backend");
            report.problem(&item_path, message);
        } else {
            out.push(name);
        }
    }
    match out.is_empty() {
        true => InheritEnv::Minimal,
        false => InheritEnv::Names(out),
    }
}

fn read_url(report: &mut Report, path: &str, value: &Value) -> Option<String> {
    let text = fields::non_empty(report, path, value)?;
    match url::Url::parse(&text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(text),
        Ok(url) => {
            report.problem(
                path,
                format!(
                    "expected an http or https URL, found scheme \"{}\"",
                    url.scheme()
                ),
            );
            None
        }
        Err(error) => {
            report.problem(path, format!("not a valid URL ({error})"));
            None
        }
    }
}

fn read_headers(report: &mut Report, path: &str, value: &Value) -> BTreeMap<String, String> {
    let entries = fields::string_map(report, path, value).unwrap_or_default();
    for (name, value) in &entries {
        let entry_path = key_path(path, name);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            report.problem(&entry_path, "invalid HTTP header name");
        } else if value.chars().any(|c| c.is_control() && c != '\t') {
            report.problem(&entry_path, "the value contains a control character");
        }
    }
    entries.into_iter().collect()
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn read_prefix(report: &mut Report, path: &str, value: &Value) -> Option<String> {
    let prefix = fields::string(report, path, value)?;
    if !fields::is_name_safe(&prefix) {
        report.problem(
            path,
            "may only contain A-Z, a-z, 0-9, `_` and `-` (public tool names must match \
             ^[A-Za-z0-9_-]{1,64}$)",
        );
        return None;
    }
    Some(prefix)
}

fn read_tools(report: &mut Report, path: &str, value: &Value) -> ToolFilter {
    let mut filter = ToolFilter::default();
    let what = "an object with `include` and `exclude` lists";
    for (key, value) in fields::entries(report, path, value, what).unwrap_or_default() {
        let path = key_path(path, key);
        let slot = match key {
            "include" => &mut filter.include,
            "exclude" => &mut filter.exclude,
            _ => {
                fields::unknown_key(report, &path, key, &["include", "exclude"]);
                continue;
            }
        };
        let globs = fields::string_list(report, &path, value, false).unwrap_or_default();
        for (index, glob) in globs.iter().enumerate() {
            if let Err(error) = globset::Glob::new(glob) {
                let message = format!("invalid glob: {}", error.kind());
                report.problem(&index_path(&path, index), message);
            }
        }
        *slot = globs;
    }
    filter
}

/// Applies the transport rules and builds the transport.
fn transport(report: &mut Report, path: &str, fields: &Fields) -> Option<TransportSpec> {
    let explicit = fields.has("type") || fields.has("transport");
    let kind = match fields.kind {
        Some(kind) => kind,
        None if explicit => return None, // the bad value is already reported
        None if fields.has("command") => Kind::Stdio,
        None if fields.has("url") => Kind::StreamableHttp,
        None => {
            report.problem(
                path,
                "needs `command` (stdio) or `url` (sse, streamable-http)",
            );
            return None;
        }
    };
    let before = report.count();
    match kind {
        Kind::Stdio => {
            require(report, path, fields, kind, "command");
            let why = if explicit {
                "not used by the stdio transport"
            } else {
                "cannot be combined with `command`; write `type: sse` to start `command` \
                 and then connect to `url`"
            };
            forbid(report, path, fields, HTTP_KEYS, why);
        }
        Kind::StreamableHttp => {
            require(report, path, fields, kind, "url");
            let why = "not used by the streamable-http transport";
            forbid(report, path, fields, PROCESS_KEYS, why);
        }
        Kind::Sse => {
            require(report, path, fields, kind, "url");
            if !fields.has("command") {
                let why = "only used with `command`, which an sse backend may start \
                           before connecting";
                forbid(report, path, fields, &PROCESS_KEYS[1..], why);
            }
        }
    }
    if report.count() != before {
        return None;
    }
    match kind {
        Kind::Stdio => process(report, path, fields).map(TransportSpec::Stdio),
        Kind::StreamableHttp => http(fields).map(TransportSpec::StreamableHttp),
        Kind::Sse => {
            let http = http(fields)?;
            let launch = match fields.has("command") {
                true => Some(process(report, path, fields)?),
                false => None,
            };
            Some(TransportSpec::Sse { http, launch })
        }
    }
}

fn require(report: &mut Report, path: &str, fields: &Fields, kind: Kind, key: &str) {
    if !fields.has(key) {
        let message = format!("missing `{key}`, required by the {} transport", kind.name());
        report.problem(path, message);
    }
}

fn forbid(report: &mut Report, path: &str, fields: &Fields, keys: &[&str], why: &str) {
    for key in keys.iter().filter(|key| fields.has(key)) {
        report.problem(&key_path(path, key), why);
    }
}

/// The process to start; `envFile` entries come first and `env` overrides them.
fn process(report: &mut Report, path: &str, fields: &Fields) -> Option<ProcessSpec> {
    let mut env = BTreeMap::new();
    if let Some(file) = &fields.env_file {
        env.extend(envfile::load(report, &key_path(path, "envFile"), file)?);
    }
    env.extend(fields.env.iter().cloned());
    Some(ProcessSpec {
        command: fields.command.clone()?,
        args: fields.args.clone(),
        env,
        inherit_env: fields.inherit_env.clone(),
        cwd: fields.cwd.clone(),
    })
}

fn http(fields: &Fields) -> Option<HttpSpec> {
    Some(HttpSpec {
        url: fields.url.clone()?,
        headers: fields.headers.clone(),
    })
}
