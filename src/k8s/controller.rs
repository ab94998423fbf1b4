//! The controller shell: watch `McpBackend`s, drive the live catalog, write status back.
//!
//! - **Watching** uses kube's `watcher` (list, then watch from the list's resourceVersion with
//!   bookmarks; on 410 Gone or a dropped connection it re-lists, with backoff). A re-list ends
//!   with `InitDone`, and whatever was tracked in that scope but not listed again was deleted
//!   while the watch was down, so it is removed then.
//! - **Reconciling** one resource = fetch the Secret/ConfigMap keys it names, [`resolve`] it,
//!   and apply the result to the gateway. The gateway restarts a backend only when its
//!   transport changed; an unchanged resource changes nothing. A periodic resync re-reads
//!   references, so a rotated Secret or one created late is picked up without an edit.
//! - **Status** is written by one task, and only while this replica holds the Lease: every
//!   replica serves every backend, one reports. It compares what it would write with the
//!   status the API holds and patches (server-side apply, own field manager, `/status`
//!   subresource) only when they differ, so replicas and restarts never fight or loop.
//! - No finalizer: deleting an `McpBackend` never waits for a gateway, and a gateway that
//!   missed the deletion catches up at its next list.

use crate::sync::lock;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::crd::{FIELD_MANAGER, McpBackend, McpBackendStatus};
use super::resolve::{self, Fetched, Reference, Refusal, StdioPolicy, backend_name};
use super::status::{self, Observed};
use crate::relay::{Gateway, Origin};
use crate::spec::BackendSpec;
use crate::upstream::Backend;

/// What the controller watches and how it behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// A label selector (`team=a,tier!=test`) the resources must match.
    pub selector: Option<String>,
    pub policy: StdioPolicy,
    /// The Lease that decides which replica writes status.
    pub lease_name: String,
    pub lease_namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// How often references are re-read.
    pub resync: Duration,
}

/// One `McpBackend` as the controller last saw and handled it.
struct Tracked {
    /// The latest object from the watch or from our own status patch.
    resource: McpBackend,
    outcome: Result<BackendSpec, Refusal>,
    /// The gateway backend whose status changes we forward, to notice a replacement.
    backend: Option<Arc<Backend>>,
}

struct Controller {
    gw: Arc<Gateway>,
    client: Client,
    opts: Options,
    tracked: Mutex<BTreeMap<String, Tracked>>,
    /// Poked whenever what status would say may have changed.
    dirty: Arc<Notify>,
}

/// Start the controller; it runs until the gateway shuts down. The gateway counts as loading
/// (not ready, not settled) from now until every watched scope has been listed once.
pub fn spawn(gw: Arc<Gateway>, client: Client, opts: Options) -> tokio::task::JoinHandle<()> {
    gw.loading.send_modify(|n| *n += 1);
    tokio::spawn(run(gw, client, opts))
}

async fn run(gw: Arc<Gateway>, client: Client, opts: Options) {
    let controller = Arc::new(Controller {
        gw: gw.clone(),
        client: client.clone(),
        opts,
        tracked: Mutex::new(BTreeMap::new()),
        dirty: Arc::new(Notify::new()),
    });
    let leader = super::lease::elect(
        client.clone(),
        &controller.opts.lease_name,
        &controller.opts.lease_namespace,
        &controller.opts.identity,
        gw.shutdown.clone(),
    );
    let writer = tokio::spawn(controller.clone().write_status(leader));
    controller.watch().await;
    let _ = writer.await;
}

// === impl Controller ===

impl Controller {
    /// The main loop: one watch per namespace (or one for all), plus the resync tick.
    async fn watch(self: &Arc<Self>) {
        let scopes: Vec<Option<String>> = match self.opts.namespaces.is_empty() {
            true => vec![None],
            false => self.opts.namespaces.iter().cloned().map(Some).collect(),
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &self.opts.selector {
            config = config.labels(selector);
        }
        let streams = scopes.iter().map(|scope| {
            let api: Api<McpBackend> = match scope {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            let scope = scope.clone();
            watch_stream(api, config.clone())
                .default_backoff()
                .map(move |event| (scope.clone(), event))
                .boxed()
        });
        let mut events = stream::select_all(streams);
        // `/readyz` waits until every scope has been listed and applied once.
        let mut unlisted: BTreeSet<Option<String>> = scopes.iter().cloned().collect();
        let mut listing: HashMap<Option<String>, BTreeSet<String>> = HashMap::new();
        let mut resync = tokio::time::interval(self.opts.resync);
        resync.tick().await;
        tracing::info!(
            namespaces = %describe_scopes(&self.opts.namespaces),
            selector = self.opts.selector.as_deref().unwrap_or(""),
            "watching McpBackend resources"
        );
        loop {
            tokio::select! {
                _ = self.gw.shutdown.cancelled() => return,
                _ = resync.tick() => self.resync().await,
                next = events.next() => {
                    let Some((scope, event)) = next else { return };
                    match event {
                        Ok(event) => {
                            let listed = matches!(event, Event::InitDone);
                            self.handle(scope.clone(), event, &mut listing).await;
                            if listed && unlisted.remove(&scope) && unlisted.is_empty() {
                                self.gw.loading.send_modify(|n| *n = n.saturating_sub(1));
                                tracing::info!(
                                    backends = lock(&self.tracked).len(),
                                    "McpBackend resources listed"
                                );
                            }
                        }
                        Err(error) => {
                            self.gw.metrics.watch_restart();
                            tracing::warn!("McpBackend watch interrupted, resuming: {error}");
                        }
                    }
                }
            }
        }
    }

    async fn handle(
        self: &Arc<Self>,
        scope: Option<String>,
        event: Event<McpBackend>,
        listing: &mut HashMap<Option<String>, BTreeSet<String>>,
    ) {
        match event {
            Event::Init => {
                listing.insert(scope, BTreeSet::new());
            }
            Event::InitApply(resource) => {
                if let Some(seen) = listing.get_mut(&scope) {
                    seen.insert(key(&resource));
                }
                self.observe(resource).await;
            }
            Event::InitDone => {
                let seen = listing.remove(&scope).unwrap_or_default();
                let gone: Vec<String> = {
                    let tracked = lock(&self.tracked);
                    tracked
                        .iter()
                        .filter(|(k, t)| in_scope(&scope, &t.resource) && !seen.contains(*k))
                        .map(|(k, _)| k.clone())
                        .collect()
                };
                for key in gone {
                    self.forget(&key).await;
                }
            }
            Event::Apply(resource) => self.observe(resource).await,
            Event::Delete(resource) => self.forget(&key(&resource)).await,
        }
    }

    /// A resource from the watch. Only a new spec is reconciled; a change of status (our own
    /// writes come back this way) or of metadata just refreshes what status is compared with.
    /// References are re-read by the periodic resync, not on every status write.
    async fn observe(self: &Arc<Self>, resource: McpBackend) {
        {
            let mut tracked = lock(&self.tracked);
            if let Some(t) = tracked.get_mut(&key(&resource))
                && t.resource.metadata.uid == resource.metadata.uid
                && t.resource.spec == resource.spec
                && t.resource.metadata.generation == resource.metadata.generation
            {
                t.resource = resource;
                drop(tracked);
                self.dirty.notify_one();
                return;
            }
        }
        self.reconcile(resource).await;
    }

    /// Resolve one resource and make the gateway serve what it says.
    async fn reconcile(self: &Arc<Self>, resource: McpBackend) {
        let started = Instant::now();
        let key = key(&resource);
        let namespace = resource.namespace().unwrap_or_else(|| "default".into());
        let refs = resolve::references(&resource.spec);
        let fetched = self.fetch(&namespace, refs).await;
        let mut outcome = resolve::resolve(&resource, &fetched, &self.opts.policy);
        let previous = lock(&self.tracked)
            .get(&key)
            .and_then(|t| t.outcome.as_ref().ok().cloned());
        let result = match &mut outcome {
            Ok(spec) if previous.as_ref() == Some(spec) => "unchanged",
            Ok(spec) => match self.gw.apply_from(Origin::Kubernetes, spec.clone()) {
                Ok(()) => {
                    tracing::info!(backend = %spec.name, transport = spec.transport_kind(),
                        generation = resource.metadata.generation, "McpBackend applied");
                    "applied"
                }
                Err(owner) => {
                    outcome = Err(Refusal {
                        reason: "NameConflict",
                        message: format!(
                            "a backend named {key:?} is already declared by the {owner}"
                        ),
                    });
                    "refused"
                }
            },
            Err(_) => "refused",
        };
        if let Err(refusal) = &outcome {
            if previous.is_some() {
                self.gw.remove_from(Origin::Kubernetes, &key).await;
            }
            tracing::warn!(backend = %key, reason = refusal.reason, "McpBackend not served: {}",
                refusal.message);
        }
        let backend = self.gw.upstreams.get(&key).filter(|_| outcome.is_ok());
        {
            let mut tracked = lock(&self.tracked);
            let before = tracked.get(&key).and_then(|t| t.backend.as_ref());
            if let Some(b) = &backend
                && !before.is_some_and(|a| Arc::ptr_eq(a, b))
            {
                tokio::spawn(forward_changes(b.watch_status(), self.dirty.clone()));
            }
            let entry = Tracked {
                resource,
                outcome,
                backend,
            };
            tracked.insert(key, entry);
        }
        self.gw.metrics.reconcile(result, started.elapsed());
        self.dirty.notify_one();
    }

    /// The resource is gone (deleted, or no longer selected): so are its tools.
    async fn forget(&self, key: &str) {
        let removed = lock(&self.tracked).remove(key);
        if removed.is_some_and(|t| t.outcome.is_ok()) {
            self.gw.remove_from(Origin::Kubernetes, key).await;
            tracing::info!(backend = %key, "McpBackend removed");
        }
        self.dirty.notify_one();
    }

    /// Re-resolve every resource: picks up Secrets and ConfigMaps that changed or appeared.
    async fn resync(self: &Arc<Self>) {
        let resources: Vec<McpBackend> = lock(&self.tracked)
            .values()
            .map(|t| t.resource.clone())
            .collect();
        for resource in resources {
            self.reconcile(resource).await;
        }
    }

    /// Read the referenced keys, each object once, with the gateway's service account.
    async fn fetch(
        &self,
        namespace: &str,
        refs: BTreeSet<Reference>,
    ) -> BTreeMap<Reference, Fetched> {
        let mut objects: HashMap<(resolve::Source, String), Result<Option<Data>, String>> =
            HashMap::new();
        let mut fetched = BTreeMap::new();
        for r in refs {
            let slot = (r.source.clone(), r.name.clone());
            if !objects.contains_key(&slot) {
                let data = self.read_object(namespace, &r.source, &r.name).await;
                objects.insert(slot.clone(), data);
            }
            let value = match &objects[&slot] {
                Err(error) => Fetched::Failed(error.clone()),
                Ok(None) => Fetched::NoObject,
                Ok(Some(data)) => match data.get(&r.key) {
                    Some(Ok(v)) => Fetched::Value(v.clone()),
                    Some(Err(e)) => Fetched::Failed(e.clone()),
                    None => Fetched::NoKey,
                },
            };
            fetched.insert(r, value);
        }
        fetched
    }

    async fn read_object(
        &self,
        namespace: &str,
        source: &resolve::Source,
        name: &str,
    ) -> Result<Option<Data>, String> {
        match source {
            resolve::Source::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let secret = api.get_opt(name).await.map_err(|e| e.to_string())?;
                Ok(secret.map(|s| {
                    let text = |(k, v): (String, k8s_openapi::ByteString)| {
                        let value = String::from_utf8(v.0)
                            .map_err(|_| format!("key {k:?} is not UTF-8 text"));
                        (k, value)
                    };
                    s.data.unwrap_or_default().into_iter().map(text).collect()
                }))
            }
            resolve::Source::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
                let map = api.get_opt(name).await.map_err(|e| e.to_string())?;
                Ok(map.map(|m| {
                    m.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, Ok(v)))
                        .collect()
                }))
            }
        }
    }

    /// The status writer: whenever something may have changed and this replica leads.
    async fn write_status(self: Arc<Self>, mut leader: watch::Receiver<bool>) {
        let mut catalog = self.gw.catalog.subscribe();
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(self.opts.identity.clone()),
            },
        );
        // Also on a tick: a write that failed (API unreachable, conflict) is tried again.
        let mut retry = tokio::time::interval(self.opts.resync);
        loop {
            if *leader.borrow_and_update() {
                self.write_all(&recorder).await;
            }
            tokio::select! {
                _ = self.gw.shutdown.cancelled() => return,
                _ = retry.tick() => {}
                _ = self.dirty.notified() => {}
                changed = catalog.changed() => if changed.is_err() { return },
                changed = leader.changed() => {
                    if changed.is_err() { return }
                    let leads = *leader.borrow();
                    tracing::info!(identity = %self.opts.identity, leads,
                        "status writer {}", if leads { "elected" } else { "standing by" });
                }
            }
        }
    }

    async fn write_all(&self, recorder: &Recorder) {
        let now = Timestamp::now();
        // Decide under the lock, write without it.
        let writes: Vec<(String, McpBackend, McpBackendStatus)> = {
            let tracked = lock(&self.tracked);
            tracked
                .iter()
                .filter_map(|(key, t)| {
                    let observed = match &t.outcome {
                        Err(refusal) => Observed::Refused(refusal.clone()),
                        Ok(_) => {
                            let backend = t.backend.as_ref()?;
                            // Status first: a backend's listing is in the catalog before it
                            // is Ready, so Ready never goes out with stale counts.
                            let s = backend.status();
                            let [tools, prompts, resources, _] =
                                self.gw.catalog.current().counts(key);
                            Observed::Backend {
                                state: s.state,
                                last_error: s.last_error,
                                server_info: s.server_info,
                                counts: [tools, prompts, resources],
                            }
                        }
                    };
                    let current = t.resource.status.as_ref();
                    let desired =
                        status::desired(t.resource.metadata.generation, &observed, current, now)?;
                    status::needs_write(current, &desired)
                        .then(|| (key.clone(), t.resource.clone(), desired))
                })
                .collect()
        };
        for (key, resource, desired) in writes {
            let transition = status::transition(resource.status.as_ref(), &desired);
            match self.patch_status(&resource, &desired).await {
                Ok(updated) => {
                    if let Some(t) = lock(&self.tracked).get_mut(&key) {
                        // Keep the newer spec if the watch delivered one meanwhile.
                        if t.resource.metadata.uid == updated.metadata.uid {
                            t.resource.status = updated.status;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(backend = %key, "cannot write McpBackend status: {error}");
                    continue;
                }
            }
            if let Some(t) = transition {
                let event = KubeEvent {
                    type_: if t.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: t.reason,
                    note: Some(t.note),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                let reference = resource.object_ref(&());
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(backend = %key, "cannot record an Event: {error}");
                }
            }
        }
    }

    async fn patch_status(
        &self,
        resource: &McpBackend,
        desired: &McpBackendStatus,
    ) -> Result<McpBackend, kube::Error> {
        let namespace = resource.namespace().unwrap_or_else(|| "default".into());
        let api: Api<McpBackend> = Api::namespaced(self.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": McpBackend::api_version(&()),
            "kind": McpBackend::kind(&()),
            "status": desired,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&resource.name_any(), &params, &Patch::Apply(&patch))
            .await
    }
}

/// Secret or ConfigMap contents: key → text, or why the key's value is unusable.
type Data = BTreeMap<String, Result<String, String>>;

fn key(resource: &McpBackend) -> String {
    backend_name(
        resource.metadata.namespace.as_deref().unwrap_or("default"),
        &resource.name_any(),
    )
}

fn in_scope(scope: &Option<String>, resource: &McpBackend) -> bool {
    scope
        .as_deref()
        .is_none_or(|ns| resource.metadata.namespace.as_deref() == Some(ns))
}

fn describe_scopes(namespaces: &[String]) -> String {
    match namespaces.is_empty() {
        true => "all".into(),
        false => namespaces.join(","),
    }
}

/// Poke `dirty` on every status change of one backend, until it is dropped.
async fn forward_changes(mut status: watch::Receiver<crate::upstream::Status>, dirty: Arc<Notify>) {
    while status.changed().await.is_ok() {
        dirty.notify_one();
    }
}

#[cfg(test)]
mod tests;
