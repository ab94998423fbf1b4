//! Checked readers over the parsed `serde_json::Value` tree.
//!
//! The config is validated by hand rather than through `#[derive(Deserialize)]` so that every
//! problem is found in one pass and named by its path (`mcpServers.github.args[2]`). Each
//! reader records what is wrong in a [`Report`] and returns `None`, never stopping the walk.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde_json::Value;

use super::Problem;

/// Known misspellings that similarity alone does not catch, as (written, meant).
const ALIASES: &[(&str, &str)] = &[
    ("cmd", "command"),
    ("exec", "command"),
    ("argv", "args"),
    ("arguments", "args"),
    ("environment", "env"),
    ("dir", "cwd"),
    ("workdir", "cwd"),
    ("workingdirectory", "cwd"),
    ("workingdir", "cwd"),
    ("endpoint", "url"),
    ("uri", "url"),
    ("serverurl", "url"),
];

/// Problems and warnings found so far.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<String>,
    /// Paths whose value could not be expanded; later problems there would only repeat it.
    tainted: BTreeSet<String>,
}

// === impl Report ===

impl Report {
    pub(super) fn problem(&mut self, path: &str, message: impl Into<String>) {
        if self.tainted.contains(path) {
            return;
        }
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Silences later problems at `path`, which already has its own.
    pub(super) fn taint(&mut self, path: &str) {
        self.tainted.insert(path.to_owned());
    }

    pub(super) fn warn(&mut self, path: &str, message: impl fmt::Display) {
        self.warnings.push(if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        });
    }

    /// Number of problems so far; compare before and after a step to see whether it failed.
    pub(super) fn count(&self) -> usize {
        self.problems.len()
    }
}

/// `parent.key`; keys that are not plain identifiers are quoted: `mcpServers."my server"`.
pub(super) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$' | '@'));
    let key = if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(super) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// How a value is named in "expected …, found …" messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(super) fn expected(report: &mut Report, path: &str, what: &str, value: &Value) {
    report.problem(path, format!("expected {what}, found {}", kind(value)));
}

/// The closest known key to a misspelled one, if any is close enough.
pub(super) fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let normal = normalize(key);
    if let Some((_, meant)) = ALIASES.iter().find(|(written, _)| *written == normal)
        && let Some(found) = known.iter().find(|k| *k == meant)
    {
        return Some(found);
    }
    known
        .iter()
        .filter_map(|candidate| {
            let other = normalize(candidate);
            let similarity = strsim::jaro_winkler(&normal, &other);
            let distance = strsim::levenshtein(&normal, &other);
            let shorter = normal.chars().count().min(other.chars().count());
            let close = similarity >= 0.8 || distance <= 1 || (distance <= 2 && shorter >= 6);
            close.then_some((similarity, *candidate))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// Lower case without `_` and `-`, so `env_file`, `EnvFile` and `envFile` compare equal.
fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Reports an unknown key, with a suggestion when a known key is close.
pub(super) fn unknown_key(report: &mut Report, path: &str, key: &str, known: &[&str]) {
    match suggest(key, known) {
        Some(meant) => report.problem(path, format!("unknown key; did you mean \"{meant}\"?")),
        None => report.problem(path, "unknown key"),
    }
}

/// The entries of an object; `null` (an empty YAML section) counts as an empty object.
pub(super) fn entries<'a>(
    report: &mut Report,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<Vec<(&'a str, &'a Value)>> {
    match value {
        Value::Object(map) => Some(map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        Value::Null => Some(Vec::new()),
        other => {
            expected(report, path, what, other);
            None
        }
    }
}

pub(super) fn string(report: &mut Report, path: &str, value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        other => {
            expected(report, path, "a string", other);
            None
        }
    }
}

/// A non-empty string.
pub(super) fn non_empty(report: &mut Report, path: &str, value: &Value) -> Option<String> {
    let text = string(report, path, value)?;
    if text.is_empty() {
        report.problem(path, "must not be empty");
        return None;
    }
    Some(text)
}

/// A string, or a number or boolean written where a string is meant (`- 8080` in YAML).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A list of strings; with `lenient`, numbers and booleans are converted to strings.
pub(super) fn string_list(
    report: &mut Report,
    path: &str,
    value: &Value,
    lenient: bool,
) -> Option<Vec<String>> {
    let items = match value {
        Value::Array(items) => items,
        Value::Null => return Some(Vec::new()),
        other => {
            expected(report, path, "a list of strings", other);
            return None;
        }
    };
    let before = report.count();
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let converted = match item {
            Value::String(text) => Some(text.clone()),
            _ if lenient => scalar(item),
            _ => None,
        };
        match converted {
            Some(text) => out.push(text),
            None => expected(report, &index_path(path, index), "a string", item),
        }
    }
    (report.count() == before).then_some(out)
}

/// An object of name → string; numbers and booleans are converted to strings.
pub(super) fn string_map(
    report: &mut Report,
    path: &str,
    value: &Value,
) -> Option<Vec<(String, String)>> {
    let entries = entries(report, path, value, "an object of names to strings")?;
    let before = report.count();
    let mut out = Vec::with_capacity(entries.len());
    for (key, item) in entries {
        match scalar(item) {
            Some(text) => out.push((key.to_owned(), text)),
            None => expected(report, &key_path(path, key), "a string", item),
        }
    }
    (report.count() == before).then_some(out)
}

/// `true`/`false`, also as strings (what `${VAR}` expansion produces).
pub(super) fn boolean(report: &mut Report, path: &str, value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) if text == "true" => Some(true),
        Value::String(text) if text == "false" => Some(false),
        other => {
            expected(report, path, "true or false", other);
            None
        }
    }
}

/// The post-order position of every path in `value`: children before their parent,
/// siblings in document order. Sorting problems by it lists them in document order, each
/// backend's own problems after those of its keys.
pub(super) fn post_order(value: &Value) -> HashMap<String, usize> {
    fn walk(value: &Value, path: String, order: &mut HashMap<String, usize>) {
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, index_path(&path, index), order);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    walk(item, key_path(&path, key), order);
                }
            }
            _ => {}
        }
        let next = order.len();
        order.insert(path, next);
    }
    let mut order = HashMap::new();
    walk(value, String::new(), &mut order);
    order
}

/// Whether every char is in `[A-Za-z0-9_-]`, the alphabet of public tool names.
pub(super) fn is_name_safe(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn suggestions() {
        const BACKEND: &[&str] = &["command", "args", "env", "cwd", "envFile", "url", "headers"];
        const GATEWAY: &[&str] = &["separator", "requestTimeout", "maxBodyBytes", "host"];
        let cases = [
            ("comand", BACKEND, Some("command")),
            ("arg", BACKEND, Some("args")),
            ("hedaers", BACKEND, Some("headers")),
            ("Command", BACKEND, Some("command")),
            ("env_file", BACKEND, Some("envFile")),
            ("cmd", BACKEND, Some("command")),
            ("arguments", BACKEND, Some("args")),
            ("serverUrl", BACKEND, Some("url")),
            ("endpoint", BACKEND, Some("url")),
            ("banana", BACKEND, None),
            ("separater", GATEWAY, Some("separator")),
            ("request_timeout", GATEWAY, Some("requestTimeout")),
            ("maxBodySize", GATEWAY, Some("maxBodyBytes")),
            ("hots", GATEWAY, Some("host")),
            ("cmd", GATEWAY, None),
            ("zzz", GATEWAY, None),
        ];
        for (key, known, want) in cases {
            assert_eq!(suggest(key, known), want, "{key}");
        }
    }

    #[test]
    fn paths() {
        let cases = [
            ("", "mcpServers", "mcpServers"),
            ("mcpServers", "github", "mcpServers.github"),
            ("mcpServers", "my server", "mcpServers.\"my server\""),
            ("mcpServers", "a.b", "mcpServers.\"a.b\""),
            ("mcpServers", "", "mcpServers.\"\""),
            ("", "x\"y", "\"x\\\"y\""),
        ];
        for (parent, key, want) in cases {
            assert_eq!(key_path(parent, key), want);
        }
        assert_eq!(index_path("a.args", 2), "a.args[2]");
    }

    #[test]
    fn lists_convert_scalars_only_when_lenient() {
        let value = json!(["a", 8080, true, 1.5]);
        let mut report = Report::default();
        assert_eq!(
            string_list(&mut report, "p", &value, true),
            Some(vec!["a".into(), "8080".into(), "true".into(), "1.5".into()])
        );
        assert_eq!(string_list(&mut report, "p", &value, false), None);
        let paths: Vec<_> = report.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["p[1]", "p[2]", "p[3]"]);
    }

    #[test]
    fn post_order_puts_children_first() {
        let order = post_order(&json!({"b": {"x": 1, "y": [true]}, "a": 2}));
        let mut paths: Vec<_> = order.into_iter().collect();
        paths.sort_by_key(|(_, index)| *index);
        let paths: Vec<_> = paths.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, ["b.x", "b.y[0]", "b.y", "b", "a", ""]);
    }

    #[test]
    fn tainted_paths_report_once() {
        let mut report = Report::default();
        report.problem("a.url", "first");
        report.taint("a.url");
        report.problem("a.url", "second");
        report.problem("a.other", "third");
        let messages: Vec<_> = report.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages, ["first", "third"]);
    }
}
