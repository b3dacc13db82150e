//! `childguard detectors check|list`: verify and list the rule packs.

use crate::detect::{check_packs, Engine, EngineOptions};
use crate::fingerprint::Fingerprinter;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DetectorsArgs {
    #[command(subcommand)]
    pub action: DetectorsAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum DetectorsAction {
    /// Verify every rule pack: unique rule ids, all rules compile together,
    /// every example is found by its rule, no negative example is found.
    /// Exit status 1 when a problem is found.
    Check {
        /// Directory of rule packs (*.toml, optional regions.tsv) to check instead of the embedded ones.
        #[arg(long, value_name = "DIR")]
        detectors: Option<PathBuf>,
    },
    /// List the rules: id, category, sensitivity, scanner, pack.
    List {
        /// Directory of rule packs to list instead of the embedded ones.
        #[arg(long, value_name = "DIR")]
        detectors: Option<PathBuf>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn opts(dir: Option<PathBuf>) -> EngineOptions {
    let mut o = EngineOptions::new(chrono::Utc::now().date_naive());
    o.detectors_dir = dir;
    o
}

pub fn run(args: DetectorsArgs) -> anyhow::Result<i32> {
    match args.action {
        DetectorsAction::Check { detectors } => {
            let r = check_packs(opts(detectors))?;
            for p in &r.problems {
                println!("FAIL {p}");
            }
            println!(
                "{} rules, {} examples checked, {} problem(s)",
                r.rules,
                r.examples,
                r.problems.len()
            );
            Ok(if r.problems.is_empty() { 0 } else { 1 })
        }
        DetectorsAction::List { detectors, json } => {
            let e = Engine::new(opts(detectors), Fingerprinter::new(b"list"))?;
            for r in e.rules() {
                if json {
                    let v = serde_json::json!({
                        "id": r.id, "name": r.name, "category": r.category, "sensitivity": r.sensitivity,
                        "scanner": r.spec.scanner, "regex": r.spec.regex, "pack": r.source,
                        "references": r.spec.references,
                    });
                    println!("{v}");
                } else {
                    println!(
                        "{:<22} {:<16} {:<7} {:<16} {}",
                        r.id,
                        r.category.as_str(),
                        format!("{:?}", r.sensitivity).to_lowercase(),
                        r.spec.scanner.as_deref().unwrap_or("regex"),
                        r.name
                    );
                }
            }
            if !json {
                println!(
                    "{} rules; {} administrative division codes",
                    e.rules().len(),
                    e.region_count()
                );
            }
            Ok(0)
        }
    }
}
