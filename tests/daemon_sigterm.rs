//! SIGTERM mid-sweep: the daemon stops taking requests, checkpoints the sweep
//! at the next batch boundary, exits 0; a restart resumes the sweep and
//! completes it with every planned record deleted exactly once.

mod daemon_support;

use daemon_support::*;
use serde_json::json;
use std::time::Duration;

fn count(e: &Estate, sql: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", e.db.display()))
            .await
            .unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    })
}

#[test]
fn sigterm_mid_sweep_checkpoints_and_restart_completes() {
    // 3,000 overdue rows, 100 per batch, 60 ms between batches: ~2 s of sweeping.
    let e = estate(
        3500,
        3000,
        "sweep_batch_rows = 100\nsweep_batch_pause_ms = 60\nshutdown_grace_secs = 10",
    );
    let mut s = Server::start(&e, &[]);
    let plan = s
        .post(
            "/api/v1/sweep/plans",
            "otto",
            json!({"datasets": ["students"]}),
        )
        .json["items"][0]
        .clone();
    assert_eq!(plan["planned_rows"], 3000);
    let pid = plan["id"].as_str().unwrap().to_string();
    let r = s.post(
        &format!("/api/v1/sweep/plans/{pid}/approve"),
        "anna",
        json!({"run": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Wait until it is well under way, then SIGTERM.
    s.poll(&format!("/api/v1/sweep/plans/{pid}"), "vera", 30, |j| {
        j["done_rows"].as_i64().unwrap_or(0) >= 500
    });
    s.sigterm();
    let code = s.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "clean exit on SIGTERM; log:\n{}", s.log());
    let log = s.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("sweep checkpointed by shutdown"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    let left = count(
        &e,
        "SELECT COUNT(*) FROM students WHERE created_at < '2020-01-01'",
    );
    assert!(
        left > 0 && left < 3000,
        "stopped mid-sweep: {left} overdue rows left"
    );
    assert_eq!(
        count(
            &e,
            "SELECT COUNT(*) FROM students WHERE created_at >= '2020-01-01'"
        ),
        500,
        "nothing within retention touched"
    );
    drop(s);

    // Restart: the interrupted sweep resumes by itself and completes.
    let s2 = Server::start(&e, &[]);
    let p = s2.poll(&format!("/api/v1/sweep/plans/{pid}"), "vera", 60, |j| {
        ["done", "failed", "verification_failed"].contains(&j["status"].as_str().unwrap_or(""))
    });
    assert_eq!(p["status"], "done", "{p}\n{}", s2.log());
    assert_eq!(
        p["done_rows"], 3000,
        "every planned record counted exactly once across the restart"
    );
    assert_eq!(p["remaining_rows"], 0);
    assert_eq!(count(&e, "SELECT COUNT(*) FROM students"), 500);
    assert!(s2.log().contains("resuming an interrupted sweep"));
    // The audit log shows the interrupted start and the resumed finish.
    std::thread::sleep(Duration::from_millis(300));
    let a = s2
        .get("/api/v1/audit?action=sweep.run&per_page=50", "anna")
        .json;
    let acts: Vec<(&str, &str)> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["actor"].as_str().unwrap(), x["action"].as_str().unwrap()))
        .collect();
    assert!(acts.contains(&("anna", "sweep.run.start")), "{acts:?}");
    assert!(
        acts.contains(&("daemon:resume", "sweep.run.start")),
        "{acts:?}"
    );
    assert!(
        acts.contains(&("daemon:resume", "sweep.run.finish")),
        "{acts:?}"
    );
}

#[test]
fn sigterm_when_idle_exits_quickly() {
    let e = estate(2, 0, "");
    let mut s = Server::start(&e, &[]);
    assert_eq!(s.req("GET", "/readyz", None, None).status, 200);
    let t = std::time::Instant::now();
    s.sigterm();
    assert_eq!(s.wait(Duration::from_secs(10)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5));
}
