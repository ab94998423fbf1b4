//! The start-up summary: where to connect and how every backend came up, in one table a person
//! takes in at a glance. Beyond [`MAX_ROWS`] backends it lists those not ready and sums up the
//! rest, so that it stays readable at any size. On a terminal the same table, drawn while
//! backends start, is the live view (see `console`). In JSON logs it is one structured event per
//! backend instead.

use std::fmt::Write as _;
use std::time::Duration;

use super::console::SUMMARY;
use super::logs::LogFormat;

/// Longest error text shown in the table (the full text is in `/api/v1/backends`).
const ERROR_WIDTH: usize = 96;
/// Most backends listed one per row. With more, only those not ready are listed (at most this
/// many), and the others are summed up in one row per state.
pub const MAX_ROWS: usize = 40;

pub struct Summary {
    /// The HTTP base URL (`http://127.0.0.1:8900`); `None` when serving stdio.
    pub listen: Option<String>,
    pub backends: Vec<Row>,
    /// Published tools, prompts, resources and resource templates (after names were
    /// resolved).
    pub tools: usize,
    pub prompts: usize,
    pub resources: usize,
    pub templates: usize,
    /// Time since the gateway started.
    pub elapsed: Option<Duration>,
}

pub struct Row {
    pub name: String,
    pub transport: &'static str,
    pub state: &'static str,
    /// How long the backend took to start (ready) or to fail (down), or has been starting so
    /// far; `None` while it waits for its turn, or when it is disabled.
    pub time: Option<Duration>,
    pub tools: usize,
    pub prompts: usize,
    pub resources: usize,
    pub templates: usize,
    pub error: Option<String>,
}

/// A duration as the table and the logs show it: `2.1 s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// SGR colour for a state (or a header): green ready, red down, yellow starting.
fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour && !code.is_empty() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn state_colour(state: &str) -> &'static str {
    match state {
        "ready" => "32",
        "down" => "31",
        "starting" => "33",
        _ => "2",
    }
}

/// The table as text; `colour` adds ANSI colours (only ever for a terminal).
pub fn render(s: &Summary, colour: bool) -> String {
    render_within(s, colour, MAX_ROWS)
}

/// [`render`] listing at most `max_rows` backends one per row (at least one), for a screen
/// of a given height.
pub fn render_within(s: &Summary, colour: bool, max_rows: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        paint(
            &format!("mcp-gateway {}", env!("CARGO_PKG_VERSION")),
            "1",
            colour
        )
    );
    match &s.listen {
        Some(base) => {
            let _ = writeln!(out, "  streamable HTTP  {base}/mcp");
            let _ = writeln!(out, "  legacy SSE       {base}/sse");
            let _ = writeln!(out, "  metrics          {base}/metrics");
        }
        None => {
            let _ = writeln!(out, "  stdio            this process's stdin and stdout");
        }
    }
    out.push('\n');
    if s.backends.is_empty() {
        out.push_str("  no backends configured\n");
        return out;
    }

    let count = |n: usize, state: &str| {
        if state == "ready" {
            n.to_string()
        } else {
            "-".to_owned()
        }
    };
    let time = |t: Option<Duration>| t.map_or_else(|| "-".to_owned(), seconds);
    let header = [
        "BACKEND",
        "TRANSPORT",
        "STATE",
        "TIME",
        "TOOLS",
        "PROMPTS",
        "RESOURCES",
        "TEMPLATES",
    ];
    let ready = s.backends.iter().filter(|b| b.state == "ready").count();
    let (listed, rest) = listed_rows(&s.backends, max_rows.max(1));
    let shown: Vec<&Row> = listed.into_iter().chain(&rest).collect();
    let mut rows: Vec<[String; 8]> = shown
        .iter()
        .map(|b| {
            [
                b.name.clone(),
                b.transport.to_owned(),
                b.state.to_owned(),
                time(b.time),
                count(b.tools, b.state),
                count(b.prompts, b.state),
                count(b.resources, b.state),
                count(b.templates, b.state),
            ]
        })
        .collect();
    let total = [
        "total".to_owned(),
        match s.backends.len() {
            1 => "1 backend".to_owned(),
            n => format!("{n} backends"),
        },
        format!("{ready} ready"),
        time(s.elapsed),
        s.tools.to_string(),
        s.prompts.to_string(),
        s.resources.to_string(),
        s.templates.to_string(),
    ];
    let mut widths = header.map(str::len);
    for row in rows.iter().chain(std::iter::once(&total)) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 8], state_code: &str| {
        let mut l = String::from(" ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let padded = if i >= 3 {
                format!(" {cell:>w$}")
            } else {
                format!(" {cell:<w$}")
            };
            l.push_str(&if i == 2 {
                paint(&padded, state_code, colour)
            } else {
                padded
            });
            l.push(' ');
        }
        l.trim_end().to_owned()
    };
    let head = header.map(str::to_owned);
    let _ = writeln!(out, "{}", paint(&line(&head, ""), "1", colour));
    for (row, b) in rows.iter_mut().zip(&shown) {
        let mut l = line(row, state_colour(b.state));
        if let Some(e) = b.error.as_deref().filter(|_| b.state != "ready") {
            l.push_str("  ");
            l.push_str(&paint(&shorten(e), "2", colour));
        }
        let _ = writeln!(out, "{l}");
    }
    let width: usize = widths.iter().map(|w| w + 2).sum::<usize>() + 1;
    let _ = writeln!(out, "  {}", "─".repeat(width.saturating_sub(2)));
    let _ = writeln!(out, "{}", line(&total, ""));
    out
}

/// The backends listed one per row, and rows that each sum up the others of one state
/// ("(990 more)", or "(1000 backends)" when none is listed), the ready ones first. Up to
/// `max` backends, every one is listed. A summing row shows no time: its backends took each
/// their own.
fn listed_rows(backends: &[Row], max: usize) -> (Vec<&Row>, Vec<Row>) {
    if backends.len() <= max {
        return (backends.iter().collect(), Vec::new());
    }
    let mut listed = Vec::new();
    // Each summing row with how many backends it stands for.
    let mut sums: Vec<(Row, usize)> = Vec::new();
    for b in backends {
        if b.state != "ready" && listed.len() < max {
            listed.push(b);
            continue;
        }
        match sums.iter_mut().find(|(sum, _)| sum.state == b.state) {
            Some((sum, n)) => {
                *n += 1;
                if sum.transport != b.transport {
                    sum.transport = "mixed";
                }
                sum.tools += b.tools;
                sum.prompts += b.prompts;
                sum.resources += b.resources;
                sum.templates += b.templates;
            }
            None => sums.push((
                Row {
                    name: String::new(),
                    transport: b.transport,
                    state: b.state,
                    time: None,
                    tools: b.tools,
                    prompts: b.prompts,
                    resources: b.resources,
                    templates: b.templates,
                    error: None,
                },
                1,
            )),
        }
    }
    sums.sort_by_key(|(sum, _)| sum.state != "ready");
    let rest = sums
        .into_iter()
        .map(|(mut sum, n)| {
            sum.name = if listed.is_empty() {
                format!("({n} backends)")
            } else {
                format!("({n} more)")
            };
            sum
        })
        .collect();
    (listed, rest)
}

/// One line, at most [`ERROR_WIDTH`] characters.
fn shorten(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= ERROR_WIDTH {
        return flat;
    }
    let mut cut: String = flat.chars().take(ERROR_WIDTH - 1).collect();
    cut.push('…');
    cut
}

/// The summary as a log record: the plain table for text logs (a log file; the terminal gets
/// the table from the console), structured events for JSON.
pub fn log(s: &Summary, format: LogFormat) {
    match format {
        LogFormat::Text => {
            tracing::info!(target: SUMMARY, "\n{}", render(s, false).trim_end());
        }
        LogFormat::Json => {
            let ms = |t: Option<Duration>| t.map(|t| t.as_millis() as u64);
            for b in &s.backends {
                tracing::info!(
                    target: SUMMARY,
                    backend = %b.name,
                    transport = b.transport,
                    state = b.state,
                    startup_ms = ms(b.time),
                    tools = b.tools,
                    prompts = b.prompts,
                    resources = b.resources,
                    templates = b.templates,
                    error = b.error.as_deref(),
                    "backend"
                );
            }
            let ready = s.backends.iter().filter(|b| b.state == "ready").count();
            tracing::info!(
                target: SUMMARY,
                listen = s.listen.as_deref(),
                backends = s.backends.len(),
                ready,
                elapsed_ms = ms(s.elapsed),
                tools = s.tools,
                prompts = s.prompts,
                resources = s.resources,
                templates = s.templates,
                "gateway ready"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            listen: Some("http://127.0.0.1:8900".into()),
            backends: vec![
                Row {
                    name: "fixture".into(),
                    transport: "stdio",
                    state: "ready",
                    time: Some(Duration::from_millis(2140)),
                    tools: 9,
                    prompts: 1,
                    resources: 2,
                    templates: 1,
                    error: None,
                },
                Row {
                    name: "github".into(),
                    transport: "streamable-http",
                    state: "down",
                    time: Some(Duration::from_millis(310)),
                    tools: 0,
                    prompts: 0,
                    resources: 0,
                    templates: 0,
                    error: Some(format!("cannot reach https://x/mcp:\n{}", "e".repeat(100))),
                },
            ],
            tools: 9,
            prompts: 1,
            resources: 2,
            templates: 1,
            elapsed: Some(Duration::from_millis(2200)),
        }
    }

    #[test]
    fn renders_listeners_backends_and_totals() {
        let text = render(&summary(), false);
        let expected_head = format!(
            "mcp-gateway {}\n  streamable HTTP  http://127.0.0.1:8900/mcp\n  legacy SSE       http://127.0.0.1:8900/sse\n  metrics          http://127.0.0.1:8900/metrics\n\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.starts_with(&expected_head), "{text}");
        let table: Vec<&str> = text[expected_head.len()..].lines().collect();
        assert_eq!(
            table[0],
            "  BACKEND  TRANSPORT        STATE     TIME  TOOLS  PROMPTS  RESOURCES  TEMPLATES"
        );
        assert_eq!(
            table[1],
            "  fixture  stdio            ready    2.1 s      9        1          2          1"
        );
        assert!(
            table[2].starts_with(
                "  github   streamable-http  down     0.3 s      -        -          -          -  cannot reach https://x/mcp: eee"
            ),
            "{}",
            table[2]
        );
        assert!(
            table[2].ends_with('…') && table[2].chars().count() < 190,
            "{}",
            table[2]
        );
        assert!(table[3].trim_start().chars().all(|c| c == '─'));
        assert_eq!(
            table[4],
            "  total    2 backends       1 ready  2.2 s      9        1          2          1"
        );
        assert!(
            !text.contains('\x1b'),
            "no colour codes when asked for none"
        );
    }

    #[test]
    fn colour_wraps_cells_without_moving_columns() {
        let plain = render(&summary(), false);
        let coloured = render(&summary(), true);
        assert!(coloured.contains("\x1b[32m"), "ready is green");
        assert!(coloured.contains("\x1b[31m"), "down is red");
        let strip = |s: &str| {
            let mut out = String::new();
            let mut in_escape = false;
            for c in s.chars() {
                match (in_escape, c) {
                    (false, '\x1b') => in_escape = true,
                    (true, 'm') => in_escape = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&coloured), plain);
    }

    fn many(n: usize, state: impl Fn(usize) -> &'static str) -> Summary {
        let backends: Vec<Row> = (0..n)
            .map(|i| Row {
                name: format!("fx{i:04}"),
                transport: "stdio",
                state: state(i),
                time: Some(Duration::from_millis(100)),
                tools: 5,
                prompts: 0,
                resources: 1,
                templates: 0,
                error: (state(i) == "down").then(|| "exited".to_owned()),
            })
            .collect();
        let ready = backends.iter().filter(|b| b.state == "ready").count();
        Summary {
            listen: None,
            backends,
            tools: 5 * ready,
            prompts: 0,
            resources: ready,
            templates: 0,
            elapsed: Some(Duration::from_secs(3)),
        }
    }

    /// The rows of the table: between the header and the rule.
    fn rows(text: &str) -> Vec<String> {
        text.lines()
            .skip_while(|l| !l.trim_start().starts_with("BACKEND"))
            .skip(1)
            .take_while(|l| !l.trim_start().starts_with('─'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_backend_has_a_row_up_to_the_limit() {
        let text = render(&many(MAX_ROWS, |_| "ready"), false);
        assert_eq!(rows(&text).len(), MAX_ROWS);
        assert!(!text.contains("more)"), "{text}");
    }

    #[test]
    fn beyond_the_limit_the_ready_ones_are_summed_up() {
        let down = [12, 500, 731];
        let s = many(1000, |i| if down.contains(&i) { "down" } else { "ready" });
        let text = render(&s, false);
        let rows = rows(&text);
        assert_eq!(rows.len(), 4, "{text}");
        for (row, i) in rows.iter().zip(down) {
            assert!(row.starts_with(&format!("  fx{i:04}")), "{row}");
            assert!(row.contains(" down ") && row.ends_with("exited"), "{row}");
        }
        assert_eq!(
            rows[3],
            "  (997 more)  stdio          ready          -   4985        0        997          0"
        );
        let total = text.lines().last().unwrap_or_default();
        assert_eq!(
            total,
            "  total       1000 backends  997 ready  3.0 s   4985        0        997          0"
        );
    }

    #[test]
    fn beyond_the_limit_all_ready_is_one_row() {
        let rows = rows(&render(&many(1000, |_| "ready"), false));
        assert_eq!(
            rows,
            [
                "  (1000 backends)  stdio          ready           -   5000        0       1000          0"
            ]
        );
    }

    #[test]
    fn beyond_the_limit_not_ready_ones_are_listed_up_to_it() {
        let s = many(300, |i| match i % 3 {
            0 => "ready",
            1 => "down",
            _ => "starting",
        });
        let rows = rows(&render(&s, false));
        assert_eq!(rows.len(), MAX_ROWS + 3, "{rows:#?}");
        assert!(rows[..MAX_ROWS].iter().all(|r| !r.contains(" ready ")));
        let sums: Vec<&str> = rows[MAX_ROWS..]
            .iter()
            .map(|r| r.split_whitespace().take(4).last().unwrap_or_default())
            .collect();
        assert_eq!(sums, ["ready", "down", "starting"]);
        assert!(rows[MAX_ROWS].starts_with("  (100 more)"), "{rows:#?}");
        assert!(rows[MAX_ROWS + 1].starts_with("  (80 more) "), "{rows:#?}");
        assert!(rows[MAX_ROWS + 2].starts_with("  (80 more) "), "{rows:#?}");
    }

    #[test]
    fn stdio_and_empty() {
        let s = Summary {
            listen: None,
            backends: vec![],
            tools: 0,
            prompts: 0,
            resources: 0,
            templates: 0,
            elapsed: None,
        };
        let text = render(&s, false);
        assert!(text.contains("stdio            this process's stdin and stdout"));
        assert!(text.ends_with("  no backends configured\n"));
    }
}
