//! Which replica writes status: the holder of a `coordination.k8s.io` Lease.
//!
//! Every replica serves every backend; only status and Events need one writer. The Lease is
//! kept by `kube-lease-manager` (server-side apply on the Lease, renewed before it expires),
//! released on shutdown so that another replica takes over at once rather than after the
//! lease duration.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Seconds a lease stays valid without renewal.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry at which the holder renews.
const GRACE_SECONDS: u64 = 5;
const RETRY: Duration = Duration::from_secs(5);

/// Whether this replica leads, kept current until `shutdown`.
pub fn elect(
    client: Client,
    name: &str,
    namespace: &str,
    identity: &str,
    shutdown: CancellationToken,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let (name, namespace, identity) = (name.to_owned(), namespace.to_owned(), identity.to_owned());
    tokio::spawn(async move {
        let manager = loop {
            let built = LeaseManagerBuilder::new(client.clone(), &name)
                .with_namespace(&namespace)
                .with_identity(&identity)
                .with_duration(LEASE_SECONDS)
                .with_grace(GRACE_SECONDS)
                .with_field_manager(format!("mcp-gateway-lease-{identity}"))
                .build()
                .await;
            match built {
                Ok(manager) => break manager,
                Err(error) => {
                    tracing::warn!(lease = %format!("{namespace}/{name}"),
                        "cannot use the Lease, status writing waits: {error}");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        };
        let (mut leads, task) = manager.watch().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = leads.changed() => {
                    if changed.is_err() { break }
                    let now = *leads.borrow_and_update();
                    if tx.send(now).is_err() { break }
                }
            }
        }
        let _ = tx.send(false);
        // Dropping the receiver makes the manager release the Lease and end.
        drop(leads);
        if tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .is_err()
        {
            tracing::warn!("the Lease was not released in time; it expires on its own");
        }
    });
    rx
}
