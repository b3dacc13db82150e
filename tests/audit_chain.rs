//! The hash-chained audit log, end to end through the CLI, on both store
//! backends (embedded SQLite and PostgreSQL): every scan start/end, sweep
//! plan, approval, batch, run, erasure, purge and report lands in it;
//! `audit verify` passes on the untouched chain and names the first broken
//! row when rows are edited, deleted, reordered or edited with a recomputed
//! hash DIRECTLY in the database; `audit export` writes JSON lines.

mod common;

use futures::future::BoxFuture;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

const CONFIRM: &str = "DELETE ALL CHILD DATA";

type Exec = Box<dyn Fn(String) -> BoxFuture<'static, ()>>;
type Query = Box<
    dyn Fn(
        String,
    ) -> BoxFuture<'static, Vec<(i64, String, String, String, String, String, String)>>,
>;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn cg(dir: &Path, cfg: &Path, args: &[&str]) -> Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--config", cfg.to_str().unwrap()]);
    common::run(dir, &a)
}

fn ok(o: Output) -> String {
    assert!(o.status.code() == Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn plan_id(out: &str) -> String {
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// A child's ID number still in the demo's students table (not overdue).
async fn a_subject(demo: &Path) -> String {
    let url = format!("sqlite://{}", demo.join("data/school.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (id,): (String,) =
        sqlx::query_as("SELECT id_number FROM students ORDER BY created_at DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    id
}

/// Everything the CLI records: scan, report, sweep plan/approve/run,
/// erasure plan/approve/run, purge plan/approve/run.
fn workflow(dir: &Path, cfg: &Path, subject: &str) {
    ok(cg(
        dir,
        cfg,
        &[
            "scan",
            "@school_db",
            "@files",
            "--format",
            "jsonl",
            "--quiet",
        ],
    ));
    ok(cg(dir, cfg, &["report", "--format", "json"]));
    let p = plan_id(&ok(cg(
        dir,
        cfg,
        &["sweep", "plan", "--as", "alice", "--json"],
    )));
    ok(cg(dir, cfg, &["sweep", "approve", &p, "--by", "bob"]));
    ok(cg(
        dir,
        cfg,
        &["sweep", "run", &p, "--as", "alice", "--json"],
    ));
    let e = plan_id(&ok(cg(
        dir,
        cfg,
        &["erase", "--subject", subject, "--as", "alice", "--json"],
    )));
    ok(cg(dir, cfg, &["sweep", "approve", &e, "--by", "bob"]));
    ok(cg(
        dir,
        cfg,
        &[
            "erase",
            "--subject",
            subject,
            "--run",
            &e,
            "--as",
            "alice",
            "--json",
        ],
    ));
    let g = plan_id(&ok(cg(
        dir,
        cfg,
        &[
            "purge",
            "--all-child-data",
            "--confirm",
            CONFIRM,
            "--as",
            "alice",
            "--json",
        ],
    )));
    ok(cg(dir, cfg, &["sweep", "approve", &g, "--by", "bob"]));
    ok(cg(
        dir,
        cfg,
        &[
            "purge",
            "--all-child-data",
            "--confirm",
            CONFIRM,
            "--run",
            &g,
            "--as",
            "alice",
            "--json",
        ],
    ));
}

fn verify(dir: &Path, cfg: &Path) -> (i32, String) {
    let o = cg(dir, cfg, &["audit", "verify"]);
    (o.status.code().unwrap(), text(&o))
}

fn assert_broken_at(dir: &Path, cfg: &Path, row: i64, why: &str) {
    let (code, out) = verify(dir, cfg);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("audit log BROKEN: audit row {row}: {why}")),
        "expected row {row} ({why}): {out}"
    );
}

async fn check_chain(dir: &Path, cfg: &Path, subject: &str, exec: Exec, rows: Query) {
    // Export: JSON lines, one per row, with every action the CLI took.
    let out = ok(cg(dir, cfg, &["audit", "export"]));
    let export: Vec<Value> = common::jsonl(out.as_bytes());
    let actions: Vec<&str> = export
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for want in [
        "scan.start",
        "scan.finish",
        "report.generate",
        "sweep.plan_created",
        "sweep.plan_approved",
        "sweep.run_started",
        "sweep.batch",
        "sweep.run_finished",
        "sweep.erasure",
        "sweep.purge",
    ] {
        assert!(actions.contains(&want), "audit lacks {want}: {actions:?}");
    }
    let approvals: Vec<&Value> = export
        .iter()
        .filter(|r| r["action"] == "sweep.plan_approved")
        .collect();
    assert_eq!(approvals.len(), 3);
    assert!(approvals.iter().all(|r| r["actor"] == "bob"));
    assert!(
        !out.contains(subject),
        "the erased subject's key is in the audit log"
    );
    let n = export.len() as i64;
    assert!(n > 12, "{n} rows");
    assert_eq!(
        verify(dir, cfg),
        (0, format!("audit log intact: {n} row(s) verified\n"))
    );

    exec("CREATE TABLE audit_backup AS SELECT * FROM audit_log".into()).await;
    let restore = || async {
        exec("DELETE FROM audit_log".into()).await;
        exec("INSERT INTO audit_log SELECT * FROM audit_backup".into()).await;
        assert_eq!(verify(dir, cfg).0, 0, "restored chain verifies");
    };
    let k = n / 2;

    // Edit one field of a middle row, of the first row, of the last row.
    for (row, sql) in [
        (
            k,
            format!("UPDATE audit_log SET actor = 'mallory' WHERE id = {k}"),
        ),
        (
            1,
            "UPDATE audit_log SET at = '2020-01-01T00:00:00.000000Z' WHERE id = 1".into(),
        ),
        (
            n,
            format!("UPDATE audit_log SET details = '{{}}' WHERE id = {n}"),
        ),
        (
            k,
            format!("UPDATE audit_log SET action = 'scan.start' WHERE id = {k}"),
        ),
    ] {
        exec(sql).await;
        assert_broken_at(dir, cfg, row, "content does not match its hash (edited)");
        restore().await;
    }

    // Delete a middle row: the next row's link breaks.
    exec(format!("DELETE FROM audit_log WHERE id = {k}")).await;
    assert_broken_at(dir, cfg, k + 1, "previous-hash link does not match");
    restore().await;
    // Delete the first row.
    exec("DELETE FROM audit_log WHERE id = 1".into()).await;
    assert_broken_at(dir, cfg, 2, "previous-hash link does not match");
    restore().await;

    // Reorder: rows k and k+1 swap places (ids swapped).
    exec(format!("UPDATE audit_log SET id = -1 WHERE id = {k}")).await;
    exec(format!(
        "UPDATE audit_log SET id = {k} WHERE id = {}",
        k + 1
    ))
    .await;
    exec(format!("UPDATE audit_log SET id = {} WHERE id = -1", k + 1)).await;
    assert_broken_at(dir, cfg, k, "previous-hash link does not match");
    restore().await;

    // Renumber after a deletion so ids stay dense: the link still breaks.
    exec(format!("DELETE FROM audit_log WHERE id = {k}")).await;
    exec(format!("UPDATE audit_log SET id = id - 1 WHERE id > {k}")).await;
    assert_broken_at(dir, cfg, k, "previous-hash link does not match");
    restore().await;

    // Edit a row AND recompute its hash: the next row's link names the forgery.
    let r = rows(format!(
        "SELECT id, at, actor, action, object, details, prev_hash FROM audit_log WHERE id = {k}"
    ))
    .await;
    let (id, at, _actor, action, object, details, prev) = r[0].clone();
    let forged = childguard::audit::row_hash(id, &at, "mallory", &action, &object, &details, &prev);
    exec(format!(
        "UPDATE audit_log SET actor = 'mallory', hash = '{forged}' WHERE id = {k}"
    ))
    .await;
    assert_broken_at(dir, cfg, k + 1, "previous-hash link does not match");
    restore().await;

    exec("DROP TABLE audit_backup".into()).await;
    assert_eq!(verify(dir, cfg).0, 0);
}

fn demo(d: &Path) -> std::path::PathBuf {
    let dir = d.join("demo");
    let o = common::run(d, &["demo", "--dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_chain_records_everything_and_catches_tampering() {
    let d = tempfile::tempdir().unwrap();
    let dir = demo(d.path());
    let cfg = dir.join("childguard.toml");
    let subject = a_subject(&dir).await;
    let p = d.path().to_path_buf();
    let (cfg2, subject2) = (cfg.clone(), subject.clone());
    tokio::task::spawn_blocking(move || workflow(&p, &cfg2, &subject2))
        .await
        .unwrap();
    let url = format!("sqlite://{}", dir.join("state/childguard.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (p1, p2) = (pool.clone(), pool.clone());
    let exec: Exec = Box::new(move |sql| {
        let pool = p1.clone();
        Box::pin(async move {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        })
    });
    let rows: Query = Box::new(move |sql| {
        let pool = p2.clone();
        Box::pin(async move { sqlx::query_as(&sql).fetch_all(&pool).await.unwrap() })
    });
    check_chain(d.path(), &cfg, &subject, exec, rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_chain_records_everything_and_catches_tampering() {
    let d = tempfile::tempdir().unwrap();
    let dir = demo(d.path());
    let url = common::fresh_pg_db("cg_audit").await;
    // The same estate with its store (and sweep journal) in PostgreSQL.
    let text = std::fs::read_to_string(dir.join("childguard.toml")).unwrap();
    let cfg = dir.join("pg.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_url = \"{url}\"\n{}",
            text.replace("state/\"", "state-pg\"").replace(
                &format!("state_dir = \"{}\"", dir.join("state").display()),
                &format!("state_dir = \"{}\"", dir.join("state-pg").display())
            )
        ),
    )
    .unwrap();
    let subject = a_subject(&dir).await;
    let p = d.path().to_path_buf();
    let (cfg2, subject2) = (cfg.clone(), subject.clone());
    tokio::task::spawn_blocking(move || workflow(&p, &cfg2, &subject2))
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (p1, p2) = (pool.clone(), pool.clone());
    let exec: Exec = Box::new(move |sql| {
        let pool = p1.clone();
        Box::pin(async move {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        })
    });
    let rows: Query = Box::new(move |sql| {
        let pool = p2.clone();
        Box::pin(async move { sqlx::query_as(&sql).fetch_all(&pool).await.unwrap() })
    });
    check_chain(d.path(), &cfg, &subject, exec, rows).await;
}
