//! Kubernetes: the `McpBackend` resource and the controller that serves it.
//!
//! `crd` holds the resource's types (and generates the CustomResourceDefinition); `resolve`
//! turns one resource into a `BackendSpec` through the same function as the config file;
//! `status` decides what to report; `connect` finds and reaches the API server at start-up;
//! `controller` and `lease` are the async shells that talk to it.

mod connect;
mod controller;
pub mod crd;
mod lease;
pub mod resolve;
pub mod status;

pub use connect::{CONNECT_TIMEOUT, ConnectError, connect};
pub use controller::{Options, spawn};
pub use crd::{McpBackend, McpBackendSpec, McpBackendStatus, crd_yaml};
pub use resolve::StdioPolicy;
