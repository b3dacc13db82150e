//! Bad input: each case gives one clear error naming the file and the cause,
//! the rest of the scan goes on (other files' findings are reported) and the
//! exit status is 2. Errors never contain raw values.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const AS_OF: &str = "2025-06-01";
const PHONE: &str = "13812345678";

fn id18(region: &str, birth: &str, seq: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("{region}{birth}{seq}");
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    format!("{body}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

fn child_id() -> String {
    id18("110105", "20150307", "123")
}

fn scan(dir: &Path, args: &[&str]) -> Output {
    let mut a = vec!["scan", "--as-of", AS_OF];
    a.extend_from_slice(args);
    common::run(dir, &a)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn id_mobile(out: &[u8]) -> Vec<serde_json::Value> {
    common::jsonl(out)
        .into_iter()
        .filter(|f| matches!(f["category"].as_str(), Some("cn_resident_id" | "cn_mobile")))
        .collect()
}

fn paths(o: &Output) -> Vec<String> {
    let mut v: Vec<String> = id_mobile(&o.stdout)
        .iter()
        .map(|f| f["location"]["path"].as_str().unwrap().to_string())
        .collect();
    v.dedup();
    v
}

fn loc(f: &serde_json::Value) -> (u64, u64) {
    (
        f["location"]["line"].as_u64().unwrap(),
        f["location"]["byte_offset"].as_u64().unwrap(),
    )
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

/// The error line for `unit` on stderr, asserting there is exactly one.
fn error_for(o: &Output, unit: &str) -> String {
    let e = stderr(o);
    let lines: Vec<&str> = e
        .lines()
        .filter(|l| l.starts_with(&format!("childguard: error: {unit} ")))
        .collect();
    assert_eq!(lines.len(), 1, "one error for {unit} expected:\n{e}");
    lines[0].to_string()
}

fn assert_no_raw_values(o: &Output) {
    let e = stderr(o);
    assert!(
        !e.contains(&child_id()) && !e.contains(PHONE),
        "raw value in stderr: {e}"
    );
}

fn good_file(dir: &Path) {
    std::fs::write(dir.join("good.log"), format!("ok {}\n", child_id())).unwrap();
}

#[test]
fn permission_denied_file_and_directory() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    good_file(p);
    std::fs::write(p.join("locked.log"), format!("{PHONE}\n")).unwrap();
    std::fs::create_dir(p.join("closed")).unwrap();
    std::fs::write(p.join("closed/inner.log"), format!("{PHONE}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(p.join("good.log"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(p.join("locked.log"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(p.join("closed"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads anything: run as `nobody` then.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::bin());
        c
    } else {
        Command::new(common::bin())
    };
    let o = cmd
        .current_dir(p)
        .args(["scan", ".", "--as-of", AS_OF])
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .env("CHILDGUARD_STATE_DIR", "/nonexistent-state")
        .output()
        .unwrap();
    std::fs::set_permissions(p.join("closed"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        error_for(&o, "locked.log").ends_with("cannot read: Permission denied (os error 13)"),
        "{}",
        stderr(&o)
    );
    assert!(
        error_for(&o, "closed").contains("Permission denied"),
        "{}",
        stderr(&o)
    );
    assert_eq!(paths(&o), vec!["good.log"]);
    assert_no_raw_values(&o);
}

#[test]
fn dangling_symlink_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    good_file(d.path());
    std::os::unix::fs::symlink(d.path().join("nowhere"), d.path().join("gone.log")).unwrap();
    let o = scan(d.path(), &["."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        error_for(&o, "gone.log").contains("No such file or directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(paths(&o), vec!["good.log"]);
}

fn numbered_log(lines: usize) -> String {
    (1..=lines)
        .map(|i| format!("{i} student {} done\n", child_id()))
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A truncated stream: the findings decoded before the cut are reported
/// (with exact lines) and the file gets one error.
fn check_truncated(o: &Output, path: &str, kind: &str, text: &str) {
    let fs: Vec<_> = id_mobile(&o.stdout)
        .into_iter()
        .filter(|f| f["location"]["path"] == path)
        .collect();
    let want = positions(text, &child_id());
    assert!(
        !fs.is_empty() && fs.len() < want.len(),
        "{path}: {} of {}",
        fs.len(),
        want.len()
    );
    let got: Vec<_> = fs.iter().map(loc).collect();
    assert_eq!(got, want[..got.len()].to_vec());
    let e = error_for(o, path);
    assert!(e.contains(&format!("corrupt or truncated {kind}")), "{e}");
}

#[test]
fn corrupt_and_truncated_gzip_and_zstd() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    good_file(p);
    let text = numbered_log(20_000);
    let gz = gzip(text.as_bytes());
    std::fs::write(p.join("trunc.log.gz"), &gz[..gz.len() * 6 / 10]).unwrap();
    std::fs::write(p.join("junk.gz"), b"this is not gzip at all, 13812345678\n").unwrap();
    let zs = zstd::encode_all(text.as_bytes(), 3).unwrap();
    std::fs::write(p.join("trunc.log.zst"), &zs[..zs.len() * 6 / 10]).unwrap();
    let mut bad = zs.clone();
    for b in bad.iter_mut().skip(40).step_by(97) {
        *b ^= 0x5a;
    }
    std::fs::write(p.join("flipped.log.zst"), &bad).unwrap();
    let o = scan(p, &["."]);
    assert_eq!(o.status.code(), Some(2));
    check_truncated(&o, "trunc.log.gz", "gzip stream", &text);
    check_truncated(&o, "trunc.log.zst", "zstd stream", &text);
    assert!(
        error_for(&o, "junk.gz").contains("corrupt or truncated gzip stream: invalid gzip header"),
        "{}",
        stderr(&o)
    );
    assert!(
        error_for(&o, "flipped.log.zst").contains("corrupt or truncated zstd stream"),
        "{}",
        stderr(&o)
    );
    assert!(paths(&o).contains(&"good.log".to_string()));
    assert_no_raw_values(&o);
}

#[test]
fn corrupt_and_truncated_parquet() {
    use arrow::array::{ArrayRef, StringArray};
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    good_file(p);
    let ids: Vec<String> = (0..50_000).map(|_| child_id()).collect();
    let batch = arrow::record_batch::RecordBatch::try_from_iter(vec![(
        "sfzh",
        Arc::new(StringArray::from(ids)) as ArrayRef,
    )])
    .unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    std::fs::write(p.join("whole.parquet"), &buf).unwrap();
    std::fs::write(p.join("cut.parquet"), &buf[..buf.len() / 2]).unwrap();
    let mut junk = b"PAR1".to_vec();
    junk.extend(std::iter::repeat_n(7u8, 1000));
    junk.extend_from_slice(b"PAR1");
    std::fs::write(p.join("junk.parquet"), &junk).unwrap();
    let o = scan(p, &["."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        error_for(&o, "cut.parquet").contains("corrupt or truncated Parquet"),
        "{}",
        stderr(&o)
    );
    assert!(
        error_for(&o, "junk.parquet").contains("corrupt or truncated Parquet"),
        "{}",
        stderr(&o)
    );
    assert_eq!(paths(&o), vec!["good.log", "whole.parquet"]);
    let whole = id_mobile(&o.stdout)
        .into_iter()
        .find(|f| f["location"]["path"] == "whole.parquet")
        .unwrap();
    assert_eq!(whole["count"], 50_000);
}

#[test]
fn invalid_utf8_in_a_utf8_file_is_reported_and_the_rest_scanned() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    good_file(p);
    // 100 KB of valid UTF-8 (the sniffed head says UTF-8), then bad bytes, then more data.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(format!("学生 {}\n", child_id()).as_bytes());
    while bytes.len() < 100_000 {
        bytes.extend_from_slice("日志 line of text\n".as_bytes());
    }
    let bad_at = bytes.len();
    bytes.extend_from_slice(b"broken \xff\xfe here\n");
    bytes.extend_from_slice(format!("after {PHONE} and {}\n", child_id()).as_bytes());
    std::fs::write(p.join("bad.log"), &bytes).unwrap();
    let o = scan(p, &["."]);
    assert_eq!(o.status.code(), Some(2));
    let e = error_for(&o, "bad.log");
    assert!(
        e.contains(&format!("invalid UTF-8 at decoded byte {}", bad_at + 7)),
        "{e}"
    );
    assert!(e.contains("the rest of the file was scanned"), "{e}");
    // Offsets refer to the decoded text (each bad byte → U+FFFD).
    let decoded = String::from_utf8_lossy(&bytes).into_owned();
    let fs: Vec<_> = id_mobile(&o.stdout)
        .into_iter()
        .filter(|f| f["location"]["path"] == "bad.log")
        .collect();
    let got: Vec<_> = fs.iter().map(loc).collect();
    let ids = positions(&decoded, &child_id());
    assert_eq!(got, vec![ids[0], positions(&decoded, PHONE)[0], ids[1]]);
    assert!(paths(&o).contains(&"good.log".to_string()));
}

#[test]
fn a_200_mb_single_line_is_scanned_whole_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let path = p.join("huge.log");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let filler = "abcdefg hijk lmnop qrs tuv wxyz ".repeat(32); // 1024 bytes
    let mut len = 0usize;
    let mut want = Vec::new();
    let mut k = 0;
    while len < 200 << 20 {
        if k % 10_000 == 0 {
            let s = format!(" {} ", child_id());
            want.push((1u64, len as u64 + 1));
            w.write_all(s.as_bytes()).unwrap();
            len += s.len();
        }
        w.write_all(filler.as_bytes()).unwrap();
        len += filler.len();
        k += 1;
    }
    let tail = format!("\nnext line {PHONE}\n");
    want.push((2, len as u64 + 11));
    w.write_all(tail.as_bytes()).unwrap();
    w.flush().unwrap();
    drop(w);
    let o = scan(p, &["huge.log"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got: Vec<_> = id_mobile(&o.stdout).iter().map(loc).collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    let e = stderr(&o);
    assert!(
        e.contains("WARN")
            && e.contains("huge.log")
            && e.contains("line longer than the chunk size"),
        "{e}"
    );
}

#[test]
fn symlink_loops_are_errors_naming_the_link() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    good_file(p);
    std::fs::create_dir_all(p.join("sub")).unwrap();
    std::os::unix::fs::symlink("..", p.join("sub/up")).unwrap();
    std::os::unix::fs::symlink("self.log", p.join("self.log")).unwrap();
    let o = scan(p, &["."]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        error_for(&o, "sub/up").contains("symbolic link loop"),
        "{}",
        stderr(&o)
    );
    assert!(
        error_for(&o, "self.log").contains("symbolic link loop"),
        "{}",
        stderr(&o)
    );
    assert_eq!(paths(&o), vec!["good.log"]);
}

#[test]
fn a_file_that_changes_while_read_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let path = p.join("growing.log");
    let text: String = (0..1_000_000)
        .map(|i| format!("{i} nothing here but text\n"))
        .collect(); // ~30 MB
    std::fs::write(&path, &text).unwrap();
    let mut child = Command::new(common::bin())
        .current_dir(p)
        .args([
            "scan",
            "growing.log",
            "--as-of",
            AS_OF,
            "--chunk-size",
            "65536",
            "--threads",
            "1",
        ])
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .env("CHILDGUARD_STATE_DIR", p.join(".state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let status = loop {
        f.write_all(b"appended line\n").unwrap();
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("childguard: error: growing.log: file changed while it was read"),
        "{err}"
    );
}
