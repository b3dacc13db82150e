//! Store speed: write 100,000 findings through the batched writer, then time
//! the daemon's common query — a filtered page (dataset + child + open) with
//! its total count, first page and a deep keyset page — on SQLite, and on
//! PostgreSQL when CHILDGUARD_BENCH_PG_URL points to an empty database.
//!
//! cargo bench --bench store_page

mod support;

use childguard::finding::{Category, Finding};
use childguard::scan::FindingSink;
use childguard::store::*;
use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use std::time::Instant;

/// Findings in the store (override with CHILDGUARD_BENCH_N).
fn n() -> usize {
    std::env::var("CHILDGUARD_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn findings() -> Vec<Finding> {
    (0..n())
        .map(|i| {
            let path = format!("logs/app-{}.log", i % 500);
            support::log_finding(path, i, i as u128, "cn.resident_id", Category::ALL[i % 6])
        })
        .collect()
}

fn fill(
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
) -> (i64, Vec<(String, Option<String>)>) {
    let data = findings();
    let t = Instant::now();
    let run = rt.block_on(store.begin_run(&["bench".into()])).unwrap();
    let (sink, writer) = rt.block_on(async { StoreSink::spawn(store.clone(), run) });
    let mut sink = sink;
    for f in data.iter().cloned() {
        sink.finding(f).unwrap();
    }
    drop(sink);
    let written = writer.finish().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "[{}] wrote {written} findings via StoreSink in {secs:.2}s ({:.0} findings/s)",
        store.backend(),
        written as f64 / secs
    );
    let assign: Vec<(String, Option<String>)> = data
        .iter()
        .enumerate()
        .map(|(i, f)| (f.finding_id.clone(), Some(format!("ds{}", i % 10))))
        .collect();
    let t = Instant::now();
    rt.block_on(store.set_datasets(&assign)).unwrap();
    println!(
        "[{}] assigned datasets to {} findings in {:.2}s",
        store.backend(),
        n(),
        t.elapsed().as_secs_f64()
    );
    rt.block_on(store.finish_run(run, &RunStats::default()))
        .unwrap();
    (run, assign)
}

fn bench_store(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, store: Arc<dyn Store>) {
    let (run, _) = fill(rt, store.clone());
    let filter = FindingFilter {
        dataset: Some("ds3".into()),
        child: Some(true),
        resolved: Some(false),
        run: Some(run),
        limit: 50,
        ..Default::default()
    };
    let first = rt.block_on(store.findings(&filter)).unwrap();
    println!(
        "[{name}] filtered total {} (page of {})",
        first.total,
        first.items.len()
    );
    // A deep page: keyset from the middle of the result.
    let mut deep = filter.clone();
    deep.after = Some(
        rt.block_on(store.findings(&FindingFilter {
            limit: 1_700,
            ..filter.clone()
        }))
        .unwrap()
        .items
        .last()
        .unwrap()
        .finding
        .finding_id
        .clone(),
    );
    let mut g = c.benchmark_group(format!("store_{name}"));
    g.sample_size(30);
    g.bench_function("filtered_page_first", |b| {
        b.iter(|| rt.block_on(store.findings(&filter)).unwrap())
    });
    g.bench_function("filtered_page_deep_keyset", |b| {
        b.iter(|| rt.block_on(store.findings(&deep)).unwrap())
    });
    let by_cat = FindingFilter {
        category: Some(Category::CnMobile),
        status: Some(TriageStatus::Open),
        limit: 50,
        ..Default::default()
    };
    g.bench_function("category_status_page", |b| {
        b.iter(|| rt.block_on(store.findings(&by_cat)).unwrap())
    });
    g.bench_function("dataset_counts", |b| {
        b.iter(|| rt.block_on(store.dataset_counts(Some(run))).unwrap())
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(
        rt.block_on(SqliteStore::open(&dir.path().join(DB_FILE)))
            .unwrap(),
    );
    bench_store(c, "sqlite", &rt, sqlite);
    if let Ok(url) = std::env::var("CHILDGUARD_BENCH_PG_URL") {
        let pg: Arc<dyn Store> = Arc::new(rt.block_on(PgStore::connect(&url)).unwrap());
        bench_store(c, "postgres", &rt, pg);
    }
}

criterion_group!(store, benches);
criterion_main!(store);
