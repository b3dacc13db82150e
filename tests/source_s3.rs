//! Object-store source against a real S3-compatible server (moto_server on
//! loopback): listing with prefix and globs, CSV / gzip text / zstd JSON
//! lines / Parquet objects, counts and child counts, incremental skipping,
//! size limit, a corrupt Parquet object and an object deleted between list
//! and get. Also `file://`.

mod common;
mod dbfix;

use childguard::config::sources::SourceConfig;
use childguard::finding::Category;
use childguard::source::db::RemoteOptions;
use childguard::source::objstore::ObjectSource;
use childguard::source::{ScanOptions, Source};
use dbfix::objects::*;
use dbfix::*;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;
use std::sync::Arc;

fn put(rt: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>, key: &str, body: Vec<u8>) {
    common::put_object(rt, store, key, body)
}

struct Fixture {
    server: common::S3Server,
    bucket: String,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let server = common::S3Server::start();
    let bucket = common::unique_name("cg-s3").replace('_', "-");
    server.create_bucket(&bucket);
    let store = server.client(&bucket);
    let rt = rt();
    put(&rt, &store, "exports/students.csv", csv_body());
    let log = format!(
        "boot ok\nuser {} signed in\n\nguardian phone {} called\n",
        child_id(3),
        mobile(4)
    );
    put(&rt, &store, "exports/logs/app.log.gz", gz(log.as_bytes()));
    let jsonl = format!(
        "{{\"student\": {{\"idNo\": \"{}\"}}}}\n{{\"ok\": 1}}\n",
        adult_id(8)
    );
    put(
        &rt,
        &store,
        "exports/notes.jsonl.zst",
        zstd::encode_all(jsonl.as_bytes(), 3).unwrap(),
    );
    put(
        &rt,
        &store,
        "exports/data/students.parquet",
        parquet_body(300),
    );
    put(
        &rt,
        &store,
        "exports/data/corrupt.parquet",
        b"PAR1 this is not a parquet file at all PAR1".to_vec(),
    );
    put(
        &rt,
        &store,
        "exports/tmp/skip.txt",
        format!("{}\n", child_id(1)).into_bytes(),
    );
    put(&rt, &store, "other/outside.csv", csv_body());
    Fixture {
        server,
        bucket,
        store,
        rt,
    }
}

fn config(f: &Fixture) -> SourceConfig {
    std::env::set_var("CG_S3_TEST_KEY_ID", "testing");
    std::env::set_var("CG_S3_TEST_SECRET", "testing");
    let mut c = SourceConfig::from_url(&format!("s3://{}/exports/", f.bucket));
    c.endpoint = Some(f.server.endpoint.clone());
    c.region = Some("us-east-1".into());
    c.path_style = true;
    c.allow_http = true;
    c.access_key_id_env = Some("CG_S3_TEST_KEY_ID".into());
    c.secret_access_key_env = Some("CG_S3_TEST_SECRET".into());
    c.exclude = vec!["tmp/**".into()];
    c.max_retries = 1;
    c
}

#[test]
fn lists_reads_every_format_and_reports_corrupt_parquet() {
    let f = fixture();
    let src = ObjectSource::open(&config(&f), &RemoteOptions::default()).unwrap();
    let units: Vec<String> = src.units().unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(
        units,
        [
            "exports/data/corrupt.parquet",
            "exports/data/students.parquet",
            "exports/logs/app.log.gz",
            "exports/notes.jsonl.zst",
            "exports/students.csv"
        ]
    );
    let out = scan_all(
        &src,
        &ScanOptions {
            full: false,
            sample_rows: 1000,
            rows: true,
        },
    );
    // The corrupt object is reported by key and cause; the rest goes on.
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert_eq!(out.errors[0].unit, "exports/data/corrupt.parquet");
    assert!(
        out.errors[0].message.contains("Parquet"),
        "{}",
        out.errors[0]
    );

    let id = out
        .find("exports/students.csv", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (id.rows_scanned, id.count, id.child_count),
        (Some(30), Some(20), Some(10))
    );
    assert_eq!(id.target, format!("s3://{}/exports/", f.bucket));
    let ph = out
        .find("exports/students.csv", "phone", Category::CnMobile)
        .unwrap();
    assert_eq!((ph.count, ph.child_count), (Some(15), Some(5)));
    assert!(out
        .find("exports/students.csv", "order_no", Category::CnResidentId)
        .is_none());

    let pq = out
        .find(
            "exports/data/students.parquet",
            "sfzh",
            Category::CnResidentId,
        )
        .unwrap();
    assert_eq!(
        (pq.rows_scanned, pq.count, pq.child_count),
        (Some(300), Some(300), Some(75))
    );
    let keys = pq.rows.as_ref().unwrap();
    assert_eq!(keys.len(), 75);
    assert_eq!(&keys[..3], ["1", "5", "9"]);
    assert_eq!(keys.last().map(String::as_str), Some("297"));
    let pph = out
        .find("exports/data/students.parquet", "phone", Category::CnMobile)
        .unwrap();
    assert_eq!((pph.count, pph.child_count), (Some(60), Some(15)));
    assert!(out
        .find(
            "exports/data/students.parquet",
            "order_no",
            Category::CnResidentId
        )
        .is_none());
    assert!(out
        .find(
            "exports/data/students.parquet",
            "id",
            Category::CnResidentId
        )
        .is_none());

    // gzip log: text findings with exact lines and offsets in the decompressed text.
    let log: Vec<_> = out.in_table("exports/logs/app.log.gz");
    // ID on line 2; on line 4 the mobile, which the engine also marks as a guardian's contact.
    let cats: Vec<_> = log.iter().map(|f| (f.category, f.location.line)).collect();
    assert_eq!(
        cats,
        [
            (Category::CnResidentId, Some(2)),
            (Category::CnMobile, Some(4)),
            (Category::Guardian, Some(4))
        ]
    );
    assert_eq!(
        (
            log[0].category,
            log[0].location.line,
            log[0].location.byte_offset
        ),
        (Category::CnResidentId, Some(2), Some(13))
    );
    assert_eq!(log[0].child, Some(true));
    assert_eq!(
        (log[1].category, log[1].location.line),
        (Category::CnMobile, Some(4))
    );
    let notes = out.in_table("exports/notes.jsonl.zst");
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (
            notes[0].location.line,
            notes[0].location.field.as_deref(),
            notes[0].child
        ),
        (Some(1), Some("student.idNo"), Some(false))
    );
    // No raw value anywhere in the findings.
    let all = serde_json::to_string(&out.findings).unwrap();
    assert!(!all.contains(&child_id(3)) && !all.contains(&mobile(4)));
}

#[test]
fn deleted_between_list_and_get_and_size_limit() {
    let f = fixture();
    let mut cfg = config(&f);
    cfg.max_object_bytes = 5000;
    let src = ObjectSource::open(&cfg, &RemoteOptions::default()).unwrap();
    let units = src.units().unwrap();
    f.rt.block_on(f.store.delete(&ObjPath::from("exports/students.csv")))
        .unwrap();
    f.rt.block_on(f.store.delete(&ObjPath::from("exports/logs/app.log.gz")))
        .unwrap();
    let e = engine();
    let mut errs = Vec::new();
    let mut found = Vec::new();
    for u in &units {
        if let Err(err) = src.scan_unit(u, &e, &full(), &mut |x| found.push(x)) {
            errs.push(err);
        }
    }
    let by = |k: &str| {
        errs.iter()
            .find(|e| e.unit == k)
            .unwrap_or_else(|| panic!("no error for {k}: {errs:?}"))
            .message
            .clone()
    };
    assert!(by("exports/students.csv").contains("deleted"), "{errs:?}");
    assert!(
        by("exports/logs/app.log.gz").contains("deleted"),
        "{errs:?}"
    );
    assert!(
        by("exports/data/students.parquet").contains("over the limit"),
        "{errs:?}"
    );
    assert!(
        by("exports/data/corrupt.parquet").contains("Parquet"),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 4);
    // The small zstd JSON-lines object went on.
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].location.path.as_deref(),
        Some("exports/notes.jsonl.zst")
    );
}

#[test]
fn incremental_skips_unchanged_objects() {
    let f = fixture();
    let cfg = config(&f);
    let state = tempfile::tempdir().unwrap();
    let ro = RemoteOptions {
        incremental: true,
        state_dir: Some(state.path().to_path_buf()),
        ..Default::default()
    };
    let first = scan_all(&ObjectSource::open(&cfg, &ro).unwrap(), &full());
    assert_eq!(first.stats.len(), 4);
    assert!(first.stats.iter().all(|(_, s)| s.skipped.is_none()));
    let second = scan_all(&ObjectSource::open(&cfg, &ro).unwrap(), &full());
    assert!(second.findings.is_empty());
    assert!(
        second
            .stats
            .iter()
            .all(|(_, s)| s.skipped.as_deref() == Some("unchanged")),
        "{:?}",
        second.stats
    );
    // The corrupt object was never recorded: it is tried (and reported) again.
    assert_eq!(second.errors.len(), 1);
    put(
        &f.rt,
        &f.store,
        "exports/students.csv",
        csv_body()
            .into_iter()
            .chain(format!("x,{},,\n", child_id(99)).into_bytes())
            .collect(),
    );
    let third = scan_all(&ObjectSource::open(&cfg, &ro).unwrap(), &full());
    assert_eq!(third.stat("exports/students.csv").skipped, None);
    let id = third
        .find("exports/students.csv", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!((id.count, id.child_count), (Some(21), Some(11)));
    assert_eq!(
        third
            .stat("exports/data/students.parquet")
            .skipped
            .as_deref(),
        Some("unchanged")
    );
}

#[test]
fn file_urls_read_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/students.csv"), csv_body()).unwrap();
    std::fs::write(dir.path().join("a.parquet"), parquet_body(120)).unwrap();
    let mut cfg = SourceConfig::from_url(&format!("file://{}", dir.path().display()));
    cfg.include = vec!["**/*.csv".into(), "*.parquet".into()];
    let src = ObjectSource::open(&cfg, &RemoteOptions::default()).unwrap();
    let out = scan_all(&src, &full());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        out.find("d/students.csv", "sfzh", Category::CnResidentId)
            .unwrap()
            .child_count,
        Some(10)
    );
    assert_eq!(
        out.find("a.parquet", "sfzh", Category::CnResidentId)
            .unwrap()
            .child_count,
        Some(30)
    );
}

#[test]
fn scan_command_reads_a_named_s3_source() {
    let f = fixture();
    std::env::set_var("CG_S3_CLI_KEY_ID", "testing");
    std::env::set_var("CG_S3_CLI_SECRET", "testing");
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[[sources]]\nname = \"exports\"\nurl = \"s3://{}/exports/\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         path_style = true\nallow_http = true\naccess_key_id_env = \"CG_S3_CLI_KEY_ID\"\n\
         secret_access_key_env = \"CG_S3_CLI_SECRET\"\nexclude = [\"tmp/**\"]\n",
        f.bucket, f.server.endpoint
    );
    std::fs::write(dir.path().join("c.toml"), cfg).unwrap();
    let out = common::run(
        dir.path(),
        &[
            "scan",
            "@exports",
            "--config",
            "c.toml",
            "--format",
            "jsonl",
            "--as-of",
            "2025-06-01",
        ],
    );
    // The corrupt Parquet object makes the exit status 2; everything else is reported.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exports/data/corrupt.parquet"));
    let v = common::jsonl(&out.stdout);
    let pq = v
        .iter()
        .find(|x| {
            x["location"]["path"] == "exports/data/students.parquet"
                && x["location"]["column"] == "sfzh"
        })
        .unwrap();
    assert_eq!(
        (pq["count"].as_u64(), pq["child_count"].as_u64()),
        (Some(300), Some(75))
    );
    assert!(v
        .iter()
        .any(|x| x["location"]["path"] == "exports/logs/app.log.gz" && x["location"]["line"] == 2));
    assert!(!v.iter().any(|x| x["location"]["path"]
        .as_str()
        .is_some_and(|p| p.contains("tmp/"))));
}

/// Byte-range units of large objects (`--range-bytes`): ranged GETs from
/// A-1, each line scanned by exactly one range, for several spans (one
/// leaving a range without a line start, one putting a boundary exactly on a
/// line start). The ranged findings are the whole object's (same offsets,
/// values, rules), with `line` unknown and `range_line` locating the line
/// within its range; their ids are unique.
#[test]
fn object_byte_ranges_cover_every_line_once() {
    use childguard::finding::Finding;
    use childguard::source::files::FileSourceConfig;
    use childguard::source::shard::{split_unit_id, UnitRange};
    let f = fixture();
    let mut log = String::new();
    for i in 0..1500u64 {
        match i % 7 {
            0 => log.push_str(&format!(
                "signup student id={} guardian {}\n",
                child_id(i),
                mobile(i)
            )),
            3 => log.push_str(&format!("staff {}\n", adult_id(i))),
            // A line longer than the smallest span: a range with no line start.
            5 if i % 500 == 5 => log.push_str(&format!("{} {}\n", "x".repeat(1500), mobile(i + 1))),
            _ => log.push_str(&format!("INFO request {i} ok\n")),
        }
    }
    let jsonl: String = (0..800u64)
        .map(|i| {
            format!(
                "{{\"student\":{{\"idNo\":\"{}\",\"tel\":\"{}\"}}}}\n",
                child_id(9000 + i),
                mobile(i)
            )
        })
        .collect();
    let bodies = [
        ("exports/big.log", log.clone()),
        ("exports/events.jsonl", jsonl.clone()),
    ];
    for (k, b) in &bodies {
        put(&f.rt, &f.store, k, b.clone().into_bytes());
    }
    // A boundary exactly on a line start: the span is the offset of line 101.
    let line_101 = log.match_indices('\n').nth(99).unwrap().0 as u64 + 1;
    let scan = |span: u64| {
        let mut cfg = config(&f);
        cfg.include = vec!["big.log".into(), "events.jsonl".into()];
        let opts = RemoteOptions {
            readers: Some(FileSourceConfig {
                range_bytes: span,
                ..Default::default()
            }),
            ..Default::default()
        };
        let src = ObjectSource::open(&cfg, &opts).unwrap();
        let out = scan_all(&src, &full());
        assert!(out.errors.is_empty(), "span {span}: {:?}", out.errors);
        out
    };
    let key = |x: &Finding| {
        (
            x.location.path.clone().unwrap(),
            x.location.byte_offset.unwrap(),
            x.rule.clone(),
            x.fingerprint.clone(),
            x.masked.clone(),
            x.child,
            x.location.field.clone(),
        )
    };
    let whole = scan(0);
    assert!(whole
        .findings
        .iter()
        .all(|x| x.location.range.is_none() && x.location.line.is_some()));
    let mut expected: Vec<_> = whole.findings.iter().map(key).collect();
    expected.sort();
    assert!(expected.len() > 900, "{}", expected.len());
    for span in [1000, 4096, line_101] {
        let out = scan(span);
        let units: Vec<&String> = out.stats.iter().map(|(u, _)| u).collect();
        assert!(units.len() >= 8, "span {span}: {units:?}");
        assert!(units.iter().all(|u| u.contains("#bytes=")), "{units:?}");
        // One ranged GET per unit read its lines: together exactly the object's bytes.
        for (k, body) in &bodies {
            let read: u64 = out
                .stats
                .iter()
                .filter(|(u, _)| split_unit_id(u).0 == *k)
                .map(|(_, s)| s.bytes)
                .sum();
            assert_eq!(read, body.len() as u64, "span {span} {k}");
        }
        let mut got: Vec<_> = out.findings.iter().map(key).collect();
        got.sort();
        assert_eq!(
            got, expected,
            "span {span}: a line was missed or scanned twice"
        );
        let ids: std::collections::BTreeSet<&str> =
            out.findings.iter().map(|x| x.finding_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            out.findings.len(),
            "span {span}: finding ids collide"
        );
        // range_line + the newlines before the range's first line = the object's line.
        for x in &out.findings {
            let loc = &x.location;
            assert_eq!(loc.line, None);
            let range: UnitRange = loc.range.as_deref().unwrap().parse().unwrap();
            let UnitRange::Bytes { start, .. } = range else {
                panic!("{range}")
            };
            let body = &bodies
                .iter()
                .find(|(k, _)| Some(*k) == loc.path.as_deref())
                .unwrap()
                .1;
            let first = if start == 0 {
                0
            } else {
                body[start as usize - 1..].find('\n').unwrap() + start as usize
            };
            let before = body[..first].matches('\n').count() as u64;
            let reference = whole.findings.iter().find(|w| key(w) == key(x)).unwrap();
            assert_eq!(
                Some(before + loc.range_line.unwrap()),
                reference.location.line,
                "span {span}"
            );
            assert_eq!(
                x.finding_id,
                Finding::compute_id(&x.target, loc, &x.rule, &x.fingerprint)
            );
        }
    }
}
