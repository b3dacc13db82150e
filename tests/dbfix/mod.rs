//! Ground-truth fixtures shared by the database and object-store source tests:
//! valid 18-digit resident IDs of children and adults, 11-digit mobiles, and
//! decoys (18-digit numbers with a bad check digit).
#![allow(dead_code)]

use childguard::detect::{Engine, EngineOptions};
use childguard::finding::{Category, Finding};
use childguard::fingerprint::Fingerprinter;
use childguard::source::{ScanOptions, Source, UnitError, UnitStats};
use chrono::NaiveDate;

pub mod objects;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

fn check_digit(first17: &str) -> char {
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    CHECK[(sum % 11) as usize] as char
}

/// A valid resident ID born `year`, day derived from `i` (never ends in X: seq chosen so).
pub fn id18(year: i32, i: u64) -> String {
    let d = NaiveDate::from_ymd_opt(year, 1, 1).unwrap() + chrono::Duration::days((i % 360) as i64);
    let mut seq = i % 1000;
    loop {
        let s = format!("110105{}{:03}", d.format("%Y%m%d"), seq);
        let c = check_digit(&s);
        if c != 'X' {
            return format!("{s}{c}");
        }
        seq = (seq + 1) % 1000;
    }
}

/// A child at the test as-of date (born 2015).
pub fn child_id(i: u64) -> String {
    id18(2015, i)
}

/// An adult (born 1980).
pub fn adult_id(i: u64) -> String {
    id18(1980, i)
}

/// 18 digits that look like an ID but fail the check digit (an order number).
pub fn bad_id(i: u64) -> String {
    let good = id18(1990, i);
    let last = good.as_bytes()[17];
    let wrong = if last == b'9' { b'0' } else { last + 1 };
    let wrong = if CHECK.contains(&wrong) && wrong == b'X' {
        b'1'
    } else {
        wrong
    };
    let s = format!("{}{}", &good[..17], wrong as char);
    assert_ne!(s, good);
    s
}

/// A valid mainland mobile.
pub fn mobile(i: u64) -> String {
    format!("138{:08}", i % 100_000_000)
}

pub fn engine() -> Engine {
    Engine::new(
        EngineOptions::new(NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
        Fingerprinter::new(b"test-key"),
    )
    .unwrap()
}

/// Scan every unit of a source; findings, per-unit stats and per-unit errors.
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub stats: Vec<(String, UnitStats)>,
    pub errors: Vec<UnitError>,
}

impl Outcome {
    pub fn find(&self, table: &str, column: &str, cat: Category) -> Option<&Finding> {
        self.findings.iter().find(|f| {
            (f.location.table.as_deref() == Some(table)
                || f.location.path.as_deref() == Some(table))
                && f.location.column.as_deref() == Some(column)
                && f.category == cat
        })
    }
    pub fn in_table(&self, table: &str) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| {
                f.location.table.as_deref() == Some(table)
                    || f.location.path.as_deref() == Some(table)
            })
            .collect()
    }
    pub fn stat(&self, unit: &str) -> &UnitStats {
        &self
            .stats
            .iter()
            .find(|(u, _)| u == unit)
            .unwrap_or_else(|| panic!("no stats for {unit}"))
            .1
    }
}

pub fn scan_all(src: &dyn Source, opts: &ScanOptions) -> Outcome {
    let e = engine();
    let units = src.units().expect("units");
    let mut out = Outcome {
        findings: Vec::new(),
        stats: Vec::new(),
        errors: Vec::new(),
    };
    for u in &units {
        let mut fs = Vec::new();
        match src.scan_unit(u, &e, opts, &mut |f| fs.push(f)) {
            Ok(s) => {
                out.findings.extend(fs);
                out.stats.push((u.id.clone(), s));
            }
            Err(err) => out.errors.push(err),
        }
    }
    out
}

/// The `--rows` keys of a finding as integers, in the order it lists them.
pub fn int_row_keys(f: &Finding) -> Vec<u64> {
    f.rows
        .as_ref()
        .expect("a --rows finding lists its rows")
        .iter()
        .map(|k| k.parse().expect("an integer key"))
        .collect()
}

pub fn sample(n: u64) -> ScanOptions {
    ScanOptions {
        full: false,
        sample_rows: n,
        rows: false,
    }
}

pub fn full() -> ScanOptions {
    ScanOptions {
        full: true,
        sample_rows: 0,
        rows: false,
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn fixtures_are_what_they_claim() {
    for i in 0..500 {
        assert!(childguard::detect::validate::resident_id_18(&child_id(i)).is_some());
        assert!(childguard::detect::validate::resident_id_18(&adult_id(i)).is_some());
        assert!(childguard::detect::validate::resident_id_18(&bad_id(i)).is_none());
        assert!(childguard::detect::validate::mobile(&mobile(i)));
    }
}
