//! `envFile` support: VS Code's mcp.json can point a backend at a dotenv file whose
//! `KEY=VALUE` lines are added to the process environment.
//!
//! Accepted lines: blank lines, `# comments`, `KEY=VALUE`, `export KEY=VALUE`, values in
//! `"double"` (with `\n`, `\t`, `\r`, `\"`, `\\` escapes) or `'single'` (literal) quotes, and
//! unquoted values with a trailing ` # comment`. Values are taken literally: no `${VAR}`
//! expansion. Messages give line numbers, never values.

use std::path::Path;

use super::fields::Report;

/// `(KEY, VALUE)` pairs in file order.
pub(super) type Entries = Vec<(String, String)>;

/// `(line number, message)` of every bad line.
type LineErrors = Vec<(usize, String)>;

/// Parses dotenv text into entries in file order (a later duplicate wins when collected),
/// or the `(line number, message)` of every bad line.
pub(super) fn parse(text: &str) -> Result<Entries, LineErrors> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(message) => errors.push((index + 1, message.to_owned())),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Reads and parses `file`, reporting problems at `path` (the `envFile` key).
pub(super) fn load(report: &mut Report, path: &str, file: &Path) -> Option<Entries> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            report.problem(path, format!("cannot read {}: {error}", file.display()));
            return None;
        }
    };
    match parse(&text) {
        Ok(entries) => Some(entries),
        Err(errors) => {
            for (line, message) in errors {
                report.problem(path, format!("{} line {line}: {message}", file.display()));
            }
            None
        }
    }
}

fn parse_line(line: &str) -> Result<Option<(String, String)>, &'static str> {
    let line = line.trim_start_matches('\u{feff}').trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (key, value) = line.split_once('=').ok_or("expected KEY=VALUE")?;
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err("invalid variable name");
    }
    let value = value.trim_start();
    let value = if let Some(quoted) = value.strip_prefix('"') {
        double_quoted(quoted)?
    } else if let Some(quoted) = value.strip_prefix('\'') {
        let (inner, rest) = quoted.split_once('\'').ok_or("unterminated quote")?;
        trailing(rest)?;
        inner.to_owned()
    } else {
        unquoted(value).to_owned()
    };
    Ok(Some((key.to_owned(), value)))
}

/// The body of a `"…"` value (after the opening quote), with escapes resolved.
fn double_quoted(text: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => {
                trailing(&text[index + 1..])?;
                return Ok(out);
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, escaped @ ('"' | '\\'))) => out.push(escaped),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return Err("unterminated quote"),
            },
            other => out.push(other),
        }
    }
    Err("unterminated quote")
}

/// What may follow a closing quote: nothing or a comment.
fn trailing(rest: &str) -> Result<(), &'static str> {
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after the closing quote")
    }
}

/// An unquoted value ends at ` #` (a comment) and loses surrounding spaces.
fn unquoted(value: &str) -> &str {
    let end = value
        .char_indices()
        .find(|&(index, c)| c == '#' && value[..index].ends_with([' ', '\t']))
        .map_or(value.len(), |(index, _)| index);
    value[..end].trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        type Case = (
            &'static str,
            Result<Option<(&'static str, &'static str)>, &'static str>,
        );
        let cases: &[Case] = &[
            ("", Ok(None)),
            ("   ", Ok(None)),
            ("# comment", Ok(None)),
            ("  # indented comment", Ok(None)),
            ("KEY=value", Ok(Some(("KEY", "value")))),
            (" KEY = value ", Ok(Some(("KEY", "value")))),
            ("export KEY=value", Ok(Some(("KEY", "value")))),
            ("KEY=", Ok(Some(("KEY", "")))),
            ("KEY=a=b", Ok(Some(("KEY", "a=b")))),
            ("KEY=value # comment", Ok(Some(("KEY", "value")))),
            ("KEY=val#ue", Ok(Some(("KEY", "val#ue")))),
            ("KEY=\"quoted value\"", Ok(Some(("KEY", "quoted value")))),
            ("KEY=\"a\\nb\\\"c\\\\\"", Ok(Some(("KEY", "a\nb\"c\\")))),
            (
                "KEY=\"# not a comment\" # comment",
                Ok(Some(("KEY", "# not a comment"))),
            ),
            (
                "KEY='single $quoted \\n'",
                Ok(Some(("KEY", "single $quoted \\n"))),
            ),
            ("KEY=\"unterminated", Err("unterminated quote")),
            ("KEY='unterminated", Err("unterminated quote")),
            (
                "KEY=\"a\" b",
                Err("unexpected text after the closing quote"),
            ),
            ("no equals sign", Err("expected KEY=VALUE")),
            ("=value", Err("invalid variable name")),
            ("MY KEY=value", Err("invalid variable name")),
        ];
        for (line, want) in cases {
            let got = parse_line(line);
            let got = got
                .as_ref()
                .map(|entry| entry.as_ref().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| *e);
            assert_eq!(got, *want, "{line}");
        }
    }

    #[test]
    fn files_report_every_bad_line() {
        let text = "A=1\nbad\n# ok\nB=\"x\nC=3\n";
        assert_eq!(
            parse(text),
            Err(vec![
                (2, "expected KEY=VALUE".to_owned()),
                (4, "unterminated quote".to_owned())
            ])
        );
        let good = "A=1\r\nB=2\r\n";
        assert_eq!(
            parse(good),
            Ok(vec![("A".into(), "1".into()), ("B".into(), "2".into())])
        );
    }
}
