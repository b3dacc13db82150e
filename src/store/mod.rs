//! The findings store: runs, work units, findings (content-derived ids,
//! first/last seen, resolution, triage that survives re-scans), violations
//! and the hash-chained audit log.
//!
//! [`Store`] is the extension point. Two implementations share one schema
//! (`migrations/sqlite`, `migrations/postgres`, applied whole with
//! `sqlx::migrate!`): [`SqliteStore`] — embedded, `<state_dir>/childguard.db`,
//! the default — and [`PgStore`] when `state_url` is set.
//!
//! Recording a scan:
//! ```text
//! let run = store.begin_run(&targets).await?;
//! let (sink, writer) = StoreSink::spawn(store.clone(), run);   // FindingSink, batched writer
//! … scan, sink.finding(f) …; store.record_unit(run, &unit).await?;
//! drop(sink); writer.finish_async().await?;
//! store.finish_run(run, &stats).await?;                        // resolves vanished findings
//! classify::classify_run(&*store, run, &config, as_of).await?; // stores violations
//! ```

pub mod lease;
mod sink;
mod sql;

pub use sink::{StoreSink, WriterHandle};
pub use sql::{PgStore, SqliteStore};

use crate::finding::{Category, Finding, Sensitivity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// Findings written per transaction by the [`StoreSink`] writer.
pub const BATCH: usize = 1_000;
/// File name of the embedded store inside the state directory.
pub const DB_FILE: &str = "childguard.db";

/// Store errors, naming the backend operation; never a value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {op}: {source}")]
    Db {
        op: &'static str,
        source: sqlx::Error,
    },
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Invalid(String),
    #[error("store: no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Current time, truncated to microseconds (what PostgreSQL keeps).
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Run status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    CompletedWithErrors,
    Failed,
    /// Left `running` by a process that stopped (shutdown, crash) before finishing it.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::CompletedWithErrors => "completed_with_errors",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "running" => RunStatus::Running,
            "completed" => RunStatus::Completed,
            "completed_with_errors" => RunStatus::CompletedWithErrors,
            "failed" => RunStatus::Failed,
            "interrupted" => RunStatus::Interrupted,
            _ => return Err(format!("unknown run status `{s}`")),
        })
    }
}

/// What a scan run read, written by `finish_run` (`{}` while the run is running).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunStats {
    pub units: u64,
    pub units_failed: u64,
    pub bytes: u64,
    pub rows: u64,
    pub findings: u64,
    /// Targets whose units were listed completely in this run (not sharded,
    /// not filtered): findings of their units that no longer exist resolve too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub complete_targets: Vec<String>,
    /// Set when the run as a whole failed (e.g. a target could not be listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub targets: Vec<String>,
    pub status: RunStatus,
    pub stats: RunStats,
    /// Written by the classifier: finding and violation counts of the run.
    pub summary: RunSummary,
    /// The run group: the N shard runs of one sharded scan (`--run-group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_group: Option<String>,
    /// `K/N` when the run scanned shard K of N (`--shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// What started it (`api`, `scheduled`, `startup`, `cli`); None when not recorded.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Who started it (token or schedule name); None when not recorded.
    #[serde(default)]
    pub started_by: Option<String>,
}

/// Per-run counts computed by the classifier (the trend's data points).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    #[serde(default)]
    pub findings: u64,
    #[serde(default)]
    pub child_findings: u64,
    #[serde(default)]
    pub violations: u64,
    #[serde(default)]
    pub resolved: u64,
    #[serde(default)]
    pub classified: bool,
    /// The run is the newest of a run group whose every shard finished: its
    /// violations and counts are the whole group's, classified as one scan.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group_complete: bool,
}

/// One work unit of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub target: String,
    pub unit_id: String,
    pub bytes: u64,
    pub rows: u64,
    /// The unit could not be read (names the cause, never a value). Its findings do not resolve.
    pub error: Option<String>,
    /// The unit was skipped (binary, unchanged). Its findings do not resolve.
    pub skipped: Option<String>,
    /// `K/N`: the shard that scanned the unit (None: an unsharded scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// Triage status of a finding; survives re-scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriageStatus {
    #[default]
    Open,
    Confirmed,
    FalsePositive,
    AcceptedRisk,
}

impl TriageStatus {
    pub const ALL: [TriageStatus; 4] = [
        TriageStatus::Open,
        TriageStatus::Confirmed,
        TriageStatus::FalsePositive,
        TriageStatus::AcceptedRisk,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TriageStatus::Open => "open",
            TriageStatus::Confirmed => "confirmed",
            TriageStatus::FalsePositive => "false_positive",
            TriageStatus::AcceptedRisk => "accepted_risk",
        }
    }
}

impl fmt::Display for TriageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TriageStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TriageStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown triage status `{s}` (open, confirmed, false_positive, accepted_risk)"
                )
            })
    }
}

/// Triage state of a finding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triage {
    pub status: TriageStatus,
    pub comment: Option<String>,
    pub by: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// A finding as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFinding {
    #[serde(flatten)]
    pub finding: Finding,
    pub unit_id: String,
    /// Dataset of the inventory it belongs to (set by the classifier).
    pub dataset: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub first_run: i64,
    pub last_run: i64,
    /// Set when a later scan of the same unit no longer saw it.
    pub resolved_at: Option<DateTime<Utc>>,
    pub triage: Triage,
}

/// The work unit a finding belongs to: its table, else its path/object key,
/// with `#RANGE` when a range unit found it.
pub fn unit_of(f: &Finding) -> String {
    let base = f
        .location
        .table
        .clone()
        .or_else(|| f.location.path.clone())
        .unwrap_or_default();
    match &f.location.range {
        Some(r) => format!("{base}#{r}"),
        None => base,
    }
}

/// Filter and page for finding queries. Ordered by `finding_id`; page with
/// `after` (keyset: the last id of the previous page) or `offset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FindingFilter {
    pub dataset: Option<String>,
    /// Findings matched to no dataset.
    #[serde(default)]
    pub undeclared: bool,
    pub category: Option<Category>,
    pub child: Option<bool>,
    /// Sensitivity of the category ("severity" in the API).
    pub sensitivity: Option<Sensitivity>,
    pub status: Option<TriageStatus>,
    /// Findings seen in this run (their `last_run`).
    pub run: Option<i64>,
    /// None: both; Some(false): open (unresolved) only; Some(true): resolved only.
    pub resolved: Option<bool>,
    pub target: Option<String>,
    pub after: Option<String>,
    pub offset: Option<u64>,
    /// Page size; 0 means 100.
    #[serde(default)]
    pub limit: u64,
}

/// One page of results and the total count matching the filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    /// Pass as `after` for the next page; None on the last page.
    pub next_after: Option<String>,
}

/// Violation kinds (DESIGN.md legal mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    UndeclaredDataset,
    UndeclaredCategory,
    PlaintextInEncrypted,
    RetentionOverdue,
    DeclaredNotFound,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 5] = [
        ViolationKind::UndeclaredDataset,
        ViolationKind::UndeclaredCategory,
        ViolationKind::PlaintextInEncrypted,
        ViolationKind::RetentionOverdue,
        ViolationKind::DeclaredNotFound,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::UndeclaredDataset => "undeclared_dataset",
            ViolationKind::UndeclaredCategory => "undeclared_category",
            ViolationKind::PlaintextInEncrypted => "plaintext_in_encrypted",
            ViolationKind::RetentionOverdue => "retention_overdue",
            ViolationKind::DeclaredNotFound => "declared_not_found",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ViolationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ViolationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown violation kind `{s}`"))
    }
}

/// Violation severity; rises with child data and category sensitivity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    /// One step up (saturating at critical).
    pub fn raise(self) -> Severity {
        match self {
            Severity::Info => Severity::Low,
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            _ => Severity::Critical,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown severity `{s}`"))
    }
}

/// One violation found in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// Assigned by the store.
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub run_id: i64,
    pub kind: ViolationKind,
    pub severity: Severity,
    pub dataset: Option<String>,
    /// The dataset's owner (CAC Order No. 4 Art. 8); None when nothing is declared.
    pub owner: Option<String>,
    /// The article(s) violated, e.g. "CAC Order No. 4 Art. 13".
    pub article: String,
    pub category: Option<Category>,
    pub target: Option<String>,
    pub unit_id: Option<String>,
    pub column: Option<String>,
    pub finding_id: Option<String>,
    /// retention_overdue: records (rows, files, objects) past their period.
    pub record_count: Option<u64>,
    pub message: String,
}

/// Filter for violations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ViolationFilter {
    pub run: Option<i64>,
    pub dataset: Option<String>,
    pub kind: Option<ViolationKind>,
    pub min_severity: Option<Severity>,
}

/// One point of the trend over runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub findings: u64,
    pub child_findings: u64,
    pub violations: u64,
}

/// Open (unresolved) findings per dataset and category: what was found,
/// for "declared vs found" (the declared side is the inventory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetCount {
    /// None: matched to no dataset.
    pub dataset: Option<String>,
    pub category: Category,
    pub findings: u64,
    pub child_findings: u64,
    /// Sum of table findings' `child_count` plus child text findings.
    pub child_records: u64,
}

/// One audit record to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Who: a user name, a token name, or `system`.
    pub actor: String,
    /// What: e.g. `scan.start`, `finding.triage`, `sweep.approve`.
    pub action: String,
    /// On what: a run id, a finding id, a plan id.
    pub object: String,
    /// Details as JSON (from where, parameters); never a raw value.
    pub details: serde_json::Value,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub id: i64,
    /// RFC 3339 UTC with microseconds, exactly as hashed.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    /// JSON text, exactly as hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A sweep plan as far as the report can read it from the sweeper's tables
/// (column name → value as text).
pub type SweepRow = Vec<(String, String)>;

/// The store extension point. Every method is async (the daemon is tokio).
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;

    /// Start a run; returns its id.
    async fn begin_run(&self, targets: &[String]) -> Result<i64>;
    /// Record one work unit of a run (upsert).
    async fn record_unit(&self, run_id: i64, unit: &UnitRecord) -> Result<()>;
    /// Record many work units of a run in one transaction (upsert; the last
    /// record of a unit wins): a run's units at its end, one round trip per
    /// 500 units instead of one per unit.
    async fn record_units(&self, run_id: i64, units: &[UnitRecord]) -> Result<()>;
    /// Upsert findings seen in `run_id`, in one transaction. Keeps triage;
    /// re-opens a resolved finding seen again.
    async fn upsert_findings(&self, run_id: i64, findings: &[Finding]) -> Result<u64>;
    /// Finish a run: store stats and status, and resolve findings of units
    /// scanned (without error) in this run that it no longer saw, and of
    /// units of `stats.complete_targets` that no longer exist. Returns the
    /// number of findings resolved.
    async fn finish_run(&self, run_id: i64, stats: &RunStats) -> Result<u64>;
    async fn set_run_summary(&self, run_id: i64, summary: &RunSummary) -> Result<()>;
    /// Mark a run as shard `shard` (`K/N`) of the run group `run_group`.
    async fn set_run_shard(
        &self,
        run_id: i64,
        run_group: Option<&str>,
        shard: Option<&str>,
    ) -> Result<()>;
    /// The runs of a run group (the shards of one sharded scan), oldest first.
    async fn group_runs(&self, run_group: &str) -> Result<Vec<Run>>;
    /// Record what started a run and who (shown by the daemon's API).
    async fn set_run_origin(&self, run_id: i64, trigger: &str, started_by: &str) -> Result<()>;
    /// Mark runs interrupted: `Some(id)` that run (a scan stopped by shutdown,
    /// after `finish_run`), `None` every run still `running` (a daemon starting
    /// after a crash). Returns the number of runs changed.
    async fn interrupt_runs(&self, run_id: Option<i64>) -> Result<u64>;

    async fn run(&self, run_id: i64) -> Result<Option<Run>>;
    /// Most recent runs first.
    async fn runs(&self, limit: u64) -> Result<Vec<Run>>;
    async fn latest_run(&self) -> Result<Option<Run>>;
    /// The run before `run_id`.
    async fn previous_run(&self, run_id: i64) -> Result<Option<Run>>;
    async fn units(&self, run_id: i64) -> Result<Vec<UnitRecord>>;

    /// Filtered page of findings, with the total count.
    async fn findings(&self, filter: &FindingFilter) -> Result<Page<StoredFinding>>;
    async fn finding(&self, finding_id: &str) -> Result<Option<StoredFinding>>;
    /// Assign findings to datasets (classifier).
    async fn set_datasets(&self, assignments: &[(String, Option<String>)]) -> Result<()>;
    /// Set triage; also appends an audit record. Err(NotFound) for an unknown id.
    async fn triage(
        &self,
        finding_id: &str,
        status: TriageStatus,
        comment: Option<&str>,
        by: &str,
    ) -> Result<StoredFinding>;

    /// Replace the violations of a run (classification is idempotent).
    async fn replace_violations(&self, run_id: i64, violations: &[Violation]) -> Result<()>;
    async fn violations(&self, filter: &ViolationFilter) -> Result<Vec<Violation>>;

    /// Trend over the last `limit` runs, oldest first.
    async fn trend(&self, limit: u64) -> Result<Vec<TrendPoint>>;
    /// Open findings per dataset and category (optionally of one run).
    async fn dataset_counts(&self, run: Option<i64>) -> Result<Vec<DatasetCount>>;

    /// Append to the hash-chained audit log; returns the stored row.
    async fn audit_append(&self, entry: &AuditEntry) -> Result<AuditRow>;
    /// Audit rows with id > `after`, in id order.
    async fn audit_rows(&self, after: i64, limit: u64) -> Result<Vec<AuditRow>>;

    /// Sweep plans from the sweeper's `sweep_plans` table when it exists
    /// (None: no sweep tables). Columns are read as text.
    async fn sweep_plans(&self) -> Result<Option<Vec<SweepRow>>>;
}

/// Open the store a config points to: PostgreSQL when `state_url` is set,
/// else SQLite at `<state_dir>/childguard.db`. Migrations are applied.
pub async fn open(config: &crate::config::Config) -> Result<Arc<dyn Store>> {
    match &config.state_url {
        Some(url) => Ok(Arc::new(PgStore::connect(url).await?)),
        None => {
            let dir = config.state_dir();
            Ok(Arc::new(SqliteStore::open(&dir.join(DB_FILE)).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip() {
        for t in TriageStatus::ALL {
            assert_eq!(t.as_str().parse::<TriageStatus>().unwrap(), t);
        }
        for k in ViolationKind::ALL {
            assert_eq!(k.as_str().parse::<ViolationKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>().unwrap(), s);
        }
        assert_eq!(Severity::High.raise(), Severity::Critical);
        assert_eq!(Severity::Critical.raise(), Severity::Critical);
    }
}
