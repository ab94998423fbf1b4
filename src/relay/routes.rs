//! Routing state for messages that are not request/response pairs: which downstream request
//! an upstream id (and so a progress token or a server→client request) belongs to, and how
//! many sessions hold each resource subscription.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::session::Flight;

/// A request in flight, keyed by the upstream session it went on ([`Connection::serial`]) and
/// the id the gateway gave it there.
///
/// [`Connection::serial`]: crate::upstream::Connection
type FlightKey = (u64, u64);

#[derive(Default)]
pub struct Routes {
    /// (upstream session, upstream request id) → the downstream request it serves.
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
        lock(&self.routes.flights).remove(&(self.flight.conn, self.flight.upstream_id));
        self.flight
            .session
            .remove_flight(&self.flight.downstream_id);
    }
}

// === impl Routes ===

impl Routes {
    pub fn track(&self, flight: Arc<Flight>) -> FlightGuard<'_> {
        lock(&self.flights).insert((flight.conn, flight.upstream_id), flight.clone());
        flight.session.add_flight(flight.clone());
        FlightGuard {
            routes: self,
            flight,
        }
    }

    pub fn flight(&self, conn: u64, upstream_id: u64) -> Option<Arc<Flight>> {
        lock(&self.flights).get(&(conn, upstream_id)).cloned()
    }

    /// Whose a message on upstream session `conn` is when the transport does not say (stdio,
    /// legacy SSE, a streamable-HTTP message outside any request's stream), given the ids of
    /// the requests the backend has been sent and not answered (`unanswered`): see
    /// [`attribute`].
    pub fn attribute(&self, conn: u64, unanswered: &[u64]) -> Attribution {
        let flights = lock(&self.flights);
        attribute(unanswered.iter().map(|id| (*id, flights.get(&(conn, *id)))))
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

/// Who a message from a backend belongs to.
pub enum Attribution {
    /// The client of this request (the newest of that client's requests in flight there).
    Flight(Arc<Flight>),
    /// The backend is answering no client's request.
    Nobody,
    /// The backend is answering `requests` requests of `sessions` different clients: the
    /// message could be about any of them, and the gateway does not guess.
    Several { sessions: usize, requests: usize },
}

/// The rule: a message the transport does not tie to a request belongs to the client whose
/// requests the backend is answering, when they are all one client's; otherwise to nobody.
/// `unanswered` are the requests the backend has been sent and has not answered, with the
/// client request each serves. The gateway's own requests (`None`: listing, log level,
/// subscriptions) do not count: a backend does not ask its client anything to answer those,
/// and a re-listing (after every `list_changed`) must not make a client's call ambiguous.
pub fn attribute<'a>(
    unanswered: impl Iterator<Item = (u64, Option<&'a Arc<Flight>>)>,
) -> Attribution {
    let mut newest: Option<(u64, &Arc<Flight>)> = None;
    let mut sessions: Vec<&str> = Vec::new();
    let mut requests = 0;
    for (id, f) in unanswered.filter_map(|(id, f)| Some((id, f?))) {
        requests += 1;
        if !sessions.contains(&&*f.session.id) {
            sessions.push(&f.session.id);
        }
        if newest.is_none_or(|(n, _)| id > n) {
            newest = Some((id, f));
        }
    }
    match (newest, sessions.len()) {
        (Some((_, f)), 1) => Attribution::Flight(f.clone()),
        (None, _) => Attribution::Nobody,
        (Some(_), sessions) => Attribution::Several { sessions, requests },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Frontend, Session};
    use serde_json::Value;
    use tokio::sync::Notify;
    use tokio_util::sync::CancellationToken;

    fn flight(session: &Arc<Session>, conn: u64, upstream_id: u64) -> Arc<Flight> {
        Arc::new(Flight {
            session: session.clone(),
            downstream_id: Value::from(upstream_id),
            sink: session.outbound().clone(),
            backend: Arc::from("be"),
            conn,
            upstream_id,
            progress_token: None,
            cancel: CancellationToken::new(),
            progress: Notify::new(),
        })
    }

    fn session() -> Arc<Session> {
        Session::new(Frontend::Sse, 8).0
    }

    #[test]
    fn one_request_in_flight_is_its_clients() {
        let r = Routes::default();
        let a = session();
        let _f = r.track(flight(&a, 1, 7));
        match r.attribute(1, &[7]) {
            Attribution::Flight(f) => assert_eq!(f.session.id, a.id),
            _ => panic!("one request in flight: it is that request's client's"),
        }
    }

    #[test]
    fn requests_of_one_client_are_that_clients() {
        let r = Routes::default();
        let a = session();
        let _f1 = r.track(flight(&a, 1, 1));
        let _f2 = r.track(flight(&a, 1, 2));
        match r.attribute(1, &[2, 1]) {
            Attribution::Flight(f) => {
                assert_eq!(f.session.id, a.id);
                assert_eq!(f.upstream_id, 2, "the newest of them");
            }
            _ => panic!("all requests in flight are one client's"),
        }
    }

    #[test]
    fn requests_of_several_clients_are_nobodys() {
        let r = Routes::default();
        let (a, b) = (session(), session());
        let _f1 = r.track(flight(&a, 1, 1));
        let _f2 = r.track(flight(&b, 1, 2));
        let _f3 = r.track(flight(&a, 1, 3));
        match r.attribute(1, &[1, 2, 3]) {
            Attribution::Several { sessions, requests } => {
                assert_eq!((sessions, requests), (2, 3))
            }
            _ => panic!("two clients' requests in flight: the gateway must not guess"),
        }
    }

    #[test]
    fn the_gateways_own_requests_do_not_count() {
        let r = Routes::default();
        let a = session();
        let _f = r.track(flight(&a, 1, 1));
        // 2 is unanswered and serves no client: the gateway's own re-listing, say.
        assert!(matches!(r.attribute(1, &[1, 2]), Attribution::Flight(f) if f.session.id == a.id));
        assert!(matches!(r.attribute(1, &[2]), Attribution::Nobody));
    }

    #[test]
    fn only_requests_the_backend_is_answering_count() {
        let r = Routes::default();
        let (a, b) = (session(), session());
        let _f1 = r.track(flight(&a, 1, 1));
        // B's request is tracked but not sent yet (or already answered): the backend cannot
        // be asking about it.
        let _f2 = r.track(flight(&b, 1, 2));
        assert!(matches!(r.attribute(1, &[1]), Attribution::Flight(f) if f.session.id == a.id));
    }

    #[test]
    fn no_request_in_flight_is_nobodys_and_other_sessions_do_not_count() {
        let r = Routes::default();
        let a = session();
        assert!(matches!(r.attribute(1, &[]), Attribution::Nobody));
        // Upstream session 2's request 1 is not session 1's request 1.
        let f = r.track(flight(&a, 2, 1));
        assert!(matches!(r.attribute(1, &[]), Attribution::Nobody));
        assert!(
            matches!(r.attribute(1, &[1]), Attribution::Nobody),
            "an id of session 1 with no flight of session 1 is the gateway's own"
        );
        drop(f);
        let b = session();
        let g = r.track(flight(&b, 1, 2));
        let _h = r.track(flight(&a, 2, 3));
        assert!(
            matches!(r.attribute(1, &[2]), Attribution::Flight(f) if f.session.id == b.id),
            "a request on another upstream session does not make this one ambiguous"
        );
        drop(g);
        assert!(
            matches!(r.attribute(1, &[]), Attribution::Nobody),
            "a request that ended no longer counts"
        );
    }

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
