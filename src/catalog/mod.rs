//! The catalog: which public tool, prompt, resource and template belongs to which backend.
//!
//! `Catalog` is a synchronous index with no I/O: backends are applied and removed, their
//! listings set when they (re)connect, and every change rebuilds an immutable [`Snapshot`].
//! [`CatalogHandle`] publishes snapshots on a `watch` channel, so the request path reads one
//! `Arc<Snapshot>` without locks and sessions learn about changes by watching.
//!
//! Names are resolved deterministically: backends are visited in name order, so the outcome
//! does not depend on which backend happened to start first. A collision is never silent:
//! the loser is renamed (tools, prompts) or hidden (resource URIs) and reported.

pub mod naming;
pub mod uri_template;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::Value;
use tokio::sync::watch;

use crate::spec::{BackendSpec, ToolFilter};
use uri_template::UriTemplate;

/// Everything a backend lists, read to the end of every page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
}

/// A published tool or prompt: its public definition and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub public: String,
    pub backend: Arc<str>,
    pub upstream: String,
    /// The upstream definition with `name` replaced by the public name; every other field as
    /// the backend sent it.
    pub def: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResourceEntry {
    pub uri: String,
    pub backend: Arc<str>,
    pub def: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TemplateEntry {
    pub template: String,
    pub backend: Arc<str>,
    pub def: Value,
    matcher: UriTemplate,
}

/// Two backends (or two upstream names of one backend) wanted the same public name or URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collision {
    pub kind: &'static str,
    pub name: String,
    pub winner: String,
    pub loser: String,
    /// The loser's public name after renaming; `None` when it was hidden.
    pub renamed: Option<String>,
}

/// An immutable view of the whole catalog.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub tools: Vec<Entry>,
    pub prompts: Vec<Entry>,
    pub resources: Vec<ResourceEntry>,
    pub templates: Vec<TemplateEntry>,
    pub collisions: Vec<Collision>,
    tool_index: HashMap<String, usize>,
    prompt_index: HashMap<String, usize>,
    resource_index: HashMap<String, usize>,
    /// Published (tools, prompts, resources, templates) per backend, counted once per
    /// snapshot: the admin views and the metrics ask for every backend's counts.
    counts: HashMap<Arc<str>, [usize; 4]>,
}

/// The index. Pure: no I/O, no clocks.
#[derive(Debug)]
pub struct Catalog {
    separator: String,
    backends: BTreeMap<Arc<str>, Backend>,
}

#[derive(Debug)]
struct Backend {
    prefix: String,
    filter: Filter,
    listing: Option<Arc<Listing>>,
}

#[derive(Debug)]
struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

// === impl Catalog ===

impl Catalog {
    pub fn new(separator: impl Into<String>) -> Self {
        Self {
            separator: separator.into(),
            backends: BTreeMap::new(),
        }
    }

    /// Add or replace a backend. Its listing is kept when only naming or filtering changed,
    /// so that re-applying an unchanged spec publishes the same names.
    pub fn apply(&mut self, spec: &BackendSpec) {
        let listing = self
            .backends
            .remove(spec.name.as_str())
            .and_then(|b| b.listing);
        self.backends.insert(
            Arc::from(spec.name.as_str()),
            Backend {
                prefix: spec.prefix.clone(),
                filter: Filter::new(&spec.tools),
                listing,
            },
        );
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.backends.remove(name).is_some()
    }

    /// Set (or clear, when the backend went down) what a backend lists. Unknown backends are
    /// ignored: a listing may arrive just after its backend was removed.
    pub fn set_listing(&mut self, name: &str, listing: Option<Arc<Listing>>) {
        if let Some(b) = self.backends.get_mut(name) {
            b.listing = listing;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut tool_names = Names::default();
        let mut prompt_names = Names::default();
        for (name, backend) in &self.backends {
            let Some(listing) = &backend.listing else {
                continue;
            };
            for def in &listing.tools {
                let Some(upstream) = def.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if !backend.filter.allows(upstream) {
                    continue;
                }
                let public = naming::public_name(&backend.prefix, &self.separator, upstream);
                let public = tool_names.claim(public, name, upstream, "tool", &mut snap.collisions);
                snap.tools.push(entry(public, name, upstream, def));
            }
            for def in &listing.prompts {
                let Some(upstream) = def.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let public = naming::public_name(&backend.prefix, &self.separator, upstream);
                let public =
                    prompt_names.claim(public, name, upstream, "prompt", &mut snap.collisions);
                snap.prompts.push(entry(public, name, upstream, def));
            }
            for def in &listing.resources {
                let Some(uri) = def.get("uri").and_then(Value::as_str) else {
                    continue;
                };
                if let Some(&i) = snap.resource_index.get(uri) {
                    snap.collisions.push(Collision {
                        kind: "resource",
                        name: uri.to_owned(),
                        winner: snap.resources[i].backend.to_string(),
                        loser: name.to_string(),
                        renamed: None,
                    });
                    continue;
                }
                snap.resource_index
                    .insert(uri.to_owned(), snap.resources.len());
                snap.resources.push(ResourceEntry {
                    uri: uri.to_owned(),
                    backend: name.clone(),
                    def: def.clone(),
                });
            }
            for def in &listing.templates {
                let Some(template) = def.get("uriTemplate").and_then(Value::as_str) else {
                    continue;
                };
                snap.templates.push(TemplateEntry {
                    template: template.to_owned(),
                    backend: name.clone(),
                    def: def.clone(),
                    matcher: UriTemplate::parse(template),
                });
            }
        }
        snap.tool_index = index(&snap.tools);
        snap.prompt_index = index(&snap.prompts);
        snap.counts = count(&snap);
        snap
    }
}

fn entry(public: String, backend: &Arc<str>, upstream: &str, def: &Value) -> Entry {
    let mut def = def.clone();
    if let Some(obj) = def.as_object_mut() {
        obj.insert("name".into(), Value::from(public.as_str()));
    }
    Entry {
        public,
        backend: backend.clone(),
        upstream: upstream.to_owned(),
        def,
    }
}

fn count(snap: &Snapshot) -> HashMap<Arc<str>, [usize; 4]> {
    let mut counts: HashMap<Arc<str>, [usize; 4]> = HashMap::new();
    let mut add = |backend: &Arc<str>, kind: usize| {
        counts.entry(Arc::clone(backend)).or_default()[kind] += 1;
    };
    snap.tools.iter().for_each(|e| add(&e.backend, 0));
    snap.prompts.iter().for_each(|e| add(&e.backend, 1));
    snap.resources.iter().for_each(|e| add(&e.backend, 2));
    snap.templates.iter().for_each(|e| add(&e.backend, 3));
    counts
}

fn index(entries: &[Entry]) -> HashMap<String, usize> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.public.clone(), i))
        .collect()
}

/// Public names taken so far in one snapshot build, with their owners.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    /// Take `public` for `backend`, or a disambiguated name when it is taken.
    fn claim(
        &mut self,
        public: String,
        backend: &str,
        upstream: &str,
        kind: &'static str,
        collisions: &mut Vec<Collision>,
    ) -> String {
        let Some(winner) = self.0.get(&public) else {
            self.0.insert(public.clone(), backend.to_owned());
            return public;
        };
        let winner = winner.clone();
        // Seeded by backend and upstream name: stable whatever the start order.
        let mut seed = format!("{backend}/{upstream}");
        let mut renamed = naming::disambiguated(&public, &seed);
        while self.0.contains_key(&renamed) {
            seed.push('\'');
            renamed = naming::disambiguated(&public, &seed);
        }
        collisions.push(Collision {
            kind,
            name: public,
            winner,
            loser: backend.to_owned(),
            renamed: Some(renamed.clone()),
        });
        self.0.insert(renamed.clone(), backend.to_owned());
        renamed
    }
}

// === impl Filter ===

impl Filter {
    fn new(spec: &ToolFilter) -> Self {
        Self {
            include: globs(&spec.include),
            exclude: globs(&spec.exclude),
        }
    }

    fn allows(&self, upstream: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(upstream))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(upstream))
    }
}

/// Patterns were validated when the config was loaded; one that still fails is skipped.
fn globs(patterns: &[String]) -> Option<GlobSet> {
    if patterns.is_empty() {
        return None;
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        match Glob::new(p) {
            Ok(g) => {
                b.add(g);
            }
            Err(e) => tracing::warn!(pattern = %p, error = %e, "ignoring invalid tool glob"),
        }
    }
    b.build().ok()
}

// === impl Snapshot ===

impl Snapshot {
    pub fn tool(&self, public: &str) -> Option<&Entry> {
        self.tool_index.get(public).map(|&i| &self.tools[i])
    }

    pub fn prompt(&self, public: &str) -> Option<&Entry> {
        self.prompt_index.get(public).map(|&i| &self.prompts[i])
    }

    /// The backend that serves `uri`: a listed resource first, then the first matching
    /// template in backend order.
    pub fn resource_backend(&self, uri: &str) -> Option<&Arc<str>> {
        if let Some(&i) = self.resource_index.get(uri) {
            return Some(&self.resources[i].backend);
        }
        self.templates
            .iter()
            .find(|t| t.matcher.matches(uri))
            .map(|t| &t.backend)
    }

    /// The backend that published exactly this template (for `completion/complete`).
    pub fn template_backend(&self, template: &str) -> Option<&Arc<str>> {
        self.templates
            .iter()
            .find(|t| t.template == template)
            .map(|t| &t.backend)
    }

    /// Published (tools, prompts, resources, templates) of one backend.
    pub fn counts(&self, backend: &str) -> [usize; 4] {
        self.counts.get(backend).copied().unwrap_or_default()
    }
}

/// The catalog behind a lock, publishing a fresh snapshot after every change.
pub struct CatalogHandle {
    catalog: Mutex<Catalog>,
    tx: watch::Sender<Arc<Snapshot>>,
}

// === impl CatalogHandle ===

impl CatalogHandle {
    pub fn new(catalog: Catalog) -> Self {
        let (tx, _) = watch::channel(Arc::new(catalog.snapshot()));
        Self {
            catalog: Mutex::new(catalog),
            tx,
        }
    }

    /// The current snapshot (cheap: one `Arc` clone).
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    pub fn apply(&self, spec: &BackendSpec) {
        self.update(|c| c.apply(spec));
    }

    pub fn remove(&self, name: &str) {
        self.update(|c| {
            c.remove(name);
        });
    }

    pub fn set_listing(&self, name: &str, listing: Option<Arc<Listing>>) {
        self.update(|c| c.set_listing(name, listing));
    }

    fn update(&self, f: impl FnOnce(&mut Catalog)) {
        let mut catalog = self.lock();
        f(&mut catalog);
        let snap = catalog.snapshot();
        for c in &snap.collisions {
            tracing::warn!(
                kind = c.kind,
                name = %c.name,
                winner = %c.winner,
                loser = %c.loser,
                renamed = c.renamed.as_deref().unwrap_or("(hidden)"),
                "name collision"
            );
        }
        // Published while the lock is held so that snapshots appear in update order.
        self.tx.send_replace(Arc::new(snap));
    }

    fn lock(&self) -> MutexGuard<'_, Catalog> {
        // The catalog holds no invariant a panic elsewhere could break half-way.
        crate::sync::lock(&self.catalog)
    }
}

#[cfg(test)]
mod tests;
