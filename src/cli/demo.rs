//! `childguard demo`: write the demo estate (logs, a CSV export, JSON-lines
//! events, a SQLite database and a purpose inventory with an undeclared
//! dataset and overdue records), scan it into the embedded store, classify
//! it, plan a retention sweep and write the self-inspection report — the
//! README quick start. `childguard serve --demo DIR` then shows it all on the
//! dashboard.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to write the demo estate, its config, state and report.
    #[arg(long, default_value = "childguard-demo")]
    pub dir: PathBuf,
}

fn step(exe: &PathBuf, args: &[&str]) -> anyhow::Result<i32> {
    eprintln!("\n$ childguard {}", args.join(" "));
    let st = Command::new(exe)
        .args(args)
        .status()
        .with_context(|| format!("running childguard {}", args[0]))?;
    Ok(st.code().unwrap_or(2))
}

pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let demo = crate::daemon::demo::generate(&args.dir).context("writing the demo estate")?;
    let exe = std::env::current_exe().context("locating the childguard binary")?;
    let cfg = demo.config.display().to_string();
    eprintln!("demo estate written under {}", args.dir.display());

    // Scan every configured source into the store; classify against the inventory.
    let code = step(
        &exe,
        &[
            "scan",
            "@school_db",
            "@files",
            "--config",
            &cfg,
            "--format",
            "table",
        ],
    )?;
    if code == 2 {
        bail!("the demo scan could not read part of the estate");
    }
    step(&exe, &["inventory", "check", "--config", &cfg])?;
    step(&exe, &["sweep", "plan", "--config", &cfg])?;
    let report = args.dir.join("report.html");
    let report_s = report.display().to_string();
    step(
        &exe,
        &[
            "report", "--config", &cfg, "--format", "html", "--output", &report_s,
        ],
    )?;
    eprintln!(
        "\nDone. Open {report_s} (the self-inspection report), or see it all on the dashboard:\n  \
         childguard serve --demo {}\n(tokens in {}/TOKENS.txt)",
        args.dir.display(),
        args.dir.display()
    );
    Ok(0)
}
