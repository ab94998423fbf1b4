//! Locking shared state that outlives a panicked holder.
//!
//! The gateway's mutexes guard maps and small records that a panic elsewhere cannot leave
//! half-updated in a way that matters, so a poisoned lock is taken as it is rather than
//! turning one failed task into a failed gateway.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
