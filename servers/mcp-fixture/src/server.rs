//! The fixture's `ServerHandler`: server identity, capabilities, and the glue
//! that routes each MCP method to the tools, resources and prompts modules.
//!
//! It also owns the state the fixture keeps: the per-session resource
//! subscriptions, and the process-wide count of cancelled `slow` calls that
//! lets tests check that a cancellation really reached the server.
#![allow(deprecated)] // resources/subscribe and logging are legacy-only in rmcp 3.9.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    handler::server::router::tool::ToolRouter,
    model::{
        CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResponse,
        Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
        ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
        ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
        UnsubscribeRequestParams,
    },
    service::RequestContext,
    tool_handler,
};
use tokio::sync::watch;

use crate::{prompts, resources};

/// Locks a mutex, recovering the data if another thread panicked holding it:
/// every critical section here leaves the data consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One MCP session's view of the fixture. In stdio mode there is one; in http
/// mode every session gets its own (sharing [`Shared`]).
#[derive(Clone)]
pub struct Fixture {
    name: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    /// Resource URIs this session subscribed to.
    pub(crate) subscriptions: Arc<Mutex<HashSet<String>>>,
    tool_router: Arc<ToolRouter<Fixture>>,
    /// When set, every list is served in pages of this many items.
    page_size: Option<usize>,
}

impl Fixture {
    pub fn new(name: String) -> Self {
        Self {
            name: name.into(),
            shared: Arc::default(),
            subscriptions: Arc::default(),
            tool_router: Arc::new(Self::tool_router()),
            page_size: None,
        }
    }

    /// Also list (and answer) `count` synthetic tools, for benchmarks of catalog scale.
    pub fn with_synthetic_tools(mut self, count: usize) -> Self {
        if count > 0 {
            let mut router = Self::tool_router();
            crate::synthetic::add_to(&mut router, count);
            self.tool_router = Arc::new(router);
        }
        self
    }

    /// Serve every list in pages of `size` items (a test of clients' pagination).
    pub fn with_page_size(mut self, size: Option<usize>) -> Self {
        self.page_size = size.filter(|n| *n > 0);
        self
    }

    /// One page of `items` starting at `cursor` (an offset this server handed out), as a list
    /// result made by `wrap` with the next page's cursor set.
    fn page<T, R: Paged>(
        &self,
        mut items: Vec<T>,
        request: Option<&PaginatedRequestParams>,
        wrap: fn(Vec<T>) -> R,
    ) -> Result<R, McpError> {
        let start = match request.and_then(|r| r.cursor.as_deref()) {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= items.len())
                .ok_or_else(|| McpError::invalid_params(format!("invalid cursor {c:?}"), None))?,
        };
        let Some(size) = self.page_size else {
            return Ok(wrap(items));
        };
        let end = (start + size).min(items.len());
        let next = (end < items.len()).then(|| end.to_string());
        items.truncate(end);
        let mut result = wrap(items.split_off(start));
        result.set_next_cursor(next);
        Ok(result)
    }

    /// A handler for a new http session: same name, tools and shared state,
    /// fresh subscriptions.
    pub fn for_new_session(&self) -> Self {
        Self {
            subscriptions: Arc::default(),
            ..self.clone()
        }
    }
}

/// A list result that can point at its next page.
trait Paged {
    fn set_next_cursor(&mut self, cursor: Option<String>);
}

macro_rules! paged {
    ($($t:ty),*) => {$(
        impl Paged for $t {
            fn set_next_cursor(&mut self, cursor: Option<String>) {
                self.next_cursor = cursor;
            }
        }
    )*};
}

paged!(
    ListToolsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListPromptsResult
);

/// State shared by every session of one fixture process.
#[derive(Default)]
pub struct Shared {
    pub cancellations: Cancellations,
}

/// Counts `slow` calls that saw their cancellation, and lets a caller wait for
/// the count to reach a value.
///
/// Waiting is what makes the count usable in tests: a `cancelled_count` call
/// sent right after `notifications/cancelled` may be handled before the
/// cancelled call's task has run (rmcp handles each request in its own task,
/// and through a gateway they may even travel on different connections).
pub struct Cancellations {
    count: watch::Sender<u64>,
}

impl Default for Cancellations {
    fn default() -> Self {
        Self {
            count: watch::Sender::new(0),
        }
    }
}

impl Cancellations {
    /// Records one cancelled call.
    pub fn record(&self) {
        self.count.send_modify(|count| *count += 1);
    }

    /// The number of cancelled calls so far.
    pub fn count(&self) -> u64 {
        *self.count.borrow()
    }

    /// Waits until the count is at least `target` or `limit` has passed, and
    /// returns the count then.
    pub async fn wait_for(&self, target: u64, limit: Duration) -> u64 {
        let mut receiver = self.count.subscribe();
        let _ = tokio::time::timeout(limit, receiver.wait_for(|count| *count >= target)).await;
        self.count()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                self.name.to_string(),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Test fixture: echo, add, slow (progress, cancellation), fail, sample, elicit \
                 tools; fixture://readme and fixture://items/{id} resources; greet prompt.",
            )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.page(
            self.tool_router.list_all(),
            request.as_ref(),
            ListToolsResult::with_all_items,
        )
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.page(
            resources::list(),
            request.as_ref(),
            ListResourcesResult::with_all_items,
        )
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.page(
            resources::templates(),
            request.as_ref(),
            ListResourceTemplatesResult::with_all_items,
        )
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(&self.name, &request.uri).map(Into::into)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        lock(&self.subscriptions).insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        lock(&self.subscriptions).remove(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.page(
            prompts::list(),
            request.as_ref(),
            ListPromptsResult::with_all_items,
        )
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        prompts::get(&request.name, request.arguments.as_ref()).map(Into::into)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        prompts::complete(&request.r#ref, &request.argument)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        tracing::debug!(level = ?request.level, "client set the log level");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_for_a_count_returns_once_it_is_reached() {
        let cancellations = Arc::new(Cancellations::default());
        assert_eq!(cancellations.count(), 0);
        // Not reached: gives up after the limit and reports the real count.
        assert_eq!(cancellations.wait_for(1, Duration::from_millis(1)).await, 0);

        let waiter = tokio::spawn({
            let cancellations = Arc::clone(&cancellations);
            async move { cancellations.wait_for(2, Duration::from_secs(30)).await }
        });
        cancellations.record();
        cancellations.record();
        assert_eq!(waiter.await.expect("waiter"), 2);
        // Already reached: returns at once.
        assert_eq!(cancellations.wait_for(1, Duration::from_secs(30)).await, 2);
    }
}
