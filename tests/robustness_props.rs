//! Property tests (fast, in the normal suite) for the entry points the
//! fuzz targets in `fuzz/` hammer: the detector engine, the file readers
//! (CSV, JSON lines, Parquet, gzip, zstd, GB18030) and the config parser.
//! Any input: no panic, findings inside the text, errors naming the file;
//! plus round-trip properties (compressed or GB18030-encoded text yields
//! the same findings as the plain UTF-8 text). Crashes found by fuzzing
//! become `regression_*` tests here.

#[path = "../fuzz/src/lib.rs"]
mod fuzz_support;

use childguard::finding::Finding;
use childguard::scan::text::{scan_chunk, TextOrigin};
use childguard::source::files::{scan_reader, FileSourceConfig, UnitCtx};
use childguard::source::ScanOptions;
use fuzz_support::{engine, scan_bytes};
use proptest::prelude::*;
use std::io::Write;

const ID: &str = "110105201503071235";

fn scan_text(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let origin = TextOrigin {
        target: "t",
        path: "p.log",
    };
    scan_chunk(engine(), &origin, text, 1, 0, &mut out);
    out
}

/// Findings of `data` read as file `name`, with the reader's error (if any).
fn read(name: &str, data: Vec<u8>, cfg: &FileSourceConfig) -> (Vec<Finding>, Option<String>) {
    let opts = ScanOptions::default();
    let ctx = UnitCtx {
        engine: engine(),
        target: "t",
        path: name,
        opts: &opts,
        cfg,
    };
    let mut out = Vec::new();
    let r = scan_reader(&ctx, name, Box::new(std::io::Cursor::new(data)), &mut |f| {
        out.push(f)
    });
    (out, r.err().map(|e| e.to_string()))
}

fn ids(fs: &[Finding]) -> Vec<(u64, u64)> {
    fs.iter()
        .filter(|f| f.category.as_str() == "cn_resident_id")
        .map(|f| {
            (
                f.location.line.unwrap_or(0),
                f.location.byte_offset.unwrap_or(0),
            )
        })
        .collect()
}

/// Log-like lines, some holding the ID (ASCII and Chinese filler).
fn log_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        ("[a-z0-9 =:/.-]{0,40}", prop::bool::ANY, "[一-龥 ]{0,12}"),
        0..40,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .map(|(a, id, b)| {
                if id {
                    format!("{a} 学生 {ID} {b}\n")
                } else {
                    format!("{a} {b}\n")
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_never_panics_and_offsets_stay_in_the_text(s in "\\PC{0,400}") {
        for f in scan_text(&s) {
            let off = f.location.byte_offset.unwrap() as usize;
            prop_assert!(off < s.len().max(1) && s.is_char_boundary(off));
            prop_assert!(!f.masked.contains(ID));
        }
    }

    #[test]
    fn an_embedded_id_is_found_where_it_is(a in "[a-z一-龥 ,;]{0,60}", b in "[a-z一-龥 ,;]{0,60}") {
        let text = format!("{a} {ID} {b}");
        let at = (a.len() + 1) as u64;
        prop_assert!(ids(&scan_text(&text)).contains(&(1, at)), "{text}");
    }

    #[test]
    fn readers_never_panic_on_any_bytes(
        data in prop::collection::vec(any::<u8>(), 0..3000),
        name in prop::sample::select(vec!["a.csv", "a.tsv", "a.jsonl", "a.json", "a.parquet", "a.log.gz", "a.log.zst", "a.txt"]),
    ) {
        scan_bytes(name, &data);
    }

    #[test]
    fn readers_never_panic_on_mutated_valid_files(
        text in log_text(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        kind in 0usize..3,
    ) {
        let (name, mut data) = match kind {
            0 => ("m.log.gz", gzip(text.as_bytes())),
            1 => ("m.log.zst", zstd::encode_all(text.as_bytes(), 3).unwrap()),
            _ => ("m.csv", format!("sfzh,note\n{}", text.replace(' ', ",")).into_bytes()),
        };
        if !data.is_empty() {
            for (i, b) in flips {
                let i = i.index(data.len());
                data[i] ^= b;
            }
        }
        scan_bytes(name, &data);
    }

    #[test]
    fn gzip_and_zstd_give_the_findings_of_the_plain_text(text in log_text()) {
        let cfg = FileSourceConfig::default();
        let (plain, e) = read("p.log", text.clone().into_bytes(), &cfg);
        prop_assert!(e.is_none(), "{e:?}");
        let want = ids(&plain);
        prop_assert_eq!(want.len(), text.matches(ID).count());
        let (gz, e) = read("p.log.gz", gzip(text.as_bytes()), &cfg);
        prop_assert!(e.is_none(), "{e:?}");
        prop_assert_eq!(ids(&gz), want.clone());
        let (zs, e) = read("p.log.zst", zstd::encode_all(text.as_bytes(), 3).unwrap(), &cfg);
        prop_assert!(e.is_none(), "{e:?}");
        prop_assert_eq!(ids(&zs), want);
    }

    #[test]
    fn gb18030_text_gives_the_findings_of_its_utf8(text in log_text()) {
        prop_assume!(text.chars().any(|c| !c.is_ascii()));
        let cfg = FileSourceConfig::default();
        let (gb, _, _) = encoding_rs::GB18030.encode(&text);
        let (plain, _) = read("u.log", text.clone().into_bytes(), &cfg);
        let (dec, e) = read("g.log", gb.into_owned(), &cfg);
        prop_assert!(e.is_none(), "{e:?}");
        prop_assert_eq!(ids(&dec), ids(&plain));
    }

    #[test]
    fn csv_counts_every_id_cell(
        rows in prop::collection::vec((prop::bool::ANY, "[a-z一-龥]{0,8}"), 1..60),
    ) {
        let mut csv = String::from("sfzh,note\n");
        for (id, note) in &rows {
            csv.push_str(&format!("{},{note}\n", if *id { ID } else { "" }));
        }
        let (fs, e) = read("c.csv", csv.into_bytes(), &FileSourceConfig::default());
        prop_assert!(e.is_none(), "{e:?}");
        let n = rows.iter().filter(|r| r.0).count() as u64;
        let got = fs
            .iter()
            .find(|f| f.category.as_str() == "cn_resident_id")
            .map_or(0, |f| f.count.unwrap_or(0));
        prop_assert_eq!(got, n);
    }

    #[test]
    fn json_nesting_at_any_depth_is_scanned_and_limited(depth in 0usize..200) {
        let line = format!("{}\"{ID}\"{}\n", "[".repeat(depth), "]".repeat(depth));
        let (fs, e) = read("d.jsonl", line.into_bytes(), &FileSourceConfig::default());
        prop_assert_eq!(ids(&fs).len(), 1);
        prop_assert_eq!(e.is_some(), depth > 64, "{:?}", e);
    }

    #[test]
    fn config_parser_never_panics_and_locates_inside_the_file(s in "(\\PC|\n){0,300}") {
        let (_c, diags) = childguard::config::check_str(&s, std::path::Path::new("c.toml"));
        let lines = s.lines().count() + 2;
        for d in diags {
            prop_assert!(d.line >= 1 && d.line <= lines, "{d}");
        }
    }

    #[test]
    fn config_parser_on_mutated_example(cut in 0usize..5000, junk in "[\\[\\]=\"a-z0-9\n. ]{0,20}") {
        let text = include_str!("../config/childguard.toml");
        let cut = (0..=cut.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap();
        let s = format!("{}{junk}{}", &text[..cut], &text[cut..]);
        let _ = childguard::config::check_str(&s, std::path::Path::new("c.toml"));
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// `childguard scan .` in `dir`, JSON lines, no store, panic text withheld.
fn scan_cmd(dir: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_childguard"));
    c.current_dir(dir)
        .args([
            "scan",
            ".",
            "--no-save",
            "--format",
            "jsonl",
            "--as-of",
            "2025-06-01",
        ])
        .env("CHILDGUARD_STATE_DIR", dir.join(".state"))
        .env("CHILDGUARD_FINGERPRINT_KEY", "k")
        .env_remove("RUST_BACKTRACE");
    c
}

/// Found by `fuzz/run.sh` (reader_parquet): a page whose level data runs past
/// its buffer made parquet-rs panic inside `parse_v1_level`, which took the
/// whole scan down. Now it is this file's `corrupt Parquet` error.
#[test]
fn regression_parquet_level_panic_is_a_file_error() {
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fuzz/parquet-level-panic.parquet"
    ))
    .unwrap();
    let (_, err) = read("crash.parquet", data.clone(), &FileSourceConfig::default());
    let err = err.expect("a malformed Parquet file is an error");
    assert!(
        err.starts_with("crash.parquet: corrupt or truncated Parquet"),
        "{err}"
    );
    scan_bytes("t.parquet", &data); // the fuzz target's own checks

    // Through the CLI, beside a good file: the scan reports the bad file and goes on.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("crash.parquet"), &data).unwrap();
    std::fs::write(d.path().join("ok.log"), format!("sfzh={ID}\n")).unwrap();
    let o = scan_cmd(d.path()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("\"ok.log\""), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("crash.parquet (in .): corrupt or truncated Parquet"),
        "{err}"
    );
    // Since the footer check (below) this input stops at its footer, before
    // the page decoder that panicked; decoder panics that pass the footer are
    // still caught (guard_decoder), and their text is never printed.
    assert!(!err.contains("range end out of bounds"), "{err}");
}

/// Found by `fuzz/run.sh` (reader_parquet): a footer whose Thrift list claims
/// billions of elements made parquet-rs reserve 61 GB and abort the process
/// (an allocation failure is not a panic). The footer is now checked first.
#[test]
fn regression_parquet_footer_allocation_is_a_file_error() {
    // The second: a known field declared with another type, which parquet-rs
    // reads as a list anyway (218 GB): the check follows parquet-rs's types.
    for f in [
        "parquet-footer-alloc.parquet",
        "parquet-footer-mistyped.parquet",
    ] {
        let data = std::fs::read(format!(
            "{}/tests/fixtures/fuzz/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let (_, err) = read("bomb.parquet", data.clone(), &FileSourceConfig::default());
        let err = err.expect("a malformed Parquet footer is an error");
        assert!(
            err.starts_with("bomb.parquet: corrupt or truncated Parquet: malformed footer"),
            "{f}: {err}"
        );
        scan_bytes("t.parquet", &data);
    }
}

/// Peak resident memory (KiB) and exit code of `childguard scan DIR`, read
/// with wait4 for this child alone; stdout and stderr as text.
#[cfg(target_os = "linux")]
fn scan_measured(dir: &std::path::Path) -> (i64, i32, String, String) {
    let out = dir.join(".out");
    let err = dir.join(".err");
    let child = scan_cmd(dir)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (
        usage.ru_maxrss,
        code,
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap(),
    )
}

/// A valid Parquet file (one INT64 column of `n` distinct values, one
/// dictionary page) whose dictionary page header then claims `claim` values.
fn inflated_dictionary(n: i64, claim: i32) -> Vec<u8> {
    use childguard::source::files::pages;
    use parquet::thrift::TSerializable;
    use std::sync::Arc;
    let col: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from_iter_values(0..n));
    let batch = arrow::record_batch::RecordBatch::try_from_iter([("student_no", col)]).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_dictionary_page_size_limit(64 << 20)
        .set_max_row_group_size(2 << 20)
        .build();
    let mut file = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let b = bytes::Bytes::from(file.clone());
    let md = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&b)
        .unwrap();
    let chunk = &pages::chunks(&md, file.len() as u64, &[0], |_| true).unwrap()[0];
    let at = chunk.start as usize;
    let mut prot = thrift::protocol::TCompactInputProtocol::new(&file[at..]);
    let mut h = parquet::format::PageHeader::read_from_in_protocol(&mut prot).unwrap();
    let encode = |h: &parquet::format::PageHeader| {
        let mut v = Vec::new();
        h.write_to_out_protocol(&mut thrift::protocol::TCompactOutputProtocol::new(&mut v))
            .unwrap();
        v
    };
    let before = encode(&h);
    assert_eq!(
        h.dictionary_page_header.as_ref().unwrap().num_values as i64,
        n
    );
    h.dictionary_page_header.as_mut().unwrap().num_values = claim;
    let after = encode(&h);
    assert_eq!(
        before.len(),
        after.len(),
        "the claim must encode in as many bytes"
    );
    assert_eq!(&file[at..at + before.len()], &before[..]);
    file[at..at + after.len()].copy_from_slice(&after);
    file
}

/// Found by `fuzz/run.sh` (reader_parquet): a page header's sizes made
/// parquet-rs fill gigabytes before decoding one value (the 799-byte input
/// took the process to 5.2 GB resident). Page headers are now checked first
/// (files::pages): a dictionary claiming more values than its bytes hold, and
/// a column chunk past the end of the file, are this file's error; the scan
/// stays small and goes on.
#[test]
#[cfg(target_os = "linux")]
fn regression_parquet_page_memory_amplification_is_a_file_error() {
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fuzz/parquet-page-memory.parquet"
    ))
    .unwrap();
    let (_, err) = read(
        "bomb.parquet",
        fixture.clone(),
        &FileSourceConfig::default(),
    );
    let err = err.expect("an error");
    assert!(
        err.contains("run past the end of the 799-byte file"),
        "{err}"
    );
    scan_bytes("t.parquet", &fixture);

    // 1.1 M values really, 134 M claimed: 1 GB of defaults if trusted.
    let dict = inflated_dictionary(1_100_000, 134_000_000);
    let (_, err) = read("dict.parquet", dict.clone(), &FileSourceConfig::default());
    let err = err.expect("an error");
    assert!(
        err.contains("dictionary page declares 134000000 INT64 values in 8800000 bytes"),
        "{err}"
    );
    // The same file with its true count is read.
    let (_, err) = read(
        "ok.parquet",
        inflated_dictionary(1_100_000, 1_100_000),
        &FileSourceConfig::default(),
    );
    assert_eq!(err, None);

    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bomb.parquet"), &fixture).unwrap();
    std::fs::write(d.path().join("dict.parquet"), &dict).unwrap();
    std::fs::write(d.path().join("ok.log"), format!("sfzh={ID}\n")).unwrap();
    let (rss_kib, code, out, err) = scan_measured(d.path());
    assert_eq!(code, 2, "{err}");
    assert!(out.contains("\"ok.log\""), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("bomb.parquet (in .): corrupt or truncated Parquet"),
        "{err}"
    );
    assert!(
        err.contains("dict.parquet (in .): corrupt or truncated Parquet: column `student_no`"),
        "{err}"
    );
    // The two files together asked for 6 GB before the check.
    assert!(rss_kib < 300 * 1024, "peak RSS {rss_kib} KiB\n{err}");
}
