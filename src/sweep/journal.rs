//! The sweep journal: plans, approvals, per-batch/per-object progress and
//! sweep audit events, kept in the state store (SQLite file
//! `<state_dir>/childguard.db` by default, PostgreSQL when `state_url` is set).
//!
//! Every batch and every object is journaled twice: `start` before it runs
//! (with what it is about to touch) and `done` after it committed (with what it
//! did). A run killed at any point resumes from these rows: a `start` without
//! `done` is recovered (see [`super::db`] and [`super::files`]), a `done` is
//! never repeated. Tables are created idempotently from `schema_sqlite.sql` /
//! `schema_postgres.sql` (prefix `sweep_`).

use super::SweepError;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::path::Path;
use std::str::FromStr;

const SCHEMA_SQLITE: &str = include_str!("schema_sqlite.sql");
const SCHEMA_POSTGRES: &str = include_str!("schema_postgres.sql");

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// Runs the same query text (with `$n` placeholders, which both SQLite and
/// PostgreSQL accept) on whichever pool the journal uses.
macro_rules! on_pool {
    ($self:expr, |$p:ident| $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($p) => $body,
            Pool::Pg($p) => $body,
        }
    };
}

/// One journal row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Index of the plan item (dataset × table/object set).
    pub item: i64,
    /// Table name or object key.
    pub unit: String,
    /// Batch number within the unit (0 for objects).
    pub seq: i64,
    /// `start`, `done` or `complete` (the unit has nothing left).
    pub phase: String,
    /// Rows/lines/objects affected (for `done`).
    pub affected: i64,
    /// JSON detail (keys of the batch, object version, timings).
    pub detail: String,
}

/// A stored plan row.
#[derive(Debug, Clone)]
pub struct PlanRow {
    pub id: String,
    pub kind: String,
    pub created_at: String,
    pub created_by: String,
    pub status: String,
    pub body: String,
}

/// The columns of a [`PlanRow`], in the order of [`PlanTuple`].
const PLAN_COLS: &str = "id, kind, created_at, created_by, status, body";
type PlanTuple = (String, String, String, String, String, String);

impl From<PlanTuple> for PlanRow {
    fn from((id, kind, created_at, created_by, status, body): PlanTuple) -> Self {
        PlanRow {
            id,
            kind,
            created_at,
            created_by,
            status,
            body,
        }
    }
}

/// An approval row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Approval {
    pub approved_by: String,
    pub comment: Option<String>,
    pub approved_at: String,
}

/// A sweep audit event (`plan_created`, `plan_approved`, `batch`, `object`,
/// `run_finished`, `erasure`, `purge`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub plan_id: Option<String>,
    pub at: String,
    pub event: String,
    pub actor: Option<String>,
    pub detail: serde_json::Value,
}

/// Handle on the journal tables.
#[derive(Clone)]
pub struct SweepJournal {
    pool: Pool,
    /// The hash-chained audit log every sweep event is also appended to
    /// (action `sweep.<event>`, object `plan/<id>`), when set.
    audit: Option<std::sync::Arc<dyn crate::store::Store>>,
}

impl std::fmt::Debug for SweepJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SweepJournal")
            .field("pool", &self.pool)
            .field("audit", &self.audit.as_ref().map(|s| s.backend()))
            .finish()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl SweepJournal {
    /// Open (and create) the journal: PostgreSQL at `state_url` when given,
    /// else SQLite at `<state_dir>/childguard.db` (WAL, synchronous=FULL so a
    /// journaled `start` survives a crash of the machine).
    pub async fn open(state_dir: &Path, state_url: Option<&str>) -> Result<Self, SweepError> {
        let je = |e: sqlx::Error| SweepError::Journal(e.to_string());
        let pool = match state_url {
            Some(url) if url.starts_with("postgres") => {
                let p = PgPoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await
                    .map_err(je)?;
                // Serialize concurrent schema creation by several processes.
                let mut tx = p.begin().await.map_err(je)?;
                sqlx::query("SELECT pg_advisory_xact_lock(7162021)")
                    .execute(&mut *tx)
                    .await
                    .map_err(je)?;
                sqlx::raw_sql(SCHEMA_POSTGRES)
                    .execute(&mut *tx)
                    .await
                    .map_err(je)?;
                tx.commit().await.map_err(je)?;
                Pool::Pg(p)
            }
            Some(url) => {
                return Err(SweepError::Journal(format!(
                    "state_url: unsupported scheme in `{}`",
                    super::redact_url(url)
                )))
            }
            None => {
                std::fs::create_dir_all(state_dir).map_err(|e| SweepError::Io {
                    path: state_dir.into(),
                    source: e,
                })?;
                let path = state_dir.join("childguard.db");
                let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                    .map_err(je)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(std::time::Duration::from_secs(30));
                let p = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .map_err(je)?;
                sqlx::raw_sql(SCHEMA_SQLITE).execute(&p).await.map_err(je)?;
                Pool::Sqlite(p)
            }
        };
        Ok(SweepJournal { pool, audit: None })
    }

    /// Also append every sweep event to the hash-chained audit log of `store`.
    pub fn with_audit(mut self, store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        self.audit = Some(store);
        self
    }

    /// Append one sweep event to the audit chain (when one is set).
    async fn chain(
        &self,
        plan_id: Option<&str>,
        event: &str,
        actor: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<(), SweepError> {
        let Some(store) = &self.audit else {
            return Ok(());
        };
        store
            .audit_append(&crate::store::AuditEntry {
                actor: actor.unwrap_or("childguard").to_string(),
                action: format!("sweep.{event}"),
                object: plan_id.map_or_else(|| "sweep".into(), |p| format!("plan/{p}")),
                details: detail.clone(),
            })
            .await
            .map_err(|e| SweepError::Journal(format!("audit log: {e}")))?;
        Ok(())
    }

    pub async fn insert_plan(
        &self,
        id: &str,
        kind: &str,
        created_by: &str,
        as_of: &str,
        subject_fp: Option<&str>,
        body: &str,
    ) -> Result<(), SweepError> {
        let q = "INSERT INTO sweep_plans (id, kind, created_at, created_by, as_of, subject_fp, body, status) VALUES ($1,$2,$3,$4,$5,$6,$7,'planned')";
        let at = now();
        on_pool!(self, |p| sqlx::query(q)
            .bind(id)
            .bind(kind)
            .bind(&at)
            .bind(created_by)
            .bind(as_of)
            .bind(subject_fp)
            .bind(body)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(|e| SweepError::Journal(e.to_string()))?;
        Ok(())
    }

    pub async fn plan(&self, id: &str) -> Result<PlanRow, SweepError> {
        let q = format!("SELECT {PLAN_COLS} FROM sweep_plans WHERE id = $1");
        let row: Option<PlanTuple> = on_pool!(self, |p| sqlx::query_as(&q)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(|e| SweepError::Journal(e.to_string()))?;
        row.map(PlanRow::from)
            .ok_or_else(|| SweepError::NoSuchPlan(id.to_string()))
    }

    /// Every plan, newest first (optionally of one kind), for listings.
    pub async fn plans(&self, kind: Option<&str>) -> Result<Vec<PlanRow>, SweepError> {
        let q = format!(
            "SELECT {PLAN_COLS} FROM sweep_plans \
             WHERE ($1 IS NULL OR kind = $1) ORDER BY created_at DESC, id DESC"
        );
        let rows: Vec<PlanTuple> =
            on_pool!(self, |p| sqlx::query_as(&q).bind(kind).fetch_all(p).await)
                .map_err(|e| SweepError::Journal(e.to_string()))?;
        Ok(rows.into_iter().map(PlanRow::from).collect())
    }

    /// Move a plan from one of `from` to `to` atomically; false when it was
    /// in another state (two approvers or two runners race: one wins).
    pub async fn transition(&self, id: &str, from: &[&str], to: &str) -> Result<bool, SweepError> {
        let list = from
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(",");
        let q = format!("UPDATE sweep_plans SET status = $1 WHERE id = $2 AND status IN ({list})");
        let n = on_pool!(self, |p| sqlx::query(&q)
            .bind(to)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| SweepError::Journal(e.to_string()))?;
        Ok(n > 0)
    }

    pub async fn set_status(&self, id: &str, status: &str) -> Result<(), SweepError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE sweep_plans SET status = $1 WHERE id = $2"
        )
        .bind(status)
        .bind(id)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(|e| SweepError::Journal(e.to_string()))?;
        Ok(())
    }

    pub async fn add_approval(
        &self,
        plan_id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), SweepError> {
        let q = "INSERT INTO sweep_approvals (plan_id, approved_by, comment, approved_at) VALUES ($1,$2,$3,$4)";
        let at = now();
        on_pool!(self, |p| sqlx::query(q)
            .bind(plan_id)
            .bind(by)
            .bind(comment)
            .bind(&at)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(|e| SweepError::Journal(e.to_string()))?;
        Ok(())
    }

    pub async fn approvals(&self, plan_id: &str) -> Result<Vec<Approval>, SweepError> {
        let q = "SELECT approved_by, comment, approved_at FROM sweep_approvals WHERE plan_id = $1 ORDER BY approved_at";
        let rows: Vec<(String, Option<String>, String)> =
            on_pool!(self, |p| sqlx::query_as(q).bind(plan_id).fetch_all(p).await)
                .map_err(|e| SweepError::Journal(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|(approved_by, comment, approved_at)| Approval {
                approved_by,
                comment,
                approved_at,
            })
            .collect())
    }

    /// Append one journal row. A duplicate (same plan, item, unit, seq, phase)
    /// is an error: work is never journaled twice.
    pub async fn record(&self, plan_id: &str, e: &JournalEntry) -> Result<(), SweepError> {
        let q = "INSERT INTO sweep_journal (plan_id, item, unit, seq, phase, affected, detail, at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)";
        let at = now();
        on_pool!(self, |p| sqlx::query(q)
            .bind(plan_id)
            .bind(e.item)
            .bind(&e.unit)
            .bind(e.seq)
            .bind(&e.phase)
            .bind(e.affected)
            .bind(&e.detail)
            .bind(&at)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(|err| {
            SweepError::Journal(format!(
                "journal {} item {} unit {} batch {} {}: {err}",
                plan_id, e.item, e.unit, e.seq, e.phase
            ))
        })?;
        Ok(())
    }

    /// Append several journal rows and audit events (`event`, one per detail)
    /// in one transaction: one durable commit.
    pub async fn record_all(
        &self,
        plan_id: &str,
        entries: &[JournalEntry],
        event: &str,
        details: &[serde_json::Value],
    ) -> Result<(), SweepError> {
        if entries.is_empty() && details.is_empty() {
            return Ok(());
        }
        let qj = "INSERT INTO sweep_journal (plan_id, item, unit, seq, phase, affected, detail, at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)";
        let qe = "INSERT INTO sweep_events (plan_id, at, event, actor, detail) VALUES ($1,$2,$3,NULL,$4)";
        let at = now();
        on_pool!(self, |p| async {
            let mut tx = p.begin().await?;
            for e in entries {
                sqlx::query(qj)
                    .bind(plan_id)
                    .bind(e.item)
                    .bind(&e.unit)
                    .bind(e.seq)
                    .bind(&e.phase)
                    .bind(e.affected)
                    .bind(&e.detail)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
            }
            for d in details {
                sqlx::query(qe)
                    .bind(plan_id)
                    .bind(&at)
                    .bind(event)
                    .bind(d.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await)
        .map_err(|err| SweepError::Journal(format!("journal {plan_id}: {err}")))?;
        for d in details {
            self.chain(Some(plan_id), event, None, d).await?;
        }
        Ok(())
    }

    /// Every journal row of a plan, in (item, unit, seq, phase) order.
    pub async fn entries(&self, plan_id: &str) -> Result<Vec<JournalEntry>, SweepError> {
        let q = "SELECT item, unit, seq, phase, affected, detail FROM sweep_journal WHERE plan_id = $1 ORDER BY item, unit, seq, phase DESC";
        let rows: Vec<(i64, String, i64, String, i64, String)> =
            on_pool!(self, |p| sqlx::query_as(q).bind(plan_id).fetch_all(p).await)
                .map_err(|e| SweepError::Journal(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|(item, unit, seq, phase, affected, detail)| JournalEntry {
                item,
                unit,
                seq,
                phase,
                affected,
                detail,
            })
            .collect())
    }

    /// Record a sweep audit event (also appended to the audit chain when set).
    pub async fn event(
        &self,
        plan_id: Option<&str>,
        event: &str,
        actor: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<(), SweepError> {
        let q =
            "INSERT INTO sweep_events (plan_id, at, event, actor, detail) VALUES ($1,$2,$3,$4,$5)";
        let at = now();
        let d = detail.to_string();
        on_pool!(self, |p| sqlx::query(q)
            .bind(plan_id)
            .bind(&at)
            .bind(event)
            .bind(actor)
            .bind(&d)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(|e| SweepError::Journal(e.to_string()))?;
        self.chain(plan_id, event, actor, detail).await
    }

    pub async fn events(&self, plan_id: &str) -> Result<Vec<Event>, SweepError> {
        let q = "SELECT plan_id, at, event, actor, detail FROM sweep_events WHERE plan_id = $1 ORDER BY id";
        let rows: Vec<(Option<String>, String, String, Option<String>, String)> =
            on_pool!(self, |p| sqlx::query_as(q).bind(plan_id).fetch_all(p).await)
                .map_err(|e| SweepError::Journal(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|(plan_id, at, event, actor, d)| Event {
                plan_id,
                at,
                event,
                actor,
                detail: serde_json::from_str(&d).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_journal_roundtrip_and_no_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let j = SweepJournal::open(d.path(), None).await.unwrap();
        // Opening twice is idempotent.
        let j2 = SweepJournal::open(d.path(), None).await.unwrap();
        j.insert_plan(
            "p1",
            "retention",
            "alice",
            "2025-01-01T00:00:00",
            None,
            "{}",
        )
        .await
        .unwrap();
        assert_eq!(j2.plan("p1").await.unwrap().created_by, "alice");
        assert!(matches!(
            j.plan("nope").await,
            Err(SweepError::NoSuchPlan(_))
        ));
        let e = JournalEntry {
            item: 0,
            unit: "t".into(),
            seq: 1,
            phase: "start".into(),
            affected: 0,
            detail: "{}".into(),
        };
        j.record("p1", &e).await.unwrap();
        assert!(
            j.record("p1", &e).await.is_err(),
            "a batch is never journaled twice"
        );
        j.record(
            "p1",
            &JournalEntry {
                phase: "done".into(),
                affected: 5,
                ..e.clone()
            },
        )
        .await
        .unwrap();
        let es = j.entries("p1").await.unwrap();
        assert_eq!(es.len(), 2);
        assert_eq!(es[0].phase, "start");
        assert_eq!(es[1].affected, 5);
        j.add_approval("p1", "bob", Some("ok")).await.unwrap();
        assert_eq!(j.approvals("p1").await.unwrap()[0].approved_by, "bob");
        j.event(
            Some("p1"),
            "plan_created",
            Some("alice"),
            &serde_json::json!({"n": 1}),
        )
        .await
        .unwrap();
        assert_eq!(j.events("p1").await.unwrap()[0].detail["n"], 1);
    }
}
