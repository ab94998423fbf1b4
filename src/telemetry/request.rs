//! One client request as metrics and traces see it: its labels, learnt while the relay routes
//! it, its span, and the trace context it came with. Recorded once, when it is answered.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde_json::Value;
use tracing::Span;

use super::context::TraceContext;
use super::labels::{self, Label, Outcome};
use super::metrics::Metrics;
use super::trace;

pub struct Observed {
    started: Instant,
    method: &'static str,
    tool: Label,
    /// The backend the request was routed to, once known.
    backend: OnceLock<Arc<str>>,
    /// Set where the relay knows better than the response can say (timeout, backend down).
    outcome: OnceLock<Outcome>,
    /// The request's span (disabled when tracing is off).
    pub span: Span,
    /// The trace context the client sent, passed on to backends.
    pub remote: Option<TraceContext>,
}

// === impl Observed ===

impl Observed {
    /// `method` is the request's method as sent; `tool` its label (see [`labels`]).
    pub fn new(method: &str, tool: Label, span: Span, remote: Option<TraceContext>) -> Self {
        Self {
            started: Instant::now(),
            method: labels::method(method),
            tool,
            backend: OnceLock::new(),
            outcome: OnceLock::new(),
            span,
            remote,
        }
    }

    /// The request goes to `backend`.
    pub fn route(&self, backend: &Arc<str>) {
        let _ = self.backend.set(backend.clone());
        self.span.record("mcp_gateway.backend", &**backend);
    }

    /// How the request ended, when the response alone cannot tell.
    pub fn end_as(&self, outcome: Outcome) {
        let _ = self.outcome.set(outcome);
    }

    /// Count the request and close its span. `response` is what the client gets (`Null`
    /// when it cancelled).
    pub fn finish(self, metrics: &Metrics, response: &Value) {
        let response = Some(response).filter(|r| !r.is_null());
        let outcome = self
            .outcome
            .get()
            .copied()
            .unwrap_or_else(|| Outcome::of_response(response));
        let backend = match self.backend.get() {
            Some(b) => Label::from(b),
            None => Label::Static(labels::NONE),
        };
        metrics.request(
            self.method,
            backend,
            self.tool,
            outcome,
            self.started.elapsed(),
        );
        trace::record_outcome(&self.span, outcome, response);
    }
}
