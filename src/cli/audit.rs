//! `childguard audit verify|export`: check the hash chain of the audit log
//! (names the first broken row) and export it as JSON lines.

use super::config::{load_config, open_store, output, runtime};
use crate::audit::{export_jsonl, verify_store, VerifyError};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Config file (state_dir / state_url).
    #[arg(long, short, global = true, env = "CHILDGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain; exit 1 and name the first broken row when it fails.
    Verify,
    /// Write the audit log as JSON lines.
    Export {
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

pub fn run(args: AuditArgs) -> anyhow::Result<i32> {
    let cfg = load_config(args.config.as_deref())?;
    let rt = runtime()?;
    let store = open_store(&rt, &cfg)?;
    match args.command {
        AuditCommand::Verify => match rt.block_on(verify_store(&*store)) {
            Ok(n) => {
                println!("audit log intact: {n} row(s) verified");
                Ok(0)
            }
            Err(VerifyError::Broken(e)) => {
                println!("audit log BROKEN: {e}");
                Ok(1)
            }
            Err(e) => Err(e.into()),
        },
        AuditCommand::Export { output: path } => {
            let mut out = output(path.as_deref())?;
            let n = rt.block_on(export_jsonl(&*store, &mut out))?;
            out.flush()?;
            eprintln!("exported {n} audit row(s)");
            Ok(0)
        }
    }
}
