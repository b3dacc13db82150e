//! SQLite: opened read-only (`mode=ro`), catalog from `pragma_table_list` /
//! `pragma_table_info`, sampling over rowid ranges.

use super::{
    key_ranges, qualified, quote_ident, quote_literal, DbKind, ReadError, ReadMode, ReadPlan,
    RowFn, TableInfo,
};
use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::Row;
use std::time::Duration;

pub(super) fn connect_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    let rest = url.split_once(':').map(|(_, r)| r).unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split_once('?').map(|(p, _)| p).unwrap_or(rest);
    if path.is_empty() {
        return Err(sqlx::Error::Configuration(
            "sqlite:// URL without a file path".into(),
        ));
    }
    if !std::path::Path::new(path).exists() {
        return Err(sqlx::Error::Configuration(
            format!("{path}: no such file").into(),
        ));
    }
    Ok(SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(5)))
}

fn text(row: &SqliteRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    let b: Option<Vec<u8>> = row.try_get_unchecked(i)?;
    Ok(b.map(|b| {
        String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }))
}

pub(super) async fn discover(pool: &SqlitePool) -> Result<Vec<TableInfo>, sqlx::Error> {
    let tables = sqlx::query(
        "SELECT schema, name, wr FROM pragma_table_list \
         WHERE type = 'table' AND schema <> 'temp' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY schema, name",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for t in tables {
        let schema: String = t.try_get(0)?;
        let name: String = t.try_get(1)?;
        let without_rowid: i64 = t.try_get(2)?;
        let cols = sqlx::query("SELECT name, type, pk FROM pragma_table_info(?1, ?2) ORDER BY cid")
            .bind(&name)
            .bind(&schema)
            .fetch_all(pool)
            .await?;
        let mut info = TableInfo {
            schema,
            name,
            columns: Vec::new(),
            primary_key: Vec::new(),
            integer_key: false,
            estimated_rows: None,
            has_rowid: without_rowid == 0,
        };
        let mut pk: Vec<(i64, String)> = Vec::new();
        for c in cols {
            let cname: String = c.try_get(0)?;
            let ty: String = c.try_get(1)?;
            let pkpos: i64 = c.try_get(2)?;
            if pkpos > 0 {
                pk.push((pkpos, cname.clone()));
            }
            let examined = super::examine_column(DbKind::Sqlite, &ty, &cname);
            info.columns.push(super::ColumnInfo {
                name: cname,
                data_type: ty,
                examined,
            });
        }
        pk.sort();
        info.primary_key = pk.into_iter().map(|(_, n)| n).collect();
        info.integer_key = info.has_rowid;
        out.push(info);
    }
    Ok(out)
}

pub(super) async fn measure(
    pool: &SqlitePool,
    info: &TableInfo,
    wm: Option<&str>,
) -> Result<(u64, Option<String>), ReadError> {
    let max = wm
        .map(|w| format!("CAST(max({}) AS TEXT)", quote_ident(DbKind::Sqlite, w)))
        .unwrap_or_else(|| "NULL".into());
    let sql = format!(
        "SELECT count(*), {max} FROM {}",
        qualified(DbKind::Sqlite, info)
    );
    let row = sqlx::query(&sql).fetch_one(pool).await?;
    let n: i64 = row.try_get(0)?;
    Ok((n as u64, text(&row, 1)?))
}

pub(super) async fn sample_mode(
    pool: &SqlitePool,
    info: &TableInfo,
    n: u64,
) -> Result<ReadMode, ReadError> {
    let tbl = qualified(DbKind::Sqlite, info);
    let small: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM (SELECT 1 FROM {tbl} LIMIT {})",
        2 * n + 1
    ))
    .fetch_one(pool)
    .await?;
    if small as u64 <= 2 * n || !info.has_rowid {
        return Ok(ReadMode::Limit(n));
    }
    let (min, max): (Option<i64>, Option<i64>) =
        sqlx::query_as(&format!("SELECT min(rowid), max(rowid) FROM {tbl}"))
            .fetch_one(pool)
            .await?;
    match (min, max) {
        (Some(min), Some(max)) => {
            let k = (n / 50).clamp(1, 20);
            Ok(ReadMode::KeyRanges {
                column: "rowid".into(),
                ranges: key_ranges(min, max, k),
                per: n.div_ceil(k),
            })
        }
        _ => Ok(ReadMode::Limit(n)),
    }
}

pub(super) async fn read(
    conn: &mut SqliteConnection,
    info: &TableInfo,
    plan: &ReadPlan,
    f: &mut RowFn<'_>,
) -> Result<u64, ReadError> {
    let mut sel: Vec<String> = plan
        .columns
        .iter()
        .map(|c| format!("CAST({c} AS TEXT)"))
        .collect();
    if let Some(k) = &plan.key {
        sel.push(k.clone());
    }
    let base = format!(
        "SELECT {} FROM {}",
        sel.join(", "),
        qualified(DbKind::Sqlite, info)
    );
    let since = plan
        .since
        .as_ref()
        .map(|(col, lit, _)| format!("{col} > {}", quote_literal(DbKind::Sqlite, lit)));
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
        other => {
            return Err(ReadError::Other(format!(
                "unsupported read mode for SQLite: {other:?}"
            )))
        }
    };
    let ncols = plan.columns.len();
    let mut rows = 0u64;
    let mut cells: Vec<Option<String>> = Vec::with_capacity(ncols + 1);
    for sql in &statements {
        let mut stream = sqlx::query(sql).persistent(false).fetch(&mut *conn);
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
