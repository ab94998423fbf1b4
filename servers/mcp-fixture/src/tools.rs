//! The fixture's tools.
//!
//! Each tool exercises one part of the protocol the gateway must carry
//! faithfully: plain results with structured content (`echo`, `add`), progress
//! notifications and cancellation (`slow`, `cancelled_count`), tool errors
//! (`fail`), server-to-client requests (`sample`, `elicit`), resource update
//! notifications (`touch`) and request metadata such as trace context (`request_meta`).
#![allow(deprecated)] // sampling is deprecated by SEP-2577 but still part of 2025-xx protocols.

use std::time::Duration;

use rmcp::{
    ErrorData as McpError, RoleServer,
    handler::server::wrapper::Parameters,
    model::{
        CallToolResult, ContentBlock, CreateMessageRequestParams, ElicitRequestParams,
        ElicitationSchema, ProgressNotificationParam, ResourceUpdatedNotificationParam,
        SamplingMessage,
    },
    service::RequestContext,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::{Fixture, lock};

/// Maximum tokens requested from the client by `sample`.
const SAMPLE_MAX_TOKENS: u32 = 100;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// Text to send back.
    pub message: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddArgs {
    /// First addend.
    pub a: f64,
    /// Second addend.
    pub b: f64,
}

fn default_steps() -> u32 {
    5
}

fn default_interval_ms() -> u64 {
    100
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SlowArgs {
    /// Number of steps; one progress notification follows each.
    #[serde(default = "default_steps")]
    pub steps: u32,
    /// Sleep before each step, in milliseconds.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
}

fn default_count_timeout_ms() -> u64 {
    5000
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CancelledCountArgs {
    /// Wait until at least this many calls were cancelled before answering.
    #[serde(default)]
    pub at_least: Option<u64>,
    /// Longest wait for `at_least`, in milliseconds; the current count is
    /// returned when it runs out.
    #[serde(default = "default_count_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct FailArgs {
    /// Error message to return.
    pub message: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SampleArgs {
    /// Text sent to the client as the user message.
    pub prompt: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ElicitArgs {
    /// Message shown to the user.
    pub message: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TouchArgs {
    /// URI of the resource to report as updated.
    pub uri: String,
}

/// A successful result whose text is `text` and whose structured content is `structured`.
fn success(text: impl Into<String>, structured: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    result
}

/// A tool-level error (`isError: true`) carrying `message`.
fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

#[tool_router(vis = "pub(crate)")]
impl Fixture {
    #[tool(
        description = "Returns the message unchanged, as text and as structuredContent {message}."
    )]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> CallToolResult {
        let structured = json!({ "message": args.message });
        success(args.message, structured)
    }

    #[tool(
        description = "Adds two numbers; returns the sum as text and as structuredContent {sum}."
    )]
    async fn add(&self, Parameters(args): Parameters<AddArgs>) -> CallToolResult {
        let sum = args.a + args.b;
        success(sum.to_string(), json!({ "sum": sum }))
    }

    #[tool(
        description = "Sleeps `steps` times for `interval_ms` each, sending a progress notification \
                       after every step when the request has a progressToken. Stops as soon as \
                       the request is cancelled."
    )]
    async fn slow(
        &self,
        Parameters(args): Parameters<SlowArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let progress_token = context.meta.get_progress_token();
        let interval = Duration::from_millis(args.interval_ms);
        for step in 1..=args.steps {
            tokio::select! {
                biased;
                () = context.ct.cancelled() => {
                    tracing::debug!(step, "slow call cancelled");
                    self.shared.cancellations.record();
                    return tool_error(format!("cancelled at step {step}/{}", args.steps));
                }
                () = tokio::time::sleep(interval) => {}
            }
            if let Some(token) = &progress_token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(args.steps))
                    .with_message(format!("step {step}/{}", args.steps));
                if let Err(error) = context.peer.notify_progress(progress).await {
                    tracing::debug!(%error, "progress notification not delivered");
                }
            }
        }
        success(
            format!("completed {} steps", args.steps),
            json!({ "steps": args.steps }),
        )
    }

    #[tool(
        description = "Number of slow calls that were cancelled since this server started. With \
                       `at_least`, first waits (up to `timeout_ms`) for the number to reach it."
    )]
    async fn cancelled_count(
        &self,
        Parameters(args): Parameters<CancelledCountArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let cancellations = &self.shared.cancellations;
        let count = match args.at_least {
            Some(target) => tokio::select! {
                count = cancellations.wait_for(target, Duration::from_millis(args.timeout_ms)) => count,
                () = context.ct.cancelled() => cancellations.count(),
            },
            None => cancellations.count(),
        };
        success(count.to_string(), json!({ "count": count }))
    }

    #[tool(
        description = "Always fails: returns a tool result with isError true and the given message."
    )]
    async fn fail(&self, Parameters(args): Parameters<FailArgs>) -> CallToolResult {
        tool_error(args.message)
    }

    #[tool(
        description = "Asks the client to sample an answer (sampling/createMessage) to the prompt \
                       and returns the text of that answer."
    )]
    async fn sample(
        &self,
        Parameters(args): Parameters<SampleArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let declared = context
            .peer
            .peer_info()
            .is_some_and(|info| info.capabilities.sampling.is_some());
        if !declared {
            return tool_error("the client did not declare the sampling capability");
        }
        let params = CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text(args.prompt)],
            SAMPLE_MAX_TOKENS,
        );
        let answer = tokio::select! {
            answer = context.peer.create_message(params) => answer,
            () = context.ct.cancelled() => return tool_error("cancelled"),
        };
        match answer {
            Ok(answer) => {
                let text: String = answer
                    .message
                    .content
                    .iter()
                    .filter_map(|block| block.as_text())
                    .map(|text| text.text.as_str())
                    .collect();
                success(text.clone(), json!({ "text": text, "model": answer.model }))
            }
            Err(error) => tool_error(format!("sampling failed: {error}")),
        }
    }

    #[tool(
        description = "Asks the client to elicit {name: string} from the user (elicitation/create) \
                       and returns the action and content as JSON text."
    )]
    async fn elicit(
        &self,
        Parameters(args): Parameters<ElicitArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let declared = context
            .peer
            .peer_info()
            .is_some_and(|info| info.capabilities.elicitation.is_some());
        if !declared {
            return Ok(tool_error(
                "the client did not declare the elicitation capability",
            ));
        }
        let requested_schema = ElicitationSchema::builder()
            .required_string("name")
            .build()
            .map_err(|error| McpError::internal_error(error, None))?;
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: args.message,
            requested_schema,
        };
        let answer = tokio::select! {
            answer = context.peer.create_elicitation(params) => answer,
            () = context.ct.cancelled() => return Ok(tool_error("cancelled")),
        };
        Ok(match answer {
            Ok(answer) => {
                let structured = json!({ "action": answer.action, "content": answer.content });
                success(structured.to_string(), structured)
            }
            Err(error) => tool_error(format!("elicitation failed: {error}")),
        })
    }

    #[tool(
        description = "Returns the request's _meta (trace context, progress token, ...) as \
                       JSON text and as structuredContent {meta}, so a test can see what a \
                       client or gateway sent along."
    )]
    async fn request_meta(&self, context: RequestContext<RoleServer>) -> CallToolResult {
        let meta = Value::Object(context.meta.0.0.clone());
        success(meta.to_string(), json!({ "meta": meta }))
    }

    #[tool(
        description = "Sends notifications/resources/updated for the URI if this session \
                       subscribed to it; returns whether it did."
    )]
    async fn touch(
        &self,
        Parameters(args): Parameters<TouchArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let subscribed = lock(&self.subscriptions).contains(&args.uri);
        if subscribed
            && let Err(error) = context
                .peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(args.uri.clone()))
                .await
        {
            return tool_error(format!("cannot notify the client: {error}"));
        }
        let text = if subscribed {
            format!("notified {}", args.uri)
        } else {
            format!("not subscribed to {}", args.uri)
        };
        success(text, json!({ "notified": subscribed }))
    }
}
