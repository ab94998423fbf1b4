//! What the micro-benchmarks feed the gateway: messages as clients and backends send them,
//! and catalogs of synthetic tools shaped like `mcp-fixture --synthetic-tools` (a name like a
//! real server's, a ~150-byte description, an input schema of 3–5 properties: about 500 bytes
//! of JSON per tool).

use std::sync::Arc;

use mcp_gateway::catalog::{Catalog, Listing};
use mcp_gateway::spec::{BackendSpec, HttpSpec, ToolFilter, TransportSpec};
use serde_json::{Value, json};

/// The gateway's allocator (as in its binary), so allocations cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A client's `tools/call` with arguments and a progress token, as its POST body.
pub const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"fx0042__search_issue_0005","arguments":{"workspace":"acme","query":"is:open label:bug sort:updated","limit":20},"_meta":{"progressToken":"client-progress-42"}}}"#;

/// A client's notification.
pub const CANCELLED: &str = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":41,"reason":"the user pressed stop"}}"#;

/// A backend's answer to a `tools/call` (the gateway's upstream id), text and structured.
pub const TOOL_RESULT: &str = r#"{"jsonrpc":"2.0","id":1234,"result":{"content":[{"type":"text","text":"search_issue_0005: ok, 3 issues matched: #101 crash on start, #117 wrong totals in the invoice view, #123 slow search"}],"structuredContent":{"tool":"search_issue_0005","arguments":{"workspace":"acme","query":"is:open label:bug sort:updated","limit":20}},"isError":false}}"#;

/// A backend's progress for the gateway's upstream request 1234.
pub const PROGRESS: &str = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1234,"progress":3,"total":10,"message":"searching"}}"#;

/// `text` parsed; the constants above are valid JSON.
pub fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

const VERBS: [(&str, &str); 8] = [
    ("list", "Lists"),
    ("get", "Gets"),
    ("create", "Creates"),
    ("update", "Updates"),
    ("delete", "Deletes"),
    ("search", "Searches"),
    ("archive", "Archives"),
    ("export", "Exports"),
];

const NOUNS: [(&str, &str); 16] = [
    ("issue", "issue"),
    ("pull_request", "pull request"),
    ("repository", "repository"),
    ("branch", "branch"),
    ("commit_comment", "commit comment"),
    ("label", "label"),
    ("milestone", "milestone"),
    ("release", "release"),
    ("workflow_run", "workflow run"),
    ("deployment", "deployment"),
    ("webhook", "webhook"),
    ("team_member", "team member"),
    ("project_card", "project card"),
    ("invoice", "invoice"),
    ("customer", "customer record"),
    ("support_ticket", "support ticket"),
];

/// Synthetic tool number `index`, the same as the fixture's; `revision` > 0 changes its
/// description (a backend that lists again after an update).
pub fn tool(index: usize, revision: usize) -> Value {
    let (verb, verb_text) = VERBS[index % VERBS.len()];
    let (noun, noun_text) = NOUNS[(index / VERBS.len()) % NOUNS.len()];
    let mut description = format!(
        "{verb_text} the {noun_text} identified by the given workspace and id. Returns its id, \
         URL, state and timestamps; fails with not_found if it does not exist."
    );
    if revision > 0 {
        description.push_str(&format!(" (revision {revision})"));
    }
    let mut properties = json!({
        "workspace": {"type": "string", "description": "Workspace or organisation slug."},
        "id": {"type": "string", "description": format!("Identifier of the {noun_text}.")},
    });
    let mut required = vec!["workspace"];
    match verb {
        "list" | "search" | "export" => {
            properties["query"] = json!({"type": "string", "description": "Filter expression."});
            properties["limit"] =
                json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20});
            properties["state"] = json!({"type": "string", "enum": ["open", "closed", "all"]});
        }
        "create" | "update" => {
            properties["title"] = json!({"type": "string", "maxLength": 256});
            properties["body"] = json!({"type": "string", "description": "Markdown text."});
            properties["draft"] = json!({"type": "boolean", "default": false});
            required.push("title");
        }
        _ => required.push("id"),
    }
    json!({
        "name": format!("{verb}_{noun}_{index:04}"),
        "description": description,
        "inputSchema": {"type": "object", "properties": properties, "required": required},
    })
}

/// A listing of `tools` synthetic tools (and nothing else).
pub fn listing(tools: usize, revision: usize) -> Arc<Listing> {
    Arc::new(Listing {
        tools: (0..tools).map(|i| tool(i, revision)).collect(),
        ..Listing::default()
    })
}

/// Backend number `index`'s name, also its prefix: `fx0042`.
pub fn backend(index: usize) -> String {
    format!("fx{index:04}")
}

/// A streamable-HTTP backend prefixed with its name (the transport plays no part here).
pub fn spec(name: &str) -> BackendSpec {
    BackendSpec {
        name: name.to_owned(),
        transport: TransportSpec::StreamableHttp(HttpSpec {
            url: "http://127.0.0.1:1/mcp".into(),
            headers: Default::default(),
        }),
        prefix: name.to_owned(),
        tools: ToolFilter::default(),
        timeout: None,
        disabled: false,
    }
}

/// A catalog of `backends` backends listing `tools` synthetic tools each; every backend
/// shares one listing, as the fixtures list the same tools.
pub fn catalog(backends: usize, tools: usize) -> Catalog {
    let mut catalog = Catalog::new(mcp_gateway::spec::DEFAULT_SEPARATOR);
    let listing = listing(tools, 0);
    for i in 0..backends {
        let name = backend(i);
        catalog.apply(&spec(&name));
        catalog.set_listing(&name, Some(listing.clone()));
    }
    catalog
}
