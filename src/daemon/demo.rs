//! The demo estate of `childguard serve --demo DIR`: log files, an export
//! nobody declared, a SQLite school database with records past retention,
//! an inventory and API tokens — so a newcomer sees findings, violations and
//! a sweep plan waiting for approval within a minute. All identifiers are
//! synthetic (valid check digits, invented people).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors writing the demo estate, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct Demo {
    pub config: PathBuf,
    /// Data directory to scan.
    pub data: PathBuf,
    /// (name, token, role) — printed once; stored hashed in the config and in clear in `DIR/TOKENS.txt` (mode 0600).
    pub tokens: Vec<(String, String, String)>,
}

fn resident_id(region: &str, birth: &str, seq: u32) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("{region}{birth}{seq:03}");
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    format!("{body}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    let err = |e: std::io::Error| DemoError::Write {
        path: path.into(),
        message: e.to_string(),
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    std::fs::write(path, text).map_err(err)
}

/// Generate the estate under `dir` (reusing it when already generated).
pub async fn generate(dir: &Path) -> Result<Demo, DemoError> {
    let config = dir.join("childguard.toml");
    let data = dir.join("data");
    let tokens_file = dir.join("TOKENS.txt");
    if config.exists() && tokens_file.exists() {
        let text = std::fs::read_to_string(&tokens_file).map_err(|e| DemoError::Write {
            path: tokens_file.clone(),
            message: e.to_string(),
        })?;
        let tokens = text
            .lines()
            .filter_map(|l| {
                let mut p = l.split_whitespace();
                Some((
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                ))
            })
            .collect();
        return Ok(Demo {
            config,
            data,
            tokens,
        });
    }
    let mut rng = rand::thread_rng();
    use rand::Rng;
    // Logs: registrations of children, a few adults, guardians' phones.
    let mut log = String::new();
    for i in 0..400u32 {
        let t = format!(
            "2025-03-{:02} {:02}:{:02}:{:02}",
            1 + i % 28,
            8 + i % 10,
            i % 60,
            (i * 7) % 60
        );
        match i % 5 {
            0 => {
                let id = resident_id(
                    "110105",
                    &format!("2015{:02}{:02}", 1 + i % 12, 1 + i % 28),
                    i % 1000,
                );
                let _ = writeln!(
                    log,
                    "{t} INFO  enrol student id_no={id} class=3 guardian_phone=138{:08}",
                    rng.gen_range(0..100_000_000u32)
                );
            }
            1 => {
                let id = resident_id(
                    "310101",
                    &format!("1982{:02}{:02}", 1 + i % 12, 1 + i % 28),
                    i % 1000,
                );
                let _ = writeln!(log, "{t} INFO  teacher login id={id}");
            }
            2 => {
                let _ = writeln!(
                    log,
                    "{t} WARN  sms retry to 139{:08}",
                    rng.gen_range(0..100_000_000u32)
                );
            }
            _ => {
                let _ = writeln!(log, "{t} DEBUG request ok path=/api/lessons/{i}");
            }
        }
    }
    write(&data.join("logs/app.log"), &log)?;
    // An export nobody declared (CAC Order No. 4 Art. 7, 11 violation).
    let mut roster = String::from("name_initials,id_no\n");
    for i in 0..25u32 {
        let _ = writeln!(
            roster,
            "S{i},{}",
            resident_id(
                "440103",
                &format!("2016{:02}{:02}", 1 + i % 12, 2 + i % 27),
                i
            )
        );
    }
    write(&data.join("exports/kids_roster.csv"), &roster)?;

    // The school database: 500 students, 150 enrolled more than a year ago past retention.
    let db = data.join("school.db");
    let _ = std::fs::remove_file(&db);
    {
        use sqlx::Connection;
        let werr = |e: sqlx::Error| DemoError::Write {
            path: db.clone(),
            message: e.to_string(),
        };
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&opts)
            .await
            .map_err(werr)?;
        sqlx::query("CREATE TABLE students (id INTEGER PRIMARY KEY, id_no TEXT NOT NULL, guardian_phone TEXT, grade TEXT, created_at TEXT NOT NULL)")
            .execute(&mut c)
            .await
            .map_err(werr)?;
        let mut tx = c.begin().await.map_err(werr)?;
        let today = chrono::Utc::now().date_naive();
        for i in 0..500u32 {
            let id = resident_id(
                "320102",
                &format!("2014{:02}{:02}", 1 + i % 12, 1 + i % 28),
                i % 1000,
            );
            let days = if i < 150 {
                400 + (i as i64 % 300)
            } else {
                (i as i64) % 300
            };
            let created = (today - chrono::Duration::days(days))
                .format("%Y-%m-%d 09:00:00")
                .to_string();
            sqlx::query(
                "INSERT INTO students(id_no, guardian_phone, grade, created_at) VALUES (?,?,?,?)",
            )
            .bind(id)
            .bind(format!("137{:08}", rng.gen_range(0..100_000_000u32)))
            .bind(format!("grade {}", 1 + i % 6))
            .bind(created)
            .execute(&mut *tx)
            .await
            .map_err(werr)?;
        }
        tx.commit().await.map_err(werr)?;
    }

    let mut tokens = Vec::new();
    for (name, role) in [
        ("demo-admin", "admin"),
        ("demo-approver", "approver"),
        ("demo-operator", "operator"),
        ("demo-viewer", "viewer"),
    ] {
        let t: [u8; 16] = rand::random();
        tokens.push((
            name.to_string(),
            format!("cg-{}", hex::encode(t)),
            role.to_string(),
        ));
    }
    let mut cfg = format!(
        "# childguard demo configuration (generated by `childguard serve --demo`).\nstate_dir = {:?}\n",
        dir.join("state").display().to_string()
    );
    let _ = write!(
        cfg,
        r#"
[[datasets]]
name = "app_logs"
source = {logs:?}
match = ["*.log"]
owner = "Operations lead"
purpose = "troubleshooting the lesson service"
child_data = true
categories = {{ "*" = ["cn_resident_id"] }}
retention = "180d after object_age"

[[datasets]]
name = "students"
source = {db:?}
match = ["students"]
owner = "Registrar (data protection officer)"
purpose = "enrolment and guardian contact"
legal_basis = "guardian_consent"
location = "school.db on the campus server"
child_data = true
subject_key = "id_no"
categories = {{ id_no = ["cn_resident_id"], guardian_phone = ["cn_mobile"] }}
retention = "365d after created_at"

[[schedules]]
name = "nightly-scan"
cron = "30 2 * * *"
timezone = "Asia/Shanghai"
job = "scan"
targets = [{data:?}]
catch_up = true

[[schedules]]
name = "weekly-sweep-plan"
cron = "0 6 * * 1"
timezone = "Asia/Shanghai"
job = "sweep_plan"

[server]
listen = "127.0.0.1:8080"
sweep_batch_rows = 10
sweep_batch_pause_ms = 100
"#,
        logs = data.join("logs").display().to_string(),
        db = format!("sqlite://{}", db.display()),
        data = data.display().to_string(),
    );
    let mut clear = String::new();
    for (name, tok, role) in &tokens {
        let _ = write!(
            cfg,
            "\n[[tokens]]\nname = \"{name}\"\nhash = \"{}\"\nrole = \"{role}\"\n",
            crate::daemon::auth::hash_token(tok)
        );
        let _ = writeln!(clear, "{name} {tok} {role}");
    }
    write(&config, &cfg)?;
    write(&tokens_file, &clear)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&tokens_file, std::fs::Permissions::from_mode(0o600));
    }
    Ok(Demo {
        config,
        data,
        tokens,
    })
}
