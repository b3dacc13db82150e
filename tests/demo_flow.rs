//! The README quick start end to end: `childguard demo` writes the estate,
//! scans it into the embedded store, classifies it, plans a sweep and writes
//! the report; then childguard scans its own state and report and must find
//! no identifier there (it never becomes a second copy of what it hunts).

mod common;

use serde_json::Value;

#[test]
fn demo_scans_classifies_plans_and_keeps_no_raw_values() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("demo");
    let o = common::run(d.path(), &["demo", "--dir", dir.to_str().unwrap()]);
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("recorded in the sqlite store"), "{err}");
    assert!(
        err.contains("main.students: 100"),
        "sweep plan counts the overdue rows: {err}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("retention_overdue") || html.contains("Retention"),
        "report names overdue retention"
    );

    let cfg = dir.join("childguard.toml");
    let o = common::run(
        d.path(),
        &[
            "report",
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let viol = v["violations"].as_array().unwrap();
    let has = |kind: &str, unit: &str, pred: &dyn Fn(&Value) -> bool| {
        viol.iter()
            .any(|x| x["kind"] == kind && x["unit_id"] == unit && pred(x))
    };
    assert!(
        has("retention_overdue", "main.students", &|x| x["record_count"]
            == 100
            && x["dataset"] == "students"),
        "100 of 300 students rows are past 365 days: {viol:#?}"
    );
    assert!(has("undeclared_dataset", "main.marketing_leads", &|x| x
        ["category"]
        == "vulnerable_child"));
    assert!(has(
        "undeclared_dataset",
        "exports/class_roster.csv",
        &|x| x["category"] == "cn_resident_id" && x["record_count"] == 60
    ));
    assert!(has("plaintext_in_encrypted", "main.students", &|x| x
        ["column"]
        == "id_number"));
    assert!(viol
        .iter()
        .all(|x| x["owner"].is_null() || x["dataset"].is_string()));

    // childguard's own state (store, journal, receipts) and report hold no identifier.
    let o = common::run(
        d.path(),
        &[
            "scan",
            dir.join("state").to_str().unwrap(),
            &format!("sqlite://{}", dir.join("state/childguard.db").display()),
            dir.join("report.html").to_str().unwrap(),
            "--full",
            "--format",
            "jsonl",
            "--quiet",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let own = common::jsonl(&o.stdout);
    // The store itself was read: its findings table holds masked values and fingerprints only.
    let leaked: Vec<_> = own
        .iter()
        .filter(|f| ["cn_resident_id", "cn_mobile"].contains(&f["category"].as_str().unwrap_or("")))
        .collect();
    assert!(
        leaked.is_empty(),
        "raw identifiers in childguard's own state: {leaked:#?}"
    );
}
