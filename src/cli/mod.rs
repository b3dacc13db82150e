//! The command line. `anyhow` lives here only; every stage below returns typed errors.

pub mod erase;
pub mod purge;
pub mod sweep;

use clap::{Parser, Subcommand};

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
    /// Retention sweeps: plan (dry run), approve, run, status.
    Sweep(sweep::SweepArgs),
    /// Erase one child's records on request (CAC Order No. 4 Art. 20).
    Erase(erase::EraseArgs),
    /// Remove all children's PI before the service shuts down (Art. 23).
    Purge(purge::PurgeArgs),
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
        Command::Sweep(a) => sweep::run(a),
        Command::Erase(a) => erase::run(a),
        Command::Purge(a) => purge::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("childguard: error: {e:#}");
            2
        }
    }
}
