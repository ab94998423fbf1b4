//! The `mcp-fixture` command: see the library ([`mcp_fixture::run`]) for what it serves.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    mcp_fixture::run(std::env::args_os())
}
