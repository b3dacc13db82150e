//! Database sources: PostgreSQL, MySQL/MariaDB and SQLite through sqlx.
//!
//! Work units are tables (`schema.table`, sorted). The catalog gives the
//! columns and their types; only columns that can hold children's PI are
//! read (text, varchar, char, json/jsonb, xml; date/timestamp columns named
//! like birth dates; bigint and wide decimal columns that can hold ID or
//! phone numbers). Each row's examined cells go, as strings, into
//! [`TableScanner`], which yields one finding per column and category.
//!
//! Default is sampling (`sample_rows` rows spread across the table:
//! `TABLESAMPLE` on PostgreSQL, primary-key ranges on MySQL, rowid ranges on
//! SQLite); `--full` streams every row with bounded memory (PostgreSQL
//! `COPY … TO STDOUT`, streamed result sets elsewhere).
//!
//! Sessions are read-only (`default_transaction_read_only` on PostgreSQL,
//! `SET SESSION TRANSACTION READ ONLY` on MySQL/MariaDB, `mode=ro` on
//! SQLite), each statement has a timeout, and the pool size bounds how many
//! tables are read at once. A table that fails or times out is reported as a
//! [`UnitError`] naming `schema.table` and the cause (never a value, never a
//! password) while the other tables go on.

mod mysql;
mod postgres;
mod sqlite;

use crate::config::sources::SourceConfig;
use crate::detect::Engine;
use crate::finding::{Finding, Location};
use crate::scan::table::TableScanner;
use crate::source::incremental::{now_rfc3339, JsonStateStore, UnitState, UnitStateStore};
use crate::source::shard::{key_ranges as key_ranges_aligned, split_unit_id, UnitRange};
use crate::source::{ScanOptions, Source, UnitError, UnitStats, WorkUnit};
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How a remote source (database or object store) is opened for one scan.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// `--incremental`: skip units unchanged since the last scan, read only rows newer than the watermark.
    pub incremental: bool,
    /// State directory holding `incremental/<source-hash>.json` (required with `incremental`).
    pub state_dir: Option<PathBuf>,
    /// Extra include globs (`--include`): `schema.table` for databases, keys for object stores.
    pub include: Vec<String>,
    /// Extra exclude globs (`--exclude`).
    pub exclude: Vec<String>,
    /// Split tables with one integer primary key spanning more than this many
    /// keys into key-range units of this width (`--range-rows` with `--full`;
    /// 0: never). See [`crate::source::shard`].
    pub range_rows: u64,
    /// Reader settings and limits for object bodies (the `[files]` table); None: defaults.
    pub readers: Option<crate::source::files::FileSourceConfig>,
}

impl RemoteOptions {
    /// `cfg` with the command line's extra globs added.
    pub fn apply(&self, cfg: &SourceConfig) -> SourceConfig {
        let mut c = cfg.clone();
        c.include.extend(self.include.iter().cloned());
        c.exclude.extend(self.exclude.iter().cloned());
        c
    }
}

/// Which database engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Postgres,
    MySql,
    Sqlite,
}

impl DbKind {
    /// The kind for a target URL, by scheme.
    pub fn of(url: &str) -> Option<DbKind> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(DbKind::Postgres),
            "mysql" | "mariadb" => Some(DbKind::MySql),
            "sqlite" => Some(DbKind::Sqlite),
            _ => None,
        }
    }
}

/// True when `url` names a database this module reads.
pub fn is_db_url(url: &str) -> bool {
    DbKind::of(url).is_some()
}

/// One column from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// Declared type as the catalog prints it (e.g. `character varying(20)`, `bigint(20)`).
    pub data_type: String,
    /// Whether the scan reads this column (see [`examine_column`]).
    pub examined: bool,
}

/// One table from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    /// Primary-key columns in order (empty: none).
    pub primary_key: Vec<String>,
    /// The primary key is one integer column (usable for range sampling).
    pub integer_key: bool,
    /// Row estimate from the catalog statistics, when known.
    pub estimated_rows: Option<f64>,
    /// SQLite: the table has a rowid.
    pub has_rowid: bool,
}

impl TableInfo {
    /// The unit id: `schema.table`.
    pub fn unit_id(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Columns the scan reads.
    pub fn examined(&self) -> Vec<&ColumnInfo> {
        self.columns.iter().filter(|c| c.examined).collect()
    }
}

/// Column names that say "birth date" (English, pinyin initials, Chinese).
pub fn is_birth_name(name: &str) -> bool {
    let l = name.to_lowercase();
    [
        "birth", "dob", "bday", "born", "csrq", "chusheng", "shengri", "出生", "生日",
    ]
    .iter()
    .any(|h| l.contains(h))
}

/// Whether a column of declared type `data_type` named `name` can hold
/// children's PI and is read by the scan: character, text, JSON and XML
/// columns (and SQLite columns without a declared type); date/time columns
/// named like birth dates; 64-bit integer and decimal columns wide enough
/// for an 11-digit mobile or an 18-digit ID number.
pub fn examine_column(kind: DbKind, data_type: &str, name: &str) -> bool {
    let t = data_type.to_ascii_lowercase();
    if t.is_empty() {
        return kind == DbKind::Sqlite;
    }
    if ["char", "text", "json", "clob", "xml", "string"]
        .iter()
        .any(|k| t.contains(k))
    {
        return true;
    }
    if t.contains("date") || t.contains("time") {
        return is_birth_name(name) && !t.contains("interval");
    }
    if t.starts_with("bigint") || t.starts_with("int8") {
        return true;
    }
    if t.starts_with("numeric") || t.starts_with("decimal") {
        // numeric(p,s): need at least 11 integer digits; unconstrained numeric holds anything.
        return match parse_precision(&t) {
            Some((p, s)) => p.saturating_sub(s) >= 11,
            None => true,
        };
    }
    if kind == DbKind::Sqlite && t.contains("int") {
        // SQLite integers are 64-bit whatever the declared name.
        return true;
    }
    false
}

fn parse_precision(t: &str) -> Option<(u32, u32)> {
    let inner = t.split_once('(')?.1.split_once(')')?.0;
    let mut it = inner.split(',');
    let p = it.next()?.trim().parse().ok()?;
    let s = it
        .next()
        .map(|s| s.trim().parse().unwrap_or(0))
        .unwrap_or(0);
    Some((p, s))
}

/// Remove the password from a URL (for `target()` and messages).
pub fn redact_url(url: &str) -> String {
    if DbKind::of(url) == Some(DbKind::Sqlite) {
        return url.to_string();
    }
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() || u.query().is_some() => {
            let _ = u.set_password(None);
            crate::source::redact_query(&mut u);
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => match (url.find("://"), url.rfind('@')) {
            // Unparseable: drop the whole userinfo rather than risk printing a secret.
            (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
            _ => url.to_string(),
        },
    }
}

/// What to read from one table.
#[derive(Debug, Clone)]
pub(crate) struct ReadPlan {
    /// Quoted select expressions, one per examined column (rendered as text).
    pub columns: Vec<String>,
    /// Also read the primary key (or row id) rendered as text, as the last field.
    pub key: Option<String>,
    /// Rows with watermark greater than this literal only: (quoted column expr, literal, column type).
    pub since: Option<(String, String, String)>,
    /// Rows of one key-range unit only: (quoted integer key column, lo, hi) — `lo <= key < hi`.
    pub key_range: Option<(String, i64, i64)>,
    pub mode: ReadMode,
}

impl ReadPlan {
    /// The SQL condition of `key_range` (no upper bound when `hi` is `i64::MAX`).
    pub fn range_cond(&self) -> Option<String> {
        self.key_range.as_ref().map(|(col, lo, hi)| {
            if *hi == i64::MAX {
                format!("{col} >= {lo}")
            } else {
                format!("{col} >= {lo} AND {col} < {hi}")
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReadMode {
    /// Every row.
    Full,
    /// The first `n` rows (small tables).
    Limit(u64),
    /// PostgreSQL TABLESAMPLE: method, percent, limit.
    TableSample(&'static str, f64, u64),
    /// Key ranges `[lo, hi)` of the integer key (or rowid) column, `per` rows each.
    KeyRanges {
        column: String,
        ranges: Vec<(i64, i64)>,
        per: u64,
    },
    /// MySQL: `RAND() < p` with a limit (no integer key to range over).
    Random(f64, u64),
}

/// Split `[min, max]` into `k` ranges of equal width.
pub(crate) fn key_ranges(min: i64, max: i64, k: u64) -> Vec<(i64, i64)> {
    let k = k.max(1) as i128;
    let (lo, hi) = (min as i128, max as i128 + 1);
    let width = hi - lo;
    let mut out = Vec::new();
    for i in 0..k {
        let a = lo + width * i / k;
        let b = lo + width * (i + 1) / k;
        if b > a {
            out.push((a as i64, b.min(i64::MAX as i128) as i64));
        }
    }
    out
}

/// Rows per scan callback: examined cells in order, then the row key.
pub(crate) type RowFn<'a> = dyn FnMut(&[Option<&str>], Option<&str>) + 'a;
/// A row with its ordinal in the read (see [`TableScanner::set_ordinal`]),
/// for scanning threads that each see part of a table.
pub(crate) trait OrderedRowFn: FnMut(u64, &[Option<&str>], Option<&str>) + Send {}
impl<F: FnMut(u64, &[Option<&str>], Option<&str>) + Send> OrderedRowFn for F {}

/// Scanning threads for one PostgreSQL table read in full: the COPY stream is
/// read on its own task and its batches are scanned by this many threads
/// (the machine's cores, at most 4), merged as one scanner.
fn table_scanners() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

/// Database errors are rendered without values (sqlx messages carry the
/// server's message only, not the statement or the bound values).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
    #[error("statement timeout after {0} s")]
    Timeout(u64),
    #[error("{0}")]
    Other(String),
    #[error("no connection to the server within {0} s")]
    Unreachable(u64),
}

impl ReadError {
    /// Whether the error is the connection's (server restarting, network),
    /// not the statement's: the table is read again after a backoff.
    fn transient(&self) -> bool {
        match self {
            ReadError::Unreachable(_) => true,
            ReadError::Sql(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_) => true,
                // 08xxx connection exceptions, 57P01-03 admin/crash shutdown, cannot connect now.
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            _ => false,
        }
    }
}

/// A failed read of one table: the message for the user, and whether
/// trying again may help (see [`ReadError::transient`]).
struct Failed {
    error: UnitError,
    transient: bool,
}

impl From<UnitError> for Failed {
    fn from(error: UnitError) -> Self {
        Failed {
            error,
            transient: false,
        }
    }
}

enum Pool {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
    Lite(sqlx::SqlitePool),
}

/// A database as a [`Source`].
pub struct DbSource {
    kind: DbKind,
    target: String,
    rt: tokio::runtime::Runtime,
    pool: Pool,
    cfg: SourceConfig,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    /// MySQL: the database named in the URL (None: every non-system database).
    database: Option<String>,
    /// Set when a table failed for want of a connection after every retry:
    /// later tables try once, so a server that stays down fails the rest fast.
    down: std::sync::atomic::AtomicBool,
    catalog: Mutex<BTreeMap<String, TableInfo>>,
    state: Option<Box<dyn UnitStateStore>>,
    secrets: Vec<String>,
    range_rows: u64,
}

fn build_globs(target: &str, globs: &[String]) -> Result<Option<GlobSet>, UnitError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| UnitError::new(target, format!("bad glob `{g}`: {e}")))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| UnitError::new(target, format!("bad globs: {e}")))
}

/// Open a database target given as a URL, with default settings.
pub fn open_url(url: &str, opts: &RemoteOptions) -> Result<Box<dyn Source>, UnitError> {
    open(&SourceConfig::from_url(url), opts)
}

/// Open a database source (`postgres://`, `postgresql://`, `mysql://`, `mariadb://`, `sqlite://`).
pub fn open(source: &SourceConfig, opts: &RemoteOptions) -> Result<Box<dyn Source>, UnitError> {
    Ok(Box::new(DbSource::open(source, opts)?))
}

impl DbSource {
    /// Connect (read-only) and check the credentials; fails with a message naming the target and cause.
    pub fn open(source: &SourceConfig, opts: &RemoteOptions) -> Result<DbSource, UnitError> {
        let target = redact_url(&source.url);
        let kind = DbKind::of(&source.url).ok_or_else(|| {
            UnitError::new(
                &target,
                "not a database URL (postgres://, mysql://, mariadb://, sqlite://)",
            )
        })?;
        let password = source.password().map_err(|e| UnitError::new(&target, e))?;
        let mut secrets = Vec::new();
        if let Some(p) = &password {
            secrets.push(p.clone());
        }
        if let Ok(u) = url::Url::parse(&source.url) {
            if let Some(p) = u.password() {
                secrets.push(p.to_string());
                if let Ok(d) = urlencoding_decode(p) {
                    secrets.push(d);
                }
            }
        }
        let redact = |m: String| redact_secrets(&m, &secrets);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("childguard-db")
            .enable_all()
            .build()
            .map_err(|e| UnitError::new(&target, format!("cannot start the I/O runtime: {e}")))?;
        let concurrency = source.concurrency.max(1) as u32;
        let timeout = Duration::from_secs(source.statement_timeout_secs.max(1));
        let connect_wait = Duration::from_secs(source.connect_timeout_secs.max(1));
        let mut database = None;
        let pool = rt
            .block_on(async {
                fn popts<DB: sqlx::Database>(concurrency: u32) -> sqlx::pool::PoolOptions<DB> {
                    // Waiting for a free connection is how concurrency is bounded: no short timeout.
                    sqlx::pool::PoolOptions::new()
                        .max_connections(concurrency)
                        .min_connections(0)
                        .acquire_timeout(Duration::from_secs(6 * 3600))
                }
                // One probe connection first: the pool would retry a refused connection until its
                // acquire timeout, a user wants "unreachable" or "wrong password" at once.
                async fn probe<C: sqlx::ConnectOptions>(
                    o: &C,
                    wait: Duration,
                ) -> Result<C::Connection, sqlx::Error>
                where
                    C::Connection: Sized,
                {
                    match tokio::time::timeout(wait, o.connect()).await {
                        Ok(r) => r,
                        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {} s", wait.as_secs()),
                        ))),
                    }
                }
                use sqlx::Connection;
                match kind {
                    DbKind::Postgres => {
                        let o =
                            postgres::connect_options(&source.url, password.as_deref(), timeout)?;
                        probe(&o, connect_wait).await?.close().await?;
                        Ok::<_, sqlx::Error>(Pool::Pg(popts(concurrency).connect_lazy_with(o)))
                    }
                    DbKind::MySql => {
                        let (o, db) = mysql::connect_options(&source.url, password.as_deref())?;
                        database = db;
                        let secs = timeout.as_secs();
                        let mut c = probe(&o, connect_wait).await?;
                        mysql::prepare_session(&mut c, secs).await?;
                        c.close().await?;
                        let pool = popts(concurrency)
                            .after_connect(move |conn, _| {
                                Box::pin(async move { mysql::prepare_session(conn, secs).await })
                            })
                            .connect_lazy_with(o);
                        Ok(Pool::My(pool))
                    }
                    DbKind::Sqlite => {
                        let o = sqlite::connect_options(&source.url)?;
                        probe(&o, connect_wait).await?.close().await?;
                        Ok(Pool::Lite(popts(concurrency).connect_lazy_with(o)))
                    }
                }
            })
            .map_err(|e| UnitError::new(&target, redact(format!("cannot connect: {e}"))))?;
        let state: Option<Box<dyn UnitStateStore>> = if opts.incremental {
            let dir = opts
                .state_dir
                .clone()
                .ok_or_else(|| UnitError::new(&target, "--incremental needs a state directory"))?;
            Some(Box::new(
                JsonStateStore::open(&dir, &target).map_err(|e| UnitError::new(&target, e))?,
            ))
        } else {
            None
        };
        Ok(DbSource {
            kind,
            include: build_globs(&target, &source.include)?,
            exclude: build_globs(&target, &source.exclude)?,
            target,
            rt,
            pool,
            cfg: source.clone(),
            database,
            down: Default::default(),
            catalog: Mutex::new(BTreeMap::new()),
            state,
            secrets,
            range_rows: opts.range_rows,
        })
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    fn err(&self, unit: &str, e: impl std::fmt::Display) -> UnitError {
        UnitError::new(unit, redact_secrets(&e.to_string(), &self.secrets))
    }

    fn failed(&self, unit: &str, e: ReadError) -> Failed {
        Failed {
            transient: e.transient(),
            error: self.err(unit, e),
        }
    }

    /// Wait for a pooled connection. Waiting is how concurrency is bounded,
    /// so it may be long; but every `connect_timeout_secs` a direct probe
    /// checks the server still answers (the pool itself would keep trying
    /// to connect to an unreachable server for hours).
    async fn acquire<DB: sqlx::Database>(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> Result<sqlx::pool::PoolConnection<DB>, ReadError> {
        use sqlx::{ConnectOptions, Connection};
        let wait = Duration::from_secs(self.cfg.connect_timeout_secs.max(1));
        loop {
            if let Ok(r) = tokio::time::timeout(wait, pool.acquire()).await {
                return Ok(r?);
            }
            match tokio::time::timeout(wait, pool.connect_options().connect()).await {
                Ok(Ok(c)) => {
                    let _ = c.close().await;
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(ReadError::Unreachable(wait.as_secs())),
            }
        }
    }

    fn selected(&self, unit: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(unit))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(unit))
    }

    /// Discover tables and columns from the catalog (system schemas skipped, include/exclude applied).
    pub fn discover(&self) -> Result<Vec<TableInfo>, UnitError> {
        let tables = self
            .rt
            .block_on(async {
                match &self.pool {
                    Pool::Pg(p) => postgres::discover(p).await,
                    Pool::My(p) => mysql::discover(p, self.database.as_deref()).await,
                    Pool::Lite(p) => sqlite::discover(p).await,
                }
            })
            .map_err(|e| self.err(&self.target, format!("reading the catalog: {e}")))?;
        let mut out: Vec<TableInfo> = tables
            .into_iter()
            .filter(|t| self.selected(&t.unit_id()))
            .collect();
        out.sort_by_key(|t| t.unit_id());
        let mut cat = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        for t in &out {
            cat.insert(t.unit_id(), t.clone());
        }
        Ok(out)
    }

    /// Catalog entry of one unit (discovering when not yet known).
    pub fn table_info(&self, unit: &str) -> Result<TableInfo, UnitError> {
        if let Some(t) = self
            .catalog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(unit)
        {
            return Ok(t.clone());
        }
        self.discover()?;
        self.catalog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(unit)
            .cloned()
            .ok_or_else(|| {
                UnitError::new(
                    unit,
                    "no such table (dropped, or excluded by the source's globs)",
                )
            })
    }

    /// Run one statement in a scan session (as a scan would). Used to show sessions are read-only:
    /// any write fails.
    pub fn execute_in_scan_session(&self, sql: &str) -> Result<u64, UnitError> {
        self.rt
            .block_on(async {
                use sqlx::Executor;
                Ok::<u64, sqlx::Error>(match &self.pool {
                    Pool::Pg(p) => p.execute(sql).await?.rows_affected(),
                    Pool::My(p) => p.execute(sql).await?.rows_affected(),
                    Pool::Lite(p) => p.execute(sql).await?.rows_affected(),
                })
            })
            .map_err(|e| self.err(&self.target, e))
    }

    /// Row count and watermark maximum (as text) of a table.
    fn measure(&self, info: &TableInfo) -> Result<(u64, Option<String>), Failed> {
        let unit = info.unit_id();
        let wm = self.cfg.watermarks.get(&unit).cloned();
        if let Some(w) = &wm {
            if !info.columns.iter().any(|c| &c.name == w) {
                return Err(UnitError::new(
                    &unit,
                    format!("watermark column `{w}` does not exist"),
                )
                .into());
            }
        }
        self.with_timeout(&unit, async {
            match &self.pool {
                Pool::Pg(p) => postgres::measure(p, info, wm.as_deref()).await,
                Pool::My(p) => mysql::measure(p, info, wm.as_deref()).await,
                Pool::Lite(p) => sqlite::measure(p, info, wm.as_deref()).await,
            }
        })
    }

    /// The integer key key ranges are taken over, quoted: the single integer
    /// primary key, or SQLite's rowid (which an INTEGER PRIMARY KEY aliases).
    fn range_key(&self, info: &TableInfo) -> Option<String> {
        match (self.kind, info.integer_key) {
            (_, false) => None,
            (DbKind::Sqlite, true) => Some("rowid".into()),
            (_, true) => info.primary_key.first().map(|c| quote_ident(self.kind, c)),
        }
    }

    /// Minimum and maximum of the integer key (None: empty table or no such key).
    fn key_bounds(&self, info: &TableInfo) -> Result<Option<(i64, i64)>, UnitError> {
        let unit = info.unit_id();
        let Some(pk) = self.range_key(info) else {
            return Ok(None);
        };
        let tbl = qualified(self.kind, info);
        let ty = if self.kind == DbKind::MySql {
            "CHAR"
        } else {
            "TEXT"
        };
        let sql = format!("SELECT CAST(MIN({pk}) AS {ty}), CAST(MAX({pk}) AS {ty}) FROM {tbl}");
        let (lo, hi): (Option<String>, Option<String>) = self
            .with_timeout(&unit, async {
                Ok(match &self.pool {
                    Pool::Pg(p) => sqlx::query_as(&sql).fetch_one(p).await?,
                    Pool::My(p) => sqlx::query_as(&sql).fetch_one(p).await?,
                    Pool::Lite(p) => sqlx::query_as(&sql).fetch_one(p).await?,
                })
            })
            .map_err(|f| f.error)?;
        let parse = |v: Option<String>| v.and_then(|s| s.trim().parse::<i64>().ok());
        Ok(parse(lo).zip(parse(hi)))
    }

    fn with_timeout<T>(
        &self,
        unit: &str,
        fut: impl std::future::Future<Output = Result<T, ReadError>>,
    ) -> Result<T, Failed> {
        // The server enforces the statement timeout (PostgreSQL, MySQL); this client-side
        // guard covers SQLite and a server that does not answer at all.
        let secs = self.cfg.statement_timeout_secs.max(1);
        let guard = Duration::from_secs(secs)
            + Duration::from_secs(if self.kind == DbKind::Sqlite { 0 } else { 5 });
        self.rt
            .block_on(async {
                match tokio::time::timeout(guard, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(ReadError::Timeout(secs)),
                }
            })
            .map_err(|e| self.failed(unit, e))
    }

    fn version_of(rows: u64, wm: &Option<String>) -> String {
        match wm {
            Some(w) => format!("rows={rows};watermark={w}"),
            None => format!("rows={rows}"),
        }
    }

    fn plan(
        &self,
        info: &TableInfo,
        opts: &ScanOptions,
        since: Option<String>,
        range: Option<UnitRange>,
    ) -> Result<ReadPlan, Failed> {
        let unit = info.unit_id();
        let q = |c: &str| quote_ident(self.kind, c);
        let columns: Vec<String> = info.examined().iter().map(|c| q(&c.name)).collect();
        let key_range = match range {
            Some(UnitRange::Key { lo, hi }) if self.range_key(info).is_some() => {
                Some((self.range_key(info).expect("checked"), lo, hi))
            }
            Some(r) => {
                return Err(UnitError::new(
                    r.unit_id(&unit),
                    "range does not apply: the table has no single integer primary key",
                )
                .into())
            }
            None => None,
        };
        let key = opts.rows.then(|| key_expr(self.kind, info));
        let since = match since {
            Some(v) => {
                let w = &self.cfg.watermarks[&unit];
                let ty = info
                    .columns
                    .iter()
                    .find(|c| &c.name == w)
                    .map(|c| c.data_type.clone())
                    .unwrap_or_default();
                Some((q(w), v, ty))
            }
            None => None,
        };
        let n = if opts.sample_rows > 0 {
            opts.sample_rows
        } else {
            self.cfg.sample_rows.max(1)
        };
        let mode = if opts.full || key_range.is_some() {
            ReadMode::Full
        } else {
            self.with_timeout(&unit, async {
                match &self.pool {
                    Pool::Pg(p) => postgres::sample_mode(p, info, n).await,
                    Pool::My(p) => mysql::sample_mode(p, info, n).await,
                    Pool::Lite(p) => sqlite::sample_mode(p, info, n).await,
                }
            })?
        };
        Ok(ReadPlan {
            columns,
            key,
            since,
            key_range,
            mode,
        })
    }

    /// [`DbSource::read`] of a PostgreSQL table by several scanning threads
    /// (see [`postgres::read_parallel`]).
    fn read_parallel(
        &self,
        unit: &str,
        info: &TableInfo,
        plan: &ReadPlan,
        workers: &mut [impl OrderedRowFn],
    ) -> Result<u64, Failed> {
        let Pool::Pg(pool) = &self.pool else {
            return Err(self.failed(
                unit,
                ReadError::Other("parallel reads are PostgreSQL's".into()),
            ));
        };
        let secs = self.cfg.statement_timeout_secs.max(1);
        let guard = Duration::from_secs(secs) + Duration::from_secs(5);
        let conn = self
            .rt
            .block_on(self.acquire(pool))
            .map_err(|e| self.failed(unit, e))?;
        postgres::read_parallel(self.rt.handle(), conn, info, plan, workers, guard, secs)
            .map_err(|e| self.failed(unit, e))
    }

    fn read(
        &self,
        unit: &str,
        info: &TableInfo,
        plan: &ReadPlan,
        f: &mut RowFn<'_>,
    ) -> Result<u64, Failed> {
        let secs = self.cfg.statement_timeout_secs.max(1);
        let guard = Duration::from_secs(secs)
            + Duration::from_secs(if self.kind == DbKind::Sqlite { 0 } else { 5 });
        self.rt
            .block_on(async {
                // Wait for a connection outside the timeout: the pool bounds concurrency.
                macro_rules! run {
                    ($pool:expr, $read:path) => {{
                        let mut conn = self.acquire($pool).await?;
                        match tokio::time::timeout(guard, $read(&mut conn, info, plan, f)).await {
                            Ok(Ok(n)) => Ok(n),
                            Ok(Err(e)) => {
                                conn.close_on_drop();
                                Err(e)
                            }
                            Err(_) => {
                                conn.close_on_drop();
                                Err(ReadError::Timeout(secs))
                            }
                        }
                    }};
                }
                match &self.pool {
                    // The connection moves to the COPY reader task, which closes it on failure.
                    Pool::Pg(p) => {
                        let conn = self.acquire(p).await?;
                        tokio::time::timeout(guard, postgres::read(conn, info, plan, f))
                            .await
                            .unwrap_or(Err(ReadError::Timeout(secs)))
                    }
                    Pool::My(p) => run!(p, mysql::read),
                    Pool::Lite(p) => run!(p, sqlite::read),
                }
            })
            .map_err(|e| self.failed(unit, e))
    }
}

impl Source for DbSource {
    fn target(&self) -> &str {
        &self.target
    }

    fn units(&self) -> Result<Vec<WorkUnit>, UnitError> {
        let tables = self.discover()?;
        let mut out = Vec::with_capacity(tables.len());
        for t in tables {
            let id = t.unit_id();
            // Versions cost a count per table: only computed for incremental scans. A table
            // that cannot be measured gets no version and reports its error when scanned.
            let version = match &self.state {
                Some(_) => self
                    .measure(&t)
                    .ok()
                    .map(|(rows, wm)| Self::version_of(rows, &wm)),
                None => None,
            };
            // `--full`: a table with one integer key spanning more than `range_rows`
            // keys becomes one unit per aligned key range (see `source::shard`).
            let ranges = if self.range_rows > 0 && t.integer_key && !t.examined().is_empty() {
                match self.key_bounds(&t) {
                    Ok(Some((lo, hi))) => key_ranges_aligned(lo, hi, self.range_rows),
                    _ => None,
                }
            } else {
                None
            };
            match ranges {
                Some(ranges) => out.extend(ranges.into_iter().map(|r| WorkUnit {
                    id: r.unit_id(&id),
                    size: None,
                    version: version.clone(),
                })),
                None => out.push(WorkUnit {
                    id,
                    size: None,
                    version,
                }),
            }
        }
        Ok(out)
    }

    /// Scan one table. A connection failure (the server restarting, the
    /// network) reads the table again from the start after a backoff (1 s,
    /// 2 s, 4 s … at most 15 s), up to `max_retries` times; findings are only
    /// emitted once the whole table was read, so a retry never duplicates them.
    fn scan_unit(
        &self,
        unit: &WorkUnit,
        engine: &Engine,
        opts: &ScanOptions,
        emit: &mut dyn FnMut(Finding),
    ) -> Result<UnitStats, UnitError> {
        use std::sync::atomic::Ordering;
        let retries = if self.down.load(Ordering::Relaxed) {
            0
        } else {
            self.cfg.max_retries
        };
        let mut attempt = 0;
        loop {
            match self.scan_table(unit, engine, opts, emit) {
                Ok(s) => {
                    self.down.store(false, Ordering::Relaxed);
                    return Ok(s);
                }
                Err(f) if f.transient && attempt < retries => {
                    attempt += 1;
                    let backoff = Duration::from_secs((1u64 << (attempt - 1).min(4)).min(15));
                    tracing::warn!(
                        target_db = %self.target,
                        table = %unit.id,
                        attempt,
                        of = retries,
                        backoff_s = backoff.as_secs(),
                        error = %f.error,
                        "database connection failed; reading the table again after a backoff"
                    );
                    std::thread::sleep(backoff);
                }
                Err(f) if f.transient => {
                    self.down.store(true, Ordering::Relaxed);
                    let mut e = f.error;
                    e.message = format!(
                        "{} (connection lost; gave up after {} attempt(s))",
                        e.message,
                        attempt + 1
                    );
                    return Err(e);
                }
                Err(f) => return Err(f.error),
            }
        }
    }
}

impl DbSource {
    /// One attempt at scanning a table (see [`Source::scan_unit`]).
    fn scan_table(
        &self,
        unit: &WorkUnit,
        engine: &Engine,
        opts: &ScanOptions,
        emit: &mut dyn FnMut(Finding),
    ) -> Result<UnitStats, Failed> {
        let (table, range) = split_unit_id(&unit.id);
        let info = self.table_info(table)?;
        let examined = info.examined();
        if examined.is_empty() {
            return Ok(UnitStats {
                skipped: Some("no columns that can hold personal information".into()),
                ..Default::default()
            });
        }
        let mut since = None;
        let mut measured = None;
        if let Some(store) = &self.state {
            let (rows, wm) = self.measure(&info)?;
            let version = Self::version_of(rows, &wm);
            if let Some(prev) = store.get(&unit.id) {
                if prev.version == version {
                    return Ok(UnitStats {
                        skipped: Some("unchanged".into()),
                        ..Default::default()
                    });
                }
                if self.cfg.watermarks.contains_key(table) {
                    since = prev.watermark.clone();
                }
            }
            measured = Some((rows, wm, version));
        }
        let names: Vec<String> = examined.iter().map(|c| c.name.clone()).collect();
        let base = Location {
            table: Some(table.to_string()),
            range: range.map(|r| r.to_string()),
            ..Default::default()
        };
        let mut plan = self.plan(&info, opts, since, range)?;
        let mut scanner = TableScanner::new(engine, &self.target, base.clone(), &names, opts.rows);
        let threads = table_scanners();
        let mut rows = if self.kind == DbKind::Postgres
            && plan.mode == ReadMode::Full
            && threads > 1
        {
            // Scanners that each see some batches, merged in row order.
            let mut parts: Vec<TableScanner> = (0..threads)
                .map(|_| TableScanner::new(engine, &self.target, base.clone(), &names, opts.rows))
                .collect();
            let mut fns: Vec<_> = parts
                .iter_mut()
                .map(|ts| {
                    move |ordinal: u64, cells: &[Option<&str>], key: Option<&str>| {
                        ts.set_ordinal(ordinal);
                        ts.add_row(cells, key)
                    }
                })
                .collect();
            let n = self.read_parallel(&unit.id, &info, &plan, &mut fns)?;
            drop(fns);
            scanner = parts
                .into_iter()
                .reduce(TableScanner::merge)
                .expect("at least one scanner");
            n
        } else {
            self.read(&unit.id, &info, &plan, &mut |cells, key| {
                scanner.add_row(cells, key)
            })?
        };
        // Stale statistics can make TABLESAMPLE return far fewer rows than asked: read again plainly.
        if let ReadMode::TableSample(_, _, n) = plan.mode {
            if rows < n / 4 {
                plan.mode = ReadMode::Limit(n);
                scanner = TableScanner::new(engine, &self.target, base, &names, opts.rows);
                rows = self.read(&unit.id, &info, &plan, &mut |cells, key| {
                    scanner.add_row(cells, key)
                })?;
            }
        }
        for f in scanner.finish() {
            emit(f);
        }
        if let (Some(store), Some((count, wm, version))) = (&self.state, measured) {
            let st = UnitState {
                version,
                rows: Some(count),
                watermark: wm,
                scanned_at: now_rfc3339(),
                ..Default::default()
            };
            store
                .put(&unit.id, st)
                .map_err(|e| UnitError::new(&unit.id, e))?;
        }
        Ok(UnitStats {
            bytes: 0,
            rows,
            skipped: None,
        })
    }
}

/// Quote an identifier for the engine.
pub(crate) fn quote_ident(kind: DbKind, name: &str) -> String {
    match kind {
        DbKind::MySql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// `schema.table`, quoted.
pub(crate) fn qualified(kind: DbKind, info: &TableInfo) -> String {
    format!(
        "{}.{}",
        quote_ident(kind, &info.schema),
        quote_ident(kind, &info.name)
    )
}

/// Quote a string literal (standard SQL; MySQL also escapes backslashes).
pub(crate) fn quote_literal(kind: DbKind, v: &str) -> String {
    let mut s = v.replace('\'', "''");
    if kind == DbKind::MySql {
        s = s.replace('\\', "\\\\");
    }
    format!("'{s}'")
}

/// The primary key rendered as text (`a,b` for composite keys), or the row id.
fn key_expr(kind: DbKind, info: &TableInfo) -> String {
    let q = |c: &str| quote_ident(kind, c);
    match (kind, info.primary_key.len()) {
        (DbKind::Postgres, 0) => "ctid::text".into(),
        (DbKind::Postgres, 1) => format!("{}::text", q(&info.primary_key[0])),
        (DbKind::Postgres, _) => format!(
            "concat_ws(',', {})",
            info.primary_key
                .iter()
                .map(|c| q(c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (DbKind::MySql, 0) => "NULL".into(),
        (DbKind::MySql, _) => format!(
            "CAST(CONCAT_WS(',', {}) AS CHAR)",
            info.primary_key
                .iter()
                .map(|c| q(c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (DbKind::Sqlite, 0) if info.has_rowid => "CAST(rowid AS TEXT)".into(),
        (DbKind::Sqlite, 0) => "NULL".into(),
        (DbKind::Sqlite, _) => info
            .primary_key
            .iter()
            .map(|c| format!("CAST({} AS TEXT)", q(c)))
            .collect::<Vec<_>>()
            .join(" || ',' || "),
    }
}

fn redact_secrets(msg: &str, secrets: &[String]) -> String {
    let mut m = msg.to_string();
    for s in secrets {
        if !s.is_empty() {
            m = m.replace(s.as_str(), "***");
        }
    }
    m
}

fn urlencoding_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out)
}

/// Dispatch for `crate::source::open_target`: `Some` when `target` is a
/// database URL (`postgres://`, `postgresql://`, `mysql://`, `mariadb://`,
/// `sqlite://`) or names a `[[sources]]` entry with such a URL.
pub fn open_db_target(
    target: &str,
    sources: &[SourceConfig],
    opts: &RemoteOptions,
) -> Option<Result<Box<dyn Source>, UnitError>> {
    let cfg = opts.apply(&crate::config::sources::resolve(target, sources)?);
    is_db_url(&cfg.url).then(|| open(&cfg, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_columns() {
        use DbKind::*;
        assert!(examine_column(Postgres, "character varying(20)", "name"));
        assert!(examine_column(Postgres, "jsonb", "profile"));
        assert!(examine_column(Postgres, "text[]", "tags"));
        assert!(examine_column(Postgres, "date", "birth_date"));
        assert!(examine_column(
            Postgres,
            "timestamp without time zone",
            "csrq"
        ));
        assert!(!examine_column(
            Postgres,
            "timestamp with time zone",
            "created_at"
        ));
        assert!(examine_column(Postgres, "bigint", "order_no"));
        assert!(examine_column(Postgres, "numeric(18,0)", "idno"));
        assert!(examine_column(Postgres, "numeric", "x"));
        assert!(!examine_column(Postgres, "numeric(10,2)", "amount"));
        assert!(!examine_column(Postgres, "integer", "id"));
        assert!(!examine_column(Postgres, "bytea", "photo"));
        assert!(examine_column(MySql, "varchar(64)", "x"));
        assert!(examine_column(MySql, "bigint(20) unsigned", "x"));
        assert!(!examine_column(MySql, "int(11)", "x"));
        assert!(examine_column(MySql, "decimal(18,0)", "x"));
        assert!(examine_column(Sqlite, "", "x"));
        assert!(examine_column(Sqlite, "INTEGER", "x"));
        assert!(!examine_column(Sqlite, "REAL", "x"));
        assert!(!examine_column(Sqlite, "BLOB", "x"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact_url("mysql://root@h/test"), "mysql://root@h/test");
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=pw1&sslpassword=pw2"),
            "postgres://u@h/db?sslmode=require&password=***&sslpassword=***"
        );
        assert_eq!(
            crate::source::target_label("s3://b/p?X-Amz-Signature=abc&region=x"),
            "s3://b/p?X-Amz-Signature=***&region=x"
        );
        assert_eq!(crate::source::target_label("logs/app.log"), "logs/app.log");
        assert_eq!(
            redact_secrets("failed for p%40ss", &["p%40ss".into()]),
            "failed for ***"
        );
        assert_eq!(urlencoding_decode("p%40ss").unwrap(), "p@ss");
    }

    #[test]
    fn ranges_cover_the_key_space() {
        let r = key_ranges(1, 100, 10);
        assert_eq!(r.len(), 10);
        assert_eq!(r[0].0, 1);
        assert_eq!(r[9].1, 101);
        assert!(r.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(key_ranges(5, 5, 10), vec![(5, 6)]);
    }
}
