//! Label values for the metrics, and the folding that keeps their number bounded.
//!
//! A label value never comes from what a client typed: methods outside the MCP method set
//! become `(other)`, names that are not in the catalog become `(unknown)`, and the set of
//! tool names the gateway ever labels with is capped.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use serde_json::Value;

/// A name the catalog does not know (an unknown tool, say).
pub const UNKNOWN: &str = "(unknown)";
/// A method or kind outside the set the gateway labels individually.
pub const OTHER: &str = "(other)";
/// Not applicable: the gateway answered itself, or the request names no tool.
pub const NONE: &str = "";

/// Distinct tool names labelled before further new ones fold into `(other)`: a guard against a
/// backend that invents tools without end.
const MAX_TOOL_LABELS: usize = 4096;

/// The client requests the gateway knows; any other method is labelled `(other)`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
];

/// Notifications the gateway sends to clients, labelled by what follows `notifications/`.
const NOTIFICATIONS: &[&str] = &[
    "tools/list_changed",
    "prompts/list_changed",
    "resources/list_changed",
    "resources/updated",
    "progress",
    "message",
    "cancelled",
];

/// Requests a backend sends to "the client".
const SERVER_REQUESTS: &[&str] = &[
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "ping",
];

/// The `method` label of a request a backend sent to the client.
pub fn server_request(method: &str) -> &'static str {
    SERVER_REQUESTS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

/// The `method` label of a client request.
pub fn method(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

/// The `kind` label of a notification sent to a client.
pub fn notification(method: &str) -> &'static str {
    let kind = method.strip_prefix("notifications/").unwrap_or(method);
    NOTIFICATIONS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or(OTHER)
}

/// How a client request ended, as the `outcome` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A result.
    Ok,
    /// A JSON-RPC error (from the gateway or the backend).
    Error,
    /// A tool result with `isError: true`: the call reached the tool and the tool failed.
    ToolError,
    /// No answer from the backend within the request timeout.
    Timeout,
    /// The client cancelled the request or went away.
    Cancelled,
    /// The owning backend was down, gone, or failed during the call.
    BackendDown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::ToolError => "tool_error",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::BackendDown => "backend_down",
        }
    }

    /// What a response says by itself: a result, a tool error, or a JSON-RPC error. `None`
    /// (no response due) means the client cancelled.
    pub fn of_response(response: Option<&Value>) -> Self {
        let Some(response) = response.filter(|r| !r.is_null()) else {
            return Self::Cancelled;
        };
        if response.get("error").is_some() {
            return Self::Error;
        }
        let failed = response
            .pointer("/result/isError")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if failed { Self::ToolError } else { Self::Ok }
    }
}

/// A label value that is either a fixed word or a name shared with the catalog. Compared and
/// hashed by its text, so the two spellings of one name are one series.
#[derive(Clone, Debug)]
pub enum Label {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Label {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
        }
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Label {}

impl Hash for Label {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl From<&Arc<str>> for Label {
    fn from(name: &Arc<str>) -> Self {
        Self::Shared(name.clone())
    }
}

/// Tool names seen in labels, each kept once so that labelling a request clones a pointer
/// instead of allocating a string.
#[derive(Default)]
pub struct Names {
    set: RwLock<HashSet<Arc<str>>>,
}

// === impl Names ===

impl Names {
    /// The label for `name`, which the caller has found in the catalog.
    pub fn label(&self, name: &str) -> Label {
        if let Some(known) = self
            .set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Label::Shared(known.clone());
        }
        let mut set = self.set.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = set.get(name) {
            return Label::Shared(known.clone());
        }
        if set.len() >= MAX_TOOL_LABELS {
            return Label::Static(OTHER);
        }
        let name: Arc<str> = Arc::from(name);
        set.insert(name.clone());
        Label::Shared(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn methods_outside_the_mcp_set_fold() {
        assert_eq!(method("tools/call"), "tools/call");
        assert_eq!(
            method("resources/templates/list"),
            "resources/templates/list"
        );
        assert_eq!(method("tools/call/../../etc"), OTHER);
        assert_eq!(method("x".repeat(500).as_str()), OTHER);
        assert_eq!(method(""), OTHER);
    }

    #[test]
    fn notification_kinds_fold() {
        assert_eq!(notification("notifications/progress"), "progress");
        assert_eq!(
            notification("notifications/tools/list_changed"),
            "tools/list_changed"
        );
        assert_eq!(notification("notifications/made_up"), OTHER);
        assert_eq!(notification("progress"), "progress");
    }

    #[test]
    fn outcomes_are_read_from_the_response() {
        let ok = json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}});
        let tool_error = json!({"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[]}});
        let error = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}});
        assert_eq!(Outcome::of_response(Some(&ok)), Outcome::Ok);
        assert_eq!(Outcome::of_response(Some(&tool_error)), Outcome::ToolError);
        assert_eq!(Outcome::of_response(Some(&error)), Outcome::Error);
        assert_eq!(Outcome::of_response(None), Outcome::Cancelled);
        assert_eq!(Outcome::of_response(Some(&Value::Null)), Outcome::Cancelled);
    }

    #[test]
    fn names_are_shared_and_capped() {
        let names = Names::default();
        let a = names.label("fx__echo");
        let b = names.label("fx__echo");
        match (&a, &b) {
            (Label::Shared(x), Label::Shared(y)) => assert!(Arc::ptr_eq(x, y), "one copy"),
            _ => panic!("known names are shared: {a:?} {b:?}"),
        }
        assert_eq!(a, Label::Static("fx__echo"), "compared by text");
        for i in 0..MAX_TOOL_LABELS {
            names.label(&format!("t{i}"));
        }
        assert_eq!(names.label("one-too-many").as_str(), OTHER);
        assert_eq!(names.label("fx__echo").as_str(), "fx__echo", "known stay");
    }
}
