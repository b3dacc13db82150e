//! Scale-out with real processes: N `childguard scan --shard` children of
//! the built binary over one generated estate (local files, a SQLite
//! database, PostgreSQL tables, S3 objects on a loopback moto_server, one of
//! them split into byte ranges), all
//! writing to one PostgreSQL store. The union of the shards' findings is the
//! unsharded scan's (same finding ids and counts; no unit missed or doubled),
//! large tables and files are split into range units, and every unit's
//! record names its shard. A work-queue worker killed with SIGKILL in the
//! middle of a unit leads to the unit being redone and recorded once.

mod common;
mod dbfix;

use childguard::source::shard::Shard;
use dbfix::{adult_id, child_id, mobile};
use sqlx::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const AS_OF: &str = "2025-06-01";
const SHARDS: u64 = 3;

struct Estate {
    dir: tempfile::TempDir,
    _s3: common::S3Server,
    pg_url: String,
    store_url: String,
}

impl Estate {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn log_line(i: u64) -> String {
    match i % 5 {
        0 => format!(
            "2025-01-02 signup student id={} guardian phone {}\n",
            child_id(i),
            mobile(i)
        ),
        1 => format!("2025-01-02 staff login id={}\n", adult_id(i)),
        _ => format!("2025-01-02 INFO request {i} handled in {} ms\n", i % 97),
    }
}

fn estate() -> Estate {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Local files: many small logs, one JSON-lines file and one large log (split into byte ranges).
    let files = root.join("files");
    std::fs::create_dir_all(files.join("logs")).unwrap();
    for f in 0..30u64 {
        let text: String = (0..20).map(|i| log_line(f * 100 + i)).collect();
        std::fs::write(files.join(format!("logs/app-{f:02}.log")), text).unwrap();
    }
    let big: String = (0..4000).map(log_line).collect();
    assert!(big.len() > 5 * 16_384);
    std::fs::write(files.join("logs/huge.log"), big).unwrap();
    let jsonl: String = (0..600)
        .map(|i| {
            format!(
                "{{\"student\":{{\"idNo\":\"{}\",\"tel\":\"{}\"}}}}\n",
                child_id(9000 + i),
                mobile(i)
            )
        })
        .collect();
    std::fs::write(files.join("events.jsonl"), jsonl).unwrap();

    let rt = dbfix::rt();
    // SQLite: one large table (split into key ranges with --full) and a small one.
    let lite = root.join("school.db");
    rt.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", lite.display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT, sfzh TEXT, phone TEXT)",
        )
        .execute(&mut c)
        .await
        .unwrap();
        sqlx::query("CREATE TABLE notes (body TEXT)")
            .execute(&mut c)
            .await
            .unwrap();
        let mut tx = c.begin().await.unwrap();
        for i in 1..=700u64 {
            let id = if i % 3 == 0 { child_id(i) } else { adult_id(i) };
            sqlx::query("INSERT INTO students VALUES (?, ?, ?, ?)")
                .bind(i as i64)
                .bind(format!("学生{i}"))
                .bind(id)
                .bind(mobile(i))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        for i in 0..20u64 {
            sqlx::query("INSERT INTO notes VALUES (?)")
                .bind(format!("call guardian {}", mobile(i)))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    });

    // PostgreSQL: a large table with gaps in its key, and several small ones.
    let pg_url = rt.block_on(common::fresh_pg_db("cg_shard_src"));
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&pg_url).await.unwrap();
        sqlx::query("CREATE TABLE pupils (id BIGINT PRIMARY KEY, sfzh TEXT, phone TEXT)")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO pupils SELECT g * 3, CASE WHEN g % 2 = 0 THEN $1 ELSE $2 END, $3 FROM generate_series(1, 600) g",
        )
        .bind(child_id(1))
        .bind(adult_id(2))
        .bind(mobile(3))
        .execute(&mut c)
        .await
        .unwrap();
        for t in 0..8u64 {
            sqlx::query(&format!("CREATE TABLE contacts_{t} (id SERIAL PRIMARY KEY, note TEXT)"))
                .execute(&mut c)
                .await
                .unwrap();
            for i in 0..5 {
                sqlx::query(&format!("INSERT INTO contacts_{t} (note) VALUES ($1)"))
                    .bind(format!("guardian {} child {}", mobile(t * 10 + i), child_id(t * 10 + i)))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    });

    // S3 objects.
    let s3 = common::S3Server::start();
    s3.create_bucket("estate");
    let client = s3.client("estate");
    for k in 0..15u64 {
        let text: String = (0..10).map(|i| log_line(k * 50 + i)).collect();
        common::put_object(
            &rt,
            &client,
            &format!("exports/log-{k:02}.log"),
            text.into_bytes(),
        );
    }
    // A large log object: split into byte ranges read with ranged GETs.
    let big: String = (0..2000).map(|i| log_line(7000 + i)).collect();
    assert!(big.len() > 3 * 16_384);
    common::put_object(&rt, &client, "exports/huge.log", big.into_bytes());
    let csv: String = std::iter::once("name,sfzh\n".to_string())
        .chain((0..40).map(|i| format!("学生{i},{}\n", child_id(500 + i))))
        .collect();
    common::put_object(&rt, &client, "exports/roster.csv", csv.into_bytes());

    let store_url = rt.block_on(common::fresh_pg_db("cg_shard_store"));
    let cfg = format!(
        "state_url = \"{store_url}\"\n\n[[sources]]\nname = \"objects\"\nurl = \"s3://estate/exports/\"\nendpoint = \"{}\"\n\
         region = \"us-east-1\"\npath_style = true\nallow_http = true\naccess_key_id_env = \"CG_SHARD_KEY\"\n\
         secret_access_key_env = \"CG_SHARD_SECRET\"\n",
        s3.endpoint
    );
    std::fs::write(root.join("pg.toml"), &cfg).unwrap();
    // The same sources without a store, for the unsharded reference scan.
    std::fs::write(
        root.join("plain.toml"),
        cfg.replace(&format!("state_url = \"{store_url}\"\n"), ""),
    )
    .unwrap();
    Estate {
        dir,
        _s3: s3,
        pg_url,
        store_url,
    }
}

/// The scan command over the whole estate.
fn scan_cmd(e: &Estate, config: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    c.current_dir(e.path())
        .env("CHILDGUARD_STATE_DIR", e.path().join(".state"))
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .env("CG_SHARD_KEY", "testing")
        .env("CG_SHARD_SECRET", "testing")
        .env_remove("RUST_LOG")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("CHILDGUARD_SHARDS")
        .env_remove("CHILDGUARD_RUN_GROUP")
        .args(["scan", "files", "sqlite://school.db", &e.pg_url, "@objects"])
        .args([
            "--config", config, "--format", "jsonl", "--as-of", AS_OF, "--full",
        ])
        .args([
            "--range-rows",
            "100",
            "--range-bytes",
            "16384",
            "--threads",
            "1",
            "-q",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Findings as canonical JSON strings (a multiset: duplicates would show).
fn canon(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = common::jsonl(out).iter().map(|x| x.to_string()).collect();
    v.sort();
    v
}

#[test]
fn shards_together_equal_the_unsharded_scan() {
    let e = estate();
    let reference = scan_cmd(&e, "plain.toml", &["--no-save"]).output().unwrap();
    ok(&reference);
    let all = canon(&reference.stdout);
    let v = common::jsonl(&reference.stdout);
    // Range units exist for every kind that splits.
    for (label, pred) in [
        ("sqlite key ranges", "pk="),
        ("postgres key ranges", "pk="),
        ("file byte ranges", "bytes="),
        ("object byte ranges", "bytes="),
    ] {
        let table_or_path = match label {
            "sqlite key ranges" => "main.students",
            "postgres key ranges" => "public.pupils",
            "object byte ranges" => "exports/huge.log",
            _ => "logs/huge.log",
        };
        let n = v
            .iter()
            .filter(|x| {
                (x["location"]["table"] == table_or_path || x["location"]["path"] == table_or_path)
                    && x["location"]["range"]
                        .as_str()
                        .is_some_and(|r| r.starts_with(pred))
            })
            .map(|x| x["location"]["range"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>()
            .len();
        assert!(n >= 3, "{label}: {n} ranges");
    }
    assert!(v
        .iter()
        .any(|x| x["location"]["path"] == "exports/roster.csv"));
    assert!(v
        .iter()
        .any(|x| x["location"]["table"] == "public.contacts_7"));
    // Key ranges count their own rows: together they count the whole table.
    let sfzh_rows: u64 = v
        .iter()
        .filter(|x| x["location"]["table"] == "main.students" && x["location"]["column"] == "sfzh")
        .map(|x| x["rows_scanned"].as_u64().unwrap())
        .sum();
    assert_eq!(sfzh_rows, 700);

    // N shard processes at once, K from JOB_COMPLETION_INDEX as in a Kubernetes Indexed Job.
    let children: Vec<Child> = (0..SHARDS)
        .map(|k| {
            scan_cmd(
                &e,
                "pg.toml",
                &["--shard-from-env", "--run-group", "nightly-test"],
            )
            .env("JOB_COMPLETION_INDEX", k.to_string())
            .env("CHILDGUARD_SHARDS", SHARDS.to_string())
            .spawn()
            .unwrap()
        })
        .collect();
    let outs = wait_all(children);
    let mut union = Vec::new();
    for o in &outs {
        ok(o);
        let part = canon(&o.stdout);
        assert!(!part.is_empty(), "every shard has work in this estate");
        union.extend(part);
    }
    union.sort();
    assert_eq!(union.len(), all.len(), "a finding was missed or doubled");
    assert_eq!(union, all);

    // The store: three runs in one group, every unit once, each naming its shard.
    let rt = dbfix::rt();
    rt.block_on(async {
        use childguard::store::Store;
        let store = childguard::store::PgStore::connect(&e.store_url)
            .await
            .unwrap();
        let runs = store.group_runs("nightly-test").await.unwrap();
        assert_eq!(runs.len(), SHARDS as usize);
        let shards: BTreeSet<String> = runs.iter().filter_map(|r| r.shard.clone()).collect();
        assert_eq!(
            shards,
            (0..SHARDS).map(|k| format!("{k}/{SHARDS}")).collect()
        );
        let mut units = BTreeMap::new();
        for r in &runs {
            assert_eq!(r.status, childguard::store::RunStatus::Completed);
            for u in store.units(r.id).await.unwrap() {
                let shard: Shard = u.shard.as_deref().unwrap().parse().unwrap();
                assert_eq!(Some(shard.to_string()), r.shard);
                assert!(
                    shard.contains(&u.unit_id),
                    "{} is not shard {shard}'s",
                    u.unit_id
                );
                // Unit ids are unique across this estate's targets.
                assert!(
                    units.insert(u.unit_id.clone(), shard).is_none(),
                    "{} twice",
                    u.unit_id
                );
            }
        }
        // Every unit the reference listed was scanned by exactly one shard: the
        // reference's findings all come from units in the union.
        for x in &v {
            let loc = &x["location"];
            let base = loc["table"].as_str().or(loc["path"].as_str()).unwrap();
            let id = match loc["range"].as_str() {
                Some(r) => format!("{base}#{r}"),
                None => base.to_string(),
            };
            assert!(units.contains_key(&id), "{id} not scanned");
        }
        // Nothing was resolved as missing by a shard that did not scan it.
        let open = store
            .findings(&childguard::store::FindingFilter {
                resolved: Some(false),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(open.total as usize, all.len());
    });

    // A second sharded run: nothing resolves that still exists.
    let again: Vec<Child> = (0..SHARDS)
        .map(|k| {
            scan_cmd(&e, "pg.toml", &["--shard", &format!("{k}/{SHARDS}")])
                .spawn()
                .unwrap()
        })
        .collect::<Vec<_>>();
    let again = wait_all(again);
    again.iter().for_each(ok);
    rt.block_on(async {
        use childguard::store::Store;
        let store = childguard::store::PgStore::connect(&e.store_url)
            .await
            .unwrap();
        let resolved = store
            .findings(&childguard::store::FindingFilter {
                resolved: Some(true),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(resolved.total, 0);
        // A derived run group: the same in every shard of the invocation.
        let latest = store.runs(SHARDS).await.unwrap();
        let groups: BTreeSet<Option<String>> = latest.iter().map(|r| r.run_group.clone()).collect();
        assert_eq!(groups.len(), 1, "{groups:?}");
        let g = groups.into_iter().next().unwrap().unwrap();
        assert!(g.starts_with(&format!("scan-{AS_OF}-{SHARDS}x-")), "{g}");
    });
}

/// A sharded scan is classified as one scan once its last shard finishes:
/// the group's newest run holds the violations the unsharded scan would
/// have (including "declared but not found", which no single shard can
/// know), and `report` picks it as the latest scan.
#[test]
fn a_complete_run_group_is_classified_as_one_scan() {
    let e = estate();
    let datasets = "\n[[datasets]]\nname = \"roster\"\nsource = \"sqlite://school.db\"\nmatch = [\"main.students\"]\n\
        owner = \"Registrar\"\npurpose = \"Enrolment\"\nchild_data = true\ncategories = { \"*\" = [\"cn_resident_id\", \"person_name\", \"cn_mobile\"] }\n\
        \n[[datasets]]\nname = \"alumni\"\nsource = \"sqlite://school.db\"\nmatch = [\"main.graduates\"]\n\
        owner = \"Registrar\"\npurpose = \"Alumni contact\"\ncategories = { \"*\" = [\"cn_mobile\"] }\n";
    let cfg = std::fs::read_to_string(e.path().join("pg.toml")).unwrap();
    std::fs::write(e.path().join("inv.toml"), format!("{cfg}{datasets}")).unwrap();
    let viol_key = |v: &childguard::store::Violation| {
        format!(
            "{}|{:?}|{:?}|{:?}|{:?}",
            v.kind,
            v.dataset,
            v.category,
            v.target,
            v.unit_id
                .as_deref()
                .map(|u| u.split('#').next().unwrap().to_string())
        )
    };
    let rt = dbfix::rt();
    let store = rt
        .block_on(childguard::store::PgStore::connect(&e.store_url))
        .unwrap();
    use childguard::store::Store;
    for k in 0..SHARDS {
        let o = scan_cmd(
            &e,
            "inv.toml",
            &[
                "--shard",
                &format!("{k}/{SHARDS}"),
                "--run-group",
                "g-classify",
            ],
        )
        .output()
        .unwrap();
        ok(&o);
        let runs = rt.block_on(store.group_runs("g-classify")).unwrap();
        let newest = runs.last().unwrap();
        let v = rt
            .block_on(store.violations(&childguard::store::ViolationFilter {
                run: Some(newest.id),
                ..Default::default()
            }))
            .unwrap();
        let not_found = v
            .iter()
            .any(|v| v.kind == childguard::store::ViolationKind::DeclaredNotFound);
        if k + 1 < SHARDS {
            assert!(
                !newest.summary.group_complete,
                "shard {k}: group complete too early"
            );
            assert!(
                !not_found,
                "shard {k} reported a dataset missing from targets it saw only part of"
            );
        }
    }
    let runs = rt.block_on(store.group_runs("g-classify")).unwrap();
    let newest = runs.last().unwrap().clone();
    assert!(newest.summary.group_complete);
    let violations_of = |run: i64| -> BTreeSet<String> {
        rt.block_on(store.violations(&childguard::store::ViolationFilter {
            run: Some(run),
            ..Default::default()
        }))
        .unwrap()
        .iter()
        .map(viol_key)
        .collect()
    };
    let group_v = violations_of(newest.id);
    assert!(
        group_v
            .iter()
            .any(|k| k.starts_with("declared_not_found|Some(\"alumni\")")),
        "{group_v:#?}"
    );
    assert!(
        !group_v
            .iter()
            .any(|k| k.starts_with("declared_not_found|Some(\"roster\")")),
        "{group_v:#?}"
    );
    // The group's counts are the union's: every finding of every shard.
    let total: u64 = runs
        .iter()
        .map(|r| {
            rt.block_on(store.findings(&childguard::store::FindingFilter {
                run: Some(r.id),
                limit: 1,
                ..Default::default()
            }))
            .unwrap()
            .total
        })
        .sum();
    assert_eq!(newest.summary.findings, total);

    // `report` (latest) covers the whole group.
    let rep = Command::new(common::bin())
        .current_dir(e.path())
        .env("CHILDGUARD_STATE_DIR", e.path().join(".state"))
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .args(["report", "--config", "inv.toml", "--format", "json"])
        .output()
        .unwrap();
    ok(&rep);
    let rep: serde_json::Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(rep["run"]["id"], newest.id);
    let unit_count: u64 = rep["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["units"].as_u64().unwrap())
        .sum();
    let want_units: usize = runs
        .iter()
        .map(|r| rt.block_on(store.units(r.id)).unwrap().len())
        .sum();
    assert_eq!(unit_count as usize, want_units);

    // The same estate scanned unsharded into the same store: the same violations.
    let o = scan_cmd(&e, "inv.toml", &[]).output().unwrap();
    ok(&o);
    let latest = rt.block_on(store.latest_run()).unwrap().unwrap();
    assert!(latest.shard.is_none());
    let plain_v = violations_of(latest.id);
    assert_eq!(group_v, plain_v);
}

#[test]
fn bad_shard_values_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.log"), "x\n").unwrap();
    for (args, env, msg) in [
        (vec!["--shard", "3/3"], None, "0 <= K < 3"),
        (vec!["--shard", "0/0"], None, "at least 1"),
        (vec!["--shard", "two"], None, "expected K/N"),
        (
            vec!["--shard-from-env"],
            None,
            "JOB_COMPLETION_INDEX is not set",
        ),
        (
            vec!["--shard-from-env"],
            Some("1"),
            "--shards N or CHILDGUARD_SHARDS",
        ),
        (
            vec!["--shard-from-env", "--shards", "1"],
            Some("1"),
            "0 <= K < 1",
        ),
        (
            vec!["--shard-from-env", "--shards", "0"],
            Some("0"),
            "at least 1",
        ),
        (
            vec!["--shard-from-env", "--shards", "2"],
            Some("x"),
            "not a non-negative integer",
        ),
    ] {
        let mut c = Command::new(common::bin());
        c.current_dir(dir.path())
            .env("CHILDGUARD_STATE_DIR", dir.path().join(".state"))
            .env("CHILDGUARD_FINGERPRINT_KEY", "k")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("CHILDGUARD_SHARDS")
            .args(["scan", "a.log"])
            .args(&args);
        if let Some(k) = env {
            c.env("JOB_COMPLETION_INDEX", k);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}

/// Poll `f` until it returns Some, for up to `secs`.
fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for every child, draining all their pipes at once: a worker that
/// waits for the others must not block on a full stdout pipe nobody reads.
fn wait_all(children: Vec<Child>) -> Vec<Output> {
    children
        .into_iter()
        .map(|c| std::thread::spawn(move || c.wait_with_output().unwrap()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn a_worker_killed_mid_unit_is_redone_and_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    // `0-slow.log` sorts first (claimed first) and takes seconds to scan on one thread.
    // Mostly lines without PI: slow to scan, few findings to write.
    let slow: String = (0..300_000u64)
        .map(|i| {
            if i % 100 == 0 {
                log_line(i)
            } else {
                log_line(i * 5 + 2)
            }
        })
        .collect();
    std::fs::write(root.join("logs/0-slow.log"), &slow).unwrap();
    for f in 0..12u64 {
        let text: String = (0..30).map(|i| log_line(f * 1000 + i)).collect();
        std::fs::write(root.join(format!("logs/app-{f:02}.log")), text).unwrap();
    }
    let rt = dbfix::rt();
    let store_url = rt.block_on(common::fresh_pg_db("cg_shard_queue"));
    std::fs::write(
        root.join("q.toml"),
        format!("state_url = \"{store_url}\"\n"),
    )
    .unwrap();
    let worker = || {
        let mut c = Command::new(common::bin());
        c.current_dir(root)
            .env("CHILDGUARD_STATE_DIR", root.join(".state"))
            .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
            .env_remove("RUST_LOG")
            .args([
                "scan", "logs", "--config", "q.toml", "--format", "jsonl", "--as-of", AS_OF,
            ])
            .args([
                "--work-queue",
                "nightly-q",
                "--lease-secs",
                "2",
                "--threads",
                "1",
                "-q",
            ])
            .args(["--range-bytes", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let reference = common::run(
        root,
        &[
            "scan",
            "logs",
            "--format",
            "jsonl",
            "--as-of",
            AS_OF,
            "--range-bytes",
            "0",
        ],
    );
    ok(&reference);
    let expected: BTreeSet<String> = common::jsonl(&reference.stdout)
        .iter()
        .map(|x| x["finding_id"].as_str().unwrap().to_string())
        .collect();

    let pool = rt.block_on(sqlx::PgPool::connect(&store_url)).unwrap();
    let row = |unit: &str| -> Option<(String, Option<String>, i64)> {
        rt.block_on(
            sqlx::query_as("SELECT state, claimed_by, attempts FROM work_items WHERE queue = 'nightly-q' AND unit_id = $1")
                .bind(unit)
                .fetch_optional(&pool),
        )
        .ok()
        .flatten()
    };
    let slow_unit = "logs\t0-slow.log";
    let mut victim = worker().spawn().unwrap();
    let pid = victim.id();
    // Kill it while it is scanning the slow unit.
    wait_for(60, || {
        row(slow_unit).filter(|(state, by, _)| {
            state == "claimed"
                && by
                    .as_deref()
                    .is_some_and(|b| b.contains(&format!("/{pid}/")))
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the worker finished before it was killed"
    );
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    victim.wait().unwrap();
    let (state, _, attempts) = row(slow_unit).unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("claimed", 1),
        "killed mid-unit: not done"
    );

    // Two fresh workers: they share the rest and take the dead worker's unit once its lease expires.
    let rescuers: Vec<Child> = (0..2).map(|_| worker().spawn().unwrap()).collect();
    let outs = wait_all(rescuers);
    outs.iter().for_each(ok);
    let (state, by, attempts) = row(slow_unit).unwrap();
    assert_eq!((state.as_str(), attempts), ("done", 2));
    assert!(!by.unwrap().contains(&format!("/{pid}/")));
    let (done, total): (i64, i64) = rt
        .block_on(
            sqlx::query_as("SELECT count(*) FILTER (WHERE state = 'done'), count(*) FROM work_items WHERE queue = 'nightly-q'")
                .fetch_one(&pool),
        )
        .unwrap();
    assert_eq!((done, total), (13, 13));
    // Recorded once: one work_units row per unit over all runs, and the store
    // holds exactly the reference scan's findings.
    let per_unit: Vec<(String, i64)> = rt
        .block_on(
            sqlx::query_as("SELECT unit_id, count(*) FROM work_units GROUP BY unit_id ORDER BY 1")
                .fetch_all(&pool),
        )
        .unwrap();
    assert_eq!(per_unit.len(), 13);
    // Each unit's record names the worker that completed it.
    let by_worker: i64 = rt
        .block_on(
            sqlx::query_scalar(
                "SELECT count(*) FROM work_units w JOIN work_items i \
                 ON i.unit_id = 'logs' || chr(9) || w.unit_id AND i.done_by = w.shard",
            )
            .fetch_one(&pool),
        )
        .unwrap();
    assert_eq!(by_worker, 13);
    assert!(per_unit.iter().all(|(_, n)| *n == 1), "{per_unit:?}");
    let stored: BTreeSet<String> = rt
        .block_on(sqlx::query_scalar("SELECT finding_id FROM findings").fetch_all(&pool))
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(stored, expected);
    // The rescuers' outputs together hold every finding exactly once.
    let mut printed: Vec<String> = outs
        .iter()
        .flat_map(|o| common::jsonl(&o.stdout))
        .map(|x| x["finding_id"].as_str().unwrap().to_string())
        .collect();
    printed.sort();
    let n = printed.len();
    printed.dedup();
    assert_eq!(n, printed.len());
    assert_eq!(printed.into_iter().collect::<BTreeSet<_>>(), expected);
}
