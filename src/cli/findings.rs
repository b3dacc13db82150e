//! `childguard findings list|export|triage`: query the findings store,
//! export it for DuckDB/Spark (Parquet, CSV, JSON lines), and record triage
//! decisions (kept across re-scans; each one is audited).

use super::config::{load_config, open_store, output, runtime};
use crate::finding::{Category, Sensitivity};
use crate::report::export::{export_findings, ExportFormat};
use crate::store::{FindingFilter, TriageStatus};
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct FindingsArgs {
    /// Config file (state_dir / state_url). Without it the store is `$CHILDGUARD_STATE_DIR/childguard.db`.
    #[arg(long, short, global = true, env = "CHILDGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: FindingsCommand,
}

/// Filters shared by `list` and `export`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only findings of this dataset.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Only findings matched to no dataset.
    #[arg(long)]
    pub undeclared: bool,
    /// Only this category (e.g. cn_resident_id).
    #[arg(long, value_parser = |s: &str| s.parse::<Category>())]
    pub category: Option<Category>,
    /// Only children's (true) or non-children's (false) findings.
    #[arg(long)]
    pub child: Option<bool>,
    /// Only this sensitivity: low, medium, high.
    #[arg(long, value_parser = parse_sensitivity)]
    pub severity: Option<Sensitivity>,
    /// Only this triage status: open, confirmed, false_positive, accepted_risk.
    #[arg(long, value_parser = |s: &str| s.parse::<TriageStatus>())]
    pub status: Option<TriageStatus>,
    /// Only findings last seen in this run.
    #[arg(long)]
    pub run: Option<i64>,
    /// Include resolved findings (no longer seen by a later scan).
    #[arg(long)]
    pub include_resolved: bool,
}

fn parse_sensitivity(s: &str) -> Result<Sensitivity, String> {
    match s {
        "low" => Ok(Sensitivity::Low),
        "medium" => Ok(Sensitivity::Medium),
        "high" => Ok(Sensitivity::High),
        _ => Err(format!("`{s}` is not one of low, medium, high")),
    }
}

impl FilterArgs {
    fn filter(&self) -> FindingFilter {
        FindingFilter {
            dataset: self.dataset.clone(),
            undeclared: self.undeclared,
            category: self.category,
            child: self.child,
            sensitivity: self.severity,
            status: self.status,
            run: self.run,
            resolved: if self.include_resolved {
                None
            } else {
                Some(false)
            },
            ..Default::default()
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum FindingsCommand {
    /// List findings (one page), as a table or JSON lines.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Start after this finding id (the `next` value printed by the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Export every matching finding as Parquet, CSV or JSON lines.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Output file (default: stdout; Parquet requires a file).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Set the triage status of a finding (survives re-scans; audited).
    Triage {
        /// The finding id.
        id: String,
        /// New status: open, confirmed, false_positive, accepted_risk.
        #[arg(long, value_parser = |s: &str| s.parse::<TriageStatus>())]
        status: TriageStatus,
        /// Why (kept with the finding and in the audit log).
        #[arg(long)]
        comment: Option<String>,
        /// Who decides (recorded).
        #[arg(long)]
        by: String,
    },
}

pub fn run(args: FindingsArgs) -> anyhow::Result<i32> {
    let cfg = load_config(args.config.as_deref())?;
    let rt = runtime()?;
    let store = open_store(&rt, &cfg)?;
    match args.command {
        FindingsCommand::List {
            filter,
            limit,
            after,
            json,
        } => {
            let mut f = filter.filter();
            f.limit = limit;
            f.after = after;
            let page = rt.block_on(store.findings(&f))?;
            if json {
                for x in &page.items {
                    println!("{}", serde_json::to_string(x)?);
                }
            } else {
                println!(
                    "{:<24}  {:<16}  {:<5}  {:<14}  {:<18}  {:<22}  location",
                    "finding_id", "category", "child", "status", "masked", "dataset"
                );
                for x in &page.items {
                    let l = &x.finding.location;
                    let loc = match (&l.table, &l.path) {
                        (Some(t), _) => format!("{t}.{}", l.column.as_deref().unwrap_or("")),
                        (None, Some(p)) => format!("{p}:{}", l.line.unwrap_or(0)),
                        _ => x.unit_id.clone(),
                    };
                    println!(
                        "{:<24}  {:<16}  {:<5}  {:<14}  {:<18}  {:<22}  {loc}",
                        x.finding.finding_id,
                        x.finding.category.as_str(),
                        x.finding
                            .child
                            .map_or("?", |c| if c { "yes" } else { "no" }),
                        x.triage.status.as_str(),
                        x.finding.masked,
                        x.dataset.as_deref().unwrap_or("(undeclared)")
                    );
                }
                eprintln!(
                    "{} of {} finding(s){}",
                    page.items.len(),
                    page.total,
                    page.next_after
                        .as_ref()
                        .map(|a| format!("; next page: --after {a}"))
                        .unwrap_or_default()
                );
            }
            Ok(0)
        }
        FindingsCommand::Export {
            filter,
            format,
            output: path,
        } => {
            if format == ExportFormat::Parquet && path.is_none() {
                anyhow::bail!("Parquet export needs --output FILE");
            }
            let out = output(path.as_deref())?;
            let n = rt
                .block_on(export_findings(&*store, &filter.filter(), format, out))
                .context("exporting findings")?;
            eprintln!("exported {n} finding(s)");
            Ok(0)
        }
        FindingsCommand::Triage {
            id,
            status,
            comment,
            by,
        } => {
            let f = rt.block_on(store.triage(&id, status, comment.as_deref(), &by))?;
            println!("{} {} (by {})", f.finding.finding_id, f.triage.status, by);
            Ok(0)
        }
    }
}
