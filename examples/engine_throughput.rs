//! Single-threaded engine throughput over a file: reads it into memory, scans
//! newline-aligned 4 MiB chunks with the full rule set, prints MB/s and the
//! number of hits per category. Used by benches/compare_rg.sh.
//!
//!     cargo run --release --example engine_throughput -- FILE [--as-of YYYY-MM-DD]

use childguard::detect::{Engine, EngineOptions};
use childguard::fingerprint::Fingerprinter;
use std::collections::BTreeMap;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: engine_throughput FILE [--as-of YYYY-MM-DD]");
    let as_of = args
        .iter()
        .position(|a| a == "--as-of")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse().expect("--as-of YYYY-MM-DD"))
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let data = std::fs::read(path).expect("read file");
    let text = std::str::from_utf8(&data).expect("UTF-8 input");
    let engine =
        Engine::new(EngineOptions::new(as_of), Fingerprinter::new(b"bench")).expect("engine");
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut hits = Vec::with_capacity(1 << 16);
    let t0 = Instant::now();
    let mut pos = 0;
    const CHUNK: usize = 4 << 20;
    while pos < text.len() {
        let mut end = (pos + CHUNK).min(text.len());
        if end < text.len() {
            end = memchr::memchr(b'\n', &data[end..]).map_or(text.len(), |p| end + p + 1);
        }
        hits.clear();
        engine.scan_text(&text[pos..end], &mut hits);
        for h in &hits {
            *counts.entry(h.category.as_str()).or_default() += 1;
        }
        pos = end;
    }
    let secs = t0.elapsed().as_secs_f64();
    let mb = data.len() as f64 / 1e6;
    for (c, n) in &counts {
        eprintln!("  {c:<18} {n}");
    }
    println!(
        "childguard engine (17 categories, 1 thread): {:.1} MB in {:.2} s = {:.1} MB/s",
        mb,
        secs,
        mb / secs
    );
}
