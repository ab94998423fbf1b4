//! Reaching the API server, once, before the gateway listens: with `--kubernetes` the
//! McpBackend resources are what the gateway serves, so a gateway that cannot find or reach
//! the cluster says so and exits, rather than listening with no backends to serve. Once it
//! runs, a lost API server is waited out (the watch resumes with backoff).

use std::time::Duration;

use kube::Client;

use crate::telemetry::logs::chain;

/// Longest wait for the API server's first answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why `--kubernetes` cannot start. Each says what it tried, once.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "--kubernetes: no cluster to connect to. Set KUBECONFIG (or create ~/.kube/config), \
         or run in a pod with a service account. Tried: {0}"
    )]
    NoConfig(String),
    #[error("--kubernetes: cannot use the Kubernetes configuration: {0}")]
    Config(String),
    #[error("--kubernetes: cannot reach the Kubernetes API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The cluster from KUBECONFIG (or `~/.kube/config`) or the pod's service account, once its
/// API server has answered (`GET /version`) within `wait`.
pub async fn connect(wait: Duration) -> Result<Client, ConnectError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| ConnectError::NoConfig(crate::redact::text(&chain(&e)).into_owned()))?;
    let url = crate::redact::url(&config.cluster_url.to_string());
    let client = Client::try_from(config).map_err(|e| ConnectError::Config(describe(&e)))?;
    match tokio::time::timeout(wait, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(ConnectError::Unreachable {
            url,
            reason: describe(&e),
        }),
        Err(_) => Err(ConnectError::Unreachable {
            url,
            reason: format!("no answer within {} s", wait.as_secs()),
        }),
    }
}

fn describe(e: &kube::Error) -> String {
    crate::redact::text(&chain(e)).into_owned()
}
