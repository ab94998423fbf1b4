//! The catalog: public names, routing a call by name, publishing a backend's new listing
//! among many, and writing `tools/list`.

use std::cell::OnceCell;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_gateway::catalog::naming::{public_name, valid_name};
use mcp_gateway::catalog::{CatalogHandle, List, ListText, Listing};
use mcp_gateway_micro::{backend, catalog, listing};

/// Backends × tools per backend of the large catalogs: 50,000 tools.
const LARGE: (usize, usize) = (100, 500);
/// Many small backends: 1,000 × 5.
const MANY: (usize, usize) = (1_000, 5);

// Large inputs are built on first use (`OnceCell`), so that a run filtered to a few
// benchmarks does not build the others' catalogs.

fn naming(c: &mut Criterion) {
    let mut g = c.benchmark_group("naming");
    let long = "search_issues_and_pull_requests_across_every_repository_of_the_organisation";
    let odd = "files/read.text (ünïcode)";
    let cases = [
        ("short", "create_issue"),
        ("long (>64)", long),
        ("odd characters", odd),
    ];
    for (label, upstream) in cases {
        g.bench_function(format!("public_name {label}"), |b| {
            b.iter(|| public_name(black_box("github"), "__", black_box(upstream)))
        });
    }
    for (label, raw) in cases {
        g.bench_function(format!("valid_name {label}"), |b| {
            b.iter(|| valid_name(black_box(raw)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("lookup");
    let snap = OnceCell::new();
    let snap = || snap.get_or_init(|| catalog(LARGE.0, LARGE.1).snapshot());
    let hit = "fx0042__search_issue_0005";
    g.bench_function("Snapshot::tool hit (50,000 tools)", |b| {
        let snap = snap();
        assert!(snap.tool(hit).is_some(), "{hit} is in the catalog");
        b.iter(|| snap.tool(black_box(hit)).is_some())
    });
    g.bench_function("Snapshot::tool miss (50,000 tools)", |b| {
        let snap = snap();
        b.iter(|| snap.tool(black_box("fx0042__search_issue_9999")).is_some())
    });
    g.finish();
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.sample_size(10);
    for (backends, tools) in [MANY, LARGE] {
        let size = format!("{backends}x{tools}");
        // Two listings that differ, so each update really changes the backend's tools.
        let listings = [listing(tools, 1), listing(tools, 2)];
        let name = backend(backends / 2);
        let handle = OnceCell::new();
        let mut n = 0;
        g.bench_function(
            format!("CatalogHandle::set_listing one backend of {size}"),
            |b| {
                let handle = handle.get_or_init(|| CatalogHandle::new(catalog(backends, tools)));
                b.iter(|| {
                    n += 1;
                    handle.set_listing(&name, Some(listings[n % 2].clone()));
                })
            },
        );
        drop(handle);
        // As the fixtures do, every backend also lists one resource URI: the first backend
        // serves it and every other one's is a collision.
        let listings = listings.map(|l| with_resource(&l));
        let handle = OnceCell::new();
        g.bench_function(
            format!("CatalogHandle::set_listing one backend of {size}, one URI in every backend"),
            |b| {
                let handle = handle.get_or_init(|| {
                    let handle = CatalogHandle::new(catalog(backends, tools));
                    let shared = with_resource(&listing(tools, 0));
                    for i in 0..backends {
                        handle.set_listing(&backend(i), Some(shared.clone()));
                    }
                    handle
                });
                b.iter(|| {
                    n += 1;
                    handle.set_listing(&name, Some(listings[n % 2].clone()));
                })
            },
        );
        drop(handle);
        // The part of a set_listing done before the catalog's lock is taken: compacting the
        // listing (a listing for an unknown backend is compacted, then dropped).
        let handle = OnceCell::new();
        g.bench_function(format!("CatalogHandle::set_listing compaction only, {tools} tools"), |b| {
            let handle = handle.get_or_init(|| CatalogHandle::new(catalog(backends, tools)));
            b.iter(|| {
                n += 1;
                handle.set_listing("ghost", Some(listings[n % 2].clone()));
            })
        });
        drop(handle);
        let built = OnceCell::new();
        g.bench_function(format!("Catalog::snapshot {size}"), |b| {
            let catalog = built.get_or_init(|| catalog(backends, tools));
            b.iter(|| catalog.snapshot())
        });
        // What every change cost before snapshots were kept up to date change by change, and
        // what one still costs when names meet a renaming.
        g.bench_function(format!("Catalog::rebuilt {size}"), |b| {
            let catalog = built.get_or_init(|| catalog(backends, tools));
            b.iter(|| catalog.rebuilt())
        });
    }
    g.finish();
}

/// `listing` with the resource every fixture lists.
fn with_resource(listing: &Listing) -> Arc<Listing> {
    let mut listing = listing.clone();
    listing.resources.push(serde_json::json!({"uri": "fixture://readme", "name": "readme"}));
    Arc::new(listing)
}

fn list(c: &mut Criterion) {
    let mut g = c.benchmark_group("list");
    g.sample_size(10);
    let built = OnceCell::new();
    let built = || {
        built.get_or_init(|| {
            let catalog = catalog(LARGE.0, LARGE.1);
            let snap = catalog.snapshot();
            (catalog, snap)
        })
    };
    // How the relay answers a page (`Gateway::list`): a fresh buffer, the items written.
    g.bench_function("Snapshot::write one page of 500 (50,000 tools)", |b| {
        let (_, snap) = built();
        b.iter(|| {
            let mut out = Vec::with_capacity(256);
            snap.write(List::Tools, black_box(25_000..25_500), &mut out);
            out
        })
    });
    // The whole list as an HTTP client gets it: written from the definitions in pieces of
    // 256 KB (what the frontend's body does), none kept.
    g.bench_function("tools/list answer in 256 KB pieces (50,000 tools)", |b| {
        let snap = Arc::new(built().0.snapshot());
        b.iter(|| {
            let text = ListText {
                head: b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[".to_vec(),
                snap: snap.clone(),
                list: List::Tools,
                range: 0..usize::MAX,
                tail: b"]}}".to_vec(),
            };
            let (mut at, mut bytes) = (0, 0);
            loop {
                let mut piece = Vec::with_capacity(16 * 1024);
                let next = text.write_piece(at, &mut piece, 256 * 1024);
                bytes += black_box(piece).len();
                match next {
                    Some(n) => at = n,
                    None => break bytes,
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, naming, apply, list);
criterion_main!(benches);
