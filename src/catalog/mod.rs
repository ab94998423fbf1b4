//! The catalog: which public tool, prompt, resource and template belongs to which backend.
//!
//! `Catalog` is a synchronous index with no I/O: backends are applied and removed, their
//! listings set when they (re)connect, and every change publishes an immutable [`Snapshot`].
//! [`CatalogHandle`] publishes snapshots on a `watch` channel, so the request path reads one
//! `Arc<Snapshot>` without locks and sessions learn about changes by watching.
//!
//! Cost is kept where the change is. A listing is compacted once when it arrives: each
//! definition is serialized to JSON text and the parsed values are dropped, so 50,000 tools
//! hold a few tens of megabytes, not gigabytes of `Value` trees. A backend's names (prefix and
//! filter applied) are worked out when its listing or spec changes and kept. A new snapshot
//! then only links what every backend already has (shared `Arc`s, no definition is copied) and
//! indexes the names. A list answer is written from the definitions' text piece by piece as
//! the client reads it ([`Snapshot::write_items`]): no list is ever held twice.
//!
//! Names are resolved deterministically: backends are visited in name order, so the outcome
//! does not depend on which backend happened to start first. A collision is never silent:
//! the loser is renamed (tools, prompts) or hidden (resource URIs) and reported.

pub mod naming;
pub mod uri_template;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::{Map, Value};
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

/// The four lists the gateway publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl List {
    /// The member of a `*/list` result that holds the items.
    pub fn field(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
        }
    }
}

/// A tool or prompt definition as its backend listed it, serialized once.
#[derive(Debug, PartialEq, Eq)]
pub struct Def {
    pub upstream: Arc<str>,
    /// The JSON text of every member but `name`, in the backend's order, without braces
    /// (empty when `name` was the only one).
    rest: Box<str>,
}

impl Def {
    /// `None` when the definition is not an object with a string `name`.
    fn new(def: &Value) -> Option<Arc<Self>> {
        let obj = def.as_object()?;
        let upstream = obj.get("name")?.as_str()?;
        let rest: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| k.as_str() != "name")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let text = serde_json::to_string(&rest).ok()?;
        let inner = &text[1..text.len() - 1];
        Some(Arc::new(Self {
            upstream: Arc::from(upstream),
            rest: Box::from(inner),
        }))
    }

    /// Append the definition published as `public`: `{"name":<public>,<the rest>}`.
    fn write(&self, public: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\":");
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, public);
        if !self.rest.is_empty() {
            out.push(b',');
            out.extend_from_slice(self.rest.as_bytes());
        }
        out.push(b'}');
    }

    /// The definition published as `public`, as a value.
    pub fn to_value(&self, public: &str) -> Value {
        let mut text = Vec::with_capacity(self.rest.len() + public.len() + 12);
        self.write(public, &mut text);
        serde_json::from_slice(&text).unwrap_or(Value::Null)
    }
}

/// A resource or resource template as its backend listed it, serialized once.
#[derive(Debug)]
pub struct Item {
    /// The `uri` of a resource, the `uriTemplate` of a template.
    pub key: Arc<str>,
    text: Box<str>,
    /// Templates only.
    matcher: Option<UriTemplate>,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.text == other.text
    }
}

impl Item {
    fn new(def: &Value, key: &str, template: bool) -> Option<Arc<Self>> {
        let key = def.get(key)?.as_str()?;
        Some(Arc::new(Self {
            key: Arc::from(key),
            text: serde_json::to_string(def).ok()?.into_boxed_str(),
            matcher: template.then(|| UriTemplate::parse(key)),
        }))
    }

    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// A published tool or prompt: its public name, where it goes, and its definition.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub public: Arc<str>,
    pub backend: Arc<str>,
    pub upstream: Arc<str>,
    pub def: Arc<Def>,
}

impl Entry {
    /// The published definition: the backend's, with `name` replaced by the public name.
    pub fn to_value(&self) -> Value {
        self.def.to_value(&self.public)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResourceEntry {
    pub uri: Arc<str>,
    pub backend: Arc<str>,
    pub def: Arc<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TemplateEntry {
    pub template: Arc<str>,
    pub backend: Arc<str>,
    pub def: Arc<Item>,
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
    tool_index: HashMap<Arc<str>, usize>,
    prompt_index: HashMap<Arc<str>, usize>,
    resource_index: HashMap<Arc<str>, usize>,
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
    listed: Option<Arc<Listed>>,
    /// `listed` with the prefix and the filter applied: (wanted public name, definition).
    tools: Vec<(Arc<str>, Arc<Def>)>,
    prompts: Vec<(Arc<str>, Arc<Def>)>,
}

/// A listing, compacted.
#[derive(Debug, Default)]
struct Listed {
    tools: Vec<Arc<Def>>,
    prompts: Vec<Arc<Def>>,
    resources: Vec<Arc<Item>>,
    templates: Vec<Arc<Item>>,
}

impl Listed {
    fn new(listing: &Listing) -> Self {
        Self {
            tools: listing.tools.iter().filter_map(Def::new).collect(),
            prompts: listing.prompts.iter().filter_map(Def::new).collect(),
            resources: (listing.resources.iter())
                .filter_map(|d| Item::new(d, "uri", false))
                .collect(),
            templates: (listing.templates.iter())
                .filter_map(|d| Item::new(d, "uriTemplate", true))
                .collect(),
        }
    }
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
        let listed = self
            .backends
            .remove(spec.name.as_str())
            .and_then(|b| b.listed);
        let mut backend = Backend {
            prefix: spec.prefix.clone(),
            filter: Filter::new(&spec.tools),
            listed,
            tools: Vec::new(),
            prompts: Vec::new(),
        };
        backend.name_all(&self.separator);
        self.backends.insert(Arc::from(spec.name.as_str()), backend);
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.backends.remove(name).is_some()
    }

    /// Set (or clear, when the backend went down) what a backend lists. Unknown backends are
    /// ignored: a listing may arrive just after its backend was removed.
    pub fn set_listing(&mut self, name: &str, listing: Option<Arc<Listing>>) {
        self.set_listed(name, listing.map(|l| Arc::new(Listed::new(&l))));
    }

    fn set_listed(&mut self, name: &str, listed: Option<Arc<Listed>>) {
        if let Some(b) = self.backends.get_mut(name) {
            b.listed = listed;
            b.name_all(&self.separator);
        }
    }

    /// Link every backend's published entries into a snapshot. No definition is copied.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        let total = |f: fn(&Backend) -> usize| self.backends.values().map(f).sum::<usize>();
        snap.tools.reserve(total(|b| b.tools.len()));
        snap.prompts.reserve(total(|b| b.prompts.len()));
        let mut tool_names = Names::with_capacity(snap.tools.capacity());
        let mut prompt_names = Names::with_capacity(snap.prompts.capacity());
        for (name, backend) in &self.backends {
            for (wanted, def) in &backend.tools {
                let public = tool_names.claim(wanted, name, def, "tool", &mut snap.collisions);
                snap.tools.push(entry(public, name, def));
            }
            for (wanted, def) in &backend.prompts {
                let public = prompt_names.claim(wanted, name, def, "prompt", &mut snap.collisions);
                snap.prompts.push(entry(public, name, def));
            }
            let Some(listed) = &backend.listed else {
                continue;
            };
            for def in &listed.resources {
                if let Some(&i) = snap.resource_index.get(&def.key) {
                    snap.collisions.push(Collision {
                        kind: "resource",
                        name: def.key.to_string(),
                        winner: snap.resources[i].backend.to_string(),
                        loser: name.to_string(),
                        renamed: None,
                    });
                    continue;
                }
                snap.resource_index
                    .insert(def.key.clone(), snap.resources.len());
                snap.resources.push(ResourceEntry {
                    uri: def.key.clone(),
                    backend: name.clone(),
                    def: def.clone(),
                });
            }
            for def in &listed.templates {
                snap.templates.push(TemplateEntry {
                    template: def.key.clone(),
                    backend: name.clone(),
                    def: def.clone(),
                });
            }
        }
        snap.tool_index = index(&snap.tools);
        snap.prompt_index = index(&snap.prompts);
        snap.counts = count(&snap);
        snap
    }
}

// === impl Backend ===

impl Backend {
    /// Work out the wanted public names of what the backend lists (prefix and filter).
    fn name_all(&mut self, separator: &str) {
        let Some(listed) = &self.listed else {
            self.tools = Vec::new();
            self.prompts = Vec::new();
            return;
        };
        let named = |def: &Arc<Def>| {
            let public = naming::public_name(&self.prefix, separator, &def.upstream);
            (Arc::from(public), def.clone())
        };
        self.tools = (listed.tools.iter())
            .filter(|d| self.filter.allows(&d.upstream))
            .map(named)
            .collect();
        self.prompts = listed.prompts.iter().map(named).collect();
    }
}

fn entry(public: Arc<str>, backend: &Arc<str>, def: &Arc<Def>) -> Entry {
    Entry {
        public,
        backend: backend.clone(),
        upstream: def.upstream.clone(),
        def: def.clone(),
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

fn index(entries: &[Entry]) -> HashMap<Arc<str>, usize> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.public.clone(), i))
        .collect()
}

/// Public names taken so far in one snapshot build, with their owners.
struct Names(HashMap<Arc<str>, Arc<str>>);

impl Names {
    fn with_capacity(n: usize) -> Self {
        Self(HashMap::with_capacity(n))
    }

    /// Take `wanted` for `backend`, or a disambiguated name when it is taken.
    fn claim(
        &mut self,
        wanted: &Arc<str>,
        backend: &Arc<str>,
        def: &Def,
        kind: &'static str,
        collisions: &mut Vec<Collision>,
    ) -> Arc<str> {
        let Some(winner) = self.0.get(wanted) else {
            self.0.insert(wanted.clone(), backend.clone());
            return wanted.clone();
        };
        let winner = winner.to_string();
        // Seeded by backend and upstream name: stable whatever the start order.
        let mut seed = format!("{backend}/{}", def.upstream);
        let mut renamed = naming::disambiguated(wanted, &seed);
        while self.0.contains_key(renamed.as_str()) {
            seed.push('\'');
            renamed = naming::disambiguated(wanted, &seed);
        }
        collisions.push(Collision {
            kind,
            name: wanted.to_string(),
            winner,
            loser: backend.to_string(),
            renamed: Some(renamed.clone()),
        });
        let renamed: Arc<str> = Arc::from(renamed);
        self.0.insert(renamed.clone(), backend.clone());
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
            .find(|t| t.def.matcher.as_ref().is_some_and(|m| m.matches(uri)))
            .map(|t| &t.backend)
    }

    /// The backend that published exactly this template (for `completion/complete`).
    pub fn template_backend(&self, template: &str) -> Option<&Arc<str>> {
        self.templates
            .iter()
            .find(|t| &*t.template == template)
            .map(|t| &t.backend)
    }

    /// Published (tools, prompts, resources, templates) of one backend.
    pub fn counts(&self, backend: &str) -> [usize; 4] {
        self.counts.get(backend).copied().unwrap_or_default()
    }

    /// How many items `list` has.
    pub fn len(&self, list: List) -> usize {
        match list {
            List::Tools => self.tools.len(),
            List::Prompts => self.prompts.len(),
            List::Resources => self.resources.len(),
            List::Templates => self.templates.len(),
        }
    }

    /// Append the items of `list` in `range` (clamped to the list) as a JSON array.
    pub fn write(&self, list: List, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        out.push(b'[');
        let start = range.start;
        self.write_items(list, start, range, out, usize::MAX);
        out.push(b']');
    }

    /// Append items of `list` from `at` on, until the end of `range` or until `out` has grown
    /// by `budget` bytes, each preceded by a comma unless it is the first of `range`; the
    /// index to go on from. A large list is written piece by piece this way as the client
    /// reads it, never as one buffer.
    pub fn write_items(
        &self,
        list: List,
        at: usize,
        range: std::ops::Range<usize>,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> usize {
        let end = range.end.min(self.len(list));
        let limit = out.len().saturating_add(budget);
        let mut i = at.max(range.start);
        while i < end && out.len() < limit {
            if i > range.start {
                out.push(b',');
            }
            match list {
                List::Tools => self.tools[i].def.write(&self.tools[i].public, out),
                List::Prompts => self.prompts[i].def.write(&self.prompts[i].public, out),
                List::Resources => out.extend_from_slice(self.resources[i].def.text.as_bytes()),
                List::Templates => out.extend_from_slice(self.templates[i].def.text.as_bytes()),
            }
            i += 1;
        }
        i
    }

    /// Which lists differ from `old`'s: tools, prompts, resources (with templates).
    pub fn changed_since(&self, old: &Snapshot) -> [bool; 3] {
        let same = |a: &[Entry], b: &[Entry]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.public == y.public && (Arc::ptr_eq(&x.def, &y.def) || x.def == y.def)
                })
        };
        [
            !same(&old.tools, &self.tools),
            !same(&old.prompts, &self.prompts),
            old.resources != self.resources || old.templates != self.templates,
        ]
    }
}

/// A `*/list` answer as JSON text, written from a snapshot as it is sent.
pub struct ListText {
    /// `{"jsonrpc":"2.0","id":…,"result":{"tools":[`
    pub head: Vec<u8>,
    pub snap: Arc<Snapshot>,
    pub list: List,
    pub range: std::ops::Range<usize>,
    /// `]`, the `nextCursor` if there is one, `}}`
    pub tail: Vec<u8>,
}

impl std::fmt::Debug for ListText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListText")
            .field("list", &self.list)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl ListText {
    /// Append the next piece of the answer from item `at`: the head first, about `budget`
    /// bytes of items, the tail once every item is written. Returns where to go on from, or
    /// `None` when the answer is complete.
    pub fn write_piece(&self, at: usize, out: &mut Vec<u8>, budget: usize) -> Option<usize> {
        if at == self.range.start {
            out.extend_from_slice(&self.head);
        }
        let next = self
            .snap
            .write_items(self.list, at, self.range.clone(), out, budget);
        if next < self.range.end.min(self.snap.len(self.list)) {
            return Some(next);
        }
        out.extend_from_slice(&self.tail);
        None
    }

    /// Append the whole answer to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut at = self.range.start;
        while let Some(next) = self.write_piece(at, out, usize::MAX) {
            at = next;
        }
    }

    /// The whole answer in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
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

    /// Set a backend's listing. The listing is compacted before the lock is taken, so
    /// backends listing at the same time do not wait on each other's serialization.
    pub fn set_listing(&self, name: &str, listing: Option<Arc<Listing>>) {
        let listed = listing.map(|l| Arc::new(Listed::new(&l)));
        self.update(|c| c.set_listed(name, listed));
    }

    fn update(&self, f: impl FnOnce(&mut Catalog)) {
        let mut catalog = self.lock();
        f(&mut catalog);
        let snap = catalog.snapshot();
        let old = self.tx.borrow().clone();
        for c in snap
            .collisions
            .iter()
            .filter(|c| !old.collisions.contains(c))
        {
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
