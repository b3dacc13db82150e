//! Stage `sweep`: retention sweeps (CAC Order No. 4 Art. 12, 20), subject
//! erasure (Art. 20) and the shutdown purge (Art. 23).
//!
//! Plan (dry run: counts, masked samples, estimate; changes nothing) →
//! approval (Art. 15: required by default; the planner cannot approve their
//! own plan) → run (batched executors per source, journaled before and after
//! every batch/object so a killed run resumes without repeating or skipping
//! work) → verification (re-count of what should be gone, re-read of touched
//! files) → receipt (JSON + HTML under `<state_dir>/receipts/`) and audit
//! events (`sweep_events`).
//!
//! The cutoff is frozen in the plan: a run never disposes of anything the
//! approved plan's rule did not cover, whenever it runs.
//!
//! ```toml
//! [[datasets]]
//! name = "visits"
//! source = "postgres://app@db/prod"      # or mysql://…, sqlite://…, a path, s3://bucket/prefix
//! match = ["public.visits"]              # tables; path/key globs for files and objects
//! retention = "365d after created_at"    # or "30d after object_age" (whole files by mtime)
//! disposal = "anonymize"                 # default "delete"
//! subject_key = "user_id"                # for `childguard erase`
//! child_data = true                      # for `childguard purge`
//! [datasets.anonymize]
//! phone = "mask:3,4"
//! id_no = "hash"                         # shown as pseudonymization (PIPL Art. 73)
//! birth = "year_month"
//! ```
//!
//! Why a run is exactly right, also across crashes:
//! 1. Every statement that disposes of data repeats the plan's predicate
//!    (`clock < cutoff`, strict; `subject = key`): nothing outside it is ever
//!    touched, whatever happened between planning, selection and execution.
//!    Files are rewritten from their current content with the same
//!    predicate; whole files are re-checked for age before deletion.
//! 2. Disposal makes a record stop matching (deleted, or anonymized with the
//!    clock set to NULL), so redoing any batch is harmless (idempotent).
//! 3. A batch is journaled (`start`, with its keys) before its transaction and
//!    (`done`, with its count and last key) after the commit; the journal's
//!    primary key forbids a second `start`/`done` for the same batch. On
//!    resume a `done` batch is never redone, a `start` without `done` is
//!    recovered from its key list (what the killed attempt disposed of is
//!    counted from the keys now gone / anonymized, the rest is redone), and
//!    the keyset continues after the last key — nothing skipped, nothing
//!    counted twice. After the keyset ends, a re-count (and one more pass if
//!    needed) makes sure no expired row was left behind the cursor.
//! 4. A file is swapped in only after its rewrite was re-read and verified,
//!    and only if the original did not change since it was read (version
//!    check locally, `If-Match` on object stores).
//! 5. Verification after the run re-counts what should be gone; the receipt
//!    records it per table and file.
//!
//! Times: cutoffs and naive timestamps are UTC (sessions run with time zone
//! UTC). SQLite clocks must be ISO-8601 text; values that cannot be read as
//! a time are never disposed of.

pub mod db;
pub mod files;
pub mod journal;
pub mod receipt;

use crate::config::inventory::{AnonOp, Clock, Dataset, Disposal};
use crate::config::Config;
use crate::fingerprint::{mask_all_but_first, mask_keep, Fingerprinter};
use chrono::NaiveDateTime;
use journal::SweepJournal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The typed confirmation `purge` requires (Art. 23).
pub const PURGE_CONFIRMATION: &str = "DELETE ALL CHILD DATA";

/// Errors of the sweep stage; each names the table, file, object or plan.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sweep journal: {0}")]
    Journal(String),
    #[error("database {target}: {message}")]
    Db { target: String, message: String },
    #[error("object {key}: {message}")]
    Object { key: String, message: String },
    #[error("{target}: verification failed: {message}")]
    Verify { target: String, message: String },
    #[error("{0}: changed since it was read; not overwritten (run again with --resume)")]
    Changed(String),
    #[error("plan: {0}")]
    Plan(String),
    #[error("no sweep plan `{0}`")]
    NoSuchPlan(String),
    #[error("approval: {0}")]
    Approval(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Key(#[from] crate::fingerprint::KeyError),
}

/// A URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() || u.query().is_some() => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            crate::source::redact_query(&mut u);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Mask a sample value for display (never print raw values).
pub fn mask_sample(v: &str) -> String {
    let n = v.chars().count();
    if n >= 11 {
        mask_keep(v, 3, 2)
    } else if n >= 6 {
        mask_keep(v, 1, 1)
    } else {
        mask_all_but_first(v)
    }
}

/// `[sweep]` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSettings {
    /// Retention runs need an approval by someone other than the planner
    /// (CAC Order No. 4 Art. 15). Erasure and purge always need one.
    #[serde(default = "default_true")]
    pub require_approval: bool,
    /// Target duration of one database transaction; the batch size adapts to it.
    #[serde(default = "default_target_batch_ms")]
    pub target_batch_ms: u64,
    /// Rows in the first batch.
    #[serde(default = "default_initial_batch")]
    pub initial_batch: usize,
    /// Smallest batch.
    #[serde(default = "default_min_batch")]
    pub min_batch: usize,
    /// Largest batch in rows (key-list batches on MySQL/SQLite are also capped at 30,000 bound parameters).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Pause between batches, to leave room for the application and replicas.
    #[serde(default)]
    pub sleep_ms: u64,
    /// Masked sample rows shown per table in a plan.
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// Pause batches while a PostgreSQL replica lags more than this (ms); 0: never.
    #[serde(default)]
    pub max_replica_lag_ms: u64,
}

const fn default_true() -> bool {
    true
}
const fn default_target_batch_ms() -> u64 {
    200
}
const fn default_initial_batch() -> usize {
    1000
}
const fn default_min_batch() -> usize {
    50
}
const fn default_max_batch() -> usize {
    100_000
}
const fn default_samples() -> usize {
    3
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            require_approval: true,
            target_batch_ms: default_target_batch_ms(),
            initial_batch: default_initial_batch(),
            min_batch: default_min_batch(),
            max_batch: default_max_batch(),
            sleep_ms: 0,
            samples: default_samples(),
            max_replica_lag_ms: 0,
        }
    }
}

impl SweepSettings {
    pub fn from_config(cfg: &Config) -> Result<Self, SweepError> {
        match cfg.rest.get("sweep") {
            None => Ok(Self::default()),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| SweepError::Plan(format!("[sweep]: {e}"))),
        }
    }
    fn tuning(&self) -> db::Tuning {
        db::Tuning {
            target_batch: Duration::from_millis(self.target_batch_ms),
            initial_batch: self.initial_batch,
            min_batch: self.min_batch.max(1),
            max_batch: self.max_batch.max(self.min_batch.max(1)),
            sleep: Duration::from_millis(self.sleep_ms),
            max_replica_lag: Duration::from_millis(self.max_replica_lag_ms),
        }
    }
}

/// Clean stop: `<state_dir>/sweep.stop` or SIGINT/SIGTERM stops after the current batch.
#[derive(Debug, Clone)]
pub struct Stop {
    pub file: PathBuf,
    flag: Arc<AtomicBool>,
}

impl Stop {
    pub fn new(state_dir: &Path) -> Stop {
        Stop {
            file: state_dir.join("sweep.stop"),
            flag: Arc::new(AtomicBool::new(false)),
        }
    }
    /// Catch SIGINT and SIGTERM (must run inside a tokio runtime).
    pub fn install_signal_handlers(&self) {
        let f = self.flag.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                f.store(true, Ordering::SeqCst);
            }
        });
        #[cfg(unix)]
        {
            let f = self.flag.clone();
            tokio::spawn(async move {
                if let Ok(mut s) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    s.recv().await;
                    f.store(true, Ordering::SeqCst);
                }
            });
        }
    }
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || self.file.exists()
    }
}

/// What kind of plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Retention sweep (Art. 12, 20).
    Retention,
    /// One subject's records (Art. 20).
    Erasure,
    /// Every record of every child dataset (Art. 23).
    Purge,
}

impl PlanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::Retention => "retention",
            PlanKind::Erasure => "erasure",
            PlanKind::Purge => "purge",
        }
    }
}

/// One table or file in a plan item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanUnit {
    /// Table name, or file path / object key relative to the source.
    pub name: String,
    /// Rows (tables, files) or 1 (whole file) to dispose of.
    pub count: i64,
    /// Rows in the file at plan time (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// Rows whose time could not be read (kept).
    #[serde(default)]
    pub undated: i64,
    /// The whole file/object is deleted.
    #[serde(default)]
    pub whole: bool,
    /// Size in bytes (files).
    #[serde(default)]
    pub bytes: u64,
}

/// A dataset's part of a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanItem {
    pub dataset: String,
    /// Source with any password redacted.
    pub source: String,
    /// Keyed fingerprint of the exact source string, checked at run time.
    pub source_fp: String,
    /// `database` or `files`.
    pub store: String,
    /// `delete` or `anonymize`.
    pub action: String,
    /// Anonymization operators per column, as shown to approvers (a keyed hash
    /// is labelled pseudonymization, PIPL Art. 73).
    #[serde(default)]
    pub operators: BTreeMap<String, String>,
    /// Human form of the rule (`365d after created_at`, `subject`, `all`).
    pub rule: String,
    /// Time column (retention by column).
    #[serde(default)]
    pub clock: Option<String>,
    /// Records strictly before this are past retention.
    #[serde(default)]
    pub cutoff: Option<NaiveDateTime>,
    /// Subject column (erasure).
    #[serde(default)]
    pub subject_column: Option<String>,
    pub count: i64,
    pub units: Vec<PlanUnit>,
    /// Masked sample values of records that would be disposed of.
    #[serde(default)]
    pub samples: Vec<BTreeMap<String, String>>,
    pub estimate_secs: f64,
    pub owner: Option<String>,
}

/// A stored plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub kind: PlanKind,
    pub created_at: String,
    pub created_by: String,
    pub as_of: NaiveDateTime,
    /// Fingerprint of the subject key (erasure); the raw key is never stored.
    #[serde(default)]
    pub subject_fp: Option<String>,
    #[serde(default)]
    pub key_type: Option<String>,
    pub items: Vec<PlanItem>,
    /// Datasets that could not be planned, with the cause.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Datasets left out and why (e.g. no subject_key for an erasure).
    #[serde(default)]
    pub notes: Vec<String>,
    pub total: i64,
}

/// Fields shown (masked) in plan samples: the subject key and declared PI columns.
fn sample_fields(ds: &Dataset) -> Vec<String> {
    let mut v: Vec<String> = ds
        .subject_key
        .iter()
        .cloned()
        .chain(ds.categories.keys().filter(|k| *k != "*").cloned())
        .collect();
    v.dedup();
    v.truncate(4);
    v
}

/// Rough throughput for estimates (measured with benches/sweep_delete.sh).
const DB_DELETE_ROWS_PER_SEC: f64 = 100_000.0;
const DB_ANON_ROWS_PER_SEC: f64 = 5_000.0;
const FILE_BYTES_PER_SEC: f64 = 50e6;

fn op_label(op: &AnonOp) -> String {
    if op.is_pseudonymization() {
        format!("{op} (pseudonymization, keyed hash — PIPL Art. 73: still personal information)")
    } else {
        op.to_string()
    }
}

fn describe_subject(key: &str, key_type: Option<&str>) -> String {
    let k = key.trim();
    match key_type {
        Some("id") | Some("cn_resident_id") => k.to_ascii_uppercase(),
        _ => k.to_string(),
    }
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue an interrupted run.
    pub resume: bool,
    /// The subject key again (erasure plans store only its fingerprint).
    pub subject: Option<String>,
    /// The typed confirmation (purge plans).
    pub confirm: Option<String>,
    /// Who runs it (recorded).
    pub actor: String,
}

/// Result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub plan_id: String,
    /// `done`, `stopped`, `failed` or `verification_failed`.
    pub status: String,
    pub disposed: i64,
    pub errors: Vec<String>,
    pub receipt: Option<PathBuf>,
    pub max_batch_ms: f64,
}

/// A dataset's `source` may name a `[[sources]]` entry (`school_db` or
/// `@school_db`): replace it by the entry's URL, with the password from the
/// entry's `password_env`/`password_file` (never written anywhere: plans keep
/// only a redacted URL and a keyed fingerprint of it).
fn resolve_sources(cfg: &mut Config) -> Result<(), SweepError> {
    for ds in &mut cfg.datasets {
        let name = ds.source.strip_prefix('@').unwrap_or(&ds.source);
        let Some(src) = cfg.sources.iter().find(|s| s.name == name) else {
            continue;
        };
        let mut url = src.url.clone();
        let password = src
            .password()
            .map_err(|e| SweepError::Plan(format!("dataset `{}`: {e}", ds.name)))?;
        if let Some(pw) = password {
            if let Ok(mut u) = url::Url::parse(&url) {
                if u.set_password(Some(&pw)).is_ok() {
                    url = u.to_string();
                }
            }
        }
        ds.source = url;
    }
    Ok(())
}

/// Plans, approves and runs sweeps for one configuration.
pub struct Sweeper {
    pub cfg: Config,
    pub state_dir: PathBuf,
    pub journal: SweepJournal,
    pub fp: Fingerprinter,
    pub settings: SweepSettings,
}

enum Target {
    Db(db::DbPool),
    Files(files::Location),
}

async fn open_target(ds: &Dataset) -> Result<Target, SweepError> {
    if db::is_db_url(&ds.source) {
        Ok(Target::Db(db::DbPool::connect(&ds.source).await?))
    } else {
        Ok(Target::Files(files::Location::parse(&ds.source)?))
    }
}

/// Row/record predicate of a plan item (`subject` only for erasure).
fn item_db_pred(kind: PlanKind, it: &PlanItem, subject: Option<&str>) -> db::Predicate {
    match kind {
        PlanKind::Retention => db::Predicate::Expired {
            clock: it.clock.clone().unwrap_or_default(),
            cutoff: it.cutoff.unwrap_or(NaiveDateTime::MIN),
        },
        PlanKind::Erasure => db::Predicate::Subject {
            column: it.subject_column.clone().unwrap_or_default(),
            key: subject.unwrap_or_default().to_string(),
        },
        PlanKind::Purge => db::Predicate::All,
    }
}

fn item_row_pred(kind: PlanKind, it: &PlanItem, subject: Option<&str>) -> Option<files::RowPred> {
    match kind {
        PlanKind::Retention => it.clock.clone().map(|field| files::RowPred::Expired {
            field,
            cutoff: it.cutoff.unwrap_or(NaiveDateTime::MIN),
        }),
        PlanKind::Erasure => Some(files::RowPred::Subject {
            field: it.subject_column.clone().unwrap_or_default(),
            key: subject.unwrap_or_default().to_string(),
        }),
        PlanKind::Purge => None,
    }
}

fn item_actions(ds: &Dataset, it: &PlanItem) -> (db::Action, files::RowAction) {
    if it.action == "anonymize" {
        let clock = it.clock.clone().unwrap_or_default();
        (
            db::Action::Anonymize {
                ops: ds.anonymize.clone(),
                clock: clock.clone(),
            },
            files::RowAction::Anonymize {
                ops: ds.anonymize.clone(),
                clock,
            },
        )
    } else {
        (db::Action::Delete, files::RowAction::Delete)
    }
}

impl Sweeper {
    pub async fn open(mut cfg: Config) -> Result<Sweeper, SweepError> {
        resolve_sources(&mut cfg)?;
        let state_dir = cfg
            .state_dir
            .clone()
            .unwrap_or_else(crate::fingerprint::default_state_dir);
        // Locks and receipts live here even when the journal is in PostgreSQL.
        std::fs::create_dir_all(&state_dir).map_err(|e| SweepError::Io {
            path: state_dir.clone(),
            source: e,
        })?;
        let journal = SweepJournal::open(&state_dir, cfg.state_url.as_deref()).await?;
        let fp = Fingerprinter::load(&state_dir)?;
        let settings = SweepSettings::from_config(&cfg)?;
        Ok(Sweeper {
            cfg,
            state_dir,
            journal,
            fp,
            settings,
        })
    }

    fn dataset(&self, name: &str) -> Result<&Dataset, SweepError> {
        self.cfg
            .datasets
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| SweepError::Plan(format!("dataset `{name}` is no longer in the config")))
    }

    /// Plan one dataset's part.
    async fn plan_item(
        &self,
        kind: PlanKind,
        ds: &Dataset,
        as_of: NaiveDateTime,
        subject: Option<&str>,
    ) -> Result<Option<PlanItem>, SweepError> {
        let mut it = PlanItem {
            dataset: ds.name.clone(),
            source: redact_url(&ds.source),
            source_fp: self.fp.fingerprint(&format!("source\0{}", ds.source)),
            store: if db::is_db_url(&ds.source) {
                "database".into()
            } else {
                "files".into()
            },
            action: "delete".into(),
            operators: BTreeMap::new(),
            rule: String::new(),
            clock: None,
            cutoff: None,
            subject_column: None,
            count: 0,
            units: vec![],
            samples: vec![],
            estimate_secs: 0.0,
            owner: ds.owner.clone(),
        };
        let mut whole_by_age = false;
        match kind {
            PlanKind::Retention => {
                let Some(r) = &ds.retention else {
                    return Ok(None);
                };
                let cutoff = r.period.cutoff(as_of);
                it.rule = r.to_string();
                it.cutoff = Some(cutoff);
                match &r.clock {
                    Clock::Column(c) => it.clock = Some(c.clone()),
                    Clock::ObjectAge => whole_by_age = true,
                }
                if ds.disposal == Disposal::Anonymize {
                    if ds.anonymize.is_empty() {
                        return Err(SweepError::Plan(format!(
                            "dataset `{}`: disposal = \"anonymize\" but no [anonymize] operators",
                            ds.name
                        )));
                    }
                    if whole_by_age {
                        return Err(SweepError::Plan(format!("dataset `{}`: object_age retention deletes whole files; anonymize needs a time column", ds.name)));
                    }
                    it.action = "anonymize".into();
                    it.operators = ds
                        .anonymize
                        .iter()
                        .map(|(c, o)| (c.clone(), op_label(o)))
                        .collect();
                }
            }
            PlanKind::Erasure => {
                let Some(sk) = &ds.subject_key else {
                    return Ok(None);
                };
                it.rule = "subject".into();
                it.subject_column = Some(sk.clone());
            }
            PlanKind::Purge => {
                it.rule = "all".into();
            }
        }
        match open_target(ds).await? {
            Target::Db(pool) => {
                if whole_by_age {
                    return Err(SweepError::Plan(format!("dataset `{}`: object_age retention applies to files and objects, not tables", ds.name)));
                }
                if ds.matches.is_empty() {
                    return Err(SweepError::Plan(format!(
                        "dataset `{}`: a database dataset needs `match` (tables)",
                        ds.name
                    )));
                }
                let tables = db::resolve_tables(&pool, &ds.matches).await?;
                for t in tables {
                    let info = db::table_info(&pool, &t).await?;
                    let pk = self.pk_of(ds, &info)?;
                    if let Some(c) = &it.clock {
                        let ci = info.col(c).ok_or_else(|| SweepError::Db {
                            target: t.clone(),
                            message: format!("no column `{c}`"),
                        })?;
                        if it.action == "anonymize" && !ci.nullable {
                            return Err(SweepError::Plan(format!(
                                "{t}: anonymize sets the retention clock `{c}` to NULL so anonymized rows are never selected again, but it is NOT NULL"
                            )));
                        }
                    }
                    if it.action == "anonymize" {
                        for col in ds.anonymize.keys() {
                            if info.col(col).is_none() {
                                return Err(SweepError::Db {
                                    target: t.clone(),
                                    message: format!("no column `{col}` to anonymize"),
                                });
                            }
                        }
                    }
                    if let Some(c) = &it.subject_column {
                        if info.col(c).is_none() {
                            return Err(SweepError::Db {
                                target: t.clone(),
                                message: format!("no subject column `{c}`"),
                            });
                        }
                    }
                    let pred = item_db_pred(kind, &it, subject);
                    let n = db::count(&pool, &info, &pred).await?;
                    let mut cols: Vec<String> = ds
                        .subject_key
                        .iter()
                        .cloned()
                        .chain(ds.categories.keys().filter(|k| *k != "*").cloned())
                        .filter(|c| info.col(c).is_some())
                        .collect();
                    cols.dedup();
                    cols.truncate(4);
                    if cols.is_empty() {
                        cols.push(pk.clone());
                    }
                    if n > 0 && self.settings.samples > 0 {
                        for row in
                            db::samples(&pool, &info, &pred, &cols, self.settings.samples).await?
                        {
                            it.samples.push(
                                cols.iter()
                                    .cloned()
                                    .zip(row.into_iter().map(|v| {
                                        v.map(|v| mask_sample(&v)).unwrap_or_else(|| "NULL".into())
                                    }))
                                    .collect(),
                            );
                        }
                    }
                    it.count += n;
                    it.units.push(PlanUnit {
                        name: t,
                        count: n,
                        rows: None,
                        undated: 0,
                        whole: false,
                        bytes: 0,
                    });
                }
                let rate = if it.action == "anonymize" {
                    DB_ANON_ROWS_PER_SEC
                } else {
                    DB_DELETE_ROWS_PER_SEC
                };
                it.estimate_secs = it.count as f64 / rate;
            }
            Target::Files(loc) => {
                let metas = loc.list(&ds.matches).await?;
                let mut bytes = 0u64;
                for m in metas {
                    let fmt = files::Format::of(&m.key);
                    let unit = if whole_by_age {
                        if m.modified >= it.cutoff.unwrap_or(NaiveDateTime::MIN) {
                            continue;
                        }
                        PlanUnit {
                            name: m.key.clone(),
                            count: 1,
                            rows: None,
                            undated: 0,
                            whole: true,
                            bytes: m.size,
                        }
                    } else if kind == PlanKind::Purge {
                        PlanUnit {
                            name: m.key.clone(),
                            count: 1,
                            rows: None,
                            undated: 0,
                            whole: true,
                            bytes: m.size,
                        }
                    } else {
                        if fmt == files::Format::Opaque {
                            return Err(SweepError::Plan(format!("{}: compressed or unknown format; only whole-file retention (object_age) applies", m.key)));
                        }
                        let pred = item_row_pred(kind, &it, subject).expect("row predicate");
                        let Some((data, _, _)) = loc.read(&m.key).await? else {
                            continue;
                        };
                        let c =
                            files::count(fmt, &data, &pred).map_err(|e| SweepError::Verify {
                                target: m.key.clone(),
                                message: e,
                            })?;
                        if c.matching == 0 {
                            continue;
                        }
                        if it.samples.len() < self.settings.samples {
                            let fields = sample_fields(ds);
                            let need = self.settings.samples - it.samples.len();
                            for row in
                                files::samples(fmt, &data, &pred, &fields, need).unwrap_or_default()
                            {
                                let mut masked: BTreeMap<String, String> = row
                                    .into_iter()
                                    .map(|(k, v)| {
                                        if k == "line" {
                                            (k, v)
                                        } else {
                                            (k, mask_sample(&v))
                                        }
                                    })
                                    .collect();
                                masked.insert("file".into(), m.key.clone());
                                it.samples.push(masked);
                            }
                        }
                        PlanUnit {
                            name: m.key.clone(),
                            count: c.matching as i64,
                            rows: Some(c.rows as i64),
                            undated: c.undated as i64,
                            whole: false,
                            bytes: m.size,
                        }
                    };
                    bytes += if unit.whole { 0 } else { unit.bytes * 2 };
                    it.count += unit.count;
                    it.units.push(unit);
                }
                it.estimate_secs = bytes as f64 / FILE_BYTES_PER_SEC + it.units.len() as f64 * 0.01;
            }
        }
        Ok(Some(it))
    }

    fn pk_of(&self, ds: &Dataset, info: &db::TableInfo) -> Result<String, SweepError> {
        let pk = if !ds.primary_key.is_empty() {
            ds.primary_key.clone()
        } else {
            info.primary_key.clone()
        };
        match pk.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(SweepError::Plan(format!(
                "{}: no primary key; declare `primary_key` in the dataset",
                info.table
            ))),
            _ => Err(SweepError::Plan(format!(
                "{}: composite primary keys are not supported by the batched executor yet",
                info.table
            ))),
        }
    }

    async fn make_plan(
        &self,
        kind: PlanKind,
        datasets: &[&Dataset],
        as_of: NaiveDateTime,
        by: &str,
        subject: Option<(&str, Option<&str>)>,
    ) -> Result<Plan, SweepError> {
        let id = format!("sp-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let key = subject.map(|(k, t)| describe_subject(k, t));
        let mut plan = Plan {
            id: id.clone(),
            kind,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            created_by: by.into(),
            as_of,
            subject_fp: key.as_ref().map(|k| self.fp.fingerprint(k)),
            key_type: subject.and_then(|s| s.1.map(String::from)),
            items: vec![],
            errors: vec![],
            notes: vec![],
            total: 0,
        };
        for ds in datasets {
            match self.plan_item(kind, ds, as_of, key.as_deref()).await {
                Ok(Some(it)) => {
                    plan.total += it.count;
                    plan.items.push(it);
                }
                Ok(None) => plan.notes.push(match kind {
                    PlanKind::Erasure => format!("dataset `{}` declares no subject_key: its records of this subject cannot be located by key", ds.name),
                    _ => format!("dataset `{}` has no retention rule", ds.name),
                }),
                Err(e) => plan.errors.push(format!("dataset `{}`: {e}", ds.name)),
            }
        }
        let body = serde_json::to_string(&plan).expect("plan serializes");
        self.journal
            .insert_plan(
                &id,
                kind.as_str(),
                by,
                &as_of.to_string(),
                plan.subject_fp.as_deref(),
                &body,
            )
            .await?;
        let detail = serde_json::json!({"kind": kind.as_str(), "total": plan.total, "datasets": plan.items.iter().map(|i| &i.dataset).collect::<Vec<_>>(), "errors": plan.errors.len(), "subject_fp": plan.subject_fp});
        self.journal
            .event(Some(&id), "plan_created", Some(by), &detail)
            .await?;
        Ok(plan)
    }

    /// Retention plan (dry run) for every dataset with a retention rule, or one.
    pub async fn plan_retention(
        &self,
        dataset: Option<&str>,
        as_of: NaiveDateTime,
        by: &str,
    ) -> Result<Plan, SweepError> {
        let ds: Vec<&Dataset> = self
            .cfg
            .datasets
            .iter()
            .filter(|d| d.retention.is_some() && dataset.is_none_or(|n| d.name == n))
            .collect();
        if ds.is_empty() {
            return Err(SweepError::Plan(match dataset {
                Some(n) => format!("no dataset `{n}` with a retention rule"),
                None => "no dataset declares a retention rule".into(),
            }));
        }
        self.make_plan(PlanKind::Retention, &ds, as_of, by, None)
            .await
    }

    /// Erasure plan for one subject (Art. 20) across datasets with a `subject_key`.
    pub async fn plan_erasure(
        &self,
        key: &str,
        key_type: Option<&str>,
        datasets: &[String],
        by: &str,
    ) -> Result<Plan, SweepError> {
        if key.trim().is_empty() {
            return Err(SweepError::Plan("empty subject key".into()));
        }
        let ds: Vec<&Dataset> = self
            .cfg
            .datasets
            .iter()
            .filter(|d| datasets.is_empty() || datasets.contains(&d.name))
            .filter(|d| match (key_type, &d.subject_key) {
                (None, _) | (_, None) => true,
                (Some(t), Some(sk)) => {
                    sk == t
                        || d.categories.get(sk).is_some_and(|cs| {
                            cs.iter()
                                .any(|c| format!("{c:?}").to_ascii_lowercase().contains(t))
                        })
                }
            })
            .collect();
        let now = chrono::Utc::now().naive_utc();
        self.make_plan(PlanKind::Erasure, &ds, now, by, Some((key, key_type)))
            .await
    }

    /// Purge plan (Art. 23): every record of every `child_data = true` dataset.
    pub async fn plan_purge(&self, by: &str) -> Result<Plan, SweepError> {
        let ds: Vec<&Dataset> = self.cfg.datasets.iter().filter(|d| d.child_data).collect();
        if ds.is_empty() {
            return Err(SweepError::Plan(
                "no dataset is declared child_data = true".into(),
            ));
        }
        let now = chrono::Utc::now().naive_utc();
        self.make_plan(PlanKind::Purge, &ds, now, by, None).await
    }

    pub async fn load_plan(&self, id: &str) -> Result<(Plan, journal::PlanRow), SweepError> {
        let row = self.journal.plan(id).await?;
        let plan: Plan = serde_json::from_str(&row.body)
            .map_err(|e| SweepError::Journal(format!("plan {id}: {e}")))?;
        Ok((plan, row))
    }

    /// Approve a plan (Art. 15). The planner cannot approve their own plan.
    pub async fn approve(
        &self,
        id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), SweepError> {
        let (plan, row) = self.load_plan(id).await?;
        if by.trim().is_empty() {
            return Err(SweepError::Approval("approver name is empty".into()));
        }
        if by == plan.created_by {
            return Err(SweepError::Approval(format!(
                "{by} created plan {id} and cannot approve it (four-eyes rule)"
            )));
        }
        if !matches!(row.status.as_str(), "planned" | "approved") {
            return Err(SweepError::Approval(format!(
                "plan {id} is {}; only a plan that has not run can be approved",
                row.status
            )));
        }
        if self
            .journal
            .approvals(id)
            .await?
            .iter()
            .any(|a| a.approved_by == by)
        {
            return Err(SweepError::Approval(format!(
                "{by} already approved plan {id}"
            )));
        }
        self.journal.add_approval(id, by, comment).await?;
        self.journal.set_status(id, "approved").await?;
        self.journal.event(Some(id), "plan_approved", Some(by), &serde_json::json!({"comment": comment, "kind": plan.kind.as_str(), "total": plan.total})).await?;
        Ok(())
    }

    /// Status of a plan: the plan, approvals and journal progress.
    pub async fn status(&self, id: &str) -> Result<serde_json::Value, SweepError> {
        let (plan, row) = self.load_plan(id).await?;
        let approvals = self.journal.approvals(id).await?;
        let entries = self.journal.entries(id).await?;
        let mut units: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for it in plan.items.iter().enumerate() {
            for u in &it.1.units {
                let es: Vec<_> = entries
                    .iter()
                    .filter(|e| e.item == it.0 as i64 && e.unit == u.name)
                    .collect();
                let done: i64 = es
                    .iter()
                    .filter(|e| e.phase == "done")
                    .map(|e| e.affected)
                    .sum();
                let complete = es.iter().any(|e| e.phase == "complete")
                    || (plan.items[it.0].store == "files" && es.iter().any(|e| e.phase == "done"));
                units.insert(format!("{}:{}", it.1.dataset, u.name), serde_json::json!({"planned": u.count, "disposed": done, "batches": es.iter().filter(|e| e.phase == "done").count(), "complete": complete}));
            }
        }
        Ok(
            serde_json::json!({"plan": plan, "status": row.status, "approvals": approvals, "progress": units}),
        )
    }

    /// Execute (or resume) an approved plan.
    pub async fn run(
        &self,
        id: &str,
        opts: &RunOptions,
        stop: &Stop,
    ) -> Result<RunResult, SweepError> {
        let (plan, row) = self.load_plan(id).await?;
        let approvals = self.journal.approvals(id).await?;
        let needs_approval = self.settings.require_approval || plan.kind != PlanKind::Retention;
        if needs_approval && !approvals.iter().any(|a| a.approved_by != plan.created_by) {
            return Err(SweepError::Approval(format!("plan {id} is not approved (childguard sweep approve {id} --by NAME; CAC Order No. 4 Art. 15)")));
        }
        if plan.kind == PlanKind::Purge && opts.confirm.as_deref() != Some(PURGE_CONFIRMATION) {
            return Err(SweepError::Refused(format!(
                "purge needs the typed confirmation \"{PURGE_CONFIRMATION}\""
            )));
        }
        let subject = if plan.kind == PlanKind::Erasure {
            let k = opts.subject.as_deref().ok_or_else(|| SweepError::Refused("an erasure plan stores only the subject's fingerprint: give --subject KEY again to run it".into()))?;
            let k = describe_subject(k, plan.key_type.as_deref());
            if Some(self.fp.fingerprint(&k)) != plan.subject_fp {
                return Err(SweepError::Refused(format!(
                    "--subject does not match the subject of plan {id}"
                )));
            }
            Some(k)
        } else {
            None
        };
        if row.status == "done" {
            return Ok(RunResult {
                plan_id: id.into(),
                status: "done".into(),
                disposed: 0,
                errors: vec![],
                receipt: Some(receipt::path(&self.state_dir, id, "json")),
                max_batch_ms: 0.0,
            });
        }
        let started = !self.journal.entries(id).await?.is_empty()
            || matches!(
                row.status.as_str(),
                "running" | "stopped" | "failed" | "verification_failed"
            );
        if started && !opts.resume {
            return Err(SweepError::Refused(format!(
                "plan {id} was already started (status {}); continue it with --resume",
                row.status
            )));
        }
        let _lock = lock(&self.state_dir, id)?;
        let _ = std::fs::remove_file(&stop.file);
        self.journal.set_status(id, "running").await?;
        let run_started = chrono::Utc::now();
        self.journal
            .event(
                Some(id),
                if started {
                    "run_resumed"
                } else {
                    "run_started"
                },
                Some(&opts.actor),
                &serde_json::json!({}),
            )
            .await?;

        let tuning = self.settings.tuning();
        let mut results: Vec<receipt::ItemResult> = Vec::new();
        let mut errors = Vec::new();
        let mut stopped = false;
        let mut max_ms = 0f64;
        'items: for (i, it) in plan.items.iter().enumerate() {
            let mut ir = receipt::ItemResult::new(it);
            let ds = match self.dataset(&it.dataset) {
                Ok(d) if self.fp.fingerprint(&format!("source\0{}", d.source)) == it.source_fp => d,
                Ok(_) => {
                    errors.push(format!(
                        "dataset `{}`: its source changed since planning; re-plan",
                        it.dataset
                    ));
                    results.push(ir);
                    continue;
                }
                Err(e) => {
                    errors.push(e.to_string());
                    results.push(ir);
                    continue;
                }
            };
            let (dba, fa) = item_actions(ds, it);
            let target = match open_target(ds).await {
                Ok(t) => t,
                Err(e) => {
                    errors.push(format!("dataset `{}`: {e}", it.dataset));
                    results.push(ir);
                    continue;
                }
            };
            for u in &it.units {
                if stop.requested() {
                    stopped = true;
                    results.push(ir);
                    break 'items;
                }
                let r = match &target {
                    Target::Db(pool) => {
                        let r = async {
                            let info = db::table_info(pool, &u.name).await?;
                            let pk = self.pk_of(ds, &info)?;
                            let pk_is_pi = ds.subject_key.as_deref() == Some(pk.as_str())
                                || ds.categories.contains_key(&pk);
                            let job = db::TableJob {
                                plan_id: id.into(),
                                item: i as i64,
                                info,
                                pk,
                                pred: item_db_pred(plan.kind, it, subject.as_deref()),
                                action: dba.clone(),
                                pk_is_pi,
                            };
                            let o =
                                db::run_table(pool, &self.journal, &job, &tuning, &self.fp, stop)
                                    .await?;
                            // Verification: re-count what should be gone (reusing the
                            // executor's final re-count when it just found 0).
                            let remaining = if o.stopped {
                                None
                            } else if o.remaining == Some(0) {
                                Some(0)
                            } else {
                                Some(db::count(pool, &job.info, &job.pred).await?)
                            };
                            Ok::<_, SweepError>((o, remaining))
                        }
                        .await;
                        r.map(|(o, remaining)| {
                            max_ms = max_ms.max(o.max_batch_ms);
                            if o.stopped {
                                stopped = true;
                            }
                            receipt::UnitResult {
                                name: u.name.clone(),
                                planned: u.count,
                                disposed: o.affected,
                                exact: o.exact,
                                batches: o.batches,
                                max_batch_ms: o.max_batch_ms,
                                whole: false,
                                remaining,
                                verified: remaining == Some(0),
                                note: None,
                            }
                        })
                    }
                    Target::Files(loc) => {
                        let pred = item_row_pred(plan.kind, it, subject.as_deref());
                        let whole = u.whole;
                        // Whole files by age: the age is re-checked at run time.
                        let age_cutoff = if plan.kind == PlanKind::Retention && it.clock.is_none() {
                            it.cutoff
                        } else {
                            None
                        };
                        let r = files::run_file(
                            loc,
                            &self.journal,
                            id,
                            i as i64,
                            &u.name,
                            whole,
                            pred.as_ref(),
                            age_cutoff,
                            &fa,
                            &self.fp,
                        )
                        .await;
                        match r {
                            Ok(o) if whole => {
                                // Verification: gone, or kept because it was modified since planning.
                                let (remaining, note) = match loc.head(&u.name).await {
                                    Ok(None) => (Some(0), None),
                                    Ok(Some(m)) if age_cutoff.is_some_and(|c| m.modified >= c) => (
                                        Some(0),
                                        Some(
                                            "modified since planning: within retention, kept"
                                                .to_string(),
                                        ),
                                    ),
                                    Ok(Some(_)) => {
                                        (Some(1), Some("file still present".to_string()))
                                    }
                                    Err(e) => (None, Some(e.to_string())),
                                };
                                Ok(receipt::UnitResult {
                                    name: u.name.clone(),
                                    planned: u.count,
                                    disposed: o.changed as i64,
                                    exact: o.exact,
                                    batches: 1,
                                    max_batch_ms: 0.0,
                                    whole,
                                    remaining,
                                    verified: remaining == Some(0),
                                    note,
                                })
                            }
                            Ok(o) => {
                                // Verification: re-read what was touched.
                                let (remaining, note) = match loc.read(&u.name).await {
                                    Ok(None) => {
                                        (None, Some("file missing after rewrite".to_string()))
                                    }
                                    Ok(Some((data, _, _))) => match files::count(
                                        files::Format::of(&u.name),
                                        &data,
                                        pred.as_ref().expect("row predicate"),
                                    ) {
                                        Ok(c) => (Some(c.matching as i64), None),
                                        Err(e) => {
                                            (None, Some(format!("unreadable after rewrite: {e}")))
                                        }
                                    },
                                    Err(e) => (None, Some(e.to_string())),
                                };
                                Ok(receipt::UnitResult {
                                    name: u.name.clone(),
                                    planned: u.count,
                                    disposed: o.changed as i64,
                                    exact: o.exact,
                                    batches: 1,
                                    max_batch_ms: 0.0,
                                    whole,
                                    remaining,
                                    verified: remaining == Some(0),
                                    note,
                                })
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                match r {
                    Ok(ur) => {
                        let _ = self.journal.event(Some(id), if matches!(target, Target::Db(_)) { "table" } else { "object" }, Some(&opts.actor), &serde_json::json!({"dataset": it.dataset, "unit": ur.name, "disposed": ur.disposed, "verified": ur.verified})).await;
                        ir.units.push(ur);
                    }
                    Err(e) => {
                        errors.push(format!("dataset `{}` {}: {e}", it.dataset, u.name));
                        ir.units.push(receipt::UnitResult {
                            name: u.name.clone(),
                            planned: u.count,
                            disposed: 0,
                            exact: false,
                            batches: 0,
                            max_batch_ms: 0.0,
                            whole: u.whole,
                            remaining: None,
                            verified: false,
                            note: Some(e.to_string()),
                        });
                    }
                }
                if stopped {
                    results.push(ir);
                    break 'items;
                }
            }
            results.push(ir);
        }
        let disposed: i64 = results
            .iter()
            .flat_map(|r| r.units.iter())
            .map(|u| u.disposed)
            .sum();
        let status = if stopped {
            "stopped"
        } else if !errors.is_empty() {
            "failed"
        } else if results
            .iter()
            .flat_map(|r| r.units.iter())
            .all(|u| u.verified)
        {
            "done"
        } else {
            "verification_failed"
        };
        self.journal.set_status(id, status).await?;
        let mut receipt_path = None;
        if !stopped {
            let rc = receipt::Receipt {
                plan_id: id.into(),
                kind: plan.kind,
                status: status.into(),
                created_by: plan.created_by.clone(),
                created_at: plan.created_at.clone(),
                approvals,
                run_by: opts.actor.clone(),
                started_at: run_started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                subject_fingerprint: plan.subject_fp.clone(),
                items: results,
                disposed,
                errors: errors.clone(),
                notes: plan.notes.clone(),
            };
            receipt_path = Some(rc.write(&self.state_dir)?);
        }
        let ev = match plan.kind {
            PlanKind::Retention => "run_finished",
            PlanKind::Erasure => "erasure",
            PlanKind::Purge => "purge",
        };
        self.journal.event(Some(id), ev, Some(&opts.actor), &serde_json::json!({"status": status, "disposed": disposed, "errors": errors.len(), "max_batch_ms": max_ms})).await?;
        Ok(RunResult {
            plan_id: id.into(),
            status: status.into(),
            disposed,
            errors,
            receipt: receipt_path,
            max_batch_ms: max_ms,
        })
    }
}

/// An exclusive lock per plan (`<state_dir>/sweep-<plan>.lock`): two runs of
/// one plan never overlap. Released by the kernel when the process dies.
pub struct PlanLock(#[allow(dead_code)] std::fs::File);

fn lock(state_dir: &Path, id: &str) -> Result<PlanLock, SweepError> {
    let p = state_dir.join(format!("sweep-{id}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| SweepError::Io {
            path: p.clone(),
            source: e,
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            return Err(SweepError::Refused(format!(
                "plan {id} is being run by another process"
            )));
        }
    }
    Ok(PlanLock(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_masks() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(mask_sample("13812345678"), "138******78");
        assert!(!mask_sample("张小明").contains('小'));
    }

    #[test]
    fn settings_from_config() {
        // `Config` keeps untyped sections in `rest` (once the loader accepts them).
        let mut cfg = Config::default();
        cfg.rest =
            toml::from_str("[sweep]\nrequire_approval = false\ntarget_batch_ms = 50\n").unwrap();
        let s = SweepSettings::from_config(&cfg).unwrap();
        assert!(!s.require_approval);
        assert_eq!(s.target_batch_ms, 50);
        assert!(
            SweepSettings::from_config(&Config::default())
                .unwrap()
                .require_approval
        );
        cfg.rest = toml::from_str("[sweep]\nbogus = 1\n").unwrap();
        assert!(SweepSettings::from_config(&cfg).is_err());
    }
}
