//! `childguard erase --subject KEY`: CAC Order No. 4 Art. 20 — locate one
//! child's records in every dataset through its `subject_key`, plan, and
//! (after approval) delete them and write a receipt for the guardian. The raw
//! key is only ever fingerprinted in what is stored or printed.

use super::sweep::{do_run, open, print_plan, print_run, runtime, whoami, Common};
use crate::sweep::RunOptions;

/// Erase one child's personal information on request (Art. 20).
#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    #[command(flatten)]
    pub common: Common,
    /// The subject's key as held in the datasets' `subject_key` columns (e.g. a user id or ID number). Never stored; only its keyed fingerprint is.
    #[arg(long)]
    pub subject: String,
    /// Kind of key (`id`, `user_id`, …): limits the erasure to datasets whose subject_key column has this name or declared category; `id` keys are upper-cased.
    #[arg(long)]
    pub key_type: Option<String>,
    /// Only these datasets (repeatable).
    #[arg(long)]
    pub dataset: Vec<String>,
    /// Execute this approved erasure plan instead of planning a new one.
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

pub fn run(args: EraseArgs) -> anyhow::Result<i32> {
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
                        subject: Some(args.subject),
                        confirm: None,
                        actor: whoami(args.by),
                    },
                )
                .await?;
                Ok(print_run(&r, args.common.json))
            }
            None => {
                let plan = sw
                    .plan_erasure(
                        &args.subject,
                        args.key_type.as_deref(),
                        &args.dataset,
                        &whoami(args.by),
                    )
                    .await?;
                let code = print_plan(&plan, args.common.json);
                if !args.common.json {
                    println!(
                        "then run with: childguard erase --subject KEY --run {}",
                        plan.id
                    );
                }
                Ok(code)
            }
        }
    })
}
