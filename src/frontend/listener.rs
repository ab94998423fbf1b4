//! The HTTP listener's accept loop, with the limits a shared service needs against slow or
//! idle clients: at most `gateway.maxConnections` connections (beyond, a 503 and close), the
//! request headers within `headerTimeout`, and a connection closed once it has had no request
//! in progress and no traffic for `idleTimeout`. (The body's own deadline, `bodyTimeout`, is
//! kept where the body is read: see `frontend::check_request`.) Accepted sockets get
//! `TCP_NODELAY`, so a response's last small write is not held back for the client's ACK.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::relay::Gateway;

/// What a connection over the limit is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 5\r\n\
content-type: application/json\r\ncontent-length: 109\r\n\r\n\
{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32003,\"message\":\"too many connections (gateway.maxConnections)\"}}";
/// How long a refused connection gets to take its 503.
const REFUSE_WRITE: Duration = Duration::from_secs(1);
/// After the gateway stopped, how long open connections get to finish their last answers.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serve `app` on `listener` until the gateway stops (`gw.shutdown`), then let the open
/// connections finish their last answers (bounded).
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, app: Router) {
    let limits = gw.settings.limits.clone();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let mut warned_full = false;
    loop {
        let (stream, _peer) = tokio::select! {
            _ = gw.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            gw.metrics.connection_refused();
            if !warned_full {
                warned_full = true;
                tracing::warn!(
                    limit = limits.max_connections,
                    "connection limit reached (gateway.maxConnections); refusing new connections"
                );
            }
            tokio::spawn(refuse(stream));
            continue;
        };
        warned_full = false;
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Idle::new(stream, activity.clone(), limits.idle_timeout));
        let service = TowerToHyperService::new(counted(app.clone(), activity));
        let conn = builder.serve_connection(io, service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timeout, bad request line): nothing to add.
            let _ = conn.await;
            drop(permit);
        });
    }
    if tokio::time::timeout(CLOSE_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open at exit; closing them");
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSE_WRITE, async {
        stream.write_all(FULL).await?;
        stream.shutdown().await
    })
    .await;
}

/// `app` for one connection: each request counts as activity until its response body ends.
fn counted(
    app: Router,
    activity: Arc<Activity>,
) -> impl tower::Service<
    http::Request<Incoming>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |req: http::Request<Incoming>| {
        let busy = Busy::start(activity.clone());
        let app = app.clone();
        async move {
            let response = app.oneshot(req.map(Body::new)).await?;
            Ok(response.map(|inner| Body::new(CountedBody { inner, _busy: busy })))
        }
    })
}

/// What a connection is doing: requests in progress, and when it last moved a byte.
#[derive(Default)]
struct Activity {
    busy: AtomicUsize,
    /// Milliseconds since `EPOCH` of the last byte read or written.
    last: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last.store(now_ms(), Ordering::Relaxed);
    }
}

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ms() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One request in progress on a connection.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted until it ends.
struct CountedBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that fails its reads once the connection has been idle for `limit`: no request in
/// progress and no byte moved.
struct Idle<T> {
    io: T,
    activity: Arc<Activity>,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<T> Idle<T> {
    fn new(io: T, activity: Arc<Activity>, limit: Duration) -> Self {
        activity.touch();
        Self {
            io,
            activity,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }

    /// A write that moved bytes is traffic.
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }

    /// With nothing to read: whether the connection has been idle too long, else arm the
    /// timer for the moment it would be.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let idle_ms = now_ms().saturating_sub(self.activity.last.load(Ordering::Relaxed));
            let idle = Duration::from_millis(idle_ms);
            if self.activity.busy.load(Ordering::Acquire) > 0 {
                self.timer.as_mut().reset(Instant::now() + self.limit);
            } else if idle >= self.limit {
                return true;
            } else {
                self.timer
                    .as_mut()
                    .reset(Instant::now() + (self.limit - idle));
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.activity.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle (gateway.idleTimeout)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&r);
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_response() {
        let text = std::str::from_utf8(FULL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], crate::jsonrpc::BUSY);
    }
}
