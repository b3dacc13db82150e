//! Retention sweeps against real PostgreSQL, MariaDB and SQLite: dry run
//! changes nothing, nothing within retention is ever deleted (rows on both
//! sides of the cutoff and exactly at it), approval rules, receipts,
//! idempotent re-runs, every anonymize operator.

mod common;
#[path = "sweep_support.rs"]
mod support;

use sqlx::Connection;
use std::collections::BTreeSet;
use support::*;

/// (id, created_at or NULL, expired?) — as of 2025-03-31 with "30d after created_at" the cutoff is 2025-03-01 00:00:00.
fn rows() -> Vec<(i64, Option<String>, bool)> {
    let mut v: Vec<(i64, Option<String>, bool)> = vec![
        (1, Some("2020-01-01 00:00:00".into()), true),
        (2, Some("2025-02-28 23:59:59".into()), true),
        (3, Some("2025-03-01 00:00:00".into()), false), // exactly at the cutoff: within retention
        (4, Some("2025-03-01 00:00:01".into()), false),
        (5, None, false),
    ];
    for i in 6..=205 {
        v.push((
            i,
            Some(
                if i % 2 == 0 {
                    "2024-06-01 12:00:00"
                } else {
                    "2025-03-15 00:00:00"
                }
                .into(),
            ),
            i % 2 == 0,
        ));
    }
    v.push((206, Some("2025-02-28 23:59:59.999".into()), true));
    v.push((207, Some("2025-03-01 00:00:00.001".into()), false));
    v.push((208, Some("2025-02-28T23:00:00".into()), true));
    v
}

fn phone(i: i64) -> String {
    format!("138{:08}", 10_000_000 + i)
}

async fn exec(url: &str, sql: &str) {
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    } else if url.starts_with("mysql") {
        let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    }
}

/// Rows of `sql` (every column cast to text by the query) as strings.
async fn query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    macro_rules! go {
        ($c:ty) => {{
            let mut c = <$c>::connect(url).await.unwrap();
            let rows = sqlx::query(sql).fetch_all(&mut c).await.unwrap();
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect()
        }};
    }
    if url.starts_with("postgres") {
        go!(sqlx::PgConnection)
    } else if url.starts_with("mysql") {
        go!(sqlx::MySqlConnection)
    } else {
        go!(sqlx::SqliteConnection)
    }
}

async fn ids(url: &str, table: &str) -> BTreeSet<i64> {
    let cast = if url.starts_with("mysql") {
        "CHAR"
    } else {
        "TEXT"
    };
    query(url, &format!("SELECT CAST(id AS {cast}) FROM {table}"))
        .await
        .into_iter()
        .map(|r| r[0].as_ref().unwrap().parse().unwrap())
        .collect()
}

async fn load_visits(url: &str, ts_type: &str) {
    exec(url, &format!("CREATE TABLE visits (id BIGINT PRIMARY KEY, phone VARCHAR(20) NOT NULL, created_at {ts_type} NULL)")).await;
    let mut sql = String::new();
    for (id, ts, _) in rows() {
        let ts = ts
            .map(|t| format!("'{t}'"))
            .unwrap_or_else(|| "NULL".into());
        sql.push_str(&format!(
            "INSERT INTO visits (id, phone, created_at) VALUES ({id}, '{}', {ts});\n",
            phone(id)
        ));
    }
    exec(url, &sql).await;
}

async fn retention_scenario(url: &str, ts_type: &str) {
    load_visits(url, ts_type).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(
        d,
        &format!(
            r#"
[[datasets]]
name = "visits"
source = "{url}"
match = ["visits"]
owner = "dpo@example.cn"
child_data = true
categories = {{ phone = ["cn_mobile"] }}
retention = "30d after created_at"
"#
        ),
    );
    let all: BTreeSet<i64> = rows().iter().map(|r| r.0).collect();
    let kept: BTreeSet<i64> = rows().iter().filter(|r| !r.2).map(|r| r.0).collect();
    let expired = all.len() - kept.len();

    // Dry run: counts, masked samples, nothing changed.
    let p = cg(
        d,
        &["sweep", "plan", "--as-of", "2025-03-31", "--as", "alice"],
        &[],
    );
    ok(&p);
    let text = out(&p);
    assert!(text.contains(&format!(": {expired} records")), "{text}");
    assert!(text.contains("sample: phone=138"), "{text}");
    for (id, _, _) in rows() {
        assert!(!text.contains(&phone(id)), "raw phone printed: {text}");
    }
    assert_eq!(ids(url, "visits").await, all, "a dry run changes nothing");
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
    let plan = json(&p);
    let id = plan["id"].as_str().unwrap().to_string();
    assert_eq!(plan["total"], expired as i64);
    assert_eq!(plan["items"][0]["cutoff"], "2025-03-01T00:00:00");
    assert_eq!(ids(url, "visits").await, all);

    // Approval rules.
    let r = cg(d, &["sweep", "run", &id], &[]);
    assert_eq!(r.status.code(), Some(2));
    assert!(err(&r).contains("not approved"), "{}", err(&r));
    let r = cg(d, &["sweep", "approve", &id, "--by", "alice"], &[]);
    assert!(
        !r.status.success() && err(&r).contains("cannot approve"),
        "{}",
        err(&r)
    );
    assert_eq!(ids(url, "visits").await, all);
    ok(&cg(
        d,
        &[
            "sweep",
            "approve",
            &id,
            "--by",
            "bob",
            "--comment",
            "checked",
        ],
        &[],
    ));

    // Run in small batches.
    let r = cg(
        d,
        &[
            "sweep",
            "run",
            &id,
            "--json",
            "--initial-batch",
            "5",
            "--max-batch",
            "7",
            "--min-batch",
            "3",
            "--as",
            "carol",
        ],
        &[],
    );
    ok(&r);
    let res = json(&r);
    assert_eq!(res["status"], "done");
    assert_eq!(res["disposed"], expired as i64);
    assert_eq!(
        ids(url, "visits").await,
        kept,
        "exactly the expired rows are gone"
    );

    let rc = receipt(d, &id);
    assert_eq!(rc["approvals"][0]["approved_by"], "bob");
    assert_eq!(rc["created_by"], "alice");
    assert_eq!(rc["run_by"], "carol");
    let u = &rc["items"][0]["units"][0];
    assert_eq!(u["disposed"], expired as i64);
    assert_eq!(u["remaining"], 0);
    assert_eq!(u["verified"], true);
    assert_eq!(u["exact"], true);
    assert!(u["batches"].as_i64().unwrap() >= expired as i64 / 7);
    assert!(u["max_batch_ms"].as_f64().unwrap() > 0.0);
    let html =
        std::fs::read_to_string(d.join(".state/receipts").join(format!("{id}.html"))).unwrap();
    assert!(html.contains("bob") && html.contains("Art. 12"));

    // Idempotent: a second run does nothing; status shows it complete.
    let r = cg(d, &["sweep", "run", &id, "--json"], &[]);
    ok(&r);
    assert_eq!(ids(url, "visits").await, kept);
    let s = cg(d, &["sweep", "status", &id, "--json"], &[]);
    ok(&s);
    let s = json(&s);
    assert_eq!(s["status"], "done");
    assert_eq!(s["progress"]["visits:visits"]["disposed"], expired as i64);
    // A fresh plan finds nothing more.
    let p = cg(
        d,
        &["sweep", "plan", "--as-of", "2025-03-31", "--json"],
        &[],
    );
    assert_eq!(json(&p)["total"], 0);
}

#[tokio::test]
async fn postgres_retention_exact_cutoff_and_approval() {
    let url = common::fresh_pg_db("cg_sweep").await;
    retention_scenario(&url, "TIMESTAMP(3)").await;
}

#[tokio::test]
async fn mariadb_retention_exact_cutoff_and_approval() {
    let url = common::fresh_mysql_db("cg_sweep").await;
    retention_scenario(&url, "DATETIME(3)").await;
}

#[tokio::test]
async fn sqlite_retention_exact_cutoff_and_approval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    std::fs::File::create(&path).unwrap();
    let url = format!("sqlite://{}", path.display());
    retention_scenario(&url, "TEXT").await;
}

async fn anonymize_scenario(url: &str, ts: &str, date: &str) {
    exec(
        url,
        &format!(
            "CREATE TABLE kids (id INTEGER PRIMARY KEY, name VARCHAR(40), phone VARCHAR(20), id_no VARCHAR(64), birth {date}, birth_text VARCHAR(20), age INTEGER, age_text VARCHAR(10), school VARCHAR(40), created_at {ts} NULL);
             INSERT INTO kids VALUES (1, '张小明', '13812345678', '110101201503071234', '2015-03-07', '2015-03-07', 8, '8', '北京市第一小学', '2020-01-01 00:00:00');
             INSERT INTO kids VALUES (2, '李小红', '13900000000', '110101201601011111', '2016-01-01', '2016-01-01', 9, '9', '上海市实验小学', '2025-03-01 00:00:00');
             INSERT INTO kids VALUES (3, '王小刚', '13700000000', '110101201701012222', '2017-01-01', '2017-01-01', 12, '12', '广州市小学', '2025-02-01 00:00:00');"
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(
        d,
        &format!(
            r#"
[[datasets]]
name = "kids"
source = "{url}"
match = ["kids"]
child_data = true
retention = "30d after created_at"
disposal = "anonymize"
[datasets.anonymize]
name = "const:某某"
phone = "mask:3,4"
id_no = "hash"
birth = "year"
birth_text = "year_month"
age = "age_band:5"
age_text = "age_band:5"
school = "null"
"#
        ),
    );
    let p = cg(
        d,
        &["sweep", "plan", "--as-of", "2025-03-31", "--as", "alice"],
        &[],
    );
    ok(&p);
    assert!(out(&p).contains("hash (pseudonymization"), "{}", out(&p));
    let (id, r) = plan_approve_run(d, &["--as-of", "2025-03-31"], &[]);
    ok(&r);
    assert_eq!(json(&r)["disposed"], 2);
    let cast = if url.starts_with("mysql") {
        "CHAR"
    } else {
        "TEXT"
    };
    let q = format!(
        "SELECT CAST(id AS {cast}), name, phone, id_no, CAST(birth AS {cast}), birth_text, CAST(age AS {cast}), age_text, school, CAST(created_at AS {cast}) FROM kids ORDER BY id"
    );
    let rows = query(url, &q).await;
    let fp = childguard::fingerprint::Fingerprinter::new(b"test-key");
    let row1: Vec<Option<String>> = rows[0].clone();
    assert_eq!(row1[1].as_deref(), Some("某某"));
    assert_eq!(row1[2].as_deref(), Some("138****5678"));
    assert_eq!(
        row1[3].as_deref(),
        Some(fp.fingerprint("110101201503071234").as_str())
    );
    assert!(
        row1[4].as_deref().unwrap().starts_with("2015-01-01"),
        "{row1:?}"
    );
    assert_eq!(row1[5].as_deref(), Some("2015-03"));
    assert_eq!(row1[6].as_deref(), Some("5"));
    assert_eq!(row1[7].as_deref(), Some("5-9"));
    assert_eq!(row1[8], None);
    assert_eq!(
        row1[9], None,
        "the clock is cleared so the row is never selected again"
    );
    // Row 2 is exactly at the cutoff: untouched.
    assert_eq!(rows[1][1].as_deref(), Some("李小红"));
    assert_eq!(rows[1][2].as_deref(), Some("13900000000"));
    assert!(rows[1][9].is_some());
    assert_eq!(rows[2][1].as_deref(), Some("某某"));
    assert_eq!(rows[2][6].as_deref(), Some("10"));
    let rc = receipt(d, &id);
    assert_eq!(rc["items"][0]["units"][0]["verified"], true);
    // Never re-selected.
    let p = cg(
        d,
        &[
            "sweep",
            "plan",
            "--as-of",
            "2030-01-01",
            "--json",
            "--as",
            "alice",
        ],
        &[],
    );
    ok(&p);
    assert_eq!(json(&p)["total"], 1, "only row 2, which expired later");
}

#[tokio::test]
async fn postgres_anonymize_every_operator() {
    let url = common::fresh_pg_db("cg_sweep").await;
    anonymize_scenario(&url, "TIMESTAMP", "DATE").await;
}

#[tokio::test]
async fn sqlite_anonymize_every_operator() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    std::fs::File::create(&path).unwrap();
    anonymize_scenario(&format!("sqlite://{}", path.display()), "TEXT", "DATE").await;
}

#[tokio::test]
async fn mariadb_anonymize_every_operator() {
    let url = common::fresh_mysql_db("cg_sweep").await;
    anonymize_scenario(&url, "DATETIME", "DATE").await;
}

#[tokio::test]
async fn anonymize_refuses_not_null_clock() {
    let url = common::fresh_pg_db("cg_sweep").await;
    exec(&url, "CREATE TABLE t (id INT PRIMARY KEY, phone TEXT, created_at TIMESTAMP NOT NULL); INSERT INTO t VALUES (1, '13812345678', '2020-01-01')").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("[[datasets]]\nname = \"t\"\nsource = \"{url}\"\nmatch = [\"t\"]\nretention = \"30d after created_at\"\ndisposal = \"anonymize\"\nanonymize = {{ phone = \"null\" }}\n"),
    );
    let p = cg(dir.path(), &["sweep", "plan", "--as-of", "2025-03-31"], &[]);
    assert_eq!(p.status.code(), Some(2));
    assert!(err(&p).contains("NOT NULL"), "{}", err(&p));
    assert!(!err(&p).contains("13812345678"));
}

/// A batch journaled `start` whose DELETE committed but whose `done` was
/// never written (killed in between) is recovered: counted exactly once, not
/// repeated, and the run continues after it.
#[tokio::test]
async fn interrupted_batch_is_recovered_and_counted_once() {
    interrupted_batch(false).await;
}

/// The same for an integer key range batch `(lo, hi]` (the default for integer keys).
#[tokio::test]
async fn interrupted_range_batch_is_recovered_and_counted_once() {
    interrupted_batch(true).await;
}

async fn interrupted_batch(range: bool) {
    use childguard::sweep::db::{self, Action, DbPool, PkVal, Predicate, TableJob, Tuning};
    use childguard::sweep::journal::{JournalEntry, SweepJournal};
    let url = common::fresh_pg_db("cg_sweep").await;
    load_visits(&url, "TIMESTAMP(3)").await;
    let state = tempfile::tempdir().unwrap();
    let j = SweepJournal::open(state.path(), None).await.unwrap();
    let pool = DbPool::connect(&url).await.unwrap();
    let info = db::table_info(&pool, "visits").await.unwrap();
    assert_eq!(info.primary_key, vec!["id".to_string()]);
    let cutoff = chrono::NaiveDate::from_ymd_opt(2025, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let job = TableJob {
        plan_id: "p".into(),
        item: 0,
        info,
        pk: "id".into(),
        pred: Predicate::Expired {
            clock: "created_at".into(),
            cutoff,
        },
        action: Action::Delete,
        pk_is_pi: false,
    };
    // The killed attempt: journaled rows 1, 2, 6 and 3 (3 is within retention), deleted 1 and 2, then died.
    let pks = vec![PkVal::Int(1), PkVal::Int(2), PkVal::Int(3), PkVal::Int(6)];
    let detail = if range {
        // Range (none, 6]: matching rows 1, 2 and 6 at selection.
        serde_json::json!({"hi": 6, "n": 3, "pass": 0}).to_string()
    } else {
        serde_json::json!({"pks": pks, "n": 4, "pass": 0}).to_string()
    };
    j.record(
        "p",
        &JournalEntry {
            item: 0,
            unit: "visits".into(),
            seq: 0,
            phase: "start".into(),
            affected: 0,
            detail,
        },
    )
    .await
    .unwrap();
    exec(&url, "DELETE FROM visits WHERE id IN (1, 2)").await;
    if range {
        // Pipelining journals the next batch's start while a batch runs: two
        // batches can be pending. (6, 10] holds the expired rows 8 and 10; it never ran.
        let detail = serde_json::json!({"lo": 6, "hi": 10, "n": 2, "pass": 0}).to_string();
        let e = JournalEntry {
            item: 0,
            unit: "visits".into(),
            seq: 1,
            phase: "start".into(),
            affected: 0,
            detail,
        };
        j.record("p", &e).await.unwrap();
    }
    let tuning = Tuning {
        target_batch: std::time::Duration::from_millis(200),
        initial_batch: 10,
        min_batch: 5,
        max_batch: 10,
        sleep: std::time::Duration::ZERO,
        max_replica_lag: std::time::Duration::from_millis(1000),
    };
    let stop = childguard::sweep::Stop::new(state.path());
    let fp = childguard::fingerprint::Fingerprinter::new(b"k");
    assert_eq!(
        db::replica_lag(&pool).await.unwrap(),
        std::time::Duration::ZERO,
        "no replicas here"
    );
    let o = db::run_table(&pool, &j, &job, &tuning, &fp, &stop)
        .await
        .unwrap();
    let expired = rows().iter().filter(|r| r.2).count() as i64;
    assert_eq!(o.recovered_batches, if range { 2 } else { 1 });
    assert_eq!(
        o.affected, expired,
        "1 and 2 counted once (by recovery), 6 redone, the rest in later batches"
    );
    assert!(o.exact);
    let kept: BTreeSet<i64> = rows().iter().filter(|r| !r.2).map(|r| r.0).collect();
    assert_eq!(ids(&url, "visits").await, kept);
    // Running again repeats nothing.
    let o2 = db::run_table(&pool, &j, &job, &tuning, &fp, &stop)
        .await
        .unwrap();
    assert_eq!(o2.affected, expired);
    // A stop request ends a run cleanly between batches.
    let job2 = TableJob {
        plan_id: "q".into(),
        ..job.clone()
    };
    exec(
        &url,
        "INSERT INTO visits VALUES (1000, '1', '2020-01-01'), (1001, '1', '2020-01-01')",
    )
    .await;
    stop.request();
    let o3 = db::run_table(&pool, &j, &job2, &tuning, &fp, &stop)
        .await
        .unwrap();
    assert!(o3.stopped && o3.affected == 0);
    assert_eq!(ids(&url, "visits").await.len(), kept.len() + 2);
}

/// The journal on a shared PostgreSQL store (`state_url`): created
/// idempotently, same behaviour as SQLite.
#[tokio::test]
async fn journal_on_postgres_state_url() {
    use childguard::sweep::journal::{JournalEntry, SweepJournal};
    let url = common::fresh_pg_db("cg_state").await;
    let d = tempfile::tempdir().unwrap();
    let j = SweepJournal::open(d.path(), Some(&url)).await.unwrap();
    let j2 = SweepJournal::open(d.path(), Some(&url)).await.unwrap();
    j.insert_plan("p1", "retention", "alice", "2025-01-01", None, "{}")
        .await
        .unwrap();
    assert_eq!(j2.plan("p1").await.unwrap().created_by, "alice");
    let e = JournalEntry {
        item: 0,
        unit: "t".into(),
        seq: 0,
        phase: "start".into(),
        affected: 0,
        detail: "{}".into(),
    };
    j.record("p1", &e).await.unwrap();
    assert!(j2.record("p1", &e).await.is_err(), "never journaled twice");
    j.add_approval("p1", "bob", None).await.unwrap();
    j.event(
        Some("p1"),
        "plan_approved",
        Some("bob"),
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(j2.events("p1").await.unwrap()[0].event, "plan_approved");
    assert!(
        !d.path().join("childguard.db").exists(),
        "no SQLite file when state_url is set"
    );
}

/// Mixed-case (quoted) table and column names are used as the catalog spells them.
#[tokio::test]
async fn postgres_mixed_case_identifiers() {
    let url = common::fresh_pg_db("cg_sweep").await;
    exec(&url, r#"CREATE TABLE "Kids" ("Id" INT PRIMARY KEY, "CreatedAt" TIMESTAMP); INSERT INTO "Kids" VALUES (1, '2020-01-01'), (2, '2025-03-01'), (3, NULL)"#).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &format!("[[datasets]]\nname = \"k\"\nsource = \"{url}\"\nmatch = [\"Kids\"]\nretention = \"30d after createdat\"\n"));
    let (_, r) = plan_approve_run(dir.path(), &["--as-of", "2025-03-31"], &[]);
    ok(&r);
    assert_eq!(json(&r)["disposed"], 1);
    let left = query(&url, r#"SELECT CAST("Id" AS TEXT) FROM "Kids" ORDER BY 1"#).await;
    assert_eq!(
        left,
        vec![vec![Some("2".to_string())], vec![Some("3".to_string())]]
    );
}
