//! One published list (the tools, the prompts, …) as each backend's part of it.
//!
//! A list is what its backends publish one after the other, backends in name order, each
//! backend's items in its listing's order. Kept as a persistent ordered map from backend to an
//! immutable slice, a new snapshot replaces the slice of the backend that changed and shares
//! every other backend's (and most of the map's nodes) with the snapshot before: O(log
//! backends) to publish one backend's part, however long the list.
//!
//! The price is paid by readers who want an item by position: they walk the parts, summing
//! their lengths (O(backends), pointer work only) to find where to start. Lists are read from
//! a position once per page or piece of an answer, so this stays small next to writing the
//! items themselves.

use std::fmt;
use std::sync::Arc;

use imbl::OrdMap;

/// A list published by many backends: each backend's items, in backend-name order. Backends
/// that publish nothing in this list have no part.
pub struct Section<T> {
    parts: OrdMap<Arc<str>, Arc<[T]>>,
    len: usize,
}

impl<T> Section<T> {
    /// How many items the list has (all backends).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every item, in list order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.parts.values().flat_map(|part| part.iter())
    }

    /// The items `backend` publishes in this list.
    pub fn of(&self, backend: &str) -> &[T] {
        self.parts.get(backend).map_or(&[], |part| part)
    }

    /// The items from position `at` on, a part (or the rest of one) at a time: the parts
    /// before it are skipped by their lengths.
    pub(super) fn slices_from(&self, mut at: usize) -> impl Iterator<Item = &[T]> + '_ {
        let mut parts = self.parts.values();
        let mut first: &[T] = &[];
        for part in parts.by_ref() {
            if at < part.len() {
                first = &part[at..];
                break;
            }
            at -= part.len();
        }
        std::iter::once(first).chain(parts.map(|part| &**part))
    }

    /// Make `part` `backend`'s part (an empty one removes it).
    pub(super) fn put(&mut self, backend: &Arc<str>, part: Arc<[T]>) {
        let old = if part.is_empty() {
            self.parts.remove(&**backend)
        } else {
            let len = part.len();
            self.len += len;
            self.parts.insert(backend.clone(), part)
        };
        self.len -= old.map_or(0, |old| old.len());
    }

    /// Take `old`'s part of each backend whose part is equal in both, so that a section built
    /// from scratch shares what did not change with the one it replaces (and
    /// [`Section::same_as`] skips it).
    pub(super) fn share_with(&mut self, old: &Self)
    where
        T: PartialEq,
    {
        let same: Vec<(Arc<str>, Arc<[T]>)> = (self.parts.iter())
            .filter_map(|(backend, part)| {
                let before = old.parts.get(backend)?;
                (!Arc::ptr_eq(part, before) && part == before)
                    .then(|| (backend.clone(), before.clone()))
            })
            .collect();
        for (backend, part) in same {
            self.parts.insert(backend, part);
        }
    }

    /// Whether both lists hold equal items in the same order (`eq` compares two items).
    /// Parts shared by both are skipped without looking at their items, so after a change to
    /// one backend this costs O(backends) plus that backend's items.
    pub(super) fn same_as(&self, other: &Self, eq: impl Fn(&T, &T) -> bool) -> bool {
        if self.len != other.len {
            return false;
        }
        if self.parts.ptr_eq(&other.parts) {
            return true;
        }
        let (mut xs, mut ys) = (self.parts.values(), other.parts.values());
        // What is left of the current part on each side, and whether it is a whole part.
        let (mut x, mut y): (&[T], &[T]) = (&[], &[]);
        let (mut x_whole, mut y_whole) = (false, false);
        loop {
            if x.is_empty() {
                match xs.next() {
                    Some(part) => (x, x_whole) = (part, true),
                    // Parts are never empty: both lists end here if `other`'s does.
                    None => return y.is_empty() && ys.next().is_none(),
                }
            }
            if y.is_empty() {
                match ys.next() {
                    Some(part) => (y, y_whole) = (part, true),
                    None => return false,
                }
            }
            if x_whole && y_whole && std::ptr::eq(x, y) {
                (x, y) = (&[], &[]);
                continue;
            }
            let n = x.len().min(y.len());
            if !x[..n].iter().zip(&y[..n]).all(|(a, b)| eq(a, b)) {
                return false;
            }
            (x, y) = (&x[n..], &y[n..]);
            (x_whole, y_whole) = (false, false);
        }
    }

    /// The backends' parts that differ from `old`'s (added or replaced), skipping the map's
    /// nodes both share.
    pub(super) fn changed_parts<'a>(&'a self, old: &'a Self) -> impl Iterator<Item = &'a [T]>
    where
        T: PartialEq,
    {
        old.parts.diff(&self.parts).filter_map(|d| match d {
            imbl::ordmap::DiffItem::Add(_, part) => Some(&**part),
            imbl::ordmap::DiffItem::Update { new: (_, part), .. } => Some(&**part),
            imbl::ordmap::DiffItem::Remove(..) => None,
        })
    }
}

impl<T> Clone for Section<T> {
    fn clone(&self) -> Self {
        Self {
            parts: self.parts.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for Section<T> {
    fn default() -> Self {
        Self {
            parts: OrdMap::new(),
            len: 0,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Section<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
