//! PostgreSQL source against the real server: column classification, counts
//! and child counts, sampling vs full, row keys, incremental skipping,
//! read-only sessions, and the error cases (unreachable host, dropped table,
//! slow table).

mod common;
mod dbfix;

use childguard::config::sources::SourceConfig;
use childguard::finding::Category;
use childguard::source::db::{DbSource, RemoteOptions};
use childguard::source::{ScanOptions, Source};
use dbfix::*;
use sqlx::{Connection, Executor, PgConnection};

/// students: 300 rows; i%3==0 child ID, i%3==1 adult ID, i%3==2 none; even rows have a
/// guardian phone; every row a bad-checksum 18-digit order number (bigint and text).
/// big: 20,000 rows, the child IDs only in the last quarter (a first-rows sample misses them).
/// hr.staff: adults only.
async fn load(url: &str) {
    let mut c = PgConnection::connect(url).await.unwrap();
    c.execute(
        "CREATE TABLE public.students (id serial PRIMARY KEY, name text, sfzh varchar(18), guardian_phone char(11), \
            order_no bigint, order_ref text, amount numeric(10,2), created_at timestamptz DEFAULT now(), \
            updated_at timestamptz NOT NULL DEFAULT '2024-01-01');
         CREATE TABLE public.big (id bigint PRIMARY KEY, sfzh text);
         CREATE SCHEMA hr;
         CREATE TABLE hr.staff (id int PRIMARY KEY, idno varchar(18), payroll bytea);
         CREATE TABLE public.counters (id int PRIMARY KEY, n integer, at timestamptz);",
    )
    .await
    .unwrap();
    let mut v = Vec::new();
    for i in 0..300u64 {
        let id = match i % 3 {
            0 => format!("'{}'", child_id(i)),
            1 => format!("'{}'", adult_id(i)),
            _ => "NULL".into(),
        };
        let phone = if i % 2 == 0 {
            format!("'{}'", mobile(i))
        } else {
            "NULL".into()
        };
        let bad = bad_id(i);
        v.push(format!(
            "('学生{i}', {id}, {phone}, {bad}, 'ORD-{bad}', 12.5)"
        ));
    }
    c.execute(
        format!("INSERT INTO public.students (name, sfzh, guardian_phone, order_no, order_ref, amount) VALUES {}", v.join(","))
            .as_str(),
    )
    .await
    .unwrap();
    for chunk in (1..=20_000u64).collect::<Vec<_>>().chunks(2000) {
        let vals: Vec<String> = chunk
            .iter()
            .map(|&i| {
                format!(
                    "({i}, '{}')",
                    if i > 15_000 { child_id(i) } else { adult_id(i) }
                )
            })
            .collect();
        c.execute(format!("INSERT INTO public.big VALUES {}", vals.join(",")).as_str())
            .await
            .unwrap();
    }
    c.execute(
        format!(
            "INSERT INTO hr.staff VALUES (1, '{}', '\\x00'), (2, '{}', NULL)",
            adult_id(1),
            adult_id(2)
        )
        .as_str(),
    )
    .await
    .unwrap();
    c.execute("INSERT INTO public.counters VALUES (1, 5, now())")
        .await
        .unwrap();
    c.execute("ANALYZE").await.unwrap();
}

async fn checksum(url: &str) -> String {
    let mut c = PgConnection::connect(url).await.unwrap();
    let mut all = String::new();
    for t in [
        "public.students",
        "public.big",
        "hr.staff",
        "public.counters",
    ] {
        let (h,): (Option<String>,) = sqlx::query_as(&format!(
            "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {t} t"
        ))
        .fetch_one(&mut c)
        .await
        .unwrap();
        all.push_str(&h.unwrap_or_default());
    }
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('public','hr'))")
        .fetch_one(&mut c)
        .await
        .unwrap();
    format!("{all}/{n}")
}

fn open(url: &str) -> DbSource {
    DbSource::open(&SourceConfig::from_url(url), &RemoteOptions::default()).unwrap()
}

#[test]
fn classifies_counts_children_and_stays_read_only() {
    let rt = rt();
    let url = rt.block_on(common::fresh_pg_db("cg_pg"));
    rt.block_on(load(&url));
    let before = rt.block_on(checksum(&url));
    let src = open(&url);

    let units: Vec<String> = src.units().unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(
        units,
        [
            "hr.staff",
            "public.big",
            "public.counters",
            "public.students"
        ]
    );

    // Column classification from the catalog.
    let info = src.table_info("public.students").unwrap();
    let examined: Vec<&str> = info.examined().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        examined,
        ["name", "sfzh", "guardian_phone", "order_no", "order_ref"]
    );
    assert!(src
        .table_info("public.counters")
        .unwrap()
        .examined()
        .is_empty());

    let out = scan_all(&src, &full());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let id = out
        .find("public.students", "sfzh", Category::CnResidentId)
        .expect("sfzh finding");
    assert_eq!(
        (id.rows_scanned, id.count, id.child_count, id.child),
        (Some(300), Some(200), Some(100), Some(true))
    );
    assert!(id.masked.contains('*') && !id.masked.contains(&child_id(0)[6..14]));
    assert_eq!(id.target, url);
    let ph = out
        .find("public.students", "guardian_phone", Category::CnMobile)
        .expect("phone finding");
    assert_eq!((ph.count, ph.child_count), (Some(150), Some(50)));
    // A guardian's column: the same phones are the guardians' too.
    let g = out
        .find("public.students", "guardian_phone", Category::Guardian)
        .expect("guardian finding");
    assert_eq!(
        (g.count, g.child_count, &g.masked),
        (Some(150), Some(50), &ph.masked)
    );
    // Decoys: bad-checksum order numbers, in a bigint and in a text column, are not IDs.
    assert!(out
        .find("public.students", "order_no", Category::CnResidentId)
        .is_none());
    assert!(out
        .find("public.students", "order_ref", Category::CnResidentId)
        .is_none());
    assert_eq!(out.in_table("public.students").len(), 3);
    let staff = out
        .find("hr.staff", "idno", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (staff.count, staff.child_count, staff.child),
        (Some(2), Some(0), Some(false))
    );
    assert_eq!(
        out.stat("public.counters").skipped.as_deref(),
        Some("no columns that can hold personal information")
    );
    let big = out
        .find("public.big", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (big.rows_scanned, big.count, big.child_count),
        (Some(20_000), Some(20_000), Some(5_000))
    );

    // Read-only session: writes fail, and the scan changed nothing.
    let w = src
        .execute_in_scan_session("INSERT INTO public.counters VALUES (2, 1, now())")
        .unwrap_err();
    assert!(w.to_string().contains("read-only"), "{w}");
    assert!(src
        .execute_in_scan_session("CREATE TABLE public.x (i int)")
        .is_err());
    assert_eq!(rt.block_on(checksum(&url)), before);
}

#[test]
fn sampling_spreads_across_the_table_and_rows_mode_lists_keys() {
    let rt = rt();
    let url = rt.block_on(common::fresh_pg_db("cg_pgs"));
    rt.block_on(load(&url));
    let src = open(&url);
    let out = scan_all(&src, &sample(1000));
    let big = out
        .find("public.big", "sfzh", Category::CnResidentId)
        .unwrap();
    let rows = big.rows_scanned.unwrap();
    assert!((500..=2000).contains(&rows), "sampled {rows} rows");
    assert_eq!(big.count, Some(rows));
    // Child IDs live only in the last quarter: a spread sample sees them, roughly a quarter.
    let child = big.child_count.unwrap();
    assert!(
        child > rows / 10 && child < rows / 2,
        "child {child} of {rows}"
    );
    // A small table is read whole.
    let id = out
        .find("public.students", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!((id.rows_scanned, id.count), (Some(300), Some(200)));

    // Never analysed (no statistics): still a spread sample.
    let rt2 = rt;
    let url2 = rt2.block_on(common::fresh_pg_db("cg_pgn"));
    rt2.block_on(async {
        let mut c = PgConnection::connect(&url2).await.unwrap();
        c.execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, sfzh text) WITH (autovacuum_enabled = off)",
        )
        .await
        .unwrap();
        for chunk in (1..=20_000u64).collect::<Vec<_>>().chunks(2000) {
            let vals: Vec<String> = chunk
                .iter()
                .map(|&i| {
                    format!(
                        "({i}, '{}')",
                        if i > 15_000 { child_id(i) } else { adult_id(i) }
                    )
                })
                .collect();
            c.execute(format!("INSERT INTO t VALUES {}", vals.join(",")).as_str())
                .await
                .unwrap();
        }
    });
    let out = scan_all(&open(&url2), &sample(1000));
    let t = out
        .find("public.t", "sfzh", Category::CnResidentId)
        .unwrap();
    assert!(
        t.rows_scanned.unwrap() >= 250 && t.rows_scanned.unwrap() <= 2000,
        "{:?}",
        t.rows_scanned
    );
    assert!(
        t.child_count.unwrap() > 0,
        "sample must reach the last quarter"
    );

    // --rows: the primary keys of the child rows.
    let opts = ScanOptions {
        full: true,
        sample_rows: 0,
        rows: true,
    };
    let out = scan_all(&src, &opts);
    let id = out
        .find("public.students", "sfzh", Category::CnResidentId)
        .unwrap();
    let mut keys = int_row_keys(id);
    keys.sort();
    // serial ids start at 1 for i = 0.
    let want: Vec<u64> = (0..300u64).filter(|i| i % 3 == 0).map(|i| i + 1).collect();
    assert_eq!(keys, want);

    // A table of many COPY batches, scanned by several threads and merged: the
    // counts, the first hit's identity and the child keys in read order are
    // those of one scanner.
    let out = scan_all(&open(&url2), &opts);
    let t = out
        .find("public.t", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (t.rows_scanned, t.count, t.child_count),
        (Some(20_000), Some(20_000), Some(5_000))
    );
    assert_eq!(int_row_keys(t), (15_001..=20_000u64).collect::<Vec<_>>());
    let first = adult_id(1);
    assert_eq!(t.masked, format!("{}********{}", &first[..6], &first[14..]));
}

#[test]
fn include_exclude_globs() {
    let rt = rt();
    let url = rt.block_on(common::fresh_pg_db("cg_pgg"));
    rt.block_on(load(&url));
    let mut cfg = SourceConfig::from_url(&url);
    cfg.include = vec!["public.*".into()];
    cfg.exclude = vec!["public.b*".into()];
    let src = DbSource::open(&cfg, &RemoteOptions::default()).unwrap();
    let units: Vec<String> = src.units().unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(units, ["public.counters", "public.students"]);
}

#[test]
fn incremental_skips_unchanged_and_reads_past_the_watermark() {
    let rt = rt();
    let url = rt.block_on(common::fresh_pg_db("cg_pgi"));
    rt.block_on(load(&url));
    let state = tempfile::tempdir().unwrap();
    let mut cfg = SourceConfig::from_url(&url);
    cfg.watermarks
        .insert("public.students".into(), "updated_at".into());
    let ro = RemoteOptions {
        incremental: true,
        state_dir: Some(state.path().to_path_buf()),
        ..Default::default()
    };

    let first = scan_all(&DbSource::open(&cfg, &ro).unwrap(), &full());
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.stat("public.students").skipped, None);
    assert_eq!(
        first
            .find("public.students", "sfzh", Category::CnResidentId)
            .unwrap()
            .count,
        Some(200)
    );
    assert!(
        std::fs::read_dir(state.path().join("incremental"))
            .unwrap()
            .count()
            == 1
    );

    let second = scan_all(&DbSource::open(&cfg, &ro).unwrap(), &full());
    for u in ["public.students", "public.big", "hr.staff"] {
        assert_eq!(second.stat(u).skipped.as_deref(), Some("unchanged"), "{u}");
    }
    assert!(second.findings.is_empty());

    rt.block_on(async {
        let mut c = PgConnection::connect(&url).await.unwrap();
        let vals: Vec<String> = (1000..1003u64)
            .map(|i| format!("('new', '{}', '2025-01-01')", child_id(i)))
            .collect();
        c.execute(
            format!(
                "INSERT INTO public.students (name, sfzh, updated_at) VALUES {}",
                vals.join(",")
            )
            .as_str(),
        )
        .await
        .unwrap();
        c.execute(format!("INSERT INTO hr.staff VALUES (3, '{}', NULL)", child_id(7)).as_str())
            .await
            .unwrap();
    });
    let third = scan_all(&DbSource::open(&cfg, &ro).unwrap(), &full());
    // students: only the 3 rows newer than the watermark.
    let s = third
        .find("public.students", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (s.rows_scanned, s.count, s.child_count),
        (Some(3), Some(3), Some(3))
    );
    // staff changed but has no watermark: read whole again.
    let st = third
        .find("hr.staff", "idno", Category::CnResidentId)
        .unwrap();
    assert_eq!((st.rows_scanned, st.child_count), (Some(3), Some(1)));
    assert_eq!(
        third.stat("public.big").skipped.as_deref(),
        Some("unchanged")
    );
}

#[test]
fn dropped_and_slow_tables_are_reported_and_the_rest_goes_on() {
    let rt = rt();
    let url = rt.block_on(common::fresh_pg_db("cg_pge"));
    rt.block_on(load(&url));
    let mut cfg = SourceConfig::from_url(&url);
    cfg.statement_timeout_secs = 1;
    let src = DbSource::open(&cfg, &RemoteOptions::default()).unwrap();
    let units = src.units().unwrap();
    // Drop one table after listing; hold an exclusive lock on another (a "slow" table).
    let mut locker = rt.block_on(async {
        let mut c = PgConnection::connect(&url).await.unwrap();
        c.execute("DROP TABLE hr.staff").await.unwrap();
        c.execute("BEGIN; LOCK TABLE public.big IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        c
    });
    let e = engine();
    let mut errors = Vec::new();
    let mut found = Vec::new();
    let t0 = std::time::Instant::now();
    for u in &units {
        match src.scan_unit(u, &e, &full(), &mut |f| found.push(f)) {
            Ok(_) => {}
            Err(err) => errors.push(err),
        }
    }
    assert!(
        t0.elapsed().as_secs() < 20,
        "timeout not enforced: {:?}",
        t0.elapsed()
    );
    rt.block_on(async { locker.execute("ROLLBACK").await.unwrap() });
    let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{msgs:?}");
    assert_eq!(errors[0].unit, "hr.staff");
    assert!(msgs[0].contains("does not exist"), "{msgs:?}");
    assert_eq!(errors[1].unit, "public.big");
    assert!(msgs[1].contains("timeout"), "{msgs:?}");
    // The rest went on.
    assert!(found
        .iter()
        .any(|f| f.location.table.as_deref() == Some("public.students")));
}

#[test]
fn unreachable_host_names_target_and_cause_never_the_password() {
    let port = common::free_port();
    std::env::set_var("CG_PG_TEST_PASSWORD", "hunter2-secret");
    let mut cfg = SourceConfig::from_url(&format!("postgres://scanner@127.0.0.1:{port}/school"));
    cfg.password_env = Some("CG_PG_TEST_PASSWORD".into());
    let err = DbSource::open(&cfg, &RemoteOptions::default())
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}/school")), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // A password written into the URL is stripped from the target and messages.
    let err = DbSource::open(
        &SourceConfig::from_url(&format!(
            "postgres://scanner:hunter2-secret@127.0.0.1:{port}/school"
        )),
        &RemoteOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("postgres://scanner@127.0.0.1"), "{err}");
}

#[test]
fn scan_command_reads_postgres_and_skips_unchanged_tables() {
    let rt = rt();
    let url = rt.block_on(common::fresh_pg_db("cg_pgc"));
    rt.block_on(load(&url));
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "scan",
        &url,
        "--full",
        "--format",
        "jsonl",
        "--as-of",
        "2025-06-01",
        "--include",
        "public.*",
    ];
    let out = common::run(dir.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = common::jsonl(&out.stdout);
    let id = f
        .iter()
        .find(|v| v["location"]["table"] == "public.students" && v["location"]["column"] == "sfzh")
        .expect("students.sfzh finding");
    assert_eq!(
        (id["count"].as_u64(), id["child_count"].as_u64()),
        (Some(200), Some(100))
    );
    assert_eq!(id["category"], "cn_resident_id");
    assert!(
        !f.iter().any(|v| v["location"]["table"] == "hr.staff"),
        "--include public.* limits the tables"
    );

    // --incremental through the binary: the second run skips every table.
    let inc = ["scan", &url, "--incremental", "--format", "jsonl"];
    assert_eq!(common::run(dir.path(), &inc).status.code(), Some(0));
    let again = common::run(dir.path(), &inc);
    assert!(common::jsonl(&again.stdout).is_empty());
    assert!(String::from_utf8_lossy(&again.stderr).contains("unchanged"));

    // A target that cannot be read: exit 2, named without its password; the others still scanned.
    let port = common::free_port();
    let bad = format!("postgres://scanner:pw-777-secret@127.0.0.1:{port}/school");
    let out = common::run(
        dir.path(),
        &[
            "scan",
            &bad,
            &url,
            "--format",
            "jsonl",
            "--include",
            "public.students",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}/school")) && !err.contains("pw-777"),
        "{err}"
    );
    assert!(!common::jsonl(&out.stdout).is_empty());
}
