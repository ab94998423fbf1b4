//! Synthetic tools (`--synthetic-tools N`): a large, realistic-looking catalog for
//! benchmarks of catalog scale (thousands of tools across many backends).
//!
//! Each tool gets a name like a real server's (`list_pull_requests_0042`), a description of
//! about 150 bytes and an input schema with a few typed properties, so the lists a gateway
//! builds, copies and serializes weigh what real ones do. The tools are deterministic (the
//! same N gives the same catalog in every process) and callable: a call answers with the
//! tool's name and the arguments it got.

use std::{borrow::Cow, future::Future, pin::Pin, sync::Arc};

use rmcp::{
    ErrorData as McpError,
    handler::server::{
        router::tool::{ToolRoute, ToolRouter},
        tool::ToolCallContext,
    },
    model::{CallToolResponse, CallToolResult, ContentBlock, JsonObject, Tool},
};
use serde_json::{Value, json};

use crate::server::Fixture;

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

/// The tool definition of synthetic tool number `index`.
pub fn tool(index: usize) -> Tool {
    let (verb, verb_text) = VERBS[index % VERBS.len()];
    let (noun, noun_text) = NOUNS[(index / VERBS.len()) % NOUNS.len()];
    let name = format!("{verb}_{noun}_{index:04}");
    let description = format!(
        "{verb_text} the {noun_text} identified by the given workspace and id. Returns its id, \
         URL, state and timestamps; fails with not_found if it does not exist."
    );
    Tool::new(name, description, Arc::new(schema(verb, noun_text)))
}

/// An input schema shaped by the verb: listing verbs page, writing verbs take a body.
fn schema(verb: &str, noun_text: &str) -> JsonObject {
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
    let schema = json!({"type": "object", "properties": properties, "required": required});
    match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// Adds `count` synthetic tools to `router`.
pub fn add_to(router: &mut ToolRouter<Fixture>, count: usize) {
    for index in 0..count {
        router.add_route(ToolRoute::new_dyn(tool(index), call));
    }
}

type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<CallToolResponse, McpError>> + Send + 'a>>;

/// Any synthetic tool's call: its name and arguments back, as text and structured content.
fn call(context: ToolCallContext<'_, Fixture>) -> CallFuture<'_> {
    let name: Cow<'static, str> = context.name.clone();
    let arguments = Value::Object(context.arguments.clone().unwrap_or_default());
    Box::pin(async move {
        let mut result = CallToolResult::success(vec![ContentBlock::text(format!("{name}: ok"))]);
        result.structured_content = Some(json!({"tool": name, "arguments": arguments}));
        Ok(result.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_distinct_and_weigh_like_real_ones() {
        let tools: Vec<Tool> = (0..500).map(tool).collect();
        let names: std::collections::HashSet<_> = tools.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names.len(), 500);
        for t in &tools {
            let description = t.description.as_deref().unwrap_or_default();
            assert!((120..=200).contains(&description.len()), "{description:?}");
            assert!(t.name.len() <= 64, "{}", t.name);
            assert_eq!(t.input_schema.get("type"), Some(&json!("object")));
        }
        assert_eq!(tool(42).name, tool(42).name, "deterministic");
    }
}
