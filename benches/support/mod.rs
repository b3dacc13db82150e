//! Shared by the store benches: synthetic findings shaped like real log
//! findings (ids, masked values and fingerprints of real length).

use childguard::finding::{Category, Finding, Location, Sensitivity};

/// Finding `i` of `path` with the given rule, category and fingerprint seed.
pub fn log_finding(path: String, i: usize, seed: u128, rule: &str, category: Category) -> Finding {
    let location = Location {
        path: Some(path),
        line: Some(i as u64 + 1),
        byte_offset: Some(i as u64 * 80),
        ..Default::default()
    };
    let fp = format!("{:064x}", seed * 2_654_435_761);
    Finding {
        finding_id: Finding::compute_id("bench", &location, rule, &fp),
        target: "bench".into(),
        location,
        category,
        rule: rule.into(),
        child: [Some(true), Some(false), None][i % 3],
        confidence: 0.98,
        masked: "110105********123X".into(),
        fingerprint: fp,
        sensitivity: Sensitivity::High,
        rows_scanned: None,
        count: None,
        child_count: None,
        rows: None,
    }
}
