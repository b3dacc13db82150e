//! Shared helpers for integration tests: real PostgreSQL, MariaDB and an
//! S3-compatible server (moto_server) on loopback. `scripts/test.sh` installs
//! and starts PostgreSQL and MariaDB; the S3 server is started per test here.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// PostgreSQL server URL (maintenance database). Override with `CHILDGUARD_TEST_PG_URL`.
pub fn pg_admin_url() -> String {
    std::env::var("CHILDGUARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// MariaDB/MySQL server URL. Override with `CHILDGUARD_TEST_MYSQL_URL`.
pub fn mysql_admin_url() -> String {
    std::env::var("CHILDGUARD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A unique, lowercase name for a test database.
pub fn unique_name(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}_{}_{:x}", std::process::id(), n & 0xffff_ffff)
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("url has a database part");
    format!("{base}/{db}")
}

/// Create a fresh PostgreSQL database; returns its URL. Dropped by [`drop_pg_db`] or left for inspection.
pub async fn fresh_pg_db(prefix: &str) -> String {
    use sqlx::Connection;
    let name = unique_name(prefix);
    let mut c = sqlx::PgConnection::connect(&pg_admin_url())
        .await
        .expect("PostgreSQL is running (scripts/test.sh starts it)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    replace_db(&pg_admin_url(), &name)
}

/// Create a fresh MariaDB database; returns its URL.
pub async fn fresh_mysql_db(prefix: &str) -> String {
    use sqlx::Connection;
    let name = unique_name(prefix);
    let mut c = sqlx::MySqlConnection::connect(&mysql_admin_url())
        .await
        .expect("MariaDB is running (scripts/test.sh starts it)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    replace_db(&mysql_admin_url(), &name)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto_server (S3-compatible) on a free loopback port; killed on drop.
pub struct S3Server {
    pub endpoint: String,
    child: Child,
}

impl S3Server {
    pub fn start() -> S3Server {
        S3Server::start_on(free_port())
    }

    /// A moto_server on `port`.
    pub fn start_on(port: u16) -> S3Server {
        let exe = std::env::var("CHILDGUARD_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is installed (scripts/test.sh installs it: pip install 'moto[server]')");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {endpoint}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server { endpoint, child }
    }

    /// Kill the server now (as a crash would; `drop` does the same).
    pub fn stop(self) {}

    /// Environment for childguard and object_store to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ]
    }
}

impl S3Server {
    /// Create `bucket` (path-style PUT).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let hostport = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(hostport).unwrap();
        write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
    }

    /// An object_store client for `bucket` on this server.
    pub fn client(&self, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        std::sync::Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_access_key_id("testing")
                .with_secret_access_key("testing")
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .build()
                .unwrap(),
        )
    }
}

/// Put one object.
pub fn put_object(
    rt: &tokio::runtime::Runtime,
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    key: &str,
    body: Vec<u8>,
) {
    rt.block_on(store.put(
        &object_store::path::Path::from(key),
        object_store::PutPayload::from(body),
    ))
    .unwrap();
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of the built `childguard` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_childguard"))
}

/// Run `childguard` with args in `dir`, a private state dir and a fixed fingerprint key.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(dir)
        .args(args)
        .env("CHILDGUARD_STATE_DIR", dir.join(".state"))
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .env_remove("RUST_LOG")
        .output()
        .expect("run childguard")
}

/// Parse JSON lines output.
pub fn jsonl(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad json line {l}: {e}")))
        .collect()
}
