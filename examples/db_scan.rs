//! Scan one database target through the library, as `childguard scan` will:
//! every table in parallel (rayon), findings counted, timing printed.
//! Used by `benches/db_scan.sh`.
//!
//! ```text
//! cargo run --release --example db_scan -- postgres://… [--full] [--sample N] [--concurrency N]
//! ```

use childguard::config::sources::SourceConfig;
use childguard::detect::{Engine, EngineOptions};
use childguard::fingerprint::Fingerprinter;
use childguard::source::db::{self, RemoteOptions};
use childguard::source::ScanOptions;
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: db_scan URL [--full] [--sample N] [--concurrency N]");
    let mut opts = ScanOptions {
        full: false,
        sample_rows: 1000,
        rows: false,
    };
    let mut cfg = SourceConfig::from_url(&url);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--full" => opts.full = true,
            "--sample" => {
                opts.sample_rows = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--sample N")
            }
            "--concurrency" => {
                cfg.concurrency = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--concurrency N")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let t0 = Instant::now();
    let src = db::open(&cfg, &RemoteOptions::default()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let engine = Engine::new(
        EngineOptions::new(chrono::Utc::now().date_naive()),
        Fingerprinter::new(b"bench"),
    )
    .unwrap();
    let units = src.units().unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.concurrency.max(1))
        .build()
        .unwrap();
    let results: Vec<_> = pool.install(|| {
        units
            .par_iter()
            .map(|u| {
                let mut n = 0u64;
                let mut child = 0u64;
                let r = src.scan_unit(u, &engine, &opts, &mut |f| {
                    n += 1;
                    child += f.child_count.unwrap_or(0);
                });
                (r, n, child)
            })
            .collect()
    });
    let mut rows = 0;
    let mut findings = 0;
    let mut child = 0;
    let mut errors = 0;
    for (r, n, c) in results {
        match r {
            Ok(s) => rows += s.rows,
            Err(e) => {
                eprintln!("error: {e}");
                errors += 1
            }
        }
        findings += n;
        child += c;
    }
    println!(
        "tables={} rows={rows} findings={findings} child_values={child} errors={errors} seconds={:.3}",
        units.len(),
        t0.elapsed().as_secs_f64()
    );
}
