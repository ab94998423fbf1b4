//! The per-message work of the relay: classifying what a client or a backend sent, and
//! rewriting a `tools/call` on its way up (public name → upstream name, the gateway's id and
//! progress token) and its answers on the way down (the client's id and token back).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mcp_gateway::jsonrpc;
use mcp_gateway::relay::{Routes, swap_progress_token, with_param};
use mcp_gateway::session::{Flight, Frontend, Session};
use mcp_gateway_micro::{CANCELLED, PROGRESS, TOOL_RESULT, TOOLS_CALL, value};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Requests in flight while one more is tracked or looked up, with the upstream ids
/// `FIRST_ID..FIRST_ID + IN_FLIGHT`.
const IN_FLIGHT: u64 = 1_000;
const FIRST_ID: u64 = 1_000;
/// Backends those are spread over.
const BACKENDS: u64 = 100;

fn classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    let (call, cancelled, result) = (value(TOOLS_CALL), value(CANCELLED), value(TOOL_RESULT));
    g.bench_function("tools/call request", |b| {
        b.iter(|| jsonrpc::classify(black_box(&call)))
    });
    g.bench_function("tools/call request + check_params", |b| {
        b.iter(|| {
            let msg = black_box(&call);
            (jsonrpc::classify(msg), jsonrpc::check_params(msg))
        })
    });
    g.bench_function("notification", |b| {
        b.iter(|| jsonrpc::classify(black_box(&cancelled)))
    });
    g.bench_function("response", |b| {
        b.iter(|| jsonrpc::classify(black_box(&result)))
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.bench_function("tools/call request body", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(TOOLS_CALL.as_bytes())))
    });
    g.bench_function("tools/call result from a backend", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(TOOL_RESULT.as_bytes())))
    });
    g.finish();
}

/// What `Gateway::forward` does to the message: the upstream name (`call_named`), the
/// gateway's id, the gateway's progress token.
fn rewrite_up(msg: Value, up_id: u64) -> (Value, Option<Value>) {
    let mut msg = with_param(msg, "name", Value::from("search_issue_0005"));
    if let Some(obj) = msg.as_object_mut() {
        obj.insert("id".into(), Value::from(up_id));
    }
    let token = swap_progress_token(&mut msg, up_id);
    (msg, token)
}

fn rewrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("rewrite");
    let call = value(TOOLS_CALL);
    g.bench_function("up: name, id, progress token", |b| {
        b.iter_batched(
            || call.clone(),
            |msg| rewrite_up(msg, black_box(1234)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("up: + serialize for the backend", |b| {
        b.iter_batched(
            || call.clone(),
            |msg| serde_json::to_vec(&rewrite_up(msg, black_box(1234)).0),
            BatchSize::SmallInput,
        )
    });
    g.bench_function(
        "up: whole (parse body, classify, rewrite, serialize)",
        |b| {
            b.iter(|| {
                let msg: Value = serde_json::from_slice(black_box(TOOLS_CALL.as_bytes()))?;
                let ok = jsonrpc::classify(&msg).is_ok() && jsonrpc::check_params(&msg).is_ok();
                let (msg, _) = rewrite_up(msg, 1234);
                serde_json::to_vec(&msg).map(|v| (ok, v))
            })
        },
    );

    // The response on its way down: matched by the gateway's id (`Connection::dispatch`), the
    // client's id put back (`Gateway::forward`), serialized for the client.
    let result = value(TOOL_RESULT);
    let client_id = Value::from(42);
    g.bench_function("down: client id", |b| {
        b.iter_batched(
            || result.clone(),
            |mut resp| {
                if let Some(obj) = resp.as_object_mut() {
                    obj.insert("id".into(), client_id.clone());
                }
                resp
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("down: whole (parse, classify, id, serialize)", |b| {
        b.iter(|| {
            let mut resp: Value = serde_json::from_slice(black_box(TOOL_RESULT.as_bytes()))?;
            let kind = jsonrpc::classify(&resp);
            let up_id = resp.get("id").and_then(Value::as_u64);
            if let Some(obj) = resp.as_object_mut() {
                obj.insert("id".into(), client_id.clone());
            }
            serde_json::to_vec(&resp).map(|v| (kind, up_id, v))
        })
    });

    // Progress on its way down (`Gateway::server_notification`): the flight found by the
    // gateway's token among `IN_FLIGHT`, the client's token put back.
    let (routes, backends, _sessions) = routes_in_flight();
    let backend = backends[(1234 % BACKENDS) as usize].clone();
    let progress = value(PROGRESS);
    assert!(
        routes.flight(&backend, 1234).is_some(),
        "PROGRESS is in flight"
    );
    g.bench_function("down: progress token (1,000 in flight)", |b| {
        b.iter_batched(
            || progress.clone(),
            |mut msg| {
                let token = jsonrpc::params(&msg).and_then(|p| p.get("progressToken"));
                let up_id = token.and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok()));
                let flight = up_id.and_then(|id| routes.flight(&backend, id));
                let client_token = flight.and_then(|f| f.progress_token.clone());
                if let (Some(p), Some(t)) = (jsonrpc::params_mut(&mut msg), client_token) {
                    p.insert("progressToken".into(), t);
                }
                msg
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A flight like `Gateway::forward` makes, the client's request `downstream_id` on `backend`.
fn flight(session: &Arc<Session>, backend: &Arc<str>, up_id: u64) -> Arc<Flight> {
    Arc::new(Flight {
        session: session.clone(),
        downstream_id: Value::from(format!("client-{up_id}")),
        sink: session.outbound().clone(),
        backend: backend.clone(),
        upstream_id: up_id,
        progress_token: Some(Value::from(format!("client-progress-{up_id}"))),
        cancel: CancellationToken::new(),
        progress: Notify::new(),
    })
}

/// `IN_FLIGHT` requests of 10 sessions tracked over `BACKENDS` backends; upstream id `i`
/// went to backend `i % BACKENDS`, so 1234 (the id in `PROGRESS`) to `fx0034`.
fn routes_in_flight() -> (&'static Routes, Vec<Arc<str>>, Vec<Arc<Session>>) {
    // Leaked so the guards can live as long as the benchmark (one table per run).
    let routes: &'static Routes = Box::leak(Box::default());
    let backends: Vec<Arc<str>> = (0..BACKENDS)
        .map(|i| Arc::from(mcp_gateway_micro::backend(i as usize)))
        .collect();
    let sessions: Vec<Arc<Session>> = (0..10)
        .map(|_| Session::new(Frontend::StreamableHttp, 1024).0)
        .collect();
    for i in FIRST_ID..FIRST_ID + IN_FLIGHT {
        let f = flight(
            &sessions[(i % 10) as usize],
            &backends[(i % BACKENDS) as usize],
            i,
        );
        std::mem::forget(routes.track(f));
    }
    (routes, backends, sessions)
}

fn routes(c: &mut Criterion) {
    let mut g = c.benchmark_group("routes");
    let (routes, backends, sessions) = routes_in_flight();
    let backend = backends[7].clone();
    let mut next = 1_000_000;
    g.bench_function("new flight, track, untrack (1,000 in flight)", |b| {
        b.iter(|| {
            next += 1;
            drop(routes.track(flight(&sessions[0], &backend, next)));
        })
    });
    g.bench_function("flight by upstream id (1,000 in flight)", |b| {
        b.iter(|| routes.flight(&backend, black_box(1207)).is_some())
    });
    g.bench_function("latest flight of a backend (1,000 in flight)", |b| {
        b.iter(|| routes.latest_flight(black_box("fx0007")).is_some())
    });
    g.finish();
}

criterion_group!(benches, classify, rewrite, routes);
criterion_main!(benches);
