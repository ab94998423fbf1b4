//! Routing state for messages that are not request/response pairs: which downstream request
//! an upstream id (and so a progress token or a server→client request) belongs to, and how
//! many sessions hold each resource subscription.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::session::Flight;

/// A request in flight, keyed by the backend it went to and the id the gateway gave it there.
type FlightKey = (Arc<str>, u64);

#[derive(Default)]
pub struct Routes {
    /// (backend, upstream request id) → the downstream request it serves.
    flights: Mutex<HashMap<FlightKey, Arc<Flight>>>,
    /// (backend, uri) → number of sessions subscribed.
    subscriptions: Mutex<HashMap<(Arc<str>, String), usize>>,
}

/// Removes a flight from every table when its request ends, however it ends.
pub struct FlightGuard<'a> {
    routes: &'a Routes,
    flight: Arc<Flight>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        lock(&self.routes.flights).remove(&(self.flight.backend.clone(), self.flight.upstream_id));
        self.flight
            .session
            .remove_flight(&self.flight.downstream_id);
    }
}

// === impl Routes ===

impl Routes {
    pub fn track(&self, flight: Arc<Flight>) -> FlightGuard<'_> {
        lock(&self.flights).insert((flight.backend.clone(), flight.upstream_id), flight.clone());
        flight.session.add_flight(flight.clone());
        FlightGuard {
            routes: self,
            flight,
        }
    }

    pub fn flight(&self, backend: &Arc<str>, upstream_id: u64) -> Option<Arc<Flight>> {
        lock(&self.flights)
            .get(&(backend.clone(), upstream_id))
            .cloned()
    }

    /// The newest request in flight on `backend`: the best guess for whom a server→client
    /// request is meant when the transport cannot say.
    pub fn latest_flight(&self, backend: &str) -> Option<Arc<Flight>> {
        lock(&self.flights)
            .iter()
            .filter(|((b, _), _)| &**b == backend)
            .max_by_key(|((_, id), _)| *id)
            .map(|(_, f)| f.clone())
    }

    /// Count one more subscriber; true when it is the first (subscribe upstream).
    pub fn subscribe(&self, backend: &Arc<str>, uri: &str) -> bool {
        let mut subs = lock(&self.subscriptions);
        let n = subs.entry((backend.clone(), uri.to_owned())).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Count one subscriber less; true when it was the last (unsubscribe upstream).
    pub fn unsubscribe(&self, backend: &Arc<str>, uri: &str) -> bool {
        let mut subs = lock(&self.subscriptions);
        let key = (backend.clone(), uri.to_owned());
        match subs.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                subs.remove(&key);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_refcounted_per_backend_and_uri() {
        let r = Routes::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        assert!(r.subscribe(&a, "u"));
        assert!(!r.subscribe(&a, "u"));
        assert!(r.subscribe(&b, "u"), "another backend counts apart");
        assert!(!r.unsubscribe(&a, "u"));
        assert!(r.unsubscribe(&a, "u"));
        assert!(!r.unsubscribe(&a, "u"), "never below zero");
        assert!(r.unsubscribe(&b, "u"));
    }
}
