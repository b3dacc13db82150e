//! `childguard scan` over a fixture tree of every supported format and
//! encoding, generated here with known ground truth: exact findings, lines,
//! byte offsets, fields, columns, counts, output formats and exit codes.

mod common;

use childguard::fingerprint::Fingerprinter;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

const AS_OF: &str = "2025-06-01";

/// A valid 18-digit resident ID (MOD 11-2 check digit) for a birth date.
fn id18(region: &str, birth: &str, seq: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("{region}{birth}{seq}");
    assert_eq!(body.len(), 17);
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

fn child_id() -> String {
    id18("110105", "20150307", "123") // 10 years old at AS_OF
}
fn adult_id() -> String {
    id18("440305", "19800101", "456")
}
const PHONE: &str = "13812345678";
const PHONE2: &str = "15900001111";

/// Findings of the ID and mobile categories (the minimal engine's; the full
/// engine finds more categories, which these tests ignore).
fn id_mobile(out: &[u8]) -> Vec<Value> {
    common::jsonl(out)
        .into_iter()
        .filter(|f| matches!(f["category"].as_str(), Some("cn_resident_id" | "cn_mobile")))
        .collect()
}

fn of_path<'a>(fs: &'a [Value], path: &str) -> Vec<&'a Value> {
    fs.iter()
        .filter(|f| f["location"]["path"] == path)
        .collect()
}

fn masked_id(id: &str) -> String {
    format!("{}********{}", &id[..6], &id[14..])
}

fn fp(v: &str) -> String {
    Fingerprinter::new(b"test-key").fingerprint(v)
}

/// Expected (line, byte_offset) of every occurrence of `needle` in `text`.
fn positions(text: &str, needle: &str) -> Vec<(u64, u64)> {
    let (mut line, mut pos) = (1u64, 0usize);
    text.match_indices(needle)
        .map(|(i, _)| {
            line += text[pos..i].matches('\n').count() as u64;
            pos = i;
            (line, i as u64)
        })
        .collect()
}

fn loc(f: &Value) -> (u64, u64) {
    (
        f["location"]["line"].as_u64().unwrap(),
        f["location"]["byte_offset"].as_u64().unwrap(),
    )
}

fn scan(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["scan", "--as-of", AS_OF];
    a.extend_from_slice(args);
    common::run(dir, &a)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn log_text() -> String {
    format!(
        "2025-05-01 INFO start\n学生 {} 报名, 家长电话 {}\n\nadult {} phone {}\nno numbers here 12345\n",
        child_id(),
        PHONE,
        adult_id(),
        PHONE2
    )
}

#[test]
fn plain_text_log_exact_lines_offsets_child_and_masking() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("logs")).unwrap();
    let text = log_text();
    std::fs::write(d.path().join("logs/app.log"), &text).unwrap();
    let o = scan(d.path(), &["logs"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fs = id_mobile(&o.stdout);
    assert_eq!(fs.len(), 4);
    let expect = [
        (child_id(), "cn_resident_id", Some(true)),
        (PHONE.to_string(), "cn_mobile", Some(true)),
        (adult_id(), "cn_resident_id", Some(false)),
        (PHONE2.to_string(), "cn_mobile", Some(false)),
    ];
    for (f, (v, cat, child)) in fs.iter().zip(expect) {
        assert_eq!(f["target"], "logs");
        assert_eq!(f["location"]["path"], "app.log");
        assert_eq!(f["category"], cat);
        assert_eq!(f["child"].as_bool(), child);
        assert_eq!(loc(f), positions(&text, &v)[0]);
        assert_eq!(f["fingerprint"], fp(&v));
        let m = f["masked"].as_str().unwrap();
        assert!(
            !m.contains(&v[3..v.len() - 4]),
            "masked form must not contain the value"
        );
        if cat == "cn_resident_id" {
            assert_eq!(m, masked_id(&v));
        } else {
            assert_eq!(m, format!("{}****{}", &v[..3], &v[7..]));
        }
    }
    // Raw values appear nowhere in the output.
    let all = String::from_utf8_lossy(&o.stdout);
    for v in [
        child_id(),
        adult_id(),
        PHONE.to_string(),
        PHONE2.to_string(),
    ] {
        assert!(!all.contains(&v));
    }
    // A file target: location.path is the target as given.
    let o = scan(d.path(), &["logs/app.log"]);
    let fs = id_mobile(&o.stdout);
    assert_eq!(fs.len(), 4);
    assert!(fs
        .iter()
        .all(|f| f["location"]["path"] == "logs/app.log" && f["target"] == "logs/app.log"));
    // file:// URL target.
    let url = format!("file://{}", d.path().join("logs/app.log").display());
    let o = scan(d.path(), &[&url]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fs = id_mobile(&o.stdout);
    assert_eq!(fs.len(), 4);
    assert_eq!(fs[0]["target"], url.as_str());
}

fn utf16(text: &str, le: bool) -> Vec<u8> {
    let mut v = if le {
        vec![0xff, 0xfe]
    } else {
        vec![0xfe, 0xff]
    };
    for u in text.encode_utf16() {
        v.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
    }
    v
}

#[test]
fn encodings_utf16_gb18030_offsets_refer_to_decoded_utf8() {
    let d = tempfile::tempdir().unwrap();
    let text = log_text();
    std::fs::write(d.path().join("le.log"), utf16(&text, true)).unwrap();
    std::fs::write(d.path().join("be.txt"), utf16(&text, false)).unwrap();
    let (gb, _, bad) = encoding_rs::GB18030.encode(&text);
    assert!(!bad);
    std::fs::write(d.path().join("gbk.log"), &gb).unwrap();
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend_from_slice(text.as_bytes());
    std::fs::write(d.path().join("bom8.log"), &bom).unwrap();
    let o = scan(d.path(), &["."]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fs = id_mobile(&o.stdout);
    for p in ["be.txt", "bom8.log", "gbk.log", "le.log"] {
        let got: Vec<_> = of_path(&fs, p)
            .iter()
            .map(|f| (f["masked"].clone(), loc(f)))
            .collect();
        assert_eq!(got.len(), 4, "{p}");
        let want = vec![
            positions(&text, &child_id())[0],
            positions(&text, PHONE)[0],
            positions(&text, &adult_id())[0],
            positions(&text, PHONE2)[0],
        ];
        assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), want, "{p}");
    }
    // Files are emitted in sorted path order.
    let order: Vec<_> = fs
        .iter()
        .map(|f| f["location"]["path"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn csv_text(sep: char) -> String {
    let rows = [
        ("张三", child_id(), PHONE.to_string()),
        ("李四", adult_id(), String::new()),
        ("王五", "not an id".to_string(), PHONE2.to_string()),
    ];
    let mut s = format!("name{sep}sfzh{sep}lxdh\n");
    for (n, i, p) in rows {
        s.push_str(&format!("{n}{sep}{i}{sep}{p}\n"));
    }
    s
}

fn check_table(fs: &[Value], path: &str) {
    let t = of_path(fs, path);
    assert_eq!(t.len(), 2, "{path}: {t:?}");
    let id = t
        .iter()
        .find(|f| f["category"] == "cn_resident_id")
        .unwrap();
    assert_eq!(id["location"]["column"], "sfzh");
    assert_eq!(
        (
            id["rows_scanned"].as_u64(),
            id["count"].as_u64(),
            id["child_count"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(id["child"], true);
    assert!(id["location"].get("line").is_none());
    let ph = t.iter().find(|f| f["category"] == "cn_mobile").unwrap();
    assert_eq!(ph["location"]["column"], "lxdh");
    assert_eq!(
        (
            ph["rows_scanned"].as_u64(),
            ph["count"].as_u64(),
            ph["child_count"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
}

#[test]
fn csv_tsv_compressed_and_row_keys() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("s.csv"), csv_text(',')).unwrap();
    std::fs::write(d.path().join("s.tsv"), csv_text('\t')).unwrap();
    std::fs::write(d.path().join("s.csv.gz"), gzip(csv_text(',').as_bytes())).unwrap();
    std::fs::write(
        d.path().join("s.tsv.zst"),
        zstd::encode_all(csv_text('\t').as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let o = scan(d.path(), &[".", "--rows"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fs = id_mobile(&o.stdout);
    for p in ["s.csv", "s.tsv", "s.csv.gz", "s.tsv.zst"] {
        check_table(&fs, p);
    }
    // --rows: line numbers of the rows holding child PI (header is line 1).
    let id = of_path(&fs, "s.csv")
        .into_iter()
        .find(|f| f["category"] == "cn_resident_id")
        .unwrap();
    assert_eq!(id["rows"], serde_json::json!(["2"]));
}

#[test]
fn json_lines_fields_offsets_and_fallback() {
    let d = tempfile::tempdir().unwrap();
    let l1 = format!(
        r#"{{"ts":"2025-05-01","student":{{"name":"小明","idNo":"{}"}},"items":[{{"x":1}},{{"phone":{PHONE}}}]}}"#,
        child_id()
    );
    let l2 = format!(
        r#"{{"guardian":{{"tel":"{PHONE2}","id":"{}"}}}}"#,
        adult_id()
    );
    let l3 = format!("not json but {PHONE}");
    let text = format!("{l1}\n{l2}\n\n{l3}\n");
    std::fs::write(d.path().join("events.jsonl"), &text).unwrap();
    std::fs::write(d.path().join("events.log.gz"), gzip(text.as_bytes())).unwrap();
    std::fs::write(
        d.path().join("events.ndjson.zst"),
        zstd::encode_all(text.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let o = scan(d.path(), &["."]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fs = id_mobile(&o.stdout);
    for p in ["events.jsonl", "events.log.gz", "events.ndjson.zst"] {
        let got: Vec<_> = of_path(&fs, p)
            .iter()
            .map(|f| {
                (
                    f["location"]["field"].as_str().map(String::from),
                    f["category"].as_str().unwrap().to_string(),
                    loc(f),
                    f["child"].clone(),
                )
            })
            .collect();
        let l2_start = (l1.len() + 1) as u64;
        let want = vec![
            (
                Some("student.idNo".into()),
                "cn_resident_id".into(),
                positions(&text, &child_id())[0],
                Value::Bool(true),
            ),
            (
                Some("items[1].phone".into()),
                "cn_mobile".into(),
                positions(&text, PHONE)[0],
                Value::Bool(true),
            ),
            (
                Some("guardian.tel".into()),
                "cn_mobile".into(),
                (2, l2_start + l2.find(PHONE2).unwrap() as u64),
                Value::Bool(false),
            ),
            (
                Some("guardian.id".into()),
                "cn_resident_id".into(),
                (2, l2_start + l2.find(&adult_id()).unwrap() as u64),
                Value::Bool(false),
            ),
            (
                None,
                "cn_mobile".into(),
                positions(&text, PHONE)[1],
                Value::Null,
            ),
        ];
        assert_eq!(got, want, "{p}");
    }
}

#[test]
fn json_document_key_paths_and_record_child_inference() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "{{\n  \"school\": \"x\",\n  \"students\": [\n    {{\"idNo\": \"{}\", \"contact\": {{\"phone\": \"{PHONE}\"}}}},\n    {{\"idNo\": \"{}\", \"phone\": \"{PHONE2}\"}}\n  ]\n}}\n",
        child_id(),
        adult_id()
    );
    std::fs::write(d.path().join("roster.json"), &text).unwrap();
    let o = scan(d.path(), &["roster.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fs = id_mobile(&o.stdout);
    let got: Vec<_> = fs
        .iter()
        .map(|f| {
            (
                f["location"]["field"].as_str().unwrap().to_string(),
                loc(f),
                f["child"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "students[0].idNo".to_string(),
                positions(&text, &child_id())[0],
                Value::Bool(true)
            ),
            (
                "students[0].contact.phone".to_string(),
                positions(&text, PHONE)[0],
                Value::Bool(true)
            ),
            (
                "students[1].idNo".to_string(),
                positions(&text, &adult_id())[0],
                Value::Bool(false)
            ),
            (
                "students[1].phone".to_string(),
                positions(&text, PHONE2)[0],
                Value::Bool(false)
            ),
        ]
    );
}

fn write_parquet(path: &Path, rows: usize) {
    use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    let ids: Vec<Option<String>> = (0..rows)
        .map(|i| match i % 4 {
            0 => Some(child_id()),
            1 => Some(adult_id()),
            2 => None,
            _ => Some("n/a".to_string()),
        })
        .collect();
    let phones: Vec<i64> = (0..rows)
        .map(|i| if i % 2 == 0 { 13812345678 } else { 42 })
        .collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("sfzh", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("mobile", Arc::new(Int64Array::from(phones)) as ArrayRef),
        (
            "score",
            Arc::new(Float64Array::from(vec![1.5; rows])) as ArrayRef,
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![20000; rows])) as ArrayRef,
        ),
    ])
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_size(1000)
        .build();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_row_groups_columns_and_counts() {
    let d = tempfile::tempdir().unwrap();
    write_parquet(&d.path().join("students.parquet"), 10_000);
    let o = scan(d.path(), &["."]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fs = id_mobile(&o.stdout);
    assert_eq!(fs.len(), 2);
    let id = &fs[0];
    assert_eq!(
        id["location"],
        serde_json::json!({"path": "students.parquet", "column": "sfzh"})
    );
    assert_eq!(
        (
            id["rows_scanned"].as_u64(),
            id["count"].as_u64(),
            id["child_count"].as_u64()
        ),
        (Some(10_000), Some(5_000), Some(2_500))
    );
    let ph = &fs[1];
    assert_eq!(ph["location"]["column"], "mobile");
    // Even rows hold the phone; rows 0, 4, 8, ... also hold the child's ID.
    assert_eq!(
        (ph["count"].as_u64(), ph["child_count"].as_u64()),
        (Some(5_000), Some(2_500))
    );
}

#[test]
fn large_file_in_parallel_chunks_has_exact_lines() {
    let d = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let mut want = Vec::new();
    for i in 0..20_000u64 {
        let start = text.len() as u64;
        match i % 7 {
            0 => {
                let s = format!("{i} user 学生 id={} ok\n", child_id());
                want.push((
                    i + 1,
                    start + s.find("id=").unwrap() as u64 + 3,
                    "cn_resident_id",
                ));
                text.push_str(&s);
            }
            3 => {
                let s = format!("{i} call {PHONE2} from {i}\n");
                want.push((i + 1, start + s.find(PHONE2).unwrap() as u64, "cn_mobile"));
                text.push_str(&s);
            }
            5 => text.push_str(&format!("{i} {}\n", "长".repeat((i % 50) as usize))),
            _ => text.push_str(&format!("{i} nothing to see\n")),
        }
    }
    std::fs::write(d.path().join("big.log"), &text).unwrap();
    for chunk in ["4096", "65536"] {
        let o = scan(
            d.path(),
            &["big.log", "--chunk-size", chunk, "--threads", "2"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let got: Vec<_> = id_mobile(&o.stdout)
            .iter()
            .map(|f| {
                (
                    loc(f).0,
                    loc(f).1,
                    if f["category"] == "cn_mobile" {
                        "cn_mobile"
                    } else {
                        "cn_resident_id"
                    },
                )
            })
            .collect();
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want, "chunk size {chunk}");
    }
}

#[test]
fn long_lines_are_scanned_in_pieces_with_values_across_cuts() {
    let d = tempfile::tempdir().unwrap();
    // One 300 KB line with values every ~1000 bytes, so many straddle the
    // 4 KiB chunk cuts, then a normal line.
    let mut line = String::new();
    let mut n = 0;
    while line.len() < 300_000 {
        line.push_str(&"x".repeat(977));
        line.push(' ');
        line.push_str(if n % 2 == 0 { PHONE } else { PHONE2 });
        line.push(' ');
        n += 1;
    }
    // A 40 KB run without any ASCII separator: cuts fall inside values, so
    // the overlap must find them and only one piece may report each.
    for i in 0..1500 {
        line.push_str("电话");
        line.push_str(if i % 2 == 0 { PHONE } else { PHONE2 });
        n += 1;
    }
    let text = format!("first\n{line}\nlast {}\n", child_id());
    std::fs::write(d.path().join("long.log"), &text).unwrap();
    let o = scan(d.path(), &["long.log", "--chunk-size", "4096"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fs = id_mobile(&o.stdout);
    let mut want: Vec<(u64, u64)> = positions(&text, PHONE)
        .into_iter()
        .chain(positions(&text, PHONE2))
        .collect();
    want.sort();
    want.push(positions(&text, &child_id())[0]);
    let got: Vec<_> = fs.iter().map(loc).collect();
    assert_eq!(got.len(), n + 1);
    assert_eq!(got, want);
    assert!(
        stderr(&o).contains("long.log") && stderr(&o).contains("overlapping pieces"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn include_exclude_ignore_file_and_binary_skip() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for f in [
        "a/keep.log",
        "a/drop.tmp",
        "b/secret.log",
        "b/c/deep.log",
        "vendor/x.log",
        ".hidden.log",
    ] {
        std::fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
        std::fs::write(p.join(f), format!("v {PHONE}\n")).unwrap();
    }
    std::fs::write(p.join("b/.childguardignore"), "secret.log\n").unwrap();
    std::fs::write(p.join("blob.bin"), b"\x00\x01\x02 13812345678 \x00").unwrap();
    let paths = |o: &std::process::Output| -> Vec<String> {
        id_mobile(&o.stdout)
            .iter()
            .map(|f| f["location"]["path"].as_str().unwrap().to_string())
            .collect()
    };
    let o = scan(p, &["."]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        paths(&o),
        vec![
            ".hidden.log",
            "a/drop.tmp",
            "a/keep.log",
            "b/c/deep.log",
            "vendor/x.log"
        ]
    );
    assert!(
        stderr(&o).contains("skipped: blob.bin (in .): binary file"),
        "{}",
        stderr(&o)
    );
    let o = scan(
        p,
        &[
            ".",
            "--include",
            "*.log",
            "--exclude",
            "vendor",
            "--exclude",
            ".*",
        ],
    );
    assert_eq!(paths(&o), vec!["a/keep.log", "b/c/deep.log"]);
    let o = scan(p, &[".", "--include", "a/**"]);
    assert_eq!(paths(&o), vec!["a/drop.tmp", "a/keep.log"]);
}

#[test]
fn output_formats_output_file_and_fail_on_exit_codes() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("app.log"), log_text()).unwrap();
    std::fs::write(d.path().join("adult.log"), format!("x {}\n", adult_id())).unwrap();
    // json: findings + summary
    let o = scan(d.path(), &["app.log", "--format", "json"]);
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["category"] == "cn_resident_id")
            .count(),
        2
    );
    assert_eq!(j["summary"]["by_category"]["cn_resident_id"], 2);
    assert_eq!(j["summary"]["units_scanned"], 1);
    assert_eq!(j["summary"]["as_of"], AS_OF);
    // sarif 2.1.0
    let o = scan(d.path(), &["app.log", "--format", "sarif"]);
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["version"], "2.1.0");
    let r = s["runs"][0]["results"].as_array().unwrap();
    let first = r.iter().find(|r| r["ruleId"] == "cn.resident_id").unwrap();
    assert_eq!(
        first["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "app.log"
    );
    assert_eq!(
        first["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    assert_eq!(first["level"], "error");
    // table
    let o = scan(d.path(), &["app.log", "--format", "table"]);
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("CATEGORY") && t.contains(&masked_id(&child_id())) && t.contains("app.log:2"),
        "{t}"
    );
    // --output FILE defaults to jsonl; stdout stays empty
    let o = scan(d.path(), &["app.log", "--output", "out.jsonl"]);
    assert!(o.stdout.is_empty());
    assert_eq!(
        id_mobile(&std::fs::read(d.path().join("out.jsonl")).unwrap()).len(),
        4
    );
    // exit codes
    assert_eq!(
        scan(d.path(), &["app.log", "--fail-on", "child"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        scan(d.path(), &["adult.log", "--fail-on", "child"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        scan(d.path(), &["adult.log", "--fail-on", "any"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        scan(d.path(), &["adult.log", "--fail-on", "cn_mobile"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        scan(d.path(), &["adult.log", "--fail-on", "cn_resident_id"])
            .status
            .code(),
        Some(1)
    );
    let bad = scan(d.path(), &["adult.log", "--fail-on", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("unknown category"));
    // --as-of and --child-age change child inference: born 2015-03-07.
    let o = common::run(d.path(), &["scan", "app.log", "--as-of", "2029-03-07"]);
    assert_eq!(id_mobile(&o.stdout)[0]["child"], false);
    let o = common::run(
        d.path(),
        &[
            "scan",
            "app.log",
            "--as-of",
            "2029-03-07",
            "--child-age",
            "16",
        ],
    );
    assert_eq!(id_mobile(&o.stdout)[0]["child"], true);
    // child_age from --config; the flag wins over the file.
    std::fs::write(d.path().join("cg.toml"), "child_age = 16\n").unwrap();
    let o = common::run(
        d.path(),
        &[
            "scan",
            "app.log",
            "--as-of",
            "2029-03-07",
            "--config",
            "cg.toml",
        ],
    );
    assert_eq!(id_mobile(&o.stdout)[0]["child"], true, "{}", stderr(&o));
    let o = common::run(
        d.path(),
        &[
            "scan",
            "app.log",
            "--as-of",
            "2029-03-07",
            "--config",
            "cg.toml",
            "--child-age",
            "14",
        ],
    );
    assert_eq!(id_mobile(&o.stdout)[0]["child"], false);
    // Same input, same output.
    let a = scan(d.path(), &["."]).stdout;
    let b = scan(d.path(), &["."]).stdout;
    assert_eq!(a, b);
}

#[test]
fn unsupported_scheme_and_missing_target_exit_2_but_others_are_scanned() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("app.log"), log_text()).unwrap();
    let o = scan(
        d.path(),
        &[
            "ftp://bucket/prefix",
            "missing.log",
            "app.log",
            // A closed loopback port: no DNS, no traffic leaves the machine.
            "postgres://u:secret@127.0.0.1:1/db",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(id_mobile(&o.stdout).len(), 4);
    let e = stderr(&o);
    assert!(
        e.contains("ftp://bucket/prefix: unsupported target scheme `ftp://`"),
        "{e}"
    );
    assert!(
        e.contains("missing.log: cannot read: No such file or directory"),
        "{e}"
    );
    assert!(
        e.contains("postgres://") && e.contains("cannot connect") && !e.contains("secret"),
        "{e}"
    );
}
