//! Store write throughput (issue 9): N text findings written through the
//! [`StoreSink`] (the scan's batched writer) into SQLite and, when
//! CHILDGUARD_BENCH_PG_URL is set, into PostgreSQL. Prints findings/s for
//!
//! - `insert`: a first scan (every finding is new), and
//! - `rescan`: the same findings again in the next run (every row takes the
//!   `ON CONFLICT … DO UPDATE` path, as a nightly re-scan does),
//!
//! best of CHILDGUARD_BENCH_REPS (default 3) rounds, each on a fresh store.
//! CHILDGUARD_BENCH_WRITERS=W (default 1) runs W writers at once (W runs,
//! disjoint findings), as W shard processes do; the figure is their sum.
//!
//! CHILDGUARD_BENCH_PG_URL is an admin URL (e.g.
//! postgres://postgres@127.0.0.1:5432/postgres): the bench creates and drops
//! its own database `cg_store_write_<pid>` there.
//!
//! cargo bench --bench store_write

mod support;

use childguard::finding::{Category, Finding};
use childguard::scan::FindingSink;
use childguard::store::*;
use sqlx::Connection;
use std::sync::Arc;
use std::time::Instant;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` findings shaped like the log findings of benches/shard_scaling.sh:
/// ids, masked values and fingerprints of real length, 500 files.
fn findings(writer: usize, n: usize) -> Vec<Finding> {
    (0..n)
        .map(|i| {
            let (rule, cat) = if i % 2 == 0 {
                ("cn.resident_id", Category::ALL[0])
            } else {
                ("cn.mobile", Category::CnMobile)
            };
            let path = format!("logs/w{writer}/app-{:03}.log", i % 500);
            support::log_finding(path, i, (writer * n + i) as u128, rule, cat)
        })
        .collect()
}

/// One run per writer, all at once: findings/s of all writers together.
fn write_runs(rt: &tokio::runtime::Runtime, store: &Arc<dyn Store>, data: &[Vec<Finding>]) -> f64 {
    let runs: Vec<i64> = data
        .iter()
        .map(|_| rt.block_on(store.begin_run(&["bench".into()])).unwrap())
        .collect();
    let t = Instant::now();
    let written: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = data
            .iter()
            .zip(&runs)
            .map(|(d, &run)| {
                let (mut sink, writer) =
                    rt.block_on(async { StoreSink::spawn(store.clone(), run) });
                s.spawn(move || {
                    for f in d {
                        sink.finding(f.clone()).unwrap();
                    }
                    drop(sink);
                    writer.finish().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let secs = t.elapsed().as_secs_f64();
    let expected: usize = data.iter().map(Vec::len).sum();
    assert_eq!(written as usize, expected, "every finding written");
    for run in runs {
        rt.block_on(store.finish_run(run, &RunStats::default()))
            .unwrap();
    }
    written as f64 / secs
}

fn bench(
    rt: &tokio::runtime::Runtime,
    name: &str,
    open: &dyn Fn(usize) -> Arc<dyn Store>,
    data: &[Vec<Finding>],
) {
    let reps = env_num("CHILDGUARD_BENCH_REPS", 3).max(1);
    let (mut insert, mut rescan) = (0f64, 0f64);
    for rep in 0..reps {
        let store = open(rep);
        let a = write_runs(rt, &store, data);
        let b = write_runs(rt, &store, data);
        println!("[{name}] round {rep}: insert {a:.0} findings/s, rescan {b:.0} findings/s");
        insert = insert.max(a);
        rescan = rescan.max(b);
    }
    let total: usize = data.iter().map(Vec::len).sum();
    println!(
        "[{name}] {total} findings, {} writer(s), best of {reps}: insert {insert:.0} findings/s, rescan {rescan:.0} findings/s",
        data.len()
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let n = env_num("CHILDGUARD_BENCH_N", 100_000);
    let writers = env_num("CHILDGUARD_BENCH_WRITERS", 1).max(1);
    let data: Vec<Vec<Finding>> = (0..writers).map(|w| findings(w, n / writers)).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("CHILDGUARD_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let open = |rep: usize| -> Arc<dyn Store> {
            let path = dir.path().join(format!("{rep}")).join(DB_FILE);
            Arc::new(rt.block_on(SqliteStore::open(&path)).unwrap())
        };
        bench(&rt, "sqlite", &open, &data);
    }
    let Ok(admin) = std::env::var("CHILDGUARD_BENCH_PG_URL") else {
        println!("[postgres] skipped: set CHILDGUARD_BENCH_PG_URL to an admin URL");
        return;
    };
    if !(only.is_empty() || only == "postgres") {
        return;
    }
    let db = format!("cg_store_write_{}", std::process::id());
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin)
        .to_string();
    let admin_sql = |sql: String| {
        rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query(&sql).execute(&mut c).await.unwrap();
        })
    };
    let open = |_rep: usize| -> Arc<dyn Store> {
        admin_sql(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        admin_sql(format!("CREATE DATABASE {db}"));
        Arc::new(
            rt.block_on(PgStore::connect(&format!("{base}/{db}")))
                .unwrap(),
        )
    };
    bench(&rt, "postgres", &open, &data);
    admin_sql(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}
