//! How the relay describes a client request to metrics and traces before serving it: which
//! tool it names (if the catalog knows it), its span, and the trace context it came with.

use serde_json::Value;

use super::Gateway;
use crate::jsonrpc;
use crate::session::{Frontend, Session};
use crate::telemetry::labels::{self, Label};
use crate::telemetry::trace::{self, Incoming, Subject, Wire};
use crate::telemetry::{Observed, TraceContext};

// === impl Gateway ===

impl Gateway {
    /// Start observing a request. A context in `params._meta` wins over one from the HTTP
    /// request (`carrier`), as the MCP conventions ask.
    pub(super) fn observe(
        &self,
        session: &Session,
        msg: &Value,
        carrier: Option<&TraceContext>,
    ) -> Observed {
        let method = jsonrpc::method(msg).unwrap_or_default();
        let params = jsonrpc::params(msg);
        let param = |k: &str| params.and_then(|p| p.get(k)).and_then(Value::as_str);
        let snap = self.catalog.current();
        let (subject, named, tool) = match (method, param("name"), param("uri")) {
            ("tools/call", Some(name), _) => match snap.tool(name) {
                Some(_) => (Subject::Tool(name), true, self.metrics.tool_label(name)),
                None => (Subject::Tool(name), false, Label::Static(labels::UNKNOWN)),
            },
            ("tools/call", None, _) => (Subject::None, false, Label::Static(labels::UNKNOWN)),
            ("prompts/get", Some(name), _) => (
                Subject::Prompt(name),
                snap.prompt(name).is_some(),
                Label::Static(labels::NONE),
            ),
            ("resources/read" | "resources/subscribe" | "resources/unsubscribe", _, Some(uri)) => {
                (Subject::Resource(uri), false, Label::Static(labels::NONE))
            }
            _ => (Subject::None, false, Label::Static(labels::NONE)),
        };
        let remote = TraceContext::from_meta(msg).or_else(|| carrier.cloned());
        let wire = match session.frontend {
            Frontend::Stdio => Wire::Pipe,
            Frontend::StreamableHttp | Frontend::Sse => Wire::Http,
        };
        let span = trace::server_span(
            &Incoming {
                method: labels::method(method),
                subject,
                named,
                id: jsonrpc::id(msg).unwrap_or(&Value::Null),
                session: &session.id,
                frontend: session.frontend.as_str(),
                wire,
            },
            remote.as_ref(),
        );
        Observed::new(self.metrics.clone(), method, tool, span, remote)
    }
}
