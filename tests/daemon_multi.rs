//! Several `childguard serve` daemons on one PostgreSQL store: exactly one
//! holds the scheduler lease and fires the schedules; when it is killed
//! (SIGKILL, no goodbye) another takes over within the lease time plus one
//! renewal period, and no fire time runs twice. Sweeps of one dataset are
//! exclusive across daemons (`sweep:<dataset>` lease → 409 `dataset_busy`).

mod common;
mod daemon_support;

use daemon_support::{Estate, Server};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LEASE_SECS: u64 = 2;

/// Fire times of the jobs a daemon started, from its log.
fn fired(s: &Server) -> Vec<String> {
    let log = strip_ansi(&s.log());
    log.lines()
        .filter(|l| l.contains("job started"))
        .filter_map(|l| {
            let at = l.find("fire_time=")? + "fire_time=".len();
            Some(l[at..].split_whitespace().next()?.to_string())
        })
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn leader(s: &Server) -> bool {
    let r = s.req("GET", "/readyz", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["scheduler_leader"].as_bool().unwrap()
}

fn leader_metric(s: &Server) -> String {
    let m = s.req("GET", "/metrics", None, None).body;
    m.lines()
        .find(|l| l.starts_with("childguard_scheduler_leader "))
        .unwrap_or_else(|| panic!("no leader gauge: {m}"))
        .to_string()
}

/// Point the estate's config at the shared PostgreSQL store `url`, with
/// `extra` appended (schedules); returns the config text written.
fn on_store(e: &Estate, url: &str, extra: &str) -> String {
    let cfg = format!(
        "state_url = {url:?}\n{}{extra}",
        std::fs::read_to_string(&e.config).unwrap()
    );
    std::fs::write(&e.config, &cfg).unwrap();
    cfg
}

/// Drop the test's own database.
fn drop_db(rt: &tokio::runtime::Runtime, url: &str) {
    rt.block_on(async {
        use sqlx::Connection;
        let db = url.rsplit('/').next().unwrap().to_string();
        let mut c = sqlx::PgConnection::connect(&common::pg_admin_url())
            .await
            .unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    });
}

/// A second daemon's estate: same config and data, its own state directory.
fn twin(e: &Estate, cfg: &str) -> Estate {
    let dir = tempfile::tempdir().unwrap();
    let state_a = format!(
        "state_dir = {:?}",
        e.root().join("state").display().to_string()
    );
    let state_b = format!(
        "state_dir = {:?}",
        dir.path().join("state").display().to_string()
    );
    assert!(cfg.contains(&state_a));
    let config = dir.path().join("childguard.toml");
    std::fs::write(&config, cfg.replace(&state_a, &state_b)).unwrap();
    Estate {
        dir,
        config,
        db: e.db.clone(),
        child_ids: e.child_ids.clone(),
        old_rows: e.old_rows,
    }
}

#[test]
fn one_daemon_schedules_and_another_takes_over_when_it_dies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(common::fresh_pg_db("cg_multid"));
    let e = daemon_support::estate(10, 3, &format!("leader_lease_secs = {LEASE_SECS}"));
    let logs = e.root().join("logs").display().to_string();
    let cfg = on_store(&e, &url, &format!("\n[[schedules]]\nname = \"tick\"\ncron = \"* * * * * *\"\njob = \"scan\"\ntargets = [{logs:?}]\n"));
    let e2 = twin(&e, &cfg);

    let a = Server::start(&e, &[]);
    let b = Server::start(&e2, &[]);
    std::thread::sleep(Duration::from_millis(5000));

    // Exactly one leads, says so, and is the only one firing.
    let (la, lb) = (leader(&a), leader(&b));
    assert!(la ^ lb, "exactly one leader: a={la} b={lb}");
    let (mut holder, other) = if la { (a, b) } else { (b, a) };
    assert_eq!(leader_metric(&holder), "childguard_scheduler_leader 1");
    assert_eq!(leader_metric(&other), "childguard_scheduler_leader 0");
    let before = fired(&holder);
    assert!(
        before.len() >= 3,
        "the leader fired every second: {before:?}"
    );
    assert!(
        fired(&other).is_empty(),
        "the follower fired: {:?}\n{}",
        fired(&other),
        other.log()
    );

    // SIGKILL the holder: its lease is never released, it must expire.
    holder.child.kill().unwrap();
    let t_kill = Instant::now();
    holder.wait(Duration::from_secs(5));
    let fired_by_dead = fired(&holder);
    while !leader(&other) {
        assert!(
            t_kill.elapsed() < Duration::from_secs(LEASE_SECS + 3),
            "no take-over after {:?}: {}",
            t_kill.elapsed(),
            other.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let takeover = t_kill.elapsed();
    // Bound: the lease time plus one renewal period (ttl/3) plus a margin.
    assert!(
        takeover <= Duration::from_millis(LEASE_SECS * 1000 + LEASE_SECS * 1000 / 3 + 500),
        "take-over took {takeover:?}"
    );
    eprintln!("take-over after SIGKILL: {takeover:?}");
    std::thread::sleep(Duration::from_millis(3000));
    let after = fired(&other);
    assert!(after.len() >= 2, "the new leader fires: {after:?}");
    assert_eq!(leader_metric(&other), "childguard_scheduler_leader 1");

    // No fire time ran twice, across both daemons.
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for t in fired_by_dead.iter().chain(after.iter()) {
        *seen.entry(t).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ticks run twice: {twice:?}");

    // The store holds the scheduled scans of both daemons; the dead daemon's
    // scan that was running (if any) is marked interrupted by the new leader
    // once its run lease expired, and no live scan of the survivor was hit.
    let runs = other.get("/api/v1/runs?limit=1000", "vera").json;
    let items = runs["items"].as_array().unwrap();
    let scheduled = items.iter().filter(|r| r["trigger"] == "scheduled").count();
    let logged = fired_by_dead.len() + after.len();
    assert!(
        scheduled <= logged && scheduled + 2 >= logged,
        "{scheduled} scheduled runs in the store, {logged} jobs started"
    );
    let stuck: Vec<_> = items
        .iter()
        .filter(|r| r["status"] == "running")
        .filter(|r| r["id"].as_i64().unwrap() <= items.len() as i64 - 3)
        .collect();
    assert!(stuck.is_empty(), "runs left running: {stuck:?}");
    drop(other);
    drop(holder);

    drop_db(&rt, &url);
}

/// A daemon refuses to sweep a dataset whose `sweep:<dataset>` lease another
/// holder has in the shared store (409 `dataset_busy`), and sweeps it once
/// that lease is released.
#[test]
fn a_sweep_waits_for_the_dataset_lease_of_another_daemon() {
    use childguard::store::lease::Coordinator;
    use serde_json::json;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(common::fresh_pg_db("cg_multid"));
    let e = daemon_support::estate(20, 6, "");
    on_store(&e, &url, "");
    let s = Server::start(&e, &[]);

    // Another daemon is sweeping `students` (its lease in the real store).
    let (coord, lease) = rt.block_on(async {
        let store = childguard::store::PgStore::connect(&url).await.unwrap();
        let c = Coordinator::postgres(&store);
        let l = c
            .try_acquire("sweep:students", "other-daemon", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("free lease");
        (c, l)
    });
    let r = s.post(
        "/api/v1/sweep/plans",
        "otto",
        json!({"datasets": ["students"]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let pid = r.json["items"][0]["id"].as_str().unwrap().to_string();
    let r = s.post(
        &format!("/api/v1/sweep/plans/{pid}/approve"),
        "anna",
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.post(&format!("/api/v1/sweep/plans/{pid}/run"), "otto", json!({}));
    assert_eq!((r.status, r.code()), (409, "dataset_busy"), "{}", r.body);
    assert_eq!(
        s.get(&format!("/api/v1/sweep/plans/{pid}"), "vera").json["status"],
        "approved"
    );

    // Released: the sweep runs, holding the lease itself while it does.
    assert!(rt.block_on(coord.release(&lease)).unwrap());
    let r = s.post(&format!("/api/v1/sweep/plans/{pid}/run"), "otto", json!({}));
    assert_eq!(r.status, 202, "{}", r.body);
    let done = s.poll(&format!("/api/v1/sweep/plans/{pid}"), "vera", 30, |j| {
        ["done", "failed", "verification_failed"].contains(&j["status"].as_str().unwrap_or(""))
    });
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["done_rows"], e.old_rows);
    // Released at the end: nobody holds it any more.
    assert_eq!(rt.block_on(coord.holder("sweep:students")).unwrap(), None);
    drop(s);
    drop(coord);
    drop_db(&rt, &url);
}

/// Start-up on a shared store leaves other daemons' live scans alone: a
/// daemon run whose run lease is still renewed stays `running`, a CLI run
/// stays `running`, and only a daemon run whose lease expired (its daemon
/// died) is marked `interrupted` by the scheduler leader.
#[test]
fn only_runs_of_dead_daemons_are_interrupted_on_a_shared_store() {
    use childguard::store::lease::Coordinator;
    use childguard::store::{RunStatus, Store};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(common::fresh_pg_db("cg_multid"));
    let (store, coord, live, dead, cli) = rt.block_on(async {
        let store = childguard::store::PgStore::connect(&url).await.unwrap();
        let coord = Coordinator::postgres(&store);
        let t = vec!["/srv/x".to_string()];
        let live = store.begin_run(&t).await.unwrap();
        store.set_run_origin(live, "api", "otto").await.unwrap();
        coord
            .try_acquire(
                &format!("run:{live}"),
                "other-daemon",
                Duration::from_secs(60),
            )
            .await
            .unwrap()
            .unwrap();
        let dead = store.begin_run(&t).await.unwrap();
        store
            .set_run_origin(dead, "scheduled", "schedule:x")
            .await
            .unwrap();
        coord
            .try_acquire(
                &format!("run:{dead}"),
                "dead-daemon",
                Duration::from_millis(1),
            )
            .await
            .unwrap()
            .unwrap();
        let cli = store.begin_run(&t).await.unwrap();
        (store, coord, live, dead, cli)
    });
    let e = daemon_support::estate(5, 1, &format!("leader_lease_secs = {LEASE_SECS}"));
    on_store(&e, &url, "");
    let s = Server::start(&e, &[]);
    assert!(leader(&s));
    let status = |id: i64| rt.block_on(store.run(id)).unwrap().unwrap().status;
    let t = Instant::now();
    while status(dead) != RunStatus::Interrupted {
        assert!(
            t.elapsed() < Duration::from_secs(LEASE_SECS + 3),
            "{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A few more lease periods: the live and CLI runs are never touched.
    std::thread::sleep(Duration::from_millis(LEASE_SECS * 1000 + 500));
    assert_eq!(status(live), RunStatus::Running);
    assert_eq!(status(cli), RunStatus::Running);
    drop(s);
    drop(coord);
    drop(store);
    drop_db(&rt, &url);
}

/// A leader stopped with SIGTERM releases the scheduler lease: the other
/// daemon takes over at its next renewal (a third of the lease time), not
/// after the whole lease.
#[test]
fn a_leader_stopped_gracefully_hands_over_at_once() {
    const LONG: u64 = 9;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(common::fresh_pg_db("cg_multid"));
    let e = daemon_support::estate(3, 1, &format!("leader_lease_secs = {LONG}"));
    let cfg = on_store(&e, &url, "");
    let e2 = twin(&e, &cfg);
    let a = Server::start(&e, &[]);
    let b = Server::start(&e2, &[]);
    assert!(leader(&a) && !leader(&b), "the first daemon leads");
    let mut a = a;
    a.sigterm();
    assert_eq!(a.wait(Duration::from_secs(10)), Some(0), "{}", a.log());
    let t = Instant::now();
    while !leader(&b) {
        assert!(t.elapsed() < Duration::from_secs(LONG), "{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed();
    eprintln!("take-over after the SIGTERMed leader exited: {took:?}");
    assert!(
        took < Duration::from_millis(LONG * 1000 / 3 + 1000),
        "took {took:?}"
    );
    drop(b);
    drop(a);
    drop_db(&rt, &url);
}

/// A scheduled `sweep_run` skips (and logs) a plan whose dataset another
/// daemon is sweeping, and runs it once the lease is free.
#[test]
fn a_scheduled_sweep_skips_a_dataset_swept_elsewhere() {
    use childguard::store::lease::Coordinator;
    use serde_json::json;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(common::fresh_pg_db("cg_multid"));
    let e = daemon_support::estate(12, 4, "");
    on_store(
        &e,
        &url,
        "\n[[schedules]]\nname = \"sweeps\"\ncron = \"* * * * * *\"\njob = \"sweep_run\"\n",
    );
    let (coord, lease) = rt.block_on(async {
        let store = childguard::store::PgStore::connect(&url).await.unwrap();
        let c = Coordinator::postgres(&store);
        let l = c
            .try_acquire("sweep:students", "other-daemon", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        (c, l)
    });
    let s = Server::start(&e, &[]);
    let r = s.post(
        "/api/v1/sweep/plans",
        "otto",
        json!({"datasets": ["students"]}),
    );
    let pid = r.json["items"][0]["id"].as_str().unwrap().to_string();
    let r = s.post(
        &format!("/api/v1/sweep/plans/{pid}/approve"),
        "anna",
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        s.get(&format!("/api/v1/sweep/plans/{pid}"), "vera").json["status"],
        "approved"
    );
    assert!(
        strip_ansi(&s.log()).contains("sweep skipped: another daemon is sweeping its dataset"),
        "{}",
        s.log()
    );
    assert!(rt.block_on(coord.release(&lease)).unwrap());
    let done = s.poll(&format!("/api/v1/sweep/plans/{pid}"), "vera", 30, |j| {
        ["done", "failed", "verification_failed"].contains(&j["status"].as_str().unwrap_or(""))
    });
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["done_rows"], e.old_rows);
    drop(s);
    drop(coord);
    drop_db(&rt, &url);
}
