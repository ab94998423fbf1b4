use super::*;
use crate::spec::{HttpSpec, TransportSpec};
use serde_json::json;

fn spec(name: &str, prefix: &str) -> BackendSpec {
    BackendSpec {
        name: name.into(),
        transport: TransportSpec::StreamableHttp(HttpSpec {
            url: "http://127.0.0.1:1/mcp".into(),
            headers: Default::default(),
        }),
        prefix: prefix.into(),
        tools: ToolFilter::default(),
        timeout: None,
        disabled: false,
    }
}

fn listing(tools: &[&str]) -> Arc<Listing> {
    Arc::new(Listing {
        tools: tools
            .iter()
            .map(|t| json!({"name": t, "description": format!("does {t}"), "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}}))
            .collect(),
        prompts: vec![json!({"name": "greet", "arguments": [{"name": "who"}]})],
        resources: vec![json!({"uri": "mem://shared", "name": "shared"})],
        templates: vec![json!({"uriTemplate": "mem://items/{id}", "name": "item"})],
    })
}

fn names(snap: &Snapshot) -> Vec<&str> {
    snap.tools.iter().map(|e| &*e.public).collect()
}

#[test]
fn prefixes_and_routes() {
    let mut c = Catalog::new("__");
    c.apply(&spec("github", "github"));
    c.set_listing("github", Some(listing(&["create_issue", "search"])));
    let snap = c.snapshot();
    assert_eq!(names(&snap), ["github__create_issue", "github__search"]);
    let e = snap.tool("github__search").expect("routed");
    assert_eq!((&*e.backend, &*e.upstream), ("github", "search"));
    // Unknown fields pass through; only the name changes.
    let def = e.to_value();
    assert_eq!(def["annotations"]["readOnlyHint"], true);
    assert_eq!(def["description"], "does search");
    assert_eq!(def["name"], "github__search");
    assert_eq!(
        def.as_object().map(|o| o.keys().next().cloned()),
        Some(Some("name".into()))
    );
    assert!(snap.prompt("github__greet").is_some());
    assert!(snap.tool("search").is_none());
}

#[test]
fn separator_and_empty_prefix() {
    let mut c = Catalog::new("-");
    c.apply(&spec("a", "alpha"));
    c.apply(&spec("b", ""));
    c.set_listing("a", Some(listing(&["x"])));
    c.set_listing("b", Some(listing(&["y"])));
    assert_eq!(names(&c.snapshot()), ["alpha-x", "y"]);
}

#[test]
fn filters_by_upstream_name() {
    let mut c = Catalog::new("__");
    let mut s = spec("fs", "fs");
    s.tools.include = vec!["read_*".into(), "list_*".into()];
    s.tools.exclude = vec!["*_media_*".into()];
    c.apply(&s);
    c.set_listing(
        "fs",
        Some(listing(&[
            "read_file",
            "read_media_file",
            "list_dir",
            "write_file",
        ])),
    );
    assert_eq!(names(&c.snapshot()), ["fs__read_file", "fs__list_dir"]);
}

#[test]
fn collisions_are_resolved_the_same_whatever_the_order() {
    let build = |order: &[&str]| {
        let mut c = Catalog::new("__");
        for name in order {
            c.apply(&spec(name, ""));
            c.set_listing(name, Some(listing(&["echo"])));
        }
        let snap = c.snapshot();
        let mut got: Vec<(String, String)> = snap
            .tools
            .iter()
            .map(|e| (e.public.to_string(), e.backend.to_string()))
            .collect();
        got.sort();
        (got, snap.collisions.clone())
    };
    let (ab, coll_ab) = build(&["a", "b"]);
    let (ba, coll_ba) = build(&["b", "a"]);
    assert_eq!(ab, ba);
    assert_eq!(coll_ab, coll_ba);
    // The first backend in name order keeps the name; the other is renamed, not dropped.
    assert!(ab.contains(&("echo".into(), "a".into())));
    let renamed = ab.iter().find(|(_, b)| b == "b").expect("b keeps a tool");
    assert!(renamed.0.starts_with("echo_") && naming::is_valid(&renamed.0));
    assert_eq!(
        coll_ab.len(),
        3,
        "tool, prompt and resource collisions: {coll_ab:?}"
    );
    let tool = coll_ab
        .iter()
        .find(|c| c.kind == "tool")
        .expect("tool collision");
    assert_eq!((tool.winner.as_str(), tool.loser.as_str()), ("a", "b"));
    let res = coll_ab
        .iter()
        .find(|c| c.kind == "resource")
        .expect("resource collision");
    assert_eq!(res.renamed, None);
}

#[test]
fn sanitised_names_within_one_backend_stay_distinct() {
    let mut c = Catalog::new("__");
    c.apply(&spec("s", "s"));
    c.set_listing("s", Some(listing(&["a.b", "a_b"])));
    let snap = c.snapshot();
    let n = names(&snap);
    assert_eq!(n.len(), 2);
    assert_ne!(n[0], n[1]);
    assert_eq!(snap.tool(n[0]).map(|e| &*e.upstream), Some("a.b"));
    assert_eq!(snap.tool(n[1]).map(|e| &*e.upstream), Some("a_b"));
}

#[test]
fn resources_route_by_uri_and_template() {
    let mut c = Catalog::new("__");
    c.apply(&spec("m", "m"));
    c.set_listing("m", Some(listing(&[])));
    let snap = c.snapshot();
    assert_eq!(
        snap.resource_backend("mem://shared").map(|b| &**b),
        Some("m")
    );
    assert_eq!(
        snap.resource_backend("mem://items/9").map(|b| &**b),
        Some("m")
    );
    assert_eq!(snap.resource_backend("other://x"), None);
    assert_eq!(
        snap.template_backend("mem://items/{id}").map(|b| &**b),
        Some("m")
    );
    assert_eq!(snap.counts("m"), [0, 1, 1, 1]);
}

#[test]
fn down_backends_publish_nothing_and_reapply_keeps_listing() {
    let mut c = Catalog::new("__");
    c.apply(&spec("a", "a"));
    c.set_listing("a", Some(listing(&["t"])));
    c.apply(&spec("a", "renamed"));
    assert_eq!(names(&c.snapshot()), ["renamed__t"]);
    c.set_listing("a", None);
    assert!(c.snapshot().tools.is_empty());
    c.set_listing("ghost", Some(listing(&["t"])));
    assert!(c.snapshot().tools.is_empty());
    assert!(c.remove("a"));
    assert!(!c.remove("a"));
}

#[test]
fn handle_publishes_every_change() {
    let h = CatalogHandle::new(Catalog::new("__"));
    let mut rx = h.subscribe();
    h.apply(&spec("a", "a"));
    h.set_listing("a", Some(listing(&["t"])));
    assert!(rx.has_changed().unwrap_or(false));
    assert_eq!(names(&rx.borrow_and_update()), ["a__t"]);
    h.remove("a");
    assert!(h.current().tools.is_empty());
}

#[test]
fn counts_are_per_backend_and_follow_collisions() {
    let mut c = Catalog::new("__");
    c.apply(&spec("a", "a"));
    c.apply(&spec("b", "b"));
    c.apply(&spec("down", "down"));
    c.set_listing("a", Some(listing(&["x", "y", "z"])));
    c.set_listing("b", Some(listing(&["x"])));
    let snap = c.snapshot();
    assert_eq!(snap.counts("a"), [3, 1, 1, 1]);
    // b's resource URI and template are a's too: the resource is hidden, the template kept.
    assert_eq!(snap.counts("b"), [1, 1, 0, 1]);
    assert_eq!(snap.counts("down"), [0, 0, 0, 0]);
    assert_eq!(snap.counts("unknown"), [0, 0, 0, 0]);
}

fn whole(snap: &Snapshot, list: List) -> Vec<u8> {
    let mut out = Vec::new();
    snap.write(list, 0..usize::MAX, &mut out);
    out
}

/// An answer written in pieces of any size is the same text as one written at once.
#[test]
fn list_answers_written_in_pieces_are_whole() {
    let mut c = Catalog::new("__");
    c.apply(&spec("a", "a"));
    c.set_listing("a", Some(listing(&["p", "q", "r", "s", "t"])));
    let snap = Arc::new(c.snapshot());
    for range in [0..5, 1..4, 3..3, 4..9] {
        let text = ListText {
            head: b"{\"x\":[".to_vec(),
            snap: snap.clone(),
            list: List::Tools,
            range: range.clone(),
            tail: b"]}".to_vec(),
        };
        let at_once: Value = serde_json::from_slice(&text.to_vec()).expect("json");
        let mut want = Vec::new();
        snap.write(List::Tools, range.clone(), &mut want);
        let want: Value = serde_json::from_slice(&want).expect("json");
        assert_eq!(at_once["x"], want, "{range:?}");
        for budget in [1, 10, 100] {
            let (mut out, mut at, mut pieces) = (Vec::new(), range.start, 0);
            while let Some(next) = text.write_piece(at, &mut out, budget) {
                assert!(next > at, "progress");
                at = next;
                pieces += 1;
            }
            assert_eq!(out, text.to_vec(), "{range:?} in pieces of {budget}");
            if budget == 1 {
                assert_eq!(
                    pieces,
                    range
                        .len()
                        .min(5usize.saturating_sub(range.start))
                        .saturating_sub(1)
                );
            }
        }
    }
}

/// The lists' text is the definitions as values would serialize them, names replaced.
#[test]
fn list_text_is_the_published_definitions() {
    let mut c = Catalog::new("__");
    c.apply(&spec("a", "a"));
    c.apply(&spec("b", ""));
    c.set_listing("a", Some(listing(&["x", "y"])));
    let mut odd = (*listing(&["z"])).clone();
    odd.tools.push(json!({"name": "bare"}));
    odd.tools
        .push(json!({"description": "no name: not published"}));
    odd.tools[0]["description"] = json!("quote \" and \u{e9} and \n");
    c.set_listing("b", Some(Arc::new(odd)));
    let snap = c.snapshot();
    for list in [List::Tools, List::Prompts, List::Resources, List::Templates] {
        let text: Value = serde_json::from_slice(&whole(&snap, list)).expect("valid JSON");
        let want: Vec<Value> = match list {
            List::Tools => snap.tools.iter().map(Entry::to_value).collect(),
            List::Prompts => snap.prompts.iter().map(Entry::to_value).collect(),
            List::Resources => snap.resources.iter().map(|e| e.def.to_value()).collect(),
            List::Templates => snap.templates.iter().map(|e| e.def.to_value()).collect(),
        };
        assert_eq!(text, Value::Array(want), "{list:?}");
    }
    let tools: Value = serde_json::from_slice(&whole(&snap, List::Tools)).expect("json");
    assert_eq!(
        tools,
        json!([
            {"name": "a__x", "description": "does x", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
            {"name": "a__y", "description": "does y", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
            {"name": "z", "description": "quote \" and \u{e9} and \n", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
            {"name": "bare"},
        ])
    );
    // A page is a slice of the whole; a range past the end is clamped.
    let mut page = Vec::new();
    snap.write(List::Tools, 1..3, &mut page);
    let page: Value = serde_json::from_slice(&page).expect("json");
    assert_eq!(page.as_array().map(Vec::len), Some(2));
    assert_eq!(page[0]["name"], "a__y");
    let mut past = Vec::new();
    snap.write(List::Tools, 9..20, &mut past);
    assert_eq!(past, b"[]");
}

/// A change to one backend is seen as a change of exactly the lists it touched, and the
/// other backends' definitions are shared with the previous snapshot, not copied.
#[test]
fn snapshots_share_what_did_not_change() {
    let mut c = Catalog::new("__");
    c.apply(&spec("a", "a"));
    c.apply(&spec("b", "b"));
    c.set_listing("a", Some(listing(&["x"])));
    c.set_listing("b", Some(listing(&["y"])));
    let before = c.snapshot();
    let mut more = (*listing(&["y", "w"])).clone();
    more.prompts.clear();
    more.resources.clear();
    more.templates.clear();
    more.prompts
        .push(json!({"name": "greet", "arguments": [{"name": "who"}]}));
    c.set_listing("b", Some(Arc::new(more)));
    let after = c.snapshot();
    assert_eq!(after.changed_since(&before), [true, false, true]);
    assert!(Arc::ptr_eq(&before.tools[0].def, &after.tools[0].def));
    assert_eq!(c.snapshot().changed_since(&after), [false, false, false]);
}
