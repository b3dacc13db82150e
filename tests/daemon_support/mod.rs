//! Helpers for the daemon tests: a small estate (logs, a SQLite database, an
//! inventory with an undeclared dataset and overdue records), the real
//! `childguard serve` binary on a free loopback port, and a tiny HTTP client.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKENS: [(&str, &str, &str); 6] = [
    ("vera", "tok-viewer", "viewer"),
    ("otto", "tok-operator", "operator"),
    ("olga", "tok-operator-2", "operator"),
    ("anna", "tok-approver", "approver"),
    ("arne", "tok-approver-2", "approver"),
    ("adam", "tok-admin", "admin"),
];

pub fn token(name: &str) -> &'static str {
    TOKENS.iter().find(|t| t.0 == name).unwrap().1
}

/// An 18-digit resident ID with a valid check digit.
pub fn resident_id(region: &str, birth: &str, seq: u32) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("{region}{birth}{seq:03}");
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

pub struct Estate {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
    /// IDs of children that appear in the files (for "never a raw value" checks).
    pub child_ids: Vec<String>,
    pub old_rows: i64,
}

impl Estate {
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Build the estate. `students` rows in the SQLite table, `old` of them
/// created ten years ago (past the 365-day retention).
pub fn estate(students: usize, old: usize, server_extra: &str) -> Estate {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::create_dir_all(root.join("exports")).unwrap();
    let kid1 = resident_id("110105", "20150307", 123);
    let kid2 = resident_id("310101", "20160512", 456);
    let adult = resident_id("110105", "19800101", 789);
    std::fs::write(
        root.join("logs/app.log"),
        format!(
            "2025-01-02 10:00:00 INFO register student id_no={kid1} guardian phone 13812345678\n\
             2025-01-02 10:00:01 INFO nothing here\n\
             2025-01-02 10:00:02 INFO teacher id_no={adult}\n\
             2025-01-02 10:00:03 WARN retry student id_no={kid2}\n"
        ),
    )
    .unwrap();
    // Nobody declared this export: an undeclared dataset holding children's PI.
    std::fs::write(
        root.join("exports/kids.txt"),
        format!("roster {kid1}\nroster {kid2}\n"),
    )
    .unwrap();

    let db = root.join("school.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query("CREATE TABLE students (id INTEGER PRIMARY KEY, id_no TEXT, phone TEXT, created_at TEXT)").execute(&mut c).await.unwrap();
        let mut tx = c.begin().await.unwrap();
        for i in 0..students {
            let id = resident_id("440103", &format!("2014{:02}{:02}", 1 + i % 12, 1 + i % 28), (i % 1000) as u32);
            let created = if i < old { "2015-06-01 08:00:00".to_string() } else { "2099-01-01 00:00:00".to_string() };
            sqlx::query("INSERT INTO students(id_no, phone, created_at) VALUES (?,?,?)")
                .bind(id)
                .bind(format!("139{:08}", i))
                .bind(created)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    });

    let mut cfg = String::new();
    cfg.push_str(&format!(
        "state_dir = {:?}\n\n",
        root.join("state").display().to_string()
    ));
    cfg.push_str(&format!(
        r#"[[datasets]]
name = "app_logs"
source = {logs:?}
match = ["*.log"]
owner = "Li Ming, DPO"
purpose = "operations troubleshooting"
child_data = true
categories = {{ "*" = ["cn_resident_id"] }}
retention = "30d after object_age"

[[datasets]]
name = "students"
source = {db:?}
match = ["students"]
owner = "Wang Fang"
purpose = "enrolment"
child_data = true
subject_key = "id_no"
categories = {{ id_no = ["cn_resident_id"], phone = ["cn_mobile"] }}
retention = "365d after created_at"

[server]
listen = "127.0.0.1:0"
body_limit_bytes = 65536
{server_extra}
"#,
        logs = root.join("logs").display().to_string(),
        db = format!("sqlite://{}", db.display()),
    ));
    for (name, tok, role) in TOKENS {
        cfg.push_str(&format!(
            "\n[[tokens]]\nname = \"{name}\"\nhash = \"sha256:{}\"\nrole = \"{role}\"\n",
            sha256_hex(tok)
        ));
    }
    let config = root.join("childguard.toml");
    std::fs::write(&config, cfg).unwrap();
    Estate {
        dir,
        config,
        db,
        child_ids: vec![kid1, kid2, adult],
        old_rows: old as i64,
    }
}

/// `childguard serve` as a child process.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stderr_path: PathBuf,
}

impl Server {
    pub fn start(e: &Estate, extra_args: &[&str]) -> Server {
        let stderr_path = e
            .root()
            .join(format!("serve-{}.log", rand::random::<u32>()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_childguard"))
            .args(["serve", "--config"])
            .arg(&e.config)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_args)
            .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start childguard serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "serve did not start: {line:?}; log: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                )
            });
        Server {
            child,
            addr: addr.to_string(),
            stderr_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn sigterm(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Wait for exit; returns the exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn req(&self, method: &str, path: &str, tok: Option<&str>, body: Option<&Value>) -> Resp {
        http(
            &self.addr,
            method,
            path,
            tok,
            body.map(|b| b.to_string().into_bytes()).as_deref(),
        )
    }

    pub fn get(&self, path: &str, who: &str) -> Resp {
        self.req("GET", path, Some(token(who)), None)
    }

    pub fn post(&self, path: &str, who: &str, body: Value) -> Resp {
        self.req("POST", path, Some(token(who)), Some(&body))
    }

    /// Poll `path` until `done(json)` or the timeout.
    pub fn poll(&self, path: &str, who: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        loop {
            let r = self.get(path, who);
            if done(&r.json) {
                return r.json;
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "timed out polling {path}: {}",
                r.json
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// Minimal HTTP/1.1 client (Connection: close).
pub fn http(addr: &str, method: &str, path: &str, tok: Option<&str>, body: Option<&[u8]>) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = tok {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    let body = String::from_utf8_lossy(&body).to_string();
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        json,
    }
}
