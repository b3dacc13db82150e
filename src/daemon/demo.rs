//! `childguard serve --demo DIR`: the shared demo estate ([`crate::demo`]:
//! logs, a CSV export nobody declared, JSON-lines events, a SQLite school
//! database with records past retention and an undeclared table, and the
//! inventory), plus API tokens and daemon settings, so a newcomer sees
//! findings, violations and a sweep plan waiting for approval within a minute.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors writing the demo estate, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Estate(#[from] crate::demo::DemoError),
    #[error("demo {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct Demo {
    pub config: PathBuf,
    /// Data directory of the estate.
    pub data: PathBuf,
    /// (name, token, role): stored hashed in the config and in clear in
    /// `DIR/TOKENS.txt` (mode 0600) so a rerun can print them again.
    pub tokens: Vec<(String, String, String)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DemoError + '_ {
    move |e| DemoError::Write {
        path: path.into(),
        message: e.to_string(),
    }
}

/// Generate the estate under `dir`, or reuse it when already generated.
/// Not to be called from inside an async runtime (the estate writer runs its own).
pub fn generate(dir: &Path) -> Result<Demo, DemoError> {
    let config = dir.join("childguard.toml");
    let data = dir.join("data");
    let tokens_file = dir.join("TOKENS.txt");
    if config.exists() && tokens_file.exists() {
        let text = std::fs::read_to_string(&tokens_file).map_err(io(&tokens_file))?;
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
    let config = crate::demo::generate(dir, chrono::Utc::now().date_naive())?;
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
    let mut cfg = std::fs::read_to_string(&config).map_err(io(&config))?;
    cfg.push_str(
        r#"
# Added by `childguard serve --demo`: the daemon's schedules, server and tokens.
[[schedules]]
name = "nightly-scan"
cron = "30 2 * * *"
timezone = "Asia/Shanghai"
job = "scan"
catch_up = true

[[schedules]]
name = "weekly-sweep-plan"
cron = "0 6 * * 1"
timezone = "Asia/Shanghai"
job = "sweep_plan"

[server]
listen = "127.0.0.1:8080"
# Small, paced batches so the dashboard shows a sweep's progress.
sweep_batch_rows = 5
sweep_batch_pause_ms = 100
"#,
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
    std::fs::write(&config, cfg).map_err(io(&config))?;
    std::fs::write(&tokens_file, clear).map_err(io(&tokens_file))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens_file, std::fs::Permissions::from_mode(0o600))
            .map_err(io(&tokens_file))?;
    }
    Ok(Demo {
        config,
        data,
        tokens,
    })
}
