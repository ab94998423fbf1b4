//! Matching a concrete URI against an RFC 6570 URI template, so `resources/read` of a
//! templated URI reaches the backend that published the template.
//!
//! Only matching is needed, never expansion: `{var}` matches one or more characters other than
//! `/ ? #`, `{+var}` and `{#var}` match anything, `{/var}` `{.var}` `{;var}` match their
//! operator followed by a segment, `{?a,b}` and `{&a}` match the rest of a query string.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// Matches `[^/?#]+`.
    Segment,
    /// Matches `.*` (reserved expansion).
    Any,
    /// Matches `(prefix [^/?#]*)?` — `/`, `.`, `;` operators.
    Prefixed(char),
    /// Matches the rest of the query: `([?&].*)?`.
    Query,
}

/// A compiled template; matching is linear-time backtracking over a handful of parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriTemplate {
    parts: Vec<Part>,
}

impl UriTemplate {
    pub fn parse(template: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                // Unterminated expression: treat the remainder literally.
                parts.push(Part::Literal(rest[open..].to_owned()));
                rest = "";
                break;
            };
            let expr = &rest[open + 1..open + close];
            parts.push(match expr.chars().next() {
                Some('+') | Some('#') => Part::Any,
                Some(c @ ('/' | '.' | ';')) => Part::Prefixed(c),
                Some('?') | Some('&') => Part::Query,
                _ => Part::Segment,
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Self { parts }
    }

    pub fn matches(&self, uri: &str) -> bool {
        match_parts(&self.parts, uri)
    }
}

fn match_parts(parts: &[Part], s: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return s.is_empty();
    };
    match first {
        Part::Literal(lit) => s
            .strip_prefix(lit.as_str())
            .is_some_and(|t| match_parts(rest, t)),
        Part::Segment => {
            let limit = s.find(['/', '?', '#']).unwrap_or(s.len());
            (1..=limit)
                .rev()
                .any(|n| s.is_char_boundary(n) && match_parts(rest, &s[n..]))
        }
        Part::Any => (0..=s.len())
            .rev()
            .any(|n| s.is_char_boundary(n) && match_parts(rest, &s[n..])),
        Part::Prefixed(op) => {
            if match_parts(rest, s) {
                return true;
            }
            let Some(t) = s.strip_prefix(*op) else {
                return false;
            };
            let limit = t.find(['/', '?', '#']).unwrap_or(t.len());
            (0..=limit)
                .rev()
                .any(|n| t.is_char_boundary(n) && match_parts(rest, &t[n..]))
        }
        Part::Query => {
            (s.is_empty() || s.starts_with('?') || s.starts_with('&')) && match_parts(rest, "")
                || match_parts(rest, s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_templates() {
        let cases = [
            ("fixture://items/{id}", "fixture://items/42", true),
            ("fixture://items/{id}", "fixture://items/", false),
            ("fixture://items/{id}", "fixture://items/4/2", false),
            (
                "test://dynamic/resource/{id}",
                "test://dynamic/resource/7",
                true,
            ),
            ("file:///{+path}", "file:///etc/hosts", true),
            ("repo://{owner}/{name}/readme", "repo://a/b/readme", true),
            ("repo://{owner}/{name}/readme", "repo://a/readme", false),
            ("search://q{?term,limit}", "search://q?term=x&limit=2", true),
            ("search://q{?term}", "search://q", true),
            ("a://x{/seg}", "a://x/y", true),
            ("a://x{/seg}", "a://x", true),
            ("plain://static", "plain://static", true),
            ("plain://static", "plain://static2", false),
            ("weird://{unterminated", "weird://{unterminated", true),
            ("u://{id}.txt", "u://é.txt", true),
        ];
        for (t, uri, want) in cases {
            assert_eq!(UriTemplate::parse(t).matches(uri), want, "{t} vs {uri}");
        }
    }
}
