//! `childguard serve --demo DIR`: one command generates the demo estate,
//! scans it into the embedded store, plans a sweep and serves the dashboard;
//! findings, violations and a plan awaiting approval appear within a minute.

mod daemon_support;

use daemon_support::http;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_shows_findings_violations_and_a_sweep_plan() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_childguard"))
        .args(["serve", "--demo"])
        .arg(&demo)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("CHILDGUARD_FINGERPRINT_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..6 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l.trim_end().to_string());
    }
    let addr = lines[0]
        .strip_prefix("listening on http://")
        .expect("listening line")
        .to_string();
    assert!(lines[1].starts_with("demo estate in"), "{lines:?}");
    let tok = |role: &str| {
        lines
            .iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(role)
                    .map(|r| r.split_whitespace().next().unwrap().to_string())
            })
            .unwrap()
    };
    let (approver, viewer) = (tok("approver"), tok("viewer"));

    // A plan waiting for approval appears once the startup scan is done.
    let plans = loop {
        let r = http(&addr, "GET", "/api/v1/sweep/plans", Some(&approver), None);
        if r.json["items"].as_array().is_some_and(|a| !a.is_empty()) {
            break r.json;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no plan within a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let p = &plans["items"][0];
    assert_eq!(
        (
            p["dataset"].as_str(),
            p["planned_rows"].as_i64(),
            p["status"].as_str()
        ),
        (Some("students"), Some(100), Some("planned"))
    );
    assert_eq!(
        p["created_by"], "demo-operator",
        "so the demo approver may approve it"
    );

    let o = http(&addr, "GET", "/api/v1/overview", Some(&viewer), None).json;
    assert!(o["child_findings_open"].as_i64().unwrap() >= 50, "{o}");
    let ds = http(&addr, "GET", "/api/v1/datasets", Some(&viewer), None).json;
    let und = ds["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "(undeclared)")
        .expect("undeclared findings");
    assert!(!und["found"].as_array().unwrap().is_empty());
    let und_f = http(
        &addr,
        "GET",
        "/api/v1/findings?dataset=(undeclared)&per_page=500",
        Some(&viewer),
        None,
    )
    .json;
    let places: Vec<String> = und_f["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}{}",
                f["path"].as_str().unwrap_or(""),
                f["table"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        places.iter().any(|p| p.contains("class_roster.csv")),
        "{places:?}"
    );
    assert!(
        places.iter().any(|p| p.contains("marketing_leads")),
        "{places:?}"
    );
    let v = http(
        &addr,
        "GET",
        "/api/v1/violations?status=open",
        Some(&viewer),
        None,
    )
    .json;
    let kinds: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"undeclared_dataset")
            && kinds.contains(&"retention_overdue")
            && kinds.contains(&"undeclared_category"),
        "{kinds:?}"
    );
    assert_eq!(http(&addr, "GET", "/", None, None).status, 200);
    assert!(std::fs::metadata(demo.join("TOKENS.txt")).is_ok());
    let cfg = std::fs::read_to_string(demo.join("childguard.toml")).unwrap();
    assert!(
        !cfg.contains(&approver),
        "the config holds hashes, not tokens"
    );

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
