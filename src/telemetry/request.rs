//! One client request as metrics and traces see it: its labels, learnt while the relay routes
//! it, its span, and the trace context it came with. Recorded once: when it is answered, or,
//! if the client went away first and the request was dropped unanswered, as cancelled.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde_json::Value;
use tracing::Span;

use super::context::TraceContext;
use super::labels::{self, Label, Outcome};
use super::metrics::Metrics;
use super::trace;

pub struct Observed {
    metrics: Arc<Metrics>,
    recorded: bool,
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
    pub fn new(
        metrics: Arc<Metrics>,
        method: &str,
        tool: Label,
        span: Span,
        remote: Option<TraceContext>,
    ) -> Self {
        Self {
            metrics,
            recorded: false,
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
    pub fn finish(mut self, response: &Value) {
        self.record(Some(response).filter(|r| !r.is_null()));
    }

    /// [`Self::finish`] for a message on its way to the client; text is only ever written
    /// for a successful answer.
    pub fn finish_message(self, response: &crate::session::Outgoing) {
        match response.value() {
            Some(v) => self.finish(v),
            None => {
                self.end_as(Outcome::Ok);
                self.finish(&Value::Null);
            }
        }
    }

    fn record(&mut self, response: Option<&Value>) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let outcome = self
            .outcome
            .get()
            .copied()
            .unwrap_or_else(|| Outcome::of_response(response));
        let backend = match self.backend.get() {
            Some(b) => Label::from(b),
            None => Label::Static(labels::NONE),
        };
        let tool = std::mem::replace(&mut self.tool, Label::Static(labels::NONE));
        self.metrics
            .request(self.method, backend, tool, outcome, self.started.elapsed());
        trace::record_outcome(&self.span, outcome, response);
    }
}

impl Drop for Observed {
    /// A request dropped before it was answered: its client went away.
    fn drop(&mut self) {
        self.record(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::exposition::Format;
    use crate::telemetry::metrics::Sample;
    use serde_json::json;

    fn count(metrics: &Metrics, outcome: &str) -> Option<String> {
        let text = metrics.render(&Sample::default(), Format::Prometheus);
        let prefix = format!(
            r#"mcp_gateway_requests_total{{method="tools/call",backend="b",tool="b__t",outcome="{outcome}"}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }

    fn observed(metrics: &Arc<Metrics>) -> Observed {
        let o = Observed::new(
            metrics.clone(),
            "tools/call",
            metrics.tool_label("b__t"),
            Span::none(),
            None,
        );
        o.route(&Arc::from("b"));
        o
    }

    #[test]
    fn recorded_once_when_answered_and_as_cancelled_when_dropped() {
        let metrics = Arc::new(Metrics::new());
        observed(&metrics).finish(&json!({"jsonrpc":"2.0","id":1,"result":{}}));
        assert_eq!(
            count(&metrics, "ok").as_deref(),
            Some("1"),
            "not again on drop"
        );

        drop(observed(&metrics));
        assert_eq!(count(&metrics, "cancelled").as_deref(), Some("1"));

        let timed_out = observed(&metrics);
        timed_out.end_as(Outcome::Timeout);
        timed_out.finish(&json!({"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"x"}}));
        assert_eq!(count(&metrics, "timeout").as_deref(), Some("1"));
        assert_eq!(count(&metrics, "error"), None, "the relay's word wins");
    }
}
