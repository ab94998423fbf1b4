//! `${VAR}` expansion in config values, so that secrets stay in the environment rather than
//! in the file.
//!
//! Syntax: `${VAR}`, `${VAR:-default}` (the default when VAR is unset or empty; it may itself
//! contain `${…}`), `${env:VAR}` as VS Code writes it, and `$$` for a literal `$`. A `$`
//! followed by anything else is kept as it is. Only string values are expanded, never keys.
//! Messages name variables but never their values.

use serde_json::Value;

use super::fields::{Report, index_path, key_path};

/// Why a string could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ExpandError {
    Unset(String),
    Unterminated,
    BadName(String),
    Input,
}

// === impl ExpandError ===

impl ExpandError {
    fn message(&self) -> String {
        match self {
            Self::Unset(name) => format!(
                "environment variable {name} is not set (write ${{{name}:-value}} to give a default)"
            ),
            Self::Unterminated => "unterminated `${` (write `$$` for a literal `$`)".to_owned(),
            Self::BadName(name) => format!(
                "invalid variable name \"{name}\" in `${{…}}` (expected letters, digits and `_`)"
            ),
            Self::Input => "`${input:…}` variables are not supported; \
                            write `${VAR}` to read the value from an environment variable"
                .to_owned(),
        }
    }
}

/// Expands every string value under `value` in place, reporting failures at their paths.
/// A value that fails keeps its text and its path is tainted, so validation does not pile
/// further problems onto it.
pub(super) fn expand_tree(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    report: &mut Report,
) {
    match value {
        Value::String(text) if text.contains('$') => {
            let mut errors = Vec::new();
            let expanded = expand(text, env, &mut errors);
            if errors.is_empty() {
                *text = expanded;
            } else {
                for error in &errors {
                    report.problem(path, error.message());
                }
                report.taint(path);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_tree(item, &index_path(path, index), env, report);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                expand_tree(item, &key_path(path, key), env, report);
            }
        }
        _ => {}
    }
}

/// Expands one string, collecting every error rather than stopping at the first.
fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ExpandError>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner_and_tail) = after.strip_prefix('{') {
            let Some(close) = matching_brace(inner_and_tail) else {
                errors.push(ExpandError::Unterminated);
                out.push_str(&rest[dollar..]);
                return out;
            };
            substitute(&inner_and_tail[..close], env, errors, &mut out);
            rest = &inner_and_tail[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Byte offset of the `}` closing a `${` whose body starts `text`, skipping nested `${…}`
/// and `$$`.
fn matching_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if matches!(bytes.get(i + 1), Some(b'$')) => i += 1,
            b'$' if matches!(bytes.get(i + 1), Some(b'{')) => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Appends the value of one `${body}` to `out`.
fn substitute(
    body: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ExpandError>,
    out: &mut String,
) {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if name.starts_with("input:") {
        errors.push(ExpandError::Input);
        return;
    }
    let name = name.strip_prefix("env:").unwrap_or(name);
    if !is_variable_name(name) {
        errors.push(ExpandError::BadName(name.to_owned()));
        return;
    }
    match (env(name), default) {
        (Some(value), None) => out.push_str(&value),
        (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
        (_, Some(default)) => out.push_str(&expand(default, env, errors)),
        (None, None) => errors.push(ExpandError::Unset(name.to_owned())),
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn strings() {
        use ExpandError::*;
        let cases: &[(&str, Result<&str, &[ExpandError]>)] = &[
            ("plain", Ok("plain")),
            ("${TOKEN}", Ok("s3cret")),
            ("Bearer ${TOKEN}", Ok("Bearer s3cret")),
            ("${TOKEN}${PORT}", Ok("s3cret8080")),
            ("${env:TOKEN}", Ok("s3cret")),
            ("${MISSING:-fallback}", Ok("fallback")),
            ("${MISSING:-}", Ok("")),
            ("${EMPTY:-fallback}", Ok("fallback")),
            ("${EMPTY}", Ok("")),
            ("${TOKEN:-fallback}", Ok("s3cret")),
            ("${MISSING:-${PORT}}", Ok("8080")),
            ("${MISSING:-a}b}", Ok("ab}")),
            ("${MISSING:-a:-b}", Ok("a:-b")),
            ("$$", Ok("$")),
            ("$${TOKEN}", Ok("${TOKEN}")),
            ("$$$$", Ok("$$")),
            ("cost: $5", Ok("cost: $5")),
            ("trailing $", Ok("trailing $")),
            ("$PATH", Ok("$PATH")),
            ("${MISSING:-$$}", Ok("$")),
            ("${MISSING}", Err(&[Unset(String::new())])),
            (
                "${MISSING} ${OTHER}",
                Err(&[Unset(String::new()), Unset(String::new())]),
            ),
            ("${TOKEN", Err(&[Unterminated])),
            ("${MISSING:-${PORT}", Err(&[Unterminated])),
            ("${}", Err(&[BadName(String::new())])),
            ("${1X}", Err(&[BadName(String::new())])),
            ("${A B}", Err(&[BadName(String::new())])),
            ("${input:token}", Err(&[Input])),
        ];
        for (text, want) in cases {
            let mut errors = Vec::new();
            let got = expand(text, &env, &mut errors);
            match want {
                Ok(want) => {
                    assert!(errors.is_empty(), "{text}: {errors:?}");
                    assert_eq!(got, *want, "{text}");
                }
                Err(want) => {
                    let kinds: Vec<_> = errors.iter().map(std::mem::discriminant).collect();
                    let want: Vec<_> = want.iter().map(std::mem::discriminant).collect();
                    assert_eq!(kinds, want, "{text}");
                }
            }
        }
    }

    #[test]
    fn messages_name_the_variable() {
        let cases = [
            (
                "${GITHUB_TOKEN}",
                "environment variable GITHUB_TOKEN is not set \
                 (write ${GITHUB_TOKEN:-value} to give a default)",
            ),
            ("${X", "unterminated `${` (write `$$` for a literal `$`)"),
            (
                "${a-b}",
                "invalid variable name \"a-b\" in `${…}` (expected letters, digits and `_`)",
            ),
        ];
        for (text, want) in cases {
            let mut errors = Vec::new();
            expand(text, &env, &mut errors);
            let got: Vec<_> = errors.iter().map(ExpandError::message).collect();
            assert_eq!(got, [want], "{text}");
        }
    }

    #[test]
    fn trees_expand_values_not_keys() {
        let mut value = json!({
            "${TOKEN}": "${TOKEN}",
            "list": ["${PORT}", 1, {"deep": "${MISSING}"}],
            "n": 5,
        });
        let mut report = Report::default();
        expand_tree(&mut value, "", &env, &mut report);
        assert_eq!(
            value,
            json!({"${TOKEN}": "s3cret", "list": ["8080", 1, {"deep": "${MISSING}"}], "n": 5})
        );
        let paths: Vec<_> = report.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["list[2].deep"]);
        report.problem("list[2].deep", "silenced");
        assert_eq!(report.problems.len(), 1);
    }
}
