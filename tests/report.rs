//! Reports and exports end to end: two real scans of fixture files are
//! stored and classified; the binary renders the self-inspection report as
//! HTML (rendered in headless Chromium, screenshot saved under the target
//! dir), Markdown and JSON; findings are exported as Parquet and read back
//! by pyarrow, and as CSV and JSON lines; triage and the audit chain go
//! through the CLI too.

mod common;

use childguard::classify::classify_run;
use childguard::config::Config;
use childguard::detect::{Engine, EngineOptions};
use childguard::fingerprint::Fingerprinter;
use childguard::scan::text::{scan_chunk, TextOrigin};
use childguard::scan::FindingSink;
use childguard::store::*;
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// Scan `data` into the store as one run and classify it.
async fn scan_run(store: &Arc<dyn Store>, data: &Path, cfg: &Config) -> i64 {
    let e = Engine::new(
        EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
        Fingerprinter::new(b"test-key"),
    )
    .unwrap();
    let target = data.display().to_string();
    let run = store
        .begin_run(std::slice::from_ref(&target))
        .await
        .unwrap();
    let (mut sink, writer) = StoreSink::spawn(store.clone(), run);
    let mut units = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for name in names {
        let text = std::fs::read_to_string(data.join(&name)).unwrap();
        let mut out = Vec::new();
        scan_chunk(
            &e,
            &TextOrigin {
                target: &target,
                path: &name,
            },
            &text,
            1,
            0,
            &mut out,
        );
        // The report's ground truth is written for ID and mobile findings (the engine finds more).
        out.retain(|f| {
            matches!(
                f.category,
                childguard::Category::CnResidentId | childguard::Category::CnMobile
            )
        });
        for f in out {
            sink.finding(f).unwrap();
        }
        units.push(UnitRecord {
            target: target.clone(),
            unit_id: name,
            bytes: text.len() as u64,
            ..Default::default()
        });
    }
    drop(sink);
    let n = writer.finish_async().await.unwrap();
    for u in &units {
        store.record_unit(run, u).await.unwrap();
    }
    let stats = RunStats {
        units: units.len() as u64,
        findings: n,
        bytes: units.iter().map(|u| u.bytes).sum(),
        complete_targets: vec![target.clone()],
        ..Default::default()
    };
    store.finish_run(run, &stats).await.unwrap();
    classify_run(&**store, run, cfg, chrono::Utc::now().naive_utc())
        .await
        .unwrap();
    run
}

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
    runs: (i64, i64),
    child_ids: Vec<String>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let child_ids: Vec<String> = (0..40)
        .map(|i| {
            resident_id(
                "110105",
                &format!("201{}0{}15", 2 + i % 6, 1 + i % 9),
                &format!("{:03}", i),
            )
        })
        .collect();
    let mut app = String::new();
    for (i, id) in child_ids.iter().enumerate() {
        app.push_str(&format!(
            "2025-05-01 login student={id} guardian_phone=1381234{:04}\n",
            1000 + i
        ));
    }
    std::fs::write(data.join("app.log"), &app).unwrap();
    std::fs::write(
        data.join("dump.txt"),
        format!("{},{}\n", child_ids[0], child_ids[1]),
    )
    .unwrap();
    let config = dir.path().join("childguard.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[datasets]]
name = "app_logs"
source = "{data}"
match = ["*.log"]
owner = "Wang Fang <ops@example.cn>"
purpose = "troubleshooting"
child_data = true
retention = "30d after object_age"
categories = {{ "*" = ["cn_mobile"] }}

[[datasets]]
name = "enrolment"
source = "postgres://db.internal/school"
match = ["public.students"]
owner = "Li Wei"
purpose = "enrolment"
child_data = true
subject_key = "id"
retention = "3y after graduated_at"
categories = {{ sfzh = ["cn_resident_id"] }}
"#,
            data = data.display()
        ),
    )
    .unwrap();
    let cfg = Config::load(&config).unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join(".state").join(DB_FILE))
            .await
            .unwrap(),
    );
    let r1 = scan_run(&store, &data, &cfg).await;
    // Between the runs the dump is deleted and the log grows.
    std::fs::remove_file(data.join("dump.txt")).unwrap();
    app.push_str(&format!(
        "2025-05-02 login student={} 留守儿童\n",
        resident_id("110105", "20180101", "777")
    ));
    std::fs::write(data.join("app.log"), &app).unwrap();
    let r2 = scan_run(&store, &data, &cfg).await;
    Fixture {
        dir,
        config,
        runs: (r1, r2),
        child_ids,
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_renders_in_chromium() {
    let fx = fixture().await;
    let d = fx.dir.path();
    let cfg = fx.config.to_str().unwrap();
    ok(&common::run(
        d,
        &[
            "report",
            "--config",
            cfg,
            "--format",
            "html",
            "--output",
            "report.html",
        ],
    ));
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();

    // Content: what was scanned, children's PI by dataset/category, violations with owners
    // and articles, sweeps, trend since the previous run.
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("self-inspection record")
            && html.contains("MIIT Order No. 24 (2013) Art. 16")
    );
    assert!(html.contains(&format!("Run {}", fx.runs.1)));
    assert!(html.contains("undeclared_category") && html.contains("CAC Order No. 4 Art. 7, 11"));
    assert!(
        html.contains("Wang Fang &lt;ops@example.cn&gt;"),
        "owner is named and escaped"
    );
    assert!(
        !html.contains("declared_not_found"),
        "the unscanned database dataset is not claimed as not found"
    );
    assert!(
        !html.contains("retention_overdue"),
        "fresh files are within retention"
    );
    assert!(html.contains("<p id=\"sweeps\">None recorded.</p>"));
    assert!(html.contains(&format!("Since run {}:", fx.runs.0)));
    assert!(
        html.contains("id=\"category-chart\"")
            && html.contains("id=\"trend-chart\"")
            && html.contains("id=\"severity-chart\"")
    );
    assert!(html.matches("<svg").count() >= 3);
    // Self-contained: no scripts, stylesheets, images or fonts from anywhere.
    for bad in ["<script", "<link", "src=", "url(", "@import", "https://"] {
        assert!(
            !html.contains(bad),
            "report must be self-contained, found `{bad}`"
        );
    }
    // Never a raw value.
    for id in &fx.child_ids {
        assert!(!html.contains(id.as_str()), "raw identifier in report");
    }

    // Render in headless Chromium: DOM dump and a screenshot under the target dir.
    let chromium = std::env::var("CHILDGUARD_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", d.join("report.html").display());
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,2400",
    ];
    let dom = Command::new(&chromium)
        .args(base)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium is installed (scripts/test.sh installs it: apt-get install chromium)");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("id=\"violations\"") && dom.contains("Wang Fang"),
        "chromium rendered the report: {}",
        &dom[..dom.len().min(500)]
    );

    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("childguard-report.png");
    let _ = std::fs::remove_file(&png);
    let shot = Command::new(&chromium)
        .args(base)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}",
            png.display(),
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 2400));
    // A blank page compresses to a few KB; tables, text and charts do not.
    assert!(
        bytes.len() > 30_000,
        "screenshot is {} bytes: is the page blank?",
        bytes.len()
    );
    eprintln!("screenshot saved: {}", png.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_and_json_reports() {
    let fx = fixture().await;
    let d = fx.dir.path();
    let cfg = fx.config.to_str().unwrap();
    let md = ok(&common::run(
        d,
        &["report", "--config", cfg, "--format", "md"],
    ));
    assert!(md.starts_with("# Children's personal information self-inspection record"));
    for section in [
        "## 1. What was scanned and when",
        "## 2. Children's personal information",
        "## 3. Violations",
        "## 4. Sweeps done and pending",
        "## 5. Trend since the previous run",
    ] {
        assert!(md.contains(section), "missing {section}");
    }
    assert!(md.contains("None recorded."));
    assert!(md.contains("| app_logs | Wang Fang <ops@example.cn> | 30d after object_age | cn_mobile | cn_mobile, cn_resident_id"), "{md}");

    let json = ok(&common::run(
        d,
        &[
            "report",
            "--config",
            cfg,
            "--format",
            "json",
            "--run",
            &fx.runs.0.to_string(),
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["run"]["id"], fx.runs.0);
    assert!(
        v["previous_run"].is_null() && v["delta"].is_null(),
        "run 1 is the first run"
    );
    assert!(v["sweeps"].is_null());
    let kinds = v["violations_by_kind"].as_object().unwrap();
    assert_eq!(
        kinds["undeclared_category"], 1,
        "resident ids in app.log: {kinds:?}"
    );
    assert_eq!(
        kinds["undeclared_dataset"], 1,
        "dump.txt is undeclared: {kinds:?}"
    );
    let json = ok(&common::run(
        d,
        &["report", "--config", cfg, "--format", "json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["run"]["id"], fx.runs.1);
    assert_eq!(v["delta"]["previous_run"], fx.runs.0);
    assert_eq!(
        v["delta"]["child_findings"], -1,
        "dump.txt's two ids gone, one new id in the log: {}",
        v["delta"]
    );
    assert_eq!(v["trend"].as_array().unwrap().len(), 2);
    assert!(
        v["violations_by_kind"].get("undeclared_dataset").is_none(),
        "dump.txt was deleted"
    );
    // A run that does not exist is a clear error.
    let out = common::run(d, &["report", "--config", cfg, "--run", "999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_export_parquet_read_by_pyarrow() {
    let fx = fixture().await;
    let d = fx.dir.path();
    ok(&common::run(
        d,
        &[
            "findings",
            "export",
            "--format",
            "parquet",
            "--output",
            "findings.parquet",
            "--include-resolved",
        ],
    ));
    ok(&common::run(
        d,
        &[
            "findings",
            "export",
            "--format",
            "csv",
            "--output",
            "findings.csv",
            "--include-resolved",
        ],
    ));
    let jsonl = ok(&common::run(
        d,
        &[
            "findings",
            "export",
            "--format",
            "jsonl",
            "--include-resolved",
        ],
    ));
    let rows = common::jsonl(jsonl.as_bytes());
    assert_eq!(
        rows.len(),
        83,
        "40 ids + 40 phones + 1 id and 1 marker-line id in run 2, 2 ids in the deleted dump"
    );
    let resolved = rows.iter().filter(|r| !r["resolved_at"].is_null()).count();
    assert_eq!(resolved, 2, "the deleted dump's findings are resolved");

    let script = r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
d = t.to_pydict()
print(json.dumps({
  "rows": t.num_rows,
  "columns": t.column_names,
  "child": sum(1 for c in d["child"] if c),
  "categories": sorted(set(d["category"])),
  "resolved": sum(1 for r in d["resolved_at"] if r is not None),
  "datasets": sorted(set(x for x in d["dataset"] if x is not None)),
  "ts_type": str(t.schema.field("first_seen").type),
}))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(d.join("findings.parquet"))
        .output()
        .expect("python3 with pyarrow (scripts/test.sh: pip install pyarrow)");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], 83);
    assert_eq!(
        v["child"],
        rows.iter().filter(|r| r["child"] == true).count()
    );
    assert_eq!(
        v["categories"],
        serde_json::json!(["cn_mobile", "cn_resident_id"])
    );
    assert_eq!(v["resolved"], 2);
    assert_eq!(v["datasets"], serde_json::json!(["app_logs"]));
    assert_eq!(v["ts_type"], "timestamp[us, tz=UTC]");
    for col in [
        "finding_id",
        "masked",
        "fingerprint",
        "triage_status",
        "last_run",
    ] {
        assert!(
            v["columns"].as_array().unwrap().iter().any(|c| c == col),
            "{col}"
        );
    }

    let csv = std::fs::read_to_string(d.join("findings.csv")).unwrap();
    assert_eq!(csv.lines().count(), 84);
    assert!(csv.starts_with("finding_id,target,unit_id,"));
    for id in &fx.child_ids {
        assert!(!csv.contains(id.as_str()), "raw identifier in export");
    }
    // Filters apply to exports: open children's findings of the last run.
    let f = ok(&common::run(
        d,
        &[
            "findings",
            "export",
            "--format",
            "jsonl",
            "--child",
            "true",
            "--run",
            &fx.runs.1.to_string(),
        ],
    ));
    assert_eq!(
        common::jsonl(f.as_bytes()).len(),
        rows.iter()
            .filter(|r| r["child"] == true && r["last_run"] == fx.runs.1)
            .count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_list_and_audit_through_the_cli() {
    let fx = fixture().await;
    let d = fx.dir.path();
    let list = ok(&common::run(
        d,
        &[
            "findings",
            "list",
            "--json",
            "--category",
            "cn_resident_id",
            "--limit",
            "5",
        ],
    ));
    let page = common::jsonl(list.as_bytes());
    assert_eq!(page.len(), 5);
    let id = page[0]["finding_id"].as_str().unwrap().to_string();
    ok(&common::run(
        d,
        &[
            "findings",
            "triage",
            &id,
            "--status",
            "accepted_risk",
            "--comment",
            "test fixture",
            "--by",
            "auditor",
        ],
    ));
    let fp = ok(&common::run(
        d,
        &["findings", "list", "--json", "--status", "accepted_risk"],
    ));
    let fp = common::jsonl(fp.as_bytes());
    assert_eq!(fp.len(), 1);
    assert_eq!(fp[0]["triage"]["by"], "auditor");
    let bad = common::run(
        d,
        &[
            "findings",
            "triage",
            "nope",
            "--status",
            "confirmed",
            "--by",
            "x",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    let bad = common::run(
        d,
        &["findings", "triage", &id, "--status", "maybe", "--by", "x"],
    );
    assert_ne!(bad.status.code(), Some(0));

    let v = ok(&common::run(d, &["audit", "verify"]));
    assert!(v.contains("audit log intact"), "{v}");
    let export = ok(&common::run(d, &["audit", "export"]));
    let rows = common::jsonl(export.as_bytes());
    assert!(rows
        .iter()
        .any(|r| r["action"] == "finding.triage" && r["actor"] == "auditor"));
    assert_eq!(
        rows.iter().filter(|r| r["action"] == "scan.start").count(),
        2
    );

    // Tamper with a row directly in SQLite: verify fails and names that row.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        d.join(".state").join(DB_FILE).display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE audit_log SET details = '{}' WHERE id = 2")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = common::run(d, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("audit row 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
