//! What a large catalog costs in memory: the resident size grown by building 100 backends ×
//! 500 synthetic tools (50,000) and publishing its snapshot, then by 1,000 one-backend
//! updates (each backend re-lists ten times, with changed descriptions). Run in bench/ with
//! `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0 cargo run --release -p
//! mcp-gateway-micro --example catalog_memory`: the gateway's allocator with the options
//! its binary sets, so the figures are the ones it pays.

use mcp_gateway::catalog::{CatalogHandle, List};
use mcp_gateway_micro::{backend, catalog, listing};

/// Resident set size in bytes, from /proc (0 where there is none).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = (statm.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    let (backends, tools) = (100, 500);
    let listings = [listing(tools, 1), listing(tools, 2)];
    let before = rss();
    let handle = CatalogHandle::new(catalog(backends, tools));
    let built = rss().saturating_sub(before);
    let count = handle.current().len(List::Tools);
    println!("{backends} x {tools} ({count} tools), built: {}", mib(built));
    for n in 0..1_000 {
        let name = backend((n * 37) % backends);
        // Every backend in turn, so each one's listing changes every time.
        handle.set_listing(&name, Some(listings[(n / backends) % 2].clone()));
        if n % 250 == 249 {
            let grown = rss().saturating_sub(before);
            println!("after {} updates: {}", n + 1, mib(grown));
        }
    }
}
