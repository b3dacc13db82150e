//! API integration tests against the real `childguard serve` on a free
//! loopback port: every endpoint, every role boundary (403), missing and bad
//! tokens (401), the end-to-end flows (scan → findings → triage → sweep plan →
//! approval → execution; erasure; purge; report; audit), JSON errors with
//! stable codes, body limits, security headers, metrics and health.

mod daemon_support;

use daemon_support::*;
use serde_json::{json, Value};

/// Every API endpoint: (method, path, minimum role or None for public).
fn endpoints() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    vec![
        ("GET", "/api/v1/me", Some("viewer")),
        ("GET", "/api/v1/overview", Some("viewer")),
        ("GET", "/api/v1/trend", Some("viewer")),
        ("GET", "/api/v1/runs", Some("viewer")),
        ("POST", "/api/v1/runs", Some("operator")),
        ("GET", "/api/v1/runs/1", Some("viewer")),
        ("GET", "/api/v1/findings", Some("viewer")),
        ("GET", "/api/v1/findings/x", Some("viewer")),
        ("POST", "/api/v1/findings/x/triage", Some("operator")),
        ("GET", "/api/v1/violations", Some("viewer")),
        ("GET", "/api/v1/datasets", Some("viewer")),
        ("GET", "/api/v1/datasets/students", Some("viewer")),
        ("GET", "/api/v1/sweep/plans", Some("viewer")),
        ("POST", "/api/v1/sweep/plans", Some("operator")),
        ("GET", "/api/v1/sweep/plans/1", Some("viewer")),
        ("POST", "/api/v1/sweep/plans/1/approve", Some("approver")),
        ("POST", "/api/v1/sweep/plans/1/reject", Some("approver")),
        ("POST", "/api/v1/sweep/plans/1/run", Some("operator")),
        ("GET", "/api/v1/erasures", Some("viewer")),
        ("POST", "/api/v1/erasures", Some("operator")),
        ("GET", "/api/v1/erasures/1", Some("viewer")),
        ("POST", "/api/v1/erasures/1/approve", Some("approver")),
        ("POST", "/api/v1/purge", Some("admin")),
        ("GET", "/api/v1/reports", Some("viewer")),
        ("POST", "/api/v1/reports", Some("operator")),
        ("GET", "/api/v1/reports/1", Some("viewer")),
        ("GET", "/api/v1/audit", Some("approver")),
    ]
}

fn rank(role: &str) -> u8 {
    ["viewer", "operator", "approver", "admin"]
        .iter()
        .position(|r| *r == role)
        .unwrap() as u8
}

/// A body each mutating endpoint accepts, so a 403 is the role check and not validation.
fn body_for(path: &str) -> Option<Value> {
    Some(match path {
        p if p.ends_with("/triage") => json!({"status": "false_positive"}),
        "/api/v1/erasures" => json!({"subject": "x", "reason": "r"}),
        "/api/v1/purge" => json!({"reason": "r", "confirm": "no"}),
        "/api/v1/runs" => json!({"targets": ["/nonexistent"]}),
        _ => json!({}),
    })
}

#[test]
fn every_endpoint_refuses_missing_and_bad_tokens_and_enforces_roles() {
    let e = estate(10, 2, "");
    let s = Server::start(&e, &[]);
    for (m, p, min) in endpoints() {
        let min = min.unwrap();
        let r = s.req(m, p, None, body_for(p).as_ref());
        assert_eq!(r.status, 401, "{m} {p} without a token");
        assert_eq!(r.code(), "unauthorized", "{m} {p}");
        assert!(r
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")));
        let r = s.req(m, p, Some("not-a-token"), body_for(p).as_ref());
        assert_eq!(r.status, 401, "{m} {p} with a bad token");
        assert_eq!(r.code(), "invalid_token");
        for (who, _, role) in TOKENS {
            let r = s.req(m, p, Some(token(who)), body_for(p).as_ref());
            if rank(role) < rank(min) {
                assert_eq!(
                    r.status, 403,
                    "{m} {p} as {role} must be forbidden: {}",
                    r.body
                );
                assert_eq!(r.code(), "forbidden");
                assert!(
                    r.json["error"]["message"].as_str().unwrap().contains(min),
                    "{}",
                    r.body
                );
            } else {
                assert_ne!(
                    r.status, 403,
                    "{m} {p} as {role} must pass the role check: {}",
                    r.body
                );
                assert_ne!(r.status, 401);
            }
        }
    }
}

#[test]
fn end_to_end_scan_triage_sweep_erasure_purge_report_audit() {
    let e = estate(40, 15, "");
    let s = Server::start(&e, &[]);

    // Health, readiness, headers.
    let h = s.req("GET", "/healthz", None, None);
    assert_eq!((h.status, h.json["status"].as_str()), (200, Some("ok")));
    assert_eq!(s.req("GET", "/readyz", None, None).status, 200);
    assert_eq!(h.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(h.header("x-frame-options"), Some("DENY"));
    assert!(h
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    assert_eq!(s.req("GET", "/api/v1/me", None, None).status, 401);
    assert_eq!(
        s.get("/api/v1/me", "anna").json,
        json!({"name": "anna", "role": "approver"})
    );

    // Ad hoc scan by an operator.
    let (run_id, run) = scan_estate(&s, &e);
    assert_eq!(run["started_by"], "otto");
    assert!(run["findings"].as_i64().unwrap() >= 6, "{run}");
    assert!(run["child_findings"].as_i64().unwrap() >= 4, "{run}");
    assert_eq!(run["errors"], 0);
    let runs = s.get("/api/v1/runs", "vera");
    assert_eq!(runs.json["items"][0]["id"], run_id);

    // Findings with filters and paging.
    let all = s.get("/api/v1/findings?per_page=500", "vera").json;
    let total = all["total"].as_i64().unwrap();
    assert_eq!(total as usize, all["items"].as_array().unwrap().len());
    let child_ids = s
        .get(
            "/api/v1/findings?child=true&category=cn_resident_id&per_page=500",
            "vera",
        )
        .json;
    assert!(child_ids["total"].as_i64().unwrap() >= 4);
    for f in child_ids["items"].as_array().unwrap() {
        assert_eq!(f["child"], true);
        assert_eq!(f["category"], "cn_resident_id");
    }
    let adults = s.get("/api/v1/findings?child=false", "vera").json;
    assert!(adults["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["child"] == false));
    assert!(
        adults["total"].as_i64().unwrap() >= 1,
        "the teacher's ID is an adult's"
    );
    let p1 = s.get("/api/v1/findings?per_page=2&page=1", "vera").json;
    let p2 = s.get("/api/v1/findings?per_page=2&page=2", "vera").json;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    assert_eq!(p1["total"], total);
    assert_ne!(p1["items"][0]["finding_id"], p2["items"][0]["finding_id"]);
    let logs = s
        .get("/api/v1/findings?dataset=app_logs&per_page=500", "vera")
        .json;
    assert!(logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["dataset"] == "app_logs" && f["path"] == "app.log"));
    let und = s
        .get("/api/v1/findings?dataset=(undeclared)&per_page=500", "vera")
        .json;
    assert_eq!(
        und["total"], 2,
        "the two IDs in the undeclared export: {und}"
    );
    let bad = s.get("/api/v1/findings?category=shoe_size", "vera");
    assert_eq!((bad.status, bad.code()), (400, "bad_request"));
    let bad = s.get("/api/v1/findings?child=maybe", "vera");
    assert_eq!((bad.status, bad.code()), (400, "bad_request"));
    let table = s
        .get(
            "/api/v1/findings?dataset=students&category=cn_resident_id",
            "vera",
        )
        .json;
    assert_eq!(table["items"][0]["column"], "id_no");
    assert_eq!(table["items"][0]["table"], "main.students");
    assert_eq!(table["items"][0]["count"], 40);

    // Never a raw value in any response.
    for body in [&all.to_string(), &s.get("/api/v1/violations", "vera").body] {
        for id in &e.child_ids {
            assert!(!body.contains(id.as_str()), "a raw ID leaked");
        }
    }

    // Violations: the undeclared export, and the undeclared mobile category in logs.
    let v = s.get("/api/v1/violations?status=open", "vera").json;
    let kinds: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"undeclared_dataset"), "{v}");
    assert!(kinds.contains(&"undeclared_category"), "{v}");
    let ud = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "undeclared_dataset")
        .unwrap();
    assert_eq!(ud["article"], childguard::classify::ART_UNDECLARED_DATASET);
    assert!(ud["message"].as_str().unwrap().contains("kids.txt"));
    assert_eq!(ud["dataset"], Value::Null);
    // One violation per unit and category: the two IDs in the export.
    let und_v = s
        .get("/api/v1/violations?dataset=(undeclared)", "vera")
        .json;
    let und_v = und_v["items"].as_array().unwrap();
    assert!(!und_v.is_empty() && und_v.iter().all(|x| x["dataset"].is_null()));

    // Datasets: declared vs found.
    let ds = s.get("/api/v1/datasets/app_logs", "vera").json;
    assert_eq!(ds["declared_categories"], json!(["cn_resident_id"]));
    let found: Vec<(String, bool)> = ds["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["category"].as_str().unwrap().to_string(),
                f["declared"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        found.contains(&("cn_resident_id".into(), true))
            && found.contains(&("cn_mobile".into(), false)),
        "{ds}"
    );
    let list = s.get("/api/v1/datasets", "vera").json;
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "(undeclared)"));
    assert_eq!(s.get("/api/v1/datasets/nope", "vera").status, 404);

    // Triage: mark the mobile number in the log a false positive; its violation closes.
    let mobile = s
        .get(
            "/api/v1/findings?dataset=app_logs&category=cn_mobile",
            "vera",
        )
        .json["items"][0]
        .clone();
    let fid = mobile["finding_id"].as_str().unwrap();
    let r = s.post(
        &format!("/api/v1/findings/{fid}/triage"),
        "otto",
        json!({"status": "false_positive", "note": "test number"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["status"], "false_positive");
    assert_eq!(r.json["triaged_by"], "otto");
    let still_open = s
        .get(
            "/api/v1/violations?status=open&kind=undeclared_category",
            "vera",
        )
        .json;
    assert!(still_open["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["finding_id"] != fid));
    // Confirming it (a true finding) reopens its violation.
    let r = s.post(
        &format!("/api/v1/findings/{fid}/triage"),
        "otto",
        json!({"status": "confirmed"}),
    );
    assert_eq!(r.json["status"], "confirmed");
    let reopened = s
        .get(
            "/api/v1/violations?status=open&kind=undeclared_category",
            "vera",
        )
        .json;
    assert!(reopened["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["finding_id"] == fid));
    let r = s.post(
        &format!("/api/v1/findings/{fid}/triage"),
        "otto",
        json!({"status": "false_positive"}),
    );
    assert_eq!(r.json["status"], "false_positive");
    let r = s.post(
        &format!("/api/v1/findings/{fid}/triage"),
        "otto",
        json!({"status": "gone"}),
    );
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    assert_eq!(
        s.post(
            "/api/v1/findings/nope/triage",
            "otto",
            json!({"status": "open"})
        )
        .status,
        404
    );
    // Triage survives a rescan (content-derived ids).
    let (run2, _) = scan_estate(&s, &e);
    assert_eq!(
        s.get(&format!("/api/v1/findings/{fid}"), "vera").json["status"],
        "false_positive"
    );
    assert_eq!(
        s.get("/api/v1/trend", "vera").json["points"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // An approver cannot approve their own plan.
    let own = s
        .post(
            "/api/v1/sweep/plans",
            "anna",
            json!({"datasets": ["students"]}),
        )
        .json["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.post(
        &format!("/api/v1/sweep/plans/{own}/approve"),
        "anna",
        json!({}),
    );
    assert_eq!((r.status, r.code()), (403, "self_approval"));
    let r = s.post(
        &format!("/api/v1/sweep/plans/{own}/reject"),
        "arne",
        json!({}),
    );
    assert_eq!(r.json["status"], "rejected");

    // Sweep plan: 15 of 40 students are past 365 days. A newer plan for the
    // same dataset supersedes a pending older one.
    let old = s
        .post(
            "/api/v1/sweep/plans",
            "otto",
            json!({"datasets": ["students"]}),
        )
        .json["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.post(
        "/api/v1/sweep/plans",
        "olga",
        json!({"datasets": ["students"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        s.get(&format!("/api/v1/sweep/plans/{old}"), "vera").json["status"],
        "superseded"
    );
    let plan = r.json["items"][0].clone();
    let pid = plan["id"].as_str().unwrap();
    assert_eq!(plan["planned_rows"], e.old_rows);
    assert_eq!(plan["status"], "planned");
    let ov = s.get("/api/v1/overview", "vera").json;
    assert_eq!(ov["pending_approvals"]["sweep_plans"], 1);
    assert_eq!(ov["retention_overdue"]["records"], e.old_rows);
    assert!(ov["child_pi"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["dataset"] == "(undeclared)"));
    assert_eq!(ov["last_run"]["id"], run2);
    // Running before approval is refused.
    let r = s.post(&format!("/api/v1/sweep/plans/{pid}/run"), "otto", json!({}));
    assert_eq!((r.status, r.code()), (409, "not_approved"));
    // Approve (another person) and run.
    let r = s.post(
        &format!("/api/v1/sweep/plans/{pid}/approve"),
        "anna",
        json!({}),
    );
    assert_eq!(
        (r.status, r.json["status"].as_str()),
        (200, Some("approved")),
        "{}",
        r.body
    );
    assert_eq!(r.json["approved_by"], "anna");
    let r = s.post(
        &format!("/api/v1/sweep/plans/{pid}/approve"),
        "arne",
        json!({}),
    );
    assert_eq!((r.status, r.code()), (409, "invalid_state"));
    let r = s.post(&format!("/api/v1/sweep/plans/{pid}/run"), "otto", json!({}));
    assert_eq!(r.status, 202, "{}", r.body);
    let done = s.poll(&format!("/api/v1/sweep/plans/{pid}"), "vera", 30, |j| {
        ["done", "failed", "verification_failed"].contains(&j["status"].as_str().unwrap_or(""))
    });
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["done_rows"], e.old_rows);
    assert_eq!(done["remaining_rows"], 0);
    assert_eq!(
        count_rows(
            &e,
            "SELECT COUNT(*) FROM students WHERE created_at < '2020-01-01'"
        ),
        0
    );
    assert_eq!(
        count_rows(&e, "SELECT COUNT(*) FROM students"),
        40 - e.old_rows
    );
    assert!(s
        .get(
            "/api/v1/violations?status=open&kind=retention_overdue",
            "vera"
        )
        .json["items"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        s.get("/api/v1/sweep/plans", "vera").json["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Erasure of one student (Art. 20): requested by an operator, approved by someone else.
    let subject: String = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", e.db.display()))
                .await
                .unwrap();
            sqlx::query_scalar("SELECT id_no FROM students ORDER BY id DESC LIMIT 1")
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    };
    let r = s.post(
        "/api/v1/erasures",
        "otto",
        json!({"subject": subject, "reason": "guardian request 2025-001"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        !r.body.contains(&subject),
        "the subject is never stored or echoed"
    );
    let eid = r.json["id"].as_str().unwrap().to_string();
    let r = s.post(
        "/api/v1/erasures",
        "anna",
        json!({"subject": subject, "reason": "self"}),
    );
    let own = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.post(
            &format!("/api/v1/erasures/{own}/approve"),
            "anna",
            json!({})
        )
        .code(),
        "self_approval"
    );
    let r = s.post(
        &format!("/api/v1/erasures/{eid}/approve"),
        "anna",
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["status"], "done");
    assert_eq!(r.json["erased_rows"], 1);
    assert_eq!(
        count_rows(
            &e,
            &format!("SELECT COUNT(*) FROM students WHERE id_no = '{subject}'")
        ),
        0
    );
    assert_eq!(
        s.post(
            &format!("/api/v1/erasures/{eid}/approve"),
            "arne",
            json!({})
        )
        .code(),
        "invalid_state"
    );
    assert_eq!(
        s.get("/api/v1/erasures", "vera").json["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(!s.get("/api/v1/erasures", "vera").body.contains(&subject));

    // Purge (Art. 23): admin only, the sweeper's typed confirmation, and the plan still needs approval.
    let r = s.post(
        "/api/v1/purge",
        "adam",
        json!({"reason": "service shutdown", "confirm": "yes"}),
    );
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    let r = s.post(
        "/api/v1/purge",
        "adam",
        json!({"reason": "service shutdown", "confirm": "DELETE ALL CHILD DATA"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.json["kind"].as_str(), r.json["status"].as_str()),
        (Some("purge"), Some("planned"))
    );
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "both child datasets: {}", r.body);
    let students_purge = items.iter().find(|p| p["dataset"] == "students").unwrap();
    assert_eq!(students_purge["count"], 40 - e.old_rows - 1);
    let purge_id = r.json["id"].as_str().unwrap();
    assert_eq!(
        s.post(
            &format!("/api/v1/sweep/plans/{purge_id}/approve"),
            "adam",
            json!({})
        )
        .code(),
        "self_approval"
    );

    // Reports.
    let r = s.post("/api/v1/reports", "otto", json!({}));
    assert_eq!(r.status, 201);
    let rid = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["run_id"], run2);
    let rep = s.get(&format!("/api/v1/reports/{rid}"), "vera").json;
    assert!(rep["basis"].to_string().contains("MIIT Order No. 24"));
    let students = rep["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "students")
        .unwrap();
    assert_eq!(students["owner"], "Wang Fang");
    assert!(rep["by_dataset_category"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["dataset"].is_null()));
    let md = s.get(&format!("/api/v1/reports/{rid}?format=md"), "vera");
    assert!(md
        .header("content-type")
        .unwrap()
        .starts_with("text/markdown"));
    assert!(md.body.contains("Wang Fang"), "{}", md.body);
    let html = s.get(&format!("/api/v1/reports/{rid}?format=html"), "vera");
    assert!(html.body.contains("<svg") || html.body.contains("<html"));
    assert_eq!(s.get("/api/v1/reports", "vera").json["items"][0]["id"], rid);
    assert_eq!(s.get("/api/v1/reports/999", "vera").code(), "not_found");
    assert_eq!(s.get("/api/v1/reports/..%2Fx", "vera").status, 404);

    // Audit: who did what, including refusals; never a raw value.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let a = s.get("/api/v1/audit?per_page=1000", "anna");
    assert!(a.json["total"].as_u64().unwrap() >= a.json["items"].as_array().unwrap().len() as u64);
    for want in [
        ("otto", "finding.triage", "ok"),
        ("anna", "sweep.approve", "ok"),
        ("anna", "sweep.approve", "refused"),
        ("anna", "erasure.execute", "done"),
        ("adam", "purge.plan", "ok"),
        ("vera", "GET /api/v1/findings", "200"),
        ("-", "GET /api/v1/me", "401"),
    ] {
        // Filtered by actor and action (prefix), newest first.
        let mine = s
            .get(
                &format!(
                    "/api/v1/audit?actor={}&action={}&per_page=1000",
                    want.0,
                    want.1.replace(' ', "%20")
                ),
                "anna",
            )
            .json;
        let items = mine["items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .all(|x| x["actor"] == want.0 && x["action"].as_str().unwrap().starts_with(want.1)),
            "{mine}"
        );
        assert!(
            items.iter().any(|x| x["outcome"] == want.2),
            "audit lacks {want:?}: {mine}"
        );
    }
    assert!(!a.body.contains(&subject));
    let filtered = s
        .get("/api/v1/audit?actor=otto&action=finding", "arne")
        .json;
    assert!(filtered["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["actor"] == "otto"));

    // Metrics.
    let m = s.req("GET", "/metrics", None, None);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    assert!(
        m.body
            .contains("childguard_scans_total{outcome=\"completed\"} 2"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains(&format!("childguard_sweep_rows_total {}", e.old_rows + 1)),
        "the retention sweep and the erasure: {}",
        m.body
    );
    assert!(
        m.body
            .contains("childguard_sweeps_total{outcome=\"done\"} 2"),
        "the retention sweep and the erasure"
    );
    assert!(m.body.contains(
        "childguard_http_requests_total{method=\"GET\",route=\"/api/v1/findings\",status=\"200\"}"
    ));
    assert!(m.body.contains(
        "childguard_http_request_duration_seconds_bucket{route=\"/api/v1/findings\",le=\"0.05\"}"
    ));
    assert!(m.body.contains("childguard_findings_total"));

    // The daemon log never carries a raw value either.
    let log = s.log();
    for id in &e.child_ids {
        assert!(!log.contains(id.as_str()), "raw ID in the log");
    }
}

fn count_rows(e: &Estate, sql: &str) -> i64 {
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
fn errors_are_json_with_stable_codes_and_limits_hold() {
    let e = estate(3, 0, "");
    let s = Server::start(&e, &["--log-json"]);
    // Unknown endpoint.
    let r = s.get("/api/v1/nothing", "vera");
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = s.req("GET", "/no/such/page", None, None);
    assert_eq!((r.status, r.code()), (404, "not_found"));
    // Wrong method.
    let r = s.req("DELETE", "/api/v1/findings", Some(token("adam")), None);
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    // Body over the limit (64 KiB configured).
    let big = vec![b'a'; 200_000];
    let r = http(
        &s.addr,
        "POST",
        "/api/v1/erasures",
        Some(token("otto")),
        Some(&big),
    );
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "{}",
        r.body
    );
    // Malformed JSON and unknown fields.
    let r = http(
        &s.addr,
        "POST",
        "/api/v1/erasures",
        Some(token("otto")),
        Some(b"{not json"),
    );
    assert_eq!((r.status, r.code()), (400, "bad_request"), "{}", r.body);
    let r = s.post(
        "/api/v1/erasures",
        "otto",
        json!({"subject": "1", "reason": "r", "extra": 1}),
    );
    assert!(r.status == 422 || r.status == 400, "{}", r.body);
    assert_eq!(r.code(), "bad_request");
    let r = s.post("/api/v1/sweep/plans", "otto", json!({"datasets": ["nope"]}));
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));
    // Missing resources.
    for p in [
        "/api/v1/runs/99",
        "/api/v1/sweep/plans/99",
        "/api/v1/findings/ffff",
    ] {
        assert_eq!(s.get(p, "vera").code(), "not_found", "{p}");
    }
    // OpenAPI document documents every endpoint.
    let o = s.req("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(o.status, 200);
    assert_eq!(o.json["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    for (m, p, _) in endpoints() {
        let templ = p
            .replace("/runs/1", "/runs/{id}")
            .replace("/findings/x", "/findings/{id}")
            .replace("/plans/1", "/plans/{id}")
            .replace("/erasures/1", "/erasures/{id}")
            .replace("/reports/1", "/reports/{id}")
            .replace("/datasets/students", "/datasets/{name}");
        let path = templ.trim_start_matches("/api/v1");
        assert!(
            o.json["paths"][path][m.to_lowercase()].is_object(),
            "openapi lacks {m} {path}"
        );
    }
    // JSON logs.
    let log = s.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|_| panic!("log line is not JSON: {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string());
    }
}

/// Scan the estate's logs, exports and database as `otto`; wait until the
/// run completes. Returns its id and the run.
fn scan_estate(s: &Server, e: &Estate) -> (i64, Value) {
    let targets = [
        e.root().join("logs").display().to_string(),
        e.root().join("exports").display().to_string(),
        format!("sqlite://{}", e.db.display()),
    ];
    let r = s.post("/api/v1/runs", "otto", json!({ "targets": targets }));
    assert_eq!(r.status, 202, "{}", r.body);
    let run_id = r.json["run_id"].as_i64().unwrap();
    let run = s.poll(&format!("/api/v1/runs/{run_id}"), "vera", 60, |j| {
        j["status"] != "running"
    });
    assert_eq!(run["status"], "completed", "{run}\n{}", s.log());
    (run_id, run)
}

/// Run the real `childguard` CLI against the daemon's config.
fn cli(e: &Estate, args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_childguard"))
        .arg(args[0])
        .arg("--config")
        .arg(&e.config)
        .args(&args[1..])
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .output()
        .expect("run childguard");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// What the daemon scans and triages lands in the shared store: the CLI's
/// `findings`, `audit verify` and the inventory classification see it.
#[test]
fn daemon_scan_and_triage_land_in_the_shared_store() {
    let e = estate(10, 3, "");
    let s = Server::start(&e, &[]);
    scan_estate(&s, &e);
    let api = s.get("/api/v1/findings?per_page=500", "vera").json;
    let api_ids: std::collections::BTreeSet<String> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["finding_id"].as_str().unwrap().to_string())
        .collect();
    assert!(api_ids.len() >= 6, "{api}");
    let fid = api_ids.iter().next().unwrap().clone();
    let t = s.post(
        &format!("/api/v1/findings/{fid}/triage"),
        "otto",
        json!({"status": "accepted_risk", "note": "kept on purpose"}),
    );
    assert_eq!(t.status, 200, "{}", t.body);

    // The run is finished in the store (the scan's writer flushes before the API says completed).
    let (code, out) = cli(&e, &["findings", "list", "--json", "--limit", "1000"]);
    assert_eq!(code, 0, "{out}");
    let stored: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v.get("finding_id").is_some())
        .collect();
    let store_ids: std::collections::BTreeSet<String> = stored
        .iter()
        .map(|f| f["finding_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(store_ids, api_ids, "{out}");
    let triaged = stored
        .iter()
        .find(|f| f["finding_id"] == fid.as_str())
        .unwrap();
    assert_eq!(triaged["triage"]["status"], "accepted_risk", "{triaged}");
    assert_eq!(triaged["triage"]["by"], "otto", "{triaged}");
    // The classifier ran: the logs belong to the declared `app_logs` dataset.
    assert!(
        stored.iter().any(|f| f["dataset"] == "app_logs"),
        "no finding classified into app_logs: {out}"
    );
    // Never a raw identifier in the store's output.
    for id in &e.child_ids {
        assert!(
            !out.contains(id.as_str()),
            "raw id in `findings list` output"
        );
    }

    // The daemon's actions are in the shared hash-chained audit log, intact.
    let (code, out) = cli(&e, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit log intact"), "{out}");
    let (code, out) = cli(&e, &["audit", "export"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("scan.start"), "{out}");
    assert!(out.contains("finding.triage"), "{out}");
}

/// Erasure subjects are never stored: after a restart the approver gives
/// the subject again, and the plan stays approvable until then.
#[test]
fn an_erasure_approved_after_a_restart_needs_the_subject_again() {
    let e = estate(5, 0, "");
    let mut s = Server::start(&e, &[]);
    let subject: String = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", e.db.display()))
                .await
                .unwrap();
            sqlx::query_scalar("SELECT id_no FROM students LIMIT 1")
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    };
    let r = s.post(
        "/api/v1/erasures",
        "otto",
        json!({"subject": subject, "reason": "account closed"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json["id"].as_str().unwrap().to_string();
    s.sigterm();
    assert_eq!(s.wait(std::time::Duration::from_secs(10)), Some(0));

    let s = Server::start(&e, &[]);
    let path = format!("/api/v1/erasures/{id}/approve");
    let r = s.post(&path, "anna", json!({}));
    assert_eq!((r.status, r.code()), (409, "subject_needed"), "{}", r.body);
    assert_eq!(
        s.get(&format!("/api/v1/erasures/{id}"), "vera").json["status"],
        "planned"
    );
    let r = s.post(&path, "anna", json!({"subject": "not-the-subject"}));
    assert_ne!(
        r.status, 200,
        "a different subject does not match the plan's fingerprint"
    );
    let r = s.post(&path, "arne", json!({ "subject": subject }));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json["status"].as_str(), r.json["erased_rows"].as_i64()),
        (Some("done"), Some(1))
    );
    assert!(!s
        .get("/api/v1/audit?per_page=1000", "anna")
        .body
        .contains(&subject));
}
