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
        sessions: Default::default(),
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
        (got, snap.collisions.iter().cloned().collect::<Vec<_>>())
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
    let first = |s: &Snapshot| s.tools.iter().next().map(|e| e.def.clone());
    assert!(matches!((first(&before), first(&after)), (Some(x), Some(y)) if Arc::ptr_eq(&x, &y)));
    assert_eq!(c.snapshot().changed_since(&after), [false, false, false]);
}

/// A small seeded generator (xorshift64*): the property tests need no dependency, and a
/// failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

const BACKENDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// A listing drawn from small pools, so that names collide often: the same tool in several
/// backends (with the same or an empty prefix), names that sanitize alike, a name listed
/// twice or three times, and one that is another's renaming.
fn random_listing(rng: &mut Rng) -> Arc<Listing> {
    let renaming = naming::disambiguated("echo", "b/echo");
    let mut tools = vec![
        "echo",
        "search",
        "a.b",
        "a_b",
        "p__echo",
        "p__search",
        "x",
        "y",
    ];
    // Rarely, a name that meets a renaming.
    if rng.below(20) == 0 {
        tools.push(&renaming);
    }
    let prompts = ["greet", "echo", "p__greet"];
    let uris = ["mem://shared", "mem://a", "mem://b"];
    let templates = ["mem://items/{id}", "mem://t/{x}"];
    let some = |rng: &mut Rng, pool: &[&str], max: usize| -> Vec<String> {
        (0..rng.below(max + 1))
            .map(|_| rng.pick(pool).to_string())
            .collect()
    };
    let revision = rng.below(3);
    Arc::new(Listing {
        tools: (some(rng, &tools, 5).iter())
            .map(|t| json!({"name": t, "description": format!("{t} r{revision}")}))
            .collect(),
        prompts: (some(rng, &prompts, 2).iter())
            .map(|p| json!({"name": p}))
            .collect(),
        resources: (some(rng, &uris, 2).iter())
            .map(|u| json!({"uri": u, "name": format!("r{revision}")}))
            .collect(),
        templates: (some(rng, &templates, 1).iter())
            .map(|t| json!({"uriTemplate": t, "name": "t"}))
            .collect(),
    })
}

fn random_spec(rng: &mut Rng, name: &str) -> BackendSpec {
    let prefixes = ["", "p", "p", name, "a"];
    let prefix = prefixes[rng.below(prefixes.len())];
    let mut s = spec(name, prefix);
    match rng.below(4) {
        0 => s.tools.include = vec!["e*".into(), "a*".into()],
        1 => s.tools.exclude = vec!["search".into()],
        _ => {}
    }
    s
}

/// Apply one random change; returns what it was, for failure messages.
fn random_change(c: &mut Catalog, rng: &mut Rng) -> String {
    let name = *rng.pick(&BACKENDS);
    match rng.below(10) {
        0..=2 => {
            c.apply(&random_spec(rng, name));
            format!("apply {name}")
        }
        3 => {
            c.remove(name);
            format!("remove {name}")
        }
        4 => {
            c.set_listing(name, None);
            format!("down {name}")
        }
        5 => {
            c.set_listing("ghost", Some(random_listing(rng)));
            "listing of an unknown backend".into()
        }
        _ => {
            let listing = random_listing(rng);
            c.set_listing(name, Some(listing.clone()));
            format!("set_listing {name} {listing:?}")
        }
    }
}

/// Everything a snapshot tells: lists in order, routes, indexes, collisions, counts, text.
fn assert_same(got: &Snapshot, want: &Snapshot, context: &str) {
    let all = |s: &Snapshot| {
        (
            s.tools.iter().cloned().collect::<Vec<_>>(),
            s.prompts.iter().cloned().collect::<Vec<_>>(),
            s.resources.iter().cloned().collect::<Vec<_>>(),
            s.templates.iter().cloned().collect::<Vec<_>>(),
            s.collisions.iter().cloned().collect::<Vec<_>>(),
        )
    };
    assert_eq!(all(got), all(want), "{context}");
    assert!(got.tool_index == want.tool_index, "{context}: tool index");
    assert!(got.prompt_index == want.prompt_index, "{context}: prompts");
    assert!(got.resource_index == want.resource_index, "{context}");
    for list in [List::Tools, List::Prompts, List::Resources, List::Templates] {
        assert_eq!(whole(got, list), whole(want, list), "{context}: {list:?}");
    }
    for s in [got, want] {
        assert_eq!(s.tools.iter().count(), s.tools.len(), "{context}");
        assert_eq!(s.resources.iter().count(), s.resources.len(), "{context}");
        assert_eq!(s.collisions.iter().count(), s.collisions.len(), "{context}");
        for e in s.tools.iter() {
            assert_eq!(s.tool(&e.public), Some(e), "{context}: routes {}", e.public);
        }
    }
    for b in BACKENDS.iter().chain(&["ghost"]) {
        assert_eq!(got.counts(b), want.counts(b), "{context}: counts of {b}");
    }
    for uri in [
        "mem://shared",
        "mem://a",
        "mem://items/1",
        "mem://t/x",
        "x://",
    ] {
        assert_eq!(
            got.resource_backend(uri),
            want.resource_backend(uri),
            "{context}"
        );
    }
}

/// `changed_since` as it was defined on whole lists.
fn changed_on_lists(new: &Snapshot, old: &Snapshot) -> [bool; 3] {
    let same = |a: &Section<Entry>, b: &Section<Entry>| {
        a.len() == b.len()
            && (a.iter().zip(b.iter())).all(|(x, y)| x.public == y.public && x.def == y.def)
    };
    let resources = |s: &Snapshot| {
        (
            s.resources.iter().cloned().collect::<Vec<_>>(),
            s.templates.iter().cloned().collect::<Vec<_>>(),
        )
    };
    [
        !same(&new.tools, &old.tools),
        !same(&new.prompts, &old.prompts),
        resources(new) != resources(old),
    ]
}

/// Any sequence of changes publishes what a build from scratch gives, and most take no full
/// build even though names collide all the time.
#[test]
fn incremental_snapshots_equal_full_builds() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut c = Catalog::new("__");
        let mut before = c.snapshot();
        let (mut collided, mut fell_back) = (0, 0);
        for step in 0..150 {
            let (exact, rebuilds) = (c.exact, c.rebuilds);
            let what = random_change(&mut c, &mut rng);
            let context = format!("seed {seed}, step {step}: {what}");
            let now = c.snapshot();
            assert_same(&now, &c.rebuilt(), &context);
            assert_eq!(
                now.changed_since(&before),
                changed_on_lists(&now, &before),
                "{context}"
            );
            if c.rebuilds > rebuilds && exact {
                // Only when the claims model no longer holds.
                assert!(!c.exact, "{context}: a full build for nothing");
                fell_back += 1;
            }
            collided += usize::from(!now.collisions.is_empty());
            before = now;
        }
        assert!(collided > 50, "seed {seed}: names collide often enough");
        assert!(
            c.rebuilds < 75,
            "seed {seed}: {} of 150 changes took a full build ({fell_back} fell back)",
            c.rebuilds
        );
    }
}

/// A collision between backends is worked out again without a full build: the winner
/// changing hands renames both and re-points every loser's collision.
#[test]
fn collisions_change_hands_incrementally() {
    let mut c = Catalog::new("__");
    for name in ["a", "b", "c"] {
        c.apply(&spec(name, ""));
        c.set_listing(name, Some(listing(&["echo", name])));
    }
    let check = |c: &Catalog, owner: &str, losers: usize| {
        let snap = c.snapshot();
        assert_same(&snap, &c.rebuilt(), owner);
        assert_eq!(snap.tool("echo").map(|e| &*e.backend), Some(owner));
        let tools: Vec<&Collision> = (snap.collisions.iter())
            .filter(|c| c.kind == "tool")
            .collect();
        assert_eq!(tools.len(), losers, "{owner}: {tools:?}");
        assert!(
            tools.iter().all(|c| c.winner == owner),
            "{owner}: {tools:?}"
        );
    };
    check(&c, "a", 2);
    c.set_listing("a", None);
    check(&c, "b", 1);
    c.remove("b");
    c.set_listing("a", Some(listing(&["echo"])));
    check(&c, "a", 1);
    c.apply(&spec("b", ""));
    c.set_listing("b", Some(listing(&["echo"])));
    c.set_listing("c", Some(listing(&["echo", "c2"])));
    assert_eq!(c.rebuilds, 0, "no change took a full build");
    assert_same(&c.snapshot(), &c.rebuilt(), "after all");
}

/// A tool whose name is another's renaming cannot be published incrementally; once it is
/// gone, changes are incremental again.
#[test]
fn names_that_meet_a_renaming_take_a_full_build() {
    let mut c = Catalog::new("__");
    for name in ["a", "b", "c"] {
        c.apply(&spec(name, ""));
    }
    c.set_listing("a", Some(listing(&["echo"])));
    c.set_listing("b", Some(listing(&["echo"])));
    let renamed = naming::disambiguated("echo", "b/echo");
    assert!(c.snapshot().tool(&renamed).is_some());
    assert_eq!(c.rebuilds, 0);
    c.set_listing("c", Some(listing(&[&renamed])));
    assert_eq!(c.rebuilds, 1);
    assert_same(&c.snapshot(), &c.rebuilt(), "renaming taken");
    c.set_listing("a", Some(listing(&["echo", "x"])));
    assert_eq!(c.rebuilds, 2, "still not what the claims say");
    c.set_listing("c", None);
    c.set_listing("a", Some(listing(&["echo"])));
    assert_eq!(c.rebuilds, 3, "back to what the claims say");
    assert_same(&c.snapshot(), &c.rebuilt(), "renaming free");
}

/// Adding one backend to many costs that backend's names, not the catalog's: the snapshot
/// before shares every other backend's part.
#[test]
fn a_change_shares_every_other_part() {
    let mut c = Catalog::new("__");
    for i in 0..50 {
        let name = format!("b{i:02}");
        c.apply(&spec(&name, &name));
        c.set_listing(&name, Some(listing(&["x", "y"])));
    }
    let before = c.snapshot();
    c.set_listing("b07", Some(listing(&["x", "z"])));
    let after = c.snapshot();
    let shared = |x: &Snapshot, y: &Snapshot, b: &str| std::ptr::eq(x.tools.of(b), y.tools.of(b));
    assert!(!shared(&before, &after, "b07"));
    assert!(
        (0..50)
            .filter(|i| *i != 7)
            .all(|i| shared(&before, &after, &format!("b{i:02}")))
    );
    assert_eq!(after.changed_since(&before), [true, false, false]);
    assert_eq!(c.rebuilds, 0);
}

/// A backend that lists the same definitions again holds and publishes one copy of them: the
/// snapshot keeps its entries, and the new listing takes their definitions.
#[test]
fn listing_the_same_again_keeps_one_copy() {
    let mut c = Catalog::new("__");
    c.apply(&spec("a", "a"));
    c.set_listing("a", Some(listing(&["x", "y"])));
    let before = c.snapshot();
    let mut again = (*listing(&["x", "y", "z"])).clone();
    again.tools.swap(0, 2);
    c.set_listing("a", Some(Arc::new(again)));
    let after = c.snapshot();
    let def = |s: &Snapshot, name: &str| s.tool(name).map(|e| e.def.clone());
    let (Some(old), Some(new)) = (def(&before, "a__y"), def(&after, "a__y")) else {
        panic!("a__y is published");
    };
    assert!(Arc::ptr_eq(&old, &new), "found by name");
    let listed = c.backends.get("a").and_then(|b| b.wants.listed.clone());
    let held = listed.map(|l| l.tools.iter().any(|d| Arc::ptr_eq(d, &old)));
    assert_eq!(held, Some(true), "the listing holds the published copy");
    c.set_listing("a", Some(listing(&["z", "y", "x"])));
    assert_eq!(c.snapshot().changed_since(&after), [false, false, false]);
}
