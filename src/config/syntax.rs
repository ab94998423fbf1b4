//! Text → `serde_json::Value`, for JSON and YAML, with syntax errors placed by line and
//! column.
//!
//! JSON gets two allowances so that VS Code's mcp.json (which is JSON with comments) loads
//! as written: `//` and `/* */` comments and trailing commas are blanked out before parsing,
//! keeping every line and column where it was. Duplicate keys are errors in both formats,
//! since silently keeping one of two backends of the same name hides a mistake.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::{Localizer, Location, SnippetMode, UserMessageFormatter};

use super::{Format, Problem};

/// Parses `text` as `format`; `Format::Auto` looks at the first non-space character.
pub(super) fn parse_value(text: &str, format: Format) -> Result<Value, Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Json => json(text),
        Format::Yaml => yaml(text),
        Format::Auto if text.trim_start().starts_with('{') => json(text),
        Format::Auto => yaml(text),
    }
}

fn syntax_problem(language: &str, line: u64, column: u64, message: &str) -> Problem {
    Problem {
        path: if line == 0 {
            String::new()
        } else {
            format!("line {line} column {column}")
        },
        message: format!("invalid {language}: {message}"),
    }
}

fn json(text: &str) -> Result<Value, Problem> {
    let text = strip_jsonc(text);
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let parsed = Checked::deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    parsed.map(|Checked(value)| value).map_err(|error| {
        let (line, column) = (error.line() as u64, error.column() as u64);
        let full = error.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full);
        syntax_problem("JSON", line, column, message)
    })
}

/// Keeps the message of a YAML error free of the "at line L, column C" suffix, which the
/// problem's path already carries.
struct NoLocation;

// === impl NoLocation ===

impl Localizer for NoLocation {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _location: Location) -> Cow<'a, str> {
        base
    }
}

fn yaml(text: &str) -> Result<Value, Problem> {
    // YAML 1.2 booleans only (`on`, `yes` stay strings) and `0755` kept as written: in
    // `args`, where scalars become strings, anything else would change what was written.
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|error| {
        let formatter = UserMessageFormatter.with_localizer(&NoLocation);
        let render = serde_saphyr::render_options! {
            formatter: &formatter,
            snippets: SnippetMode::Off,
        };
        let message = error.render_with_options(render);
        let (line, column) = error
            .location()
            .map_or((0, 0), |location| (location.line(), location.column()));
        syntax_problem("YAML", line, column, &message)
    })
}

/// Blanks `//` and `/* */` comments and commas before `}` or `]` with spaces, outside
/// strings. Valid JSON comes back unchanged; byte offsets are kept.
fn strip_jsonc(text: &str) -> Cow<'_, str> {
    if !text.contains('/') && !text.contains(',') {
        return Cow::Borrowed(text);
    }
    let mut out = text.as_bytes().to_vec();
    let mut i = 0;
    let mut in_string = false;
    while i < out.len() {
        let byte = out[i];
        if in_string {
            match byte {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match (byte, out.get(i + 1)) {
                (b'"', _) => in_string = true,
                (b'/', Some(b'/')) => {
                    while i < out.len() && out[i] != b'\n' {
                        out[i] = b' ';
                        i += 1;
                    }
                    continue;
                }
                (b'/', Some(b'*')) => {
                    let Some(end) = find(&out[i + 2..], b"*/") else {
                        break; // left for the parser to report
                    };
                    for byte in &mut out[i..i + 2 + end + 2] {
                        if *byte != b'\n' {
                            *byte = b' ';
                        }
                    }
                    i += 2 + end + 2;
                    continue;
                }
                (b'}' | b']', _) => {
                    if let Some(previous) = out[..i].iter().rposition(|b| !b.is_ascii_whitespace())
                        && out[previous] == b','
                    {
                        out[previous] = b' ';
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    // Only whole comments (all bytes of any multi-byte char in them) were replaced.
    match String::from_utf8(out) {
        Ok(stripped) => Cow::Owned(stripped),
        Err(_) => Cow::Borrowed(text),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `Value` whose objects had no duplicate keys.
struct Checked(Value);

struct CheckedVisitor;

// === impl Checked ===

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor).map(Checked)
    }
}

// === impl CheckedVisitor ===

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Checked(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key \"{key}\"")));
            }
            let Checked(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonc_is_blanked_in_place() {
        let cases = [
            ("{\"a\": 1}", "{\"a\": 1}"),
            ("{\"a\": 1, // note\n}", "{\"a\": 1         \n}"),
            ("[1, 2,]", "[1, 2 ]"),
            ("{/* x */\"a\": [1,\n]}", "{       \"a\": [1 \n]}"),
            (
                "{\"u\": \"http://x/*y*/,]\"}",
                "{\"u\": \"http://x/*y*/,]\"}",
            ),
            ("{\"q\": \"a\\\"//b\"}", "{\"q\": \"a\\\"//b\"}"),
            ("{/* é */}", "{        }"),
            ("{/* open", "{/* open"),
        ];
        for (text, want) in cases {
            assert_eq!(strip_jsonc(text), want, "{text}");
            assert_eq!(text.len(), want.len(), "{text}");
        }
    }

    #[test]
    fn values() {
        let cases = [
            ("{\"a\": [1, \"x\", null, true, 1.5]}", Format::Auto),
            ("a: [1, x, null, true, 1.5]\n", Format::Auto),
            ("\u{feff}{\"a\": [1, \"x\", null, true, 1.5]}", Format::Json),
            (
                "# comment\na:\n  - 1\n  - x\n  - ~\n  - true\n  - 1.5\n",
                Format::Yaml,
            ),
            ("{\"a\": [1, \"x\", null, true, 1.5]}", Format::Yaml),
            (
                "{\"a\": [1, \"x\", null, true, 1.5,], // jsonc\n}",
                Format::Json,
            ),
        ];
        for (text, format) in cases {
            assert_eq!(
                parse_value(text, format),
                Ok(json!({"a": [1, "x", null, true, 1.5]})),
                "{text}"
            );
        }
    }

    #[test]
    fn yaml_scalars_stay_as_written() {
        let text = "a: [on, yes, 0755, 1.0, 8080, true, ~, 0x10, 2024-01-01]\n";
        assert_eq!(
            parse_value(text, Format::Yaml),
            Ok(json!({"a": ["on", "yes", "0755", 1.0, 8080, true, null, 16, "2024-01-01"]}))
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let cases = [
            (
                "{\n  \"a\": 1\n  \"b\": 2\n}",
                Format::Auto,
                "line 3 column 3",
                "invalid JSON: expected `,` or `}`",
            ),
            (
                "{\"a\": 1, \"a\": 2}",
                Format::Json,
                "line 1 column 12",
                "invalid JSON: duplicate key \"a\"",
            ),
            (
                "{\"a\": 1} x",
                Format::Json,
                "line 1 column 10",
                "invalid JSON: trailing characters",
            ),
            (
                "a: 1\n  b: 2\n",
                Format::Yaml,
                "line 2 column 4",
                "invalid YAML: mapping values are not allowed in this context",
            ),
            (
                "a: 1\na: 2\n",
                Format::Auto,
                "line 2 column 1",
                "invalid YAML: duplicate mapping key `a` is not allowed here",
            ),
            (
                "a: [1, 2\n",
                Format::Auto,
                "line 1 column 4",
                "invalid YAML: unclosed bracket '['",
            ),
            (
                "mcpServers: {}\n",
                Format::Json,
                "line 1 column 1",
                "invalid JSON: expected value",
            ),
        ];
        for (text, format, path, message) in cases {
            let problem = parse_value(text, format).err();
            assert_eq!(
                problem,
                Some(Problem {
                    path: path.into(),
                    message: message.into()
                }),
                "{text}"
            );
        }
    }
}
