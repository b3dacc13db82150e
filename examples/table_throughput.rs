//! Single-threaded table-searcher throughput on generated rows shaped like
//! benches/db_scan.sh's table (id, name, sfzh, phone, note; every value
//! distinct): the per-cell engine cost of a `--full` database scan without
//! the database. `roster` adds the low-cardinality columns of a real
//! student roster (school, grade, class, gender, district: few distinct
//! values). Prints rows/s on CPU time; run under `valgrind --tool=callgrind`
//! for an instruction count that a busy machine does not distort.
//!
//!     cargo run --release --example table_throughput -- [ROWS] [roster]

use childguard::detect::{Engine, EngineOptions};
use childguard::finding::Location;
use childguard::fingerprint::Fingerprinter;
use childguard::scan::table::TableScanner;

/// The MOD 11-2 check character of the first 17 digits.
fn check_char(base: &str) -> char {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = base
        .bytes()
        .zip(W)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    b"10X98765432"[(s % 11) as usize] as char
}

fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROWS"))
        .unwrap_or(1_000_000);
    let as_of = chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
    let engine =
        Engine::new(EngineOptions::new(as_of), Fingerprinter::new(b"bench")).expect("engine");
    let start = chrono::NaiveDate::from_ymd_opt(1975, 1, 1).unwrap();
    let roster = std::env::args().nth(2).as_deref() == Some("roster");
    let mut cols: Vec<String> = ["id", "name", "sfzh", "phone", "note"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if roster {
        cols.extend(["xxmc", "nj", "bj", "xb", "district"].map(String::from));
    }
    let schools: Vec<String> = (1..=40).map(|i| format!("北京市第{i}中学")).collect();
    let grades = ["一年级", "二年级", "三年级", "四年级", "五年级", "六年级"];
    let districts = ["东城区", "西城区", "朝阳区", "海淀区", "丰台区"];
    // Rows are generated first, so only the scan is timed.
    let data: Vec<Vec<String>> = (1..=rows)
        .map(|g| {
            let birth = start + chrono::Duration::days((g % 15000) as i64);
            let base = format!("110105{}{:03}", birth.format("%Y%m%d"), g % 1000);
            let id = format!("{base}{}", check_char(&base));
            let mut row = vec![
                g.to_string(),
                format!("学生{g}"),
                id,
                format!("138{:08}", g % 100_000_000),
                format!("order {} shipped", 100_000_000_000_000_000u64 + g),
            ];
            if roster {
                row.extend([
                    schools[(g % 40) as usize].clone(),
                    grades[(g % 6) as usize].to_string(),
                    format!("{}班", g % 8 + 1),
                    if g % 2 == 0 { "男" } else { "女" }.to_string(),
                    districts[(g % 5) as usize].to_string(),
                ]);
            }
            row
        })
        .collect();
    let mut ts = TableScanner::new(&engine, "bench", Location::default(), &cols, false);
    let c0 = cpu();
    let mut cells: Vec<Option<&str>> = Vec::with_capacity(cols.len());
    for r in &data {
        cells.clear();
        cells.extend(r.iter().map(|s| Some(s.as_str())));
        ts.add_row(&cells, None);
    }
    let secs = cpu() - c0;
    let findings = ts.finish();
    println!(
        "{rows} rows x {} cells in {secs:.2} s cpu = {:.0} rows/s; {} finding(s)",
        cols.len(),
        rows as f64 / secs,
        findings.len()
    );
}

fn cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
