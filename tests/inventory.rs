//! The config and inventory checkers through the real binary: every error
//! reported at once with file:line:col and key path; inventory gaps listed.

mod common;

use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> String {
    std::fs::write(dir.join(name), text).unwrap();
    name.to_string()
}

const BROKEN: &str = r#"# a config with many mistakes
state_dri = "/var/lib/childguard"
child_age = 40

[[datasets]]
name = "students"
source = "school_db"
match = ["public.students"]
retention = "3 years"
categories = { sfzh = ["cn_resident_id", "resident_id"] }
disposal = "shred"

[[datasets]]
name = "students"
source = "school_db"
match = ["logs/[a-z.log"]
anonymize = { phone = "mask:3" }
owner = "x"
colour = "red"

[[datasets]]
owner = "nobody"

[[schedules]]
name = "nightly"
"#;

#[test]
fn config_check_reports_every_error_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.toml", BROKEN);
    let out = common::run(dir.path(), &["config", "check", &f]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let expect = [
        "broken.toml:2:1: error: state_dri: unknown key",
        "broken.toml:3:13: error: child_age: child_age 40 is outside",
        "broken.toml:9:13: error: datasets[0].retention:",
        "broken.toml:10:42: error: datasets[0].categories.sfzh[1]: unknown variant `resident_id`",
        "broken.toml:11:12: error: datasets[0].disposal: unknown variant `shred`",
        "broken.toml:19:1: error: datasets[1].colour: unknown key `colour`",
    ];
    for e in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(e)),
            "missing `{e}` in:\n{stdout}"
        );
    }
    // Field errors of the second and third datasets are all there too.
    for key in [
        "datasets[1].anonymize.phone",
        "datasets[1].colour",
        "datasets[2]: missing required key `name`",
        "datasets[2]: missing required key `source`",
    ] {
        assert!(stdout.contains(key), "missing `{key}` in:\n{stdout}");
    }
    assert!(lines.len() == 9, "{stdout}");
    // The [[schedules]] section of another stage is tolerated.
    assert!(!stdout.contains("schedules"), "{stdout}");
    // JSON output carries the same locations.
    let out = common::run(dir.path(), &["config", "check", &f, "--format", "json"]);
    let diags = common::jsonl(&out.stdout);
    let retention = diags
        .iter()
        .find(|d| d["key"] == "datasets[0].retention")
        .unwrap();
    assert_eq!(
        (retention["line"].as_u64(), retention["col"].as_u64()),
        (Some(9), Some(13))
    );
    assert_eq!(retention["level"], "error");
}

#[test]
fn config_check_syntax_error_has_location() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.toml",
        "child_age = 14\n[[datasets]\nname = \"x\"\n",
    );
    let out = common::run(dir.path(), &["config", "check", &f]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("bad.toml:2:"), "{stdout}");
    assert!(stdout.contains("TOML syntax"), "{stdout}");
}

#[test]
fn inventory_check_lists_errors_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[[datasets]]
name = "students"
source = "school_db"
match = ["public.students"]
child_data = true
categories = { sfzh = ["cn_resident_id"] }

[[datasets]]
name = "students"
source = "logs"
match = ["app/{a,b.log"]
owner = "ops"
purpose = "debugging"
retention = "30d after object_age"
disposal = "anonymize"

[[datasets]]
name = "welfare"
source = "school_db"
match = ["public.welfare"]
owner = "Zhang Min"
purpose = "subsidies"
subject_key = "student_no"
retention = "1y after closed_at"
categories = { status = ["vulnerable_child"] }
"#;
    let f = write(dir.path(), "inv.toml", text);
    let out = common::run(dir.path(), &["inventory", "check", "--config", &f]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for e in [
        "inv.toml:2:1: warning: datasets[0].owner: gap",
        "inv.toml:10:8: error: datasets[1].name: duplicate dataset name `students` (first declared as datasets[0])",
        "inv.toml:12:10: error: datasets[1].match[0]: bad glob",
        "inv.toml:16:12: error: datasets[1].disposal: disposal = \"anonymize\" but no column has an operator",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(e)), "missing `{e}` in:\n{stdout}");
    }
    // Gaps of the child dataset without owner, retention, subject key and purpose (reported at the table).
    for gap in [
        "datasets[0].owner: gap",
        "datasets[0].retention: gap",
        "datasets[0].subject_key: gap",
        "datasets[0].purpose: gap",
    ] {
        assert!(stdout.contains(gap), "missing `{gap}` in:\n{stdout}");
    }
    assert!(stdout.contains("Art. 8") && stdout.contains("Art. 20"));
    // `welfare` declares vulnerable_child: it holds children's PI and has no gap.
    assert!(!stdout.contains("datasets[2]"), "{stdout}");

    // Gaps alone: exit 0, or 1 with --strict.
    let gaps_only = write(
        dir.path(),
        "gaps.toml",
        "[[datasets]]\nname = \"a\"\nsource = \"db\"\nchild_data = true\n",
    );
    let out = common::run(dir.path(), &["inventory", "check", "--config", &gaps_only]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 4);
    let out = common::run(
        dir.path(),
        &["inventory", "check", "--config", &gaps_only, "--strict"],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn example_config_is_valid_and_complete() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/childguard.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = common::run(
        dir.path(),
        &["config", "check", example.to_str().unwrap(), "--strict"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = childguard::config::Config::load(&example).unwrap();
    assert_eq!(cfg.datasets.len(), 3);
    assert_eq!(cfg.source_targets().len(), 3);
    // The first dataset shows every field.
    let d = &cfg.datasets[0];
    assert!(
        d.owner.is_some() && d.purpose.is_some() && d.legal_basis.is_some() && d.location.is_some()
    );
    assert!(
        d.subject_key.is_some()
            && d.retention.is_some()
            && !d.encrypted.is_empty()
            && !d.anonymize.is_empty()
            && !d.primary_key.is_empty()
    );
    let out = common::run(
        dir.path(),
        &["inventory", "list", "--config", example.to_str().unwrap()],
    );
    let list = common::jsonl(&out.stdout);
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["retention"], "3y after graduated_at");
}

#[test]
fn load_fails_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.toml");
    std::fs::write(&p, BROKEN).unwrap();
    let err = childguard::config::Config::load(&p)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken.toml:2:1")
            && err.contains("broken.toml:11:12")
            && err.contains("datasets[2]"),
        "{err}"
    );
}
