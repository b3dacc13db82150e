//! Fault tolerance: a scan survives its database restarting mid-scan (the
//! table being read is read again after a backoff) and fails only the
//! tables it could not read when the server stays down, with a clear error;
//! an object-store scan survives the S3 server being stopped and started.
//! Uses a PRIVATE PostgreSQL instance (initdb + pg_ctl on a free port in a
//! temp dir) and a private moto_server: the shared servers are never touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ID: &str = "110105201503071235";
const TABLES: usize = 6;

fn pg_bin(name: &str) -> PathBuf {
    let dir =
        std::env::var("CHILDGUARD_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    Path::new(&dir).join(name)
}

/// A private PostgreSQL cluster, run as `postgres` when the tests run as root.
struct PrivatePg {
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
}

impl PrivatePg {
    fn cmd(&self, bin: &str) -> Command {
        as_pg_user(bin)
    }

    fn start() -> PrivatePg {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if unsafe { libc::geteuid() } == 0 {
            let st = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let out = as_pg_user("initdb")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PrivatePg {
            _dir: dir,
            data,
            port: common::free_port(),
        };
        pg.up();
        pg
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let out = self
            .cmd("pg_ctl")
            .args(["-D", self.data.to_str().unwrap(), "-o", &opts, "-l"])
            .arg(self.data.join("log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop at once (as a crash would): connections are cut.
    fn down(&self) {
        let out = self
            .cmd("pg_ctl")
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn as_pg_user(bin: &str) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(bin));
        c
    } else {
        Command::new(pg_bin(bin))
    }
}

async fn fill(pg: &PrivatePg, rows: usize) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE school")
        .execute(&mut c)
        .await
        .unwrap();
    let mut c = sqlx::PgConnection::connect(&pg.url("school"))
        .await
        .unwrap();
    for t in 0..TABLES {
        sqlx::query(&format!(
            "CREATE TABLE t{t} AS SELECT g AS id, '{ID}'::text AS sfzh, 'note ' || g AS remark FROM generate_series(1, {rows}) g"
        ))
        .execute(&mut c)
        .await
        .unwrap();
    }
}

/// Wait until the scanner has started reading one of the tables (units may
/// be read in any order). pg_stat_activity keeps a connection's last
/// statement after it finishes, so a table read between two polls is still
/// seen (its `active` state can be brief: the server may send a whole table
/// before the client has processed it).
async fn wait_reading(pg: &PrivatePg, scan: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let pool = sqlx::PgPool::connect(&pg.url("school")).await.unwrap();
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query ~ '\"t[0-9]+\"'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if n > 0 {
            break;
        }
        if let Some(status) = scan.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = scan.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the scan ended ({status}) before it read a table: {err}");
        }
        assert!(Instant::now() < deadline, "the scan never read a table");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.close().await;
}

fn scan_cmd(dir: &Path, pg: &PrivatePg, retries: u32) -> Child {
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "[[sources]]\nname = \"school\"\nurl = \"{}\"\nconcurrency = 1\nmax_retries = {retries}\nconnect_timeout_secs = 2\n",
            pg.url("school")
        ),
    )
    .unwrap();
    Command::new(common::bin())
        .current_dir(dir)
        .args([
            "scan",
            "@school",
            "--config",
            "c.toml",
            "--no-save",
            "--full",
            "--format",
            "jsonl",
            "--as-of",
            "2025-06-01",
        ])
        .env("CHILDGUARD_STATE_DIR", dir.join(".state"))
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn tables_found(o: &Output) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = common::jsonl(&o.stdout)
        .iter()
        .filter(|f| f["category"] == "cn_resident_id")
        .map(|f| {
            (
                f["location"]["table"].as_str().unwrap().to_string(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

const ROWS: usize = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_scan_is_retried() {
    let pg = PrivatePg::start();
    fill(&pg, ROWS).await;
    let d = tempfile::tempdir().unwrap();
    let mut scan = scan_cmd(d.path(), &pg, 5);
    wait_reading(&pg, &mut scan).await;
    pg.down();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.up();
    let o = tokio::task::spawn_blocking(move || scan.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("database connection failed; reading the table again after a backoff"),
        "{err}"
    );
    // A table read when the server went down was read again.
    let retried = (0..TABLES).find(|t| err.contains(&format!("public.t{t}: ")));
    assert!(retried.is_some(), "no table was read again: {err}");
    // Every table, each counted once (no finding duplicated by the retry).
    let want: Vec<(String, u64)> = (0..TABLES)
        .map(|t| (format!("public.t{t}"), ROWS as u64))
        .collect();
    assert_eq!(tables_found(&o), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stays_down_fails_only_the_tables_not_read() {
    let pg = PrivatePg::start();
    fill(&pg, ROWS).await;
    let d = tempfile::tempdir().unwrap();
    let mut scan = scan_cmd(d.path(), &pg, 2);
    wait_reading(&pg, &mut scan).await;
    pg.down();
    let started = Instant::now();
    let o = tokio::task::spawn_blocking(move || scan.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    // Tables read before the failure are reported in full; every other
    // table has one clear error (t2, being read, after its retries).
    let found = tables_found(&o);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("childguard: error: public.t"))
        .collect();
    for t in 0..TABLES {
        let name = format!("public.t{t}");
        let mine: Vec<&&str> = errors
            .iter()
            .filter(|l| l.starts_with(&format!("childguard: error: {name} ")))
            .collect();
        let ok = found.contains(&(name.clone(), ROWS as u64));
        assert!(
            ok != (mine.len() == 1),
            "{name}: found {ok}, errors {mine:?}\n{err}"
        );
        assert!(mine.len() <= 1 && found.iter().filter(|f| f.0 == name).count() <= 1);
        if let Some(e) = mine.first() {
            assert!(e.contains("(connection lost; gave up after"), "{e}");
        }
    }
    // A table being read when the server stopped is tried 1 + max_retries
    // times; the tables after it fail fast.
    assert!(
        errors
            .iter()
            .any(|l| l.contains("gave up after 3 attempt(s)")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// The S3 endpoint childguard sees: a TCP relay to the current moto_server.
/// While no server is set, connections are dropped at once (as by a host
/// whose server is down); a server that dies cuts the relayed connections.
fn relay(backend: std::sync::Arc<std::sync::Mutex<Option<u16>>>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(client) = client else { continue };
            let Some(b) = *backend.lock().unwrap() else {
                continue;
            };
            let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", b)) else {
                continue;
            };
            let (c2, u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            let pipe = |mut a: std::net::TcpStream, mut b: std::net::TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Both);
                    let _ = a.shutdown(std::net::Shutdown::Both);
                });
            };
            pipe(client, up);
            pipe(u2, c2);
        }
    });
    port
}

const OBJECTS: usize = 120;

fn populate(port: u16, bucket: &str) {
    use object_store::ObjectStore;
    use std::io::{Read, Write};
    let hostport = format!("127.0.0.1:{port}");
    let mut s = std::net::TcpStream::connect(&hostport).unwrap();
    write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://{hostport}"))
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_allow_http(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let filler = "GET /static/app.js 200 0.003s ua=Mozilla/5.0\n".repeat(4000);
    rt.block_on(async {
        for i in 0..OBJECTS {
            let body = format!("{filler}student {ID} enrolled\n{filler}");
            store
                .put(
                    &object_store::path::Path::from(format!("logs/{i:03}.log")),
                    body.into_bytes().into(),
                )
                .await
                .unwrap();
        }
    });
}

#[test]
fn an_s3_server_stopped_and_started_mid_scan_is_retried() {
    let backend = std::sync::Arc::new(std::sync::Mutex::new(None));
    let endpoint_port = relay(backend.clone());
    let bucket = "cg-fault";
    let first_port = common::free_port();
    let first = common::S3Server::start_on(first_port);
    populate(first_port, bucket);
    *backend.lock().unwrap() = Some(first_port);
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("c.toml"),
        format!(
            "[[sources]]\nname = \"logs\"\nurl = \"s3://{bucket}/logs/\"\nendpoint = \"http://127.0.0.1:{endpoint_port}\"\n\
             region = \"us-east-1\"\npath_style = true\nallow_http = true\naccess_key_id_env = \"CG_FT_KEY\"\n\
             secret_access_key_env = \"CG_FT_SECRET\"\nconcurrency = 1\nmax_retries = 10\n"
        ),
    )
    .unwrap();
    let mut scan = Command::new(common::bin())
        .current_dir(d.path())
        .args([
            "scan",
            "@logs",
            "--config",
            "c.toml",
            "--no-save",
            "--format",
            "jsonl",
            "--as-of",
            "2025-06-01",
        ])
        .env("CHILDGUARD_STATE_DIR", d.path().join(".state"))
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .env("CG_FT_KEY", "testing")
        .env("CG_FT_SECRET", "testing")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // Stop the server while the scan runs; start another with the same data.
    *backend.lock().unwrap() = None;
    first.stop();
    assert!(
        scan.try_wait().unwrap().is_none(),
        "the scan ended before the server stopped: make the objects larger"
    );
    let second_port = common::free_port();
    let second = common::S3Server::start_on(second_port);
    populate(second_port, bucket);
    std::thread::sleep(Duration::from_millis(500));
    *backend.lock().unwrap() = Some(second_port);
    let o = scan.wait_with_output().unwrap();
    drop(second);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");
    let mut paths: Vec<String> = common::jsonl(&o.stdout)
        .iter()
        .filter(|f| f["category"] == "cn_resident_id")
        .map(|f| f["location"]["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    let want: Vec<String> = (0..OBJECTS).map(|i| format!("logs/{i:03}.log")).collect();
    assert_eq!(paths, want, "{err}");
}
