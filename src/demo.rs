//! The demo estate: a small, deterministic copy of what an operator keeps —
//! application logs (plain and gzip), a CSV export, JSON-lines events and a
//! SQLite database — with a purpose inventory that declares some of it, leaves
//! one dataset undeclared and has records kept past retention. Used by
//! `childguard demo` and the README quick start. All people are synthetic:
//! ID numbers carry valid check digits but belong to nobody.

use chrono::{Datelike, Duration, NaiveDate};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo estate {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("demo database {path}: {message}")]
    Db { path: PathBuf, message: String },
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙",
];
const GIVEN: &[&str] = &[
    "子涵", "欣怡", "梓轩", "浩然", "雨桐", "一诺", "思远", "佳琪", "宇航", "诗涵",
];
const SCHOOLS: &[&str] = &[
    "北京市海淀区中关村第一小学",
    "上海市徐汇区向阳小学",
    "杭州市西湖区学军小学",
    "成都市第七中学",
    "广州市越秀区东风西路小学",
];
const REGIONS: &[&str] = &["110108", "310104", "330106", "510104", "440104"];

/// Tiny deterministic generator (xorshift) so the demo is the same everywhere.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A valid 18-digit resident ID for a birth date.
pub fn make_id(region: &str, birth: NaiveDate, seq: u32) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!(
        "{region}{:04}{:02}{:02}{:03}",
        birth.year(),
        birth.month(),
        birth.day(),
        seq % 1000
    );
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

struct Person {
    name: String,
    id: String,
    birth: NaiveDate,
    phone: String,
    school: &'static str,
}

fn person(r: &mut Rng, as_of: NaiveDate, child: bool) -> Person {
    let age_days = if child {
        6 * 365 + r.below(7 * 365)
    } else {
        30 * 365 + r.below(15 * 365)
    } as i64;
    let birth = as_of - Duration::days(age_days);
    let region = r.pick(REGIONS);
    Person {
        name: format!("{}{}", r.pick(SURNAMES), r.pick(GIVEN)),
        id: make_id(region, birth, r.below(1000) as u32),
        birth,
        phone: format!(
            "{}{:08}",
            ["138", "139", "150", "159", "186", "131", "177", "199"][r.below(8) as usize],
            r.below(100_000_000)
        ),
        school: SCHOOLS[r.below(SCHOOLS.len() as u64) as usize],
    }
}

fn age(birth: NaiveDate, as_of: NaiveDate) -> i32 {
    crate::detect::age_at(birth, as_of).unwrap_or(0)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}

/// Write the demo estate under `dir`; returns the path of its config file.
pub fn generate(dir: &Path, as_of: NaiveDate) -> Result<PathBuf, DemoError> {
    let mut r = Rng(0x5eed_c41d_9a4d_0001);
    let data = dir.join("data");

    // Application log: children enrolling, guardians calling, adult staff.
    let mut log = String::new();
    for i in 0..400 {
        let t = as_of.and_hms_opt(8, 0, 0).unwrap() - Duration::minutes(400 - i);
        let ts = t.format("%Y-%m-%d %H:%M:%S");
        match i % 4 {
            0 => {
                let c = person(&mut r, as_of, true);
                log.push_str(&format!(
                    "{ts} INFO enroll student_name={} id_no={} school={} grade=三年级 age={}\n",
                    c.name,
                    c.id,
                    c.school,
                    age(c.birth, as_of)
                ));
            }
            1 => {
                let g = person(&mut r, as_of, false);
                log.push_str(&format!(
                    "{ts} INFO guardian callback 家长电话 {} order=20240518{:010}\n",
                    g.phone,
                    r.below(1 << 30)
                ));
            }
            2 => {
                let a = person(&mut r, as_of, false);
                log.push_str(&format!(
                    "{ts} INFO staff login user_id={} idcard={}\n",
                    1000 + i,
                    a.id
                ));
            }
            _ => log.push_str(&format!(
                "{ts} DEBUG request_id={:016x} latency_ms={}\n",
                r.next(),
                r.below(900)
            )),
        }
    }
    write(&data.join("logs/app.log"), log.as_bytes())?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(log.as_bytes()).expect("in-memory gzip");
    write(
        &data.join("logs/app.log.1.gz"),
        &gz.finish().expect("in-memory gzip"),
    )?;

    // A CSV export someone left in a shared folder: undeclared.
    let mut csv = String::from("student_name,sfzh,csrq,jhrdh,xxmc\n");
    for _ in 0..60 {
        let c = person(&mut r, as_of, true);
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            c.name, c.id, c.birth, c.phone, c.school
        ));
    }
    write(&data.join("exports/class_roster.csv"), csv.as_bytes())?;

    // JSON-lines events with nested fields.
    let mut jl = String::new();
    for i in 0..80 {
        let c = person(&mut r, as_of, i % 3 != 0);
        jl.push_str(&format!(
            "{{\"event\":\"signup\",\"student\":{{\"name\":\"{}\",\"idNo\":\"{}\",\"birthday\":\"{}\"}},\"guardian\":{{\"phone\":\"{}\"}}}}\n",
            c.name, c.id, c.birth, c.phone
        ));
    }
    write(&data.join("events/signup.jsonl"), jl.as_bytes())?;

    // SQLite database: declared students table with overdue rows, undeclared marketing table.
    let db = data.join("school.db");
    let _ = std::fs::remove_file(&db);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dberr = |e: sqlx::Error| DemoError::Db {
        path: db.clone(),
        message: e.to_string(),
    };
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.map_err(dberr)?;
        sqlx::query(
            "CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT, id_number TEXT, birth_date TEXT, \
             guardian_phone TEXT, school TEXT, created_at TEXT NOT NULL)",
        )
        .execute(&mut c)
        .await
        .map_err(dberr)?;
        sqlx::query("CREATE TABLE marketing_leads (id INTEGER PRIMARY KEY, child_name TEXT, phone TEXT, note TEXT)")
            .execute(&mut c)
            .await
            .map_err(dberr)?;
        let mut tx = c.begin().await.map_err(dberr)?;
        for i in 0..300i64 {
            let p = person(&mut r, as_of, true);
            // One in three rows was created more than a year ago: past the declared 365 days.
            let created = as_of - Duration::days(if i % 3 == 0 { 400 + i } else { i });
            sqlx::query("INSERT INTO students VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(i + 1)
                .bind(&p.name)
                .bind(&p.id)
                .bind(p.birth.to_string())
                .bind(&p.phone)
                .bind(p.school)
                .bind(format!("{created} 09:00:00"))
                .execute(&mut *tx)
                .await
                .map_err(dberr)?;
        }
        for i in 0..50i64 {
            let p = person(&mut r, as_of, true);
            sqlx::query("INSERT INTO marketing_leads VALUES (?, ?, ?, ?)")
                .bind(i + 1)
                .bind(&p.name)
                .bind(&p.phone)
                .bind(format!("孩子{}岁，{}，留守儿童", age(p.birth, as_of), p.school))
                .execute(&mut *tx)
                .await
                .map_err(dberr)?;
        }
        tx.commit().await.map_err(dberr)
    })?;

    let config = format!(
        r#"# childguard demo configuration (generated by `childguard demo`).
state_dir = "{state}"

[[sources]]
name = "school_db"
url = "sqlite://{db}"

[[sources]]
name = "files"
url = "{data}"

[[datasets]]
name = "students"
source = "school_db"
match = ["main.students"]
owner = "Li Wei <dpo@example.edu>"
purpose = "enrolment and class management"
legal_basis = "guardian_consent"
location = "school.db, primary data centre"
child_data = true
subject_key = "id_number"
primary_key = ["id"]
encrypted = ["id_number"]
retention = "365d after created_at"
disposal = "delete"
[datasets.categories]
name = ["person_name"]
id_number = ["cn_resident_id"]
birth_date = ["birth_date"]
guardian_phone = ["cn_mobile"]
school = ["school_name"]

[[datasets]]
name = "app_logs"
source = "files"
match = ["logs/**"]
owner = "Ops team <ops@example.edu>"
purpose = "troubleshooting"
legal_basis = "contract"
location = "app servers, /var/log/app"
child_data = true
retention = "30d after object_age"
disposal = "delete"
[datasets.categories]
"*" = ["cn_mobile"]

[[datasets]]
name = "signup_events"
source = "files"
match = ["events/*.jsonl"]
owner = "Growth team <growth@example.edu>"
purpose = "account sign-up"
legal_basis = "guardian_consent"
location = "event archive"
child_data = true
subject_key = "student.idNo"
retention = "90d after object_age"
disposal = "delete"
[datasets.categories]
"student.name" = ["person_name"]
"student.idNo" = ["cn_resident_id"]
"student.birthday" = ["birth_date"]
"guardian.phone" = ["cn_mobile"]

# Not declared on purpose: main.marketing_leads and exports/class_roster.csv hold
# children's PI that no dataset declares (CAC Order No. 4 Art. 7, 11, 14).
"#,
        state = dir.join("state").display(),
        db = db.display(),
        data = data.display(),
    );
    let cfg = dir.join("childguard.toml");
    write(&cfg, config.as_bytes())?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid() {
        let d = NaiveDate::from_ymd_opt(2015, 3, 7).unwrap();
        let id = make_id("110105", d, 123);
        assert_eq!(crate::detect::validate::resident_id_18(&id), Some(d));
    }

    #[test]
    fn generates_estate() {
        let t = tempfile::tempdir().unwrap();
        let cfg = generate(t.path(), NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()).unwrap();
        assert!(cfg.exists());
        assert!(t.path().join("data/school.db").exists());
        let csv = std::fs::read_to_string(t.path().join("data/exports/class_roster.csv")).unwrap();
        assert_eq!(csv.lines().count(), 61);
    }
}
