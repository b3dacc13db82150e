//! Counting records past their retention period (CAC Order No. 4 Art. 12):
//! database rows by `count(*) WHERE <clock column> < cutoff` through sqlx;
//! files and objects by their last-modified time. Errors name the source,
//! table or path and the cause — never a value, never credentials.

use super::normalize_target;
use crate::config::inventory::{Clock, Dataset};
use chrono::{NaiveDateTime, TimeZone, Utc};
use sqlx::Connection;

/// Records of one unit (a table, or a dataset's files/objects) past retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueCount {
    /// Table (`schema.table`) or the source directory / object prefix.
    pub unit: String,
    pub count: u64,
    /// "rows", "files" or "objects".
    pub what: &'static str,
    /// The clock column for tables.
    pub clock_column: Option<String>,
    /// Records whose clock is strictly before this are overdue.
    pub cutoff: NaiveDateTime,
}

/// A problem counting one dataset.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("source {source_name}: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    #[error("table {table}: {message}")]
    Table { table: String, message: String },
    #[error("{0}")]
    Unsupported(String),
}

fn quote_ident(part: &str, q: char) -> String {
    let doubled = format!("{q}{q}");
    format!("{q}{}{q}", part.replace(q, &doubled))
}

/// `schema.table` → `"schema"."table"` (or with backticks for MySQL).
fn quote_table(t: &str, q: char) -> String {
    t.split('.')
        .map(|p| quote_ident(p, q))
        .collect::<Vec<_>>()
        .join(".")
}

/// Count records past retention for dataset `d` living in `source`
/// (resolved target). `units` are tables (or paths) known to belong to the
/// dataset; `matches` tells whether another table/path belongs to it.
/// Returns the counts and per-table problems (the rest still counted).
pub async fn count_overdue(
    d: &Dataset,
    source: &str,
    units: &[String],
    matches: impl Fn(&str) -> bool,
    as_of: NaiveDateTime,
) -> Result<Vec<OverdueCount>, RetentionError> {
    let Some(r) = &d.retention else {
        return Ok(Vec::new());
    };
    let cutoff = r.period.cutoff(as_of);
    let shown = normalize_target(source);
    let src_err = |e: &dyn std::fmt::Display| RetentionError::Source {
        source_name: shown.clone(),
        message: e.to_string(),
    };
    let scheme = source
        .split_once("://")
        .map(|(s, _)| s)
        .or_else(|| source.strip_prefix("sqlite:").map(|_| "sqlite"))
        .unwrap_or("");
    let db_scheme = matches!(
        scheme,
        "postgres" | "postgresql" | "mysql" | "mariadb" | "sqlite"
    );
    match (&r.clock, db_scheme) {
        (Clock::Column(col), true) => {
            let mut tables: Vec<String> = units.to_vec();
            let mut out = Vec::new();
            let mut problems = Vec::new();
            macro_rules! count_tables {
                ($conn:expr, $q:expr, $ph:expr, $list:expr, $norm:expr) => {{
                    let mut conn = $conn;
                    // One name per table (SQLite: `students` is `main.students`), so no table is counted twice.
                    let norm: fn(String) -> String = $norm;
                    tables = tables.into_iter().map(norm).collect();
                    tables.sort();
                    tables.dedup();
                    if !d.matches.is_empty() {
                        let listed: Vec<String> = sqlx::query_scalar($list).fetch_all(&mut conn).await.map_err(|e| src_err(&e))?;
                        for t in listed {
                            let n = norm(t.clone());
                            if matches(&t) && !tables.contains(&n) {
                                tables.push(n);
                            }
                        }
                    }
                    for t in &tables {
                        let sql = format!("SELECT count(*) FROM {} WHERE {} < {}", quote_table(t, $q), quote_ident(col, $q), $ph);
                        match sqlx::query_scalar::<_, i64>(&sql).bind(cutoff).fetch_one(&mut conn).await {
                            Ok(n) => out.push(OverdueCount { unit: t.clone(), count: n.max(0) as u64, what: "rows", clock_column: Some(col.clone()), cutoff }),
                            Err(e) => problems.push(RetentionError::Table { table: t.clone(), message: db_cause(&e) }),
                        }
                    }
                }};
            }
            match scheme {
                "postgres" | "postgresql" => count_tables!(
                    sqlx::PgConnection::connect(source).await.map_err(|e| src_err(&db_cause(&e)))?,
                    '"',
                    "$1",
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
                    |t| t
                ),
                "mysql" | "mariadb" => count_tables!(
                    sqlx::MySqlConnection::connect(&source.replacen("mariadb://", "mysql://", 1)).await.map_err(|e| src_err(&db_cause(&e)))?,
                    '`',
                    "?",
                    "SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables WHERE table_schema = DATABASE()",
                    |t| t
                ),
                _ => count_tables!(
                    sqlx::SqliteConnection::connect(source).await.map_err(|e| src_err(&db_cause(&e)))?,
                    '"',
                    "$1",
                    "SELECT name FROM sqlite_master WHERE type = 'table'",
                    |t| if t.contains('.') { t } else { format!("main.{t}") }
                ),
            }
            if out.is_empty() && !problems.is_empty() {
                return Err(problems.remove(0));
            }
            for p in problems {
                tracing::warn!(dataset = %d.name, "retention count: {p}");
            }
            Ok(out)
        }
        (Clock::ObjectAge, true) => Err(RetentionError::Unsupported(format!(
            "retention `{r}` runs from object age, but {shown} is a database: name a time column"
        ))),
        (Clock::Column(_), false) => Err(RetentionError::Unsupported(format!(
            "retention `{r}` on files/objects counts records by a column: `childguard sweep plan` reads them; only object_age is counted here"
        ))),
        (Clock::ObjectAge, false) if matches!(scheme, "s3" | "gs" | "az" | "abfs" | "azure") => count_objects(source, &shown, &matches, cutoff).await,
        (Clock::ObjectAge, false) => {
            let root = std::path::PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
            let cutoff_sys: std::time::SystemTime = Utc.from_utc_datetime(&cutoff).into();
            let mut count = 0;
            let walk = ignore::WalkBuilder::new(&root).standard_filters(false).build();
            for entry in walk {
                let entry = entry.map_err(|e| src_err(&e))?;
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    continue;
                }
                let rel = entry.path().strip_prefix(&root).unwrap_or(entry.path()).to_string_lossy().replace('\\', "/");
                let rel = if rel.is_empty() { entry.file_name().to_string_lossy().to_string() } else { rel };
                if !matches(&rel) {
                    continue;
                }
                let mtime = entry
                    .metadata()
                    .map_err(|e| RetentionError::Source { source_name: entry.path().display().to_string(), message: e.to_string() })?
                    .modified()
                    .map_err(|e| RetentionError::Source { source_name: entry.path().display().to_string(), message: e.to_string() })?;
                if mtime < cutoff_sys {
                    count += 1;
                }
            }
            Ok(vec![OverdueCount { unit: shown.clone(), count, what: "files", clock_column: None, cutoff }])
        }
    }
}

async fn count_objects(
    source: &str,
    shown: &str,
    matches: &impl Fn(&str) -> bool,
    cutoff: NaiveDateTime,
) -> Result<Vec<OverdueCount>, RetentionError> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let err = |e: &dyn std::fmt::Display| RetentionError::Source {
        source_name: shown.to_string(),
        message: e.to_string(),
    };
    let url = url::Url::parse(source).map_err(|e| err(&e))?;
    let store: Box<dyn ObjectStore> = if url.scheme() == "s3" {
        Box::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(source)
                .build()
                .map_err(|e| err(&e))?,
        )
    } else {
        object_store::parse_url(&url).map_err(|e| err(&e))?.0
    };
    let prefix = url.path().trim_start_matches('/');
    let prefix_path = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix));
    let cutoff = Utc.from_utc_datetime(&cutoff);
    let mut count = 0;
    let mut list = store.list(prefix_path.as_ref());
    while let Some(meta) = list.try_next().await.map_err(|e| err(&e))? {
        let key = meta.location.to_string();
        let rel = key
            .strip_prefix(prefix)
            .map(|k| k.trim_start_matches('/'))
            .unwrap_or(&key);
        if (matches(rel) || matches(&key)) && meta.last_modified < cutoff {
            count += 1;
        }
    }
    Ok(vec![OverdueCount {
        unit: shown.to_string(),
        count,
        what: "objects",
        clock_column: None,
        cutoff: cutoff.naive_utc(),
    }])
}

/// A database error's cause without the statement's parameters.
fn db_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
}
