//! The command line. `anyhow` lives here only; every stage below returns typed errors.

use clap::{Parser, Subcommand};

pub mod serve;

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
    /// Run the daemon: schedules, HTTP API, dashboard and metrics.
    Serve(serve::ServeArgs),
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
