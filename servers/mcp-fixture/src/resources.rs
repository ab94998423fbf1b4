//! The fixture's resources: one static text resource and one URI template.
//!
//! They give the gateway something stable to list, read, template-expand and
//! subscribe to, with contents a test can predict from the URI alone.

use rmcp::{
    ErrorData as McpError,
    model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate},
};

/// URI of the static resource.
pub const README_URI: &str = "fixture://readme";
/// URI template of the item resources.
pub const ITEM_TEMPLATE: &str = "fixture://items/{id}";
const ITEM_PREFIX: &str = "fixture://items/";
const TEXT_PLAIN: &str = "text/plain";

/// The resources listed by `resources/list`.
pub fn list() -> Vec<Resource> {
    vec![
        Resource::new(README_URI, "readme")
            .with_title("About this server")
            .with_description("A short text naming this fixture server.")
            .with_mime_type(TEXT_PLAIN),
    ]
}

/// The templates listed by `resources/templates/list`.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(ITEM_TEMPLATE, "item")
            .with_title("Item")
            .with_description("Item number {id}; reads as the text \"item {id}\".")
            .with_mime_type(TEXT_PLAIN),
    ]
}

/// The text of the readme resource for a server called `server_name`.
pub fn readme_text(server_name: &str) -> String {
    format!(
        "{server_name} is the MCP fixture server of mcp-gateway: a predictable backend for \
         tests and benchmarks.\n"
    )
}

/// The id named by an item URI, if `uri` is one.
pub fn item_id(uri: &str) -> Option<&str> {
    uri.strip_prefix(ITEM_PREFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Reads one resource.
pub fn read(server_name: &str, uri: &str) -> Result<ReadResourceResult, McpError> {
    let text = if uri == README_URI {
        readme_text(server_name)
    } else if let Some(id) = item_id(uri) {
        format!("item {id}")
    } else {
        return Err(McpError::resource_not_found(
            format!("no resource at {uri}"),
            Some(serde_json::json!({ "uri": uri })),
        ));
    };
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type(TEXT_PLAIN),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_are_single_non_empty_segments() {
        assert_eq!(item_id("fixture://items/42"), Some("42"));
        assert_eq!(item_id("fixture://items/"), None);
        assert_eq!(item_id("fixture://items/a/b"), None);
        assert_eq!(item_id("fixture://other/1"), None);
    }

    #[test]
    fn reading_an_unknown_uri_is_an_error() {
        assert!(read("x", "fixture://nope").is_err());
        let item = read("x", "fixture://items/7").expect("item resource");
        let json = serde_json::to_value(&item).expect("serializable");
        assert_eq!(json["contents"][0]["text"], "item 7");
        assert_eq!(json["contents"][0]["uri"], "fixture://items/7");
    }
}
