//! The command line. `anyhow` lives here only; every stage below returns typed errors.

use clap::{Parser, Subcommand};

pub mod audit;
pub mod config;
pub mod corpus;
pub mod demo;
pub mod detectors;
pub mod erase;
pub mod findings;
pub mod inventory;
pub mod purge;
pub mod report;
pub mod scan;
pub mod serve;
pub mod sweep;

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
    Scan(scan::ScanArgs),
    /// Write a demo estate, scan it into the store, plan a sweep and write the report (quick start).
    Demo(demo::DemoArgs),
    /// Check or list the detector rule packs.
    Detectors(detectors::DetectorsArgs),
    /// Write the labelled synthetic corpus (for tests, benchmarks and demos).
    #[command(hide = true)]
    Corpus(corpus::CorpusArgs),
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
    /// Retention sweeps: plan (dry run), approve, run, status.
    Sweep(sweep::SweepArgs),
    /// Erase one child's records on request (CAC Order No. 4 Art. 20).
    Erase(erase::EraseArgs),
    /// Remove all children's PI before the service shuts down (Art. 23).
    Purge(purge::PurgeArgs),
    /// Run the daemon: schedules, HTTP API, dashboard and metrics.
    Serve(serve::ServeArgs),
}

/// Logs go to stderr; `RUST_LOG` (or `CHILDGUARD_LOG`) selects the level, default `warn`.
/// Log records never carry raw values, only units, paths and causes.
fn init_logging() {
    let filter = std::env::var("CHILDGUARD_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Run the CLI; returns the process exit status.
/// A panic's message may quote the data being decoded (a third-party decoder
/// formatting the bytes it choked on), and childguard never prints what it
/// scans: unless RUST_BACKTRACE is set, a panic prints only where it
/// happened. Readers turn decoder panics into per-unit errors
/// (`source::files::guard_decoder`), so the scan itself goes on.
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".into());
        eprintln!("childguard: internal panic at {at} (message withheld: it may quote scanned data; set RUST_BACKTRACE=1 to see it)");
    }));
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging();
    install_panic_hook();
    let r: anyhow::Result<i32> = match cli.command {
        Command::Scan(args) => scan::run(args),
        Command::Demo(a) => demo::run(a),
        Command::Detectors(a) => detectors::run(a),
        Command::Corpus(a) => corpus::run(a),
        Command::Config(a) => config::run(a),
        Command::Inventory(a) => inventory::run(a),
        Command::Findings(a) => findings::run(a),
        Command::Report(a) => report::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Erase(a) => erase::run(a),
        Command::Purge(a) => purge::run(a),
        Command::Serve(a) => serve::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("childguard: error: {e:#}");
            2
        }
    }
}
