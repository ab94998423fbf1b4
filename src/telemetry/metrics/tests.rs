//! The metric families as a scrape shows them.

use super::*;

fn render(m: &Metrics, sample: &Sample) -> String {
    m.render(sample, Format::Prometheus)
}

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn requests_are_counted_under_folded_labels() {
    let m = Metrics::new();
    let backend: Arc<str> = Arc::from("fx");
    let tool = m.tool_label("fx__echo");
    for _ in 0..3 {
        m.request(
            labels::method("tools/call"),
            Label::from(&backend),
            tool.clone(),
            Outcome::Ok,
            Duration::from_millis(2),
        );
    }
    m.request(
        labels::method("made/up"),
        Label::Static(labels::NONE),
        Label::Static(labels::UNKNOWN),
        Outcome::Error,
        Duration::from_micros(300),
    );
    let text = render(&m, &Sample::default());
    assert!(
        text.contains(
            r#"mcp_gateway_requests_total{method="tools/call",backend="fx",tool="fx__echo",outcome="ok"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"mcp_gateway_requests_total{method="(other)",backend="",tool="(unknown)",outcome="error"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"mcp_gateway_request_duration_seconds_bucket{le="0.0005",method="(other)""#
        ) && text.contains(
            r#"le="0.0005",method="(other)",backend="",tool="(unknown)",outcome="error"} 1"#
        ),
        "sub-millisecond requests land in the first bucket:\n{text}"
    );
}

#[test]
fn kubernetes_hooks_count() {
    let m = Metrics::new();
    m.reconcile("ok", Duration::from_millis(250));
    m.reconcile("ok", Duration::from_millis(500));
    m.reconcile("invalid_spec", Duration::from_millis(1));
    m.watch_restart();
    let text = render(&m, &Sample::default());
    assert_eq!(
        line(&text, r#"mcp_gateway_reconciles_total{result="ok"}"#),
        Some(r#"mcp_gateway_reconciles_total{result="ok"} 2"#)
    );
    assert_eq!(
        line(
            &text,
            r#"mcp_gateway_reconciles_total{result="invalid_spec"}"#
        ),
        Some(r#"mcp_gateway_reconciles_total{result="invalid_spec"} 1"#)
    );
    assert_eq!(
        line(
            &text,
            r#"mcp_gateway_reconcile_duration_seconds_sum{result="ok"}"#
        ),
        Some(r#"mcp_gateway_reconcile_duration_seconds_sum{result="ok"} 0.75"#)
    );
    assert_eq!(
        line(&text, "mcp_gateway_watch_restarts_total "),
        Some("mcp_gateway_watch_restarts_total 1")
    );
}

#[test]
fn state_is_what_the_last_sample_says() {
    let m = Metrics::new();
    let mut sample = Sample {
        backends: vec![BackendSample {
            name: Arc::from("a"),
            transport: "stdio",
            state: "ready",
            entries: [5, 1, 2, 0],
        }],
        catalog: [5, 1, 2, 0],
        ..Sample::default()
    };
    sample.count_session("sse");
    sample.count_session("sse");
    let text = render(&m, &sample);
    assert!(text.contains(r#"mcp_gateway_backend_up{backend="a",transport="stdio"} 1"#));
    assert!(text.contains(r#"mcp_gateway_backend_state{backend="a",state="ready"} 1"#));
    assert!(text.contains(r#"mcp_gateway_backend_state{backend="a",state="down"} 0"#));
    assert!(text.contains(r#"mcp_gateway_backend_entries{backend="a",kind="tools"} 5"#));
    assert!(text.contains(r#"mcp_gateway_sessions_open{transport="sse"} 2"#));
    assert!(text.contains(r#"mcp_gateway_sessions_open{transport="stdio"} 0"#));

    // The backend is removed: its series go with it.
    let text = render(&m, &Sample::default());
    assert!(!text.contains(r#"backend="a""#), "{text}");
    assert!(text.contains(r#"mcp_gateway_sessions_open{transport="sse"} 0"#));
}

#[test]
fn in_flight_is_released_on_drop() {
    let m = Metrics::new();
    let b: Arc<str> = Arc::from("b");
    let first = m.in_flight(&b);
    let second = m.in_flight(&b);
    let gauge = r#"mcp_gateway_backend_requests_in_flight{backend="b"}"#;
    let text = render(&m, &Sample::default());
    assert_eq!(line(&text, gauge).map(|l| l.ends_with(" 2")), Some(true));
    drop(first);
    drop(second);
    let text = render(&m, &Sample::default());
    assert_eq!(line(&text, gauge).map(|l| l.ends_with(" 0")), Some(true));
}
