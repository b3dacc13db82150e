//! Robustness limits of the readers (`[files]` in the config): a
//! decompression bomb (gzip, zstd), JSON nested too deep, an over-long line,
//! too many columns (CSV, Parquet) and an over-large object each end their
//! file or object with one clear error naming it and the limit; the rest of
//! the scan goes on (other findings are reported, exit status 2) and no
//! error carries a raw value.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Output;

const AS_OF: &str = "2025-06-01";
const ID: &str = "110105201503071235";
const PHONE: &str = "13812345678";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one error line for `unit`.
fn error_for(o: &Output, unit: &str) -> String {
    let e = stderr(o);
    let lines: Vec<&str> = e
        .lines()
        .filter(|l| l.starts_with(&format!("childguard: error: {unit} ")))
        .collect();
    assert_eq!(lines.len(), 1, "one error for {unit} expected:\n{e}");
    lines[0].to_string()
}

fn paths_with_findings(o: &Output) -> Vec<String> {
    let mut v: Vec<String> = common::jsonl(&o.stdout)
        .iter()
        .filter_map(|f| f["location"]["path"].as_str().map(String::from))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn scan_with(dir: &Path, files_section: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join("cg.toml"), format!("[files]\n{files_section}\n")).unwrap();
    let mut a = vec![
        "scan",
        "data",
        "--config",
        "cg.toml",
        "--no-save",
        "--format",
        "jsonl",
        "--as-of",
        AS_OF,
    ];
    a.extend_from_slice(extra);
    common::run(dir, &a)
}

fn no_raw(o: &Output) {
    let e = stderr(o);
    assert!(!e.contains(ID) && !e.contains(PHONE), "raw value: {e}");
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("good.log"), format!("student {ID}\n")).unwrap();
    (d, data)
}

#[test]
fn decompression_bombs_stop_with_the_ratio_limit() {
    let (d, data) = setup();
    // 64 MB of one repeated line compresses ~1000:1 (gzip) and far more (zstd).
    let line = format!("{}\n", "0".repeat(1023));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..(64 << 10) {
        gz.write_all(line.as_bytes()).unwrap();
    }
    std::fs::write(data.join("bomb.log.gz"), gz.finish().unwrap()).unwrap();
    let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    for _ in 0..(64 << 10) {
        zs.write_all(line.as_bytes()).unwrap();
    }
    std::fs::write(data.join("bomb.log.zst"), zs.finish().unwrap()).unwrap();
    // An ordinary compressed log (ratio well under the limit) is read whole.
    let mut ok = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..60_000 {
        writeln!(
            ok,
            "{i} login from 10.{}.{}.{} ok user={PHONE} t={}",
            i % 250,
            i % 7,
            i % 13,
            i * 7919 % 100_003
        )
        .unwrap();
    }
    std::fs::write(data.join("fine.log.gz"), ok.finish().unwrap()).unwrap();
    let o = scan_with(d.path(), "", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    for bomb in ["bomb.log.gz", "bomb.log.zst"] {
        let e = error_for(&o, bomb);
        assert!(
            e.contains("decompression bomb") && e.contains("200:1 (max_decompression_ratio)"),
            "{e}"
        );
    }
    assert_eq!(paths_with_findings(&o), vec!["fine.log.gz", "good.log"]);
    // A lower limit catches the ordinary log too, and names the limit set.
    let o = scan_with(d.path(), "max_decompression_ratio = 2", &[]);
    assert!(error_for(&o, "fine.log.gz").contains("2:1 (max_decompression_ratio)"));
    no_raw(&o);
}

fn nested(depth: usize, leaf: &str) -> String {
    format!(
        "{}\"{leaf}\"{}",
        "{\"a\":[".repeat(depth),
        "]}".repeat(depth)
    )
}

#[test]
fn json_nested_too_deep_is_scanned_as_text_and_reported() {
    let (d, data) = setup();
    let lines = [
        format!("{{\"student\":{{\"idNo\":\"{ID}\"}}}}"),
        nested(20, PHONE),
        format!("{{\"phone\":\"{PHONE}\"}}"),
    ];
    std::fs::write(data.join("events.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(data.join("doc.json"), nested(20, ID)).unwrap();
    std::fs::write(data.join("shallow.json"), nested(3, ID)).unwrap();
    let o = scan_with(d.path(), "max_json_depth = 32", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = error_for(&o, "events.jsonl");
    assert!(
        e.contains("line 2: JSON nested deeper than 32 levels (max_json_depth)"),
        "{e}"
    );
    let e = error_for(&o, "doc.json");
    assert!(
        e.contains("nested deeper than 32 levels (max_json_depth)"),
        "{e}"
    );
    assert!(!stderr(&o).contains("shallow.json"));
    let v = common::jsonl(&o.stdout);
    let lines_found = |path: &str| -> Vec<(u64, Option<String>)> {
        v.iter()
            .filter(|f| {
                f["location"]["path"] == path
                    && matches!(f["category"].as_str(), Some("cn_mobile" | "cn_resident_id"))
            })
            .map(|f| {
                (
                    f["location"]["line"].as_u64().unwrap(),
                    f["location"]["field"].as_str().map(String::from),
                )
            })
            .collect()
    };
    // Line 1 and 3 with key paths; the deep line 2 still scanned, as text.
    assert_eq!(
        lines_found("events.jsonl"),
        vec![
            (1, Some("student.idNo".into())),
            (2, None),
            (3, Some("phone".into()))
        ]
    );
    assert_eq!(lines_found("doc.json"), vec![(1, None)]);
    assert!(lines_found("shallow.json")[0].1.is_some());
    // With the default depth (64) the 40-deep line has its key path.
    let o = scan_with(d.path(), "", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    no_raw(&o);
}

#[test]
fn an_over_long_line_or_csv_record_ends_its_file() {
    let (d, data) = setup();
    let long = "x".repeat(300_000);
    std::fs::write(
        data.join("long.log"),
        format!("first {PHONE}\n{long}\nafter {ID}\n"),
    )
    .unwrap();
    std::fs::write(
        data.join("wide_cell.csv"),
        format!("name,phone\na,{PHONE}\nb,\"{long}\"\n"),
    )
    .unwrap();
    let o = scan_with(d.path(), "max_line_bytes = 100000\nchunk_bytes = 8192", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = error_for(&o, "long.log");
    assert!(
        e.contains("line 2 is longer than 100000 bytes (max_line_bytes)"),
        "{e}"
    );
    let e = error_for(&o, "wide_cell.csv");
    assert!(
        e.contains("CSV record at line 3 is longer than 100000 bytes (max_line_bytes)"),
        "{e}"
    );
    let v = common::jsonl(&o.stdout);
    // What came before the long line is reported.
    assert!(v
        .iter()
        .any(|f| f["location"]["path"] == "long.log" && f["location"]["line"] == 1));
    assert!(v.iter().any(|f| f["location"]["path"] == "good.log"));
    // Under the default limit the same files are read whole.
    let o = scan_with(d.path(), "chunk_bytes = 8192", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    no_raw(&o);
}

fn parquet_with_columns(n: usize) -> Vec<u8> {
    use arrow::array::{ArrayRef, StringArray};
    use std::sync::Arc;
    let cols: Vec<(String, ArrayRef)> = (0..n)
        .map(|i| {
            let v = if i == 0 {
                PHONE.to_string()
            } else {
                format!("v{i}")
            };
            (
                format!("c{i}"),
                Arc::new(StringArray::from(vec![v])) as ArrayRef,
            )
        })
        .collect();
    let batch = arrow::record_batch::RecordBatch::try_from_iter(cols).unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf
}

#[test]
fn too_many_columns_in_csv_and_parquet() {
    let (d, data) = setup();
    let header: Vec<String> = (0..60).map(|i| format!("c{i}")).collect();
    let row: Vec<String> = (0..60)
        .map(|i| if i == 0 { PHONE.into() } else { i.to_string() })
        .collect();
    std::fs::write(
        data.join("wide.csv"),
        format!("{}\n{}\n", header.join(","), row.join(",")),
    )
    .unwrap();
    let ragged = format!("a,b\n{PHONE},1\n{}\n", row.join(","));
    std::fs::write(data.join("ragged.csv"), ragged).unwrap();
    std::fs::write(data.join("wide.parquet"), parquet_with_columns(60)).unwrap();
    std::fs::write(data.join("narrow.parquet"), parquet_with_columns(5)).unwrap();
    let o = scan_with(d.path(), "max_columns = 50", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(error_for(&o, "wide.csv")
        .contains("CSV header has 60 columns, over the limit of 50 (max_columns)"));
    assert!(error_for(&o, "ragged.csv")
        .contains("CSV record at line 3 has 60 columns, over the limit of 50 (max_columns)"));
    assert!(error_for(&o, "wide.parquet")
        .contains("Parquet schema has 60 columns, over the limit of 50 (max_columns)"));
    let p = paths_with_findings(&o);
    assert!(
        p.contains(&"narrow.parquet".to_string()) && p.contains(&"good.log".to_string()),
        "{p:?}"
    );
    assert!(!p.contains(&"wide.parquet".to_string()));
    let o = scan_with(d.path(), "", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    no_raw(&o);
}

/// Object bodies go through the same limits (set in `[files]`), plus
/// `max_object_bytes` per source.
#[test]
fn object_store_limits_bomb_size_and_columns() {
    let server = common::S3Server::start();
    let bucket = common::unique_name("cglimits").replace('_', "-");
    let hostport = server.endpoint.trim_start_matches("http://").to_string();
    {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(&hostport).unwrap();
        write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_allow_http(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let put = |key: &str, body: Vec<u8>| {
        use object_store::ObjectStore;
        rt.block_on(store.put(&object_store::path::Path::from(key), body.into()))
            .unwrap();
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'0'; 16 << 20]).unwrap();
    put("bomb.log.gz", gz.finish().unwrap());
    put(
        "big.log",
        format!("{PHONE}\n{}\n", "y".repeat(40_000)).into_bytes(),
    );
    put("good.log", format!("student {ID}\n").into_bytes());
    put("wide.parquet", parquet_with_columns(60));
    put("narrow.parquet", parquet_with_columns(5));
    // One column of 2,000 distinct names: its dictionary page holds ~12 KB.
    let big_pages = {
        use arrow::array::{ArrayRef, StringArray};
        let col: ArrayRef = std::sync::Arc::new(StringArray::from_iter_values(
            (0..2000).map(|i| format!("name{i}")),
        ));
        let batch = arrow::record_batch::RecordBatch::try_from_iter([("guardian", col)]).unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        buf
    };
    assert!(big_pages.len() < 30000);
    put("pages.parquet", big_pages);
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("cg.toml"),
        format!(
            "[files]\nmax_columns = 50\nmax_parquet_page_bytes = 4000\n\n[[sources]]\nname = \"b\"\nurl = \"s3://{bucket}/\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             path_style = true\nallow_http = true\naccess_key_id_env = \"CG_LIM_KEY\"\nsecret_access_key_env = \"CG_LIM_SECRET\"\n\
             max_object_bytes = 30000\nmax_retries = 1\n",
            server.endpoint
        ),
    )
    .unwrap();
    let o = std::process::Command::new(common::bin())
        .current_dir(d.path())
        .args([
            "scan",
            "@b",
            "--config",
            "cg.toml",
            "--no-save",
            "--format",
            "jsonl",
            "--as-of",
            AS_OF,
        ])
        .env("CHILDGUARD_STATE_DIR", d.path().join(".state"))
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .env("CG_LIM_KEY", "testing")
        .env("CG_LIM_SECRET", "testing")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    let line = |key: &str| -> String {
        e.lines()
            .find(|l| l.contains("error") && l.contains(key))
            .unwrap_or_else(|| panic!("no error for {key}: {e}"))
            .to_string()
    };
    assert!(
        line("bomb.log.gz").contains("(max_decompression_ratio)"),
        "{e}"
    );
    assert!(
        line("big.log").contains("over the limit of 30000 bytes (max_object_bytes)"),
        "{e}"
    );
    assert!(
        line("wide.parquet").contains("60 columns, over the limit of 50 (max_columns)"),
        "{e}"
    );
    // Page headers are checked on the chunk bytes parquet-rs fetched.
    assert!(
        line("pages.parquet").contains("over the limit of 4000 (max_parquet_page_bytes)"),
        "{e}"
    );
    assert_eq!(paths_with_findings(&o), vec!["good.log", "narrow.parquet"]);
    no_raw(&o);
}
