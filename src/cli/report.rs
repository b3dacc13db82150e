//! `childguard report`: the yearly self-inspection record (MIIT Order No. 24
//! Art. 16) as HTML (one self-contained file), Markdown or JSON.

use super::config::{load_config, open_store, output, runtime};
use crate::report::{build, render_html, render_json, render_markdown, RunSel};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Config file: the store location and the inventory (owners, declared datasets).
    #[arg(long, short, env = "CHILDGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The run to report on: a run id or `latest`.
    #[arg(long, default_value = "latest")]
    pub run: RunSel,
    /// Output format.
    #[arg(long, value_enum, default_value = "html")]
    pub format: ReportFormat,
    /// Output file (default: stdout).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Md,
    Json,
}

pub fn run(args: ReportArgs) -> anyhow::Result<i32> {
    let cfg = load_config(args.config.as_deref())?;
    let rt = runtime()?;
    let store = open_store(&rt, &cfg)?;
    let data = rt.block_on(build(&*store, args.run, args.config.as_ref().map(|_| &cfg)))?;
    let text = match args.format {
        ReportFormat::Html => render_html(&data),
        ReportFormat::Md => render_markdown(&data),
        ReportFormat::Json => render_json(&data),
    };
    let mut out = output(args.output.as_deref())?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    rt.block_on(store.audit_append(&crate::store::AuditEntry {
        actor: std::env::var("USER").unwrap_or_else(|_| "cli".into()),
        action: "report.generate".into(),
        object: format!("run:{}", data.run.id),
        details: serde_json::json!({ "format": format!("{:?}", args.format).to_lowercase(), "output": args.output }),
    }))?;
    Ok(0)
}
