//! stderr as a person reads it. The start-up table is written to it directly, not as a log
//! event: a log formatter escapes control characters, so its colours would show as `\x1b[32m`
//! text, and a log level would hide it. It is coloured only on a terminal (and not with
//! `NO_COLOR`); into a pipe or a file it is plain text. On a terminal, while backends start,
//! the table is a live view at the bottom of the screen, drawn again in place as they change;
//! log lines scroll above it.
//!
//! Log lines reach stderr through [`Stderr`], which keeps them clear of the live view. Two
//! targets are handled apart:
//! - [`SUMMARY`], the table as a log record: in text format it is for log files only (stderr
//!   has the table itself); JSON logs carry it as structured events.
//! - [`STARTUP`], one line per backend state change while starting, and the progress lines:
//!   on a terminal they are left out while the live view shows the same; everywhere else
//!   (pipes, files, JSON) they are the progress.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::logs::LogFormat;
use super::table::{self, Summary};

/// Target of the per-backend start-up events (`backend starting`, `backend ready in 2.1 s`,
/// `backend failed after 0.3 s: …`) and of the progress lines.
pub const STARTUP: &str = "mcp_gateway::startup";
/// Target of the start-up summary as a log record.
pub const SUMMARY: &str = "mcp_gateway::summary";

/// Lines of the table that are not backend rows: the title, three listeners, a blank line,
/// the column header, the rule and the total, with up to five summing rows (one per state).
const TABLE_CHROME: usize = 8 + 5;

/// The process's stderr, shared by the log lines and the start-up table.
pub struct Console {
    format: LogFormat,
    /// Draw the live view: text format on a terminal that moves its cursor.
    live: bool,
    colour: bool,
    screen: Mutex<Screen>,
}

struct Screen {
    out: Box<dyn Write + Send>,
    /// The live view as drawn (empty when none is), and how many lines it takes.
    block: String,
    lines: usize,
    /// The final table was printed: the live view is over.
    done: bool,
}

impl Console {
    /// stderr, as the environment says: a terminal (unless `TERM=dumb`) gets the live view,
    /// and colour unless `NO_COLOR` is set to something.
    pub fn stderr(format: LogFormat) -> Self {
        let tty = io::stderr().is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let text = format == LogFormat::Text;
        Self::new(
            format,
            text && tty && !dumb,
            text && tty && !no_colour,
            Box::new(io::stderr()),
        )
    }

    /// A console writing to `out` (tests use a buffer).
    pub fn new(format: LogFormat, live: bool, colour: bool, out: Box<dyn Write + Send>) -> Self {
        Self {
            format,
            live,
            colour,
            screen: Mutex::new(Screen {
                out,
                block: String::new(),
                lines: 0,
                done: false,
            }),
        }
    }

    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Whether log lines may carry colour.
    pub fn colour(&self) -> bool {
        self.colour
    }

    /// Whether the live view is (still) shown: on a terminal, until the final table.
    pub fn live(&self) -> bool {
        self.live && !self.lock().done
    }

    /// Show `summary` as the live view, in place of the one before; `rows` is the terminal's
    /// height, which the view stays within. Nothing happens once the final table is out, or
    /// where there is no live view.
    pub fn show_live(&self, summary: &Summary, rows: usize) {
        if !self.live {
            return;
        }
        let max_rows = rows.saturating_sub(TABLE_CHROME + 1).max(1);
        let text = table::render_within(summary, self.colour, max_rows);
        let text = crate::redact::text(&text);
        let mut screen = self.lock();
        if screen.done || screen.block == *text {
            return;
        }
        let screen = &mut *screen;
        let mut bytes = Vec::with_capacity(text.len() + 32);
        erase(&mut bytes, screen.lines);
        draw(&mut bytes, &text);
        if screen.out.write_all(&bytes).is_ok() {
            let _ = screen.out.flush();
            screen.lines = text.lines().count();
            screen.block = text.into_owned();
        }
    }

    /// Print the start-up table: on stderr itself whatever the log level (in text format),
    /// and as a log record. It ends the live view, replacing it.
    pub fn print_summary(&self, summary: &Summary) {
        if self.format == LogFormat::Text {
            let text = table::render(summary, self.colour);
            let text = crate::redact::text(&text);
            let mut screen = self.lock();
            let mut bytes = Vec::with_capacity(text.len() + 16);
            erase(&mut bytes, screen.lines);
            bytes.extend_from_slice(text.as_bytes());
            let _ = screen.out.write_all(&bytes);
            let _ = screen.out.flush();
            screen.block.clear();
            screen.lines = 0;
            screen.done = true;
        } else {
            self.lock().done = true;
        }
        // After the screen's lock: the record is written through `Stderr`, which takes it.
        table::log(summary, self.format);
    }

    /// Whether stderr shows a log event of `target`.
    fn shows(&self, target: &str) -> bool {
        match self.format {
            LogFormat::Json => true,
            LogFormat::Text if target == SUMMARY => false,
            LogFormat::Text if target == STARTUP => !self.live(),
            LogFormat::Text => true,
        }
    }

    /// Write one formatted log event: above the live view, which is drawn again below it.
    fn write_log(&self, line: &[u8]) {
        let mut screen = self.lock();
        let screen = &mut *screen;
        if screen.lines == 0 {
            let _ = screen.out.write_all(line);
            return;
        }
        let mut bytes = Vec::with_capacity(line.len() + screen.block.len() + 32);
        erase(&mut bytes, screen.lines);
        bytes.extend_from_slice(line);
        draw(&mut bytes, &screen.block);
        let _ = screen.out.write_all(&bytes);
        let _ = screen.out.flush();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Screen> {
        crate::sync::lock(&self.screen)
    }
}

/// Move to the first line of a live view `lines` long that ends just above the cursor, and
/// clear from there to the end of the screen.
fn erase(out: &mut Vec<u8>, lines: usize) {
    if lines > 0 {
        let _ = write!(out, "\r\x1b[{lines}A\x1b[J");
    }
}

/// Draw a live view with line wrapping off, so that a line wider than the terminal is cut
/// rather than taking two rows (the view is erased by counting rows).
fn draw(out: &mut Vec<u8>, block: &str) {
    out.extend_from_slice(b"\x1b[?7l");
    out.extend_from_slice(block.as_bytes());
    out.extend_from_slice(b"\x1b[?7h");
}

/// The log formatter's writer for stderr: each event goes through the [`Console`].
pub struct Stderr(pub Arc<Console>);

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            console: &self.0,
            shown: true,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Line {
            console: &self.0,
            shown: self.0.shows(meta.target()),
            buf: Vec::new(),
        }
    }
}

/// One log event on its way to stderr, written whole when dropped.
pub struct Line<'c> {
    console: &'c Console,
    shown: bool,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.shown {
            self.buf.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.console.write_log(&self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::telemetry::table::Row;

    /// A buffer the console writes into and the test reads.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            crate::sync::lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *crate::sync::lock(&self.0))).expect("utf-8")
        }
    }

    fn console(format: LogFormat, live: bool, colour: bool) -> (Stderr, Shared) {
        let out = Shared::default();
        let console = Console::new(format, live, colour, Box::new(out.clone()));
        (Stderr(Arc::new(console)), out)
    }

    fn summary(state: &'static str, secs: u64) -> Summary {
        Summary {
            listen: Some("http://127.0.0.1:8900".into()),
            backends: vec![Row {
                name: "fx".into(),
                transport: "stdio",
                state,
                time: Some(Duration::from_secs(secs)),
                tools: 1,
                prompts: 0,
                resources: 0,
                templates: 0,
                error: None,
            }],
            tools: 1,
            prompts: 0,
            resources: 0,
            templates: 0,
            elapsed: Some(Duration::from_secs(secs)),
        }
    }

    /// An event of `target` ("" for any other) as the log formatter writes it.
    fn log(stderr: &Stderr, target: &str, text: &str) {
        let mut line = stderr.make_writer();
        if !target.is_empty() {
            line.shown = stderr.0.shows(target);
        }
        line.write_all(text.as_bytes()).expect("write");
    }

    #[test]
    fn the_live_view_is_redrawn_in_place_and_log_lines_go_above_it() {
        let (stderr, out) = console(LogFormat::Text, true, true);
        stderr.0.show_live(&summary("starting", 1), 40);
        let first = out.take();
        assert!(
            first.starts_with("\x1b[?7l\x1b[1mmcp-gateway "),
            "{first:?}"
        );
        assert!(first.ends_with("\x1b[?7h"), "{first:?}");
        let lines = first.matches('\n').count();

        // The same view again draws nothing.
        stderr.0.show_live(&summary("starting", 1), 40);
        assert_eq!(out.take(), "");

        // A log line: the view is erased, the line written, the view drawn again below it.
        log(&stderr, "", "a log line\n");
        let second = out.take();
        let erase = format!("\r\x1b[{lines}A\x1b[J");
        assert!(
            second.starts_with(&format!("{erase}a log line\n\x1b[?7l")),
            "{second:?}"
        );
        assert_eq!(second.matches('\n').count(), lines + 1);

        // Start-up events are left out while the live view shows them; the table's record
        // is for log files only.
        log(&stderr, STARTUP, "backend ready in 2.0 s\n");
        log(&stderr, SUMMARY, "the table as a record\n");
        assert_eq!(out.take(), "");

        // A change: drawn in place of the old view.
        stderr.0.show_live(&summary("starting", 2), 40);
        assert!(out.take().starts_with(&format!("{erase}\x1b[?7l")));

        // The final table replaces the view for good; start-up events show again.
        stderr.0.print_summary(&summary("ready", 2));
        let last = out.take();
        assert!(
            last.starts_with(&format!("{erase}\x1b[1mmcp-gateway ")),
            "{last:?}"
        );
        assert!(last.contains("\x1b[32m ready"), "{last:?}");
        assert!(!stderr.0.live());
        stderr.0.show_live(&summary("starting", 3), 40);
        log(&stderr, STARTUP, "backend starting\n");
        assert_eq!(out.take(), "backend starting\n");
    }

    #[test]
    fn a_live_view_fits_the_terminal() {
        let (stderr, out) = console(LogFormat::Text, true, false);
        let mut s = summary("starting", 1);
        s.backends = (0..100)
            .map(|i| Row {
                name: format!("b{i}"),
                transport: "stdio",
                state: "starting",
                time: None,
                tools: 0,
                prompts: 0,
                resources: 0,
                templates: 0,
                error: None,
            })
            .collect();
        stderr.0.show_live(&s, 24);
        let text = out.take();
        assert!(text.matches('\n').count() < 24, "{text}");
        assert!(text.contains("more)"), "{text}");
    }

    #[test]
    fn without_a_terminal_the_table_is_plain_and_events_are_lines() {
        let (stderr, out) = console(LogFormat::Text, false, false);
        assert!(!stderr.0.live());
        log(&stderr, STARTUP, "backend starting\n");
        stderr.0.show_live(&summary("starting", 1), 40);
        assert_eq!(out.take(), "backend starting\n");
        stderr.0.print_summary(&summary("ready", 1));
        let table = out.take();
        assert!(table.starts_with("mcp-gateway "), "{table:?}");
        assert!(!table.contains('\x1b'), "{table:?}");
        log(&stderr, SUMMARY, "the table as a record\n");
        assert_eq!(out.take(), "");
    }

    #[test]
    fn json_logs_keep_every_event_and_get_no_table() {
        let (stderr, out) = console(LogFormat::Json, false, false);
        log(&stderr, STARTUP, "{\"message\":\"backend starting\"}\n");
        log(&stderr, SUMMARY, "{\"message\":\"backend\"}\n");
        stderr.0.print_summary(&summary("ready", 1));
        assert_eq!(
            out.take(),
            "{\"message\":\"backend starting\"}\n{\"message\":\"backend\"}\n"
        );
    }
}
