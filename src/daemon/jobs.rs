//! The daemon's jobs: scan (files, logs and SQLite databases into the state
//! database, with classification against the purpose inventory), sweep
//! planning and execution (batched, resumable, checkpointed on shutdown),
//! erasure of a subject (Art. 20), and the self-inspection report
//! (MIIT Order No. 24 Art. 16).

use crate::config::inventory::{Clock, Dataset};
use crate::config::Config;
use crate::daemon::state::{now, AuditEntry, StateError};
use crate::daemon::Daemon;
use crate::finding::{Finding, Location};
use crate::scan::table::TableScanner;
use chrono::{NaiveDateTime, Utc};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of a job, each naming the unit (file, table, plan) and the cause.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Classify(#[from] crate::classify::ClassifyError),
    #[error("{unit}: {message}")]
    Unit { unit: String, message: String },
    #[error("a {0} is already running")]
    Busy(&'static str),
    #[error("{0}")]
    Invalid(String),
}

fn unit_err(unit: impl Into<String>, e: impl std::fmt::Display) -> JobError {
    JobError::Unit {
        unit: unit.into(),
        message: e.to_string(),
    }
}

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// A SQLite path from `sqlite://path` / `sqlite:path`, if the string is one.
pub fn sqlite_path(s: &str) -> Option<PathBuf> {
    s.strip_prefix("sqlite://")
        .or_else(|| s.strip_prefix("sqlite:"))
        .map(PathBuf::from)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn globset(pats: &[String], unit: &str) -> Result<Option<GlobSet>, JobError> {
    if pats.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in pats {
        b.add(Glob::new(p).map_err(|e| unit_err(format!("dataset {unit}: match `{p}`"), e))?);
    }
    Ok(Some(
        b.build()
            .map_err(|e| unit_err(format!("dataset {unit}"), e))?,
    ))
}

async fn open_sqlite(path: &Path, write: bool) -> Result<SqliteConnection, JobError> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(!write)
        .busy_timeout(std::time::Duration::from_secs(10))
        .disable_statement_logging();
    SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| unit_err(path.display().to_string(), e))
}

async fn sqlite_tables(c: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name").fetch_all(c).await
}

/// Where a dataset lives: its `source` resolved through `[[sources]]`
/// (`name` → `url`) when it names one, else the source string itself (a path
/// or URL).
pub fn source_location(cfg: &Config, source: &str) -> String {
    let url = cfg
        .sources
        .iter()
        .find(|s| s.name == source)
        .map(|s| s.url.clone())
        .or_else(|| cfg.source_targets().get(source).cloned())
        .unwrap_or_else(|| source.to_string());
    match url.strip_prefix("file://") {
        Some(p) => p.strip_prefix("localhost").unwrap_or(p).to_string(),
        None => url,
    }
}

fn canon(p: PathBuf) -> PathBuf {
    p.canonicalize().unwrap_or(p)
}

/// Which dataset a finding belongs to (by source location and `match` globs).
pub fn dataset_for<'a>(cfg: &'a Config, f: &Finding) -> Option<&'a Dataset> {
    if let Some(table) = &f.location.table {
        let db = canon(sqlite_path(&f.target).unwrap_or_else(|| PathBuf::from(&f.target)));
        let short = table.strip_prefix("main.").unwrap_or(table);
        return cfg.datasets.iter().find(|d| {
            let loc = source_location(cfg, &d.source);
            let p = sqlite_path(&loc).unwrap_or_else(|| PathBuf::from(&loc));
            canon(p) == db
                && (d.matches.is_empty()
                    || globset(&d.matches, &d.name)
                        .ok()
                        .flatten()
                        .is_some_and(|g| g.is_match(table) || g.is_match(short)))
        });
    }
    let t = PathBuf::from(f.target.strip_prefix("file://").unwrap_or(&f.target));
    let abs = match &f.location.path {
        Some(p) if t.is_dir() => t.join(p),
        _ => t,
    };
    let abs = canon(abs);
    cfg.datasets.iter().find(|d| {
        let loc = source_location(cfg, &d.source);
        if loc.contains("://") {
            return false;
        }
        let src = canon(PathBuf::from(&loc));
        let Ok(rel) = abs.strip_prefix(&src) else {
            return false;
        };
        d.matches.is_empty()
            || globset(&d.matches, &d.name)
                .ok()
                .flatten()
                .is_some_and(|g| g.is_match(rel))
    })
}

/// Violations of one finding against the inventory: (kind, article, severity, message).
pub fn violations_of(
    d: Option<&Dataset>,
    f: &Finding,
) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let place = f
        .location
        .table
        .clone()
        .or_else(|| f.location.path.clone())
        .unwrap_or_else(|| f.target.clone());
    let mut out = Vec::new();
    let child = f.child == Some(true) || f.category == crate::finding::Category::VulnerableChild;
    match d {
        None if child => out.push((
            "undeclared_dataset",
            "CAC Order No. 4 Art. 7, 11",
            "high",
            format!(
                "children's PI ({}) in {place}, which no dataset in the inventory declares",
                f.category
            ),
        )),
        None => {}
        Some(d) => {
            let col = f.location.column.as_deref().or(f.location.field.as_deref());
            let declared: Vec<_> = col
                .and_then(|c| d.categories.get(c))
                .into_iter()
                .chain(d.categories.get("*"))
                .flatten()
                .collect();
            if !d.categories.is_empty() && !declared.contains(&&f.category) {
                out.push((
                    "undeclared_category",
                    "CAC Order No. 4 Art. 7, 14",
                    if child { "high" } else { "medium" },
                    format!(
                        "{} found in {place}{}, not declared for dataset {}",
                        f.category,
                        col.map(|c| format!(" ({c})")).unwrap_or_default(),
                        d.name
                    ),
                ));
            }
            if child && !d.child_data {
                out.push((
                    "undeclared_child_data",
                    "CAC Order No. 4 Art. 7, 10",
                    "high",
                    format!("children's PI ({}) in {place}; dataset {} is not declared to hold children's data", f.category, d.name),
                ));
            }
            if col.is_some_and(|c| d.encrypted.iter().any(|e| e == c)) {
                out.push((
                    "plaintext_in_encrypted",
                    "CAC Order No. 4 Art. 13",
                    "high",
                    format!(
                        "plaintext {} in {place} ({}), declared encrypted",
                        f.category,
                        col.unwrap_or("")
                    ),
                ));
            }
        }
    }
    out
}

#[derive(Default)]
struct ScanTally {
    units: i64,
    bytes: i64,
    findings: i64,
    child: i64,
    violations: i64,
    errors: i64,
    interrupted: bool,
}

/// The scan's record in the shared store: its run, the batched finding
/// writer, and the per-unit stats `finish_run` receives.
struct Recorder {
    run: i64,
    sink: crate::store::StoreSink,
    stats: crate::store::RunStats,
}

impl Recorder {
    /// Record one work unit (its findings went through the sink).
    fn unit(&mut self, d: &Daemon, rt: &tokio::runtime::Handle, u: crate::store::UnitRecord) {
        self.stats.bytes += u.bytes;
        self.stats.rows += u.rows;
        if u.error.is_some() {
            self.stats.units_failed += 1;
        } else if u.skipped.is_none() {
            self.stats.units += 1;
        }
        if let Err(e) = rt.block_on(d.store.record_unit(self.run, &u)) {
            tracing::error!(run = self.run, unit = %u.unit_id, error = %e, "cannot record a work unit");
        }
    }
}

/// Scan `targets` (files, directories, `sqlite://` URLs); empty means every
/// dataset's source. Returns the run id. One scan at a time.
pub async fn scan(
    d: Arc<Daemon>,
    targets: Vec<String>,
    trigger: &str,
    by: &str,
) -> Result<i64, JobError> {
    let guard = d
        .scan_lock
        .clone()
        .try_lock_owned()
        .map_err(|_| JobError::Busy("scan"))?;
    let targets = if targets.is_empty() {
        let mut t: Vec<String> = d
            .config
            .datasets
            .iter()
            .map(|ds| source_location(&d.config, &ds.source))
            .collect();
        t.sort();
        t.dedup();
        t
    } else {
        targets
    };
    let run_id = d.state.create_run("scan", trigger, by, &targets).await?;
    let store_run = d.store.begin_run(&targets).await?;
    d.audit(
        by,
        "-",
        "scan.start",
        &format!("run/{run_id}"),
        "ok",
        Some(format!("{} targets", targets.len())),
    );
    let dd = d.clone();
    tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        let d2 = dd.clone();
        let (sink, writer) = crate::store::StoreSink::spawn(dd.store.clone(), store_run);
        let mut rec = Recorder {
            run: store_run,
            sink,
            stats: Default::default(),
        };
        let res = tokio::task::spawn_blocking(move || {
            let r = scan_blocking(&d2, run_id, &targets, &mut rec);
            (r, rec.stats)
        })
        .await;
        let (res, mut stats) = match res {
            Ok((r, stats)) => (Ok(r), stats),
            Err(e) => (Err(e), Default::default()),
        };
        if let Err(e) = writer.finish_async().await {
            tracing::error!(run = store_run, error = %e, "findings not all written to the store");
            stats.error.get_or_insert_with(|| e.to_string());
        }
        let (status, tally, msg) = match res {
            Ok(Ok(t)) if t.interrupted => (
                "interrupted",
                t,
                Some("stopped by shutdown; findings so far are stored".to_string()),
            ),
            Ok(Ok(t)) => ("completed", t, None),
            Ok(Err(e)) => ("failed", ScanTally::default(), Some(e.to_string())),
            Err(e) => (
                "failed",
                ScanTally::default(),
                Some(format!("scan task: {e}")),
            ),
        };
        if let Some(err) = res_status(status, &msg) {
            stats.error.get_or_insert(err);
        }
        stats.findings = tally.findings as u64;
        if let Err(e) = record_end(&dd, store_run, &stats).await {
            tracing::error!(run = store_run, error = %e, "cannot record the end of a scan in the store");
        }
        if let Err(e) = dd
            .state
            .finish_run(
                run_id,
                status,
                tally.units,
                tally.bytes,
                tally.findings,
                tally.child,
                tally.violations,
                tally.errors,
                msg.as_deref(),
            )
            .await
        {
            tracing::error!(run = run_id, error = %e, "cannot record the end of a scan");
        }
        dd.metrics
            .inc("childguard_scans_total", &[("outcome", status)], 1.0);
        dd.metrics
            .inc("childguard_scan_bytes_total", &[], tally.bytes as f64);
        dd.metrics
            .inc("childguard_scan_units_total", &[], tally.units as f64);
        dd.metrics
            .inc("childguard_findings_total", &[], tally.findings as f64);
        dd.metrics
            .inc("childguard_scan_errors_total", &[], tally.errors as f64);
        dd.metrics.observe(
            "childguard_scan_duration_seconds",
            &[],
            t0.elapsed().as_secs_f64(),
        );
        tracing::info!(
            run = run_id,
            status,
            findings = tally.findings,
            errors = tally.errors,
            "scan finished"
        );
        drop(guard);
    });
    Ok(run_id)
}

/// The store's run error for a daemon run status (None when it completed).
fn res_status(status: &str, msg: &Option<String>) -> Option<String> {
    match status {
        "completed" => None,
        _ => Some(msg.clone().unwrap_or_else(|| status.to_string())),
    }
}

/// Finish the store's run and classify it against the inventory.
async fn record_end(d: &Daemon, run: i64, stats: &crate::store::RunStats) -> Result<(), JobError> {
    d.store.finish_run(run, stats).await?;
    if stats.error.is_none() {
        crate::classify::classify_run(&*d.store, run, &d.config, Utc::now().naive_utc()).await?;
    }
    Ok(())
}

/// Wait until the scan of `run_id` has finished (for scheduled jobs).
pub async fn wait_run(d: &Daemon, run_id: i64) -> Result<String, JobError> {
    loop {
        if let Some(r) = d.state.run(run_id).await? {
            if r.status != "running" {
                return Ok(r.status);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn scan_blocking(
    d: &Arc<Daemon>,
    run_id: i64,
    targets: &[String],
    rec: &mut Recorder,
) -> Result<ScanTally, JobError> {
    let rt = tokio::runtime::Handle::current();
    let mut tally = ScanTally::default();
    let topts = crate::source::TargetOptions::default();
    let sopts = crate::source::ScanOptions {
        full: true,
        sample_rows: 0,
        rows: false,
    };
    let named_dbs: Vec<PathBuf> = targets
        .iter()
        .filter_map(|t| sqlite_path(t))
        .map(canon)
        .collect();
    for target in targets {
        if *d.shutdown.borrow() {
            tally.interrupted = true;
            return Ok(tally);
        }
        let src = match crate::source::open_target(target, &topts) {
            Ok(s) => s,
            Err(e) => {
                // SQLite until the database sources land in `open_target`.
                if let Some(db) = sqlite_path(target) {
                    scan_sqlite(d, &rt, run_id, target, &db, &mut tally, rec);
                } else {
                    tracing::error!(target = %crate::source::target_label(target), error = %e, "cannot open target");
                    tally.errors += 1;
                }
                continue;
            }
        };
        let units = match src.units() {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(target = %crate::source::target_label(target), error = %e, "cannot list target");
                tally.errors += 1;
                continue;
            }
        };
        let root = PathBuf::from(target.strip_prefix("file://").unwrap_or(target));
        for unit in units {
            if *d.shutdown.borrow() {
                tally.interrupted = true;
                return Ok(tally);
            }
            let mut found = Vec::new();
            let mut record = crate::store::UnitRecord {
                target: target.clone(),
                unit_id: unit.id.clone(),
                ..Default::default()
            };
            match src.scan_unit(&unit, &d.engine, &sopts, &mut |f| found.push(f)) {
                Ok(stats) => {
                    tally.bytes += stats.bytes as i64;
                    record.bytes = stats.bytes;
                    record.rows = stats.rows;
                    record.skipped = stats.skipped.clone();
                    if stats.skipped.is_some() {
                        // A SQLite database file inside a scanned directory is scanned as a database.
                        let fs_path = if root.is_dir() {
                            root.join(&unit.id)
                        } else {
                            root.clone()
                        };
                        if is_sqlite_file(&fs_path) && !named_dbs.contains(&canon(fs_path.clone()))
                        {
                            let url = format!("sqlite://{}", fs_path.display());
                            scan_sqlite(d, &rt, run_id, &url, &fs_path, &mut tally, rec);
                        }
                        rec.unit(d, &rt, record);
                        continue;
                    }
                    tally.units += 1;
                }
                Err(e) => {
                    tracing::error!(unit = %e.unit, error = %e.message, "cannot scan unit");
                    tally.errors += 1;
                    // Names the unit and the cause, never a value.
                    record.error = Some(e.message.clone());
                }
            }
            if let Some(f) = found.first() {
                record.target = f.target.clone();
            }
            // Findings of a unit that failed part-way are kept: nothing found is lost.
            store(d, &rt, run_id, found, &mut tally, rec)?;
            rec.unit(d, &rt, record);
        }
        // Every unit of the target was listed: findings of vanished units resolve.
        rec.stats.complete_targets.push(target.clone());
    }
    Ok(tally)
}

fn is_sqlite_file(p: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *SQLITE_MAGIC
}

fn store(
    d: &Arc<Daemon>,
    rt: &tokio::runtime::Handle,
    run_id: i64,
    found: Vec<Finding>,
    tally: &mut ScanTally,
    rec: &mut Recorder,
) -> Result<(), JobError> {
    rt.block_on(store_async(d, run_id, found, tally, rec))
}

async fn store_async(
    d: &Arc<Daemon>,
    run_id: i64,
    found: Vec<Finding>,
    tally: &mut ScanTally,
    rec: &mut Recorder,
) -> Result<(), JobError> {
    if found.is_empty() {
        return Ok(());
    }
    for f in &found {
        use crate::scan::FindingSink;
        rec.sink
            .finding(f.clone())
            .map_err(|e| unit_err(crate::store::unit_of(f), e))?;
    }
    let mut items = Vec::with_capacity(found.len());
    let mut viol = Vec::new();
    for f in found {
        let ds = dataset_for(&d.config, &f);
        for v in violations_of(ds, &f) {
            viol.push((
                v,
                ds.map(|x| x.name.clone()),
                f.finding_id.clone(),
                f.category.as_str(),
            ));
        }
        tally.findings += 1;
        if f.child == Some(true) {
            tally.child += 1;
        }
        items.push((f, ds.map(|x| x.name.clone())));
    }
    d.state.upsert_findings(run_id, &items).await?;
    for ((kind, article, sev, msg), ds, fid, cat) in &viol {
        d.state
            .upsert_violation(kind, ds.as_deref(), Some(fid), Some(cat), sev, article, msg)
            .await?;
    }
    tally.violations += viol.len() as i64;
    Ok(())
}

fn scan_sqlite(
    d: &Arc<Daemon>,
    rt: &tokio::runtime::Handle,
    run_id: i64,
    target: &str,
    db: &Path,
    tally: &mut ScanTally,
    rec: &mut Recorder,
) {
    let mut units = Vec::new();
    let res: Result<(), JobError> = rt.block_on(async {
        let mut c = open_sqlite(db, false).await?;
        let tables = sqlite_tables(&mut c)
            .await
            .map_err(|e| unit_err(db.display().to_string(), e))?;
        for t in tables {
            let unit = format!("{}:{t}", db.display());
            let cols: Vec<String> = sqlx::query(&format!("PRAGMA table_info({})", quote_ident(&t)))
                .fetch_all(&mut c)
                .await
                .map_err(|e| unit_err(&unit, e))?
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
            if cols.is_empty() {
                continue;
            }
            let select = cols
                .iter()
                .map(|c| format!("CAST({} AS TEXT)", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let rows = sqlx::query(&format!("SELECT {select} FROM {}", quote_ident(&t)))
                .fetch_all(&mut c)
                .await
                .map_err(|e| unit_err(&unit, e))?;
            let base = Location {
                table: Some(format!("main.{t}")),
                ..Default::default()
            };
            let mut ts = TableScanner::new(&d.engine, target, base, &cols, false);
            for r in &rows {
                let cells: Vec<Option<String>> = (0..cols.len())
                    .map(|i| r.get::<Option<String>, _>(i))
                    .collect();
                tally.bytes += cells
                    .iter()
                    .map(|c| c.as_ref().map_or(0, |s| s.len() as i64))
                    .sum::<i64>();
                let refs: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
                ts.add_row(&refs, None);
            }
            tally.units += 1;
            let found = ts.finish();
            let record = crate::store::UnitRecord {
                target: found
                    .first()
                    .map_or_else(|| target.to_string(), |f| f.target.clone()),
                unit_id: format!("main.{t}"),
                rows: rows.len() as u64,
                ..Default::default()
            };
            store_async(d, run_id, found, tally, rec).await?;
            units.push(record);
        }
        Ok(())
    });
    for u in units {
        rec.unit(d, rt, u);
    }
    if let Err(e) = res {
        tracing::error!(database = %db.display(), error = %e, "cannot scan database");
        tally.errors += 1;
    }
}

// ---------------------------------------------------------------- sweeps

/// One thing a plan deletes from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanItem {
    /// Rows of a SQLite table whose clock column is before the cutoff (all rows when `clock` is None).
    SqliteTable {
        db: PathBuf,
        table: String,
        clock: Option<String>,
    },
    /// Files under `dir` matching `globs` last modified before the cutoff (all when purging).
    Files {
        dir: PathBuf,
        globs: Vec<String>,
        by_age: bool,
    },
}

fn cutoff_string(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

async fn count_item(item: &PlanItem, cutoff: &str) -> Result<i64, JobError> {
    match item {
        PlanItem::SqliteTable { db, table, clock } => {
            let mut c = open_sqlite(db, false).await?;
            let sql = match clock {
                Some(col) => format!(
                    "SELECT COUNT(*) FROM {} WHERE {} < ?",
                    quote_ident(table),
                    quote_ident(col)
                ),
                None => format!(
                    "SELECT COUNT(*) FROM {} WHERE ? IS NOT NULL",
                    quote_ident(table)
                ),
            };
            sqlx::query_scalar(&sql)
                .bind(cutoff)
                .fetch_one(&mut c)
                .await
                .map_err(|e| unit_err(format!("{}:{table}", db.display()), e))
        }
        PlanItem::Files { dir, globs, by_age } => {
            Ok(files_due(dir, globs, *by_age, cutoff)?.len() as i64)
        }
    }
}

fn files_due(
    dir: &Path,
    globs: &[String],
    by_age: bool,
    cutoff: &str,
) -> Result<Vec<PathBuf>, JobError> {
    let gs = globset(globs, &dir.display().to_string())?;
    let cutoff = NaiveDateTime::parse_from_str(cutoff, "%Y-%m-%d %H:%M:%S")
        .map_err(|e| unit_err("cutoff", e))?;
    let mut out = Vec::new();
    for e in ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .build()
        .flatten()
    {
        if !e.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        if gs.as_ref().is_some_and(|g| !g.is_match(rel)) {
            continue;
        }
        if by_age {
            let m = e
                .metadata()
                .map_err(|x| unit_err(e.path().display().to_string(), x))?;
            let mt: chrono::DateTime<Utc> = m
                .modified()
                .map_err(|x| unit_err(e.path().display().to_string(), x))?
                .into();
            if mt.naive_utc() >= cutoff {
                continue;
            }
        }
        out.push(e.path().to_path_buf());
    }
    Ok(out)
}

async fn plan_items(cfg: &Config, ds: &Dataset, purge: bool) -> Result<Vec<PlanItem>, JobError> {
    let loc = source_location(cfg, &ds.source);
    let clock = match ds.retention.as_ref().map(|r| &r.clock) {
        Some(Clock::Column(c)) if !purge => Some(c.clone()),
        _ => None,
    };
    if let Some(db) = sqlite_path(&loc) {
        let mut c = open_sqlite(&db, false).await?;
        let tables = sqlite_tables(&mut c)
            .await
            .map_err(|e| unit_err(db.display().to_string(), e))?;
        let gs = globset(&ds.matches, &ds.name)?;
        let chosen = tables.into_iter().filter(|t| {
            gs.as_ref()
                .is_none_or(|g| g.is_match(t) || g.is_match(format!("main.{t}")))
        });
        if !purge && clock.is_none() {
            return Err(JobError::Invalid(format!(
                "dataset {}: retention on a database needs a time column (`365d after created_at`)",
                ds.name
            )));
        }
        return Ok(chosen
            .map(|table| PlanItem::SqliteTable {
                db: db.clone(),
                table,
                clock: clock.clone(),
            })
            .collect());
    }
    let dir = PathBuf::from(&loc);
    if !dir.is_dir() {
        return Err(JobError::Invalid(format!(
            "dataset {}: source {} is neither a sqlite:// database nor a directory",
            ds.name, loc
        )));
    }
    if !purge && clock.is_some() {
        return Err(JobError::Invalid(format!(
            "dataset {}: files are swept by `object_age`, not a column",
            ds.name
        )));
    }
    Ok(vec![PlanItem::Files {
        dir,
        globs: ds.matches.clone(),
        by_age: !purge,
    }])
}

/// Plan sweeps (dry run with counts) for the named datasets (all with a
/// retention rule when empty). `purge` plans everything of every dataset
/// holding children's data (Art. 23, service shutdown). Returns plan ids.
pub async fn plan_sweeps(
    d: &Arc<Daemon>,
    names: &[String],
    purge: bool,
    by: &str,
) -> Result<Vec<i64>, JobError> {
    for n in names {
        if !d.config.datasets.iter().any(|ds| &ds.name == n) {
            return Err(JobError::Invalid(format!("no dataset named {n}")));
        }
    }
    let as_of = Utc::now().naive_utc();
    let mut ids = Vec::new();
    for ds in d
        .config
        .datasets
        .iter()
        .filter(|ds| names.is_empty() || names.contains(&ds.name))
    {
        let (cutoff, kind) = if purge {
            if !ds.child_data {
                continue;
            }
            ("9999-12-31 23:59:59".to_string(), "purge")
        } else {
            let Some(r) = &ds.retention else { continue };
            (cutoff_string(r.period.cutoff(as_of)), "retention")
        };
        if ds.disposal == crate::config::inventory::Disposal::Anonymize && !purge {
            tracing::warn!(dataset = %ds.name, "anonymize disposal is executed by `childguard sweep`; the daemon plans deletions only");
            continue;
        }
        let items = plan_items(&d.config, ds, purge).await?;
        let mut planned = 0;
        for it in &items {
            planned += count_item(it, &cutoff).await?;
        }
        if !purge {
            if planned > 0 {
                let r = ds
                    .retention
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                d.state
                    .upsert_violation(
                        "retention_overdue",
                        Some(&ds.name),
                        None,
                        None,
                        "high",
                        "CAC Order No. 4 Art. 12, 20",
                        &format!(
                            "{planned} records of dataset {} kept past retention ({r})",
                            ds.name
                        ),
                    )
                    .await?;
            } else {
                d.state
                    .close_violations("retention_overdue", &ds.name)
                    .await?;
                continue;
            }
        }
        d.state.supersede_plans(&ds.name, kind).await?;
        let id = d
            .state
            .create_plan(
                kind,
                &ds.name,
                &serde_json::to_string(&items).unwrap(),
                &cutoff,
                planned,
                by,
            )
            .await?;
        d.audit(
            by,
            "-",
            &format!("sweep.plan.{kind}"),
            &format!("plan/{id}"),
            "ok",
            Some(format!("dataset {} planned {planned}", ds.name)),
        );
        ids.push(id);
    }
    Ok(ids)
}

/// Execute an approved (or interrupted) plan in batches. Stops at the next
/// batch boundary on shutdown, leaving the plan `interrupted`; running it
/// again continues (deleting what is past the cutoff is idempotent).
pub async fn run_plan(d: Arc<Daemon>, id: i64, by: &str) -> Result<String, JobError> {
    let _g = d.sweep_lock.lock().await;
    if !d
        .state
        .plan_transition(id, &["approved", "interrupted", "running"], "running", None)
        .await?
    {
        return Err(JobError::Invalid(format!("plan {id} is not approved")));
    }
    let plan = d
        .state
        .plan(id)
        .await?
        .ok_or_else(|| JobError::Invalid(format!("no plan {id}")))?;
    let items: Vec<PlanItem> =
        serde_json::from_str(&plan.items).map_err(|e| unit_err(format!("plan {id}"), e))?;
    let t0 = std::time::Instant::now();
    let batch = d.config.server.sweep_batch_rows.max(1) as i64;
    let pause = std::time::Duration::from_millis(d.config.server.sweep_batch_pause_ms);
    let mut done = plan.done_rows;
    d.audit(
        by,
        "-",
        "sweep.run.start",
        &format!("plan/{id}"),
        "ok",
        Some(format!("dataset {} resume at {done}", plan.dataset)),
    );
    for it in &items {
        match it {
            PlanItem::SqliteTable { db, table, clock } => {
                let mut c = open_sqlite(db, true).await?;
                let unit = format!("{}:{table}", db.display());
                let cond = clock
                    .as_ref()
                    .map(|col| format!("WHERE {} < ?1", quote_ident(col)))
                    .unwrap_or_else(|| "WHERE ?1 IS NOT NULL".into());
                let sql = format!(
                    "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} {cond} LIMIT ?2)",
                    t = quote_ident(table)
                );
                loop {
                    if *d.shutdown.borrow() {
                        d.state
                            .plan_transition(id, &["running"], "interrupted", None)
                            .await?;
                        tracing::info!(plan = id, done, "sweep checkpointed by shutdown");
                        return Ok("interrupted".into());
                    }
                    let n = sqlx::query(&sql)
                        .bind(&plan.cutoff)
                        .bind(batch)
                        .execute(&mut c)
                        .await
                        .map_err(|e| unit_err(&unit, e))?
                        .rows_affected() as i64;
                    if n == 0 {
                        break;
                    }
                    done += n;
                    d.state.plan_progress(id, done).await?;
                    d.metrics.inc("childguard_sweep_rows_total", &[], n as f64);
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            PlanItem::Files { dir, globs, by_age } => {
                for p in files_due(dir, globs, *by_age, &plan.cutoff)? {
                    if *d.shutdown.borrow() {
                        d.state
                            .plan_transition(id, &["running"], "interrupted", None)
                            .await?;
                        return Ok("interrupted".into());
                    }
                    std::fs::remove_file(&p).map_err(|e| unit_err(p.display().to_string(), e))?;
                    done += 1;
                    d.state.plan_progress(id, done).await?;
                    d.metrics.inc("childguard_sweep_rows_total", &[], 1.0);
                }
            }
        }
    }
    // Verify: re-count what is still past the cutoff.
    let mut remaining = 0;
    for it in &items {
        remaining += count_item(it, &plan.cutoff).await?;
    }
    let (status, msg) = if remaining == 0 {
        ("completed", None)
    } else {
        (
            "failed",
            Some(format!(
                "{remaining} records still past the cutoff after the sweep"
            )),
        )
    };
    d.state
        .plan_finish(id, status, remaining, msg.as_deref())
        .await?;
    if status == "completed" {
        d.state
            .close_violations("retention_overdue", &plan.dataset)
            .await?;
    }
    d.metrics
        .inc("childguard_sweeps_total", &[("outcome", status)], 1.0);
    d.metrics.observe(
        "childguard_sweep_duration_seconds",
        &[],
        t0.elapsed().as_secs_f64(),
    );
    d.audit(
        by,
        "-",
        "sweep.run.finish",
        &format!("plan/{id}"),
        status,
        Some(format!(
            "dataset {} deleted {done}, remaining {remaining}",
            plan.dataset
        )),
    );
    Ok(status.into())
}

/// Run every approved plan, and resume interrupted ones.
pub async fn run_approved(d: Arc<Daemon>, by: &str) -> Result<usize, JobError> {
    let mut n = 0;
    for st in ["running", "interrupted", "approved"] {
        for p in d.state.plans(Some(st)).await? {
            if *d.shutdown.borrow() {
                return Ok(n);
            }
            run_plan(d.clone(), p.id, by).await?;
            n += 1;
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------- erasure

/// Normalize a subject identifier the way the detectors fingerprint values.
pub fn normalize_subject(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Delete every record whose `subject_key` fingerprints to `fp`, in every
/// SQLite dataset with a subject key. The value is never needed in clear.
pub async fn erase(d: &Arc<Daemon>, fp: &str) -> Result<i64, JobError> {
    let mut erased = 0;
    for ds in &d.config.datasets {
        let (Some(key), Some(db)) = (
            &ds.subject_key,
            sqlite_path(&source_location(&d.config, &ds.source)),
        ) else {
            continue;
        };
        let mut c = open_sqlite(&db, true).await?;
        let gs = globset(&ds.matches, &ds.name)?;
        for t in sqlite_tables(&mut c)
            .await
            .map_err(|e| unit_err(db.display().to_string(), e))?
        {
            if gs
                .as_ref()
                .is_some_and(|g| !g.is_match(&t) && !g.is_match(format!("main.{t}")))
            {
                continue;
            }
            let unit = format!("{}:{t}", db.display());
            let rows = match sqlx::query(&format!(
                "SELECT rowid, CAST({} AS TEXT) FROM {}",
                quote_ident(key),
                quote_ident(&t)
            ))
            .fetch_all(&mut c)
            .await
            {
                Ok(r) => r,
                Err(e) if e.to_string().contains("no such column") => continue,
                Err(e) => return Err(unit_err(&unit, e)),
            };
            let fpr = d.engine.fingerprinter();
            let ids: Vec<i64> = rows
                .iter()
                .filter(|r| {
                    r.get::<Option<String>, _>(1)
                        .is_some_and(|v| fpr.fingerprint(&normalize_subject(&v)) == fp)
                })
                .map(|r| r.get::<i64, _>(0))
                .collect();
            for rid in ids {
                erased += sqlx::query(&format!("DELETE FROM {} WHERE rowid = ?", quote_ident(&t)))
                    .bind(rid)
                    .execute(&mut c)
                    .await
                    .map_err(|e| unit_err(&unit, e))?
                    .rows_affected() as i64;
            }
        }
    }
    d.metrics.inc("childguard_erasures_total", &[], 1.0);
    Ok(erased)
}

// ---------------------------------------------------------------- report

/// The self-inspection report (MIIT Order No. 24 Art. 16): inventory with
/// owners (CAC Art. 8), findings by category, open violations, sweeps, erasures.
pub async fn build_report(
    d: &Arc<Daemon>,
    datasets: &[String],
) -> Result<serde_json::Value, JobError> {
    let found = d.state.found_categories().await?;
    let violations = d
        .state
        .violations(Some("open"), None, None, 100_000)
        .await?;
    let plans = d.state.plans(None).await?;
    let erasures = d.state.erasures().await?;
    let ds: Vec<_> = d
        .config
        .datasets
        .iter()
        .filter(|x| datasets.is_empty() || datasets.contains(&x.name))
        .map(|x| {
            let cats: Vec<_> = found.iter().filter(|f| f.0.as_deref() == Some(&x.name)).map(|f| json!({"category": f.1, "findings": f.2, "child_findings": f.3})).collect();
            json!({"name": x.name, "owner": x.owner, "purpose": x.purpose, "legal_basis": x.legal_basis, "location": x.location,
                   "retention": x.retention.as_ref().map(|r| r.to_string()), "child_data": x.child_data, "found": cats,
                   "open_violations": violations.iter().filter(|v| v.dataset.as_deref() == Some(&x.name)).count()})
        })
        .collect();
    Ok(json!({
        "title": "Self-inspection report on the handling of children's personal information",
        "basis": ["CAC Order No. 4 (2019)", "MIIT Order No. 24 (2013) Art. 16"],
        "generated_at": now(),
        "datasets": ds,
        "undeclared": found.iter().filter(|f| f.0.is_none()).map(|f| json!({"category": f.1, "findings": f.2, "child_findings": f.3})).collect::<Vec<_>>(),
        "open_violations": violations.iter().map(|v| json!({"kind": v.kind, "dataset": v.dataset, "article": v.article, "severity": v.severity, "message": v.message})).collect::<Vec<_>>(),
        "sweeps": plans.iter().map(|p| json!({"id": p.id, "kind": p.kind, "dataset": p.dataset, "status": p.status, "planned": p.planned_rows, "done": p.done_rows, "approved_by": p.approved_by})).collect::<Vec<_>>(),
        "erasures": erasures.iter().map(|e| json!({"id": e.id, "status": e.status, "erased_rows": e.erased_rows, "approved_by": e.approved_by})).collect::<Vec<_>>(),
    }))
}

/// Audit helper shared by jobs and handlers.
impl Daemon {
    pub fn audit(
        &self,
        actor: &str,
        role: &str,
        action: &str,
        object: &str,
        outcome: &str,
        detail: Option<String>,
    ) {
        let _ = self.audit_tx.send(AuditEntry {
            at: now(),
            actor: actor.into(),
            role: role.into(),
            action: action.into(),
            object: object.into(),
            outcome: outcome.into(),
            detail,
        });
    }
}
