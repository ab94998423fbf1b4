//! The catalog: which public tool, prompt, resource and template belongs to which backend.
//!
//! `Catalog` is a synchronous index with no I/O: backends are applied and removed, their
//! listings set when they (re)connect, and every change publishes an immutable [`Snapshot`].
//! [`CatalogHandle`] publishes snapshots on a `watch` channel, so the request path reads one
//! `Arc<Snapshot>` without locks and sessions learn about changes by watching.
//!
//! Cost is kept where the change is. A listing is compacted once when it arrives, before the
//! catalog's lock is taken: each definition is serialized to JSON text and the parsed values
//! are dropped, so 50,000 tools hold a few tens of megabytes, not gigabytes of `Value` trees;
//! definitions equal to ones the backend listed before are taken from the old listing, so a
//! re-listing holds one copy of what did not change. A backend's names (prefix and filter
//! applied) are worked out when its listing or spec changes.
//!
//! A snapshot is persistent: each list is every backend's part of it ([`Section`]), each name
//! index a persistent ordered map from name to (backend, position), so a new snapshot shares
//! all that the change did not touch with the one before. Publishing a change to one backend
//! costs O(its items × log n) to replace its parts and index its names, plus O(log backends)
//! map work, however large the catalog (`claims.rs` says how collisions are worked out again
//! for the names the change touched). Only while some name meets another's renaming (rare: see
//! `claims.rs`) do changes take a full build, O(every item). Reading costs a little more than a
//! flat list would: a lookup by name is two ordered-map lookups, and writing a list from a
//! position first walks the backends' parts to find it (O(backends), pointer work only). A
//! list answer is written from the definitions' text piece by piece as the client reads it
//! ([`Snapshot::write_items`]): no list is ever held twice.
//!
//! Names are resolved deterministically: backends are visited in name order, so the outcome
//! does not depend on which backend happened to start first. A collision is never silent:
//! the loser is renamed (tools, prompts) or hidden (resource URIs) and reported.

mod claims;
pub mod naming;
mod section;
pub mod uri_template;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use globset::{Glob, GlobSet, GlobSetBuilder};
use imbl::OrdMap;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::spec::{BackendSpec, ToolFilter};
use claims::Claims;
pub use section::Section;
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

/// An immutable view of the whole catalog. Each list is kept as every backend's part of it
/// ([`Section`]) and each index as a persistent map, so that snapshots share all that one
/// change did not touch: cloning one is O(1), and the next differs only by the changed
/// backends' parts and names.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub tools: Section<Entry>,
    pub prompts: Section<Entry>,
    pub resources: Section<ResourceEntry>,
    pub templates: Section<TemplateEntry>,
    /// Every collision, by the losing backend (in name order), then tools, prompts and
    /// resources, each in listing order: the order of a build that visits backends in turn.
    pub collisions: Section<Collision>,
    tool_index: OrdMap<Arc<str>, At>,
    prompt_index: OrdMap<Arc<str>, At>,
    resource_index: OrdMap<Arc<str>, At>,
}

/// Where an index finds a name: the backend's part, and the position in it. Smaller than the
/// entry itself (50,000 tools are indexed), and unchanged when only the entry's definition
/// changes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct At {
    backend: Arc<str>,
    pos: usize,
}

/// The index. Pure: no I/O, no clocks.
#[derive(Debug)]
pub struct Catalog {
    separator: String,
    backends: BTreeMap<Arc<str>, Backend>,
    /// Who wants each tool name, prompt name and resource URI (by [`Kind`]).
    claims: [Claims; 3],
    /// What is published, brought up to date change by change.
    snap: Snapshot,
    /// Whether `snap` is what `claims` say (see [`claims`]): false only after a full build
    /// found a name that neither its first claimant nor a plain renaming explains, in which
    /// case changes take full builds until one finds none.
    exact: bool,
    /// Full builds so far, for the tests to see which changes took one.
    #[cfg(test)]
    rebuilds: usize,
}

#[derive(Debug)]
struct Backend {
    prefix: String,
    filter: Filter,
    wants: Wants,
}

/// What a backend asks to publish: its listing, and its tools and prompts with the names
/// they want (prefix and filter applied).
#[derive(Debug, Default)]
struct Wants {
    listed: Option<Arc<Listed>>,
    /// (wanted public name, definition), in listing order.
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

    /// Take `old`'s definition wherever an equal one is listed again. A re-listing then holds
    /// one copy of what did not change, and the snapshot, which keeps entries that are equal
    /// to the ones it has, does not hold on to a second.
    fn share_with(&mut self, old: &Listed) {
        share(&mut self.tools, &old.tools, |d| &d.upstream);
        share(&mut self.prompts, &old.prompts, |d| &d.upstream);
        share(&mut self.resources, &old.resources, |d| &d.key);
        share(&mut self.templates, &old.templates, |d| &d.key);
    }
}

/// Replace each of `new` by the equal one of `old`: at the same place, or else by name (looked
/// up only when the names at the same place differ).
fn share<T: PartialEq>(new: &mut [Arc<T>], old: &[Arc<T>], name: impl Fn(&T) -> &str) {
    let mut by_name: Option<HashMap<&str, &Arc<T>>> = None;
    for (i, def) in new.iter_mut().enumerate() {
        let was = match old.get(i) {
            Some(was) if name(was) == name(def) => Some(was),
            _ => {
                let by_name =
                    by_name.get_or_insert_with(|| old.iter().map(|d| (name(d), d)).collect());
                by_name.get(name(def)).copied()
            }
        };
        if let Some(was) = was.filter(|was| **was == *def) {
            *def = was.clone();
        }
    }
}

#[derive(Debug)]
struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

/// The namespaces in which two backends can want the same name, in the order a backend's
/// collisions are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tool,
    Prompt,
    Resource,
}

const KINDS: [Kind; 3] = [Kind::Tool, Kind::Prompt, Kind::Resource];

impl Kind {
    /// As [`Collision::kind`] spells it.
    fn name(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Prompt => "prompt",
            Self::Resource => "resource",
        }
    }
}

// === impl Catalog ===

impl Catalog {
    pub fn new(separator: impl Into<String>) -> Self {
        Self {
            separator: separator.into(),
            backends: BTreeMap::new(),
            claims: Default::default(),
            snap: Snapshot::default(),
            exact: true,
            #[cfg(test)]
            rebuilds: 0,
        }
    }

    /// Add or replace a backend. Its listing is kept when only naming or filtering changed,
    /// so that re-applying an unchanged spec publishes the same names.
    pub fn apply(&mut self, spec: &BackendSpec) {
        let (name, old) = match self.backends.remove_entry(spec.name.as_str()) {
            Some((name, old)) => (name, old.wants),
            None => (Arc::from(spec.name.as_str()), Wants::default()),
        };
        let backend = Backend {
            prefix: spec.prefix.clone(),
            filter: Filter::new(&spec.tools),
            wants: Wants::default(),
        };
        let wants = backend.wants(old.listed.clone(), &self.separator, &old);
        self.backends
            .insert(name.clone(), Backend { wants, ..backend });
        self.changed(&name, &old);
    }

    pub fn remove(&mut self, name: &str) -> bool {
        let Some((name, old)) = self.backends.remove_entry(name) else {
            return false;
        };
        self.changed(&name, &old.wants);
        true
    }

    /// Set (or clear, when the backend went down) what a backend lists. Unknown backends are
    /// ignored: a listing may arrive just after its backend was removed.
    pub fn set_listing(&mut self, name: &str, listing: Option<Arc<Listing>>) {
        self.set_listed(name, listing.map(|l| Arc::new(Listed::new(&l))));
    }

    fn set_listed(&mut self, name: &str, listed: Option<Arc<Listed>>) {
        let Some((name, backend)) = self.backends.get_key_value(name) else {
            return;
        };
        let name = name.clone();
        let listed = listed.map(|mut listed| {
            if let (Some(new), Some(old)) = (Arc::get_mut(&mut listed), &backend.wants.listed) {
                new.share_with(old);
            }
            listed
        });
        let wants = backend.wants(listed, &self.separator, &backend.wants);
        let Some(backend) = self.backends.get_mut(&name) else {
            return;
        };
        let old = std::mem::replace(&mut backend.wants, wants);
        self.changed(&name, &old);
    }

    /// The current snapshot: O(1), it shares everything with the catalog's.
    pub fn snapshot(&self) -> Snapshot {
        self.snap.clone()
    }

    /// The snapshot built from scratch, visiting every backend: what [`Catalog::snapshot`]
    /// always equals, and what a change costs when it cannot be published incrementally.
    pub fn rebuilt(&self) -> Snapshot {
        self.build().0
    }

    /// Replace the snapshot with a full build, sharing the parts that came out equal.
    fn rebuild(&mut self) {
        let (mut snap, exact) = self.build();
        let old = &self.snap;
        snap.tools.share_with(&old.tools);
        snap.prompts.share_with(&old.prompts);
        snap.resources.share_with(&old.resources);
        snap.templates.share_with(&old.templates);
        snap.collisions.share_with(&old.collisions);
        self.snap = snap;
        self.exact = exact;
        #[cfg(test)]
        {
            self.rebuilds += 1;
        }
    }

    /// Link every backend's published entries into a snapshot, backends in name order: the
    /// first to want a name gets it. No definition is copied. Also tells whether the result
    /// is what the claims model gives (see [`claims`]).
    fn build(&self) -> (Snapshot, bool) {
        let mut snap = Snapshot::default();
        let mut exact = true;
        let mut tool_names = Names::default();
        let mut prompt_names = Names::default();
        for (name, backend) in &self.backends {
            let wants = &backend.wants;
            let mut lost = Vec::new();
            let mut named = |names: &mut Names, kind, (wanted, def): &(Arc<str>, Arc<Def>)| {
                let public = names.claim(wanted, name, def, kind, &mut lost, &mut exact);
                entry(public, name, def)
            };
            let tools: Vec<Entry> = (wants.tools.iter())
                .map(|w| named(&mut tool_names, Kind::Tool, w))
                .collect();
            let prompts: Vec<Entry> = (wants.prompts.iter())
                .map(|w| named(&mut prompt_names, Kind::Prompt, w))
                .collect();
            let mut resources = Vec::new();
            for def in wants.resources() {
                if let Some(winner) = snap.resource_index.get(&def.key) {
                    lost.push(Collision {
                        kind: Kind::Resource.name(),
                        name: def.key.to_string(),
                        winner: winner.backend.to_string(),
                        loser: name.to_string(),
                        renamed: None,
                    });
                    continue;
                }
                let at = At {
                    backend: name.clone(),
                    pos: resources.len(),
                };
                snap.resource_index.insert(def.key.clone(), at);
                resources.push(resource_entry(name, def));
            }
            let templates: Vec<TemplateEntry> = (wants.templates().iter())
                .map(|def| template_entry(name, def))
                .collect();
            for (index, entries) in [
                (&mut snap.tool_index, &tools),
                (&mut snap.prompt_index, &prompts),
            ] {
                for (pos, e) in entries.iter().enumerate() {
                    let backend = name.clone();
                    index.insert(e.public.clone(), At { backend, pos });
                }
            }
            snap.tools.put(name, tools.into());
            snap.prompts.put(name, prompts.into());
            snap.resources.put(name, resources.into());
            snap.templates.put(name, templates.into());
            snap.collisions.put(name, lost.into());
        }
        (snap, exact)
    }
}

// === impl Backend ===

impl Backend {
    /// What the backend asks to publish of `listed`: the wanted public names of its tools
    /// (filtered) and prompts. A name equal to the one `old` has at the same place is
    /// `old`'s, so that unchanged names are held once however often the backend re-lists.
    fn wants(&self, listed: Option<Arc<Listed>>, separator: &str, old: &Wants) -> Wants {
        let Some(l) = listed else {
            return Wants::default();
        };
        let named = |old: &[(Arc<str>, Arc<Def>)], i: usize, def: &Arc<Def>| {
            let public = naming::public_name(&self.prefix, separator, &def.upstream);
            let same = old.get(i).filter(|(was, _)| **was == *public);
            let public = same.map_or_else(|| Arc::from(public), |(was, _)| was.clone());
            (public, def.clone())
        };
        Wants {
            tools: (l.tools.iter())
                .filter(|d| self.filter.allows(&d.upstream))
                .enumerate()
                .map(|(i, def)| named(&old.tools, i, def))
                .collect(),
            prompts: (l.prompts.iter().enumerate())
                .map(|(i, def)| named(&old.prompts, i, def))
                .collect(),
            listed: Some(l),
        }
    }
}

// === impl Wants ===

impl Wants {
    fn resources(&self) -> &[Arc<Item>] {
        self.listed.as_deref().map_or(&[], |l| &l.resources)
    }

    fn templates(&self) -> &[Arc<Item>] {
        self.listed.as_deref().map_or(&[], |l| &l.templates)
    }

    /// The names wanted in `kind`'s namespace, in listing order.
    fn names(&self, kind: Kind) -> Box<dyn Iterator<Item = &Arc<str>> + '_> {
        match kind {
            Kind::Tool => Box::new(self.tools.iter().map(|(w, _)| w)),
            Kind::Prompt => Box::new(self.prompts.iter().map(|(w, _)| w)),
            Kind::Resource => Box::new(self.resources().iter().map(|d| &d.key)),
        }
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

fn resource_entry(backend: &Arc<str>, def: &Arc<Item>) -> ResourceEntry {
    ResourceEntry {
        uri: def.key.clone(),
        backend: backend.clone(),
        def: def.clone(),
    }
}

fn template_entry(backend: &Arc<str>, def: &Arc<Item>) -> TemplateEntry {
    TemplateEntry {
        template: def.key.clone(),
        backend: backend.clone(),
        def: def.clone(),
    }
}

/// The name a tool or prompt of `backend` gets when another took the one it wants. Seeded by
/// backend and upstream name: stable whatever the start order.
fn renamed(wanted: &str, backend: &str, def: &Def) -> String {
    naming::disambiguated(wanted, &format!("{backend}/{}", def.upstream))
}

/// Public names taken so far in one full build: their owners, and whether the owner took the
/// name as a renaming.
#[derive(Default)]
struct Names(HashMap<Arc<str>, (Arc<str>, bool)>);

impl Names {
    /// Take `wanted` for `backend`, or a disambiguated name when it is taken. `exact` is
    /// cleared when the outcome is not what the claims model gives: the wanted name was taken
    /// by a renaming, or a renaming had to step around a taken name.
    fn claim(
        &mut self,
        wanted: &Arc<str>,
        backend: &Arc<str>,
        def: &Def,
        kind: Kind,
        collisions: &mut Vec<Collision>,
        exact: &mut bool,
    ) -> Arc<str> {
        let Some((winner, by_renaming)) = self.0.get(wanted) else {
            self.0.insert(wanted.clone(), (backend.clone(), false));
            return wanted.clone();
        };
        *exact &= !by_renaming;
        let winner = winner.to_string();
        let mut renamed = renamed(wanted, backend, def);
        let mut seed = format!("{backend}/{}", def.upstream);
        while self.0.contains_key(renamed.as_str()) {
            *exact = false;
            seed.push('\'');
            renamed = naming::disambiguated(wanted, &seed);
        }
        collisions.push(Collision {
            kind: kind.name(),
            name: wanted.to_string(),
            winner,
            loser: backend.to_string(),
            renamed: Some(renamed.clone()),
        });
        let renamed: Arc<str> = Arc::from(renamed);
        self.0.insert(renamed.clone(), (backend.clone(), true));
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
        let at = self.tool_index.get(public)?;
        self.tools.of(&at.backend).get(at.pos)
    }

    pub fn prompt(&self, public: &str) -> Option<&Entry> {
        let at = self.prompt_index.get(public)?;
        self.prompts.of(&at.backend).get(at.pos)
    }

    /// The backend that serves `uri`: a listed resource first, then the first matching
    /// template in backend order.
    pub fn resource_backend(&self, uri: &str) -> Option<&Arc<str>> {
        if let Some(at) = self.resource_index.get(uri) {
            return Some(&at.backend);
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
        [
            self.tools.of(backend).len(),
            self.prompts.of(backend).len(),
            self.resources.of(backend).len(),
            self.templates.of(backend).len(),
        ]
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
        let mut w = Writer {
            at: at.max(range.start),
            first: range.start,
            end,
            limit: out.len().saturating_add(budget),
            out,
        };
        if w.at >= end {
            return w.at;
        }
        match list {
            List::Tools => w.write(&self.tools, |e, out| e.def.write(&e.public, out)),
            List::Prompts => w.write(&self.prompts, |e, out| e.def.write(&e.public, out)),
            List::Resources => w.write(&self.resources, |e, out| {
                out.extend_from_slice(e.def.text.as_bytes())
            }),
            List::Templates => w.write(&self.templates, |e, out| {
                out.extend_from_slice(e.def.text.as_bytes())
            }),
        }
        w.at
    }

    /// Which lists differ from `old`'s: tools, prompts, resources (with templates). The
    /// backends' parts that both snapshots share are not looked into, so this costs
    /// O(backends) plus the items of the backends that changed.
    pub fn changed_since(&self, old: &Snapshot) -> [bool; 3] {
        let same = |x: &Entry, y: &Entry| {
            x.public == y.public && (Arc::ptr_eq(&x.def, &y.def) || x.def == y.def)
        };
        [
            !self.tools.same_as(&old.tools, same),
            !self.prompts.same_as(&old.prompts, same),
            !(self.resources.same_as(&old.resources, PartialEq::eq)
                && self.templates.same_as(&old.templates, PartialEq::eq)),
        ]
    }

    /// The collisions of `self` that `old` does not have. Only the losers whose collisions
    /// changed are looked at.
    fn new_collisions<'a>(&'a self, old: &'a Snapshot) -> impl Iterator<Item = &'a Collision> {
        (self.collisions.changed_parts(&old.collisions))
            .flatten()
            .filter(|c| !old.collisions.of(&c.loser).contains(c))
    }
}

/// Writes a range of one list's items (see [`Snapshot::write_items`]).
struct Writer<'a> {
    at: usize,
    /// The first item of the range: the only one not preceded by a comma.
    first: usize,
    end: usize,
    /// Stop once `out` is this long.
    limit: usize,
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn write<T>(&mut self, section: &Section<T>, item: impl Fn(&T, &mut Vec<u8>)) {
        for part in section.slices_from(self.at) {
            for e in part {
                if self.at >= self.end || self.out.len() >= self.limit {
                    return;
                }
                if self.at > self.first {
                    self.out.push(b',');
                }
                item(e, self.out);
                self.at += 1;
            }
        }
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
        for c in snap.new_collisions(&old) {
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
