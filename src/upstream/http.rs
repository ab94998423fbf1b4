//! Placeholder until the transport lands.
use super::transport::{InboundTx, TransportError};
use crate::spec::HttpSpec;
pub struct HttpTransport;
impl HttpTransport {
    pub async fn connect(
        _backend: &str,
        spec: &HttpSpec,
        _client: reqwest::Client,
        _inbound: InboundTx,
        _t: std::time::Duration,
    ) -> Result<Self, TransportError> {
        Err(TransportError::Connect {
            url: spec.url.clone(),
            detail: "not built yet".into(),
        })
    }
    pub async fn send(&self, _msg: serde_json::Value) -> Result<(), TransportError> {
        Err(TransportError::Closed)
    }
    pub async fn close(&self) {}
}
