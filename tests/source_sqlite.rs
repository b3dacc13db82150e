//! SQLite source on real files: classification, counts, rowid-range sampling,
//! row keys, incremental, read-only (`mode=ro`: file unchanged, writes fail),
//! missing file, dropped table.

mod dbfix;

use childguard::config::sources::SourceConfig;
use childguard::finding::Category;
use childguard::source::db::{DbSource, RemoteOptions};
use childguard::source::{ScanOptions, Source};
use dbfix::*;
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Executor};
use std::path::Path;

async fn load(path: &Path) {
    let mut c = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    c.execute(
        "CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT, sfzh VARCHAR(18), guardian_phone TEXT, \
            order_no INTEGER, amount REAL, photo BLOB, csrq DATE, updated_at TEXT NOT NULL DEFAULT '2024-01-01');
         CREATE TABLE big (sfzh TEXT);
         CREATE TABLE pairs (a TEXT, b INTEGER, sfzh TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
         CREATE TABLE untyped (x);",
    )
    .await
    .unwrap();
    let mut tx = String::from("BEGIN;");
    for i in 0..300u64 {
        let id = match i % 3 {
            0 => format!("'{}'", child_id(i)),
            1 => format!("'{}'", adult_id(i)),
            _ => "NULL".into(),
        };
        let phone = if i % 2 == 0 {
            format!("'{}'", mobile(i))
        } else {
            "NULL".into()
        };
        tx.push_str(&format!(
            "INSERT INTO students (id, name, sfzh, guardian_phone, order_no, amount) VALUES ({}, 'n{i}', {id}, {phone}, {}, 1.5);",
            i + 1,
            bad_id(i)
        ));
    }
    for i in 1..=20_000u64 {
        tx.push_str(&format!(
            "INSERT INTO big VALUES ('{}');",
            if i > 15_000 { child_id(i) } else { adult_id(i) }
        ));
    }
    tx.push_str(&format!(
        "INSERT INTO pairs VALUES ('k', 1, '{}'), ('k', 2, '{}');",
        child_id(5),
        adult_id(5)
    ));
    tx.push_str(&format!(
        "INSERT INTO untyped VALUES ('电话 {}');",
        mobile(3)
    ));
    tx.push_str("COMMIT;");
    c.execute(tx.as_str()).await.unwrap();
}

fn hash(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn open(path: &Path) -> DbSource {
    DbSource::open(
        &SourceConfig::from_url(&format!("sqlite://{}", path.display())),
        &RemoteOptions::default(),
    )
    .unwrap()
}

#[test]
fn classifies_counts_samples_and_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("school.db");
    rt().block_on(load(&db));
    let before = hash(&db);
    let src = open(&db);
    assert_eq!(src.target(), format!("sqlite://{}", db.display()));
    let units: Vec<String> = src.units().unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(
        units,
        ["main.big", "main.pairs", "main.students", "main.untyped"]
    );
    let info = src.table_info("main.students").unwrap();
    let examined: Vec<&str> = info.examined().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        examined,
        [
            "id",
            "name",
            "sfzh",
            "guardian_phone",
            "order_no",
            "csrq",
            "updated_at"
        ]
    );

    let out = scan_all(&src, &full());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let id = out
        .find("main.students", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (id.rows_scanned, id.count, id.child_count),
        (Some(300), Some(200), Some(100))
    );
    let ph = out
        .find("main.students", "guardian_phone", Category::CnMobile)
        .unwrap();
    assert_eq!((ph.count, ph.child_count), (Some(150), Some(50)));
    assert!(out
        .find("main.students", "order_no", Category::CnResidentId)
        .is_none());
    let big = out
        .find("main.big", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!((big.count, big.child_count), (Some(20_000), Some(5_000)));
    assert_eq!(
        out.find("main.untyped", "x", Category::CnMobile)
            .unwrap()
            .count,
        Some(1)
    );

    // rowid-range sampling reaches the end of the table.
    let out = scan_all(&src, &sample(1000));
    let big = out
        .find("main.big", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(big.rows_scanned, Some(1000));
    assert_eq!(big.child_count, Some(250));

    // Row keys: integer primary key; composite key of a WITHOUT ROWID table.
    let out = scan_all(
        &src,
        &ScanOptions {
            full: true,
            sample_rows: 0,
            rows: true,
        },
    );
    let keys = out
        .find("main.students", "sfzh", Category::CnResidentId)
        .unwrap()
        .rows
        .clone()
        .unwrap();
    assert_eq!(keys.len(), 100);
    assert_eq!(keys[0], "1");
    let pk = out
        .find("main.pairs", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(pk.rows.as_deref(), Some(&["k,1".to_string()][..]));
    let big = out
        .find("main.big", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(big.rows.as_ref().unwrap()[0], "15001");

    let w = src
        .execute_in_scan_session("INSERT INTO big VALUES ('x')")
        .unwrap_err()
        .to_string();
    assert!(w.contains("readonly"), "{w}");
    drop(src);
    assert_eq!(hash(&db), before);
}

#[test]
fn incremental_missing_file_and_dropped_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    rt().block_on(load(&db));
    let state = dir.path().join("state");
    let mut cfg = SourceConfig::from_url(&format!("sqlite://{}", db.display()));
    cfg.watermarks
        .insert("main.students".into(), "updated_at".into());
    let ro = RemoteOptions {
        incremental: true,
        state_dir: Some(state.clone()),
        ..Default::default()
    };
    let first = scan_all(&DbSource::open(&cfg, &ro).unwrap(), &full());
    // (guardian_phone: the mobile and the guardian)
    assert_eq!(
        first.findings.len(),
        6,
        "{:?}",
        first
            .findings
            .iter()
            .map(|f| (&f.location, f.category))
            .collect::<Vec<_>>()
    );
    let second = scan_all(&DbSource::open(&cfg, &ro).unwrap(), &full());
    assert!(second.findings.is_empty());
    assert!(second
        .stats
        .iter()
        .all(|(_, s)| s.skipped.as_deref() == Some("unchanged")));
    rt().block_on(async {
        let mut c = SqliteConnectOptions::new()
            .filename(&db)
            .connect()
            .await
            .unwrap();
        c.execute(
            format!(
                "INSERT INTO students (sfzh, updated_at) VALUES ('{}', '2025-03-01')",
                child_id(77)
            )
            .as_str(),
        )
        .await
        .unwrap();
    });
    let src = DbSource::open(&cfg, &ro).unwrap();
    let units = src.units().unwrap();
    rt().block_on(async {
        let mut c = SqliteConnectOptions::new()
            .filename(&db)
            .connect()
            .await
            .unwrap();
        c.execute("DROP TABLE pairs").await.unwrap();
    });
    let e = engine();
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for u in &units {
        if let Err(err) = src.scan_unit(u, &e, &full(), &mut |f| found.push(f)) {
            errors.push(err);
        }
    }
    // pairs was unchanged before the drop, and a dropped table cannot be measured: reported.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].unit, "main.pairs");
    assert!(errors[0].message.contains("no such table"), "{}", errors[0]);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].rows_scanned, found[0].child_count),
        (Some(1), Some(1))
    );

    let missing = dir.path().join("nope.db");
    let err = DbSource::open(
        &SourceConfig::from_url(&format!("sqlite://{}", missing.display())),
        &RemoteOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("nope.db") && err.contains("no such file"),
        "{err}"
    );
    assert!(
        !missing.exists(),
        "a read-only scan must not create the file"
    );
}
