//! The command line. `anyhow` lives here only; every stage below returns typed errors.

use clap::{Parser, Subcommand};

pub mod audit;
pub mod config;
pub mod findings;
pub mod inventory;
pub mod report;

/// childguard — find children's personal information, check it against your
/// purpose inventory, and sweep what is kept past retention.
#[derive(Debug, Parser)]
#[command(name = "childguard", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan files, directories, databases or object stores for children's PI.
    Scan(ScanStub),
    /// Check a config file: every error at once, with file:line:col and key path.
    Config(config::ConfigArgs),
    /// Validate the purpose inventory and list its gaps.
    Inventory(inventory::InventoryArgs),
    /// List, export (Parquet/CSV/JSONL) and triage stored findings.
    Findings(findings::FindingsArgs),
    /// The self-inspection report (MIIT Order No. 24 Art. 16): HTML, Markdown or JSON.
    Report(report::ReportArgs),
    /// Verify or export the hash-chained audit log.
    Audit(audit::AuditArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScanStub {
    pub targets: Vec<String>,
}

/// Run the CLI; returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let r: anyhow::Result<i32> = match cli.command {
        Command::Scan(_) => Err(anyhow::anyhow!("scan is not built yet")),
        Command::Config(a) => config::run(a),
        Command::Inventory(a) => inventory::run(a),
        Command::Findings(a) => findings::run(a),
        Command::Report(a) => report::run(a),
        Command::Audit(a) => audit::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("childguard: error: {e:#}");
            2
        }
    }
}
