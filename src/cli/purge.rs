//! `childguard purge --all-child-data`: CAC Order No. 4 Art. 23 — before a
//! service shuts down, plan the removal of every record of every dataset
//! declared `child_data = true`. Needs an approval and the typed
//! confirmation "DELETE ALL CHILD DATA" (flag or interactive prompt).

use super::sweep::{do_run, open, print_plan, print_run, runtime, whoami, Common};
use crate::sweep::{RunOptions, PURGE_CONFIRMATION};
use std::io::{BufRead, IsTerminal, Write};

/// Delete all children's personal information (service shutdown, Art. 23).
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Required: every record of every dataset with `child_data = true`.
    #[arg(long, required = true)]
    pub all_child_data: bool,
    /// The typed confirmation "DELETE ALL CHILD DATA" (asked interactively when omitted on a terminal).
    #[arg(long)]
    pub confirm: Option<String>,
    /// Execute this approved purge plan instead of planning a new one.
    #[arg(long)]
    pub run: Option<String>,
    /// With --run: continue an interrupted run.
    #[arg(long)]
    pub resume: bool,
    /// Who plans or runs it (recorded). Defaults to $USER.
    #[arg(long = "as")]
    pub by: Option<String>,
    #[command(flatten)]
    pub pace: super::sweep::Pace,
}

fn confirmation(given: Option<String>) -> anyhow::Result<String> {
    if let Some(c) = given {
        return Ok(c);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("purge needs --confirm \"{PURGE_CONFIRMATION}\"");
    }
    eprint!(
        "This removes every record of every child dataset. Type {PURGE_CONFIRMATION} to continue: "
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn run(args: PurgeArgs) -> anyhow::Result<i32> {
    let confirm = confirmation(args.confirm)?;
    if confirm != PURGE_CONFIRMATION {
        anyhow::bail!(
            "confirmation does not match \"{PURGE_CONFIRMATION}\"; nothing planned or removed"
        );
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let mut sw = open(&args.common.config).await?;
        args.pace.apply(&mut sw.settings);
        match args.run {
            Some(plan) => {
                let r = do_run(
                    &sw,
                    &plan,
                    RunOptions {
                        resume: args.resume,
                        subject: None,
                        confirm: Some(confirm),
                        actor: whoami(args.by),
                    },
                )
                .await?;
                Ok(print_run(&r, args.common.json))
            }
            None => {
                let plan = sw.plan_purge(&whoami(args.by)).await?;
                Ok(print_plan(&plan, args.common.json))
            }
        }
    })
}
