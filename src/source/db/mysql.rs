//! MySQL and MariaDB: catalog from `information_schema`, rows streamed with
//! the text protocol (`CAST(col AS CHAR)`), sampling over primary-key ranges.

use super::{
    key_ranges, qualified, quote_ident, quote_literal, DbKind, ReadError, ReadMode, ReadPlan,
    RowFn, TableInfo,
};
use futures::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlRow};
use sqlx::{Executor, Row};

pub(super) fn connect_options(
    url: &str,
    password: Option<&str>,
) -> Result<(MySqlConnectOptions, Option<String>), sqlx::Error> {
    let url = match url.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case("mariadb") => format!("mysql://{rest}"),
        _ => url.to_string(),
    };
    let mut o: MySqlConnectOptions = url.parse()?;
    if let Some(p) = password {
        o = o.password(p);
    }
    let db = url::Url::parse(&url)
        .ok()
        .map(|u| u.path().trim_start_matches('/').to_string())
        .filter(|d| !d.is_empty());
    Ok((o, db))
}

/// Every pooled connection: read-only, with a statement timeout (MariaDB
/// `max_statement_time` in seconds, else MySQL `max_execution_time` in ms).
pub(super) async fn prepare_session(
    conn: &mut MySqlConnection,
    secs: u64,
) -> Result<(), sqlx::Error> {
    conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
    let mariadb = format!("SET SESSION max_statement_time = {secs}");
    if conn.execute(mariadb.as_str()).await.is_err() {
        let mysql = format!(
            "SET SESSION max_execution_time = {}",
            secs.saturating_mul(1000)
        );
        let _ = conn.execute(mysql.as_str()).await;
    }
    Ok(())
}

/// A text cell: bytes of the text protocol, lossily decoded.
fn text(row: &MySqlRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    let b: Option<Vec<u8>> = row.try_get_unchecked(i)?;
    Ok(b.map(|b| {
        String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }))
}

pub(super) async fn discover(
    pool: &MySqlPool,
    database: Option<&str>,
) -> Result<Vec<TableInfo>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT CAST(c.TABLE_SCHEMA AS CHAR), CAST(c.TABLE_NAME AS CHAR), CAST(c.COLUMN_NAME AS CHAR), \
                CAST(c.COLUMN_TYPE AS CHAR), CAST(c.COLUMN_KEY AS CHAR), CAST(c.DATA_TYPE AS CHAR), \
                CAST(t.TABLE_ROWS AS CHAR) \
         FROM information_schema.COLUMNS c \
         JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE t.TABLE_TYPE = 'BASE TABLE' \
           AND c.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')",
    );
    if let Some(db) = database {
        sql.push_str(&format!(
            " AND c.TABLE_SCHEMA = {}",
            quote_literal(DbKind::MySql, db)
        ));
    }
    sql.push_str(" ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION");
    let rows = sqlx::raw_sql(&sql).fetch_all(pool).await?;
    let mut out: Vec<TableInfo> = Vec::new();
    let mut pk_types: Vec<String> = Vec::new();
    let finish = |t: &mut TableInfo, types: &mut Vec<String>| {
        t.integer_key = types.len() == 1 && types[0].contains("int");
        types.clear();
    };
    for r in rows {
        let get = |i| text(&r, i).map(Option::unwrap_or_default);
        let (schema, table, col, ty, key, dt) =
            (get(0)?, get(1)?, get(2)?, get(3)?, get(4)?, get(5)?);
        let est: Option<f64> = text(&r, 6)?.and_then(|s| s.parse().ok());
        if out
            .last()
            .is_none_or(|t| t.schema != schema || t.name != table)
        {
            if let Some(t) = out.last_mut() {
                finish(t, &mut pk_types);
            }
            out.push(TableInfo {
                schema,
                name: table,
                columns: Vec::new(),
                primary_key: Vec::new(),
                integer_key: false,
                estimated_rows: est,
                has_rowid: false,
            });
        }
        let t = out.last_mut().expect("pushed above");
        if key == "PRI" {
            t.primary_key.push(col.clone());
            pk_types.push(dt.to_ascii_lowercase());
        }
        let examined = super::examine_column(DbKind::MySql, &ty, &col);
        t.columns.push(super::ColumnInfo {
            name: col,
            data_type: ty,
            examined,
        });
    }
    if let Some(t) = out.last_mut() {
        finish(t, &mut pk_types);
    }
    Ok(out)
}

pub(super) async fn measure(
    pool: &MySqlPool,
    info: &TableInfo,
    wm: Option<&str>,
) -> Result<(u64, Option<String>), ReadError> {
    let max = wm
        .map(|w| format!("CAST(MAX({}) AS CHAR)", quote_ident(DbKind::MySql, w)))
        .unwrap_or_else(|| "NULL".into());
    let sql = format!(
        "SELECT CAST(COUNT(*) AS CHAR), {max} FROM {}",
        qualified(DbKind::MySql, info)
    );
    let row = sqlx::raw_sql(&sql).fetch_one(pool).await?;
    let n = text(&row, 0)?.and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((n, text(&row, 1)?))
}

pub(super) async fn sample_mode(
    pool: &MySqlPool,
    info: &TableInfo,
    n: u64,
) -> Result<ReadMode, ReadError> {
    let tbl = qualified(DbKind::MySql, info);
    let small_sql = format!(
        "SELECT CAST(COUNT(*) AS CHAR) FROM (SELECT 1 FROM {tbl} LIMIT {}) s",
        2 * n + 1
    );
    let row = sqlx::raw_sql(&small_sql).fetch_one(pool).await?;
    let small: u64 = text(&row, 0)?.and_then(|s| s.parse().ok()).unwrap_or(0);
    if small <= 2 * n {
        return Ok(ReadMode::Limit(n));
    }
    if info.integer_key {
        let pk = quote_ident(DbKind::MySql, &info.primary_key[0]);
        let sql = format!("SELECT CAST(MIN({pk}) AS CHAR), CAST(MAX({pk}) AS CHAR) FROM {tbl}");
        let row = sqlx::raw_sql(&sql).fetch_one(pool).await?;
        let min: Option<i64> = text(&row, 0)?.and_then(|s| s.parse().ok());
        let max: Option<i64> = text(&row, 1)?.and_then(|s| s.parse().ok());
        if let (Some(min), Some(max)) = (min, max) {
            let k = (n / 50).clamp(1, 20);
            return Ok(ReadMode::KeyRanges {
                column: pk,
                ranges: key_ranges(min, max, k),
                per: n.div_ceil(k),
            });
        }
    }
    let est = info.estimated_rows.unwrap_or(0.0).max(2.0 * n as f64 + 1.0);
    Ok(ReadMode::Random((n as f64 / est).min(1.0), n))
}

pub(super) async fn read(
    conn: &mut MySqlConnection,
    info: &TableInfo,
    plan: &ReadPlan,
    f: &mut RowFn<'_>,
) -> Result<u64, ReadError> {
    let mut sel: Vec<String> = plan
        .columns
        .iter()
        .map(|c| format!("CAST({c} AS CHAR)"))
        .collect();
    if let Some(k) = &plan.key {
        sel.push(k.clone());
    }
    let base = format!(
        "SELECT {} FROM {}",
        sel.join(", "),
        qualified(DbKind::MySql, info)
    );
    let since = plan
        .since
        .as_ref()
        .map(|(col, lit, _)| format!("{col} > {}", quote_literal(DbKind::MySql, lit)));
    let with_where = |conds: Vec<String>| {
        let conds: Vec<String> = conds
            .into_iter()
            .chain(plan.range_cond())
            .chain(since.clone())
            .collect();
        if conds.is_empty() {
            base.clone()
        } else {
            format!("{base} WHERE {}", conds.join(" AND "))
        }
    };
    let statements: Vec<String> = match &plan.mode {
        ReadMode::Full => vec![with_where(vec![])],
        ReadMode::Limit(n) => vec![format!("{} LIMIT {n}", with_where(vec![]))],
        ReadMode::KeyRanges {
            column,
            ranges,
            per,
        } => ranges
            .iter()
            .map(|(lo, hi)| {
                format!(
                    "{} ORDER BY {column} LIMIT {per}",
                    with_where(vec![format!("{column} >= {lo} AND {column} < {hi}")])
                )
            })
            .collect(),
        ReadMode::Random(p, n) => vec![format!(
            "{} LIMIT {n}",
            with_where(vec![format!("RAND() < {p:.9}")])
        )],
        other => {
            return Err(ReadError::Other(format!(
                "unsupported read mode for MySQL: {other:?}"
            )))
        }
    };
    let ncols = plan.columns.len();
    let mut rows = 0u64;
    let mut cells: Vec<Option<String>> = Vec::with_capacity(ncols + 1);
    for sql in &statements {
        let mut stream = sqlx::raw_sql(sql).fetch(&mut *conn);
        while let Some(row) = stream.try_next().await? {
            cells.clear();
            for i in 0..ncols + plan.key.is_some() as usize {
                cells.push(text(&row, i)?);
            }
            let refs: Vec<Option<&str>> = cells[..ncols].iter().map(|c| c.as_deref()).collect();
            let key = if plan.key.is_some() {
                cells[ncols].as_deref()
            } else {
                None
            };
            f(&refs, key);
            rows += 1;
        }
    }
    Ok(rows)
}
