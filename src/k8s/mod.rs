//! Kubernetes: the `McpBackend` resource and the controller that serves it.
//!
//! `crd` holds the resource's types (and generates the CustomResourceDefinition); `resolve`
//! turns one resource into a `BackendSpec` through the same function as the config file;
//! `status` decides what to report; `controller` and `lease` are the async shells that talk
//! to the API server.

mod controller;
pub mod crd;
mod lease;
pub mod resolve;
pub mod status;

pub use controller::{Options, run};
pub use crd::{McpBackend, McpBackendSpec, McpBackendStatus, crd_yaml};
pub use resolve::StdioPolicy;

/// Controller measurements, kept in one place so the metrics registry is the only thing
/// these calls need to know about.
mod record {
    use std::time::Duration;

    use crate::relay::Gateway;

    pub(super) fn reconcile(_gw: &Gateway, result: &'static str, elapsed: Duration) {
        tracing::debug!(
            result,
            elapsed_ms = elapsed.as_millis() as u64,
            "reconciled"
        );
    }

    pub(super) fn watch_restart(_gw: &Gateway) {}
}
