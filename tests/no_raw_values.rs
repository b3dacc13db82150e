//! childguard never becomes a second copy of what it hunts. Full scans,
//! reports, a retention sweep and an erasure run over the labelled corpus
//! (`childguard corpus`: logs in UTF-8, GB18030 and gzip, and a students
//! table in SQLite) with debug logging captured; then childguard scans its
//! own state directory (store, journal, receipts, key), its logs and its
//! reports — and finds no ID number, phone or name there; nor does a byte
//! search for every labelled raw value. (tests/demo_flow.rs does the same
//! for the demo estate.)

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const AS_OF: &str = "2025-06-01";

/// Run childguard with debug logs; stdout and stderr are appended to `logs/`.
fn cg(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(common::bin())
        .current_dir(dir)
        .args(args)
        .env("CHILDGUARD_FINGERPRINT_KEY", "corpus-key")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let n = std::fs::read_dir(dir.join("logs")).unwrap().count();
    std::fs::write(dir.join(format!("logs/{n:02}-{}.out", args[0])), &o.stdout).unwrap();
    std::fs::write(dir.join(format!("logs/{n:02}-{}.err", args[0])), &o.stderr).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0) | Some(1)),
        "{args:?}: …{}",
        &err[err.len().saturating_sub(2000)..]
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The raw values of the corpus: every labelled ID, phone and name span in
/// the log, and the ID, phone and name cells of the table.
fn raw_values(corpus: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let log = std::fs::read_to_string(corpus.join("corpus.log")).unwrap();
    for l in std::fs::read_to_string(corpus.join("truth.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let base = v["offset"].as_u64().unwrap() as usize;
        for s in v["spans"].as_array().unwrap() {
            if ["cn_resident_id", "cn_mobile", "person_name", "guardian"]
                .contains(&s["category"].as_str().unwrap())
            {
                let (a, b) = (
                    s["start"].as_u64().unwrap() as usize,
                    s["end"].as_u64().unwrap() as usize,
                );
                if let Some(t) = log.get(base + a..base + b) {
                    out.insert(t.trim().to_string());
                }
            }
        }
    }
    let mut r = csv::Reader::from_path(corpus.join("students.csv")).unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        for i in [1, 2, 7, 8] {
            out.insert(rec[i].to_string());
        }
    }
    // Short values (a two-character name) also occur by chance in other text.
    out.retain(|v| v.chars().count() >= 3);
    out
}

async fn load_students(corpus: &Path, db: &Path) -> String {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE students (id INTEGER PRIMARY KEY, xm TEXT, sfzh TEXT, csrq TEXT, nl INTEGER, xxmc TEXT, nj TEXT, jhrxm TEXT, jhrdh TEXT, jtzz TEXT, order_no TEXT, created_at TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    let mut r = csv::Reader::from_path(corpus.join("students.csv")).unwrap();
    let mut subject = String::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        let mut q =
            sqlx::query("INSERT INTO students VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)");
        for (i, cell) in rec.iter().enumerate() {
            q = if i == 0 || i == 4 {
                q.bind(cell.parse::<i64>().unwrap_or(0))
            } else {
                q.bind(cell.to_string())
            };
        }
        q.execute(&pool).await.unwrap();
        subject = rec[2].to_string();
    }
    pool.close().await;
    subject
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_sweeps_and_erasure_over_the_corpus_leave_no_raw_value_behind() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::create_dir(dir.join("logs")).unwrap();
    std::fs::create_dir(dir.join("reports")).unwrap();
    let corpus = dir.join("estate");
    cg(
        dir,
        &[
            "corpus",
            "--out",
            corpus.to_str().unwrap(),
            "--lines",
            "3000",
            "--rows",
            "400",
            "--as-of",
            AS_OF,
        ],
    );
    let subject = load_students(&corpus, &dir.join("school.db")).await;
    std::fs::write(
        dir.join("cg.toml"),
        format!(
            "state_dir = \"{state}\"\n\n[[sources]]\nname = \"db\"\nurl = \"sqlite://{db}\"\n\n[[sources]]\nname = \"files\"\nurl = \"{files}\"\n\n\
             [[datasets]]\nname = \"students\"\nsource = \"db\"\nmatch = [\"main.students\"]\nowner = \"DPO\"\npurpose = \"enrolment\"\n\
             legal_basis = \"guardian_consent\"\nlocation = \"school.db\"\nchild_data = true\nsubject_key = \"sfzh\"\nprimary_key = [\"id\"]\n\
             retention = \"1d after created_at\"\ndisposal = \"delete\"\n\n\
             [[datasets]]\nname = \"logs\"\nsource = \"files\"\nmatch = [\"*.log\", \"*.log.gz\"]\nowner = \"Ops\"\npurpose = \"troubleshooting\"\n\
             legal_basis = \"contract\"\nlocation = \"app servers\"\nchild_data = true\nretention = \"30d after object_age\"\ndisposal = \"delete\"\n",
            state = dir.join("state").display(),
            db = dir.join("school.db").display(),
            files = corpus.display(),
        ),
    )
    .unwrap();

    // Everything a user does, with debug logs kept.
    let scan = cg(
        dir,
        &[
            "scan", "@db", "@files", "--config", "cg.toml", "--full", "--rows", "--format",
            "jsonl", "--as-of", AS_OF,
        ],
    );
    let findings = common::jsonl(scan.as_bytes());
    assert!(
        findings
            .iter()
            .filter(|f| f["category"] == "cn_resident_id")
            .count()
            > 100
    );
    cg(dir, &["findings", "list", "--config", "cg.toml"]);
    cg(
        dir,
        &[
            "report",
            "--config",
            "cg.toml",
            "--format",
            "html",
            "--output",
            "reports/report.html",
        ],
    );
    cg(
        dir,
        &[
            "report",
            "--config",
            "cg.toml",
            "--format",
            "json",
            "--output",
            "reports/report.json",
        ],
    );
    let plan = cg(
        dir,
        &[
            "sweep",
            "plan",
            "--config",
            "cg.toml",
            "--as",
            "alice",
            "--as-of",
            "2025-05-31",
            "--json",
        ],
    );
    let id = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s.lines().next().unwrap()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let p = id(&plan);
    cg(
        dir,
        &["sweep", "approve", &p, "--config", "cg.toml", "--by", "bob"],
    );
    cg(
        dir,
        &["sweep", "run", &p, "--config", "cg.toml", "--as", "alice"],
    );
    cg(dir, &["sweep", "status", &p, "--config", "cg.toml"]);
    let e = id(&cg(
        dir,
        &[
            "erase",
            "--subject",
            &subject,
            "--config",
            "cg.toml",
            "--as",
            "alice",
            "--json",
        ],
    ));
    cg(
        dir,
        &["sweep", "approve", &e, "--config", "cg.toml", "--by", "bob"],
    );
    cg(
        dir,
        &[
            "erase",
            "--subject",
            &subject,
            "--run",
            &e,
            "--config",
            "cg.toml",
            "--as",
            "alice",
        ],
    );
    cg(
        dir,
        &[
            "audit",
            "export",
            "--config",
            "cg.toml",
            "--output",
            "reports/audit.jsonl",
        ],
    );

    // childguard scans what it wrote: state, store, logs, reports.
    let own = cg(
        dir,
        &[
            "scan",
            "state",
            &format!("sqlite://{}", dir.join("state/childguard.db").display()),
            "logs",
            "reports",
            "--full",
            "--format",
            "jsonl",
            "--as-of",
            AS_OF,
        ],
    );
    let own = common::jsonl(own.as_bytes());
    let leaked: Vec<_> = own
        .iter()
        .filter(|f| {
            ["cn_resident_id", "cn_mobile", "person_name", "guardian"]
                .contains(&f["category"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "identifiers in childguard's own output: {leaked:#?}"
    );

    // And a byte search for every labelled raw value (the erased subject included).
    let mut raw = raw_values(&corpus);
    raw.insert(subject.clone());
    assert!(raw.len() > 500, "{} raw values", raw.len());
    let ac = aho_corasick::AhoCorasick::new(&raw).unwrap();
    for sub in ["state", "logs", "reports"] {
        for f in walk(&dir.join(sub)) {
            let bytes = std::fs::read(&f).unwrap();
            if let Some(m) = ac.find(&bytes) {
                panic!(
                    "{} holds a raw value ({} bytes at {})",
                    f.display(),
                    m.len(),
                    m.start()
                );
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
