//! The daemon's jobs, all on the shared stages: scan (files, logs and SQLite
//! databases into the shared store, then `classify::classify_run` against the
//! purpose inventory), sweeps, erasures and the purge through
//! [`crate::sweep::Sweeper`] (plan → four-eyes approval → journaled, resumable
//! run → receipt; CAC Order No. 4 Art. 12, 15, 20, 23), and the
//! self-inspection report through [`crate::report`] (MIIT Order No. 24 Art. 16).

use crate::config::Config;
use crate::daemon::Daemon;
use crate::finding::{Finding, Location};
use crate::scan::table::TableScanner;
use crate::sweep::{PlanKind, RunOptions, SweepError};
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of a job, each naming the unit (file, table, plan) and the cause.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Classify(#[from] crate::classify::ClassifyError),
    #[error("{unit}: {message}")]
    Unit { unit: String, message: String },
    #[error("a {0} is already running")]
    Busy(&'static str),
    /// Another daemon on the shared store is sweeping a dataset of the plan.
    #[error("{0}")]
    DatasetBusy(String),
    #[error("{0}")]
    Invalid(String),
    /// The caller authored the plan (four-eyes rule, CAC Order No. 4 Art. 15).
    #[error("a plan must be approved by someone other than its author")]
    SelfApproval,
    /// The plan or request is in a state that does not allow this.
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    NotApproved(String),
    #[error("{0} not found")]
    NotFound(String),
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

#[derive(Default)]
struct ScanTally {
    units: i64,
    bytes: i64,
    findings: i64,
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
    let run_id = d.store.begin_run(&targets).await?;
    d.active_runs.lock().unwrap().insert(run_id);
    if d.shared {
        // Renewed by the lease keeper while the scan runs; a leader marks
        // the run interrupted only once this lease expired (this daemon died).
        // Taken before the origin is recorded: leaders look only at runs with
        // one, so a starting run is never mistaken for a dead daemon's.
        let lease = d
            .coord
            .try_acquire(
                &crate::daemon::run_lease(run_id),
                &d.instance,
                d.lease_ttl(),
            )
            .await;
        if let Err(e) = lease {
            d.active_runs.lock().unwrap().remove(&run_id);
            let _ = d.store.interrupt_runs(Some(run_id)).await;
            return Err(e.into());
        }
    }
    d.store.set_run_origin(run_id, trigger, by).await?;
    let store_run = run_id;
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
            let r = scan_blocking(&d2, &targets, &mut rec);
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
        if let Err(e) = record_end(&dd, store_run, &stats, status == "interrupted").await {
            tracing::error!(run = store_run, error = %e, "cannot record the end of a scan in the store");
        }
        dd.active_runs.lock().unwrap().remove(&run_id);
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
        "completed" | "interrupted" => None,
        _ => Some(msg.clone().unwrap_or_else(|| status.to_string())),
    }
}

/// Finish the store's run and classify it against the inventory (also when
/// shutdown stopped it: what was scanned is classified, and the run is then
/// marked `interrupted`).
async fn record_end(
    d: &Daemon,
    run: i64,
    stats: &crate::store::RunStats,
    interrupted: bool,
) -> Result<(), JobError> {
    d.store.finish_run(run, stats).await?;
    if stats.error.is_none() {
        crate::classify::classify_run(&*d.store, run, &d.config, Utc::now().naive_utc()).await?;
    }
    if interrupted {
        d.store.interrupt_runs(Some(run)).await?;
    }
    Ok(())
}

/// Re-classify the latest classified run (after a triage or a sweep changed
/// what is open), so the open violations follow.
pub async fn reclassify(d: &Daemon) -> Result<(), JobError> {
    if let Some(r) = latest_classified(d).await? {
        crate::classify::classify_run(&*d.store, r.id, &d.config, Utc::now().naive_utc()).await?;
    }
    Ok(())
}

/// The newest run the classifier finished: its violations are the open ones.
/// A shard run counts only as the newest run of its complete group (which
/// holds the whole group's classification): while the shards of a sharded
/// scan are still running, the previous complete scan stays the open view.
pub async fn latest_classified(d: &Daemon) -> Result<Option<crate::store::Run>, JobError> {
    let active = d.active_runs.lock().unwrap().clone();
    Ok(d.store.runs(200).await?.into_iter().find(|r| {
        r.summary.classified
            && !active.contains(&r.id)
            && (r.shard.is_none() || r.summary.group_complete)
    }))
}

/// Wait until the scan of `run_id` has finished and is classified (for
/// scheduled jobs). Returns its status.
pub async fn wait_run(d: &Daemon, run_id: i64) -> Result<String, JobError> {
    loop {
        if !d.active_runs.lock().unwrap().contains(&run_id) {
            if let Some(r) = d.store.run(run_id).await? {
                return Ok(r.status.as_str().to_string());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn scan_blocking(
    d: &Arc<Daemon>,
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
                    scan_sqlite(d, &rt, target, &db, &mut tally, rec);
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
                            scan_sqlite(d, &rt, &url, &fs_path, &mut tally, rec);
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
            sink_findings(found, &mut tally, rec)?;
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

/// Hand a unit's findings to the store's batched writer.
fn sink_findings(
    found: Vec<Finding>,
    tally: &mut ScanTally,
    rec: &mut Recorder,
) -> Result<(), JobError> {
    use crate::scan::FindingSink;
    tally.findings += found.len() as i64;
    for f in found {
        let unit = crate::store::unit_of(&f);
        rec.sink.finding(f).map_err(|e| unit_err(unit, e))?;
    }
    Ok(())
}

fn scan_sqlite(
    d: &Arc<Daemon>,
    rt: &tokio::runtime::Handle,
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
            sink_findings(found, tally, rec)?;
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

/// Plan statuses a run may start from: approved, or continued after a stop
/// or a crash (the journal makes the continuation exact).
const RUNNABLE: [&str; 3] = ["approved", "stopped", "running"];

fn plan_datasets(p: &crate::sweep::Plan) -> Vec<String> {
    p.items.iter().map(|i| i.dataset.clone()).collect()
}

/// A plan as the API shows it: the sweeper's plan (counts, masked samples,
/// rules), its status and approvals, the journal's progress (records
/// disposed so far, each batch counted once) and, once a run finished, the
/// receipt's verification (records still matching the plan's predicate).
pub async fn plan_view(d: &Daemon, id: &str) -> Result<Value, JobError> {
    let (plan, row) = d.sweeper.load_plan(id).await?;
    let j = &d.sweeper.journal;
    let approvals = j.approvals(id).await?;
    let done: i64 = j
        .entries(id)
        .await?
        .iter()
        .filter(|e| e.phase == "done")
        .map(|e| e.affected)
        .sum();
    let receipt = crate::sweep::receipt::path(&d.sweeper.state_dir, id, "json");
    let remaining = std::fs::read(&receipt)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|r| {
            r["items"]
                .as_array()?
                .iter()
                .flat_map(|i| i["units"].as_array().cloned().unwrap_or_default())
                .map(|u| u["remaining"].as_i64())
                .sum::<Option<i64>>()
        });
    let reason = j
        .events(id)
        .await?
        .into_iter()
        .find(|e| e.event == "requested")
        .and_then(|e| e.detail["reason"].as_str().map(str::to_string));
    let datasets = plan_datasets(&plan);
    Ok(json!({
        "id": plan.id,
        "kind": plan.kind,
        "dataset": datasets.join(", "),
        "datasets": datasets,
        "status": row.status,
        "created_by": plan.created_by,
        "created_at": plan.created_at,
        "as_of": plan.as_of,
        "approved_by": approvals.first().map(|a| a.approved_by.clone()),
        "approvals": approvals.iter().map(|a| json!({"by": a.approved_by, "at": a.approved_at, "comment": a.comment})).collect::<Vec<_>>(),
        "planned_rows": plan.total,
        "done_rows": done,
        "remaining_rows": remaining,
        "subject_fingerprint": plan.subject_fp,
        "reason": reason,
        "items": plan.items,
        "errors": plan.errors,
        "notes": plan.notes,
        "receipt": receipt.exists().then(|| format!("receipts/{id}.json")),
    }))
}

/// Plans of one kind (all when None), newest first, as the API shows them.
/// `nothing_due` plans (a retention plan that found nothing) are left out.
pub async fn plan_views(
    d: &Daemon,
    kind: Option<PlanKind>,
    status: Option<&str>,
) -> Result<Vec<Value>, JobError> {
    let mut out = Vec::new();
    for r in d.sweeper.journal.plans(kind.map(|k| k.as_str())).await? {
        let keep = match status {
            Some(s) => r.status == s,
            None => r.status != "nothing_due",
        };
        if keep {
            out.push(plan_view(d, &r.id).await?);
        }
    }
    Ok(out)
}

/// Plan retention sweeps (dry run: counts, masked samples) through the
/// sweeper, one plan per named dataset (every dataset with a retention rule
/// when `names` is empty). A new plan supersedes an unapproved older plan of
/// the same dataset; a plan with nothing due is kept as `nothing_due` and
/// not returned. Returns the plan ids.
pub async fn plan_sweeps(d: &Daemon, names: &[String], by: &str) -> Result<Vec<String>, JobError> {
    for n in names {
        if !d.config.datasets.iter().any(|ds| &ds.name == n) {
            return Err(JobError::Invalid(format!("no dataset named {n}")));
        }
    }
    let as_of = Utc::now().naive_utc();
    let _g = d.plan_lock.lock().await;
    let older = d.sweeper.journal.plans(Some("retention")).await?;
    let mut ids = Vec::new();
    for ds in d
        .config
        .datasets
        .iter()
        .filter(|ds| ds.retention.is_some() && (names.is_empty() || names.contains(&ds.name)))
    {
        let plan = d.sweeper.plan_retention(Some(&ds.name), as_of, by).await?;
        if plan.total == 0 && plan.errors.is_empty() {
            d.sweeper
                .journal
                .set_status(&plan.id, "nothing_due")
                .await?;
            continue;
        }
        for o in older.iter().filter(|o| o.status == "planned") {
            let same = serde_json::from_str::<crate::sweep::Plan>(&o.body)
                .is_ok_and(|p| plan_datasets(&p) == [ds.name.clone()]);
            if same
                && d.sweeper
                    .journal
                    .transition(&o.id, &["planned"], "superseded")
                    .await?
            {
                d.sweeper
                    .journal
                    .event(
                        Some(&o.id),
                        "plan_superseded",
                        Some(by),
                        &json!({"by_plan": plan.id}),
                    )
                    .await?;
            }
        }
        d.audit(
            by,
            "-",
            "sweep.plan.retention",
            &format!("plan/{}", plan.id),
            "ok",
            Some(format!("dataset {} planned {}", ds.name, plan.total)),
        );
        ids.push(plan.id);
    }
    Ok(ids)
}

/// Journal who asked for a plan and why (MIIT Order No. 24 Art. 13(6)).
async fn requested(d: &Daemon, plan_id: &str, by: &str, reason: &str) -> Result<(), JobError> {
    d.sweeper
        .journal
        .event(
            Some(plan_id),
            "requested",
            Some(by),
            &json!({"reason": reason}),
        )
        .await?;
    Ok(())
}

/// Plan the shutdown purge (CAC Order No. 4 Art. 23): every record of every
/// dataset declared to hold children's data, in one plan. It still needs
/// another approver's approval before it runs.
pub async fn plan_purge(d: &Daemon, by: &str, reason: &str) -> Result<String, JobError> {
    let plan = d.sweeper.plan_purge(by).await?;
    requested(d, &plan.id, by, reason).await?;
    Ok(plan.id)
}

/// Approve a plan (CAC Order No. 4 Art. 15) as `by`: refused for the plan's
/// author and for a plan that is no longer `planned`.
pub async fn approve(d: &Daemon, id: &str, by: &str) -> Result<(), JobError> {
    let _g = d.plan_lock.lock().await;
    let (plan, row) = d.sweeper.load_plan(id).await?;
    if plan.created_by == by {
        return Err(JobError::SelfApproval);
    }
    if row.status != "planned" {
        return Err(JobError::State(format!(
            "plan {id} is {}, not planned",
            row.status
        )));
    }
    d.sweeper.approve(id, by, None).await?;
    Ok(())
}

/// Reject a plan that has not run.
pub async fn reject(d: &Daemon, id: &str, by: &str) -> Result<(), JobError> {
    let j = &d.sweeper.journal;
    j.plan(id).await?;
    if !j
        .transition(id, &["planned", "approved"], "rejected")
        .await?
    {
        let row = j.plan(id).await?;
        return Err(JobError::State(format!("plan {id} is {}", row.status)));
    }
    j.event(Some(id), "plan_rejected", Some(by), &json!({}))
        .await?;
    Ok(())
}

/// Execute (or continue) an approved plan with the sweeper: journaled
/// batches, stop at the next batch boundary on shutdown (`stopped`; a
/// restart continues it), verification and a receipt. One sweep at a time
/// per daemon; the sweeper's plan lock keeps two processes off one plan.
pub async fn run_sweep(d: Arc<Daemon>, id: &str, by: &str) -> Result<String, JobError> {
    let _g = d.sweep_lock.lock().await;
    let (plan, row) = d.sweeper.load_plan(id).await?;
    let held = SweepLeases::take(&d, &plan_datasets(&plan), id).await?;
    let res = run_sweep_held(d.clone(), id, by, plan, row).await;
    held.release(&d).await;
    res
}

/// Refuse at once (`DatasetBusy`) when another daemon holds the sweep lease
/// of one of the plan's datasets (the API answers 409 before accepting the
/// run; [`run_sweep`] still takes the leases, which is the actual exclusion).
pub async fn check_sweep_free(d: &Daemon, id: &str) -> Result<(), JobError> {
    let (plan, _) = d.sweeper.load_plan(id).await?;
    for ds in plan_datasets(&plan) {
        if let Some((holder, _)) = d.coord.holder(&format!("sweep:{ds}")).await? {
            if holder != d.instance {
                return Err(JobError::DatasetBusy(format!(
                    "sweep plan {id}: dataset {ds} is being swept by another daemon"
                )));
            }
        }
    }
    Ok(())
}

/// The `sweep:<dataset>` leases of a running sweep, renewed every third of
/// the lease time until released: daemons sharing a store never sweep one
/// dataset at once, and a dead daemon's datasets free up when its leases expire.
struct SweepLeases {
    leases: Vec<crate::store::lease::Lease>,
    renew: Option<tokio::task::JoinHandle<()>>,
}

impl SweepLeases {
    async fn take(d: &Arc<Daemon>, datasets: &[String], plan: &str) -> Result<Self, JobError> {
        let mut names: Vec<String> = datasets.iter().map(|ds| format!("sweep:{ds}")).collect();
        names.sort();
        names.dedup();
        let ttl = d.lease_ttl();
        let mut held = SweepLeases {
            leases: Vec::new(),
            renew: None,
        };
        for n in &names {
            match d.coord.try_acquire(n, &d.instance, ttl).await {
                Ok(Some(l)) => held.leases.push(l),
                Ok(None) => {
                    held.release(d).await;
                    return Err(JobError::DatasetBusy(format!(
                        "sweep plan {plan}: dataset {} is being swept by another daemon",
                        &n["sweep:".len()..]
                    )));
                }
                Err(e) => {
                    held.release(d).await;
                    return Err(e.into());
                }
            }
        }
        let (d2, mut leases) = (d.clone(), held.leases.clone());
        held.renew = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                for l in leases.iter_mut() {
                    match d2.coord.renew(l, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(lease = %l.name, "sweep lease lost (renewal came too late)")
                        }
                        Err(e) => {
                            tracing::warn!(lease = %l.name, error = %e, "cannot renew a sweep lease")
                        }
                    }
                }
            }
        }));
        Ok(held)
    }

    async fn release(self, d: &Daemon) {
        if let Some(h) = self.renew {
            h.abort();
        }
        for l in &self.leases {
            if let Err(e) = d.coord.release(l).await {
                tracing::warn!(lease = %l.name, error = %e, "cannot release a sweep lease");
            }
        }
    }
}

async fn run_sweep_held(
    d: Arc<Daemon>,
    id: &str,
    by: &str,
    plan: crate::sweep::Plan,
    row: crate::sweep::journal::PlanRow,
) -> Result<String, JobError> {
    if !RUNNABLE.contains(&row.status.as_str()) {
        return Err(JobError::NotApproved(format!(
            "sweep plan {id} is {}; only approved plans run",
            row.status
        )));
    }
    let subject = if plan.kind == PlanKind::Erasure {
        Some(d.subjects.lock().unwrap().get(id).cloned().ok_or_else(|| {
            JobError::State(format!(
                "erasure {id}: the subject is not held by this daemon (it restarted); approve again with `subject`"
            ))
        })?)
    } else {
        None
    };
    let opts = RunOptions {
        resume: row.status != "approved",
        subject,
        confirm: (plan.kind == PlanKind::Purge)
            .then(|| crate::sweep::PURGE_CONFIRMATION.to_string()),
        actor: by.to_string(),
    };
    d.audit(
        by,
        "-",
        "sweep.run.start",
        &format!("plan/{id}"),
        "ok",
        Some(format!(
            "{} {}",
            plan.kind.as_str(),
            plan_datasets(&plan).join(", ")
        )),
    );
    let t0 = std::time::Instant::now();
    let res = match d.sweeper.run(id, &opts, &d.stop).await {
        Ok(r) => r,
        Err(e) => {
            d.metrics
                .inc("childguard_sweeps_total", &[("outcome", "failed")], 1.0);
            d.audit(
                by,
                "-",
                "sweep.run.finish",
                &format!("plan/{id}"),
                "failed",
                Some(e.to_string()),
            );
            return Err(e.into());
        }
    };
    d.metrics
        .inc("childguard_sweep_rows_total", &[], res.disposed as f64);
    if res.status == "stopped" {
        tracing::info!(plan = %id, disposed = res.disposed, "sweep checkpointed by shutdown");
        d.audit(
            by,
            "-",
            "sweep.run.stop",
            &format!("plan/{id}"),
            "stopped",
            Some(format!("disposed {} so far", res.disposed)),
        );
        return Ok(res.status);
    }
    d.metrics
        .inc("childguard_sweeps_total", &[("outcome", &res.status)], 1.0);
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
        &res.status,
        Some(format!(
            "disposed {}, errors {}",
            res.disposed,
            res.errors.len()
        )),
    );
    if plan.kind == PlanKind::Erasure {
        d.subjects.lock().unwrap().remove(id);
        d.metrics.inc("childguard_erasures_total", &[], 1.0);
    }
    if let Err(e) = reclassify(&d).await {
        tracing::error!(error = %e, "cannot re-classify after a sweep");
    }
    Ok(res.status)
}

/// Run every approved plan, and continue stopped ones (scheduled `sweep_run`).
/// Erasures whose subject this daemon does not hold wait for their approver.
pub async fn run_approved(d: Arc<Daemon>, by: &str) -> Result<usize, JobError> {
    let mut n = 0;
    for p in d.sweeper.journal.plans(None).await? {
        if *d.shutdown.borrow() {
            break;
        }
        if !RUNNABLE.contains(&p.status.as_str()) {
            continue;
        }
        if p.kind == "erasure" && !d.subjects.lock().unwrap().contains_key(&p.id) {
            continue;
        }
        match run_sweep(d.clone(), &p.id, by).await {
            Ok(_) => n += 1,
            Err(JobError::DatasetBusy(m)) => {
                tracing::warn!(plan = %p.id, reason = %m, "sweep skipped: another daemon is sweeping its dataset");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Plans a previous daemon was executing when it stopped (`running` after a
/// crash, `stopped` after SIGTERM).
pub async fn interrupted_plans(d: &Daemon) -> Result<Vec<String>, JobError> {
    Ok(d.sweeper
        .journal
        .plans(None)
        .await?
        .into_iter()
        .filter(|p| matches!(p.status.as_str(), "running" | "stopped") && p.kind != "erasure")
        .map(|p| p.id)
        .collect())
}

// ---------------------------------------------------------------- erasure

/// Plan the erasure of one subject (CAC Order No. 4 Art. 20) across every
/// dataset with a `subject_key`. The plan keeps only the subject's keyed
/// fingerprint; the daemon holds the key in memory until the erasure ran
/// (after a restart the approver gives it again).
pub async fn request_erasure(
    d: &Daemon,
    subject: &str,
    reason: &str,
    by: &str,
) -> Result<String, JobError> {
    let plan = d.sweeper.plan_erasure(subject, None, &[], by).await?;
    requested(d, &plan.id, by, reason).await?;
    d.subjects
        .lock()
        .unwrap()
        .insert(plan.id.clone(), subject.trim().to_string());
    Ok(plan.id)
}

// ---------------------------------------------------------------- reports

/// A generated report, listed from `<state_dir>/reports/<id>.meta.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReportMeta {
    pub id: String,
    pub created_at: String,
    pub created_by: String,
    pub run_id: i64,
    pub title: String,
    /// Files written next to it: `<id>.json`, `<id>.md`, `<id>.html`.
    pub formats: Vec<String>,
}

/// Report files live as documents under `<state_dir>/reports/`: a
/// self-inspection record is something kept and handed over (MIIT Order
/// No. 24 Art. 16), the CLI's `childguard report` writes files too, and
/// nothing queries inside them.
pub fn reports_dir(d: &Daemon) -> PathBuf {
    d.state_dir.join("reports")
}

fn report_file(d: &Daemon, id: &str, ext: &str) -> Result<PathBuf, JobError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(JobError::NotFound(format!("report {id}")));
    }
    Ok(reports_dir(d).join(format!("{id}.{ext}")))
}

/// Build the self-inspection report of the latest run with
/// [`crate::report::build`] and write it as JSON, Markdown and HTML.
pub async fn create_report(
    d: &Daemon,
    by: &str,
) -> Result<(ReportMeta, crate::report::ReportData), JobError> {
    let data =
        crate::report::build(&*d.store, crate::report::RunSel::Latest, Some(&d.config)).await?;
    let id = format!(
        "r{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let dir = reports_dir(d);
    std::fs::create_dir_all(&dir).map_err(|e| unit_err(dir.display().to_string(), e))?;
    let meta = ReportMeta {
        id: id.clone(),
        created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        created_by: by.to_string(),
        run_id: data.run.id,
        title: data.title.clone(),
        formats: vec!["json".into(), "md".into(), "html".into()],
    };
    for (ext, body) in [
        ("json", crate::report::render_json(&data)),
        ("md", crate::report::render_markdown(&data)),
        ("html", crate::report::render_html(&data)),
        (
            "meta.json",
            serde_json::to_string_pretty(&meta).expect("meta serializes"),
        ),
    ] {
        let p = report_file(d, &id, ext)?;
        std::fs::write(&p, body).map_err(|e| unit_err(p.display().to_string(), e))?;
    }
    Ok((meta, data))
}

/// Generated reports, newest first.
pub fn list_reports(d: &Daemon) -> Vec<ReportMeta> {
    let mut out: Vec<ReportMeta> = std::fs::read_dir(reports_dir(d))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".meta.json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    out.sort_by(|a: &ReportMeta, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    out
}

/// One report's file in a format (`json`, `md`, `html`).
pub fn read_report(d: &Daemon, id: &str, ext: &str) -> Result<String, JobError> {
    let p = report_file(d, id, ext)?;
    std::fs::read_to_string(&p).map_err(|_| JobError::NotFound(format!("report {id}")))
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
        self.audit_entry(crate::daemon::AuditEntry {
            actor: actor.into(),
            role: role.into(),
            action: action.into(),
            object: object.into(),
            outcome: outcome.into(),
            detail,
            peer: None,
        });
    }

    /// Queue a record for the shared audit chain (written in order, off the request path).
    pub fn audit_entry(&self, e: crate::daemon::AuditEntry) {
        let _ = self.audit_tx.send(e);
    }
}
