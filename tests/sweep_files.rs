//! Files and objects: rewrite without expired rows / with anonymized
//! columns, verify, swap atomically; refuse to overwrite an object or file
//! that changed since it was read (If-Match on moto_server); whole-object
//! retention by age; a dry run changes nothing.

mod common;
#[path = "sweep_support.rs"]
mod support;

use childguard::sweep::files::{self, Location, RowAction, RowPred};
use support::*;

fn cutoff() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2025, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

#[tokio::test]
async fn local_files_delete_and_anonymize_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = d.join("data");
    std::fs::create_dir_all(&f).unwrap();
    let rows = vec![
        (
            1,
            "u1".to_string(),
            "13812345678".to_string(),
            "2025-02-28 23:59:59".to_string(),
        ),
        (
            2,
            "u2".to_string(),
            "13900000000".to_string(),
            "2025-03-01 00:00:00".to_string(),
        ),
        (
            3,
            "u3".to_string(),
            "13700000000".to_string(),
            "2025-03-01T08:00:00+08:00".to_string(),
        ), // = 2025-03-01 00:00 UTC: kept
        (
            4,
            "u4".to_string(),
            "13600000000".to_string(),
            "2025-03-01T07:59:59+08:00".to_string(),
        ), // before: expired
        (
            5,
            "u5".to_string(),
            "13500000000".to_string(),
            "not a date".to_string(),
        ), // undated: kept
    ];
    std::fs::write(f.join("kids.parquet"), parquet_bytes(&rows)).unwrap();
    std::fs::write(
        f.join("kids.csv"),
        "id,phone,created_at\n1,13812345678,2025-02-28\n2,13900000000,2025-03-01\n",
    )
    .unwrap();
    std::fs::write(
        f.join("app.jsonl"),
        "{\"id\":1,\"ts\":\"2025-02-01T00:00:00Z\"}\n{\"id\":2,\"ts\":\"2025-03-01T00:00:00Z\"}\n",
    )
    .unwrap();
    write_config(
        d,
        &format!(
            r#"
[[datasets]]
name = "kids"
source = "{f}"
match = ["kids.*"]
retention = "30d after created_at"
disposal = "anonymize"
anonymize = {{ phone = "mask:3,4", user_id = "hash" }}
categories = {{ phone = ["cn_mobile"] }}

[[datasets]]
name = "app"
source = "{f}"
match = ["*.jsonl"]
retention = "30d after ts"
"#,
            f = f.display()
        ),
    );
    let snapshot = |names: &[&str]| {
        names
            .iter()
            .map(|n| std::fs::read(f.join(n)).unwrap())
            .collect::<Vec<_>>()
    };
    let names = ["kids.parquet", "kids.csv", "app.jsonl"];
    let before = snapshot(&names);
    let p = cg(
        d,
        &[
            "sweep",
            "plan",
            "--as-of",
            "2025-03-31",
            "--as",
            "alice",
            "--json",
        ],
        &[],
    );
    ok(&p);
    let plan = json(&p);
    assert_eq!(plan["total"], 2 + 1 + 1);
    let pq = plan["items"][0]["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "kids.parquet")
        .unwrap()
        .clone();
    assert_eq!(pq["undated"], 1);
    let samples = plan["items"][0]["samples"].as_array().unwrap();
    assert!(!samples.is_empty());
    assert!(
        samples
            .iter()
            .all(|x| x["phone"].as_str().unwrap().contains("***") && x["file"].is_string()),
        "{samples:?}"
    );
    assert!(
        !out(&p).contains("13812345678") && !out(&p).contains("13600000000"),
        "raw values in the plan"
    );
    assert_eq!(snapshot(&names), before, "a dry run changes nothing");
    let id = plan["id"].as_str().unwrap();
    ok(&cg(d, &["sweep", "approve", id, "--by", "bob"], &[]));
    let r = cg(d, &["sweep", "run", id, "--json"], &[]);
    ok(&r);
    assert_eq!(json(&r)["disposed"], 4);

    let got = parquet_rows(&std::fs::read(f.join("kids.parquet")).unwrap());
    let fp = childguard::fingerprint::Fingerprinter::new(b"test-key");
    assert_eq!(got.len(), 5, "anonymization keeps rows");
    assert_eq!(
        got[0],
        (
            1,
            Some(fp.fingerprint("u1")),
            Some("138****5678".into()),
            None
        )
    );
    assert_eq!(
        got[1],
        (
            2,
            Some("u2".into()),
            Some("13900000000".into()),
            Some("2025-03-01 00:00:00".into())
        )
    );
    assert_eq!(got[2].2.as_deref(), Some("13700000000"));
    assert_eq!(
        got[3],
        (
            4,
            Some(fp.fingerprint("u4")),
            Some("136****0000".into()),
            None
        )
    );
    assert_eq!(got[4].2.as_deref(), Some("13500000000"));
    assert_eq!(
        std::fs::read_to_string(f.join("kids.csv")).unwrap(),
        "id,phone,created_at\n1,138****5678,\n2,13900000000,2025-03-01\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.join("app.jsonl")).unwrap(),
        "{\"id\":2,\"ts\":\"2025-03-01T00:00:00Z\"}\n"
    );
    // Anonymized rows are never selected again.
    let p = cg(
        d,
        &["sweep", "plan", "--as-of", "2025-03-31", "--json"],
        &[],
    );
    assert_eq!(json(&p)["total"], 0);
}

#[tokio::test]
async fn s3_rewrite_and_refusal_to_overwrite_a_changed_object() {
    let s3 = common::S3Server::start();
    create_bucket(&s3.endpoint, "bkt1");
    let store = s3_store(&s3.endpoint, "bkt1");
    let rows: Vec<_> = (1..=10)
        .map(|i| {
            (
                i,
                format!("u{i}"),
                format!("138{i:08}"),
                if i <= 4 { "2024-01-01" } else { "2025-03-01" }.to_string(),
            )
        })
        .collect();
    s3_put(&*store, "p/kids.parquet", parquet_bytes(&rows)).await;
    s3_put(
        &*store,
        "p/keep.csv",
        b"id,created_at\n1,2025-03-02\n".to_vec(),
    )
    .await;
    s3_put(
        &*store,
        "other/x.csv",
        b"id,created_at\n1,2020-01-01\n".to_vec(),
    )
    .await;

    // Library level: an object changed between read and swap is not overwritten (If-Match → 412).
    let loc = Location::S3 {
        store: store.clone(),
        bucket: "bkt1".into(),
        prefix: "p".into(),
    };
    let (data, etag, ver) = loc.read("kids.parquet").await.unwrap().unwrap();
    let pred = RowPred::Expired {
        field: "created_at".into(),
        cutoff: cutoff(),
    };
    let fp = childguard::fingerprint::Fingerprinter::new(b"k");
    let rw = files::rewrite(
        files::Format::Parquet,
        &data,
        &pred,
        &RowAction::Delete,
        &fp,
    )
    .unwrap();
    assert_eq!(rw.changed, 4);
    let someone_else = parquet_bytes(&rows[..9]);
    s3_put(&*store, "p/kids.parquet", someone_else.clone()).await;
    let before = rw.before.clone();
    let e = loc
        .swap("kids.parquet", rw.data, &etag, ver, "t", |b| {
            files::verify(
                files::Format::Parquet,
                b,
                &pred,
                &RowAction::Delete,
                &before,
                4,
            )
            .map(|_| ())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, childguard::sweep::SweepError::Changed(_)),
        "{e}"
    );
    assert_eq!(
        s3_get(&*store, "p/kids.parquet").await.unwrap(),
        someone_else,
        "the newer object is intact"
    );
    assert!(
        s3_get(&*store, "p/kids.parquet.childguard-tmp-t")
            .await
            .is_none(),
        "temporary object removed"
    );

    // CLI: plan, approve, run against the object store.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "[[datasets]]\nname = \"s3kids\"\nsource = \"s3://bkt1/p\"\nretention = \"30d after created_at\"\n\n[[datasets]]\nname = \"old\"\nsource = \"s3://bkt1/p\"\nmatch = [\"*.csv\"]\nretention = \"1d after object_age\"\n");
    let env: Vec<(&str, String)> = s3.env().into_iter().collect();
    let (id, r) = plan_approve_run(d, &["--as-of", "2025-03-31", "--dataset", "s3kids"], &env);
    ok(&r);
    assert_eq!(json(&r)["disposed"], 4);
    let got = parquet_rows(&s3_get(&*store, "p/kids.parquet").await.unwrap());
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![5, 6, 7, 8, 9]
    );
    assert_eq!(receipt(d, &id)["items"][0]["units"][0]["verified"], true);
    // Whole objects past their age (as of far in the future): only under the dataset's prefix and glob.
    let (_, r) = plan_approve_run(d, &["--as-of", "2099-01-01", "--dataset", "old"], &env);
    ok(&r);
    assert!(s3_get(&*store, "p/keep.csv").await.is_none());
    assert!(s3_get(&*store, "p/kids.parquet").await.is_some());
    assert!(s3_get(&*store, "other/x.csv").await.is_some());
}

#[tokio::test]
async fn local_file_changed_since_read_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.csv");
    std::fs::write(&p, "id,ts\n1,2020-01-01\n2,2025-03-02\n").unwrap();
    let loc = Location::Local(dir.path().to_path_buf());
    let (data, ver, _) = loc.read("a.csv").await.unwrap().unwrap();
    let pred = RowPred::Expired {
        field: "ts".into(),
        cutoff: cutoff(),
    };
    let rw = files::rewrite(
        files::Format::Csv,
        &data,
        &pred,
        &RowAction::Delete,
        &childguard::fingerprint::Fingerprinter::new(b"k"),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&p, "id,ts\n1,2020-01-01\n2,2025-03-02\n3,2025-03-03\n").unwrap();
    let before = rw.before.clone();
    let e = loc
        .swap("a.csv", rw.data, &ver, None, "t", |b| {
            files::verify(files::Format::Csv, b, &pred, &RowAction::Delete, &before, 1).map(|_| ())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, childguard::sweep::SweepError::Changed(_)),
        "{e}"
    );
    assert!(std::fs::read_to_string(&p)
        .unwrap()
        .contains("3,2025-03-03"));
    // A rewrite that fails verification is never swapped in.
    let (data, ver, _) = loc.read("a.csv").await.unwrap().unwrap();
    let rw = files::rewrite(
        files::Format::Csv,
        &data,
        &pred,
        &RowAction::Delete,
        &childguard::fingerprint::Fingerprinter::new(b"k"),
    )
    .unwrap();
    let e = loc
        .swap("a.csv", rw.data, &ver, None, "t", |_| Err("forced".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, childguard::sweep::SweepError::Verify { .. }),
        "{e}"
    );
    assert!(std::fs::read_to_string(&p)
        .unwrap()
        .contains("1,2020-01-01"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

/// Whole-file retention re-checks the age at run time: a rotated log written
/// to again after planning is within retention and is kept.
#[tokio::test]
async fn rotated_logs_by_age_rechecked_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let logs = d.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let set = |name: &str, unix: u64| {
        let f = std::fs::File::options()
            .write(true)
            .open(logs.join(name))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(unix))
            .unwrap();
    };
    for n in ["app.log", "app.log.1", "app.log.2.gz", "app.log.3"] {
        std::fs::write(logs.join(n), "x\n").unwrap();
        set(n, 1_704_067_200); // 2024-01-01
    }
    set("app.log", 1_743_292_800); // the live log: 2025-03-30
    write_config(d, &format!("[[datasets]]\nname = \"logs\"\nsource = \"{}\"\nmatch = [\"app.log.*\"]\nretention = \"30d after object_age\"\n", logs.display()));
    let p = cg(
        d,
        &[
            "sweep",
            "plan",
            "--as-of",
            "2025-03-31",
            "--as",
            "alice",
            "--json",
        ],
        &[],
    );
    ok(&p);
    let plan = json(&p);
    assert_eq!(plan["total"], 3);
    let id = plan["id"].as_str().unwrap();
    ok(&cg(d, &["sweep", "approve", id, "--by", "bob"], &[]));
    std::fs::write(logs.join("app.log.3"), "written again\n").unwrap(); // now: within retention
    let r = cg(d, &["sweep", "run", id, "--json"], &[]);
    ok(&r);
    assert_eq!(json(&r)["disposed"], 2);
    let left: std::collections::BTreeSet<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["app.log", "app.log.3"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let u = receipt(d, id)["items"][0]["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "app.log.3")
        .unwrap()
        .clone();
    assert_eq!(u["disposed"], 0);
    assert_eq!(u["verified"], true);
    assert!(u["note"]
        .as_str()
        .unwrap()
        .contains("modified since planning"));
}
