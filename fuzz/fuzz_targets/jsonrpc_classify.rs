//! Fuzzes JSON-RPC classification, the first thing the gateway does with every message a
//! client or backend sends: arbitrary JSON must classify without panicking, and the answer
//! must agree with the message's shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::jsonrpc::{self, IdKey, Kind};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let id = jsonrpc::id_or_null(&msg);
    assert_eq!(Some(&id), msg.get("id").or(Some(&Value::Null)));
    assert_eq!(IdKey::of(&id), IdKey::of(&id.clone()));
    if let Value::String(s) = &id {
        assert_eq!(IdKey::of(&id), IdKey::Str(s.clone()));
    }

    match jsonrpc::classify(&msg) {
        Ok(Kind::Request) => {
            assert!(
                msg["method"].is_string(),
                "request without a string method: {msg}"
            );
            assert!(msg.get("id").is_some(), "request without an id: {msg}");
        }
        Ok(Kind::Notification) => {
            assert!(
                msg["method"].is_string(),
                "notification without a string method: {msg}"
            );
            assert!(msg.get("id").is_none(), "notification with an id: {msg}");
        }
        Ok(Kind::Response) => {
            assert!(msg.get("id").is_some(), "response without an id: {msg}");
        }
        Err(why) => {
            // The answer to an invalid message is itself a well-formed error response.
            let answer = jsonrpc::invalid_request(&msg, &why);
            assert_eq!(jsonrpc::classify(&answer), Ok(Kind::Response), "{answer}");
            assert_eq!(
                answer["error"]["code"],
                jsonrpc::INVALID_REQUEST,
                "{answer}"
            );
            let answer_id = &answer["id"];
            assert!(
                answer_id.is_null()
                    || answer_id.is_string()
                    || answer_id.is_i64()
                    || answer_id.is_u64(),
                "unusable id in {answer}"
            );
            assert!(
                answer_id.is_null() || Some(answer_id) == msg.get("id"),
                "{answer}"
            );
        }
    }
});
