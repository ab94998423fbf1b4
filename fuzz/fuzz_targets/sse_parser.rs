//! Fuzzes the incremental `text/event-stream` parser: bytes from a backend arrive in chunks
//! cut anywhere, so however the same stream is cut, the parser must yield the same events and
//! end in the same state as when it gets the stream in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::upstream::sse_stream::{SseEvent, SseParser};

/// The events, last event id, retry and buffered length after feeding `chunks` in order.
fn feed<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<SseEvent>, Option<String>, Option<u64>, usize) {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        parser.push_into(chunk, &mut events);
    }
    let id = parser.last_event_id().map(str::to_owned);
    (events, id, parser.retry(), parser.buffered_len())
}

/// Cuts `input` into chunks of pseudo-random lengths 0..=7 (empty chunks included: a `\r`
/// at the end of one chunk must still pair with a `\n` after an empty one).
fn varied_chunks(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 1;
    let mut rest = input;
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let (chunk, tail) = rest.split_at(((state >> 16) as usize % 8).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = feed([input]);
    for event in &whole.0 {
        assert!(!event.data.contains('\r'), "{event:?}");
        let name = event.event.as_deref().unwrap_or_default();
        assert!(!name.is_empty() || event.event.is_none(), "{event:?}");
        assert!(!name.contains(['\r', '\n']), "{event:?}");
        let id = event.id.as_deref().unwrap_or_default();
        assert!(!id.contains(['\r', '\n', '\0']), "{event:?}");
    }
    let size = usize::from(seed % 16) + 1;
    assert_eq!(feed(input.chunks(size)), whole, "chunks of {size}");
    assert_eq!(
        feed(varied_chunks(input, seed)),
        whole,
        "varied chunks, seed {seed}"
    );
});
