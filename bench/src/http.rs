//! HTTP/1.1 over loopback TCP: one connection per client, `TCP_NODELAY` on, nothing pooled.
//!
//! A client that owns its connection measures the server, not a pool: every request of a
//! client goes down the same socket, as an MCP SDK client's would, and a broken connection is
//! replaced on the next request. Targets must be loopback addresses.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where a server listens: its socket address, the `Host` it is asked for, and a path.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: String,
    pub path: String,
}

impl Target {
    /// Parses `http://HOST:PORT[/PATH]`; refuses anything but a loopback address.
    pub async fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))?;
        if !addr.ip().is_loopback() {
            bail!("{url}: the benchmark only targets loopback addresses");
        }
        Ok(Self {
            addr,
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// A request to `path` with `Host` set (hyper's connection-level client does not add it).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(Full::new(body))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }
}

/// One open HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("cannot connect to {}", target.addr))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<Response<Incoming>> {
        self.sender.ready().await.context("connection closed")?;
        self.sender
            .send_request(request)
            .await
            .context("request failed")
    }

    fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// A client's connection, opened on first use and again after it breaks.
pub struct Client {
    pub target: Target,
    conn: Option<Conn>,
}

impl Client {
    pub fn new(target: Target) -> Self {
        Self { target, conn: None }
    }

    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut conn = match self.conn.take() {
            Some(conn) if conn.is_open() => conn,
            _ => Conn::open(&self.target).await?,
        };
        let response = conn.send(request).await?;
        self.conn = Some(conn);
        Ok(response)
    }

    /// Forgets the connection: after a timeout its state is unknown.
    pub fn reset(&mut self) {
        self.conn = None;
    }
}

/// The whole body.
pub async fn read_all(body: Incoming) -> anyhow::Result<Bytes> {
    Ok(body.collect().await.context("reading the body")?.to_bytes())
}

/// A response header as text.
pub fn header<'a>(response: &'a Response<Incoming>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}
