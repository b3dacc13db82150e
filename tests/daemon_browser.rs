//! The dashboard in headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from tests/browser; scripts/test.sh installs both): log
//! in with a token, filter findings, mark one false positive, approve a sweep
//! plan and watch it complete. Screenshots go to `target/tmp/browser-screenshots`.
//! The outcome is then checked through the API.

mod daemon_support;

use daemon_support::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn dashboard_login_filter_triage_approve_sweep() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "run `npm install` in tests/browser (scripts/test.sh does) — playwright-core drives the system Chromium"
    );
    let chromium =
        std::env::var("CHILDGUARD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        PathBuf::from(&chromium).exists(),
        "Chromium not found at {chromium} (apt-get install chromium; scripts/test.sh does)"
    );

    let e = estate(300, 120, "sweep_batch_rows = 10\nsweep_batch_pause_ms = 40");
    let s = Server::start(&e, &[]);
    let root = e.root();
    let targets = [
        root.join("logs").display().to_string(),
        root.join("exports").display().to_string(),
        format!("sqlite://{}", e.db.display()),
    ];
    let run = s
        .post("/api/v1/runs", "otto", json!({ "targets": targets }))
        .json["run_id"]
        .as_i64()
        .unwrap();
    s.poll(&format!("/api/v1/runs/{run}"), "vera", 60, |j| {
        j["status"] == "completed"
    });
    let plan = s
        .post(
            "/api/v1/sweep/plans",
            "otto",
            json!({"datasets": ["students"]}),
        )
        .json["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new("node")
        .arg("dashboard.test.mjs")
        .current_dir(&browser_dir)
        .env("BASE_URL", format!("http://{}", s.addr))
        .env("TOKEN", token("anna"))
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node is installed (scripts/test.sh installs nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("RESULT line");
    let r: Value = serde_json::from_str(line).unwrap();

    assert_eq!(
        r["problems"],
        json!([]),
        "no page errors, CSP violations, dialogs or external requests"
    );
    assert_eq!(r["who"], "anna (approver)");
    assert!(r["overview_child"].as_i64().unwrap() >= 4);
    assert_eq!(r["overview_pending"], 1);
    assert_eq!(r["token_in_storage"], true);
    assert_eq!(
        r["cookies"], 0,
        "no cookies: the token is a header, so CSRF has nothing to ride on"
    );
    assert!(r["filtered_rows"].as_i64().unwrap() >= 3, "{r}");
    assert_eq!(r["fp_status_text"], "false positive");
    assert!(
        r["not_declared_chips"].as_i64().unwrap() >= 1,
        "the undeclared export is flagged"
    );
    assert_eq!(r["plan"], plan);
    let seen: Vec<&str> = r["plan_states_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(seen.last(), Some(&"done"), "{seen:?}");
    assert!(
        seen.contains(&"running"),
        "live progress was visible: {seen:?}"
    );
    assert_eq!(r["plan_progress"], " 120/120");
    assert_eq!(r["audit_has_approve"], true);
    assert_eq!(r["audit_has_triage"], true);
    assert_eq!(r["token_after_logout"], Value::Null);

    // The API agrees with what the browser did.
    let fid = r["false_positive"].as_str().unwrap();
    let f = s.get(&format!("/api/v1/findings/{fid}"), "vera").json;
    assert_eq!(
        (
            f["status"].as_str(),
            f["triaged_by"].as_str(),
            f["child"].as_bool()
        ),
        (Some("false_positive"), Some("anna"), Some(true))
    );
    let p = s.get(&format!("/api/v1/sweep/plans/{plan}"), "vera").json;
    assert_eq!(
        (
            p["status"].as_str(),
            p["approved_by"].as_str(),
            p["done_rows"].as_i64()
        ),
        (Some("done"), Some("anna"), Some(120))
    );
    for name in [
        "01-overview",
        "02-findings-filtered",
        "03-false-positive",
        "04-datasets",
        "05-sweep-completed",
        "06-audit",
    ] {
        let png = std::fs::read(shots.join(format!("{name}.png")))
            .unwrap_or_else(|_| panic!("screenshot {name}"));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5000,
            "{name} is a real screenshot"
        );
    }
}
