//! The two text formats `/metrics` speaks. `prometheus-client` writes OpenMetrics, which
//! Prometheus asks for by `Accept` header; everything else (curl, `promtool check metrics`,
//! older scrapers) gets the classic Prometheus text format, where a counter's `# HELP` and
//! `# TYPE` lines carry the `_total` name and there is no `# UNIT` or `# EOF`.

use prometheus_client::registry::Registry;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Prometheus,
}

impl Format {
    /// OpenMetrics when the scraper says it accepts it, else the classic format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

/// Encode `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut text = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail; an encoding error would be a bug in a label type,
    // and a partial exposition is still the most useful answer.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(error = %e, "metrics encoding stopped early");
    }
    match format {
        Format::OpenMetrics => text,
        Format::Prometheus => to_prometheus(&text),
    }
}

/// Rewrite an OpenMetrics exposition in the classic Prometheus text format.
pub fn to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A `# HELP` line waits for its `# TYPE` line, which says whether the name needs `_total`.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), "");
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let suffix = if kind == "counter" && !name.ends_with("_total") {
                "_total"
            } else {
                ""
            };
            match help.take() {
                Some((n, text)) if n == name => flush_help(&mut out, Some((n, text)), suffix),
                other => flush_help(&mut out, other, ""),
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        flush_help(&mut out, help.take(), "");
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, help, "");
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, suffix: &str) {
    if let Some((name, text)) = help {
        out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_and_openmetrics_markers_go() {
        let om = "\
# HELP x_requests Requests.
# TYPE x_requests counter
x_requests_total{a=\"b\"} 3
# HELP x_seconds Latency.
# TYPE x_seconds histogram
# UNIT x_seconds seconds
x_seconds_sum 0.5
x_seconds_count 1
x_seconds_bucket{le=\"+Inf\"} 1
# HELP x_up Up.
# TYPE x_up gauge
x_up 1
# EOF
";
        let expected = "\
# HELP x_requests_total Requests.
# TYPE x_requests_total counter
x_requests_total{a=\"b\"} 3
# HELP x_seconds Latency.
# TYPE x_seconds histogram
x_seconds_sum 0.5
x_seconds_count 1
x_seconds_bucket{le=\"+Inf\"} 1
# HELP x_up Up.
# TYPE x_up gauge
x_up 1
";
        assert_eq!(to_prometheus(om), expected);
    }

    #[test]
    fn accept_header_picks_the_format() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
    }
}
