//! Per-cell cost of the table path by value shape (ns per scan_value_counted
//! call, one thread): which shapes of database values the engine is slow on.
//!
//!     cargo run --release --example cell_cost [-- COLUMN [N]]
use childguard::detect::{Engine, EngineOptions};
use childguard::fingerprint::Fingerprinter;
use std::time::Instant;

fn main() {
    let as_of = chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
    let e = Engine::new(EngineOptions::new(as_of), Fingerprinter::new(b"bench")).expect("engine");
    let cases: &[(&str, &str)] = &[
        ("id", "123456"),
        ("name", "学生123456"),
        ("sfzh", "110105197501010011"),
        ("phone", "13800123456"),
        ("note", "order 100000000000123456 shipped"),
        ("xxmc", "北京市第12中学"),
        ("nj", "三年级"),
        ("comment", "家长反映孩子最近学习状态不错，希望老师多关注"),
    ];
    let only = std::env::args().nth(1);
    let n: usize = std::env::args()
        .nth(2)
        .map_or(200_000, |s| s.parse().expect("N"));
    let mut hits = Vec::new();
    for (col, v) in cases {
        if only.as_deref().is_some_and(|o| o != *col) {
            continue;
        }
        let ctx = e.column_ctx(col);
        let t = Instant::now();
        let mut k = 0;
        for _ in 0..n {
            hits.clear();
            e.scan_value_counted(v, &ctx, &mut hits);
            k += hits.len();
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("{col:<8} {:>6.0} ns  {} hit(s)  {v}", ns, k / n);
    }
}
