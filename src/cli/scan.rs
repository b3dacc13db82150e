//! `childguard scan TARGET...`: find children's personal information in
//! files, directories (and, as their sources land, databases and object
//! stores), print findings, exit 0 / 1 (`--fail-on` matched) / 2 (a target
//! or unit could not be read; the others are still scanned and reported).

use crate::config::Config;
use crate::detect::{Engine, EngineOptions};
use crate::finding::{Category, Finding};
use crate::fingerprint::{default_state_dir, Fingerprinter};
use crate::output::{printer, OutputFormat, Printer, ScanSummary, UnitIssue};
use crate::source::{
    open_target, target_label, ScanOptions, Source, TargetOptions, UnitError, UnitStats, WorkUnit,
};
use anyhow::{bail, Context};
use chrono::NaiveDate;
use rayon::prelude::*;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// What to scan: files and directories (also `file://PATH`); databases
    /// (`postgres://`, `mysql://`, `mariadb://`, `sqlite://PATH`); object stores
    /// (`s3://bucket/prefix`, `gs://`, `az://`); or `@NAME` of a `[[sources]]` entry in --config.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Output format; `table` on a terminal, `jsonl` when stdout is piped or `--output` is given.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Write findings to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Reference date for ages (YYYY-MM-DD); default today.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// A person younger than N years at `--as-of` is a child (default 14, CAC Order No. 4 Art. 2; or `child_age` from --config).
    #[arg(long, value_name = "N")]
    pub child_age: Option<u32>,
    /// Exit 1 when a finding matches: `child` (a child's PI), `any`, or a category id such as `cn_resident_id`.
    #[arg(long, value_name = "child|any|CATEGORY")]
    pub fail_on: Option<String>,
    /// Only scan files whose path relative to the target matches GLOB (repeatable; `*` also matches `/`).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Do not scan files or directories matching GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Use the rule packs in DIR instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub detectors: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress bar and no summary on stderr (errors are still printed). The progress
    /// bar (bytes, throughput, ETA) is shown on a terminal stderr while findings go to a pipe or file.
    #[arg(long, short)]
    pub quiet: bool,
    /// Read every row of database tables instead of a sample (files are always read whole).
    #[arg(long)]
    pub full: bool,
    /// Rows sampled per database table when not `--full`.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub sample_rows: u64,
    /// List the row keys (primary keys; line numbers for CSV, row numbers for Parquet) of rows holding child PI.
    #[arg(long)]
    pub rows: bool,
    /// Record the run in the findings store (SQLite under the state dir, or the
    /// config's `state_url`) and classify it against the purpose inventory.
    /// On by default with `--config`; `--no-save` turns it off.
    #[arg(long)]
    pub save: bool,
    /// Do not record the run in the store, even with `--config`.
    #[arg(long, conflicts_with = "save")]
    pub no_save: bool,
    /// Configuration file (state_dir, state_url, child_age, `[[sources]]`, the purpose inventory `[[datasets]]`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory holding the fingerprint key (default: $CHILDGUARD_STATE_DIR, else ~/.local/state/childguard).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Databases and object stores: skip tables and objects unchanged since the last
    /// incremental scan, and read only rows newer than a table's declared watermark column.
    #[arg(long)]
    pub incremental: bool,
    /// Size of the newline-aligned chunks large text files are split into and scanned in parallel (bytes).
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<usize>,
}

/// What `--fail-on` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FailOn {
    Child,
    Any,
    Category(Category),
}

impl FailOn {
    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "child" => FailOn::Child,
            "any" => FailOn::Any,
            c => FailOn::Category(c.parse::<Category>().map_err(|e| {
                anyhow::anyhow!("--fail-on: {e} (use child, any or a category id)")
            })?),
        })
    }

    fn matches(self, f: &Finding) -> bool {
        match self {
            FailOn::Child => f.child == Some(true),
            FailOn::Any => true,
            FailOn::Category(c) => f.category == c,
        }
    }
}

/// Unit sizes above which a unit is scanned alone (with parallel chunks
/// inside and findings streamed) instead of in a batch of small units
/// whose findings are held until the batch is printed in order.
const LIGHT_MAX: u64 = 4 << 20;
const LIGHT_MAX_COMPRESSED: u64 = 256 << 10;
const BATCH_BYTES: u64 = 32 << 20;
const BATCH_UNITS: usize = 256;

fn is_light(u: &WorkUnit) -> bool {
    let id = u.id.to_ascii_lowercase();
    let table_like = [".parquet", ".pq", ".csv", ".tsv"]
        .iter()
        .any(|e| id.ends_with(e));
    let compressed = [".gz", ".zst", ".zstd", ".gzip"]
        .iter()
        .any(|e| id.ends_with(e));
    match u.size {
        None => true,
        Some(_) if table_like => true,
        Some(s) if compressed => s <= LIGHT_MAX_COMPRESSED,
        Some(s) => s <= LIGHT_MAX,
    }
}

/// Records a scan run in the findings store: findings through the batched
/// [`StoreSink`], units, run stats, then classification into violations.
struct Recorder {
    rt: tokio::runtime::Runtime,
    store: std::sync::Arc<dyn crate::store::Store>,
    run_id: i64,
    sink: Option<crate::store::StoreSink>,
    writer: Option<crate::store::WriterHandle>,
    units: Vec<crate::store::UnitRecord>,
    error: Option<String>,
}

impl Recorder {
    fn open(config: &Config, targets: &[String]) -> anyhow::Result<Recorder> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the store runtime")?;
        let store = rt
            .block_on(crate::store::open(config))
            .context("opening the findings store")?;
        let run_id = rt
            .block_on(store.begin_run(targets))
            .context("recording the run")?;
        let (sink, writer) = {
            let _g = rt.enter();
            crate::store::StoreSink::spawn(store.clone(), run_id)
        };
        Ok(Recorder {
            rt,
            store,
            run_id,
            sink: Some(sink),
            writer: Some(writer),
            units: Vec::new(),
            error: None,
        })
    }

    fn finding(&mut self, f: &Finding) {
        use crate::scan::FindingSink;
        if let Some(s) = &mut self.sink {
            if let Err(e) = s.finding(f.clone()) {
                self.error.get_or_insert(e.to_string());
                self.sink = None;
            }
        }
    }

    /// Flush, finish the run, classify. Returns a one-line summary for stderr.
    fn finish(
        mut self,
        config: &Config,
        summary: &ScanSummary,
        complete: Vec<String>,
        as_of: NaiveDate,
    ) -> anyhow::Result<String> {
        self.sink = None;
        if let Some(w) = self.writer.take() {
            w.finish().context("writing findings to the store")?;
        }
        if let Some(e) = self.error {
            bail!("writing findings to the store: {e}");
        }
        let store = self.store.clone();
        let run_id = self.run_id;
        let units = std::mem::take(&mut self.units);
        let stats = crate::store::RunStats {
            units: units.len() as u64,
            units_failed: units.iter().filter(|u| u.error.is_some()).count() as u64,
            bytes: summary.bytes,
            rows: summary.rows,
            findings: summary.findings,
            complete_targets: complete,
            error: None,
        };
        let classified = self.rt.block_on(async {
            for u in &units {
                store.record_unit(run_id, u).await?;
            }
            store.finish_run(run_id, &stats).await?;
            let as_of = as_of.and_hms_opt(23, 59, 59).expect("valid time");
            anyhow::Ok(crate::classify::classify_run(&*store, run_id, config, as_of).await?)
        })?;
        for p in &classified.problems {
            eprintln!("childguard: warning: {p}");
        }
        Ok(format!(
            "run {run_id} recorded in the {} store: {} violation(s); see `childguard report --run {run_id}`\n",
            store.backend(),
            classified.violations.len()
        ))
    }
}

/// The running scan: printer, tallies, progress.
struct Run {
    recorder: Option<Recorder>,
    printer: Box<dyn Printer>,
    summary: ScanSummary,
    fail_on: Option<FailOn>,
    failed: bool,
    write_error: Option<std::io::Error>,
    progress: Option<indicatif::ProgressBar>,
    files_done: u64,
}

impl Run {
    fn finding(&mut self, f: Finding) {
        if self.write_error.is_some() {
            return;
        }
        self.summary.add(&f);
        if let Some(r) = &mut self.recorder {
            r.finding(&f);
        }
        if self.fail_on.is_some_and(|fo| fo.matches(&f)) {
            self.failed = true;
        }
        if let Err(e) = self.printer.finding(&f) {
            self.write_error = Some(e);
        }
    }

    fn error(&mut self, target: &str, e: UnitError) {
        let issue = UnitIssue {
            target: target.to_string(),
            unit: e.unit,
            message: e.message,
        };
        let line = format!(
            "childguard: error: {}: {}",
            crate::output::unit_label(&issue),
            issue.message
        );
        match &self.progress {
            Some(p) => p.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
        self.summary.errors.push(issue);
    }

    fn unit_done(&mut self, target: &str, unit: &WorkUnit, r: Result<UnitStats, UnitError>) {
        if let Some(rec) = &mut self.recorder {
            let (bytes, rows, error, skipped) = match &r {
                Ok(st) => (st.bytes, st.rows, None, st.skipped.clone()),
                Err(e) => (0, 0, Some(e.message.clone()), None),
            };
            rec.units.push(crate::store::UnitRecord {
                target: target.to_string(),
                unit_id: unit.id.clone(),
                bytes,
                rows,
                error,
                skipped,
            });
        }
        match r {
            Ok(st) => {
                if let Some(why) = st.skipped {
                    tracing::info!(unit = %unit.id, reason = %why, "skipped");
                    self.summary.skipped.push(UnitIssue {
                        target: target.into(),
                        unit: unit.id.clone(),
                        message: why,
                    });
                } else {
                    self.summary.units_scanned += 1;
                    self.summary.bytes += st.bytes;
                    self.summary.rows += st.rows;
                }
            }
            Err(e) => self.error(target, e),
        }
        self.files_done += 1;
        if let Some(p) = &self.progress {
            p.set_message(format!(
                "{} units, {} findings",
                self.files_done, self.summary.findings
            ));
        }
    }

    fn scan_source(
        &mut self,
        src: &dyn Source,
        units: Vec<WorkUnit>,
        engine: &Engine,
        opts: &ScanOptions,
    ) {
        let target = target_label(src.target());
        let mut batch: Vec<WorkUnit> = Vec::new();
        let mut batch_bytes = 0u64;
        let mut units = units.into_iter().peekable();
        while units.peek().is_some() || !batch.is_empty() {
            if self.write_error.is_some() {
                return;
            }
            let next_light = units.peek().map(is_light);
            let flush = match next_light {
                None => true,
                Some(false) => !batch.is_empty(),
                Some(true) => batch.len() >= BATCH_UNITS || batch_bytes >= BATCH_BYTES,
            };
            if flush && !batch.is_empty() {
                let results: Vec<(Vec<Finding>, Result<UnitStats, UnitError>)> = batch
                    .par_iter()
                    .map(|u| {
                        let mut v = Vec::new();
                        let r = src.scan_unit(u, engine, opts, &mut |f| v.push(f));
                        (v, r)
                    })
                    .collect();
                for (u, (fs, r)) in batch.drain(..).zip(results) {
                    for f in fs {
                        self.finding(f);
                    }
                    self.unit_done(&target, &u, r);
                }
                batch_bytes = 0;
                continue;
            }
            let Some(u) = units.next() else { continue };
            if next_light == Some(true) {
                batch_bytes += u.size.unwrap_or(0);
                batch.push(u);
            } else {
                let r = src.scan_unit(&u, engine, opts, &mut |f| self.finding(f));
                self.unit_done(&target, &u, r);
            }
        }
    }
}

pub fn run(args: ScanArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut files_cfg = config.files.clone();
    files_cfg.include.extend(args.include.iter().cloned());
    files_cfg.exclude.extend(args.exclude.iter().cloned());
    if let Some(c) = args.chunk_size {
        if c < 64 {
            bail!("--chunk-size must be at least 64 bytes");
        }
        files_cfg.chunk_bytes = c;
    }
    let fail_on = args.fail_on.as_deref().map(FailOn::parse).transpose()?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("--threads: cannot set up the thread pool")?;
    }
    let as_of = args
        .as_of
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    let child_age = args.child_age.unwrap_or(if args.config.is_some() {
        config.child_age
    } else {
        14
    });
    let state_dir = args
        .state_dir
        .clone()
        .or(config.state_dir.clone())
        .unwrap_or_else(default_state_dir);
    let fp = Fingerprinter::load(&state_dir)?;
    let engine = Engine::new(
        EngineOptions {
            as_of,
            child_age,
            detectors_dir: args.detectors.clone(),
        },
        fp,
    )?;
    let opts = ScanOptions {
        full: args.full,
        sample_rows: args.sample_rows,
        rows: args.rows,
    };
    let bytes_read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let topts = TargetOptions {
        files: files_cfg.clone(),
        sources: config.sources.clone(),
        remote: crate::source::db::RemoteOptions {
            incremental: args.incremental,
            state_dir: Some(state_dir.clone()),
            include: args.include.clone(),
            exclude: args.exclude.clone(),
            readers: Some(files_cfg),
        },
        progress: Some(bytes_read.clone()),
    };

    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let format = args.format.unwrap_or(if to_terminal {
        OutputFormat::Table
    } else {
        OutputFormat::Jsonl
    });
    let out: Box<dyn Write + Send> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::fs::File::create(p).with_context(|| format!("--output {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout(),
        )),
    };
    let show_progress = !args.quiet && std::io::stderr().is_terminal() && !to_terminal;
    let progress = show_progress.then(|| {
        let p = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
        p.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        p
    });
    let ticker_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = progress.clone().map(|p| {
        let (stop, bytes) = (ticker_stop.clone(), bytes_read.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                p.set_position(bytes.load(std::sync::atomic::Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    });
    let save = (args.save || args.config.is_some()) && !args.no_save;
    let recorder = if save {
        let mut cfg = config.clone();
        cfg.state_dir = Some(state_dir.clone());
        let labels: Vec<String> = args.targets.iter().map(|t| target_label(t)).collect();
        Some(Recorder::open(&cfg, &labels)?)
    } else {
        None
    };
    let mut run = Run {
        recorder,
        printer: printer(format, out),
        summary: ScanSummary {
            targets: args.targets.iter().map(|t| target_label(t)).collect(),
            as_of: as_of.to_string(),
            ..Default::default()
        },
        fail_on,
        failed: false,
        write_error: None,
        progress,
        files_done: 0,
    };
    for target in &args.targets {
        let src = match open_target(target, &topts) {
            Ok(s) => s,
            Err(e) => {
                run.error(&target_label(target), e);
                continue;
            }
        };
        let units = match src.units() {
            Ok(u) => u,
            Err(e) => {
                run.error(&target_label(target), e);
                continue;
            }
        };
        if let Some(p) = &run.progress {
            p.inc_length(units.iter().filter_map(|u| u.size).sum());
        }
        run.scan_source(src.as_ref(), units, &engine, &opts);
    }
    ticker_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    if let Some(p) = run.progress.take() {
        p.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    run.summary.elapsed_seconds = (elapsed * 1000.0).round() / 1000.0;
    run.summary.mb_per_second = if elapsed > 0.0 {
        (run.summary.bytes as f64 / 1e6 / elapsed * 10.0).round() / 10.0
    } else {
        0.0
    };
    if run.write_error.is_none() {
        if let Err(e) = run.printer.finish(&run.summary) {
            run.write_error = Some(e);
        }
    }
    if let Some(e) = run.write_error.take() {
        // A reader that stopped early (`| head`) is not an error, as in ripgrep.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(0);
        }
        eprintln!("childguard: error: writing findings: {e}");
        return Ok(2);
    }
    if !args.quiet {
        eprint!("{}", run.summary.render());
    }
    if let Some(rec) = run.recorder.take() {
        let mut cfg = config.clone();
        cfg.state_dir = Some(state_dir.clone());
        // Targets listed completely (no include/exclude filter): findings of
        // their units that no longer exist resolve.
        let complete = if args.include.is_empty() && args.exclude.is_empty() {
            run.summary.targets.clone()
        } else {
            Vec::new()
        };
        let line = rec.finish(&cfg, &run.summary, complete, as_of)?;
        if !args.quiet {
            eprint!("{line}");
        }
    }
    Ok(if !run.summary.errors.is_empty() {
        2
    } else if run.failed {
        1
    } else {
        0
    })
}
