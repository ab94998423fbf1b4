//! JSON-RPC 2.0 at the level the relay needs: classify a message, read its id and method,
//! and build every error body the gateway sends from one function.
//!
//! Messages stay `serde_json::Value` end to end so that fields the gateway does not know
//! (`_meta`, `structuredContent`, annotations, future protocol additions) pass unchanged.

use serde_json::{Map, Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Implementation-defined: the backend that owns the request is down or failed.
pub const BACKEND_UNAVAILABLE: i64 = -32000;
/// The MCP SDKs' code for a request that timed out.
pub const REQUEST_TIMEOUT: i64 = -32001;
/// MCP: resource not found.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// Implementation-defined: over a limit (sessions, requests in flight); try again later.
pub const BUSY: i64 = -32003;
/// Implementation-defined: the gateway is shutting down and will not finish the request.
pub const SHUTTING_DOWN: i64 = -32004;
/// Implementation-defined: a backend asked "the client" something (sampling, elicitation,
/// roots) and the gateway cannot tell which of its clients it is for, so it asks none.
pub const UNATTRIBUTED: i64 = -32005;

/// What a single JSON-RPC message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    /// A `result` or an `error` for an earlier request.
    Response,
}

/// Why a value is not a JSON-RPC message; each maps to one error body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("message is not a JSON object")]
    NotObject,
    #[error("\"jsonrpc\" must be \"2.0\"")]
    Version,
    #[error("\"method\" must be a string")]
    Method,
    #[error("\"id\" must be a string or an integer")]
    Id,
    #[error("a request's \"id\" must not be null")]
    NullId,
    #[error("a message needs \"method\", \"result\" or \"error\"")]
    Shape,
}

/// Classify `msg`, checking only what routing depends on.
pub fn classify(msg: &Value) -> Result<Kind, Invalid> {
    let obj = msg.as_object().ok_or(Invalid::NotObject)?;
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Invalid::Version);
    }
    let id = obj.get("id");
    if let Some(id) = id
        && !is_valid_id(id)
    {
        return Err(Invalid::Id);
    }
    match obj.get("method") {
        Some(Value::String(_)) if id.is_some_and(Value::is_null) => Err(Invalid::NullId),
        Some(Value::String(_)) => Ok(if id.is_some() {
            Kind::Request
        } else {
            Kind::Notification
        }),
        Some(_) => Err(Invalid::Method),
        None if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) => {
            Ok(Kind::Response)
        }
        None => Err(Invalid::Shape),
    }
}

fn is_valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        // Only responses to unparseable requests carry a null id; accept it there.
        Value::Null => true,
        _ => false,
    }
}

/// MCP's params are objects, and so is their `_meta`: anything else is refused before a
/// backend sees it (some answer such a request without an id, or not at all).
pub fn check_params(msg: &Value) -> Result<(), &'static str> {
    match params(msg) {
        None => Ok(()),
        Some(Value::Object(p)) => match p.get("_meta") {
            None | Some(Value::Object(_)) => Ok(()),
            Some(_) => Err("invalid params: \"params._meta\" must be an object"),
        },
        Some(_) => Err("invalid params: \"params\" must be an object"),
    }
}

pub fn method(msg: &Value) -> Option<&str> {
    msg.get("method").and_then(Value::as_str)
}

pub fn id(msg: &Value) -> Option<&Value> {
    msg.get("id")
}

pub fn params(msg: &Value) -> Option<&Value> {
    msg.get("params")
}

pub fn params_mut(msg: &mut Value) -> Option<&mut Map<String, Value>> {
    msg.get_mut("params").and_then(Value::as_object_mut)
}

/// The message's id, or `null` for one without (what an error answer must carry then).
pub fn id_or_null(msg: &Value) -> Value {
    id(msg).cloned().unwrap_or(Value::Null)
}

/// Build a request message.
pub fn request(id: Value, method: &str, params: Option<Value>) -> Value {
    let mut m = Map::with_capacity(4);
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("id".into(), id);
    m.insert("method".into(), Value::from(method));
    if let Some(p) = params {
        m.insert("params".into(), p);
    }
    Value::Object(m)
}

/// Build a notification message.
pub fn notification(method: &str, params: Option<Value>) -> Value {
    let mut m = Map::with_capacity(3);
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("method".into(), Value::from(method));
    if let Some(p) = params {
        m.insert("params".into(), p);
    }
    Value::Object(m)
}

/// Build a success response.
pub fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Build an error response. Every JSON-RPC error the gateway itself produces comes from here,
/// so that codes and shapes stay consistent across transports.
pub fn error(id: Value, code: i64, message: impl Into<String>, data: Option<Value>) -> Value {
    let mut err = Map::with_capacity(3);
    err.insert("code".into(), Value::from(code));
    err.insert("message".into(), Value::from(message.into()));
    if let Some(d) = data {
        err.insert("data".into(), d);
    }
    json!({"jsonrpc": "2.0", "id": id, "error": Value::Object(err)})
}

/// The error body for a message that failed [`classify`], answering with its id when it has
/// a usable one.
pub fn invalid_request(msg: &Value, why: &Invalid) -> Value {
    let id = msg
        .get("id")
        .filter(|id| is_valid_id(id))
        .cloned()
        .unwrap_or(Value::Null);
    error(id, INVALID_REQUEST, format!("invalid request: {why}"), None)
}

pub fn parse_error(detail: impl std::fmt::Display) -> Value {
    error(
        Value::Null,
        PARSE_ERROR,
        format!("parse error: {detail}"),
        None,
    )
}

/// A key usable in hash maps for a JSON-RPC id (numbers and strings never collide).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IdKey {
    Num(i64),
    Str(String),
    Other(String),
}

impl IdKey {
    pub fn of(id: &Value) -> Self {
        match id {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Self::Num(i),
                None => Self::Other(n.to_string()),
            },
            Value::String(s) => Self::Str(s.clone()),
            other => Self::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let cases = [
            (
                json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
                Ok(Kind::Request),
            ),
            (
                json!({"jsonrpc":"2.0","id":"a","method":"x"}),
                Ok(Kind::Request),
            ),
            (
                json!({"jsonrpc":"2.0","method":"n"}),
                Ok(Kind::Notification),
            ),
            (
                json!({"jsonrpc":"2.0","id":1,"result":{}}),
                Ok(Kind::Response),
            ),
            (
                json!({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}),
                Ok(Kind::Response),
            ),
            (json!([1]), Err(Invalid::NotObject)),
            (json!({"id":1,"method":"ping"}), Err(Invalid::Version)),
            (
                json!({"jsonrpc":"1.0","id":1,"method":"ping"}),
                Err(Invalid::Version),
            ),
            (
                json!({"jsonrpc":"2.0","id":1,"method":5}),
                Err(Invalid::Method),
            ),
            (
                json!({"jsonrpc":"2.0","id":{"a":1},"method":"x"}),
                Err(Invalid::Id),
            ),
            (
                json!({"jsonrpc":"2.0","id":1.5,"method":"x"}),
                Err(Invalid::Id),
            ),
            (json!({"jsonrpc":"2.0","id":1}), Err(Invalid::Shape)),
            (
                json!({"jsonrpc":"2.0","id":null,"method":"tools/call"}),
                Err(Invalid::NullId),
            ),
            (
                json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}),
                Ok(Kind::Response),
            ),
            (json!({"jsonrpc":"2.0"}), Err(Invalid::Shape)),
        ];
        for (msg, want) in cases {
            assert_eq!(classify(&msg), want, "{msg}");
        }
    }

    #[test]
    fn invalid_request_keeps_a_usable_id() {
        let e = invalid_request(&json!({"id": 7, "method": 1}), &Invalid::Method);
        assert_eq!(e["id"], 7);
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
        let e = invalid_request(&json!({"id": [1]}), &Invalid::Id);
        assert_eq!(e["id"], Value::Null);
    }

    #[test]
    fn params_and_meta_must_be_objects() {
        let ok = [
            json!({"id":1,"method":"ping"}),
            json!({"id":1,"method":"x","params":{}}),
            json!({"id":1,"method":"x","params":{"_meta":{"progressToken":1}}}),
        ];
        for m in ok {
            assert_eq!(check_params(&m), Ok(()), "{m}");
        }
        let bad = [
            json!({"id":1,"method":"x","params":"s"}),
            json!({"id":1,"method":"x","params":[1]}),
            json!({"id":1,"method":"x","params":null}),
            json!({"id":1,"method":"x","params":{"_meta":"s"}}),
            json!({"id":1,"method":"x","params":{"_meta":[]}}),
            json!({"id":1,"method":"x","params":{"_meta":null}}),
        ];
        for m in bad {
            assert!(check_params(&m).is_err(), "{m}");
        }
    }

    #[test]
    fn id_keys_distinguish_numbers_and_strings() {
        assert_ne!(IdKey::of(&json!(1)), IdKey::of(&json!("1")));
        assert_eq!(IdKey::of(&json!(1)), IdKey::of(&json!(1)));
    }
}
