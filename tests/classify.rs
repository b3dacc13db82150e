//! The classifier end to end: real files and real PostgreSQL tables are
//! scanned with the engine's searchers, stored, and classified against an
//! inventory; every violation kind is checked with its count, owner, article
//! and severity.

mod common;

use childguard::classify::{classify_run, normalize_target};
use childguard::config::{check_str, Config};
use childguard::detect::{Engine, EngineOptions};
use childguard::finding::{Category, Location};
use childguard::fingerprint::Fingerprinter;
use childguard::scan::table::TableScanner;
use childguard::scan::text::{scan_chunk, TextOrigin};
use childguard::scan::FindingSink;
use childguard::store::*;
use sqlx::{Connection, Row};
use std::path::Path;
use std::sync::Arc;

pub fn resident_id(region: &str, birth: &str, seq: &str) -> String {
    let body = format!("{region}{birth}{seq}");
    let w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = body
        .bytes()
        .zip(w)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    format!("{body}{}", b"10X98765432"[(s % 11) as usize] as char)
}

fn engine() -> Engine {
    Engine::new(
        EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
        Fingerprinter::new(b"test-key"),
    )
    .unwrap()
}

fn set_mtime(p: &Path, days_ago: u64) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(
        std::time::SystemTime::now() - std::time::Duration::from_secs(days_ago * 86_400),
    )
    .unwrap();
}

/// Scan every file under `root` as text (the scan CLI's job, done by hand here).
fn scan_dir(e: &Engine, root: &Path, target: &str, sink: &mut StoreSink) -> Vec<UnitRecord> {
    let mut units = Vec::new();
    for entry in ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .build()
    {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let mut out = Vec::new();
        scan_chunk(e, &TextOrigin { target, path: &rel }, &text, 1, 0, &mut out);
        for f in out {
            sink.finding(f).unwrap();
        }
        units.push(UnitRecord {
            target: target.into(),
            unit_id: rel,
            bytes: text.len() as u64,
            ..Default::default()
        });
    }
    units
}

/// Scan a PostgreSQL table with the table searcher.
async fn scan_pg_table(
    e: &Engine,
    url: &str,
    target: &str,
    table: &str,
    cols: &[&str],
    sink: &mut StoreSink,
) -> UnitRecord {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let sel = cols
        .iter()
        .map(|c| format!("{c}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query(&format!("SELECT {sel} FROM {table}"))
        .fetch_all(&mut c)
        .await
        .unwrap();
    let names: Vec<String> = cols.iter().map(|s| s.to_string()).collect();
    let mut ts = TableScanner::new(
        e,
        target,
        Location {
            table: Some(table.into()),
            ..Default::default()
        },
        &names,
        false,
    );
    for r in &rows {
        let cells: Vec<Option<String>> = (0..cols.len())
            .map(|i| r.get::<Option<String>, _>(i))
            .collect();
        let refs: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
        ts.add_row(&refs, None);
    }
    let n = ts.rows_scanned();
    for f in ts.finish() {
        sink.finding(f).unwrap();
    }
    UnitRecord {
        target: target.into(),
        unit_id: table.into(),
        rows: n,
        ..Default::default()
    }
}

async fn setup_pg() -> String {
    let url = common::fresh_pg_db("cg_classify").await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE students (id serial PRIMARY KEY, sfzh text, phone text, guardian_phone text, created_at timestamptz NOT NULL)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query("CREATE TABLE tmp_export (id serial PRIMARY KEY, idno text)")
        .execute(&mut c)
        .await
        .unwrap();
    for i in 0..10 {
        let id = resident_id(
            "110105",
            &format!("201{}0307", i % 8),
            &format!("{:03}", 100 + i),
        );
        // Rows 0..3 were created 400 days ago (past 365d); one exactly at the
        // cutoff would still be kept; the rest are recent.
        let age_days = if i < 3 { 400 } else { 10 };
        sqlx::query(&format!(
            "INSERT INTO students (sfzh, phone, guardian_phone, created_at) VALUES ($1, $2, $3, now() - interval '{age_days} days')"
        ))
        .bind(&id)
        .bind(format!("1381234{:04}", 5600 + i))
        .bind(format!("1391234{:04}", 7800 + i))
        .execute(&mut c)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO tmp_export (idno) VALUES ($1), ($2)")
        .bind(resident_id("110105", "20160101", "222"))
        .bind(resident_id("110105", "20170202", "333"))
        .execute(&mut c)
        .await
        .unwrap();
    url
}

fn inventory(dir: &Path, pg_url: &str) -> Config {
    let text = format!(
        r#"
[[sources]]
name = "school_db"
url = "{pg_url}"

[[datasets]]
name = "students"
source = "school_db"
match = ["public.students"]
owner = "Li Wei (DPO)"
purpose = "enrolment"
legal_basis = "guardian_consent"
location = "PostgreSQL, Beijing"
child_data = true
subject_key = "id"
encrypted = ["sfzh"]
retention = "365d after created_at"
categories = {{ sfzh = ["cn_resident_id"], phone = ["cn_mobile"] }}

[[datasets]]
name = "app_logs"
source = "{logs}"
match = ["app/*.log"]
owner = "Ops team"
purpose = "troubleshooting"
child_data = true
retention = "30d after object_age"
categories = {{ "*" = ["cn_mobile"] }}

[[datasets]]
name = "archive"
source = "{logs}"
match = ["archive/**"]
owner = "Records office"
purpose = "archive"
categories = {{ "*" = ["cn_resident_id"] }}
"#,
        logs = dir.display()
    );
    let (cfg, diags) = check_str(&text, Path::new("inventory.toml"));
    assert!(
        diags
            .iter()
            .all(|d| d.level != childguard::config::Level::Error),
        "{diags:#?}"
    );
    cfg.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_violation_kind_on_files_and_postgres() {
    let e = engine();
    let child = resident_id("110105", "20150307", "123");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::create_dir_all(root.join("export")).unwrap();
    std::fs::write(
        root.join("app/today.log"),
        format!("login phone 13812345678 id {child}\n"),
    )
    .unwrap();
    std::fs::write(root.join("app/old.log"), "login phone 13812345679\n").unwrap();
    std::fs::write(root.join("app/older.log"), "nothing\n").unwrap();
    set_mtime(&root.join("app/old.log"), 90);
    set_mtime(&root.join("app/older.log"), 31);
    std::fs::write(
        root.join("export/dump.txt"),
        format!("{child},13812345678\n"),
    )
    .unwrap();
    let pg = setup_pg().await;
    let pg_target = normalize_target(&pg);
    let cfg = inventory(root, &pg);

    let state = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&state.path().join("childguard.db"))
            .await
            .unwrap(),
    );
    let files_target = root.display().to_string();
    let run = store
        .begin_run(&[files_target.clone(), pg_target.clone()])
        .await
        .unwrap();
    let (mut sink, writer) = StoreSink::spawn(store.clone(), run);
    let mut units = scan_dir(&e, root, &files_target, &mut sink);
    units.push(
        scan_pg_table(
            &e,
            &pg,
            &pg_target,
            "public.students",
            &["id", "sfzh", "phone", "guardian_phone"],
            &mut sink,
        )
        .await,
    );
    units.push(
        scan_pg_table(
            &e,
            &pg,
            &pg_target,
            "public.tmp_export",
            &["id", "idno"],
            &mut sink,
        )
        .await,
    );
    drop(sink);
    writer.finish_async().await.unwrap();
    for u in &units {
        store.record_unit(run, u).await.unwrap();
    }
    store
        .finish_run(
            run,
            &RunStats {
                units: units.len() as u64,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let as_of = chrono::Utc::now().naive_utc();
    let out = classify_run(&*store, run, &cfg, as_of).await.unwrap();
    assert!(out.problems.is_empty(), "{:?}", out.problems);

    let vs = store
        .violations(&ViolationFilter {
            run: Some(run),
            ..Default::default()
        })
        .await
        .unwrap();
    let find = |kind: ViolationKind, unit: Option<&str>, col: Option<&str>| {
        vs.iter()
            .filter(|v| {
                v.kind == kind
                    && (unit.is_none() || v.unit_id.as_deref() == unit)
                    && (col.is_none() || v.column.as_deref() == col)
            })
            .collect::<Vec<_>>()
    };
    let show = format!("{vs:#?}");

    // plaintext_in_encrypted: sfzh is declared encrypted but holds readable children's IDs.
    let p = find(
        ViolationKind::PlaintextInEncrypted,
        Some("public.students"),
        Some("sfzh"),
    );
    assert_eq!(p.len(), 1, "{show}");
    assert_eq!(p[0].severity, Severity::Critical);
    assert_eq!(p[0].owner.as_deref(), Some("Li Wei (DPO)"));
    assert_eq!(p[0].article, "CAC Order No. 4 Art. 13");
    assert_eq!(p[0].record_count, Some(10));

    // retention_overdue on PostgreSQL: exactly the 3 rows older than 365 days.
    let r = find(
        ViolationKind::RetentionOverdue,
        Some("public.students"),
        None,
    );
    assert_eq!(r.len(), 1, "{show}");
    assert_eq!(r[0].record_count, Some(3));
    assert_eq!(r[0].column.as_deref(), Some("created_at"));
    assert_eq!(
        r[0].severity,
        Severity::Critical,
        "child data with resident ids"
    );
    assert!(r[0].article.contains("Art. 12"));
    assert_eq!(r[0].target.as_deref(), Some(pg_target.as_str()));
    assert!(
        !r[0].message.contains("postgres@"),
        "no credentials in messages"
    );

    // retention_overdue on files: app/old.log and app/older.log are past 30 days by mtime.
    let r = find(ViolationKind::RetentionOverdue, None, None)
        .into_iter()
        .filter(|v| v.dataset.as_deref() == Some("app_logs"))
        .collect::<Vec<_>>();
    assert_eq!(r.len(), 1, "{show}");
    assert_eq!(r[0].record_count, Some(2));
    assert_eq!(r[0].owner.as_deref(), Some("Ops team"));

    // undeclared_category: guardian_phone holds guardians' mobiles the dataset
    // does not declare for it (both categories: the phone and the guardian);
    // app logs hold resident ids where only mobiles are declared.
    let u = find(
        ViolationKind::UndeclaredCategory,
        Some("public.students"),
        Some("guardian_phone"),
    );
    assert_eq!(u.len(), 2, "{show}");
    let mut cats: Vec<_> = u.iter().map(|v| v.category).collect();
    cats.sort_by_key(|c| c.map(|c| c.as_str()));
    assert_eq!(
        cats,
        vec![Some(Category::CnMobile), Some(Category::Guardian)]
    );
    assert!(u.iter().all(|v| v.article.contains("Art. 7, 11")));
    let u = find(
        ViolationKind::UndeclaredCategory,
        Some("app/today.log"),
        None,
    );
    assert_eq!(u.len(), 1, "{show}");
    assert_eq!(u[0].category, Some(Category::CnResidentId));
    assert_eq!(u[0].severity, Severity::High, "child + high sensitivity");
    assert!(
        find(
            ViolationKind::UndeclaredCategory,
            Some("public.students"),
            Some("sfzh")
        )
        .is_empty(),
        "declared: {show}"
    );

    // undeclared_dataset: the export file and the tmp_export table.
    // One per category: the id (high sensitivity: critical) and the mobile on the same child's line (high).
    let d = find(
        ViolationKind::UndeclaredDataset,
        Some("export/dump.txt"),
        None,
    );
    assert_eq!(d.len(), 2, "{show}");
    assert_eq!(
        (d[0].category, d[0].severity),
        (Some(Category::CnResidentId), Severity::Critical)
    );
    assert_eq!(
        (d[1].category, d[1].severity),
        (Some(Category::CnMobile), Severity::High)
    );
    assert_eq!(d[0].owner, None);
    assert_eq!(d[0].article, "CAC Order No. 4 Art. 11, 14");
    let d = find(
        ViolationKind::UndeclaredDataset,
        Some("public.tmp_export"),
        Some("idno"),
    );
    assert_eq!(d.len(), 1, "{show}");
    assert_eq!(d[0].record_count, Some(2));

    // declared_not_found: the archive dataset's source was scanned, nothing matched it.
    let n = find(ViolationKind::DeclaredNotFound, None, None);
    assert_eq!(n.len(), 1, "{show}");
    assert_eq!(n[0].dataset.as_deref(), Some("archive"));
    assert_eq!(n[0].severity, Severity::Info);
    assert_eq!(n[0].owner.as_deref(), Some("Records office"));
    assert_eq!(vs.len(), 10, "{show}");

    // Findings were assigned to datasets.
    let students = store
        .findings(&FindingFilter {
            dataset: Some("students".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(students.total, 4);
    let summary = store.run(run).await.unwrap().unwrap().summary;
    assert!(summary.classified);
    assert_eq!(summary.violations, 10);

    // A finding triaged as false positive raises no violation on re-classification.
    let tmp = store
        .findings(&FindingFilter {
            target: Some(pg_target.clone()),
            undeclared: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tmp.total, 1);
    store
        .triage(
            &tmp.items[0].finding.finding_id,
            TriageStatus::FalsePositive,
            Some("synthetic test data"),
            "auditor",
        )
        .await
        .unwrap();
    classify_run(&*store, run, &cfg, as_of).await.unwrap();
    let vs2 = store
        .violations(&ViolationFilter {
            run: Some(run),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(vs2.len(), 9);
    assert!(!vs2
        .iter()
        .any(|v| v.unit_id.as_deref() == Some("public.tmp_export")));

    // Rows deleted in the database: the retention violation goes away on the next classification.
    let mut c = sqlx::PgConnection::connect(&pg).await.unwrap();
    sqlx::query("DELETE FROM students WHERE created_at < now() - interval '365 days'")
        .execute(&mut c)
        .await
        .unwrap();
    classify_run(&*store, run, &cfg, as_of).await.unwrap();
    let vs3 = store
        .violations(&ViolationFilter {
            run: Some(run),
            kind: Some(ViolationKind::RetentionOverdue),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(vs3.len(), 1, "only the files remain overdue: {vs3:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_problems_are_reported_not_fatal() {
    let pg = setup_pg().await;
    let text = format!(
        "[[datasets]]\nname = \"s\"\nsource = \"{pg}\"\nmatch = [\"public.students\"]\nowner = \"x\"\nretention = \"30d after no_such_column\"\n"
    );
    let (cfg, _) = check_str(&text, Path::new("c.toml"));
    let cfg = cfg.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
    let run = store.begin_run(std::slice::from_ref(&pg)).await.unwrap();
    store.finish_run(run, &RunStats::default()).await.unwrap();
    let out = classify_run(&*store, run, &cfg, chrono::Utc::now().naive_utc())
        .await
        .unwrap();
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert!(
        out.problems[0].contains("public.students") && out.problems[0].contains("no_such_column"),
        "{:?}",
        out.problems
    );
}
