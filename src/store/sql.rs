//! The two SQL implementations of [`Store`]. The SQL is written once (the
//! `impl_store!` macro) in the dialect both engines share: `$n`
//! placeholders, `ON CONFLICT … DO UPDATE`, `RETURNING`. What differs is
//! passed in: the pool type, the row type, how to check a table exists and
//! how to serialize audit appends.

use super::*;
use crate::audit;
use sqlx::Row;
use std::path::Path;
use std::str::FromStr;

/// Embedded SQLite store (`<state_dir>/childguard.db`, WAL mode).
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// Serializes audit appends within this process (the chain reads the last row).
    audit_lock: tokio::sync::Mutex<()>,
}

/// PostgreSQL store (`state_url`); several daemons may share one.
pub struct PgStore {
    pool: sqlx::PgPool,
    audit_lock: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    /// Open (creating the file and its directory) and migrate.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    path: dir.into(),
                    source,
                })?;
            }
        }
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(30))
            .foreign_keys(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Db {
                op: "open sqlite",
                source,
            })?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore {
            pool,
            audit_lock: Default::default(),
        })
    }

    pub fn pool(&self) -> &sqlx::SqlitePool {
        &self.pool
    }
}

impl PgStore {
    /// Connect and migrate (sqlx takes an advisory lock while migrating).
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .map_err(|source| StoreError::Db {
                op: "connect postgres",
                source,
            })?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            pool,
            audit_lock: Default::default(),
        })
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

/// A bind value for dynamically built queries.
enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Db { op, source }
}

fn finding_where(f: &FindingFilter, binds: &mut Vec<Bind>) -> String {
    let mut w = vec!["1=1".to_string()];
    let p = |b: Bind, binds: &mut Vec<Bind>| {
        binds.push(b);
        format!("${}", binds.len())
    };
    if let Some(d) = &f.dataset {
        w.push(format!("dataset = {}", p(Bind::Text(d.clone()), binds)));
    }
    if f.undeclared {
        w.push("dataset IS NULL".into());
    }
    if let Some(c) = f.category {
        w.push(format!(
            "category = {}",
            p(Bind::Text(c.as_str().into()), binds)
        ));
    }
    if let Some(c) = f.child {
        w.push(format!("child = {}", p(Bind::Bool(c), binds)));
    }
    if let Some(s) = f.sensitivity {
        w.push(format!(
            "sensitivity = {}",
            p(Bind::Text(sens_str(s).into()), binds)
        ));
    }
    if let Some(s) = f.status {
        w.push(format!(
            "triage_status = {}",
            p(Bind::Text(s.as_str().into()), binds)
        ));
    }
    if let Some(r) = f.run {
        w.push(format!("last_run = {}", p(Bind::Int(r), binds)));
    }
    match f.resolved {
        Some(true) => w.push("resolved_at IS NOT NULL".into()),
        Some(false) => w.push("resolved_at IS NULL".into()),
        None => {}
    }
    if let Some(t) = &f.target {
        w.push(format!("target = {}", p(Bind::Text(t.clone()), binds)));
    }
    w.join(" AND ")
}

fn sens_str(s: Sensitivity) -> &'static str {
    match s {
        Sensitivity::Low => "low",
        Sensitivity::Medium => "medium",
        Sensitivity::High => "high",
    }
}

fn parse_sens(s: &str) -> Sensitivity {
    match s {
        "low" => Sensitivity::Low,
        "high" => Sensitivity::High,
        _ => Sensitivity::Medium,
    }
}

fn bad(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("stored {what} is invalid: {e}"))
}

const FINDING_COLS: &str = "finding_id, target, unit_id, path, table_name, column_name, field, line, byte_offset, category, rule, child, confidence, masked, fingerprint, sensitivity, rows_scanned, match_count, child_count, dataset, first_seen, last_seen, first_run, last_run, resolved_at, triage_status, triage_comment, triage_by, triage_at";
const RUN_COLS: &str =
    "id, started_at, finished_at, targets, status, stats, summary, run_group, shard, run_trigger, started_by";
const VIOLATION_COLS: &str = "id, run_id, kind, severity, dataset, owner, article, category, target, unit_id, column_name, finding_id, record_count, message";
/// Columns an upsert writes, in bind order (`first_seen` … `last_run` last).
const UPSERT_COLS: &str = "finding_id, target, unit_id, path, table_name, column_name, field, line, byte_offset, category, rule, child, confidence, masked, fingerprint, sensitivity, rows_scanned, match_count, child_count, first_seen, last_seen, first_run, last_run";
/// What a finding seen again updates: keeps id, first seen/run, dataset and triage.
const UPSERT_CONFLICT: &str = " ON CONFLICT (finding_id) DO UPDATE SET line = excluded.line, byte_offset = excluded.byte_offset, child = excluded.child, \
     confidence = excluded.confidence, masked = excluded.masked, fingerprint = excluded.fingerprint, sensitivity = excluded.sensitivity, \
     rows_scanned = excluded.rows_scanned, match_count = excluded.match_count, child_count = excluded.child_count, \
     last_seen = excluded.last_seen, last_run = excluded.last_run, resolved_at = NULL, unit_id = excluded.unit_id";

/// Indexes into `findings` of the last finding of each id, in input order:
/// one statement may not touch a row twice.
fn last_of_each_id(findings: &[Finding]) -> Vec<usize> {
    let mut idx: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(findings.len());
    for (i, f) in findings.iter().enumerate() {
        idx.insert(f.finding_id.as_str(), i);
    }
    let mut order: Vec<usize> = idx.into_values().collect();
    order.sort_unstable();
    order
}

macro_rules! impl_store {
    ($ty:ty, $row:ty, $backend:literal, $table_exists:literal, $audit_lock_sql:expr) => {
        impl $ty {
            fn decode_finding(r: &$row) -> Result<StoredFinding> {
                let g = |e: sqlx::Error| bad("finding", e);
                let category: String = r.try_get("category").map_err(g)?;
                let u = |v: Option<i64>| v.map(|x| x.max(0) as u64);
                let finding = Finding {
                    finding_id: r.try_get("finding_id").map_err(g)?,
                    target: r.try_get("target").map_err(g)?,
                    location: crate::finding::Location {
                        path: r.try_get("path").map_err(g)?,
                        table: r.try_get("table_name").map_err(g)?,
                        line: u(r.try_get("line").map_err(g)?),
                        byte_offset: u(r.try_get("byte_offset").map_err(g)?),
                        field: r.try_get("field").map_err(g)?,
                        column: r.try_get("column_name").map_err(g)?,
                        range: None,
                        range_line: None,
                    },
                    category: Category::from_str(&category).map_err(|e| bad("value", e))?,
                    rule: r.try_get("rule").map_err(g)?,
                    child: r.try_get("child").map_err(g)?,
                    confidence: r.try_get("confidence").map_err(g)?,
                    masked: r.try_get("masked").map_err(g)?,
                    fingerprint: r.try_get("fingerprint").map_err(g)?,
                    sensitivity: parse_sens(&r.try_get::<String, _>("sensitivity").map_err(g)?),
                    rows_scanned: u(r.try_get("rows_scanned").map_err(g)?),
                    count: u(r.try_get("match_count").map_err(g)?),
                    child_count: u(r.try_get("child_count").map_err(g)?),
                    rows: None,
                };
                let status: String = r.try_get("triage_status").map_err(g)?;
                let unit_id: String = r.try_get("unit_id").map_err(g)?;
                let mut finding = finding;
                finding.location.range = crate::source::shard::split_unit_id(&unit_id).1.map(|r| r.to_string());
                Ok(StoredFinding {
                    finding,
                    unit_id,
                    dataset: r.try_get("dataset").map_err(g)?,
                    first_seen: r.try_get("first_seen").map_err(g)?,
                    last_seen: r.try_get("last_seen").map_err(g)?,
                    first_run: r.try_get("first_run").map_err(g)?,
                    last_run: r.try_get("last_run").map_err(g)?,
                    resolved_at: r.try_get("resolved_at").map_err(g)?,
                    triage: Triage {
                        status: TriageStatus::from_str(&status).map_err(|e| bad("value", e))?,
                        comment: r.try_get("triage_comment").map_err(g)?,
                        by: r.try_get("triage_by").map_err(g)?,
                        at: r.try_get("triage_at").map_err(g)?,
                    },
                })
            }

            fn decode_run(r: &$row) -> Result<Run> {
                let g = |e: sqlx::Error| bad("run", e);
                let targets: String = r.try_get("targets").map_err(g)?;
                let status: String = r.try_get("status").map_err(g)?;
                let stats: String = r.try_get("stats").map_err(g)?;
                let summary: String = r.try_get("summary").map_err(g)?;
                Ok(Run {
                    id: r.try_get("id").map_err(g)?,
                    started_at: r.try_get("started_at").map_err(g)?,
                    finished_at: r.try_get("finished_at").map_err(g)?,
                    targets: serde_json::from_str(&targets).map_err(|e| bad("value", e))?,
                    status: RunStatus::from_str(&status).map_err(|e| bad("value", e))?,
                    stats: serde_json::from_str(&stats).map_err(|e| bad("value", e))?,
                    summary: serde_json::from_str(&summary).map_err(|e| bad("value", e))?,
                    run_group: r.try_get("run_group").map_err(g)?,
                    shard: r.try_get("shard").map_err(g)?,
                    trigger: r.try_get("run_trigger").map_err(g)?,
                    started_by: r.try_get("started_by").map_err(g)?,
                })
            }

            fn decode_violation(r: &$row) -> Result<Violation> {
                let g = |e: sqlx::Error| bad("violation", e);
                let kind: String = r.try_get("kind").map_err(g)?;
                let sev: String = r.try_get("severity").map_err(g)?;
                let cat: Option<String> = r.try_get("category").map_err(g)?;
                let count: Option<i64> = r.try_get("record_count").map_err(g)?;
                Ok(Violation {
                    id: r.try_get("id").map_err(g)?,
                    run_id: r.try_get("run_id").map_err(g)?,
                    kind: ViolationKind::from_str(&kind).map_err(|e| bad("value", e))?,
                    severity: Severity::from_str(&sev).map_err(|e| bad("value", e))?,
                    dataset: r.try_get("dataset").map_err(g)?,
                    owner: r.try_get("owner").map_err(g)?,
                    article: r.try_get("article").map_err(g)?,
                    category: cat.map(|c| Category::from_str(&c)).transpose().map_err(|e| bad("value", e))?,
                    target: r.try_get("target").map_err(g)?,
                    unit_id: r.try_get("unit_id").map_err(g)?,
                    column: r.try_get("column_name").map_err(g)?,
                    finding_id: r.try_get("finding_id").map_err(g)?,
                    record_count: count.map(|c| c.max(0) as u64),
                    message: r.try_get("message").map_err(g)?,
                })
            }

            fn decode_audit(r: &$row) -> Result<AuditRow> {
                let g = |e: sqlx::Error| bad("audit row", e);
                Ok(AuditRow {
                    id: r.try_get("id").map_err(g)?,
                    at: r.try_get("at").map_err(g)?,
                    actor: r.try_get("actor").map_err(g)?,
                    action: r.try_get("action").map_err(g)?,
                    object: r.try_get("object").map_err(g)?,
                    details: r.try_get("details").map_err(g)?,
                    prev_hash: r.try_get("prev_hash").map_err(g)?,
                    hash: r.try_get("hash").map_err(g)?,
                })
            }
        }

        #[async_trait::async_trait]
        impl Store for $ty {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn begin_run(&self, targets: &[String]) -> Result<i64> {
                let t = serde_json::to_string(targets).expect("strings serialize");
                let id: i64 = sqlx::query_scalar("INSERT INTO runs (started_at, targets, status) VALUES ($1, $2, 'running') RETURNING id")
                    .bind(now())
                    .bind(&t)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("begin run"))?;
                self.audit_append(&AuditEntry {
                    actor: "system".into(),
                    action: "scan.start".into(),
                    object: format!("run:{id}"),
                    details: serde_json::json!({ "targets": targets }),
                })
                .await?;
                Ok(id)
            }

            async fn record_unit(&self, run_id: i64, u: &UnitRecord) -> Result<()> {
                sqlx::query(
                    "INSERT INTO work_units (run_id, target, unit_id, bytes, rows_read, error, skipped, shard) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) \
                     ON CONFLICT (run_id, target, unit_id) DO UPDATE SET bytes = excluded.bytes, rows_read = excluded.rows_read, error = excluded.error, skipped = excluded.skipped, shard = excluded.shard",
                )
                .bind(run_id)
                .bind(&u.target)
                .bind(&u.unit_id)
                .bind(u.bytes as i64)
                .bind(u.rows as i64)
                .bind(&u.error)
                .bind(&u.skipped)
                .bind(&u.shard)
                .execute(&self.pool)
                .await
                .map_err(db("record unit"))?;
                Ok(())
            }

            async fn record_units(&self, run_id: i64, units: &[UnitRecord]) -> Result<()> {
                // The last record of each unit; one statement may not touch a row twice.
                let mut last: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::with_capacity(units.len());
                for (i, u) in units.iter().enumerate() {
                    last.insert((u.target.as_str(), u.unit_id.as_str()), i);
                }
                let mut order: Vec<usize> = last.into_values().collect();
                order.sort_unstable();
                let mut tx = self.pool.begin().await.map_err(db("begin record units"))?;
                for chunk in order.chunks(500) {
                    let rows: Vec<String> = (0..chunk.len())
                        .map(|i| {
                            let b = i * 7;
                            format!("($1,${},${},${},${},${},${},${})", b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8)
                        })
                        .collect();
                    let sql = format!(
                        "INSERT INTO work_units (run_id, target, unit_id, bytes, rows_read, error, skipped, shard) VALUES {} \
                         ON CONFLICT (run_id, target, unit_id) DO UPDATE SET bytes = excluded.bytes, rows_read = excluded.rows_read, error = excluded.error, skipped = excluded.skipped, shard = excluded.shard",
                        rows.join(",")
                    );
                    let mut q = sqlx::query(&sql).bind(run_id);
                    for &i in chunk {
                        let u = &units[i];
                        q = q
                            .bind(&u.target)
                            .bind(&u.unit_id)
                            .bind(u.bytes as i64)
                            .bind(u.rows as i64)
                            .bind(&u.error)
                            .bind(&u.skipped)
                            .bind(&u.shard);
                    }
                    q.execute(&mut *tx).await.map_err(db("record units"))?;
                }
                tx.commit().await.map_err(db("commit record units"))?;
                Ok(())
            }

            async fn upsert_findings(&self, run_id: i64, findings: &[Finding]) -> Result<u64> {
                if findings.is_empty() {
                    return Ok(0);
                }
                let order = last_of_each_id(findings);
                self.write_findings(run_id, findings, &order).await?;
                Ok(order.len() as u64)
            }

            async fn finish_run(&self, run_id: i64, stats: &RunStats) -> Result<u64> {
                let status = if stats.error.is_some() {
                    RunStatus::Failed
                } else if stats.units_failed > 0 {
                    RunStatus::CompletedWithErrors
                } else {
                    RunStatus::Completed
                };
                let at = now();
                let mut tx = self.pool.begin().await.map_err(db("begin finish run"))?;
                let resolved = sqlx::query(
                    "UPDATE findings SET resolved_at = $1 WHERE resolved_at IS NULL AND last_run <> $2 AND EXISTS (\
                       SELECT 1 FROM work_units u WHERE u.run_id = $2 AND u.target = findings.target AND u.unit_id = findings.unit_id \
                       AND u.error IS NULL AND u.skipped IS NULL)",
                )
                .bind(at)
                .bind(run_id)
                .execute(&mut *tx)
                .await
                .map_err(db("resolve findings"))?
                .rows_affected();
                let mut resolved = resolved;
                for t in &stats.complete_targets {
                    resolved += sqlx::query(
                        "UPDATE findings SET resolved_at = $1 WHERE resolved_at IS NULL AND last_run <> $2 AND target = $3 AND NOT EXISTS (\
                           SELECT 1 FROM work_units u WHERE u.run_id = $2 AND u.target = findings.target AND u.unit_id = findings.unit_id)",
                    )
                    .bind(at)
                    .bind(run_id)
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("resolve vanished units"))?
                    .rows_affected();
                }
                let n = sqlx::query("UPDATE runs SET finished_at = $1, status = $2, stats = $3, summary = $4 WHERE id = $5")
                    .bind(at)
                    .bind(status.as_str())
                    .bind(serde_json::to_string(stats).expect("stats serialize"))
                    .bind(serde_json::to_string(&RunSummary { resolved, ..Default::default() }).expect("summary serializes"))
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("finish run"))?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound { what: "run", id: run_id.to_string() });
                }
                tx.commit().await.map_err(db("commit finish run"))?;
                // Fresh planner statistics, so filtered pages use the selective index.
                sqlx::query("ANALYZE findings").execute(&self.pool).await.map_err(db("analyze findings"))?;
                self.audit_append(&AuditEntry {
                    actor: "system".into(),
                    action: "scan.finish".into(),
                    object: format!("run:{run_id}"),
                    details: serde_json::json!({ "status": status, "stats": stats, "resolved": resolved }),
                })
                .await?;
                Ok(resolved)
            }

            async fn set_run_summary(&self, run_id: i64, summary: &RunSummary) -> Result<()> {
                sqlx::query("UPDATE runs SET summary = $1 WHERE id = $2")
                    .bind(serde_json::to_string(summary).expect("summary serializes"))
                    .bind(run_id)
                    .execute(&self.pool)
                    .await
                    .map_err(db("set run summary"))?;
                Ok(())
            }

            async fn set_run_shard(&self, run_id: i64, run_group: Option<&str>, shard: Option<&str>) -> Result<()> {
                let n = sqlx::query("UPDATE runs SET run_group = $1, shard = $2 WHERE id = $3")
                    .bind(run_group)
                    .bind(shard)
                    .bind(run_id)
                    .execute(&self.pool)
                    .await
                    .map_err(db("set run shard"))?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound { what: "run", id: run_id.to_string() });
                }
                Ok(())
            }

            async fn group_runs(&self, run_group: &str) -> Result<Vec<Run>> {
                let rows = sqlx::query(&format!("SELECT {RUN_COLS} FROM runs WHERE run_group = $1 ORDER BY id"))
                    .bind(run_group)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list group runs"))?;
                rows.iter().map(Self::decode_run).collect()
            }

            async fn set_run_origin(&self, run_id: i64, trigger: &str, started_by: &str) -> Result<()> {
                sqlx::query("UPDATE runs SET run_trigger = $1, started_by = $2 WHERE id = $3")
                    .bind(trigger)
                    .bind(started_by)
                    .bind(run_id)
                    .execute(&self.pool)
                    .await
                    .map_err(db("set run origin"))?;
                Ok(())
            }

            async fn interrupt_runs(&self, run_id: Option<i64>) -> Result<u64> {
                let q = match run_id {
                    Some(id) => sqlx::query("UPDATE runs SET status = 'interrupted', finished_at = COALESCE(finished_at, $1) WHERE id = $2").bind(now()).bind(id),
                    None => sqlx::query("UPDATE runs SET status = 'interrupted', finished_at = $1 WHERE status = 'running'").bind(now()),
                };
                Ok(q.execute(&self.pool).await.map_err(db("interrupt runs"))?.rows_affected())
            }

            async fn run(&self, run_id: i64) -> Result<Option<Run>> {
                let r = sqlx::query(&format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"))
                    .bind(run_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("get run"))?;
                r.as_ref().map(Self::decode_run).transpose()
            }

            async fn runs(&self, limit: u64) -> Result<Vec<Run>> {
                let rows = sqlx::query(&format!("SELECT {RUN_COLS} FROM runs ORDER BY id DESC LIMIT $1"))
                    .bind(limit.min(i64::MAX as u64) as i64)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list runs"))?;
                rows.iter().map(Self::decode_run).collect()
            }

            async fn latest_run(&self) -> Result<Option<Run>> {
                Ok(self.runs(1).await?.into_iter().next())
            }

            async fn previous_run(&self, run_id: i64) -> Result<Option<Run>> {
                let r = sqlx::query(&format!("SELECT {RUN_COLS} FROM runs WHERE id < $1 ORDER BY id DESC LIMIT 1"))
                    .bind(run_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("previous run"))?;
                r.as_ref().map(Self::decode_run).transpose()
            }

            async fn units(&self, run_id: i64) -> Result<Vec<UnitRecord>> {
                let rows = sqlx::query("SELECT target, unit_id, bytes, rows_read, error, skipped, shard FROM work_units WHERE run_id = $1 ORDER BY target, unit_id")
                    .bind(run_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("list units"))?;
                rows.iter()
                    .map(|r| {
                        let g = |e: sqlx::Error| bad("unit", e);
                        Ok(UnitRecord {
                            target: r.try_get("target").map_err(g)?,
                            unit_id: r.try_get("unit_id").map_err(g)?,
                            bytes: r.try_get::<i64, _>("bytes").map_err(g)?.max(0) as u64,
                            rows: r.try_get::<i64, _>("rows_read").map_err(g)?.max(0) as u64,
                            error: r.try_get("error").map_err(g)?,
                            skipped: r.try_get("skipped").map_err(g)?,
                            shard: r.try_get("shard").map_err(g)?,
                        })
                    })
                    .collect()
            }

            async fn findings(&self, filter: &FindingFilter) -> Result<Page<StoredFinding>> {
                let mut binds = Vec::new();
                let w = finding_where(filter, &mut binds);
                let count_sql = format!("SELECT count(*) FROM findings WHERE {w}");
                let mut cq = sqlx::query_scalar::<_, i64>(&count_sql);
                for b in &binds {
                    cq = match b {
                        Bind::Text(s) => cq.bind(s.clone()),
                        Bind::Int(i) => cq.bind(*i),
                        Bind::Bool(x) => cq.bind(*x),
                    };
                }
                let total = cq.fetch_one(&self.pool).await.map_err(db("count findings"))?.max(0) as u64;
                let limit = if filter.limit == 0 { 100 } else { filter.limit.min(1_000_000) };
                let mut w2 = w;
                if let Some(a) = &filter.after {
                    binds.push(Bind::Text(a.clone()));
                    w2.push_str(&format!(" AND finding_id > ${}", binds.len()));
                }
                binds.push(Bind::Int(limit as i64 + 1));
                let mut sql = format!("SELECT {FINDING_COLS} FROM findings WHERE {w2} ORDER BY finding_id LIMIT ${}", binds.len());
                if let Some(o) = filter.offset {
                    binds.push(Bind::Int(o as i64));
                    sql.push_str(&format!(" OFFSET ${}", binds.len()));
                }
                let mut q = sqlx::query(&sql);
                for b in binds {
                    q = match b {
                        Bind::Text(s) => q.bind(s),
                        Bind::Int(i) => q.bind(i),
                        Bind::Bool(x) => q.bind(x),
                    };
                }
                let rows = q.fetch_all(&self.pool).await.map_err(db("list findings"))?;
                let more = rows.len() as u64 > limit;
                let items: Vec<StoredFinding> = rows.iter().take(limit as usize).map(Self::decode_finding).collect::<Result<_>>()?;
                let next_after = if more { items.last().map(|f| f.finding.finding_id.clone()) } else { None };
                Ok(Page { items, total, next_after })
            }

            async fn finding(&self, finding_id: &str) -> Result<Option<StoredFinding>> {
                let r = sqlx::query(&format!("SELECT {FINDING_COLS} FROM findings WHERE finding_id = $1"))
                    .bind(finding_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("get finding"))?;
                r.as_ref().map(Self::decode_finding).transpose()
            }

            async fn set_datasets(&self, assignments: &[(String, Option<String>)]) -> Result<()> {
                // Grouped by dataset: one UPDATE … WHERE finding_id IN (…) per 500 ids.
                // Rows already in their dataset are not rewritten (a re-scan assigns
                // most findings where they were: no new row versions, no index writes).
                let mut groups: std::collections::BTreeMap<Option<&str>, Vec<&str>> = std::collections::BTreeMap::new();
                for (id, ds) in assignments {
                    groups.entry(ds.as_deref()).or_default().push(id.as_str());
                }
                let mut tx = self.pool.begin().await.map_err(db("begin set datasets"))?;
                for (ds, ids) in groups {
                    for chunk in ids.chunks(500) {
                        let ph: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                        let sql = format!("UPDATE findings SET dataset = $1 WHERE finding_id IN ({}) AND dataset IS DISTINCT FROM $1", ph.join(","));
                        let mut q = sqlx::query(&sql).bind(ds);
                        for id in chunk {
                            q = q.bind(*id);
                        }
                        q.execute(&mut *tx).await.map_err(db("set dataset"))?;
                    }
                }
                tx.commit().await.map_err(db("commit set datasets"))?;
                Ok(())
            }

            async fn triage(&self, finding_id: &str, status: TriageStatus, comment: Option<&str>, by: &str) -> Result<StoredFinding> {
                let before = self.finding(finding_id).await?.ok_or_else(|| StoreError::NotFound { what: "finding", id: finding_id.into() })?;
                sqlx::query("UPDATE findings SET triage_status = $1, triage_comment = $2, triage_by = $3, triage_at = $4 WHERE finding_id = $5")
                    .bind(status.as_str())
                    .bind(comment)
                    .bind(by)
                    .bind(now())
                    .bind(finding_id)
                    .execute(&self.pool)
                    .await
                    .map_err(db("triage"))?;
                self.audit_append(&AuditEntry {
                    actor: by.into(),
                    action: "finding.triage".into(),
                    object: format!("finding:{finding_id}"),
                    details: serde_json::json!({ "from": before.triage.status, "to": status, "comment": comment }),
                })
                .await?;
                self.finding(finding_id).await?.ok_or_else(|| StoreError::NotFound { what: "finding", id: finding_id.into() })
            }

            async fn replace_violations(&self, run_id: i64, violations: &[Violation]) -> Result<()> {
                let mut tx = self.pool.begin().await.map_err(db("begin violations"))?;
                sqlx::query("DELETE FROM violations WHERE run_id = $1").bind(run_id).execute(&mut *tx).await.map_err(db("clear violations"))?;
                for v in violations {
                    sqlx::query(
                        "INSERT INTO violations (run_id, kind, severity, dataset, owner, article, category, target, unit_id, column_name, finding_id, record_count, message) \
                         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                    )
                    .bind(run_id)
                    .bind(v.kind.as_str())
                    .bind(v.severity.as_str())
                    .bind(&v.dataset)
                    .bind(&v.owner)
                    .bind(&v.article)
                    .bind(v.category.map(|c| c.as_str()))
                    .bind(&v.target)
                    .bind(&v.unit_id)
                    .bind(&v.column)
                    .bind(&v.finding_id)
                    .bind(v.record_count.map(|c| c as i64))
                    .bind(&v.message)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("insert violation"))?;
                }
                tx.commit().await.map_err(db("commit violations"))?;
                Ok(())
            }

            async fn violations(&self, f: &ViolationFilter) -> Result<Vec<Violation>> {
                let mut binds = Vec::new();
                let mut w = vec!["1=1".to_string()];
                if let Some(r) = f.run {
                    binds.push(Bind::Int(r));
                    w.push(format!("run_id = ${}", binds.len()));
                }
                if let Some(d) = &f.dataset {
                    binds.push(Bind::Text(d.clone()));
                    w.push(format!("dataset = ${}", binds.len()));
                }
                if let Some(k) = f.kind {
                    binds.push(Bind::Text(k.as_str().into()));
                    w.push(format!("kind = ${}", binds.len()));
                }
                let sql = format!("SELECT {VIOLATION_COLS} FROM violations WHERE {} ORDER BY run_id DESC, id", w.join(" AND "));
                let mut q = sqlx::query(&sql);
                for b in binds {
                    q = match b {
                        Bind::Text(s) => q.bind(s),
                        Bind::Int(i) => q.bind(i),
                        Bind::Bool(x) => q.bind(x),
                    };
                }
                let rows = q.fetch_all(&self.pool).await.map_err(db("list violations"))?;
                let mut out: Vec<Violation> = rows.iter().map(Self::decode_violation).collect::<Result<_>>()?;
                if let Some(min) = f.min_severity {
                    out.retain(|v| v.severity >= min);
                }
                out.sort_by(|a, b| b.run_id.cmp(&a.run_id).then(b.severity.cmp(&a.severity)).then(a.id.cmp(&b.id)));
                Ok(out)
            }

            async fn trend(&self, limit: u64) -> Result<Vec<TrendPoint>> {
                let mut runs = self.runs(limit).await?;
                runs.reverse();
                Ok(runs
                    .into_iter()
                    .map(|r| TrendPoint {
                        run_id: r.id,
                        started_at: r.started_at,
                        findings: r.summary.findings,
                        child_findings: r.summary.child_findings,
                        violations: r.summary.violations,
                    })
                    .collect())
            }

            async fn dataset_counts(&self, run: Option<i64>) -> Result<Vec<DatasetCount>> {
                let sql = format!(
                    "SELECT dataset, category, count(*) AS n, \
                     CAST(COALESCE(SUM(CASE WHEN child THEN 1 ELSE 0 END), 0) AS BIGINT) AS c, \
                     CAST(COALESCE(SUM(CASE WHEN child_count IS NOT NULL THEN child_count WHEN child THEN 1 ELSE 0 END), 0) AS BIGINT) AS r \
                     FROM findings WHERE resolved_at IS NULL {} GROUP BY dataset, category ORDER BY dataset, category",
                    if run.is_some() { "AND last_run = $1" } else { "" }
                );
                let mut q = sqlx::query(&sql);
                if let Some(r) = run {
                    q = q.bind(r);
                }
                let rows = q.fetch_all(&self.pool).await.map_err(db("dataset counts"))?;
                rows.iter()
                    .map(|r| {
                        let g = |e: sqlx::Error| bad("dataset count", e);
                        let cat: String = r.try_get("category").map_err(g)?;
                        Ok(DatasetCount {
                            dataset: r.try_get("dataset").map_err(g)?,
                            category: Category::from_str(&cat).map_err(|e| bad("value", e))?,
                            findings: r.try_get::<i64, _>("n").map_err(g)?.max(0) as u64,
                            child_findings: r.try_get::<i64, _>("c").map_err(g)?.max(0) as u64,
                            child_records: r.try_get::<i64, _>("r").map_err(g)?.max(0) as u64,
                        })
                    })
                    .collect()
            }

            async fn audit_append(&self, entry: &AuditEntry) -> Result<AuditRow> {
                let _guard = self.audit_lock.lock().await;
                let mut tx = self.pool.begin().await.map_err(db("begin audit append"))?;
                let lock: Option<&str> = $audit_lock_sql;
                if let Some(l) = lock {
                    sqlx::query(l).execute(&mut *tx).await.map_err(db("lock audit chain"))?;
                }
                let last = sqlx::query("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("read audit head"))?;
                let (prev_id, prev_hash) = match last {
                    Some(r) => (r.try_get::<i64, _>("id").map_err(db("read audit head"))?, r.try_get::<String, _>("hash").map_err(db("read audit head"))?),
                    None => (0, audit::GENESIS.to_string()),
                };
                let row = audit::seal(prev_id + 1, &audit::timestamp(now()), entry, &prev_hash);
                sqlx::query("INSERT INTO audit_log (id, at, actor, action, object, details, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
                    .bind(row.id)
                    .bind(&row.at)
                    .bind(&row.actor)
                    .bind(&row.action)
                    .bind(&row.object)
                    .bind(&row.details)
                    .bind(&row.prev_hash)
                    .bind(&row.hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("append audit"))?;
                tx.commit().await.map_err(db("commit audit"))?;
                Ok(row)
            }

            async fn audit_rows(&self, after: i64, limit: u64) -> Result<Vec<AuditRow>> {
                let rows = sqlx::query("SELECT id, at, actor, action, object, details, prev_hash, hash FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after)
                    .bind(limit.min(i64::MAX as u64) as i64)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("read audit"))?;
                rows.iter().map(Self::decode_audit).collect()
            }

            async fn sweep_plans(&self) -> Result<Option<Vec<SweepRow>>> {
                let n: i64 = sqlx::query_scalar($table_exists)
                    .bind("sweep_plans")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("look for sweep tables"))?;
                if n == 0 {
                    return Ok(None);
                }
                let rows = sqlx::query("SELECT * FROM sweep_plans").fetch_all(&self.pool).await.map_err(db("read sweep plans"))?;
                let mut out = Vec::new();
                for r in &rows {
                    use sqlx::Column;
                    let mut cols = Vec::new();
                    for (i, c) in r.columns().iter().enumerate() {
                        let v = r
                            .try_get::<Option<String>, _>(i)
                            .map(|v| v.unwrap_or_default())
                            .or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| v.map(|x| x.to_string()).unwrap_or_default()))
                            .or_else(|_| r.try_get::<Option<i32>, _>(i).map(|v| v.map(|x| x.to_string()).unwrap_or_default()))
                            .or_else(|_| r.try_get::<Option<f64>, _>(i).map(|v| v.map(|x| x.to_string()).unwrap_or_default()))
                            .or_else(|_| r.try_get::<Option<bool>, _>(i).map(|v| v.map(|x| x.to_string()).unwrap_or_default()))
                            .or_else(|_| r.try_get::<Option<DateTime<Utc>>, _>(i).map(|v| v.map(|x| x.to_rfc3339()).unwrap_or_default()))
                            .unwrap_or_else(|_| "?".into());
                        cols.push((c.name().to_string(), v));
                    }
                    out.push(cols);
                }
                Ok(Some(out))
            }
        }
    };
}

impl_store!(
    SqliteStore,
    sqlx::sqlite::SqliteRow,
    "sqlite",
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    None
);
impl_store!(
    PgStore,
    sqlx::postgres::PgRow,
    "postgres",
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
    Some("SELECT pg_advisory_xact_lock(7262712963)")
);

impl SqliteStore {
    /// One prepared single-row upsert per finding in one transaction: through
    /// sqlx that is ~5x faster on SQLite than wide multi-row statements.
    async fn write_findings(
        &self,
        run_id: i64,
        findings: &[Finding],
        order: &[usize],
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO findings ({UPSERT_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$20,$21,$21){UPSERT_CONFLICT}"
        );
        let at = now();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("begin findings batch"))?;
        for &i in order {
            let f = &findings[i];
            let l = &f.location;
            sqlx::query(&sql)
                .bind(&f.finding_id)
                .bind(&f.target)
                .bind(unit_of(f))
                .bind(&l.path)
                .bind(&l.table)
                .bind(&l.column)
                .bind(&l.field)
                .bind(l.line.map(|x| x as i64))
                .bind(l.byte_offset.map(|x| x as i64))
                .bind(f.category.as_str())
                .bind(&f.rule)
                .bind(f.child)
                .bind(f.confidence)
                .bind(&f.masked)
                .bind(&f.fingerprint)
                .bind(sens_str(f.sensitivity))
                .bind(f.rows_scanned.map(|x| x as i64))
                .bind(f.count.map(|x| x as i64))
                .bind(f.child_count.map(|x| x as i64))
                .bind(at)
                .bind(run_id)
                .execute(&mut *tx)
                .await
                .map_err(db("upsert findings"))?;
        }
        tx.commit().await.map_err(db("commit findings batch"))?;
        Ok(())
    }
}

impl PgStore {
    /// The whole batch in one statement: each column is one array parameter,
    /// `UNNEST`ed into rows (one parse, one round trip, 21 parameters however
    /// many rows). The transaction commits without waiting for its WAL flush
    /// (`synchronous_commit = off`, this transaction only): a crash of the
    /// server can lose the last batches of a run that is then never finished,
    /// and `finish_run` commits synchronously, which flushes every batch
    /// before it, so a finished run has all its findings.
    async fn write_findings(
        &self,
        run_id: i64,
        findings: &[Finding],
        order: &[usize],
    ) -> Result<()> {
        let n = order.len();
        let mut finding_id = Vec::with_capacity(n);
        let mut target = Vec::with_capacity(n);
        let mut unit_id = Vec::with_capacity(n);
        let mut path = Vec::with_capacity(n);
        let mut table = Vec::with_capacity(n);
        let mut column = Vec::with_capacity(n);
        let mut field = Vec::with_capacity(n);
        let mut line = Vec::with_capacity(n);
        let mut byte_offset = Vec::with_capacity(n);
        let mut category = Vec::with_capacity(n);
        let mut rule = Vec::with_capacity(n);
        let mut child = Vec::with_capacity(n);
        let mut confidence = Vec::with_capacity(n);
        let mut masked = Vec::with_capacity(n);
        let mut fingerprint = Vec::with_capacity(n);
        let mut sensitivity = Vec::with_capacity(n);
        let mut rows_scanned = Vec::with_capacity(n);
        let mut match_count = Vec::with_capacity(n);
        let mut child_count = Vec::with_capacity(n);
        for &i in order {
            let f = &findings[i];
            let l = &f.location;
            finding_id.push(f.finding_id.as_str());
            target.push(f.target.as_str());
            unit_id.push(unit_of(f));
            path.push(l.path.as_deref());
            table.push(l.table.as_deref());
            column.push(l.column.as_deref());
            field.push(l.field.as_deref());
            line.push(l.line.map(|x| x as i64));
            byte_offset.push(l.byte_offset.map(|x| x as i64));
            category.push(f.category.as_str());
            rule.push(f.rule.as_str());
            child.push(f.child);
            confidence.push(f.confidence);
            masked.push(f.masked.as_str());
            fingerprint.push(f.fingerprint.as_str());
            sensitivity.push(sens_str(f.sensitivity));
            rows_scanned.push(f.rows_scanned.map(|x| x as i64));
            match_count.push(f.count.map(|x| x as i64));
            child_count.push(f.child_count.map(|x| x as i64));
        }
        let sql = format!(
            "INSERT INTO findings ({UPSERT_COLS}) SELECT u.*, $20, $20, $21, $21 FROM UNNEST(\
             $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::int8[], $10::text[], \
             $11::text[], $12::bool[], $13::float8[], $14::text[], $15::text[], $16::text[], $17::int8[], $18::int8[], $19::int8[]) AS u{UPSERT_CONFLICT}"
        );
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("begin findings batch"))?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(db("findings batch commit mode"))?;
        sqlx::query(&sql)
            .bind(finding_id)
            .bind(target)
            .bind(unit_id)
            .bind(path)
            .bind(table)
            .bind(column)
            .bind(field)
            .bind(line)
            .bind(byte_offset)
            .bind(category)
            .bind(rule)
            .bind(child)
            .bind(confidence)
            .bind(masked)
            .bind(fingerprint)
            .bind(sensitivity)
            .bind(rows_scanned)
            .bind(match_count)
            .bind(child_count)
            .bind(now())
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(db("upsert findings"))?;
        tx.commit().await.map_err(db("commit findings batch"))?;
        Ok(())
    }
}
