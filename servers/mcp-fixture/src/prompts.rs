//! The fixture's prompt (`greet`) and argument completion.
//!
//! Completion answers come from fixed lists filtered by prefix, so a test can
//! tell exactly which values a `completion/complete` request must return.

use rmcp::{
    ErrorData as McpError,
    model::{
        ArgumentInfo, CompleteResult, CompletionInfo, GetPromptResult, JsonObject, Prompt,
        PromptArgument, PromptMessage, Reference, Role,
    },
};

use crate::resources::ITEM_TEMPLATE;

/// Name of the one prompt.
pub const GREET: &str = "greet";
/// Values offered for the `name` argument of `greet`.
pub const NAMES: &[&str] = &["alice", "albert", "bob", "carol"];
/// Values offered for the `style` argument of `greet`.
pub const STYLES: &[&str] = &["casual", "formal"];
/// Values offered for the `id` argument of the item template.
pub const ITEM_IDS: &[&str] = &["1", "2", "3"];

/// The prompts listed by `prompts/list`.
pub fn list() -> Vec<Prompt> {
    vec![
        Prompt::new(
            GREET,
            Some("Greets someone by name."),
            Some(vec![
                PromptArgument::new("name")
                    .with_description("Who to greet.")
                    .with_required(true),
                PromptArgument::new("style")
                    .with_description("Tone of the greeting, e.g. casual or formal.")
                    .with_required(false),
            ]),
        )
        .with_title("Greeting"),
    ]
}

fn string_argument<'a>(arguments: Option<&'a JsonObject>, name: &str) -> Option<&'a str> {
    arguments?.get(name)?.as_str()
}

/// Renders a prompt.
pub fn get(name: &str, arguments: Option<&JsonObject>) -> Result<GetPromptResult, McpError> {
    if name != GREET {
        return Err(McpError::invalid_params(
            format!("unknown prompt: {name}"),
            None,
        ));
    }
    let who = string_argument(arguments, "name").ok_or_else(|| {
        McpError::invalid_params("prompt greet requires the string argument `name`", None)
    })?;
    let description = match string_argument(arguments, "style") {
        Some(style) => format!("A {style} greeting for {who}."),
        None => format!("A greeting for {who}."),
    };
    Ok(GetPromptResult::new(vec![PromptMessage::new_text(
        Role::User,
        format!("Hello, {who}!"),
    )])
    .with_description(description))
}

/// The entries of `candidates` that start with `prefix`, in order.
pub fn filter_prefix(candidates: &[&str], prefix: &str) -> Vec<String> {
    candidates
        .iter()
        .filter(|candidate| candidate.starts_with(prefix))
        .map(|candidate| (*candidate).to_owned())
        .collect()
}

/// Answers `completion/complete`.
pub fn complete(
    reference: &Reference,
    argument: &ArgumentInfo,
) -> Result<CompleteResult, McpError> {
    let candidates: &[&str] = match (
        reference.as_prompt_name(),
        reference.as_resource_uri(),
        argument.name.as_str(),
    ) {
        (Some(GREET), _, "name") => NAMES,
        (Some(GREET), _, "style") => STYLES,
        (_, Some(ITEM_TEMPLATE), "id") => ITEM_IDS,
        _ => &[],
    };
    let values = filter_prefix(candidates, &argument.value);
    let completion = CompletionInfo::with_all_values(values)
        .map_err(|error| McpError::internal_error(error, None))?;
    Ok(CompleteResult::new(completion))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_filter_keeps_order_and_matches_only_prefixes() {
        assert_eq!(filter_prefix(NAMES, "al"), ["alice", "albert"]);
        assert_eq!(filter_prefix(NAMES, ""), NAMES);
        assert_eq!(filter_prefix(NAMES, "lice"), Vec::<String>::new());
        assert_eq!(filter_prefix(NAMES, "B"), Vec::<String>::new());
    }

    #[test]
    fn completion_routes_by_reference_and_argument() {
        let names = complete(
            &Reference::for_prompt(GREET),
            &ArgumentInfo::new("name", "c"),
        )
        .expect("completion");
        assert_eq!(names.completion.values, ["carol"]);
        assert_eq!(names.completion.total, Some(1));

        let ids = complete(
            &Reference::for_resource(ITEM_TEMPLATE),
            &ArgumentInfo::new("id", ""),
        )
        .expect("completion");
        assert_eq!(ids.completion.values, ["1", "2", "3"]);

        let unknown = complete(
            &Reference::for_prompt("other"),
            &ArgumentInfo::new("name", ""),
        )
        .expect("completion");
        assert!(unknown.completion.values.is_empty());
    }

    #[test]
    fn greet_requires_a_name() {
        assert!(get(GREET, None).is_err());
        assert!(get("nope", None).is_err());
        let mut arguments = JsonObject::new();
        arguments.insert("name".into(), "Ada".into());
        let prompt = get(GREET, Some(&arguments)).expect("prompt");
        let json = serde_json::to_value(&prompt).expect("serializable");
        assert_eq!(json["messages"][0]["role"], "user");
        assert_eq!(json["messages"][0]["content"]["text"], "Hello, Ada!");
    }
}
