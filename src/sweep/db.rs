//! Database executor: PostgreSQL, MySQL/MariaDB, SQLite.
//!
//! Rows are disposed of in batches walked by primary key: the next batch is
//! the first `n` matching keys after the previous batch's last key (keyset,
//! `ORDER BY pk LIMIT n`). For integer keys a batch is the key range
//! `(lo, hi]` up to the n-th matching key; for other keys, the key list. Each
//! batch is one short transaction whose `DELETE`/`UPDATE` repeats the
//! predicate itself (`… WHERE pk > lo AND pk <= hi AND clock < $cutoff`), so
//! a row whose clock changed since it was selected (or since planning) is
//! not touched, and a record exactly at the cutoff never matches (`<` is
//! strict). The batch size adapts so one transaction takes about the target
//! time (default 200 ms). While a batch runs, the next one is selected and
//! journaled on the pool's second connection.
//!
//! Anonymization sets the retention clock column to NULL in the same
//! `UPDATE` as the anonymized columns: an anonymized record has no retention
//! clock any more (it is no longer personal information, MCA 2024 measures
//! Art. 3), `NULL < cutoff` is never true, so it is never selected again. The
//! plan refuses `disposal = "anonymize"` when the clock column is NOT NULL.
//!
//! Journal: before a batch runs, it is journaled (`start`: its key range and
//! the number of matching rows selected, or its key list); after it
//! committed, the number of rows it changed and its last key (`done`). A run
//! killed in between recovers the batch: for a range, the selected rows that
//! no longer match were done by the killed attempt (this assumes no other
//! writer disposed of rows of that range in the meantime); for a key list,
//! rows that are gone (delete) or have a NULL clock (anonymize); the rest is
//! redone by the same predicate-checked statement. When the key column is
//! itself personal data (the subject key or a declared PI column), keys are
//! not journaled; the batch is then redone without an exact count for the
//! killed attempt (the receipt says so), and batches are selected without a
//! keyset cursor (disposed rows no longer match the predicate).

use super::journal::{JournalEntry, SweepJournal};
use super::{Stop, SweepError};
use crate::config::inventory::AnonOp;
use crate::fingerprint::Fingerprinter;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use sqlx::{MySqlPool, PgPool, Row, SqlitePool};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A connection pool to the swept database.
#[derive(Debug, Clone)]
pub enum DbPool {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

macro_rules! with_db {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            DbPool::Pg($p) => $body,
            DbPool::My($p) => $body,
            DbPool::Lite($p) => $body,
        }
    };
}

/// Is this dataset source a database URL?
pub fn is_db_url(source: &str) -> bool {
    [
        "postgres://",
        "postgresql://",
        "mysql://",
        "mariadb://",
        "sqlite:",
    ]
    .iter()
    .any(|p| source.starts_with(p))
}

impl DbPool {
    pub async fn connect(url: &str) -> Result<DbPool, SweepError> {
        let err = |e: sqlx::Error| SweepError::Db {
            target: super::redact_url(url),
            message: e.to_string(),
        };
        Ok(if url.starts_with("postgres") {
            // Cutoffs are UTC: compare `timestamptz` columns in UTC, whatever the server's TimeZone.
            let opts: sqlx::postgres::PgConnectOptions = url.parse().map_err(err)?;
            let opts = opts.options([("TimeZone", "UTC")]);
            DbPool::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                    .map_err(err)?,
            )
        } else if url.starts_with("mysql") || url.starts_with("mariadb") {
            let u = url.replacen("mariadb://", "mysql://", 1);
            // sqlx sets the session time_zone to '+00:00': TIMESTAMP columns compare in UTC.
            let opts: sqlx::mysql::MySqlConnectOptions = u.parse().map_err(err)?;
            let opts = opts.timezone(Some("+00:00".to_string()));
            DbPool::My(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                    .map_err(err)?,
            )
        } else {
            let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().map_err(err)?;
            let opts = opts.busy_timeout(Duration::from_secs(30));
            DbPool::Lite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                    .map_err(err)?,
            )
        })
    }

    fn dialect(&self) -> Dialect {
        match self {
            DbPool::Pg(_) => Dialect::Pg,
            DbPool::My(_) => Dialect::My,
            DbPool::Lite(_) => Dialect::Lite,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Pg,
    My,
    Lite,
}

impl Dialect {
    fn quote(self, ident: &str) -> String {
        ident
            .split('.')
            .map(|p| match self {
                Dialect::My => format!("`{}`", p.replace('`', "``")),
                _ => format!("\"{}\"", p.replace('"', "\"\"")),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
    fn text(self, expr: &str) -> String {
        match self {
            Dialect::My => format!("CAST({expr} AS CHAR)"),
            _ => format!("CAST({expr} AS TEXT)"),
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone)]
enum Bind {
    Int(i64),
    Text(String),
    Time(NaiveDateTime),
    Null,
    /// Arrays: PostgreSQL only (`= ANY($n)`), one parameter for a whole batch of keys.
    IntArr(Vec<i64>),
    TextArr(Vec<String>),
}

/// Binding arrays: real for PostgreSQL; the other dialects never build an array bind.
trait BindArr: Sized {
    fn bind_int_arr(self, v: Vec<i64>) -> Self;
    fn bind_text_arr(self, v: Vec<String>) -> Self;
}

impl<'q> BindArr for sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    fn bind_int_arr(self, v: Vec<i64>) -> Self {
        self.bind(v)
    }
    fn bind_text_arr(self, v: Vec<String>) -> Self {
        self.bind(v)
    }
}

impl<'q> BindArr for sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    fn bind_int_arr(self, _: Vec<i64>) -> Self {
        unreachable!("array parameters are built for PostgreSQL only")
    }
    fn bind_text_arr(self, _: Vec<String>) -> Self {
        unreachable!("array parameters are built for PostgreSQL only")
    }
}

impl<'q> BindArr for sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    fn bind_int_arr(self, _: Vec<i64>) -> Self {
        unreachable!("array parameters are built for PostgreSQL only")
    }
    fn bind_text_arr(self, _: Vec<String>) -> Self {
        unreachable!("array parameters are built for PostgreSQL only")
    }
}

/// A primary-key value, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PkVal {
    Int(i64),
    Text(String),
}

/// Which rows a sweep disposes of.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// Retention: `clock < cutoff` (strict: a record exactly at the cutoff is kept).
    Expired {
        clock: String,
        cutoff: NaiveDateTime,
    },
    /// Art. 20 erasure: `subject_column = key`.
    Subject { column: String, key: String },
    /// Art. 23 purge: every row.
    All,
}

/// What happens to a selected row.
#[derive(Debug, Clone)]
pub enum Action {
    Delete,
    /// Anonymize these columns and NULL the clock column.
    Anonymize {
        ops: BTreeMap<String, AnonOp>,
        clock: String,
    },
}

/// A column of a swept table.
#[derive(Debug, Clone)]
pub struct ColInfo {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// Catalog facts about a table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub table: String,
    pub columns: Vec<ColInfo>,
    pub primary_key: Vec<String>,
}

impl TableInfo {
    /// The column named `name`, matched case-insensitively (exact spelling first).
    pub fn col(&self, name: &str) -> Option<&ColInfo> {
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            self.columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
        })
    }

    /// The catalog's spelling of a column name (identifiers are quoted in SQL).
    pub fn canon(&self, name: &str) -> String {
        self.col(name)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| name.to_string())
    }
}

impl Predicate {
    fn canon(&self, info: &TableInfo) -> Predicate {
        match self {
            Predicate::Expired { clock, cutoff } => Predicate::Expired {
                clock: info.canon(clock),
                cutoff: *cutoff,
            },
            Predicate::Subject { column, key } => Predicate::Subject {
                column: info.canon(column),
                key: key.clone(),
            },
            Predicate::All => Predicate::All,
        }
    }
}

impl TableJob {
    /// The job with every column spelled as in the catalog.
    fn canon(&self) -> TableJob {
        let info = &self.info;
        TableJob {
            pk: info.canon(&self.pk),
            pred: self.pred.canon(info),
            action: match &self.action {
                Action::Delete => Action::Delete,
                Action::Anonymize { ops, clock } => Action::Anonymize {
                    ops: ops
                        .iter()
                        .map(|(c, o)| (info.canon(c), o.clone()))
                        .collect(),
                    clock: info.canon(clock),
                },
            },
            ..self.clone()
        }
    }
}

fn is_int_type(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    ["int", "serial"].iter().any(|k| t.contains(k))
        && !t.contains("interval")
        && !t.contains("point")
}

fn is_datelike(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    t.contains("date") || t.contains("time")
}

/// Builds SQL with the dialect's placeholders.
struct Sql {
    d: Dialect,
    sql: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn new(d: Dialect) -> Self {
        Sql {
            d,
            sql: String::new(),
            binds: Vec::new(),
        }
    }
    fn ph(&mut self, b: Bind) -> String {
        self.binds.push(b);
        match self.d {
            Dialect::Pg => format!("${}", self.binds.len()),
            _ => "?".to_string(),
        }
    }
    fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }
}

macro_rules! bound {
    ($sql:expr) => {{
        let mut q = sqlx::query(&$sql.sql);
        for b in &$sql.binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(s) => q.bind(s.clone()),
                Bind::Time(t) => q.bind(*t),
                Bind::Null => q.bind(Option::<String>::None),
                Bind::IntArr(v) => q.bind_int_arr(v.clone()),
                Bind::TextArr(v) => q.bind_text_arr(v.clone()),
            };
        }
        q
    }};
}

/// SQL for the predicate, appended to `s`.
fn pred_sql(s: &mut Sql, info: &TableInfo, pred: &Predicate) {
    let d = s.d;
    match &pred.canon(info) {
        Predicate::Expired { clock, cutoff } => {
            let c = d.quote(clock);
            if d == Dialect::Lite {
                let p = s.ph(Bind::Text(cutoff.format("%Y-%m-%d %H:%M:%S").to_string()));
                s.push(&format!("datetime({c}) < datetime({p})"));
            } else {
                let p = s.ph(Bind::Time(*cutoff));
                s.push(&format!("{c} < {p}"));
            }
        }
        Predicate::Subject { column, key } => {
            let c = d.quote(column);
            let p = s.ph(Bind::Text(key.clone()));
            match (d, info.col(column)) {
                (Dialect::Pg, Some(ci)) => s.push(&format!("{c} = CAST({p} AS {})", ci.data_type)),
                _ => s.push(&format!("{c} = {p}")),
            };
        }
        Predicate::All => {
            s.push("1=1");
        }
    }
}

fn pk_bind(s: &mut Sql, info: &TableInfo, pk: &str, v: &PkVal) -> String {
    match v {
        PkVal::Int(i) => s.ph(Bind::Int(*i)),
        PkVal::Text(t) => {
            let p = s.ph(Bind::Text(t.clone()));
            match (s.d, info.col(pk)) {
                (Dialect::Pg, Some(ci)) => format!("CAST({p} AS {})", ci.data_type),
                _ => p,
            }
        }
    }
}

fn pk_in(s: &mut Sql, info: &TableInfo, pk: &str, pks: &[PkVal]) {
    let q = s.d.quote(pk);
    if s.d == Dialect::Pg {
        // One array parameter instead of thousands: far cheaper to parse and plan.
        let ints: Option<Vec<i64>> = pks
            .iter()
            .map(|v| {
                if let PkVal::Int(i) = v {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect();
        let expr = match ints {
            Some(v) => format!("{q} = ANY({})", s.ph(Bind::IntArr(v))),
            None => {
                let texts: Vec<String> = pks
                    .iter()
                    .map(|v| match v {
                        PkVal::Int(i) => i.to_string(),
                        PkVal::Text(t) => t.clone(),
                    })
                    .collect();
                let ph = s.ph(Bind::TextArr(texts));
                match info.col(pk) {
                    Some(ci) => format!("{q} = ANY(CAST({ph} AS {}[]))", ci.data_type),
                    None => format!("{q} = ANY({ph})"),
                }
            }
        };
        s.push(&expr);
        return;
    }
    let list: Vec<String> = pks.iter().map(|v| pk_bind(s, info, pk, v)).collect();
    s.push(&format!("{q} IN ({})", list.join(",")));
}

/// The rows of one batch: an integer key range `(lo, hi]` (the `n` matching
/// rows selected), or an explicit key list (text keys, keys that are PI).
#[derive(Debug, Clone)]
enum Batch {
    Range {
        lo: Option<PkVal>,
        hi: PkVal,
        n: i64,
    },
    Keys(Vec<PkVal>),
}

impl Batch {
    fn last(&self) -> Option<PkVal> {
        match self {
            Batch::Range { hi, .. } => Some(hi.clone()),
            Batch::Keys(k) => k.last().cloned(),
        }
    }
}

fn batch_where(s: &mut Sql, info: &TableInfo, pk: &str, b: &Batch) {
    match b {
        Batch::Keys(pks) => pk_in(s, info, pk, pks),
        Batch::Range { lo, hi, .. } => {
            let q = s.d.quote(pk);
            if let Some(lo) = lo {
                let p = pk_bind(s, info, pk, lo);
                s.push(&format!("{q} > {p} AND "));
            }
            let p = pk_bind(s, info, pk, hi);
            s.push(&format!("{q} <= {p}"));
        }
    }
}

fn pk_select_expr(d: Dialect, info: &TableInfo, pk: &str) -> (String, bool) {
    let q = d.quote(pk);
    let int = info
        .col(pk)
        .map(|c| is_int_type(&c.data_type))
        .unwrap_or(false);
    if int {
        (
            match d {
                Dialect::Pg => format!("CAST({q} AS BIGINT)"),
                Dialect::My => format!("CAST({q} AS SIGNED)"),
                Dialect::Lite => q,
            },
            true,
        )
    } else {
        (d.text(&q), false)
    }
}

fn dberr(table: &str, e: sqlx::Error) -> SweepError {
    SweepError::Db {
        target: table.to_string(),
        message: e.to_string(),
    }
}

/// Tables of the database whose name matches one of `globs` (matched against
/// `schema.table` and the bare table name).
pub async fn resolve_tables(pool: &DbPool, globs: &[String]) -> Result<Vec<String>, SweepError> {
    let q = match pool {
        DbPool::Pg(_) => "SELECT CAST(table_schema AS TEXT), CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog','information_schema') ORDER BY 1,2",
        DbPool::My(_) => "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1,2",
        DbPool::Lite(_) => "SELECT 'main', name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 2",
    };
    let rows: Vec<(String, String)> = with_db!(pool, |p| sqlx::query_as(q).fetch_all(p).await)
        .map_err(|e| dberr("catalog", e))?;
    let mut out = Vec::new();
    for g in globs {
        let m = globset::Glob::new(g)
            .map_err(|e| SweepError::Plan(format!("match `{g}`: {e}")))?
            .compile_matcher();
        let mut hit = false;
        for (schema, table) in &rows {
            let full = format!("{schema}.{table}");
            if m.is_match(&full) || m.is_match(table) {
                hit = true;
                let name = if g.contains('.') { full } else { table.clone() };
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        if !hit {
            return Err(SweepError::Plan(format!("match `{g}`: no such table")));
        }
    }
    Ok(out)
}

/// Columns, types, nullability and primary key of `table`.
pub async fn table_info(pool: &DbPool, table: &str) -> Result<TableInfo, SweepError> {
    let rows: Vec<(String, String, i64, i64)> = match pool {
        DbPool::Pg(p) => sqlx::query_as(
            "SELECT CAST(a.attname AS TEXT), format_type(a.atttypid, a.atttypmod), CAST(CAST(NOT a.attnotnull AS INT4) AS INT8), \
             CAST(COALESCE((SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY(i.indkey)), 0) AS INT8) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(Dialect::Pg.quote(table))
        .fetch_all(p)
        .await,
        DbPool::My(p) => {
            let (schema, name) = table.split_once('.').map_or((None, table), |(a, b)| (Some(a), b));
            sqlx::query_as(
                "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(IS_NULLABLE = 'YES' AS SIGNED), CAST(COLUMN_KEY = 'PRI' AS SIGNED) \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            )
            .bind(schema)
            .bind(name)
            .fetch_all(p)
            .await
        }
        DbPool::Lite(p) => {
            // `main.students` (as the scanner names SQLite tables) or a bare name.
            let (schema, name) = table.split_once('.').map_or(("main", table), |(a, b)| (a, b));
            sqlx::query_as("SELECT name, type, CAST(\"notnull\" = 0 AS INTEGER), CAST(pk > 0 AS INTEGER) FROM pragma_table_info($1, $2) ORDER BY cid")
                .bind(name)
                .bind(schema)
                .fetch_all(p)
                .await
        }
    }
    .map_err(|e| dberr(table, e))?;
    if rows.is_empty() {
        return Err(SweepError::Db {
            target: table.into(),
            message: "no such table".into(),
        });
    }
    Ok(TableInfo {
        table: table.into(),
        primary_key: rows
            .iter()
            .filter(|r| r.3 != 0)
            .map(|r| r.0.clone())
            .collect(),
        columns: rows
            .into_iter()
            .map(|(name, data_type, n, _)| ColInfo {
                name,
                data_type,
                nullable: n != 0,
            })
            .collect(),
    })
}

/// `count(*)` of rows matching the predicate.
pub async fn count(pool: &DbPool, info: &TableInfo, pred: &Predicate) -> Result<i64, SweepError> {
    let d = pool.dialect();
    let mut s = Sql::new(d);
    s.push(&format!(
        "SELECT COUNT(*) FROM {} WHERE ",
        d.quote(&info.table)
    ));
    pred_sql(&mut s, info, pred);
    let row = with_db!(pool, |p| bound!(s)
        .fetch_one(p)
        .await
        .map(|r| r.try_get::<i64, _>(0)))
    .map_err(|e| dberr(&info.table, e))?;
    row.map_err(|e| dberr(&info.table, e))
}

/// Up to `n` rows matching the predicate, `cols` as text (callers mask them).
pub async fn samples(
    pool: &DbPool,
    info: &TableInfo,
    pred: &Predicate,
    cols: &[String],
    n: usize,
) -> Result<Vec<Vec<Option<String>>>, SweepError> {
    if cols.is_empty() {
        return Ok(vec![]);
    }
    let d = pool.dialect();
    let mut s = Sql::new(d);
    let list: Vec<String> = cols.iter().map(|c| d.text(&d.quote(c))).collect();
    s.push(&format!(
        "SELECT {} FROM {} WHERE ",
        list.join(", "),
        d.quote(&info.table)
    ));
    pred_sql(&mut s, info, pred);
    s.push(&format!(" LIMIT {n}"));
    let rows = with_db!(pool, |p| {
        bound!(s).fetch_all(p).await.map(|rows| {
            rows.iter()
                .map(|r| {
                    (0..cols.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).ok().flatten())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
    })
    .map_err(|e| dberr(&info.table, e))?;
    Ok(rows)
}

/// Batch sizing and pacing.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub target_batch: Duration,
    pub initial_batch: usize,
    pub min_batch: usize,
    pub max_batch: usize,
    pub sleep: Duration,
    /// Pause while a replica lags more than this (PostgreSQL `pg_stat_replication.replay_lag`); zero: never.
    pub max_replica_lag: Duration,
}

/// Current replication lag of the primary's replicas (PostgreSQL: the largest
/// `replay_lag` in `pg_stat_replication`; 0 without replicas). MySQL/MariaDB
/// expose lag only on the replica, SQLite has none: 0.
pub async fn replica_lag(pool: &DbPool) -> Result<Duration, SweepError> {
    match pool {
        DbPool::Pg(p) => {
            let q = "SELECT CAST(COALESCE(EXTRACT(EPOCH FROM max(replay_lag)), 0) AS FLOAT8) FROM pg_stat_replication";
            let secs: f64 = sqlx::query_scalar(q)
                .fetch_one(p)
                .await
                .map_err(|e| dberr("pg_stat_replication", e))?;
            Ok(Duration::from_secs_f64(secs.max(0.0)))
        }
        _ => Ok(Duration::ZERO),
    }
}

async fn wait_for_replicas(
    pool: &DbPool,
    max: Duration,
    stop: &Stop,
    table: &str,
) -> Result<(), SweepError> {
    loop {
        let lag = replica_lag(pool).await?;
        if lag <= max || stop.requested() {
            return Ok(());
        }
        tracing::info!(
            table,
            lag_ms = lag.as_millis() as u64,
            "replica lag above limit; pausing"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One table of a plan item.
#[derive(Debug, Clone)]
pub struct TableJob {
    pub plan_id: String,
    pub item: i64,
    pub info: TableInfo,
    pub pk: String,
    pub pred: Predicate,
    pub action: Action,
    /// The key column is personal data: never journal key values.
    pub pk_is_pi: bool,
}

/// What a table run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitOutcome {
    pub affected: i64,
    pub batches: i64,
    pub max_batch_ms: f64,
    /// False when an interrupted batch's effect could not be counted exactly.
    pub exact: bool,
    pub stopped: bool,
    pub recovered_batches: i64,
    /// Rows still matching, when the run ended on a fresh re-count of 0 (verification can reuse it).
    #[serde(skip)]
    pub remaining: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, Default)]
struct StartDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pks: Option<Vec<PkVal>>,
    /// Range batches: keys after `lo` up to and including `hi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lo: Option<PkVal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hi: Option<PkVal>,
    n: usize,
    pass: u32,
}

#[derive(Debug, Serialize, Deserialize, Default)]
struct DoneDetail {
    #[serde(default)]
    cursor: Option<PkVal>,
    pass: u32,
    ms: f64,
    #[serde(default)]
    exact: Option<bool>,
}

/// Next batch after `cursor`: for integer keys the range up to the n-th
/// matching key (one row back: `max`, `count`), else the list of keys.
async fn select_batch(
    pool: &DbPool,
    job: &TableJob,
    cursor: Option<&PkVal>,
    n: usize,
) -> Result<Option<Batch>, SweepError> {
    let d = pool.dialect();
    let (expr, int) = pk_select_expr(d, &job.info, &job.pk);
    if int && !job.pk_is_pi {
        let mut s = Sql::new(d);
        s.push(&format!(
            "SELECT MAX(x), COUNT(*) FROM (SELECT {expr} AS x FROM {} WHERE ",
            d.quote(&job.info.table)
        ));
        pred_sql(&mut s, &job.info, &job.pred);
        if let Some(c) = cursor {
            let p = pk_bind(&mut s, &job.info, &job.pk, c);
            s.push(&format!(" AND {} > {p}", d.quote(&job.pk)));
        }
        s.push(&format!(" ORDER BY {} LIMIT {n}) s", d.quote(&job.pk)));
        let t = &job.info.table;
        let (hi, cnt): (Option<i64>, i64) = with_db!(pool, |p| {
            let r = bound!(s).fetch_one(p).await.map_err(|e| dberr(t, e))?;
            Ok::<_, SweepError>((
                r.try_get::<Option<i64>, _>(0).map_err(|e| dberr(t, e))?,
                r.try_get::<i64, _>(1).map_err(|e| dberr(t, e))?,
            ))
        })?;
        return Ok(hi.filter(|_| cnt > 0).map(|hi| Batch::Range {
            lo: cursor.cloned(),
            hi: PkVal::Int(hi),
            n: cnt,
        }));
    }
    // Key lists are bound one parameter per key outside PostgreSQL (SQLite allows 32,766).
    let n = if d == Dialect::Pg { n } else { n.min(30_000) };
    let keys = select_keys(pool, job, cursor, n).await?;
    Ok(if keys.is_empty() {
        None
    } else {
        Some(Batch::Keys(keys))
    })
}

async fn select_keys(
    pool: &DbPool,
    job: &TableJob,
    cursor: Option<&PkVal>,
    n: usize,
) -> Result<Vec<PkVal>, SweepError> {
    let d = pool.dialect();
    let (expr, int) = pk_select_expr(d, &job.info, &job.pk);
    let mut s = Sql::new(d);
    s.push(&format!(
        "SELECT {expr} FROM {} WHERE ",
        d.quote(&job.info.table)
    ));
    pred_sql(&mut s, &job.info, &job.pred);
    if let Some(c) = cursor {
        let p = pk_bind(&mut s, &job.info, &job.pk, c);
        s.push(&format!(" AND {} > {p}", d.quote(&job.pk)));
    }
    s.push(&format!(" ORDER BY {} LIMIT {n}", d.quote(&job.pk)));
    let t = &job.info.table;
    with_db!(pool, |p| {
        let rows = bound!(s).fetch_all(p).await.map_err(|e| dberr(t, e))?;
        rows.iter()
            .map(|r| {
                if int {
                    r.try_get::<i64, _>(0).map(PkVal::Int)
                } else {
                    r.try_get::<String, _>(0).map(PkVal::Text)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| dberr(t, e))
    })
}

/// Value written for an anonymized column, adapted to the column's type:
/// generalized dates stay dates (first day of the year/month) in date columns,
/// an age band is stored as its lower bound in an integer column.
fn anon_value(op: &AnonOp, v: &str, col: Option<&ColInfo>, fp: &Fingerprinter) -> Option<String> {
    anon_text(
        op,
        v,
        col.map(|c| c.data_type.as_str()).unwrap_or("text"),
        fp,
    )
}

/// [`AnonOp::apply`] adapted to a column type name `ty` (SQL or Arrow).
pub fn anon_text(op: &AnonOp, v: &str, ty: &str, fp: &Fingerprinter) -> Option<String> {
    let out = op.apply(v, fp)?;
    Some(match op {
        AnonOp::Year if is_datelike(ty) => format!("{out}-01-01"),
        AnonOp::YearMonth if is_datelike(ty) => format!("{out}-01"),
        AnonOp::AgeBand(_) if is_int_type(ty) => out.split('-').next().unwrap_or("0").to_string(),
        _ => out,
    })
}

/// Dispose of one batch in one transaction; returns rows changed.
async fn apply_batch(
    pool: &DbPool,
    job: &TableJob,
    batch: &Batch,
    fp: &Fingerprinter,
) -> Result<i64, SweepError> {
    let d = pool.dialect();
    let t = job.info.table.clone();
    let qt = d.quote(&t);
    match &job.action {
        Action::Delete => {
            let mut s = Sql::new(d);
            s.push(&format!("DELETE FROM {qt} WHERE "));
            batch_where(&mut s, &job.info, &job.pk, batch);
            s.push(" AND ");
            pred_sql(&mut s, &job.info, &job.pred);
            with_db!(pool, |p| {
                let mut tx = p.begin().await.map_err(|e| dberr(&t, e))?;
                let n = bound!(s)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| dberr(&t, e))?
                    .rows_affected();
                tx.commit().await.map_err(|e| dberr(&t, e))?;
                Ok(n as i64)
            })
        }
        Action::Anonymize { ops, clock } => {
            let cols: Vec<(&String, &AnonOp)> = ops
                .iter()
                .filter(|(c, _)| !c.eq_ignore_ascii_case(clock))
                .collect();
            let (pkexpr, int) = pk_select_expr(d, &job.info, &job.pk);
            let mut sel = Sql::new(d);
            let list: Vec<String> = cols.iter().map(|(c, _)| d.text(&d.quote(c))).collect();
            let mut fields = vec![pkexpr];
            fields.extend(list);
            sel.push(&format!("SELECT {} FROM {qt} WHERE ", fields.join(", ")));
            batch_where(&mut sel, &job.info, &job.pk, batch);
            sel.push(" AND ");
            pred_sql(&mut sel, &job.info, &job.pred);
            if d != Dialect::Lite {
                sel.push(" FOR UPDATE");
            }
            with_db!(pool, |p| {
                let mut tx = p.begin().await.map_err(|e| dberr(&t, e))?;
                let rows = bound!(sel)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| dberr(&t, e))?;
                let mut n = 0i64;
                for r in &rows {
                    let key = if int {
                        PkVal::Int(r.try_get::<i64, _>(0).map_err(|e| dberr(&t, e))?)
                    } else {
                        PkVal::Text(r.try_get::<String, _>(0).map_err(|e| dberr(&t, e))?)
                    };
                    let mut up = Sql::new(d);
                    let mut sets = Vec::new();
                    for (i, (c, op)) in cols.iter().enumerate() {
                        let v: Option<String> = r.try_get(i + 1).map_err(|e| dberr(&t, e))?;
                        let ci = job.info.col(c);
                        let newv = v.and_then(|v| anon_value(op, &v, ci, fp));
                        let ph = up.ph(newv.map(Bind::Text).unwrap_or(Bind::Null));
                        let rhs = match (d, ci) {
                            (Dialect::Pg, Some(ci)) => format!("CAST({ph} AS {})", ci.data_type),
                            _ => ph,
                        };
                        sets.push(format!("{} = {rhs}", d.quote(c)));
                    }
                    sets.push(format!("{} = NULL", d.quote(clock)));
                    up.push(&format!("UPDATE {qt} SET {} WHERE ", sets.join(", ")));
                    let kp = pk_bind(&mut up, &job.info, &job.pk, &key);
                    up.push(&format!("{} = {kp} AND ", d.quote(&job.pk)));
                    pred_sql(&mut up, &job.info, &job.pred);
                    n += bound!(up)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| dberr(&t, e))?
                        .rows_affected() as i64;
                }
                tx.commit().await.map_err(|e| dberr(&t, e))?;
                Ok(n)
            })
        }
    }
}

/// How many of an interrupted batch's rows the killed attempt already disposed of.
async fn already_done(pool: &DbPool, job: &TableJob, batch: &Batch) -> Result<i64, SweepError> {
    let d = pool.dialect();
    let mut s = Sql::new(d);
    s.push(&format!(
        "SELECT COUNT(*) FROM {} WHERE ",
        d.quote(&job.info.table)
    ));
    batch_where(&mut s, &job.info, &job.pk, batch);
    match (batch, &job.action) {
        // Rows of the range that still match were not done by the killed attempt.
        (Batch::Range { .. }, _) => {
            s.push(" AND ");
            pred_sql(&mut s, &job.info, &job.pred);
        }
        (Batch::Keys(_), Action::Anonymize { clock, .. }) => {
            s.push(&format!(" AND {} IS NULL", d.quote(clock)));
        }
        (Batch::Keys(_), Action::Delete) => {}
    }
    let t = &job.info.table;
    let n: i64 = with_db!(pool, |p| bound!(s)
        .fetch_one(p)
        .await
        .and_then(|r| r.try_get::<i64, _>(0)))
    .map_err(|e| dberr(t, e))?;
    Ok(match (batch, &job.action) {
        (Batch::Range { n: selected, .. }, _) => (selected - n).max(0),
        // Rows still present were not deleted by the killed attempt.
        (Batch::Keys(k), Action::Delete) => k.len() as i64 - n,
        // Rows with a NULL clock were anonymized by it (selection required a non-NULL clock).
        (Batch::Keys(_), Action::Anonymize { .. }) => n,
    })
}

/// Run (or resume) one table. Journals each batch before and after it runs.
pub async fn run_table(
    pool: &DbPool,
    journal: &SweepJournal,
    job: &TableJob,
    tuning: &Tuning,
    fp: &Fingerprinter,
    stop: &Stop,
) -> Result<UnitOutcome, SweepError> {
    let job = &job.canon();
    let unit = job.info.table.clone();
    let mine: Vec<JournalEntry> = journal
        .entries(&job.plan_id)
        .await?
        .into_iter()
        .filter(|e| e.item == job.item && e.unit == unit)
        .collect();
    let mut out = UnitOutcome {
        exact: true,
        ..Default::default()
    };
    let mut cursor: Option<PkVal> = None;
    let mut pass = 0u32;
    let mut seq = 0i64;
    // Batches journaled `start` without `done` (with pipelining, up to two).
    let mut pending: Vec<(i64, StartDetail)> = Vec::new();
    for e in &mine {
        match e.phase.as_str() {
            "complete" => {
                out.affected = mine
                    .iter()
                    .filter(|e| e.phase == "done")
                    .map(|e| e.affected)
                    .sum();
                out.batches = mine.iter().filter(|e| e.phase == "done").count() as i64;
                out.exact = mine.iter().all(|e| {
                    e.phase != "done"
                        || serde_json::from_str::<DoneDetail>(&e.detail)
                            .map(|d| d.exact != Some(false))
                            .unwrap_or(true)
                });
                out.max_batch_ms = mine
                    .iter()
                    .filter_map(|e| serde_json::from_str::<DoneDetail>(&e.detail).ok())
                    .map(|d| d.ms)
                    .fold(0.0, f64::max);
                return Ok(out);
            }
            "done" => {
                let dd: DoneDetail = serde_json::from_str(&e.detail).unwrap_or_default();
                out.affected += e.affected;
                out.batches += 1;
                out.max_batch_ms = out.max_batch_ms.max(dd.ms);
                if dd.exact == Some(false) {
                    out.exact = false;
                }
                cursor = dd.cursor;
                pass = dd.pass;
                seq = seq.max(e.seq + 1);
            }
            "start" => {
                seq = seq.max(e.seq + 1);
                if !mine.iter().any(|x| x.seq == e.seq && x.phase == "done") {
                    pending.push((e.seq, serde_json::from_str(&e.detail).unwrap_or_default()));
                }
            }
            _ => {}
        }
    }
    let unit_entry = |seq: i64, phase: &str, affected: i64, detail: String| JournalEntry {
        item: job.item,
        unit: unit.clone(),
        seq,
        phase: phase.into(),
        affected,
        detail,
    };

    // Recover batches that were started but not journaled done, in order.
    pending.sort_by_key(|p| p.0);
    for (pseq, sd) in pending {
        let t0 = Instant::now();
        let batch = match (&sd.hi, &sd.pks) {
            (Some(hi), _) => Some(Batch::Range {
                lo: sd.lo.clone(),
                hi: hi.clone(),
                n: sd.n as i64,
            }),
            (None, Some(pks)) if !pks.is_empty() => Some(Batch::Keys(pks.clone())),
            _ => None,
        };
        let (affected, exact, last) = match batch {
            Some(b) => {
                let before = already_done(pool, job, &b).await?;
                let redo = apply_batch(pool, job, &b, fp).await?;
                (before + redo, true, b.last())
            }
            None => (0, false, cursor.clone()),
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let dd = DoneDetail {
            cursor: if job.pk_is_pi { None } else { last.clone() },
            pass: sd.pass,
            ms,
            exact: Some(exact),
        };
        journal
            .record(
                &job.plan_id,
                &unit_entry(pseq, "done", affected, serde_json::to_string(&dd).unwrap()),
            )
            .await?;
        out.affected += affected;
        out.batches += 1;
        out.recovered_batches += 1;
        out.exact &= exact;
        cursor = dd.cursor;
        pass = sd.pass;
    }

    let mut size = tuning
        .initial_batch
        .clamp(tuning.min_batch, tuning.max_batch);
    // Journal commits: the `start` of batch k+1 is journaled (with the `done`
    // of batch k-1) while batch k's transaction runs, and batch k+1 is
    // selected in the same time on the pool's second connection: one journal
    // commit per batch, off the critical path. Ordering kept: a `start` is
    // durable before its transaction begins; a `done` is written only after
    // its transaction committed. A crash in between leaves batches
    // `start`-only, which resume recovers exactly.
    let mut carry: Vec<JournalEntry> = Vec::new();
    let mut carry_ev: Vec<serde_json::Value> = Vec::new();
    let start_entry = |seq: i64, b: &Batch, pass: u32| {
        let sd = match b {
            Batch::Range { lo, hi, n } => StartDetail {
                pks: None,
                lo: lo.clone(),
                hi: Some(hi.clone()),
                n: *n as usize,
                pass,
            },
            Batch::Keys(k) => StartDetail {
                pks: if job.pk_is_pi { None } else { Some(k.clone()) },
                lo: None,
                hi: None,
                n: k.len(),
                pass,
            },
        };
        unit_entry(seq, "start", 0, serde_json::to_string(&sd).unwrap())
    };
    macro_rules! flush_then {
        ($extra:expr, $ret:expr) => {{
            let mut es = std::mem::take(&mut carry);
            es.extend($extra);
            journal
                .record_all(&job.plan_id, &es, "batch", &std::mem::take(&mut carry_ev))
                .await?;
            return $ret;
        }};
    }
    // The next batch, already journaled `start`.
    let mut next: Option<Batch> = None;
    loop {
        if stop.requested() {
            out.stopped = true;
            flush_then!(Vec::<JournalEntry>::new(), Ok(out));
        }
        if !tuning.max_replica_lag.is_zero() {
            if let Err(e) = wait_for_replicas(pool, tuning.max_replica_lag, stop, &unit).await {
                flush_then!(Vec::<JournalEntry>::new(), Err(e));
            }
            if stop.requested() {
                out.stopped = true;
                flush_then!(Vec::<JournalEntry>::new(), Ok(out));
            }
        }
        let batch = match next.take() {
            Some(b) => b,
            None => {
                let sel = select_batch(
                    pool,
                    job,
                    if job.pk_is_pi { None } else { cursor.as_ref() },
                    size,
                )
                .await;
                let sel = match sel {
                    Ok(p) => p,
                    Err(e) => flush_then!(Vec::<JournalEntry>::new(), Err(e)),
                };
                let Some(b) = sel else {
                    // Rows that appeared behind the cursor (a clock moved back, an insert
                    // with an old time): one more pass from the start picks them up.
                    let again = if pass == 0 && !job.pk_is_pi {
                        match count(pool, &job.info, &job.pred).await {
                            Ok(n) => {
                                out.remaining = Some(n);
                                n > 0
                            }
                            Err(e) => flush_then!(Vec::<JournalEntry>::new(), Err(e)),
                        }
                    } else {
                        false
                    };
                    if again {
                        pass = 1;
                        cursor = None;
                        continue;
                    }
                    flush_then!(vec![unit_entry(0, "complete", 0, "{}".into())], Ok(out));
                };
                let mut es = std::mem::take(&mut carry);
                es.push(start_entry(seq, &b, pass));
                journal
                    .record_all(&job.plan_id, &es, "batch", &std::mem::take(&mut carry_ev))
                    .await?;
                b
            }
        };
        let this_seq = seq;
        let last = batch.last();
        // Run batch k; meanwhile select batch k+1 after its last key and journal its start
        // (with the `done` of k-1). Not without a cursor: k+1 would overlap k.
        let pipelined = !job.pk_is_pi;
        let es_prev = std::mem::take(&mut carry);
        let ev_prev = std::mem::take(&mut carry_ev);
        let t0 = Instant::now();
        let (applied, ahead) = tokio::join!(
            async {
                apply_batch(pool, job, &batch, fp)
                    .await
                    .map(|n| (n, t0.elapsed()))
            },
            async {
                if !pipelined {
                    journal
                        .record_all(&job.plan_id, &es_prev, "batch", &ev_prev)
                        .await?;
                    return Ok::<_, SweepError>(None);
                }
                let nb = select_batch(pool, job, last.as_ref(), size).await?;
                let mut es = es_prev;
                if let Some(b) = &nb {
                    es.push(start_entry(this_seq + 1, b, pass));
                }
                journal
                    .record_all(&job.plan_id, &es, "batch", &ev_prev)
                    .await?;
                Ok(nb)
            }
        );
        let (n, el) = applied?;
        next = ahead?;
        let ms = el.as_secs_f64() * 1000.0;
        if job.pk_is_pi && n == 0 {
            return Err(SweepError::Db {
                target: unit,
                message:
                    "selected rows no longer match and cannot be skipped without a cursor; re-plan"
                        .into(),
            });
        }
        let dd = DoneDetail {
            cursor: if job.pk_is_pi { None } else { last.clone() },
            pass,
            ms,
            exact: None,
        };
        carry.push(unit_entry(
            this_seq,
            "done",
            n,
            serde_json::to_string(&dd).unwrap(),
        ));
        carry_ev.push(serde_json::json!({"table": unit, "batch": this_seq, "rows": n, "ms": (ms * 10.0).round() / 10.0}));
        out.affected += n;
        out.batches += 1;
        out.max_batch_ms = out.max_batch_ms.max(ms);
        cursor = last;
        seq += 1;
        // Adapt: aim for the target time per transaction, growing at most 1.5x, shrinking at most 2x.
        let target = tuning.target_batch.as_secs_f64();
        let took = el.as_secs_f64().max(1e-4);
        let factor = (target / took).clamp(0.5, 1.5);
        size = ((size as f64 * factor) as usize).clamp(tuning.min_batch, tuning.max_batch);
        if !tuning.sleep.is_zero() {
            tokio::time::sleep(tuning.sleep).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_types() {
        assert_eq!(Dialect::Pg.quote("public.users"), "\"public\".\"users\"");
        assert_eq!(Dialect::My.quote("a`b"), "`a``b`");
        assert!(
            is_int_type("bigint")
                && is_int_type("INTEGER")
                && !is_int_type("interval")
                && !is_int_type("text")
        );
        let fp = Fingerprinter::new(b"k");
        let date = ColInfo {
            name: "b".into(),
            data_type: "date".into(),
            nullable: true,
        };
        assert_eq!(
            anon_value(&AnonOp::Year, "2015-03-07", Some(&date), &fp).as_deref(),
            Some("2015-01-01")
        );
        assert_eq!(
            anon_value(&AnonOp::YearMonth, "2015-03-07", Some(&date), &fp).as_deref(),
            Some("2015-03-01")
        );
        let int = ColInfo {
            name: "a".into(),
            data_type: "integer".into(),
            nullable: true,
        };
        assert_eq!(
            anon_value(&AnonOp::AgeBand(5), "8", Some(&int), &fp).as_deref(),
            Some("5")
        );
        assert_eq!(
            anon_value(&AnonOp::AgeBand(5), "8", None, &fp).as_deref(),
            Some("5-9")
        );
    }

    #[test]
    fn pk_json_roundtrip() {
        let v = vec![PkVal::Int(3), PkVal::Text("a".into())];
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(s, r#"[3,"a"]"#);
        assert_eq!(serde_json::from_str::<Vec<PkVal>>(&s).unwrap(), v);
    }
}
