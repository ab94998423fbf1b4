//! Publishing a change to one backend without visiting the others.
//!
//! A full build ([`Catalog::rebuilt`]) visits backends in name order and lets each tool take
//! the name it wants unless that name is taken; a later claimant is renamed to
//! `naming::disambiguated(wanted, "{backend}/{upstream}")`, with `'` appended to the seed
//! until the name is free. The outcome is simple as long as renamings never meet another
//! name (the *claims model*):
//!
//! - the first claimant of a name (the first backend in name order that wants it, at its first
//!   position) gets it;
//! - every other claimant gets its renaming, and a collision naming the first claimant's
//!   backend as the winner;
//! - resource URIs likewise, except that later claimants are hidden, not renamed.
//!
//! Who wants which name is kept in [`Claims`], so a change to backend B only has to work out
//! again what depends on the names B wanted before and wants now: B's own entries, and,
//! when B becomes or stops being the first claimant of a name others want too, the entries
//! and collisions of those others. That is O(B's items × log n), plus the items of the few
//! backends that share a name with B whose winner changed (what they publish changes too).
//!
//! The model matches the full build exactly when all public names it gives are distinct
//! (then no wanted name is ever found taken by a renaming and no renaming has to step
//! around a taken name). The snapshot's indexes hold every public name, so an incremental
//! change checks that the names it adds are not held by a backend it leaves alone; if they
//! are (a tool whose name is another's renaming, a backend listing one name three times),
//! the change takes a full build, which also says whether the model holds; until one finds
//! that it does, every change takes a full build.

use std::collections::hash_map::Entry as Slot;
use std::collections::{BTreeSet, HashSet};

use super::*;

/// Which backends want each name of one namespace (tool names, prompt names or resource
/// URIs), in name order: the first one gets it.
#[derive(Debug, Default)]
pub(super) struct Claims(HashMap<Arc<str>, Claimants>);

/// Almost every name has one claimant: kept without an allocation of its own.
#[derive(Debug)]
enum Claimants {
    One(Arc<str>),
    /// Sorted, at least two.
    Many(Vec<Arc<str>>),
}

impl Claims {
    /// The backend that gets `name`.
    fn first(&self, name: &str) -> Option<&Arc<str>> {
        match self.0.get(name)? {
            Claimants::One(b) => Some(b),
            Claimants::Many(all) => all.first(),
        }
    }

    fn all(&self, name: &str) -> &[Arc<str>] {
        match self.0.get(name) {
            None => &[],
            Some(Claimants::One(b)) => std::slice::from_ref(b),
            Some(Claimants::Many(all)) => all,
        }
    }

    fn add(&mut self, name: &Arc<str>, backend: &Arc<str>) {
        let claimants = match self.0.entry(name.clone()) {
            Slot::Vacant(slot) => {
                slot.insert(Claimants::One(backend.clone()));
                return;
            }
            Slot::Occupied(slot) => slot.into_mut(),
        };
        match claimants {
            Claimants::One(b) if b == backend => {}
            Claimants::One(b) => {
                let mut all = vec![b.clone(), backend.clone()];
                all.sort();
                *claimants = Claimants::Many(all);
            }
            Claimants::Many(all) => {
                if let Err(at) = all.binary_search(backend) {
                    all.insert(at, backend.clone());
                }
            }
        }
    }

    fn remove(&mut self, name: &str, backend: &str) {
        let Some(claimants) = self.0.get_mut(name) else {
            return;
        };
        match claimants {
            Claimants::One(b) => {
                if &**b == backend {
                    self.0.remove(name);
                }
            }
            Claimants::Many(all) => {
                if let Ok(at) = all.binary_search_by(|b| (**b).cmp(backend)) {
                    all.remove(at);
                }
                if let [last] = all.as_slice() {
                    *claimants = Claimants::One(last.clone());
                }
            }
        }
    }
}

/// What one change publishes, worked out before anything is touched.
#[derive(Default)]
struct Plan {
    tools: Changes<Entry>,
    prompts: Changes<Entry>,
    resources: Changes<ResourceEntry>,
    templates: Vec<(Arc<str>, Vec<TemplateEntry>)>,
    collisions: Vec<(Arc<str>, Vec<Collision>)>,
}

/// The new parts of one list, and the edits they make to its index.
struct Changes<T> {
    parts: Vec<(Arc<str>, Vec<T>)>,
    /// Names no longer published where they were.
    dropped: Vec<Arc<str>>,
    /// Names published somewhere new (another backend, or another position in the same).
    added: Vec<(Arc<str>, At)>,
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Self {
            parts: Vec::new(),
            dropped: Vec::new(),
            added: Vec::new(),
        }
    }
}

/// An entry that an index holds under its name.
trait Indexed: PartialEq {
    fn key(&self) -> &Arc<str>;
}

impl Indexed for Entry {
    fn key(&self) -> &Arc<str> {
        &self.public
    }
}

impl Indexed for ResourceEntry {
    fn key(&self) -> &Arc<str> {
        &self.uri
    }
}

impl<T: Indexed> Changes<T> {
    /// `backend`'s part becomes `new` (it was `old`), unless they are equal. An entry that
    /// changed but kept its name and position (a new description) leaves the index alone.
    fn part(&mut self, backend: &Arc<str>, old: &[T], new: Vec<T>) {
        let at = |pos| At {
            backend: backend.clone(),
            pos,
        };
        if old.len() == new.len() {
            let mut changed = false;
            for (pos, (o, n)) in old.iter().zip(&new).enumerate() {
                if o == n {
                    continue;
                }
                changed = true;
                if o.key() != n.key() {
                    self.dropped.push(o.key().clone());
                    self.added.push((n.key().clone(), at(pos)));
                }
            }
            if !changed {
                return;
            }
        } else {
            self.dropped.extend(old.iter().map(|o| o.key().clone()));
            (self.added).extend(
                new.iter()
                    .enumerate()
                    .map(|(pos, n)| (n.key().clone(), at(pos))),
            );
        }
        self.parts.push((backend.clone(), new));
    }

    /// Whether the names added are free once the names dropped are: held by no backend left
    /// alone, and not added twice. If so, the model's names stay distinct.
    fn fits(&mut self, index: &OrdMap<Arc<str>, At>) -> bool {
        if self.added.is_empty() {
            return true;
        }
        let dropped: HashSet<&str> = self.dropped.iter().map(|n| &**n).collect();
        let mut added = HashSet::with_capacity(self.added.len());
        let fits = self.added.iter().all(|(name, _)| {
            added.insert(&**name) && (dropped.contains(&**name) || !index.contains_key(&**name))
        });
        // A name dropped in one place and added in another is moved, not removed.
        self.dropped.retain(|n| !added.contains(&**n));
        fits
    }

    fn publish(self, section: &mut Section<T>, index: &mut OrdMap<Arc<str>, At>) {
        for name in &self.dropped {
            index.remove(&**name);
        }
        for (name, at) in self.added {
            index.insert(name, at);
        }
        for (backend, part) in self.parts {
            section.put(&backend, part.into());
        }
    }
}

impl Catalog {
    /// Publish a change of backend `name`, which wanted `old` before and wants what
    /// `self.backends` says now (nothing if it is gone).
    pub(super) fn changed(&mut self, name: &Arc<str>, old: &Wants) {
        let affected = self.claim(name, old);
        if self.exact
            && let Some(plan) = self.plan(name, &affected)
        {
            self.publish(plan);
            return;
        }
        self.rebuild();
    }

    /// Update the claims for `name`'s change; for each namespace, the backends whose
    /// outcome may change: `name`, and every claimant of a name whose first claimant changed.
    fn claim(&mut self, name: &Arc<str>, old: &Wants) -> [BTreeSet<Arc<str>>; 3] {
        let empty = Wants::default();
        let new = self.backends.get(name).map_or(&empty, |b| &b.wants);
        let mut affected: [BTreeSet<Arc<str>>; 3] = Default::default();
        for kind in KINDS {
            let claims = &mut self.claims[kind as usize];
            let affected = &mut affected[kind as usize];
            affected.insert(name.clone());
            if old.names(kind).eq(new.names(kind)) {
                // The same names (a re-listing with new definitions): the same claims.
                continue;
            }
            let before: HashSet<&Arc<str>> = old.names(kind).collect();
            let after: HashSet<&Arc<str>> = new.names(kind).collect();
            for &wanted in before.difference(&after) {
                let was_first = claims.first(wanted) == Some(name);
                claims.remove(wanted, name);
                if was_first {
                    affected.extend(claims.all(wanted).iter().cloned());
                }
            }
            for &wanted in after.difference(&before) {
                claims.add(wanted, name);
                let all = claims.all(wanted);
                if all.len() > 1 && all.first() == Some(name) {
                    affected.extend(all.iter().cloned());
                }
            }
        }
        affected
    }

    /// Work out what the affected backends publish under the claims model; `None` when the
    /// names it gives are not distinct (a full build must decide).
    fn plan(&self, name: &Arc<str>, affected: &[BTreeSet<Arc<str>>; 3]) -> Option<Plan> {
        let empty = Wants::default();
        let wants = |b: &str| self.backends.get(b).map_or(&empty, |b| &b.wants);
        let snap = &self.snap;
        let mut plan = Plan::default();
        // Each affected backend's new collisions, by namespace.
        let mut lost: BTreeMap<&Arc<str>, [Option<Vec<Collision>>; 3]> = BTreeMap::new();
        for kind in KINDS {
            let claims = &self.claims[kind as usize];
            for b in &affected[kind as usize] {
                let w = wants(b);
                let collisions = match kind {
                    Kind::Tool => {
                        let (entries, collisions) = named(kind, claims, b, &w.tools);
                        plan.tools.part(b, snap.tools.of(b), entries);
                        collisions
                    }
                    Kind::Prompt => {
                        let (entries, collisions) = named(kind, claims, b, &w.prompts);
                        plan.prompts.part(b, snap.prompts.of(b), entries);
                        collisions
                    }
                    Kind::Resource => {
                        let (entries, collisions) = resources(claims, b, w.resources());
                        plan.resources.part(b, snap.resources.of(b), entries);
                        collisions
                    }
                };
                lost.entry(b).or_default()[kind as usize] = Some(collisions);
            }
        }
        let fits = plan.tools.fits(&snap.tool_index)
            && plan.prompts.fits(&snap.prompt_index)
            && plan.resources.fits(&snap.resource_index);
        if !fits {
            return None;
        }
        let templates: Vec<TemplateEntry> = (wants(name).templates().iter())
            .map(|def| template_entry(name, def))
            .collect();
        if *snap.templates.of(name) != *templates {
            plan.templates.push((name.clone(), templates));
        }
        for (b, mut by_kind) in lost {
            // The namespaces left alone keep the collisions they had.
            let old = snap.collisions.of(b);
            let collisions: Vec<Collision> = KINDS
                .iter()
                .flat_map(|&kind| match by_kind[kind as usize].take() {
                    Some(new) => new,
                    None => (old.iter())
                        .filter(|c| c.kind == kind.name())
                        .cloned()
                        .collect(),
                })
                .collect();
            if *old != *collisions {
                plan.collisions.push((b.clone(), collisions));
            }
        }
        Some(plan)
    }

    fn publish(&mut self, plan: Plan) {
        let snap = &mut self.snap;
        plan.tools.publish(&mut snap.tools, &mut snap.tool_index);
        plan.prompts
            .publish(&mut snap.prompts, &mut snap.prompt_index);
        (plan.resources).publish(&mut snap.resources, &mut snap.resource_index);
        for (b, part) in plan.templates {
            snap.templates.put(&b, part.into());
        }
        for (b, part) in plan.collisions {
            snap.collisions.put(&b, part.into());
        }
    }
}

/// `backend`'s tools or prompts under the claims model, and the collisions it loses.
fn named(
    kind: Kind,
    claims: &Claims,
    backend: &Arc<str>,
    wants: &[(Arc<str>, Arc<Def>)],
) -> (Vec<Entry>, Vec<Collision>) {
    let mut seen = HashSet::with_capacity(wants.len());
    let mut collisions = Vec::new();
    let entries = (wants.iter())
        .map(|(wanted, def)| {
            let Some(winner) = lost(claims, backend, wanted, &mut seen) else {
                return entry(wanted.clone(), backend, def);
            };
            let public = renamed(wanted, backend, def);
            collisions.push(Collision {
                kind: kind.name(),
                name: wanted.to_string(),
                winner: winner.to_string(),
                loser: backend.to_string(),
                renamed: Some(public.clone()),
            });
            entry(Arc::from(public), backend, def)
        })
        .collect();
    (entries, collisions)
}

/// `backend`'s resources under the claims model, and the collisions it loses.
fn resources(
    claims: &Claims,
    backend: &Arc<str>,
    defs: &[Arc<Item>],
) -> (Vec<ResourceEntry>, Vec<Collision>) {
    let mut seen = HashSet::with_capacity(defs.len());
    let mut collisions = Vec::new();
    let mut entries = Vec::with_capacity(defs.len());
    for def in defs {
        match lost(claims, backend, &def.key, &mut seen) {
            None => entries.push(resource_entry(backend, def)),
            Some(winner) => collisions.push(Collision {
                kind: Kind::Resource.name(),
                name: def.key.to_string(),
                winner: winner.to_string(),
                loser: backend.to_string(),
                renamed: None,
            }),
        }
    }
    (entries, collisions)
}

/// Whether `backend`'s claim of `wanted` loses, and to which backend: it wins if `backend`
/// is the first claimant and this is its first claim of the name (`seen` has the names
/// `backend` claimed before in the same list).
fn lost<'a>(
    claims: &'a Claims,
    backend: &'a Arc<str>,
    wanted: &'a str,
    seen: &mut HashSet<&'a str>,
) -> Option<&'a Arc<str>> {
    let again = !seen.insert(wanted);
    // `backend` claims the name, so it has a first claimant.
    let first = claims.first(wanted).unwrap_or(backend);
    (again || first != backend).then_some(first)
}
