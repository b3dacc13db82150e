//! The crash test: a sweep of 100,000 PostgreSQL rows, local CSV / JSON
//! lines / log / Parquet files, rotated logs and two S3 objects is killed with
//! SIGKILL at random points at least 10 times and resumed each time. The
//! final state must be exactly right: no expired record left, no record
//! within retention lost, every file and object readable and complete, and
//! every disposal counted exactly once.

mod common;
#[path = "sweep_support.rs"]
mod support;

use rand::Rng;
use sqlx::Connection;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};
use support::*;

const N_PG: i64 = 100_000;

/// As of 2025-03-31 with "30d after created_at": cutoff 2025-03-01 00:00:00.
fn ts(i: i64) -> &'static str {
    match i % 6 {
        0 => "2025-03-01 00:00:00", // exactly at the cutoff: kept
        3 => "2025-04-01 00:00:00", // after: kept
        1 | 4 => "2025-02-28 23:59:59",
        _ => "2024-01-01 08:00:00",
    }
}
fn kept(i: i64) -> bool {
    i % 3 == 0
}

fn csv_data(n: i64) -> Vec<u8> {
    let mut s = String::from("id,user_id,phone,created_at\n");
    for i in 1..=n {
        s.push_str(&format!("{i},u{i},138{:08},{}\n", i, ts(i)));
    }
    s.into_bytes()
}
fn csv_ids(data: &[u8]) -> Vec<i64> {
    let mut r = csv::Reader::from_reader(data);
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        vec!["id", "user_id", "phone", "created_at"]
    );
    r.records()
        .map(|x| x.unwrap()[0].parse().unwrap())
        .collect()
}
fn jsonl_data(n: i64) -> Vec<u8> {
    (1..=n)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"user_id\":\"u{i}\",\"created_at\":\"{}\"}}\n",
                ts(i)
            )
        })
        .collect::<String>()
        .into_bytes()
}
fn jsonl_ids(data: &[u8]) -> Vec<i64> {
    std::str::from_utf8(data)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}
fn log_data(n: i64) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{} INFO user=u{i} id={i} login\n", ts(i)))
        .collect::<String>()
        .into_bytes()
}
fn log_ids(data: &[u8]) -> Vec<i64> {
    std::str::from_utf8(data)
        .unwrap()
        .lines()
        .map(|l| {
            l.rsplit("id=")
                .next()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}
fn pq_rows(n: i64) -> Vec<(i64, String, String, String)> {
    (1..=n)
        .map(|i| (i, format!("u{i}"), format!("139{i:08}"), ts(i).to_string()))
        .collect()
}
fn expect(n: i64) -> Vec<i64> {
    (1..=n).filter(|i| kept(*i)).collect()
}

fn set_mtime(p: &std::path::Path, unix: u64) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_then_resume_is_exact() {
    // --- PostgreSQL: 100,000 rows.
    let url = common::fresh_pg_db("cg_crash").await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE events (id BIGINT PRIMARY KEY, user_id TEXT NOT NULL, created_at TIMESTAMP NOT NULL);
         INSERT INTO events SELECT g, 'u' || g, CASE g % 6 WHEN 0 THEN TIMESTAMP '2025-03-01 00:00:00' WHEN 3 THEN TIMESTAMP '2025-04-01 00:00:00'
           WHEN 1 THEN TIMESTAMP '2025-02-28 23:59:59' WHEN 4 THEN TIMESTAMP '2025-02-28 23:59:59' ELSE TIMESTAMP '2024-01-01 08:00:00' END
         FROM generate_series(1, 100000) g;",
    )
    .execute(&mut c)
    .await
    .unwrap();

    // --- Local files, rotated logs.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fdir = d.join("files");
    std::fs::create_dir_all(fdir.join("sub")).unwrap();
    std::fs::write(fdir.join("a.csv"), csv_data(3000)).unwrap();
    std::fs::write(fdir.join("b.jsonl"), jsonl_data(3000)).unwrap();
    std::fs::write(fdir.join("sub/c.log"), log_data(3000)).unwrap();
    std::fs::write(fdir.join("d.parquet"), parquet_bytes(&pq_rows(5000))).unwrap();
    let rot = d.join("rot");
    std::fs::create_dir_all(&rot).unwrap();
    for (name, mtime) in [
        ("app.log.1", 1_704_067_200u64),
        ("app.log.2", 1_704_067_200),
        ("app.log.3", 1_743_292_800),
        ("app.log.4", 1_740_787_200),
    ] {
        std::fs::write(rot.join(name), log_data(10)).unwrap();
        set_mtime(&rot.join(name), mtime); // 2024-01-01, 2024-01-01, 2025-03-30, exactly 2025-03-01 00:00:00
    }

    // --- S3 objects.
    let s3 = common::S3Server::start();
    create_bucket(&s3.endpoint, "crash");
    let store = s3_store(&s3.endpoint, "crash");
    s3_put(&*store, "data/e.parquet", parquet_bytes(&pq_rows(5000))).await;
    s3_put(&*store, "data/f.csv", csv_data(3000)).await;
    let env = s3.env();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();

    write_config(
        d,
        &format!(
            r#"
[[datasets]]
name = "files"
source = "{files}"
match = ["**/*.csv", "**/*.jsonl", "**/*.log", "**/*.parquet"]
retention = "30d after created_at"

[[datasets]]
name = "rotated"
source = "{rot}"
match = ["app.log.*"]
retention = "30d after object_age"

[[datasets]]
name = "s3"
source = "s3://crash/data"
retention = "30d after created_at"

[[datasets]]
name = "events"
source = "{url}"
match = ["events"]
child_data = true
retention = "30d after created_at"
"#,
            files = fdir.display(),
            rot = rot.display()
        ),
    );
    let p = cg(
        d,
        &[
            "sweep",
            "plan",
            "--as-of",
            "2025-03-31",
            "--as",
            "alice",
            "--json",
        ],
        &env,
    );
    ok(&p);
    let plan = json(&p);
    let id = plan["id"].as_str().unwrap().to_string();
    let expired_pg = (1..=N_PG).filter(|i| !kept(*i)).count() as i64;
    // Expired records per unit: PG rows, 3 text files, local Parquet, 2 rotated logs, S3 Parquet and CSV.
    let exp = |n: i64| (1..=n).filter(|i| !kept(*i)).count() as i64;
    let expected_total_explicit =
        expired_pg + exp(3000) * 3 + exp(5000) + 2 + exp(5000) + exp(3000);
    assert_eq!(plan["total"], expected_total_explicit, "{plan}");
    ok(&cg(d, &["sweep", "approve", &id, "--by", "bob"], &env));

    // --- Kill at random points, resume each time.
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    let mut runs = 0;
    let final_out = loop {
        runs += 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_childguard"));
        cmd.current_dir(d)
            .args([
                "sweep",
                "run",
                &id,
                "--json",
                "--initial-batch",
                "200",
                "--max-batch",
                "300",
                "--min-batch",
                "50",
                "--target-batch-ms",
                "30",
                "--sleep-ms",
                "15",
            ])
            .env("CHILDGUARD_STATE_DIR", d.join(".state"))
            .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
            .env("USER", "operator")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if runs > 1 {
            cmd.arg("--resume");
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        if kills < 12 {
            let wait = rng.gen_range(30..450);
            std::thread::sleep(Duration::from_millis(wait));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                // Between kills, nothing within retention may ever be missing.
                let n_kept: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM events WHERE created_at >= '2025-03-01'",
                )
                .fetch_one(&mut c)
                .await
                .unwrap();
                assert_eq!(n_kept, N_PG / 3);
                continue;
            }
        }
        break child.wait_with_output().unwrap();
    };
    assert!(
        kills >= 10,
        "the run finished after only {kills} kills; the workload is too small to test resumption"
    );
    ok(&final_out);
    let res = json(&final_out);
    assert_eq!(res["status"], "done", "{res}");
    eprintln!("killed {kills} times over {runs} runs");

    // --- PostgreSQL: exactly the kept rows.
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM events ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(
        left,
        expect(N_PG),
        "no expired row left, no row within retention lost"
    );

    // --- Files: readable, complete, exactly the kept rows.
    assert_eq!(
        csv_ids(&std::fs::read(fdir.join("a.csv")).unwrap()),
        expect(3000)
    );
    assert_eq!(
        jsonl_ids(&std::fs::read(fdir.join("b.jsonl")).unwrap()),
        expect(3000)
    );
    assert_eq!(
        log_ids(&std::fs::read(fdir.join("sub/c.log")).unwrap()),
        expect(3000)
    );
    let pr = parquet_rows(&std::fs::read(fdir.join("d.parquet")).unwrap());
    assert_eq!(pr.iter().map(|r| r.0).collect::<Vec<_>>(), expect(5000));
    assert_eq!(
        pr[0],
        (
            3,
            Some("u3".into()),
            Some(format!("139{:08}", 3)),
            Some(ts(3).into())
        ),
        "kept rows are intact"
    );
    let rot_left: BTreeSet<String> = std::fs::read_dir(&rot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        rot_left,
        ["app.log.3", "app.log.4"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "old rotated logs deleted, one exactly at the cutoff kept"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&fdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("childguard-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // --- S3 objects.
    let e = s3_get(&*store, "data/e.parquet")
        .await
        .expect("e.parquet exists");
    assert_eq!(
        parquet_rows(&e).iter().map(|r| r.0).collect::<Vec<_>>(),
        expect(5000)
    );
    let f = s3_get(&*store, "data/f.csv").await.expect("f.csv exists");
    assert_eq!(csv_ids(&f), expect(3000));

    // --- Every disposal counted exactly once.
    let rc = receipt(d, &id);
    assert_eq!(rc["disposed"], expected_total_explicit, "receipt total");
    for it in rc["items"].as_array().unwrap() {
        for u in it["units"].as_array().unwrap() {
            assert_eq!(u["verified"], true, "{u}");
            assert_eq!(u["exact"], true, "{u}");
            assert_eq!(u["disposed"], u["planned"], "{u}");
        }
    }
    let jdb = format!("sqlite://{}", d.join(".state/childguard.db").display());
    let mut j = sqlx::SqliteConnection::connect(&jdb).await.unwrap();
    let starts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sweep_journal WHERE plan_id = ? AND phase = 'start'",
    )
    .bind(&id)
    .fetch_one(&mut j)
    .await
    .unwrap();
    let dones: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sweep_journal WHERE plan_id = ? AND phase = 'done'",
    )
    .bind(&id)
    .fetch_one(&mut j)
    .await
    .unwrap();
    assert_eq!(
        starts, dones,
        "every started batch was finished exactly once"
    );
    let pg_done: i64 = sqlx::query_scalar("SELECT sum(affected) FROM sweep_journal WHERE plan_id = ? AND phase = 'done' AND unit = 'events'").bind(&id).fetch_one(&mut j).await.unwrap();
    assert_eq!(pg_done, expired_pg);
    let recovered: i64 = sqlx::query_scalar("SELECT count(*) FROM sweep_journal WHERE plan_id = ? AND phase = 'done' AND detail LIKE '%\"exact\":true%'")
        .bind(&id)
        .fetch_one(&mut j)
        .await
        .unwrap();
    eprintln!("batches recovered after a kill between start and done: {recovered}");
}

/// A stop file or SIGTERM stops a run cleanly after the current batch
/// (exit 3, status `stopped`); `--resume` finishes it exactly.
#[tokio::test]
async fn stop_file_and_sigterm_stop_cleanly_then_resume() {
    let url = common::fresh_pg_db("cg_stop").await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (id INT PRIMARY KEY, created_at TIMESTAMP); INSERT INTO t SELECT g, CASE WHEN g % 2 = 0 THEN TIMESTAMP '2020-01-01' ELSE TIMESTAMP '2025-03-01' END FROM generate_series(1, 20000) g;")
        .execute(&mut c)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, &format!("[[datasets]]\nname = \"t\"\nsource = \"{url}\"\nmatch = [\"t\"]\nretention = \"30d after created_at\"\n"));
    let p = cg(
        d,
        &[
            "sweep",
            "plan",
            "--as-of",
            "2025-03-31",
            "--as",
            "alice",
            "--json",
        ],
        &[],
    );
    ok(&p);
    let id = json(&p)["id"].as_str().unwrap().to_string();
    ok(&cg(d, &["sweep", "approve", &id, "--by", "bob"], &[]));
    let spawn = |resume: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_childguard"));
        cmd.current_dir(d)
            .args([
                "sweep",
                "run",
                &id,
                "--max-batch",
                "100",
                "--initial-batch",
                "100",
                "--sleep-ms",
                "40",
            ])
            .env("CHILDGUARD_STATE_DIR", d.join(".state"))
            .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if resume {
            cmd.arg("--resume");
        }
        cmd.spawn().unwrap()
    };
    // Stop file.
    let child = spawn(false);
    wait_progress(&mut c, 10000).await;
    std::fs::write(d.join(".state/sweep.stop"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("--resume"));
    let left = remaining(&mut c).await;
    assert!(left > 0 && left < 10000, "stopped part-way: {left}");
    let s = json(&cg(d, &["sweep", "status", &id, "--json"], &[]));
    assert_eq!(s["status"], "stopped");
    // A plain run refuses to restart a started plan.
    let r = cg(d, &["sweep", "run", &id], &[]);
    assert!(!r.status.success() && err(&r).contains("--resume"));
    // SIGTERM.
    let child = spawn(true);
    wait_progress(&mut c, left).await;
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let left2 = remaining(&mut c).await;
    assert!(
        left2 < left && left2 > 0,
        "{left2} after SIGTERM, {left} before"
    );
    // Resume to the end.
    let o = spawn(true).wait_with_output().unwrap();
    ok(&o);
    assert_eq!(remaining(&mut c).await, 0);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(kept, 10000);
    assert_eq!(receipt(d, &id)["disposed"], 10000);
}

async fn remaining(c: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM t WHERE created_at < '2025-03-01'")
        .fetch_one(c)
        .await
        .unwrap()
}

/// Wait until the running sweep has deleted something below `from` (it is past its start-up).
async fn wait_progress(c: &mut sqlx::PgConnection, from: i64) {
    let t = std::time::Instant::now();
    while remaining(c).await >= from {
        assert!(t.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
