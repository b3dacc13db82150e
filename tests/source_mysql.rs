//! MySQL/MariaDB source against the real MariaDB: classification, counts,
//! primary-key-range sampling, row keys, incremental, read-only sessions,
//! wrong password, unreachable host, dropped table.

mod common;
mod dbfix;

use childguard::config::sources::SourceConfig;
use childguard::finding::Category;
use childguard::source::db::{DbSource, RemoteOptions};
use childguard::source::{ScanOptions, Source};
use dbfix::*;
use sqlx::{Connection, Executor, MySqlConnection};

async fn load(url: &str) {
    let mut c = MySqlConnection::connect(url).await.unwrap();
    c.execute(
        "CREATE TABLE students (id int AUTO_INCREMENT PRIMARY KEY, name varchar(50), sfzh varchar(18), \
            guardian_phone char(11), order_no bigint, order_ref text, profile json, amount decimal(10,2), \
            birth_date date, created_at datetime, updated_at datetime NOT NULL DEFAULT '2024-01-01 00:00:00') \
            DEFAULT CHARSET utf8mb4",
    )
    .await
    .unwrap();
    c.execute("CREATE TABLE big (id bigint PRIMARY KEY, sfzh varchar(18))")
        .await
        .unwrap();
    c.execute("CREATE TABLE nokey (sfzh varchar(18))")
        .await
        .unwrap();
    c.execute("CREATE TABLE counters (id int PRIMARY KEY, n int)")
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
        // The birth date agrees with the ID number (none for rows without one).
        let birth = match i % 3 {
            0 => "'2015-03-01'",
            1 => "'1980-03-01'",
            _ => "NULL",
        };
        v.push(format!(
            "('学生{i}', {id}, {phone}, {bad}, 'ORD-{bad}', '{{\"k\": 1}}', 12.5, {birth}, NOW())"
        ));
    }
    c.execute(
        format!(
            "INSERT INTO students (name, sfzh, guardian_phone, order_no, order_ref, profile, amount, birth_date, created_at) VALUES {}",
            v.join(",")
        )
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
        c.execute(format!("INSERT INTO big VALUES {}", vals.join(",")).as_str())
            .await
            .unwrap();
    }
    c.execute(
        format!(
            "INSERT INTO nokey VALUES ('{}'), ('{}')",
            child_id(1),
            adult_id(2)
        )
        .as_str(),
    )
    .await
    .unwrap();
    c.execute("INSERT INTO counters VALUES (1, 5)")
        .await
        .unwrap();
}

async fn checksum(url: &str) -> String {
    let mut c = MySqlConnection::connect(url).await.unwrap();
    let rows: Vec<(String, Option<i64>)> =
        sqlx::query_as("CHECKSUM TABLE students, big, nokey, counters")
            .fetch_all(&mut c)
            .await
            .unwrap();
    format!("{rows:?}")
}

fn db_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

#[test]
fn classifies_counts_children_samples_and_stays_read_only() {
    let rt = rt();
    let url = rt.block_on(common::fresh_mysql_db("cg_my"));
    rt.block_on(load(&url));
    let before = rt.block_on(checksum(&url));
    // mariadb:// is accepted as well.
    let src = DbSource::open(
        &SourceConfig::from_url(&url.replacen("mysql://", "mariadb://", 1)),
        &RemoteOptions::default(),
    )
    .unwrap();
    let db = db_of(&url);
    let units: Vec<String> = src.units().unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(
        units,
        [
            format!("{db}.big"),
            format!("{db}.counters"),
            format!("{db}.nokey"),
            format!("{db}.students")
        ]
    );
    let info = src.table_info(&format!("{db}.students")).unwrap();
    let examined: Vec<&str> = info.examined().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        examined,
        [
            "name",
            "sfzh",
            "guardian_phone",
            "order_no",
            "order_ref",
            "profile",
            "birth_date"
        ]
    );

    let out = scan_all(&src, &full());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let st = format!("{db}.students");
    let id = out.find(&st, "sfzh", Category::CnResidentId).unwrap();
    assert_eq!(
        (id.rows_scanned, id.count, id.child_count),
        (Some(300), Some(200), Some(100))
    );
    let ph = out.find(&st, "guardian_phone", Category::CnMobile).unwrap();
    assert_eq!((ph.count, ph.child_count), (Some(150), Some(50)));
    let g = out.find(&st, "guardian_phone", Category::Guardian).unwrap();
    assert_eq!((g.count, g.child_count), (Some(150), Some(50)));
    // A date column named like a birth date is examined and classified.
    let bd = out.find(&st, "birth_date", Category::BirthDate).unwrap();
    assert_eq!((bd.count, bd.child_count), (Some(200), Some(100)));
    assert_eq!(out.in_table(&st).len(), 4);
    assert!(out.find(&st, "order_no", Category::CnResidentId).is_none());
    assert!(out.find(&st, "order_ref", Category::CnResidentId).is_none());
    let big = out
        .find(&format!("{db}.big"), "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (big.rows_scanned, big.count, big.child_count),
        (Some(20_000), Some(20_000), Some(5_000))
    );

    // Sampling: primary-key ranges spread over the table reach the child rows at the end.
    let out = scan_all(&src, &sample(1000));
    let big = out
        .find(&format!("{db}.big"), "sfzh", Category::CnResidentId)
        .unwrap();
    let rows = big.rows_scanned.unwrap();
    assert!((900..=1000).contains(&rows), "sampled {rows}");
    let child = big.child_count.unwrap();
    assert!((150..=350).contains(&child), "child {child} of {rows}");

    // Row keys; a table without a primary key still gets counted (no keys to list).
    let out = scan_all(
        &src,
        &ScanOptions {
            full: true,
            sample_rows: 0,
            rows: true,
        },
    );
    let id = out.find(&st, "sfzh", Category::CnResidentId).unwrap();
    let mut keys = int_row_keys(id);
    keys.sort();
    assert_eq!(
        keys,
        (0..300u64)
            .filter(|i| i % 3 == 0)
            .map(|i| i + 1)
            .collect::<Vec<_>>()
    );
    let nk = out
        .find(&format!("{db}.nokey"), "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (nk.count, nk.child_count, nk.rows.as_ref().map(Vec::len)),
        (Some(2), Some(1), Some(0))
    );

    // Read-only sessions.
    let w = src
        .execute_in_scan_session(&format!("INSERT INTO {db}.counters VALUES (2, 1)"))
        .unwrap_err();
    assert!(w.to_string().to_lowercase().contains("read only"), "{w}");
    assert!(src
        .execute_in_scan_session(&format!("UPDATE {db}.counters SET n = 9"))
        .is_err());
    assert_eq!(rt.block_on(checksum(&url)), before);
}

#[test]
fn incremental_and_dropped_table() {
    let rt = rt();
    let url = rt.block_on(common::fresh_mysql_db("cg_myi"));
    rt.block_on(load(&url));
    let db = db_of(&url);
    let st = format!("{db}.students");
    let state = tempfile::tempdir().unwrap();
    let mut cfg = SourceConfig::from_url(&url);
    cfg.watermarks.insert(st.clone(), "updated_at".into());
    let ro = RemoteOptions {
        incremental: true,
        state_dir: Some(state.path().to_path_buf()),
        ..Default::default()
    };
    let first = scan_all(&DbSource::open(&cfg, &ro).unwrap(), &full());
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let second = scan_all(&DbSource::open(&cfg, &ro).unwrap(), &full());
    assert_eq!(second.stat(&st).skipped.as_deref(), Some("unchanged"));
    assert!(second.findings.is_empty());
    rt.block_on(async {
        let mut c = MySqlConnection::connect(&url).await.unwrap();
        c.execute(format!("INSERT INTO students (name, sfzh, updated_at) VALUES ('n', '{}', '2025-02-01 10:00:00')", child_id(9)).as_str())
            .await
            .unwrap();
    });
    let src = DbSource::open(&cfg, &ro).unwrap();
    let units = src.units().unwrap();
    rt.block_on(async {
        let mut c = MySqlConnection::connect(&url).await.unwrap();
        c.execute("DROP TABLE nokey").await.unwrap();
    });
    let e = engine();
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut skipped = Vec::new();
    for u in &units {
        match src.scan_unit(u, &e, &full(), &mut |f| found.push(f)) {
            Ok(s) => skipped.push((u.id.clone(), s.skipped)),
            Err(err) => errors.push(err),
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].unit, format!("{db}.nokey"));
    assert!(errors[0].message.contains("doesn't exist"), "{}", errors[0]);
    let s = found
        .iter()
        .find(|f| f.location.table.as_deref() == Some(st.as_str()))
        .unwrap();
    assert_eq!(
        (s.rows_scanned, s.count, s.child_count),
        (Some(1), Some(1), Some(1))
    );
    assert!(skipped.contains(&(format!("{db}.big"), Some("unchanged".to_string()))));
}

#[test]
fn wrong_password_and_unreachable_host() {
    let rt = rt();
    let user = common::unique_name("cg_u");
    rt.block_on(async {
        let mut c = MySqlConnection::connect(&common::mysql_admin_url())
            .await
            .unwrap();
        c.execute(format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pass'").as_str())
            .await
            .unwrap();
        c.execute(format!("CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-pass'").as_str())
            .await
            .unwrap();
        c.execute(format!("GRANT SELECT ON test.* TO '{user}'@'%'").as_str())
            .await
            .unwrap();
        c.execute(format!("GRANT SELECT ON test.* TO '{user}'@'localhost'").as_str())
            .await
            .unwrap();
    });
    let admin = url::Url::parse(&common::mysql_admin_url()).unwrap();
    let base = format!(
        "mysql://{user}@{}:{}/test",
        admin.host_str().unwrap(),
        admin.port().unwrap_or(3306)
    );
    std::env::set_var("CG_MY_WRONG_PW", "wrong-pass-zz9");
    let mut cfg = SourceConfig::from_url(&base);
    cfg.password_env = Some("CG_MY_WRONG_PW".into());
    let err = DbSource::open(&cfg, &RemoteOptions::default())
        .err()
        .expect("wrong password must fail")
        .to_string();
    assert!(err.contains("Access denied"), "{err}");
    assert!(err.contains(&user), "{err}");
    assert!(!err.contains("wrong-pass-zz9"), "{err}");
    std::env::set_var("CG_MY_RIGHT_PW", "right-pass");
    cfg.password_env = Some("CG_MY_RIGHT_PW".into());
    if let Err(e) = DbSource::open(&cfg, &RemoteOptions::default()) {
        panic!("right password must connect: {e}");
    }

    let port = common::free_port();
    let err = DbSource::open(
        &SourceConfig::from_url(&format!("mysql://root:pw-xyz-123@127.0.0.1:{port}/test")),
        &RemoteOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains(&format!("mysql://root@127.0.0.1:{port}/test")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("pw-xyz-123"), "{err}");
    rt.block_on(async {
        let mut c = MySqlConnection::connect(&common::mysql_admin_url())
            .await
            .unwrap();
        c.execute(format!("DROP USER '{user}'@'%'").as_str())
            .await
            .unwrap();
        c.execute(format!("DROP USER '{user}'@'localhost'").as_str())
            .await
            .unwrap();
    });
}
