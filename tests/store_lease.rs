//! Leases and the work queue (src/store/lease.rs) against the real
//! PostgreSQL (several connection pools, as several daemons would hold) and
//! the embedded SQLite store, with concurrent tasks.

mod common;

use childguard::store::lease::{Claim, Coordinator};
use childguard::store::{PgStore, SqliteStore};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// `n` coordinators on one store: separate pools on PostgreSQL, one file on SQLite.
async fn coordinators(pg: bool, n: usize) -> (Vec<Coordinator>, Option<tempfile::TempDir>) {
    if pg {
        let url = common::fresh_pg_db("cg_lease").await;
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(Coordinator::postgres(
                &PgStore::connect(&url).await.unwrap(),
            ));
        }
        (out, None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("cg.db")).await.unwrap();
        (vec![Coordinator::sqlite(&store); n], Some(dir))
    }
}

async fn lease_semantics(pg: bool) {
    let (c, _dir) = coordinators(pg, 3).await;
    let long = Duration::from_secs(30);
    let a = c[0]
        .try_acquire("scheduler", "a", long)
        .await
        .unwrap()
        .unwrap();
    assert!(c[1]
        .try_acquire("scheduler", "b", long)
        .await
        .unwrap()
        .is_none());
    // Re-acquiring by the holder extends it and keeps the token.
    let mut a2 = c[0]
        .try_acquire("scheduler", "a", long)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a2.token, a.token);
    assert!(c[0].renew(&mut a2, long).await.unwrap());
    assert_eq!(
        c[2].holder("scheduler").await.unwrap(),
        Some(("a".into(), a.token))
    );
    // Released: the next holder gets a higher token; the old holder cannot renew.
    assert!(c[0].release(&a2).await.unwrap());
    assert_eq!(c[2].holder("scheduler").await.unwrap(), None);
    let mut b = c[1]
        .try_acquire("scheduler", "b", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.token, a.token + 1);
    assert!(!c[0].renew(&mut a2, long).await.unwrap());
    // Expiry: b stops renewing (it died); c takes over, b's late renewal fails.
    assert!(c[2]
        .try_acquire("scheduler", "c", long)
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cl = c[2]
        .try_acquire("scheduler", "c", long)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cl.token, b.token + 1);
    assert!(!c[1].renew(&mut b, long).await.unwrap());
    assert!(!c[1].release(&b).await.unwrap());
    // Independent names.
    assert!(c[1]
        .try_acquire("sweeper", "b", long)
        .await
        .unwrap()
        .is_some());

    // Election: many contenders at once, exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let co = c[i % c.len()].clone();
        tasks.push(tokio::spawn(async move {
            co.try_acquire("election", &format!("node-{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(l) = t.await.unwrap() {
            winners.push(l);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        c[0].holder("election").await.unwrap(),
        Some((winners[0].holder.clone(), winners[0].token))
    );
}

async fn queue_semantics(pg: bool) {
    let (c, _dir) = coordinators(pg, 6).await;
    let units: Vec<String> = (0..300).map(|i| format!("logs/app-{i:03}.log")).collect();
    assert_eq!(c[0].enqueue("nightly", &units).await.unwrap(), 300);
    // Enqueueing again (every worker of a run does) adds nothing.
    assert_eq!(c[1].enqueue("nightly", &units).await.unwrap(), 0);

    // Six workers claim batches concurrently until the queue is drained.
    let mut tasks = Vec::new();
    for (w, co) in c.iter().enumerate() {
        let co = co.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = co
                    .claim("nightly", &format!("w{w}"), Duration::from_secs(60), 7)
                    .await
                    .unwrap();
                if claims.is_empty() {
                    break;
                }
                for cl in claims {
                    assert!(co.heartbeat(&cl, Duration::from_secs(60)).await.unwrap());
                    assert!(co.complete(&cl, Some("ok")).await.unwrap());
                    // A second completion of the same claim is refused.
                    assert!(!co.complete(&cl, Some("again")).await.unwrap());
                    mine.push(cl.unit_id);
                }
            }
            mine
        }));
    }
    let mut seen = BTreeMap::new();
    let mut busy_workers = 0;
    for t in tasks {
        let mine = t.await.unwrap();
        busy_workers += (!mine.is_empty()) as usize;
        for u in mine {
            *seen.entry(u).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 300);
    assert!(seen.values().all(|&n| n == 1), "a unit was done twice");
    if pg {
        assert!(busy_workers >= 2, "SKIP LOCKED let workers share the queue");
    }
    let done = c[0].done("nightly").await.unwrap();
    assert_eq!(done.len(), 300);
    assert!(done
        .iter()
        .all(|d| d.attempts == 1 && d.result.as_deref() == Some("ok")));
    let counts = c[0].counts("nightly").await.unwrap();
    assert_eq!((counts.pending, counts.claimed, counts.done), (0, 0, 300));
    assert!(c[0]
        .claim("nightly", "late", Duration::from_secs(5), 10)
        .await
        .unwrap()
        .is_empty());

    // A claimer that dies: its units come back once its lease expires, and
    // only the new claim can complete them.
    let more: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
    c[0].enqueue("q2", &more).await.unwrap();
    let dead: Vec<Claim> = c[1]
        .claim("q2", "dies", Duration::from_millis(300), 3)
        .await
        .unwrap();
    assert_eq!(dead.len(), 3);
    let live = c[2]
        .claim("q2", "lives", Duration::from_secs(30), 10)
        .await
        .unwrap();
    let ids = |v: &[Claim]| v.iter().map(|c| c.unit_id.clone()).collect::<BTreeSet<_>>();
    assert!(ids(&dead).is_disjoint(&ids(&live)));
    assert_eq!(live.len(), 2);
    let counts = c[0].counts("q2").await.unwrap();
    assert_eq!((counts.pending, counts.claimed), (0, 5));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c[0].counts("q2").await.unwrap().expired, 3);
    let retaken = c[3]
        .claim("q2", "rescuer", Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(ids(&retaken), ids(&dead));
    assert!(retaken.iter().all(|r| r.attempts == 2));
    for d in &dead {
        assert!(!c[1].heartbeat(d, Duration::from_secs(30)).await.unwrap());
        assert!(
            !c[1].complete(d, Some("late")).await.unwrap(),
            "a deposed claimer completed"
        );
    }
    for r in retaken.iter().chain(&live) {
        assert!(c[3].complete(r, Some("ok")).await.unwrap());
    }
    let done = c[0].done("q2").await.unwrap();
    assert_eq!(done.len(), 5);
    assert!(done.iter().all(|d| d.result.as_deref() == Some("ok")));
    // Give back: a unit handed back on shutdown is claimable at once.
    c[0].enqueue("q3", &["x".to_string()]).await.unwrap();
    let x = c[0]
        .claim("q3", "a", Duration::from_secs(60), 1)
        .await
        .unwrap();
    assert!(c[0].give_back(&x[0]).await.unwrap());
    let y = c[1]
        .claim("q3", "b", Duration::from_secs(60), 1)
        .await
        .unwrap();
    assert_eq!(y[0].unit_id, "x");
    assert!(!c[0].complete(&x[0], None).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_leases() {
    lease_semantics(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_leases() {
    lease_semantics(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_work_queue() {
    queue_semantics(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_work_queue() {
    queue_semantics(false).await;
}
