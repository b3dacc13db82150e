//! `childguard sweep plan|approve|run|status`: retention sweeps (CAC Order
//! No. 4 Art. 12, 20) with approval (Art. 15), a journal and receipts.

use crate::config::Config;
use crate::sweep::{Plan, RunOptions, RunResult, Stop, Sweeper};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Plan, approve, run and follow retention sweeps.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub cmd: SweepCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum SweepCmd {
    /// Dry run: count what is past retention per dataset, show masked samples, estimate time, store the plan. Changes nothing.
    Plan(PlanArgs),
    /// Approve a plan (required before it runs; the planner cannot approve their own plan).
    Approve(ApproveArgs),
    /// Execute an approved plan in journaled batches; writes a receipt.
    Run(RunArgs),
    /// Show a plan, its approvals and its progress.
    Status(StatusArgs),
}

/// Options shared by sweep, erase and purge.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Configuration file with the purpose inventory (`[[datasets]]`).
    #[arg(long, env = "CHILDGUARD_CONFIG", default_value = "childguard.toml")]
    pub config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only this dataset.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Reference date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC) instead of now; cutoffs are computed from it.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Who plans it (recorded; cannot approve this plan). Defaults to $USER.
    #[arg(long = "as")]
    pub by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub common: Common,
    /// Plan id (from `sweep plan`).
    pub plan: String,
    /// Name of the approver (recorded in the journal, the audit events and the receipt).
    #[arg(long)]
    pub by: String,
    /// Comment recorded with the approval.
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Plan id.
    pub plan: String,
    /// Continue a run that was interrupted (killed, stopped, or failed on one unit).
    #[arg(long)]
    pub resume: bool,
    /// Subject key again, for an erasure plan (only its fingerprint was stored).
    #[arg(long)]
    pub subject: Option<String>,
    /// Typed confirmation for a purge plan: "DELETE ALL CHILD DATA".
    #[arg(long)]
    pub confirm: Option<String>,
    /// Who runs it (recorded). Defaults to $USER.
    #[arg(long = "as")]
    pub by: Option<String>,
    #[command(flatten)]
    pub pace: Pace,
}

/// Pacing of database batches (overrides the `[sweep]` config section).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Pace {
    /// Target duration of one batch transaction in ms (default 200); the batch size adapts to it.
    #[arg(long)]
    pub target_batch_ms: Option<u64>,
    /// Rows in the first batch (default 1000).
    #[arg(long)]
    pub initial_batch: Option<usize>,
    /// Largest batch in rows (default 100000).
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Smallest batch in rows (default 50).
    #[arg(long)]
    pub min_batch: Option<usize>,
    /// Pause between batches in ms (default 0).
    #[arg(long)]
    pub sleep_ms: Option<u64>,
    /// Pause while a PostgreSQL replica lags more than this many ms (default: never).
    #[arg(long)]
    pub max_replica_lag_ms: Option<u64>,
}

impl Pace {
    pub(crate) fn apply(&self, s: &mut crate::sweep::SweepSettings) {
        if let Some(v) = self.target_batch_ms {
            s.target_batch_ms = v;
        }
        if let Some(v) = self.initial_batch {
            s.initial_batch = v;
        }
        if let Some(v) = self.max_batch {
            s.max_batch = v;
        }
        if let Some(v) = self.min_batch {
            s.min_batch = v;
        }
        if let Some(v) = self.sleep_ms {
            s.sleep_ms = v;
        }
        if let Some(v) = self.max_replica_lag_ms {
            s.max_replica_lag_ms = v;
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
    /// Plan id.
    pub plan: String,
}

pub(crate) fn whoami(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The sweeper of a config; its events also go to the store's hash-chained audit log.
pub(crate) async fn open(config: &Path) -> anyhow::Result<Sweeper> {
    let cfg = Config::load(config)?;
    let store = crate::store::open(&cfg)
        .await
        .context("opening the store for the audit log")?;
    let mut sw = Sweeper::open(cfg).await?;
    sw.journal = sw.journal.with_audit(store);
    Ok(sw)
}

fn parse_as_of(s: Option<&str>) -> anyhow::Result<chrono::NaiveDateTime> {
    match s {
        None => Ok(chrono::Utc::now()
            .naive_utc()
            .with_nanosecond(0)
            .expect("0 ns is valid")),
        Some(s) => chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
            })
            .with_context(|| format!("--as-of `{s}`: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS")),
    }
}
use chrono::Timelike;

/// Print a plan (text or JSON); exit 2 when a dataset could not be planned.
pub(crate) fn print_plan(plan: &Plan, json: bool) -> i32 {
    if json {
        println!("{}", serde_json::to_string(plan).expect("plan serializes"));
    } else {
        println!(
            "plan {} ({}) by {}, as of {}: {} records",
            plan.id,
            plan.kind.as_str(),
            plan.created_by,
            plan.as_of,
            plan.total
        );
        if let Some(f) = &plan.subject_fp {
            println!("  subject fingerprint {f}");
        }
        for it in &plan.items {
            let cut = it
                .cutoff
                .map(|c| format!(", records before {c}"))
                .unwrap_or_default();
            println!(
                "  dataset {} [{}] {} ({}{cut}): {} — est. {:.1}s",
                it.dataset, it.source, it.action, it.rule, it.count, it.estimate_secs
            );
            for (c, o) in &it.operators {
                println!("      {c} → {o}");
            }
            for u in &it.units {
                println!(
                    "      {}{}: {}{}",
                    u.name,
                    if u.whole { " (whole file)" } else { "" },
                    u.count,
                    if u.undated > 0 {
                        format!(" ({} undated, kept)", u.undated)
                    } else {
                        String::new()
                    }
                );
            }
            for s in &it.samples {
                println!(
                    "      sample: {}",
                    s.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
        for n in &plan.notes {
            println!("  note: {n}");
        }
        for e in &plan.errors {
            eprintln!("childguard: {e}");
        }
        println!(
            "approve with: childguard sweep approve {} --by NAME",
            plan.id
        );
    }
    if plan.errors.is_empty() {
        0
    } else {
        2
    }
}

/// Print a run result; exit 0 done, 1 verification failed, 2 errors, 3 stopped.
pub(crate) fn print_run(r: &RunResult, json: bool) -> i32 {
    if json {
        println!("{}", serde_json::to_string(r).expect("result serializes"));
    } else {
        println!(
            "plan {}: {} — {} records disposed of; max batch {:.0} ms",
            r.plan_id, r.status, r.disposed, r.max_batch_ms
        );
        if let Some(p) = &r.receipt {
            println!("receipt: {}", p.display());
        }
    }
    for e in &r.errors {
        eprintln!("childguard: {e}");
    }
    match r.status.as_str() {
        "done" => 0,
        "verification_failed" => 1,
        "stopped" => {
            eprintln!(
                "childguard: stopped cleanly after the current batch; continue with --resume"
            );
            3
        }
        _ => 2,
    }
}

pub(crate) async fn do_run(
    sw: &Sweeper,
    plan: &str,
    opts: RunOptions,
) -> anyhow::Result<RunResult> {
    let stop = Stop::new(&sw.state_dir);
    stop.install_signal_handlers();
    Ok(sw.run(plan, &opts, &stop).await?)
}

pub fn run(args: SweepArgs) -> anyhow::Result<i32> {
    let rt = runtime()?;
    rt.block_on(async move {
        match args.cmd {
            SweepCmd::Plan(a) => {
                let as_of = parse_as_of(a.as_of.as_deref())?;
                let sw = open(&a.common.config).await?;
                let plan = sw
                    .plan_retention(a.dataset.as_deref(), as_of, &whoami(a.by))
                    .await?;
                Ok(print_plan(&plan, a.common.json))
            }
            SweepCmd::Approve(a) => {
                let sw = open(&a.common.config).await?;
                sw.approve(&a.plan, &a.by, a.comment.as_deref()).await?;
                println!("plan {} approved by {}", a.plan, a.by);
                Ok(0)
            }
            SweepCmd::Run(a) => {
                let mut sw = open(&a.common.config).await?;
                a.pace.apply(&mut sw.settings);
                let r = do_run(
                    &sw,
                    &a.plan,
                    RunOptions {
                        resume: a.resume,
                        subject: a.subject,
                        confirm: a.confirm,
                        actor: whoami(a.by),
                    },
                )
                .await?;
                Ok(print_run(&r, a.common.json))
            }
            SweepCmd::Status(a) => {
                let sw = open(&a.common.config).await?;
                let s = sw.status(&a.plan).await?;
                if a.common.json {
                    println!("{s}");
                } else {
                    println!(
                        "plan {} ({}) status {}",
                        a.plan,
                        s["plan"]["kind"].as_str().unwrap_or(""),
                        s["status"].as_str().unwrap_or("")
                    );
                    for ap in s["approvals"].as_array().into_iter().flatten() {
                        println!(
                            "  approved by {} at {}",
                            ap["approved_by"].as_str().unwrap_or(""),
                            ap["approved_at"].as_str().unwrap_or("")
                        );
                    }
                    for (u, p) in s["progress"].as_object().into_iter().flatten() {
                        println!(
                            "  {u}: {}/{} disposed in {} batches{}",
                            p["disposed"],
                            p["planned"],
                            p["batches"],
                            if p["complete"] == true {
                                ", complete"
                            } else {
                                ""
                            }
                        );
                    }
                }
                Ok(0)
            }
        }
    })
}
