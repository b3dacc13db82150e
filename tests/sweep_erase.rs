//! Art. 20 erasure of one subject across a PostgreSQL table, a Parquet
//! object on S3 and a log file (the raw key is never stored or printed), and
//! the Art. 23 purge (approval + typed confirmation).

mod common;
#[path = "sweep_support.rs"]
mod support;

use sqlx::Connection;
use support::*;

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn erase_one_subject_across_postgres_s3_parquet_and_a_log() {
    let url = common::fresh_pg_db("cg_erase").await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE students (id SERIAL PRIMARY KEY, user_id TEXT NOT NULL, name TEXT);
         INSERT INTO students (user_id, name) VALUES ('U1001', '张小明'), ('U10010', '李小红'), ('U1001', '张小明'), ('U2002', '王小刚');",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let s3 = common::S3Server::start();
    create_bucket(&s3.endpoint, "erase");
    let store = s3_store(&s3.endpoint, "erase");
    let rows = vec![
        (
            1,
            "U1001".to_string(),
            "13812345678".to_string(),
            "2025-01-01".to_string(),
        ),
        (
            2,
            "U10010".to_string(),
            "13900000000".to_string(),
            "2025-01-01".to_string(),
        ),
        (
            3,
            "U2002".to_string(),
            "13700000000".to_string(),
            "2025-01-01".to_string(),
        ),
    ];
    s3_put(&*store, "exports/kids.parquet", parquet_bytes(&rows)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("logs")).unwrap();
    std::fs::write(d.join("logs/app.log"), "2025-01-01 10:00:00 INFO login user=U1001\n2025-01-01 10:00:01 INFO login user=U10010\n2025-01-01 10:00:02 INFO user U1001 changed avatar\n2025-01-01 10:00:03 INFO health ok\n").unwrap();
    write_config(
        d,
        &format!(
            r#"
[[datasets]]
name = "students"
source = "{url}"
match = ["students"]
subject_key = "user_id"
child_data = true
categories = {{ name = ["person_name"] }}

[[datasets]]
name = "exports"
source = "s3://erase/exports"
subject_key = "user_id"
child_data = true

[[datasets]]
name = "logs"
source = "{logs}"
match = ["*.log"]
subject_key = "user"
child_data = true

[[datasets]]
name = "analytics"
source = "{logs}"
child_data = true
"#,
            logs = d.join("logs").display()
        ),
    );
    let env: Vec<(&str, String)> = s3.env().into_iter().collect();
    let p = cg(d, &["erase", "--subject", "U1001", "--as", "alice"], &env);
    ok(&p);
    assert!(!out(&p).contains("U1001"), "raw key printed: {}", out(&p));
    assert!(
        out(&p).contains("analytics") && out(&p).contains("no subject_key"),
        "{}",
        out(&p)
    );
    let p = cg(
        d,
        &["erase", "--subject", "U1001", "--as", "alice", "--json"],
        &env,
    );
    ok(&p);
    let plan = json(&p);
    assert_eq!(plan["total"], 2 + 1 + 2, "{plan}");
    let fp = childguard::fingerprint::Fingerprinter::new(b"test-key");
    assert_eq!(plan["subject_fp"], fp.fingerprint("U1001"));
    let id = plan["id"].as_str().unwrap().to_string();
    // Nothing changed yet; approval needed.
    let r = cg(d, &["erase", "--subject", "U1001", "--run", &id], &env);
    assert!(
        !r.status.success() && err(&r).contains("not approved"),
        "{}",
        err(&r)
    );
    ok(&cg(
        d,
        &[
            "sweep",
            "approve",
            &id,
            "--by",
            "bob",
            "--comment",
            "guardian request #7",
        ],
        &env,
    ));
    let r = cg(d, &["erase", "--subject", "U2002", "--run", &id], &env);
    assert!(
        !r.status.success() && err(&r).contains("does not match"),
        "{}",
        err(&r)
    );
    assert!(!err(&r).contains("U2002"));
    let r = cg(
        d,
        &["erase", "--subject", "U1001", "--run", &id, "--json"],
        &env,
    );
    ok(&r);
    assert_eq!(json(&r)["disposed"], 5);

    let left: Vec<String> = sqlx::query_scalar("SELECT user_id FROM students ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(left, vec!["U10010", "U2002"]);
    let got = parquet_rows(&s3_get(&*store, "exports/kids.parquet").await.unwrap());
    assert_eq!(
        got.iter().map(|r| r.1.clone().unwrap()).collect::<Vec<_>>(),
        vec!["U10010", "U2002"]
    );
    assert_eq!(
        std::fs::read_to_string(d.join("logs/app.log")).unwrap(),
        "2025-01-01 10:00:01 INFO login user=U10010\n2025-01-01 10:00:03 INFO health ok\n"
    );

    let rc = receipt(d, &id);
    assert_eq!(rc["kind"], "erasure");
    assert_eq!(rc["subject_fingerprint"], fp.fingerprint("U1001"));
    assert_eq!(rc["approvals"][0]["comment"], "guardian request #7");
    let html = std::fs::read(d.join(".state/receipts").join(format!("{id}.html"))).unwrap();
    assert!(contains(&html, "Art. 20"));
    // The raw key is nowhere in what childguard stored.
    for entry in std::fs::read_dir(d.join(".state"))
        .unwrap()
        .chain(std::fs::read_dir(d.join(".state/receipts")).unwrap())
    {
        let p = entry.unwrap().path();
        if p.is_file() {
            assert!(
                !contains(&std::fs::read(&p).unwrap(), "U1001"),
                "raw subject key stored in {}",
                p.display()
            );
        }
    }
}

#[tokio::test]
async fn purge_all_child_data_needs_confirmation_and_approval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("app.db");
    std::fs::File::create(&db).unwrap();
    let url = format!("sqlite://{}", db.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE kids (id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE guardians (id INTEGER PRIMARY KEY, phone TEXT); CREATE TABLE products (id INTEGER PRIMARY KEY, title TEXT);
         INSERT INTO kids (name) VALUES ('a'), ('b'), ('c'); INSERT INTO guardians (phone) VALUES ('1'), ('2'); INSERT INTO products (title) VALUES ('x'), ('y');",
    )
    .execute(&mut c)
    .await
    .unwrap();
    std::fs::create_dir_all(d.join("exports/2024")).unwrap();
    std::fs::write(d.join("exports/2024/kids.csv"), "id,name\n1,a\n").unwrap();
    std::fs::write(d.join("exports/kids.log.gz"), b"\x1f\x8b").unwrap();
    write_config(
        d,
        &format!(
            "[[datasets]]\nname = \"kids\"\nsource = \"{url}\"\nmatch = [\"kids\", \"guardians\"]\nchild_data = true\n\n\
             [[datasets]]\nname = \"exports\"\nsource = \"{}\"\nchild_data = true\n\n\
             [[datasets]]\nname = \"catalog\"\nsource = \"{url}\"\nmatch = [\"products\"]\n",
            d.join("exports").display()
        ),
    );
    let r = cg(d, &["purge", "--all-child-data"], &[]);
    assert!(
        !r.status.success() && err(&r).contains("DELETE ALL CHILD DATA"),
        "{}",
        err(&r)
    );
    let r = cg(d, &["purge", "--all-child-data", "--confirm", "yes"], &[]);
    assert!(
        !r.status.success() && err(&r).contains("does not match"),
        "{}",
        err(&r)
    );
    let p = cg(
        d,
        &[
            "purge",
            "--all-child-data",
            "--confirm",
            "DELETE ALL CHILD DATA",
            "--as",
            "alice",
            "--json",
        ],
        &[],
    );
    ok(&p);
    let plan = json(&p);
    assert_eq!(plan["kind"], "purge");
    assert_eq!(plan["total"], 3 + 2 + 2);
    let id = plan["id"].as_str().unwrap().to_string();
    let r = cg(
        d,
        &[
            "purge",
            "--all-child-data",
            "--confirm",
            "DELETE ALL CHILD DATA",
            "--run",
            &id,
        ],
        &[],
    );
    assert!(
        !r.status.success() && err(&r).contains("not approved"),
        "{}",
        err(&r)
    );
    ok(&cg(d, &["sweep", "approve", &id, "--by", "bob"], &[]));
    let r = cg(d, &["sweep", "run", &id], &[]);
    assert!(
        !r.status.success() && err(&r).contains("typed confirmation"),
        "{}",
        err(&r)
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM kids")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 3, "nothing removed without the confirmation");
    let r = cg(
        d,
        &[
            "purge",
            "--all-child-data",
            "--confirm",
            "DELETE ALL CHILD DATA",
            "--run",
            &id,
            "--json",
        ],
        &[],
    );
    ok(&r);
    assert_eq!(json(&r)["disposed"], 7);
    for (t, n) in [("kids", 0i64), ("guardians", 0), ("products", 2)] {
        let got: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {t}"))
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(got, n, "{t}");
    }
    assert!(!d.join("exports/2024/kids.csv").exists() && !d.join("exports/kids.log.gz").exists());
    let rc = receipt(d, &id);
    assert_eq!(rc["kind"], "purge");
    assert_eq!(rc["status"], "done");
}
