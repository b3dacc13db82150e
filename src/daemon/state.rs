//! The daemon's state: an embedded SQLite database (`<state_dir>/daemon.db`)
//! holding runs, findings with triage, violations, sweep plans with their
//! progress, erasure requests, reports and the audit log. Findings hold only
//! masked values and keyed fingerprints (never a raw identifier); erasure
//! requests hold the keyed fingerprint of the subject, not the subject.
//!
//! The shared `crate::store` (SQLite/PostgreSQL) is built in parallel; this
//! module is the daemon's own persistence until the integrator points the
//! handlers at it.

use crate::finding::Finding;
use chrono::Utc;
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Errors of the daemon state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {path}: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("state database: {context}: {source}")]
    Query {
        context: &'static str,
        source: sqlx::Error,
    },
}

fn q(context: &'static str) -> impl FnOnce(sqlx::Error) -> StateError {
    move |source| StateError::Query { context, source }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL, trigger TEXT NOT NULL, started_by TEXT NOT NULL,
  status TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
  targets TEXT NOT NULL DEFAULT '[]', units INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
  findings INTEGER NOT NULL DEFAULT 0, child_findings INTEGER NOT NULL DEFAULT 0,
  violations INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, message TEXT
);
CREATE TABLE IF NOT EXISTS findings (
  finding_id TEXT PRIMARY KEY, run_id INTEGER NOT NULL, target TEXT NOT NULL,
  path TEXT, tbl TEXT, line INTEGER, column_name TEXT, field TEXT,
  dataset TEXT, category TEXT NOT NULL, rule TEXT NOT NULL, child INTEGER,
  confidence REAL NOT NULL, masked TEXT NOT NULL, fingerprint TEXT NOT NULL,
  severity TEXT NOT NULL, count INTEGER, child_count INTEGER,
  status TEXT NOT NULL DEFAULT 'open', triage_note TEXT, triaged_by TEXT, triaged_at TEXT,
  first_seen TEXT NOT NULL, last_seen TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_dcs ON findings(dataset, category, child, status, finding_id);
CREATE INDEX IF NOT EXISTS findings_sev ON findings(status, severity, finding_id);
CREATE INDEX IF NOT EXISTS findings_child ON findings(status, child, finding_id);
CREATE INDEX IF NOT EXISTS findings_cat ON findings(category, status, finding_id);
CREATE INDEX IF NOT EXISTS findings_run ON findings(run_id);
CREATE INDEX IF NOT EXISTS findings_fp ON findings(fingerprint);
CREATE TABLE IF NOT EXISTS violations (
  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, dataset TEXT,
  finding_id TEXT, category TEXT, severity TEXT NOT NULL, article TEXT NOT NULL,
  message TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open', created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  UNIQUE(kind, dataset, finding_id)
);
CREATE TABLE IF NOT EXISTS sweep_plans (
  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, dataset TEXT NOT NULL,
  items TEXT NOT NULL, cutoff TEXT NOT NULL, planned_rows INTEGER NOT NULL,
  done_rows INTEGER NOT NULL DEFAULT 0, remaining_rows INTEGER,
  status TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL,
  approved_by TEXT, approved_at TEXT, started_at TEXT, finished_at TEXT, message TEXT
);
CREATE TABLE IF NOT EXISTS erasure_requests (
  id INTEGER PRIMARY KEY AUTOINCREMENT, subject_fingerprint TEXT NOT NULL, reason TEXT NOT NULL,
  status TEXT NOT NULL, matches INTEGER NOT NULL DEFAULT 0, erased_rows INTEGER NOT NULL DEFAULT 0,
  created_by TEXT NOT NULL, created_at TEXT NOT NULL, approved_by TEXT, approved_at TEXT, message TEXT
);
CREATE TABLE IF NOT EXISTS reports (
  id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, created_by TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
  action TEXT NOT NULL, object TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT
);
"#;

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A run of a job (scan, sweep, report).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub kind: String,
    pub trigger: String,
    pub started_by: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub targets: String,
    pub units: i64,
    pub bytes: i64,
    pub findings: i64,
    pub child_findings: i64,
    pub violations: i64,
    pub errors: i64,
    pub message: Option<String>,
}

/// A stored finding with its triage state.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FindingRow {
    pub finding_id: String,
    pub run_id: i64,
    pub target: String,
    pub path: Option<String>,
    #[sqlx(rename = "tbl")]
    #[serde(rename = "table")]
    pub tbl: Option<String>,
    pub line: Option<i64>,
    #[serde(rename = "column")]
    pub column_name: Option<String>,
    pub field: Option<String>,
    pub dataset: Option<String>,
    pub category: String,
    pub rule: String,
    pub child: Option<bool>,
    pub confidence: f64,
    pub masked: String,
    pub fingerprint: String,
    pub severity: String,
    pub count: Option<i64>,
    pub child_count: Option<i64>,
    pub status: String,
    pub triage_note: Option<String>,
    pub triaged_by: Option<String>,
    pub triaged_at: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ViolationRow {
    pub id: i64,
    pub kind: String,
    pub dataset: Option<String>,
    pub finding_id: Option<String>,
    pub category: Option<String>,
    pub severity: String,
    pub article: String,
    pub message: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PlanRow {
    pub id: i64,
    pub kind: String,
    pub dataset: String,
    #[serde(skip)]
    pub items: String,
    pub cutoff: String,
    pub planned_rows: i64,
    pub done_rows: i64,
    pub remaining_rows: Option<i64>,
    pub status: String,
    pub created_by: String,
    pub created_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ErasureRow {
    pub id: i64,
    pub subject_fingerprint: String,
    pub reason: String,
    pub status: String,
    pub matches: i64,
    pub erased_rows: i64,
    pub created_by: String,
    pub created_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub object: String,
    pub outcome: String,
    pub detail: Option<String>,
}

/// Filters of the findings page.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct FindingFilter {
    pub dataset: Option<String>,
    pub category: Option<String>,
    /// `true`, `false` or `unknown`.
    pub child: Option<String>,
    pub severity: Option<String>,
    pub status: Option<String>,
    pub run_id: Option<i64>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

/// One page of results.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    pub total: i64,
}

/// The daemon state database.
#[derive(Debug, Clone)]
pub struct DaemonState {
    pub pool: SqlitePool,
}

impl DaemonState {
    /// Open (creating when absent) `path` and apply the schema.
    pub async fn open(path: &Path) -> Result<Self, StateError> {
        let open = |source| StateError::Open {
            path: path.into(),
            source,
        };
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| open(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(open)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(open)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(open)?;
        // Refresh planner statistics (cheap when nothing changed).
        sqlx::raw_sql("PRAGMA optimize=0x10002")
            .execute(&pool)
            .await
            .map_err(open)?;
        Ok(DaemonState { pool })
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    // ---- runs ----

    pub async fn create_run(
        &self,
        kind: &str,
        trigger: &str,
        by: &str,
        targets: &[String],
    ) -> Result<i64, StateError> {
        let r = sqlx::query("INSERT INTO runs(kind, trigger, started_by, status, started_at, targets) VALUES (?,?,?,'running',?,?)")
            .bind(kind)
            .bind(trigger)
            .bind(by)
            .bind(now())
            .bind(serde_json::to_string(targets).unwrap())
            .execute(&self.pool)
            .await
            .map_err(q("create run"))?;
        Ok(r.last_insert_rowid())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn finish_run(
        &self,
        id: i64,
        status: &str,
        units: i64,
        bytes: i64,
        findings: i64,
        child: i64,
        violations: i64,
        errors: i64,
        message: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query("UPDATE runs SET status=?, finished_at=?, units=?, bytes=?, findings=?, child_findings=?, violations=?, errors=?, message=? WHERE id=?")
            .bind(status)
            .bind(now())
            .bind(units)
            .bind(bytes)
            .bind(findings)
            .bind(child)
            .bind(violations)
            .bind(errors)
            .bind(message)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("finish run"))?;
        Ok(())
    }

    /// Runs left `running` by a daemon that died are marked `interrupted`.
    pub async fn mark_stale_runs(&self) -> Result<u64, StateError> {
        let r = sqlx::query(
            "UPDATE runs SET status='interrupted', finished_at=? WHERE status='running'",
        )
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(q("mark stale runs"))?;
        Ok(r.rows_affected())
    }

    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRow>, StateError> {
        sqlx::query_as("SELECT * FROM runs ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list runs"))
    }

    pub async fn run(&self, id: i64) -> Result<Option<RunRow>, StateError> {
        sqlx::query_as("SELECT * FROM runs WHERE id=?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get run"))
    }

    // ---- findings ----

    /// Upsert findings of a run; triage state of known findings is kept.
    pub async fn upsert_findings(
        &self,
        run_id: i64,
        items: &[(Finding, Option<String>)],
    ) -> Result<(), StateError> {
        let t = now();
        let mut tx = self.pool.begin().await.map_err(q("begin findings"))?;
        for (f, dataset) in items {
            sqlx::query(
                "INSERT INTO findings(finding_id, run_id, target, path, tbl, line, column_name, field, dataset, category, rule, child, confidence, masked, fingerprint, severity, count, child_count, first_seen, last_seen)
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                 ON CONFLICT(finding_id) DO UPDATE SET run_id=excluded.run_id, dataset=excluded.dataset, child=excluded.child,
                   confidence=excluded.confidence, masked=excluded.masked, severity=excluded.severity, count=excluded.count,
                   child_count=excluded.child_count, last_seen=excluded.last_seen",
            )
            .bind(&f.finding_id)
            .bind(run_id)
            .bind(&f.target)
            .bind(&f.location.path)
            .bind(&f.location.table)
            .bind(f.location.line.map(|l| l as i64))
            .bind(&f.location.column)
            .bind(&f.location.field)
            .bind(dataset)
            .bind(f.category.as_str())
            .bind(&f.rule)
            .bind(f.child)
            .bind(f.confidence)
            .bind(&f.masked)
            .bind(&f.fingerprint)
            .bind(severity_of(f))
            .bind(f.count.map(|c| c as i64))
            .bind(f.child_count.map(|c| c as i64))
            .bind(&t)
            .bind(&t)
            .execute(&mut *tx)
            .await
            .map_err(q("insert finding"))?;
        }
        tx.commit().await.map_err(q("commit findings"))?;
        Ok(())
    }

    pub async fn findings(&self, f: &FindingFilter) -> Result<Page<FindingRow>, StateError> {
        let per_page = f.per_page.unwrap_or(50).clamp(1, 500);
        let page = f.page.unwrap_or(1).max(1);
        let where_ = |b: &mut QueryBuilder<Sqlite>| {
            b.push(" WHERE 1=1");
            if let Some(v) = &f.dataset {
                if v == "(undeclared)" {
                    b.push(" AND dataset IS NULL");
                } else {
                    b.push(" AND dataset = ").push_bind(v.clone());
                }
            }
            if let Some(v) = &f.category {
                b.push(" AND category = ").push_bind(v.clone());
            }
            if let Some(v) = &f.severity {
                b.push(" AND severity = ").push_bind(v.clone());
            }
            if let Some(v) = &f.status {
                b.push(" AND status = ").push_bind(v.clone());
            }
            if let Some(v) = f.run_id {
                b.push(" AND run_id = ").push_bind(v);
            }
            match f.child.as_deref() {
                Some("true") => {
                    b.push(" AND child = 1");
                }
                Some("false") => {
                    b.push(" AND child = 0");
                }
                Some("unknown") => {
                    b.push(" AND child IS NULL");
                }
                _ => {}
            }
        };
        let mut c = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM findings");
        where_(&mut c);
        let total: i64 = c
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(q("count findings"))?;
        let mut b = QueryBuilder::<Sqlite>::new("SELECT * FROM findings");
        where_(&mut b);
        b.push(" ORDER BY finding_id LIMIT ")
            .push_bind(per_page as i64)
            .push(" OFFSET ")
            .push_bind(((page - 1) * per_page) as i64);
        let items = b
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(q("list findings"))?;
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }

    pub async fn finding(&self, id: &str) -> Result<Option<FindingRow>, StateError> {
        sqlx::query_as("SELECT * FROM findings WHERE finding_id=?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get finding"))
    }

    /// Set the triage status; returns false when the finding does not exist.
    pub async fn triage(
        &self,
        id: &str,
        status: &str,
        note: Option<&str>,
        by: &str,
    ) -> Result<bool, StateError> {
        let r = sqlx::query("UPDATE findings SET status=?, triage_note=?, triaged_by=?, triaged_at=? WHERE finding_id=?")
            .bind(status)
            .bind(note)
            .bind(by)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("triage"))?;
        // A false positive or an accepted risk closes the finding's violations;
        // open or confirmed (a true finding) keeps them open.
        let vstatus = if matches!(status, "false_positive" | "accepted_risk") {
            "closed"
        } else {
            "open"
        };
        sqlx::query("UPDATE violations SET status=?, updated_at=? WHERE finding_id=?")
            .bind(vstatus)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("triage violations"))?;
        Ok(r.rows_affected() > 0)
    }

    // ---- violations ----

    #[allow(clippy::too_many_arguments)]
    pub async fn upsert_violation(
        &self,
        kind: &str,
        dataset: Option<&str>,
        finding_id: Option<&str>,
        category: Option<&str>,
        severity: &str,
        article: &str,
        message: &str,
    ) -> Result<(), StateError> {
        // NULLs never collide in UNIQUE; store empty strings for the key parts instead.
        sqlx::query(
            "INSERT INTO violations(kind, dataset, finding_id, category, severity, article, message, created_at, updated_at)
             VALUES (?,?,?,?,?,?,?,?,?)
             ON CONFLICT(kind, dataset, finding_id) DO UPDATE SET message=excluded.message, severity=excluded.severity, updated_at=excluded.updated_at",
        )
        .bind(kind)
        .bind(dataset.unwrap_or(""))
        .bind(finding_id.unwrap_or(""))
        .bind(category)
        .bind(severity)
        .bind(article)
        .bind(message)
        .bind(now())
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(q("upsert violation"))?;
        Ok(())
    }

    pub async fn close_violations(&self, kind: &str, dataset: &str) -> Result<(), StateError> {
        sqlx::query("UPDATE violations SET status='closed', updated_at=? WHERE kind=? AND dataset=? AND status='open'")
            .bind(now())
            .bind(kind)
            .bind(dataset)
            .execute(&self.pool)
            .await
            .map_err(q("close violations"))?;
        Ok(())
    }

    pub async fn violations(
        &self,
        status: Option<&str>,
        dataset: Option<&str>,
        kind: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ViolationRow>, StateError> {
        let mut b = QueryBuilder::<Sqlite>::new(
            "SELECT id, kind, NULLIF(dataset, '') AS dataset, NULLIF(finding_id, '') AS finding_id, category, severity, article, message, status, created_at, updated_at FROM violations WHERE 1=1",
        );
        if let Some(s) = status {
            b.push(" AND status = ").push_bind(s.to_string());
        }
        if let Some(s) = dataset {
            b.push(" AND dataset = ").push_bind(if s == "(undeclared)" {
                String::new()
            } else {
                s.to_string()
            });
        }
        if let Some(s) = kind {
            b.push(" AND kind = ").push_bind(s.to_string());
        }
        b.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        b.build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(q("list violations"))
    }

    // ---- sweep plans ----

    pub async fn create_plan(
        &self,
        kind: &str,
        dataset: &str,
        items: &str,
        cutoff: &str,
        planned: i64,
        by: &str,
    ) -> Result<i64, StateError> {
        let r = sqlx::query("INSERT INTO sweep_plans(kind, dataset, items, cutoff, planned_rows, status, created_by, created_at) VALUES (?,?,?,?,?,'pending',?,?)")
            .bind(kind)
            .bind(dataset)
            .bind(items)
            .bind(cutoff)
            .bind(planned)
            .bind(by)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(q("create plan"))?;
        Ok(r.last_insert_rowid())
    }

    /// Pending plans of a dataset and kind are superseded by a newer plan.
    pub async fn supersede_plans(&self, dataset: &str, kind: &str) -> Result<u64, StateError> {
        let r = sqlx::query("UPDATE sweep_plans SET status='superseded' WHERE dataset=? AND kind=? AND status='pending'")
            .bind(dataset)
            .bind(kind)
            .execute(&self.pool)
            .await
            .map_err(q("supersede plans"))?;
        Ok(r.rows_affected())
    }

    pub async fn plans(&self, status: Option<&str>) -> Result<Vec<PlanRow>, StateError> {
        let mut b = QueryBuilder::<Sqlite>::new("SELECT * FROM sweep_plans");
        if let Some(s) = status {
            b.push(" WHERE status = ").push_bind(s.to_string());
        }
        b.push(" ORDER BY id DESC LIMIT 500");
        b.build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(q("list plans"))
    }

    pub async fn plan(&self, id: i64) -> Result<Option<PlanRow>, StateError> {
        sqlx::query_as("SELECT * FROM sweep_plans WHERE id=?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get plan"))
    }

    /// Move a plan from one status to another; false when it was not in `from`.
    pub async fn plan_transition(
        &self,
        id: i64,
        from: &[&str],
        to: &str,
        by: Option<&str>,
    ) -> Result<bool, StateError> {
        let mut b = QueryBuilder::<Sqlite>::new("UPDATE sweep_plans SET status = ");
        b.push_bind(to.to_string());
        match to {
            "approved" | "rejected" => {
                b.push(", approved_by = ")
                    .push_bind(by.map(str::to_string))
                    .push(", approved_at = ")
                    .push_bind(now());
            }
            "running" => {
                b.push(", started_at = COALESCE(started_at, ")
                    .push_bind(now())
                    .push(")");
            }
            "completed" | "failed" => {
                b.push(", finished_at = ").push_bind(now());
            }
            _ => {}
        }
        b.push(" WHERE id = ")
            .push_bind(id)
            .push(" AND status IN (");
        let mut sep = b.separated(", ");
        for f in from {
            sep.push_bind(f.to_string());
        }
        b.push(")");
        let r = b
            .build()
            .execute(&self.pool)
            .await
            .map_err(q("plan transition"))?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn plan_progress(&self, id: i64, done: i64) -> Result<(), StateError> {
        sqlx::query("UPDATE sweep_plans SET done_rows=? WHERE id=?")
            .bind(done)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("plan progress"))?;
        Ok(())
    }

    pub async fn plan_finish(
        &self,
        id: i64,
        status: &str,
        remaining: i64,
        message: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query("UPDATE sweep_plans SET status=?, remaining_rows=?, message=?, finished_at=? WHERE id=?")
            .bind(status)
            .bind(remaining)
            .bind(message)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("finish plan"))?;
        Ok(())
    }

    // ---- erasures ----

    pub async fn create_erasure(
        &self,
        fp: &str,
        reason: &str,
        matches: i64,
        by: &str,
    ) -> Result<i64, StateError> {
        let r = sqlx::query("INSERT INTO erasure_requests(subject_fingerprint, reason, status, matches, created_by, created_at) VALUES (?,?,'pending',?,?,?)")
            .bind(fp)
            .bind(reason)
            .bind(matches)
            .bind(by)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(q("create erasure"))?;
        Ok(r.last_insert_rowid())
    }

    pub async fn erasures(&self) -> Result<Vec<ErasureRow>, StateError> {
        sqlx::query_as("SELECT * FROM erasure_requests ORDER BY id DESC LIMIT 500")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list erasures"))
    }

    pub async fn erasure(&self, id: i64) -> Result<Option<ErasureRow>, StateError> {
        sqlx::query_as("SELECT * FROM erasure_requests WHERE id=?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get erasure"))
    }

    /// Move a pending request to `running`; false when it was not pending.
    pub async fn claim_erasure(&self, id: i64, by: &str) -> Result<bool, StateError> {
        let r = sqlx::query("UPDATE erasure_requests SET status='running', approved_by=? WHERE id=? AND status='pending'")
            .bind(by)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("claim erasure"))?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn finish_erasure(
        &self,
        id: i64,
        by: &str,
        status: &str,
        erased: i64,
        message: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query("UPDATE erasure_requests SET status=?, approved_by=?, approved_at=?, erased_rows=?, message=? WHERE id=?")
            .bind(status)
            .bind(by)
            .bind(now())
            .bind(erased)
            .bind(message)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("finish erasure"))?;
        Ok(())
    }

    // ---- reports ----

    pub async fn create_report(
        &self,
        by: &str,
        body: &serde_json::Value,
    ) -> Result<i64, StateError> {
        let r = sqlx::query("INSERT INTO reports(created_at, created_by, body) VALUES (?,?,?)")
            .bind(now())
            .bind(by)
            .bind(body.to_string())
            .execute(&self.pool)
            .await
            .map_err(q("create report"))?;
        Ok(r.last_insert_rowid())
    }

    pub async fn reports(&self) -> Result<Vec<serde_json::Value>, StateError> {
        let rows = sqlx::query(
            "SELECT id, created_at, created_by FROM reports ORDER BY id DESC LIMIT 200",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("list reports"))?;
        Ok(rows
            .iter()
            .map(|r| serde_json::json!({"id": r.get::<i64,_>(0), "created_at": r.get::<String,_>(1), "created_by": r.get::<String,_>(2)}))
            .collect())
    }

    pub async fn report(&self, id: i64) -> Result<Option<serde_json::Value>, StateError> {
        let r: Option<String> = sqlx::query_scalar("SELECT body FROM reports WHERE id=?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get report"))?;
        Ok(r.and_then(|b| serde_json::from_str(&b).ok()))
    }

    // ---- audit ----

    pub async fn audit_batch(&self, rows: &[AuditEntry]) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(q("begin audit"))?;
        for a in rows {
            sqlx::query("INSERT INTO audit(at, actor, role, action, object, outcome, detail) VALUES (?,?,?,?,?,?,?)")
                .bind(&a.at)
                .bind(&a.actor)
                .bind(&a.role)
                .bind(&a.action)
                .bind(&a.object)
                .bind(&a.outcome)
                .bind(&a.detail)
                .execute(&mut *tx)
                .await
                .map_err(q("insert audit"))?;
        }
        tx.commit().await.map_err(q("commit audit"))
    }

    pub async fn audit(
        &self,
        page: u32,
        per_page: u32,
        actor: Option<&str>,
        action: Option<&str>,
    ) -> Result<Page<AuditRow>, StateError> {
        let per_page = per_page.clamp(1, 500);
        let page = page.max(1);
        let filt = |b: &mut QueryBuilder<Sqlite>| {
            b.push(" WHERE 1=1");
            if let Some(a) = actor {
                b.push(" AND actor = ").push_bind(a.to_string());
            }
            if let Some(a) = action {
                b.push(" AND action LIKE ").push_bind(format!("{a}%"));
            }
        };
        let mut c = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM audit");
        filt(&mut c);
        let total: i64 = c
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(q("count audit"))?;
        let mut b = QueryBuilder::<Sqlite>::new("SELECT * FROM audit");
        filt(&mut b);
        b.push(" ORDER BY id DESC LIMIT ")
            .push_bind(per_page as i64)
            .push(" OFFSET ")
            .push_bind(((page - 1) * per_page) as i64);
        let items = b
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(q("list audit"))?;
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }

    // ---- aggregates for the dashboard ----

    /// Child PI findings (child = true) by dataset and category, open only.
    pub async fn child_by_dataset_category(&self) -> Result<Vec<serde_json::Value>, StateError> {
        let rows = sqlx::query(
            "SELECT COALESCE(dataset,'(undeclared)'), category, COUNT(*), SUM(COALESCE(child_count, 1)) FROM findings
             WHERE child = 1 AND status = 'open' GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("child by dataset"))?;
        Ok(rows
            .iter()
            .map(|r| {
                serde_json::json!({"dataset": r.get::<String,_>(0), "category": r.get::<String,_>(1),
                "findings": r.get::<i64,_>(2), "values": r.get::<i64,_>(3)})
            })
            .collect())
    }

    /// Categories found per dataset (for declared vs found).
    pub async fn found_categories(
        &self,
    ) -> Result<Vec<(Option<String>, String, i64, i64)>, StateError> {
        let rows = sqlx::query(
            "SELECT dataset, category, COUNT(*), SUM(CASE WHEN child = 1 THEN 1 ELSE 0 END) FROM findings WHERE status != 'false_positive' GROUP BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("found categories"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }

    pub async fn scalar(&self, sql: &'static str) -> Result<i64, StateError> {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .map_err(q("aggregate"))
    }
}

/// One audit record (CAC Order No. 4 Art. 15; MIIT Order No. 24 Art. 13(6):
/// who, when, what, on which object).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub object: String,
    pub outcome: String,
    pub detail: Option<String>,
}

/// Severity of a finding: high for vulnerable-child markers and identity
/// numbers of children; otherwise the category's sensitivity.
pub fn severity_of(f: &Finding) -> &'static str {
    use crate::finding::{Category, Sensitivity};
    if f.category == Category::VulnerableChild {
        return "high";
    }
    match (f.sensitivity, f.child) {
        (Sensitivity::High, _) => "high",
        (_, Some(true))
            if matches!(
                f.category,
                Category::CnResidentId | Category::CnPassport | Category::StudentId
            ) =>
        {
            "high"
        }
        (Sensitivity::Medium, _) => "medium",
        (Sensitivity::Low, _) => "low",
    }
}
