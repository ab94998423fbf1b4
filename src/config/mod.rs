//! The config file: JSON or YAML text → gateway settings and backends.
//!
//! The file is the `mcpServers` document that Claude Desktop, Cursor and Cline use (VS Code's
//! `servers` is accepted too, as is an older shape with backends at the top level), plus a
//! `gateway` section. Loading is parse → `${VAR}` expansion → a hand-written validation walk
//! that collects every problem with its path, so that one run shows everything to fix.

mod backend;
mod envfile;
mod expand;
mod fields;
mod gateway;
mod syntax;
mod units;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::spec::{BackendSpec, GatewaySettings};
use fields::{Report, key_path};
pub use units::parse_size;

/// A loaded, valid config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub gateway: GatewaySettings,
    /// Sorted by name; disabled backends included.
    pub backends: Vec<BackendSpec>,
    /// Things that do not stop loading but deserve a log line (`path: message`).
    pub warnings: Vec<String>,
}

/// The syntax of a config text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// JSON when the first non-space character is `{`, else YAML.
    #[default]
    Auto,
    Json,
    Yaml,
}

/// Everything wrong with one config text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other source) the text came from.
    pub source: String,
    /// In document order; never empty.
    pub problems: Vec<Problem>,
}

/// One thing wrong, at one place in the document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_problem(.path, .message))]
pub struct Problem {
    /// Where: `mcpServers.github.args[1]`, `line 3 column 7` for a syntax error, or `""` for
    /// the file as a whole.
    pub path: String,
    pub message: String,
}

fn display_problem(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

// === impl ConfigError ===

// Written out rather than derived: `thiserror` takes a field named `source` as the error's
// cause, and here it is the name of a file.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {problem}", self.source)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// === impl Format ===

impl Format {
    /// `.json` → JSON; `.yaml`/`.yml` → YAML; anything else is decided by the content.
    fn from_path(path: &Path) -> Self {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if extension.eq_ignore_ascii_case("json") {
            Self::Json
        } else if extension.eq_ignore_ascii_case("yaml") || extension.eq_ignore_ascii_case("yml") {
            Self::Yaml
        } else {
            Self::Auto
        }
    }
}

/// Read and validate a file. Format from extension (.json → Json; .yaml/.yml → Yaml; else
/// Auto = by content: first non-space char '{' → JSON else YAML). `${VAR}` from the process
/// environment. Relative `cwd` and `envFile` paths resolve against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        source: source.clone(),
        problems: vec![Problem {
            path: String::new(),
            message: format!("cannot read the config file: {error}"),
        }],
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let env = |name: &str| std::env::var(name).ok();
    parse(
        &text,
        &source,
        Format::from_path(path),
        absolute.parent(),
        &env,
    )
}

/// Same, from text; `source` names the file in errors; `base_dir` resolves relative paths;
/// `env` looks up variables.
pub fn parse(
    text: &str,
    source: &str,
    format: Format,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError {
        source: source.to_owned(),
        problems,
    };
    let mut value = syntax::parse_value(text, format).map_err(|problem| fail(vec![problem]))?;
    let mut report = Report::default();
    expand::expand_tree(&mut value, "", env, &mut report);
    let (gateway, backends) = document(&mut report, &value, base_dir);
    if !report.problems.is_empty() {
        let order = fields::post_order(&value);
        let mut problems = report.problems;
        problems.sort_by_key(|problem| order.get(&problem.path).copied().unwrap_or(usize::MAX));
        return Err(fail(problems));
    }
    Ok(Config {
        gateway,
        backends,
        warnings: report.warnings,
    })
}

/// One backend entry from another source (an `McpBackend` resource's `spec`, already turned
/// into the entry's JSON shape): the same keys, rules and messages as an `mcpServers` entry, so
/// that every source normalises through one function. No `${VAR}` expansion and no relative
/// paths apply. Problem paths start at `spec`.
pub fn backend_entry(name: &str, entry: &Value, source: &str) -> Result<BackendSpec, ConfigError> {
    let mut report = Report::default();
    let spec = backend::backend(&mut report, "", "spec", entry, None);
    match spec {
        Some(mut spec) if report.problems.is_empty() => {
            spec.name = name.to_owned();
            Ok(spec)
        }
        _ => Err(ConfigError {
            source: source.to_owned(),
            problems: report.problems,
        }),
    }
}

/// The top level: where the backends are, and the `gateway` section.
fn document(
    report: &mut Report,
    value: &Value,
    base_dir: Option<&Path>,
) -> (GatewaySettings, Vec<BackendSpec>) {
    let empty = serde_json::Map::new();
    let top = match value {
        Value::Object(map) => map,
        Value::Null => &empty, // an empty YAML file
        other => {
            let found = fields::kind(other);
            report.problem(
                "",
                format!("expected an object at the top level, found {found}"),
            );
            return (GatewaySettings::default(), Vec::new());
        }
    };
    let gateway = match top.get("gateway") {
        Some(value) => gateway::settings(report, "gateway", value),
        None => GatewaySettings::default(),
    };
    if top.contains_key("inputs") {
        report.problem(
            "inputs",
            "VS Code `inputs` are not supported: the gateway cannot prompt for `${input:…}` \
             variables; put the value in an environment variable and write `${VAR}` instead",
        );
    }
    let section = ["mcpServers", "servers"]
        .into_iter()
        .find(|key| top.contains_key(*key));
    let mut backends = Vec::new();
    match section {
        Some(section) => {
            if section == "mcpServers" && top.contains_key("servers") {
                report.problem(
                    "servers",
                    "both `mcpServers` and `servers` are given; put every backend under one",
                );
            }
            for key in top.keys() {
                if !matches!(
                    key.as_str(),
                    "mcpServers" | "servers" | "gateway" | "inputs"
                ) {
                    fields::unknown_key(report, &key_path("", key), key, &[section, "gateway"]);
                }
            }
            let what = "an object of backend names to backends";
            let value = top.get(section).unwrap_or(&Value::Null);
            for (name, value) in fields::entries(report, section, value, what).unwrap_or_default() {
                backends.extend(backend::backend(report, section, name, value, base_dir));
            }
        }
        None => {
            // The older format: every other top-level key is a backend.
            for (name, value) in top {
                if matches!(name.as_str(), "gateway" | "inputs") {
                    continue;
                }
                if looks_like_misspelled_section(name, value) {
                    let known = ["mcpServers", "servers", "gateway"];
                    fields::unknown_key(report, &key_path("", name), name, &known);
                    continue;
                }
                backends.extend(backend::backend(report, "", name, value, base_dir));
            }
        }
    }
    backends.sort_by(|a, b| a.name.cmp(&b.name));
    if backends.is_empty() && report.problems.is_empty() {
        report.warn(section.unwrap_or(""), "no backends are configured");
    }
    warn_shared_prefixes(report, &backends);
    (gateway, backends)
}

/// In the older format, `mcpServer: {…}` would otherwise be read as a backend named
/// "mcpServer" and drown the typo in unknown-key problems.
fn looks_like_misspelled_section(name: &str, value: &Value) -> bool {
    let similar = fields::suggest(name, &["mcpServers", "servers", "gateway"]).is_some();
    let is_backend = value
        .as_object()
        .is_some_and(|map| map.keys().any(|key| backend::KEYS.contains(&key.as_str())));
    similar && !is_backend
}

/// Backends whose prefixes are equal publish tools under the same names.
fn warn_shared_prefixes(report: &mut Report, backends: &[BackendSpec]) {
    let mut by_prefix: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for backend in backends.iter().filter(|b| !b.prefix.is_empty()) {
        by_prefix
            .entry(&backend.prefix)
            .or_default()
            .push(&backend.name);
    }
    for (prefix, names) in by_prefix.into_iter().filter(|(_, names)| names.len() > 1) {
        report.warn(
            "",
            format!(
                "backends {} share the prefix \"{prefix}\", so their tool names may collide; \
                 give each its own `prefix`",
                names.join(", ")
            ),
        );
    }
}
