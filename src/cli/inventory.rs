//! `childguard inventory check|list`: validate the purpose inventory and
//! list its gaps (children's PI without owner, retention or subject key).

use super::config::{print_diagnostics, DiagFormat};
use crate::config::check_file;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    #[command(subcommand)]
    pub command: InventoryCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// Validate `[[datasets]]` and list every error and gap with its location.
    /// Exit 1 on errors (or on gaps with --strict).
    Check {
        /// The config file holding the inventory.
        #[arg(
            long,
            short,
            env = "CHILDGUARD_CONFIG",
            default_value = "config/childguard.toml"
        )]
        config: PathBuf,
        /// Output: `text` or `json` (one object per line).
        #[arg(long, value_enum, default_value = "text")]
        format: DiagFormat,
        /// Fail (exit 1) on gaps too, not only on errors.
        #[arg(long)]
        strict: bool,
    },
    /// Print the declared datasets as JSON lines (name, source, owner, retention, categories).
    List {
        /// The config file holding the inventory.
        #[arg(
            long,
            short,
            env = "CHILDGUARD_CONFIG",
            default_value = "config/childguard.toml"
        )]
        config: PathBuf,
    },
}

pub fn run(args: InventoryArgs) -> anyhow::Result<i32> {
    match args.command {
        InventoryCommand::Check {
            config,
            format,
            strict,
        } => {
            let (cfg, diags) = check_file(&config)?;
            // Only inventory problems (and errors that stop parsing at all).
            let diags: Vec<_> = diags
                .into_iter()
                .filter(|d| d.key.starts_with("datasets") || d.key.is_empty() || cfg.is_none())
                .collect();
            let (errors, gaps) = print_diagnostics(&diags, format);
            if format == DiagFormat::Text {
                let n = cfg.as_ref().map_or(0, |c| c.datasets.len());
                eprintln!(
                    "{}: {n} dataset(s), {errors} error(s), {gaps} gap(s)",
                    config.display()
                );
            }
            Ok(if errors > 0 || (strict && gaps > 0) {
                1
            } else {
                0
            })
        }
        InventoryCommand::List { config } => {
            let cfg = crate::config::Config::load(&config)?;
            for d in &cfg.datasets {
                let v = serde_json::json!({
                    "name": d.name,
                    "source": d.source,
                    "match": d.matches,
                    "owner": d.owner,
                    "purpose": d.purpose,
                    "legal_basis": d.legal_basis,
                    "location": d.location,
                    "child_data": d.holds_child_data(),
                    "categories": d.categories,
                    "encrypted": d.encrypted,
                    "subject_key": d.subject_key,
                    "retention": d.retention.as_ref().map(|r| r.to_string()),
                    "disposal": format!("{:?}", d.disposal).to_lowercase(),
                });
                println!("{v}");
            }
            Ok(0)
        }
    }
}
