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
    /// Scan only shard K of N (K is 0-based: 0 <= K < N). A unit belongs to shard
    /// K when the first 8 bytes of SHA-256 of its id (path relative to the target,
    /// object key, or schema.table; ranges as ID#pk=LO..HI / ID#bytes=A..B), read
    /// big-endian, are K modulo N — the same on every machine and version. The N
    /// shards together scan exactly the units of the unsharded scan.
    #[arg(long, value_name = "K/N", conflicts_with = "shard_from_env")]
    pub shard: Option<crate::source::shard::Shard>,
    /// Take K from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs) and N from --shards or CHILDGUARD_SHARDS.
    #[arg(long)]
    pub shard_from_env: bool,
    /// Number of shards N for --shard-from-env (default: $CHILDGUARD_SHARDS).
    #[arg(long, value_name = "N", requires = "shard_from_env")]
    pub shards: Option<u64>,
    /// Name the group of shard runs that make up one scan, so reports treat them as one
    /// (default with a shard: `scan-<as-of>-<N>x-<hash of the targets>`, the same in every shard).
    #[arg(long, value_name = "NAME", env = "CHILDGUARD_RUN_GROUP")]
    pub run_group: Option<String>,
    /// With --full, split tables with one integer primary key spanning more than N
    /// keys into key ranges of N (each its own unit; 0: never split).
    #[arg(long, value_name = "N", default_value_t = crate::source::shard::default_range_rows())]
    pub range_rows: u64,
    /// Split uncompressed UTF-8 text / JSON-lines files larger than BYTES into
    /// line-aligned byte ranges of BYTES (each its own unit; 0: never split).
    #[arg(long, value_name = "BYTES", default_value_t = crate::source::shard::default_range_bytes())]
    pub range_bytes: u64,
    /// Share the units through the store's work queue NAME instead of fixed shards:
    /// every process started with the same NAME enqueues the units (once) and claims
    /// them one at a time with an expiring lease; a unit whose worker dies is
    /// claimed again when the lease expires, and is recorded done exactly once.
    /// Use a new NAME per scan (e.g. nightly-2025-06-01); needs the store (--config or --save).
    #[arg(long, value_name = "NAME")]
    pub work_queue: Option<String>,
    /// Lease of a claimed work-queue unit (seconds), renewed while it is scanned.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60,
        requires = "work_queue"
    )]
    pub lease_secs: u64,
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
    /// `K/N` of a sharded scan.
    shard: Option<String>,
    /// Work-queue mode: findings of the unit being scanned, written (with the
    /// unit) before the unit is marked done.
    pending: Option<Vec<Finding>>,
}

impl Recorder {
    fn open(
        config: &Config,
        targets: &[String],
        shard: Option<&str>,
        run_group: Option<&str>,
    ) -> anyhow::Result<Recorder> {
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
        if shard.is_some() || run_group.is_some() {
            rt.block_on(store.set_run_shard(run_id, run_group, shard))
                .context("recording the run's shard")?;
        }
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
            shard: shard.map(Into::into),
            pending: None,
        })
    }

    fn finding(&mut self, f: &Finding) {
        use crate::scan::FindingSink;
        if let Some(p) = &mut self.pending {
            p.push(f.clone());
            return;
        }
        if let Some(s) = &mut self.sink {
            if let Err(e) = s.finding(f.clone()) {
                self.error.get_or_insert(e.to_string());
                self.sink = None;
            }
        }
    }

    /// Work-queue mode: write the claimed unit's findings and record, then
    /// mark it done (false: the claim was lost, another worker redoes it; the
    /// findings written are keyed by finding id, so nothing is doubled).
    fn commit_unit(
        &mut self,
        co: &crate::store::lease::Coordinator,
        claim: &crate::store::lease::Claim,
    ) -> anyhow::Result<bool> {
        let found = self.pending.replace(Vec::new()).unwrap_or_default();
        let unit = self.units.last().cloned();
        let (store, run_id) = (self.store.clone(), self.run_id);
        let done = self.rt.block_on(async {
            store.upsert_findings(run_id, &found).await?;
            if let Some(u) = &unit {
                store.record_unit(run_id, u).await?;
            }
            let result = unit.as_ref().and_then(|u| u.error.clone());
            anyhow::Ok(
                co.complete(claim, Some(result.as_deref().unwrap_or("ok")))
                    .await?,
            )
        })?;
        Ok(done)
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
            store.record_units(run_id, &units).await?;
            store.finish_run(run_id, &stats).await?;
            let as_of = as_of.and_hms_opt(23, 59, 59).expect("valid time");
            anyhow::Ok(crate::classify::classify_run(&*store, run_id, config, as_of).await?)
        })?;
        for p in &classified.problems {
            eprintln!("childguard: warning: {p}");
        }
        let mut msg = format!(
            "run {run_id} recorded in the {} store: {} violation(s); see `childguard report --run {run_id}`\n",
            store.backend(),
            classified.violations.len()
        );
        if let Some(g) = &classified.group {
            msg.push_str(&format!(
                "run group {} complete ({} shards): classified as one scan, {} violation(s); see `childguard report --run {}`\n",
                g.run_group,
                g.runs.len(),
                g.violations,
                g.run_id
            ));
        }
        Ok(msg)
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
                shard: rec.shard.clone(),
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

/// `--work-queue`: list and enqueue every target's units, then claim and scan
/// them one at a time until no unit is pending or held by a live worker.
#[allow(clippy::too_many_arguments)]
fn run_work_queue(
    run: &mut Run,
    args: &ScanArgs,
    queue: &str,
    worker: &str,
    cfg: &Config,
    shard: Option<crate::source::shard::Shard>,
    topts: &TargetOptions,
    engine: &Engine,
    opts: &ScanOptions,
) -> anyhow::Result<()> {
    use crate::store::lease::Coordinator;
    let Some(rec) = run.recorder.as_mut() else {
        bail!("--work-queue needs the store: use --config (or --save)");
    };
    rec.pending = Some(Vec::new());
    let rt = rec.rt.handle().clone();
    let co = rt
        .block_on(Coordinator::open(cfg))
        .context("opening the work queue")?;
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let mut index: std::collections::HashMap<String, (usize, WorkUnit)> = Default::default();
    let mut keys = Vec::new();
    for target in &args.targets {
        let label = target_label(target);
        let listed = open_target(target, topts).and_then(|src| Ok((src.units()?, src)));
        let (units, src) = match listed {
            Ok(x) => x,
            Err(e) => {
                run.error(&label, e);
                continue;
            }
        };
        for u in units {
            if shard.is_some_and(|s| !s.contains(&u.id)) {
                continue;
            }
            let key = format!("{label}\t{}", u.id);
            keys.push(key.clone());
            index.insert(key, (sources.len(), u));
        }
        sources.push(src);
    }
    rt.block_on(co.enqueue(queue, &keys))
        .context("enqueueing units")?;
    let ttl = std::time::Duration::from_secs(args.lease_secs.max(1));
    loop {
        let claim = rt
            .block_on(co.claim(queue, worker, ttl, 1))
            .context("claiming a unit")?
            .pop();
        let Some(claim) = claim else {
            let c = rt
                .block_on(co.counts(queue))
                .context("reading the work queue")?;
            if c.pending + c.claimed + c.expired == 0 {
                break;
            }
            // Units held by other workers come back if those workers die.
            std::thread::sleep((ttl / 4).min(std::time::Duration::from_secs(1)));
            continue;
        };
        let Some((i, unit)) = index.get(&claim.unit_id).cloned() else {
            // Enqueued by a worker that listed differently (other targets or filters):
            // hand it back for a worker that can scan it, and stop (exit 2).
            rt.block_on(co.give_back(&claim))?;
            let label = claim.unit_id.replace('\t', " ");
            run.error(
                queue,
                UnitError::new(
                    label,
                    "in the work queue but not listed by this worker: every worker of a queue needs the same targets and filters",
                ),
            );
            break;
        };
        let hb = {
            let (co, claim) = (co.clone(), claim.clone());
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    if !co.heartbeat(&claim, ttl).await.unwrap_or(false) {
                        break;
                    }
                }
            })
        };
        run.scan_source(sources[i].as_ref(), vec![unit], engine, opts);
        // The lease is renewed until the findings are written and the unit is marked done.
        let rec = run.recorder.as_mut().expect("checked above");
        let committed = rec.commit_unit(&co, &claim);
        hb.abort();
        if !committed? {
            tracing::warn!(unit = %claim.unit_id, "claim lost while scanning: another worker redoes the unit");
        }
        if run.write_error.is_some() {
            break;
        }
    }
    Ok(())
}

/// This host's name, for work-queue worker ids.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "host".into()
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
    files_cfg.range_bytes = args.range_bytes;
    if let Some(c) = args.chunk_size {
        if c < 64 {
            bail!("--chunk-size must be at least 64 bytes");
        }
        files_cfg.chunk_bytes = c;
    }
    let fail_on = args.fail_on.as_deref().map(FailOn::parse).transpose()?;
    let shard = match (args.shard, args.shard_from_env) {
        (Some(s), _) => Some(s),
        (None, true) => Some(
            crate::source::shard::Shard::from_env(args.shards, |k| std::env::var(k).ok())
                .context("--shard-from-env")?,
        ),
        (None, false) => None,
    };
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
            // Key ranges only when every row is read; a sample is one unit.
            range_rows: if args.full { args.range_rows } else { 0 },
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
    let worker = format!(
        "{}/{}/{:08x}",
        hostname(),
        std::process::id(),
        rand::random::<u32>()
    );
    let recorder = if save {
        let mut cfg = config.clone();
        cfg.state_dir = Some(state_dir.clone());
        let labels: Vec<String> = args.targets.iter().map(|t| target_label(t)).collect();
        let group = args.run_group.clone().or_else(|| {
            shard
                .map(|s| {
                    let h = crate::source::incremental::source_hash(&labels.join("\n"));
                    format!("scan-{as_of}-{}x-{}", s.count, &h[..12])
                })
                .or_else(|| args.work_queue.clone())
        });
        // A work-queue worker's units are recorded with its worker id.
        let label = match (&args.work_queue, shard) {
            (Some(_), _) => Some(worker.clone()),
            (None, s) => s.map(|s| s.to_string()),
        };
        Some(Recorder::open(
            &cfg,
            &labels,
            label.as_deref(),
            group.as_deref(),
        )?)
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
    if let Some(queue) = &args.work_queue {
        let mut cfg = config.clone();
        cfg.state_dir = Some(state_dir.clone());
        run_work_queue(
            &mut run, &args, queue, &worker, &cfg, shard, &topts, &engine, &opts,
        )?;
    }
    for target in args.targets.iter().filter(|_| args.work_queue.is_none()) {
        let src = match open_target(target, &topts) {
            Ok(s) => s,
            Err(e) => {
                run.error(&target_label(target), e);
                continue;
            }
        };
        let units = match src.units() {
            // Units of other shards are not this run's: not scanned, not recorded, not missing.
            Ok(u) => match shard {
                Some(s) => u.into_iter().filter(|u| s.contains(&u.id)).collect(),
                None => u,
            },
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
        // Targets listed completely (no include/exclude filter, not sharded):
        // findings of their units that no longer exist resolve.
        let complete = if args.include.is_empty()
            && args.exclude.is_empty()
            && shard.is_none()
            && args.work_queue.is_none()
        {
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
