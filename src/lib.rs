//! mcp-gateway: one MCP endpoint in front of many MCP servers.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod jsonrpc;
pub mod spec;
