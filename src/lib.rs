//! mcp-gateway: one MCP endpoint in front of many MCP servers.
#![forbid(unsafe_code)]

pub mod admin;
pub mod catalog;
pub mod config;
pub mod frontend;
pub mod jsonrpc;
pub mod k8s;
pub mod redact;
pub mod relay;
pub mod reload;
pub mod session;
pub mod spec;
mod sync;
pub mod telemetry;
pub mod upstream;
