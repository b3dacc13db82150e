//! Secrets: credentials come only from env vars or files and never reach
//! stderr (even at debug log level), the JSON output, the store, the report
//! or the audit log — also when the password is wrong or the server is
//! unreachable; a config file holding a plaintext password is warned about
//! by `config check` and at every start; the fingerprint key is created 0600.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const SECRETS: [&str; 5] = [
    "MyWrongPw-71", // MariaDB, wrong password (password_env)
    "PgDownPw-72",  // PostgreSQL, unreachable (password_env)
    "S3KeySecret-73",
    "UrlPw-74",    // in a URL on the command line
    "QueryTok-75", // in a URL query
];

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(common::bin());
    c.current_dir(dir)
        .args(args)
        .env_remove("CHILDGUARD_FINGERPRINT_KEY")
        .env("CHILDGUARD_STATE_DIR", dir.join("state"))
        .env("RUST_LOG", "debug");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn all(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the secret {s}:\n{text}");
    }
}

/// Every byte under `dir` (the state directory: store, journal, key, receipts).
fn assert_dir_clean(dir: &Path) {
    for e in walk(dir) {
        let bytes = std::fs::read(&e).unwrap();
        for s in SECRETS {
            assert!(
                memchr::memmem::find(&bytes, s.as_bytes()).is_none(),
                "{} holds the secret {s}",
                e.display()
            );
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

#[test]
fn wrong_or_unreachable_credentials_never_leak() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let closed = common::free_port();
    let my = common::mysql_admin_url();
    std::fs::write(
        p.join("c.toml"),
        format!(
            "[[sources]]\nname = \"school\"\nurl = \"{my}\"\npassword_env = \"CG_SECRET_MY\"\n\n\
             [[sources]]\nname = \"pgdown\"\nurl = \"postgres://scanner@127.0.0.1:{closed}/x\"\npassword_env = \"CG_SECRET_PG\"\n\n\
             [[sources]]\nname = \"s3down\"\nurl = \"s3://bucket/p/?token=QueryTok-75\"\nendpoint = \"http://127.0.0.1:{closed}\"\n\
             region = \"us-east-1\"\npath_style = true\nallow_http = true\naccess_key_id_env = \"CG_SECRET_KEYID\"\n\
             secret_access_key_env = \"CG_SECRET_S3\"\nmax_retries = 0\n"
        ),
    )
    .unwrap();
    let env = [
        ("CG_SECRET_MY", "MyWrongPw-71"),
        ("CG_SECRET_PG", "PgDownPw-72"),
        ("CG_SECRET_KEYID", "AKIDEXAMPLE"),
        ("CG_SECRET_S3", "S3KeySecret-73"),
    ];
    let url_target = format!("postgres://admin:UrlPw-74@127.0.0.1:{closed}/db");
    let o = run(
        p,
        &[
            "scan",
            "@school",
            "@pgdown",
            "@s3down",
            &url_target,
            "--config",
            "c.toml",
            "--format",
            "jsonl",
        ],
        &env,
    );
    let out = all(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    // Each failure is reported, naming the source without its credentials.
    assert!(out.contains("Access denied"), "{out}");
    assert!(out.contains(&format!("127.0.0.1:{closed}")), "{out}");
    assert!(out.contains("token=***"), "{out}");
    assert_clean("scan output (debug log level)", &out);

    for args in [
        vec!["audit", "export", "--config", "c.toml"],
        vec!["report", "--config", "c.toml", "--format", "json"],
        vec!["findings", "list", "--config", "c.toml"],
    ] {
        let o = run(p, &args, &env);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", all(&o));
        assert_clean(&format!("{args:?}"), &all(&o));
    }
    let audit =
        String::from_utf8_lossy(&run(p, &["audit", "export", "--config", "c.toml"], &env).stdout)
            .into_owned();
    assert!(
        audit.contains("scan.start") && !audit.contains("UrlPw"),
        "{audit}"
    );
    assert_dir_clean(&p.join("state"));

    // The fingerprint key was created on first use, readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.join("state/fingerprint.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "fingerprint.key mode {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_passwords_in_the_config_are_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    let db = common::fresh_pg_db("cg_secret").await;
    // The shared server trusts loopback: the password is ignored but still a plaintext secret.
    let with_pw = db.replacen("postgres://postgres@", "postgres://postgres:UrlPw-74@", 1);
    assert_ne!(with_pw, db);
    std::fs::write(p.join("data.log"), "nothing to see\n").unwrap();
    std::fs::write(
        p.join("c.toml"),
        format!(
            "state_url = \"{with_pw}\"\n\n[[sources]]\nname = \"s\"\nurl = \"postgres://u:PgDownPw-72@127.0.0.1:1/x\"\n\n[[datasets]]\nname = \"x\"\nsource = \"mysql://app:QueryTok-75@127.0.0.1:3306/app\"\n\
             match = [\"*\"]\nowner = \"o\"\npurpose = \"p\"\nretention = \"30d after created_at\"\n"
        ),
    )
    .unwrap();
    let o = tokio::task::spawn_blocking({
        let p = p.clone();
        move || run(&p, &["config", "check", "c.toml"], &[])
    })
    .await
    .unwrap();
    let out = all(&o);
    assert!(
        out.contains("warning: state_url: state_url contains a plaintext password"),
        "{out}"
    );
    assert!(
        out.contains("warning: datasets[0].source: source contains a plaintext password"),
        "{out}"
    );
    assert!(
        out.contains("warning: sources[0].url: url contains a plaintext password"),
        "{out}"
    );
    assert_clean("config check", &out);
    // At start-up, every command that loads the config warns too.
    let o = tokio::task::spawn_blocking({
        let p = p.clone();
        move || {
            run(
                &p,
                &[
                    "scan", "data.log", "--config", "c.toml", "--format", "jsonl",
                ],
                &[],
            )
        }
    })
    .await
    .unwrap();
    let out = all(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let warns: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("plaintext password"))
        .collect();
    assert_eq!(warns.len(), 3, "{out}");
    assert_clean("scan with a plaintext-password config", &out);
}
