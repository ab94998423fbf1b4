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

/// A compiled template. Matching walks the parts once, carrying the set of URI offsets each
/// prefix of the template can reach: O(parts × URI length), whatever the template (a URI is
/// the client's to choose, so backtracking could be made to take forever).
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
        let len = uri.len();
        let bytes = uri.as_bytes();
        // stop[i]: the first offset at or after i holding `/`, `?` or `#` (or the end).
        let mut stop = vec![len; len + 1];
        for i in (0..len).rev() {
            stop[i] = if matches!(bytes[i], b'/' | b'?' | b'#') {
                i
            } else {
                stop[i + 1]
            };
        }
        let mut at = vec![false; len + 1];
        at[0] = true;
        let mut next = vec![false; len + 1];
        // Offsets reached by ranges, marked through a difference array.
        let mut spans = vec![0i32; len + 2];
        for part in &self.parts {
            next.iter_mut().for_each(|n| *n = false);
            spans.iter_mut().for_each(|d| *d = 0);
            let mut any = false;
            let mut span = |from: usize, to: usize| {
                if from <= to {
                    spans[from] += 1;
                    spans[to + 1] -= 1;
                }
            };
            for pos in (0..=len).filter(|&p| at[p]) {
                match part {
                    Part::Literal(lit) => {
                        if uri[pos..].starts_with(lit.as_str()) {
                            next[pos + lit.len()] = true;
                        }
                    }
                    // One or more characters up to the next `/ ? #`.
                    Part::Segment => span(pos + 1, stop[pos]),
                    Part::Any => {
                        // Every later offset: the first reachable one covers all the others.
                        if !any {
                            span(pos, len);
                            any = true;
                        }
                    }
                    Part::Prefixed(op) => {
                        next[pos] = true;
                        if uri[pos..].starts_with(*op) {
                            let after = pos + op.len_utf8();
                            span(after, stop[after]);
                        }
                    }
                    Part::Query => {
                        next[pos] = true;
                        if pos == len || matches!(bytes[pos], b'?' | b'&') {
                            next[len] = true;
                        }
                    }
                }
            }
            let mut depth = 0;
            for (i, reached) in next.iter_mut().enumerate() {
                depth += spans[i];
                *reached = (*reached || depth > 0) && uri.is_char_boundary(i);
            }
            std::mem::swap(&mut at, &mut next);
            if !at.contains(&true) {
                return false;
            }
        }
        at[len]
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
            ("u://{a}{b}", "u://x", false),
            ("u://{a}{b}", "u://xy", true),
            ("u://{+a}x", "u://abcx", true),
            ("u://{+a}x", "u://abc", false),
            ("u://{/a}{/b}", "u:///p/q", true),
            ("u://{/a}", "u:///p/q", false),
            ("u://x{/a}{/b}", "u://x/p/q", true),
            ("u://x{.ext}", "u://x.json", true),
            ("u://x{?q}/tail", "u://x/tail", true),
            ("u://é{id}", "u://é1", true),
        ];
        for (t, uri, want) in cases {
            assert_eq!(UriTemplate::parse(t).matches(uri), want, "{t} vs {uri}");
        }
    }

    /// Templates and URIs that made the earlier backtracking matcher run for seconds to
    /// minutes (found by fuzzing): a client controls the URI.
    #[test]
    fn hostile_uris_are_matched_in_linear_time() {
        let cases = [
            ("{+a}{+a}{+a}{+a}{+a}{+a}x".to_owned(), "a".repeat(20_000)),
            (
                "x://{a}{a}{a}{a}{a}{a}{a}{a}/".to_owned(),
                format!("x://{}", "b".repeat(20_000)),
            ),
            (
                "f:///{+a}/{+b}/{+c}/z".to_owned(),
                format!("f:///{}", "/".repeat(20_000)),
            ),
        ];
        let started = std::time::Instant::now();
        for (t, uri) in &cases {
            assert!(!UriTemplate::parse(t).matches(uri), "{t}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
