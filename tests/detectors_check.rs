//! `childguard detectors check|list` end to end, on the embedded packs and on
//! pack directories given with `--detectors DIR`.

mod common;

use childguard::detect::{Engine, EngineOptions};
use childguard::finding::Category;
use childguard::fingerprint::Fingerprinter;
use std::path::Path;

fn copy_packs(dir: &Path) {
    for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn embedded_packs_pass_check() {
    let d = tempfile::tempdir().unwrap();
    let out = common::run(d.path(), &["detectors", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 problem(s)"), "{stdout}");
    let n: usize = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n >= 17, "{stdout}");
}

#[test]
fn list_shows_every_category() {
    let d = tempfile::tempdir().unwrap();
    let out = common::run(d.path(), &["detectors", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let rows = common::jsonl(&out.stdout);
    for c in Category::ALL {
        assert!(
            rows.iter().any(|r| r["category"] == c.as_str()),
            "no rule for {c}"
        );
    }
    assert!(rows.iter().any(|r| r["id"] == "cn.resident_id"));
    assert!(rows.iter().any(|r| r["id"] == "cn.mobile"));
    let text = common::run(d.path(), &["detectors", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("administrative division codes"));
}

#[test]
fn check_reports_broken_packs() {
    let d = tempfile::tempdir().unwrap();
    let packs = d.path().join("packs");
    std::fs::create_dir(&packs).unwrap();
    copy_packs(&packs);
    // a failing example and a negative example that is found
    let extra = r#"
[pack]
name = "custom"

[[rule]]
id = "custom.member_no"
name = "Member number"
category = "student_id"
sensitivity = "low"
regex = 'MB-[0-9]{6}'
context = ["会员"]
examples = ["会员 MB-123456", "nothing here"]
negative_examples = ["code MB-654321"]
"#;
    std::fs::write(packs.join("zz_custom.toml"), extra).unwrap();
    let out = common::run(
        d.path(),
        &["detectors", "check", "--detectors", packs.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("custom.member_no") && stdout.contains("example #2 is not found"),
        "{stdout}"
    );
    assert!(stdout.contains("negative example #1 is found"), "{stdout}");

    // duplicate ids are an error naming the rule
    std::fs::write(
        packs.join("zz_custom.toml"),
        extra.replace("custom.member_no", "cn.mobile"),
    )
    .unwrap();
    let out = common::run(
        d.path(),
        &["detectors", "check", "--detectors", packs.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cn.mobile"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("duplicate rule id"));

    // a regex that does not compile
    std::fs::write(
        packs.join("zz_custom.toml"),
        extra.replace("MB-[0-9]{6}", "MB-[0-9"),
    )
    .unwrap();
    let out = common::run(
        d.path(),
        &["detectors", "check", "--detectors", packs.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("custom.member_no"));
}

#[test]
fn custom_pack_dir_is_used_by_the_engine() {
    let d = tempfile::tempdir().unwrap();
    copy_packs(d.path());
    std::fs::write(
        d.path().join("zz_custom.toml"),
        r#"
[pack]
name = "custom"
[[rule]]
id = "custom.member_no"
name = "Member number"
category = "student_id"
regex = 'MB-[0-9]{6}'
context = ["会员"]
required_context = true
examples = ["会员 MB-123456"]
"#,
    )
    .unwrap();
    let mut o = EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap());
    o.detectors_dir = Some(d.path().to_path_buf());
    let e = Engine::new(o, Fingerprinter::new(b"k")).unwrap();
    let mut h = Vec::new();
    e.scan_text("会员 MB-123456 手机 13812345678\ncode MB-999999", &mut h);
    let ids: Vec<&str> = h.iter().map(|x| &*x.rule).collect();
    assert_eq!(ids, vec!["custom.member_no", "cn.mobile"]);
    assert!(!h[0].masked.contains("123456"));
    // removing the mobile rule from the directory disables it
    let contact = std::fs::read_to_string(d.path().join("contact.toml")).unwrap();
    let cut = contact.find("[[rule]]\nid = \"cn.landline\"").unwrap();
    let start = contact.find("[[rule]]\nid = \"cn.mobile\"").unwrap();
    std::fs::write(
        d.path().join("contact.toml"),
        format!("{}{}", &contact[..start], &contact[cut..]),
    )
    .unwrap();
    let mut o = EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap());
    o.detectors_dir = Some(d.path().to_path_buf());
    let e = Engine::new(o, Fingerprinter::new(b"k")).unwrap();
    let mut h = Vec::new();
    e.scan_text("手机 13812345678", &mut h);
    assert!(h.is_empty());
}
