//! Single-threaded engine throughput over a file: reads it into memory, scans
//! newline-aligned 4 MiB chunks with the full rule set, prints MB/s and the
//! number of hits per category. Used by benches/compare_rg.sh.
//! `--threads N` (N > 1) also scans the same chunks on N threads sharing one
//! engine and prints the wall-clock speed-up over the one-thread pass.
//!
//!     cargo run --release --example engine_throughput -- FILE [--as-of YYYY-MM-DD] [--threads N]

use childguard::detect::{Engine, EngineOptions};
use childguard::fingerprint::Fingerprinter;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    let threads: usize = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse().expect("--threads N"))
        .unwrap_or(1);
    let data = std::fs::read(path).expect("read file");
    let text = std::str::from_utf8(&data).expect("UTF-8 input");
    let engine =
        Engine::new(EngineOptions::new(as_of), Fingerprinter::new(b"bench")).expect("engine");
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut hits = Vec::with_capacity(1 << 16);
    let mut chunks = Vec::new();
    let mut pos = 0;
    const CHUNK: usize = 4 << 20;
    while pos < text.len() {
        let mut end = (pos + CHUNK).min(text.len());
        if end < text.len() {
            end = memchr::memchr(b'\n', &data[end..]).map_or(text.len(), |p| end + p + 1);
        }
        chunks.push((pos, end));
        pos = end;
    }
    let c0 = thread_cpu_secs();
    let t0 = Instant::now();
    for &(s, e) in &chunks {
        hits.clear();
        engine.scan_text(&text[s..e], &mut hits);
        for h in &hits {
            *counts.entry(h.category.as_str()).or_default() += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_secs() - c0;
    let mb = data.len() as f64 / 1e6;
    for (c, n) in &counts {
        eprintln!("  {c:<18} {n}");
    }
    println!(
        "childguard engine (17 categories, 1 thread): {:.1} MB, wall {:.3} s = {:.1} MB/s, cpu {:.3} s = {:.1} MB/s",
        mb,
        secs,
        mb / secs,
        cpu,
        mb / cpu
    );
    if threads > 1 {
        // The same chunks on `threads` threads sharing the engine; hit counts must agree.
        let next = AtomicUsize::new(0);
        let p0 = cpu_secs(libc::CLOCK_PROCESS_CPUTIME_ID);
        let t0 = Instant::now();
        let total: u64 = std::thread::scope(|sc| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    sc.spawn(|| {
                        let mut hits = Vec::with_capacity(1 << 16);
                        let mut n = 0u64;
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&(s, e)) = chunks.get(k) else { break };
                            hits.clear();
                            engine.scan_text(&text[s..e], &mut hits);
                            n += hits.len() as u64;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        });
        let wall = t0.elapsed().as_secs_f64();
        let pcpu = cpu_secs(libc::CLOCK_PROCESS_CPUTIME_ID) - p0;
        assert_eq!(
            total,
            counts.values().sum::<u64>(),
            "hits differ between 1 and {threads} threads"
        );
        // On a busy machine the wall-clock speed-up shows the cores we got;
        // CPU time 1 thread / N threads shows the engine's own scaling
        // overhead (1.00 = none: linear when N cores are free).
        println!(
            "childguard engine, {threads} threads: wall {:.2} s = {:.1} MB/s; speed-up over 1 thread (wall) {:.2}x; cpu {:.2} s, cpu efficiency {:.2}",
            wall,
            mb / wall,
            secs / wall,
            pcpu,
            cpu / pcpu
        );
    }
}

/// CPU time of this thread (the scan runs on it alone), so busy machines do not distort the figure.
fn thread_cpu_secs() -> f64 {
    cpu_secs(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of `clock` (this thread or the whole process).
fn cpu_secs(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
