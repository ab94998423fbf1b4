//! The HTTP listener: streamable HTTP at `/mcp`, legacy SSE at `/sse` + `/messages`, and the
//! ops endpoints, on one axum router. Plus what the transports share: body parsing with the
//! gateway's error bodies, SSE response streams, the `Host` guard, idle-session expiry.

pub mod sse;
pub mod stdio;
pub mod streamable;

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde_json::Value;
use std::future::Future;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::jsonrpc;
use crate::relay::Gateway;
use crate::session::Frontend;

/// Streamable-HTTP sessions with no traffic and no open stream for this long are closed.
const SESSION_IDLE: Duration = Duration::from_secs(60 * 60);

/// Who may connect, by `Host` header (a guard against DNS rebinding when bound to loopback).
#[derive(Clone)]
pub struct HostGuard {
    /// `None` accepts any host.
    allowed: Option<Arc<[String]>>,
}

impl HostGuard {
    /// Bound to loopback: only loopback names plus `extra`. Bound elsewhere: any host, unless
    /// `extra` lists some. `"*"` in `extra` accepts any.
    pub fn new(bind: IpAddr, extra: &[String]) -> Self {
        if extra.iter().any(|h| h == "*") || (!bind.is_loopback() && extra.is_empty()) {
            return Self { allowed: None };
        }
        let mut allowed: Vec<String> = extra.iter().map(|h| h.to_ascii_lowercase()).collect();
        if bind.is_loopback() {
            allowed.extend(["localhost", "127.0.0.1", "[::1]", "::1"].map(String::from));
        }
        Self {
            allowed: Some(allowed.into()),
        }
    }

    fn allows(&self, host: Option<&str>) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let Some(host) = host else { return false };
        let name = match host.rfind(':') {
            Some(i) if !host.ends_with(']') => &host[..i],
            _ => host,
        };
        let name = name.to_ascii_lowercase();
        allowed.iter().any(|a| *a == name || *a == host)
    }
}

/// The whole HTTP surface.
pub fn router(gw: Arc<Gateway>, guard: HostGuard) -> Router {
    let limit = gw.settings.max_body_bytes;
    let mcp = Router::new()
        .route(
            "/mcp",
            post(streamable::post)
                .get(streamable::get)
                .delete(streamable::delete),
        )
        .route("/sse", get(sse::connect))
        .route("/messages", post(sse::message))
        .layer(middleware::from_fn_with_state(guard, check_host))
        .layer(DefaultBodyLimit::max(limit));
    Router::new()
        .merge(mcp)
        .merge(crate::admin::router())
        .with_state(gw)
}

async fn check_host(State(guard): State<HostGuard>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if guard.allows(host) {
        return next.run(req).await;
    }
    streamable::error_response(
        StatusCode::FORBIDDEN,
        &format!(
            "Host {:?} is not allowed; add it to gateway.allowedHosts",
            host.unwrap_or_default()
        ),
    )
}

/// Parse a POST body as JSON, or answer 400 with a JSON-RPC parse error.
pub(crate) fn parse_body(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(json_response(
            StatusCode::BAD_REQUEST,
            jsonrpc::parse_error(e),
        ))
    })
}

pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

type OnDrop = Box<dyn FnOnce(mpsc::Receiver<Value>) + Send>;

/// A stream of JSON-RPC messages as SSE `message` events, optionally preceded by one event
/// and with an action when the client goes away (it is handed the receiver back).
pub(crate) struct Outbound {
    rx: Option<mpsc::Receiver<Value>>,
    first: Option<Event>,
    on_drop: Option<OnDrop>,
    /// Ends the stream when the session is closed (DELETE, expiry, shutdown).
    until: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl Outbound {
    pub(crate) fn new(rx: mpsc::Receiver<Value>) -> Self {
        Self {
            rx: Some(rx),
            first: None,
            on_drop: None,
            until: None,
        }
    }

    pub(crate) fn until(mut self, token: CancellationToken) -> Self {
        self.until = Some(Box::pin(token.cancelled_owned()));
        self
    }

    pub(crate) fn first(mut self, event: Event) -> Self {
        self.first = Some(event);
        self
    }

    pub(crate) fn on_drop(
        mut self,
        f: impl FnOnce(mpsc::Receiver<Value>) + Send + 'static,
    ) -> Self {
        self.on_drop = Some(Box::new(f));
        self
    }
}

impl Stream for Outbound {
    type Item = Result<Event, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(until) = this.until.as_mut()
            && until.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        rx.poll_recv(cx)
            .map(|m| m.map(|v| Ok(Event::default().event("message").data(v.to_string()))))
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if let (Some(rx), Some(f)) = (self.rx.take(), self.on_drop.take()) {
            f(rx);
        }
    }
}

/// An SSE response for `rx`; with `park`, the receiver goes back to that session when the
/// client disconnects, so a later GET can pick it up.
pub(crate) fn sse_body(
    rx: mpsc::Receiver<Value>,
    park: Option<Arc<crate::session::Session>>,
) -> Response {
    let mut out = Outbound::new(rx);
    if let Some(s) = park {
        out = out.until(s.closed.clone());
        out = out.on_drop(move |rx| s.return_outbound(rx));
    }
    Sse::new(out)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Close streamable-HTTP sessions nobody has used for a long time.
pub async fn expire_idle_sessions(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for s in gw.sessions.all() {
            if s.frontend == Frontend::StreamableHttp && s.idle_for() > SESSION_IDLE {
                tracing::debug!(session = %s.id, "closing idle session");
                gw.close(&s).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_guard() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let any: IpAddr = [0, 0, 0, 0].into();
        let g = HostGuard::new(lo, &[]);
        assert!(g.allows(Some("127.0.0.1:8900")));
        assert!(g.allows(Some("localhost")));
        assert!(g.allows(Some("[::1]:80")));
        assert!(!g.allows(Some("evil.example:8900")));
        assert!(!g.allows(None));
        let g = HostGuard::new(lo, &["gw.internal".into()]);
        assert!(g.allows(Some("gw.internal:8900")));
        assert!(HostGuard::new(any, &[]).allows(Some("anything")));
        let g = HostGuard::new(any, &["mcp-gateway.mcp.svc".into()]);
        assert!(g.allows(Some("mcp-gateway.mcp.svc:8900")));
        assert!(!g.allows(Some("other")));
        assert!(HostGuard::new(lo, &["*".into()]).allows(Some("x")));
    }
}
