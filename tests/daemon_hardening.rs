//! API hardening (issue 8) against the real `childguard serve`: body limit,
//! request timeout, per-token rate limit, no internal error text, security
//! headers, bearer-only auth (CSRF-safe), the access audit with the peer
//! address (CAC Order No. 4 Art. 15; MIIT Order No. 24 Art. 13(6)), and the
//! config-change record at start-up. Each test fails without its feature.

mod daemon_support;

use daemon_support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

/// Scan the estate as `otto` and wait until it is classified.
fn scan(s: &Server, e: &Estate) -> i64 {
    let targets = [
        e.root().join("logs").display().to_string(),
        e.root().join("exports").display().to_string(),
        format!("sqlite://{}", e.db.display()),
    ];
    let r = s.post("/api/v1/runs", "otto", json!({ "targets": targets }));
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json["run_id"].as_i64().unwrap();
    let run = s.poll(&format!("/api/v1/runs/{id}"), "vera", 60, |j| {
        j["status"] != "running"
    });
    assert_eq!(run["status"], "completed", "{run}");
    id
}

/// Audit rows as the API shows them (approver `anna`).
fn audit(s: &Server, query: &str) -> Vec<Value> {
    std::thread::sleep(Duration::from_millis(300));
    let r = s.get(&format!("/api/v1/audit?per_page=1000&{query}"), "anna");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"].as_array().unwrap().clone()
}

#[test]
fn body_limit_and_request_timeout_answer_json() {
    let e = estate(3, 0, "request_timeout_secs = 1");
    let s = Server::start(&e, &[]);
    // 64 KiB configured.
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

    // A client that stops sending its body is cut off after the timeout.
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /api/v1/erasures HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"subject\"",
        token("otto")
    )
    .unwrap();
    let t = std::time::Instant::now();
    let mut raw = String::new();
    let _ = c.read_to_string(&mut raw);
    assert!(t.elapsed() < Duration::from_secs(5), "cut off after ~1 s");
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert!(raw.contains("\"timeout\""), "{raw}");
}

#[test]
fn rate_limit_per_token_answers_429() {
    let e = estate(3, 0, "rate_limit_per_sec = 1\nrate_limit_burst = 3");
    let s = Server::start(&e, &[]);
    let codes: Vec<u16> = (0..6).map(|_| s.get("/api/v1/me", "vera").status).collect();
    assert_eq!(&codes[..3], &[200, 200, 200], "{codes:?}");
    let r = s.get("/api/v1/me", "vera");
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.body);
    assert!(r
        .header("retry-after")
        .is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
    // Per token: another caller is not affected.
    assert_eq!(s.get("/api/v1/me", "otto").status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        s.get("/api/v1/me", "vera").status,
        200,
        "the bucket refills"
    );
    assert!(audit(&s, "actor=vera")
        .iter()
        .any(|x| x["outcome"] == "429"));
}

#[test]
fn internal_errors_carry_no_internal_text() {
    let e = estate(5, 0, "");
    let s = Server::start(&e, &[]);
    scan(&s, &e);
    // Make writing reports fail: a file where the reports directory goes.
    let state = e.root().join("state");
    std::fs::write(state.join("reports"), "not a directory").unwrap();
    let r = s.post("/api/v1/reports", "otto", json!({}));
    assert_eq!((r.status, r.code()), (500, "internal"), "{}", r.body);
    for leak in [
        "reports",
        "state",
        "os error",
        "File exists",
        "Not a directory",
        "panicked",
        ".rs:",
    ] {
        assert!(
            !r.body.contains(leak),
            "internal text `{leak}` in {}",
            r.body
        );
    }
    assert!(
        s.log().contains("internal error"),
        "the cause is in the daemon log"
    );
}

#[test]
fn security_headers_on_dashboard_api_and_errors() {
    let e = estate(3, 0, "");
    let s = Server::start(&e, &[]);
    for (path, tok) in [
        ("/", None),
        ("/assets/app.js", None),
        ("/api/v1/me", Some(token("vera"))),
        ("/api/v1/me", None),
        ("/api/v1/nothing", Some(token("vera"))),
        ("/healthz", None),
    ] {
        let r = s.req("GET", path, tok, None);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            !csp.contains("http:") && !csp.contains("https:") && !csp.contains('*'),
            "no external origins: {csp}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert!(r.header("set-cookie").is_none(), "{path} sets no cookie");
    }
}

#[test]
fn only_bearer_headers_authenticate_csrf_safe() {
    let e = estate(3, 0, "");
    let s = Server::start(&e, &[]);
    let admin = token("adam");
    // A cookie (what a cross-site form would carry) is not a credential.
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(
        c,
        "POST /api/v1/sweep/plans HTTP/1.1\r\nHost: x\r\nCookie: token={admin}; session={admin}\r\nOrigin: https://evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert!(
        !raw.to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{raw}"
    );
    // Nor is a token in the query string.
    let r = s.req(
        "GET",
        &format!("/api/v1/me?token={admin}&access_token={admin}"),
        None,
        None,
    );
    assert_eq!(r.status, 401);
    // A CORS preflight gets no permission either.
    let r = s.req("OPTIONS", "/api/v1/purge", None, None);
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(r.header("access-control-allow-methods").is_none());
}

#[test]
fn every_api_access_is_audited_with_who_when_where_what() {
    let e = estate(10, 3, "");
    let s = Server::start(&e, &[]);
    scan(&s, &e);
    assert_eq!(
        s.get("/api/v1/findings?category=cn_mobile&per_page=5", "vera")
            .status,
        200
    );
    assert_eq!(s.get("/api/v1/violations", "vera").status, 200);
    let plan = s.post(
        "/api/v1/sweep/plans",
        "otto",
        json!({"datasets": ["students"]}),
    );
    assert_eq!(plan.status, 201, "{}", plan.body);
    assert_eq!(s.get("/api/v1/reports", "vera").status, 200);
    assert_eq!(s.get("/api/v1/erasures", "vera").status, 200);
    let rows = audit(&s, "");
    let find = |actor: &str, action: &str| -> Value {
        rows.iter()
            .find(|x| x["actor"] == actor && x["action"] == action)
            .unwrap_or_else(|| panic!("no audit row {actor} {action}"))
            .clone()
    };
    for (actor, action) in [
        ("vera", "GET /api/v1/findings"),
        ("vera", "GET /api/v1/violations"),
        ("otto", "POST /api/v1/sweep/plans"),
        ("vera", "GET /api/v1/reports"),
        ("vera", "GET /api/v1/erasures"),
    ] {
        let r = find(actor, action);
        assert!(
            r["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "from where: {r}"
        );
        assert!(
            r["at"].as_str().is_some_and(|t| t.starts_with("20")),
            "when: {r}"
        );
        assert_eq!(
            r["outcome"],
            if action.starts_with("POST") {
                "201"
            } else {
                "200"
            }
        );
    }
    assert_eq!(
        find("vera", "GET /api/v1/findings")["detail"],
        "category=cn_mobile&per_page=5",
        "what: the filter"
    );
    // The records are in the shared hash-chained log, and it verifies.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_childguard"))
        .args(["audit", "verify", "--config"])
        .arg(&e.config)
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_changed_config_is_recorded_at_start_up() {
    let e = estate(3, 0, "");
    let changes = |s: &Server| -> Vec<Value> { audit(s, "action=config.change") };
    let mut s = Server::start(&e, &[]);
    let first = changes(&s);
    assert_eq!(first.len(), 1, "{first:?}");
    let fp1 = first[0]["detail"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(first[0]["actor"], "daemon");
    s.sigterm();
    assert_eq!(s.wait(Duration::from_secs(10)), Some(0));

    // Same config: nothing new.
    let mut s = Server::start(&e, &[]);
    assert_eq!(changes(&s).len(), 1);
    s.sigterm();
    assert_eq!(s.wait(Duration::from_secs(10)), Some(0));

    // Changed config (a tighter body limit): recorded, pointing at the previous one.
    let cfg = std::fs::read_to_string(&e.config).unwrap();
    std::fs::write(
        &e.config,
        cfg.replace("body_limit_bytes = 65536", "body_limit_bytes = 32768"),
    )
    .unwrap();
    let s = Server::start(&e, &[]);
    let after = changes(&s);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(
        after[0]["detail"]["previous"],
        fp1.as_str(),
        "newest first: {after:?}"
    );
    assert_ne!(after[0]["detail"]["fingerprint"], fp1.as_str());
    // The fingerprint is keyed: no token hash or path of the config is in it.
    assert!(!after[0].to_string().contains("sha256:"));
}
