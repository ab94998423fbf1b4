//! An incremental `text/event-stream` parser: bytes in, complete events out.
//!
//! Both transports answer over SSE (streamable HTTP's POST responses, legacy SSE's one long
//! stream), and a frame boundary is never an event boundary, so the parser keeps the partial
//! line between calls.

/// One dispatched event: its `event:` name (empty for the default) and its joined `data:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// Parser state: the bytes of an unfinished line and the fields of an unfinished event.
#[derive(Default)]
pub struct Parser {
    line: Vec<u8>,
    event: Event,
    has_data: bool,
}

impl Parser {
    /// Feeds `bytes`, appending every event they complete to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        for &byte in bytes {
            if byte == b'\n' {
                self.end_line(out);
            } else {
                self.line.push(byte);
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.is_empty() {
            if self.has_data || !self.event.name.is_empty() {
                out.push(std::mem::take(&mut self.event));
            }
            self.has_data = false;
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event.name = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
                self.has_data = true;
            }
            _ => {} // comments (empty field), id, retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<Event> {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk.as_bytes(), &mut out);
        }
        out
    }

    fn event(name: &str, data: &str) -> Event {
        Event {
            name: name.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let cases: &[(&[&str], Vec<Event>)] = &[
            (&["data: {\"a\":1}\n\n"], vec![event("", "{\"a\":1}")]),
            (
                &["data: {\"a\"", ":1}\r\n", "\r\n"],
                vec![event("", "{\"a\":1}")],
            ),
            (
                &["event: endpoint\ndata: /messages?sessionId=x\n\n"],
                vec![event("endpoint", "/messages?sessionId=x")],
            ),
            (&["data: a\ndata: b\n\n"], vec![event("", "a\nb")]),
            (
                &[": keep-alive\n\n", "id: 1\ndata:\n\n"],
                vec![event("", "")],
            ),
            (&["data: unfinished\n"], vec![]),
        ];
        for (chunks, expected) in cases {
            assert_eq!(&parse(chunks), expected, "{chunks:?}");
        }
    }
}
