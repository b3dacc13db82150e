//! `childguard config check FILE`: every error and warning of a config
//! file, each with file:line:col and key path. Also the shared helpers the
//! other commands use to load the config and open the store.

use crate::config::{check_file, Config, Level};
use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a config file and report EVERY problem at once (exit 1 on any error).
    Check {
        /// The config file (TOML), e.g. config/childguard.toml.
        file: PathBuf,
        /// Output: `text` (file:line:col: level: key: message) or `json` (one object per line).
        #[arg(long, value_enum, default_value = "text")]
        format: DiagFormat,
        /// Treat warnings (inventory gaps) as errors.
        #[arg(long)]
        strict: bool,
    },
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiagFormat {
    Text,
    Json,
}

/// Print diagnostics; returns (errors, warnings).
pub(crate) fn print_diagnostics(
    diags: &[crate::config::Diagnostic],
    format: DiagFormat,
) -> (usize, usize) {
    for d in diags {
        match format {
            DiagFormat::Text => println!("{d}"),
            DiagFormat::Json => println!(
                "{}",
                serde_json::to_string(d).expect("diagnostic serializes")
            ),
        }
    }
    let errors = diags.iter().filter(|d| d.level == Level::Error).count();
    (errors, diags.len() - errors)
}

pub fn run(args: ConfigArgs) -> anyhow::Result<i32> {
    match args.command {
        ConfigCommand::Check {
            file,
            format,
            strict,
        } => {
            let (_, diags) = check_file(&file)?;
            let (errors, warnings) = print_diagnostics(&diags, format);
            if format == DiagFormat::Text {
                eprintln!(
                    "{}: {errors} error(s), {warnings} warning(s)",
                    file.display()
                );
            }
            Ok(if errors > 0 || (strict && warnings > 0) {
                1
            } else {
                0
            })
        }
    }
}

/// Load `--config` (or `$CHILDGUARD_CONFIG`); without one, defaults (state
/// directory from `$CHILDGUARD_STATE_DIR`, no inventory).
pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config {
            child_age: 14,
            ..Default::default()
        }),
    }
}

/// Open the store the config points to, inside `rt`.
pub(crate) fn open_store(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
    rt.block_on(crate::store::open(cfg))
        .context("opening the findings store")
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Where to write output: a file, or stdout.
pub(crate) fn output(path: Option<&Path>) -> anyhow::Result<Box<dyn std::io::Write + Send>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout()),
    })
}
