//! What an `McpBackend`'s status should say: a pure function of what the gateway knows, so
//! every decision (condition, reason, when the transition happened, whether to write, which
//! Event to emit) is table-tested without an API server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::crd::{McpBackendStatus, ServerInfo};
use super::resolve::Refusal;
use crate::upstream::State;

pub const READY: &str = "Ready";

/// What the gateway knows about one resource.
#[derive(Clone, Debug)]
pub enum Observed {
    /// The resource could not be turned into a backend (policy, references, spec).
    Refused(Refusal),
    /// Served by the gateway: the backend's state and what it publishes.
    Backend {
        state: State,
        last_error: Option<String>,
        server_info: Option<Value>,
        /// Tools, prompts, resources in the catalog.
        counts: [usize; 3],
    },
}

/// An Event worth recording about a change of the `Ready` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The status to publish for `generation`, given what was published before (`previous`), or
/// `None` when nothing should be written (the gateway is stopping).
pub fn desired(
    generation: Option<i64>,
    observed: &Observed,
    previous: Option<&McpBackendStatus>,
    now: Timestamp,
) -> Option<McpBackendStatus> {
    let (status, reason, message) = ready_condition(observed)?;
    let since = previous
        .and_then(|p| ready(p))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let condition = Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: cut(message, CONDITION_MESSAGE_MAX),
        last_transition_time: since,
        observed_generation: generation,
    };
    let (counts, server_info) = match observed {
        Observed::Backend {
            counts,
            server_info,
            ..
        } => (Some(*counts), server_info.as_ref().and_then(server_info_of)),
        Observed::Refused(_) => (None, None),
    };
    let count = |i: usize| counts.map(|c| u32::try_from(c[i]).unwrap_or(u32::MAX));
    Some(McpBackendStatus {
        observed_generation: generation,
        conditions: vec![condition],
        tools: count(0),
        prompts: count(1),
        resources: count(2),
        server_info,
    })
}

/// `(status, reason, message)` of the `Ready` condition.
fn ready_condition(observed: &Observed) -> Option<(&'static str, &'static str, String)> {
    Some(match observed {
        Observed::Refused(refusal) => ("False", refusal.reason, refusal.message.clone()),
        Observed::Backend {
            state,
            last_error,
            counts,
            ..
        } => match state {
            State::Ready => (
                "True",
                "Connected",
                format!(
                    "serving {} tools, {} prompts, {} resources",
                    counts[0], counts[1], counts[2]
                ),
            ),
            State::Starting => (
                "Unknown",
                "Starting",
                match last_error {
                    Some(e) => format!("restarting after: {e}"),
                    None => "connecting to the backend".to_owned(),
                },
            ),
            State::Down => (
                "False",
                "BackendDown",
                last_error
                    .clone()
                    .unwrap_or_else(|| "the backend is down".to_owned()),
            ),
            State::Disabled => ("False", "Disabled", "spec.disabled is true".to_owned()),
            State::Stopped => return None,
        },
    })
}

/// The API server's limits, in bytes: a condition message, an Event note.
const CONDITION_MESSAGE_MAX: usize = 32 * 1024;
const EVENT_NOTE_MAX: usize = 1024;

/// `text` within `max` bytes, marked with `…` where it was cut (a long stderr tail).
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max - '…'.len_utf8();
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
    text
}

fn server_info_of(info: &Value) -> Option<ServerInfo> {
    Some(ServerInfo {
        name: info.get("name")?.as_str()?.to_owned(),
        version: info
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

pub fn ready(status: &McpBackendStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == READY)
}

/// Whether `desired` says something `current` does not. `lastTransitionTime` is carried
/// over by [`desired`], so an unchanged backend compares equal and nothing is written.
pub fn needs_write(current: Option<&McpBackendStatus>, desired: &McpBackendStatus) -> bool {
    current != Some(desired)
}

/// The Event for a change of `Ready` (status or reason) from `current` to `desired`.
pub fn transition(
    current: Option<&McpBackendStatus>,
    desired: &McpBackendStatus,
) -> Option<Transition> {
    let after = ready(desired)?;
    let before = current.and_then(ready);
    if before.is_some_and(|b| b.status == after.status && b.reason == after.reason) {
        return None;
    }
    // Starting is a step on the way, not news.
    if after.status == "Unknown" {
        return None;
    }
    Some(Transition {
        warning: after.status != "True",
        reason: after.reason.clone(),
        note: cut(after.message.clone(), EVENT_NOTE_MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backend(state: State, error: Option<&str>, counts: [usize; 3]) -> Observed {
        Observed::Backend {
            state,
            last_error: error.map(str::to_owned),
            server_info: Some(json!({"name": "everything", "version": "2.0.0"})),
            counts,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("time")
    }

    #[test]
    fn each_state_has_its_condition() {
        let cases = [
            (
                backend(State::Ready, None, [3, 1, 2]),
                "True",
                "Connected",
                "serving 3 tools, 1 prompts, 2 resources",
            ),
            (
                backend(State::Starting, None, [0, 0, 0]),
                "Unknown",
                "Starting",
                "connecting to the backend",
            ),
            (
                backend(State::Starting, Some("exit 1"), [0, 0, 0]),
                "Unknown",
                "Starting",
                "restarting after: exit 1",
            ),
            (
                backend(State::Down, Some("command not found: srv"), [0, 0, 0]),
                "False",
                "BackendDown",
                "command not found: srv",
            ),
            (
                backend(State::Disabled, None, [0, 0, 0]),
                "False",
                "Disabled",
                "spec.disabled is true",
            ),
            (
                Observed::Refused(Refusal {
                    reason: "SecretNotFound",
                    message: "spec.env[K]: Secret \"s\" not found".into(),
                }),
                "False",
                "SecretNotFound",
                "spec.env[K]: Secret \"s\" not found",
            ),
        ];
        for (observed, status, reason, message) in cases {
            let s = desired(Some(4), &observed, None, at(0)).expect("a status");
            let c = ready(&s).expect("Ready");
            assert_eq!(
                (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
                (status, reason, message)
            );
            assert_eq!(c.observed_generation, Some(4));
            assert_eq!(s.observed_generation, Some(4));
        }
        assert!(desired(Some(1), &backend(State::Stopped, None, [0; 3]), None, at(0)).is_none());
    }

    #[test]
    fn a_huge_error_is_cut_to_what_the_api_server_accepts() {
        let error = "é".repeat(40_000);
        let s = desired(
            Some(1),
            &backend(State::Down, Some(&error), [0; 3]),
            None,
            at(0),
        )
        .expect("s");
        let message = &ready(&s).expect("c").message;
        assert!(
            message.len() <= 32 * 1024 && message.ends_with('…'),
            "{}",
            message.len()
        );
    }

    #[test]
    fn counts_and_server_info_come_from_the_backend() {
        let s = desired(
            Some(1),
            &backend(State::Ready, None, [16, 3, 100]),
            None,
            at(0),
        )
        .expect("status");
        assert_eq!(
            (s.tools, s.prompts, s.resources),
            (Some(16), Some(3), Some(100))
        );
        let info = s.server_info.expect("server info");
        assert_eq!(
            (info.name.as_str(), info.version.as_deref()),
            ("everything", Some("2.0.0"))
        );
        let refused = Observed::Refused(Refusal {
            reason: "CommandNotAllowed",
            message: "no".into(),
        });
        let s = desired(Some(1), &refused, None, at(0)).expect("status");
        assert_eq!((s.tools, s.server_info), (None, None));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_does() {
        let first = desired(
            Some(1),
            &backend(State::Ready, None, [1, 0, 0]),
            None,
            at(0),
        )
        .expect("s");
        // More tools later: same status, same transition time, but a new message to write.
        let second = desired(
            Some(1),
            &backend(State::Ready, None, [2, 0, 0]),
            Some(&first),
            at(60),
        )
        .expect("s");
        assert_eq!(ready(&second).expect("c").last_transition_time, Time(at(0)));
        assert!(needs_write(Some(&first), &second));
        // Nothing new: nothing to write.
        let third = desired(
            Some(1),
            &backend(State::Ready, None, [2, 0, 0]),
            Some(&second),
            at(120),
        )
        .expect("s");
        assert!(!needs_write(Some(&second), &third));
        // Down: a new transition time.
        let down = desired(
            Some(1),
            &backend(State::Down, Some("gone"), [0; 3]),
            Some(&third),
            at(180),
        )
        .expect("s");
        assert_eq!(ready(&down).expect("c").last_transition_time, Time(at(180)));
        assert!(needs_write(None, &down));
    }

    #[test]
    fn events_mark_changes_of_readiness() {
        let starting = desired(
            Some(1),
            &backend(State::Starting, None, [0; 3]),
            None,
            at(0),
        )
        .expect("s");
        let ready_ = desired(
            Some(1),
            &backend(State::Ready, None, [1, 0, 0]),
            Some(&starting),
            at(1),
        )
        .expect("s");
        let more = desired(
            Some(1),
            &backend(State::Ready, None, [5, 0, 0]),
            Some(&ready_),
            at(2),
        )
        .expect("s");
        let down = desired(
            Some(1),
            &backend(State::Down, Some("crashed"), [0; 3]),
            Some(&more),
            at(3),
        )
        .expect("s");
        assert_eq!(transition(None, &starting), None, "starting is not news");
        let t = transition(Some(&starting), &ready_).expect("became ready");
        assert_eq!((t.warning, t.reason.as_str()), (false, "Connected"));
        assert_eq!(
            transition(Some(&ready_), &more),
            None,
            "same status and reason"
        );
        let t = transition(Some(&more), &down).expect("went down");
        assert_eq!(
            (t.warning, t.reason.as_str(), t.note.as_str()),
            (true, "BackendDown", "crashed")
        );
    }
}
