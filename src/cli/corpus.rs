//! `childguard corpus` (hidden): write the labelled synthetic corpus used by
//! the quality tests, the benchmarks and the demo.

use crate::corpus::{write_corpus, CorpusOptions};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CorpusArgs {
    /// Output directory (created): corpus.log, corpus.gb18030.log, corpus.log.gz, truth.jsonl, students.csv, students.truth.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of log lines.
    #[arg(long, default_value_t = 10_000)]
    pub lines: u64,
    /// Rows of the students table.
    #[arg(long, default_value_t = 1_000)]
    pub rows: usize,
    /// Seed: the same seed writes the same corpus.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Reference date (YYYY-MM-DD) at which generated children are under 14.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<chrono::NaiveDate>,
}

pub fn run(args: CorpusArgs) -> anyhow::Result<i32> {
    let as_of = args
        .as_of
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let opts = CorpusOptions {
        seed: args.seed,
        as_of,
    };
    write_corpus(&args.out, &opts, args.lines, args.rows)
        .map_err(|e| anyhow::anyhow!("writing corpus to {}: {e}", args.out.display()))?;
    eprintln!(
        "wrote {} lines and {} table rows to {}",
        args.lines,
        args.rows,
        args.out.display()
    );
    Ok(0)
}
