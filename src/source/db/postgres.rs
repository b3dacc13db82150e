//! PostgreSQL: catalog from `pg_catalog`, rows through `COPY (SELECT …) TO
//! STDOUT` (text format, streamed and decoded chunk by chunk, so memory stays
//! bounded whatever the table size), sampling with `TABLESAMPLE`.

use super::{
    qualified, quote_literal, DbKind, OrderedRowFn, ReadError, ReadMode, ReadPlan, RowFn, TableInfo,
};
use futures::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::Postgres;
use sqlx::Row;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

pub(super) fn connect_options(
    url: &str,
    password: Option<&str>,
    timeout: Duration,
) -> Result<PgConnectOptions, sqlx::Error> {
    let mut o: PgConnectOptions = url.parse()?;
    if let Some(p) = password {
        o = o.password(p);
    }
    let ms = timeout.as_millis().to_string();
    Ok(o.application_name("childguard").options([
        ("default_transaction_read_only", "on"),
        ("statement_timeout", ms.as_str()),
    ]))
}

pub(super) async fn discover(pool: &PgPool) -> Result<Vec<TableInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                c.reltuples::float8, array_position(i.indkey::int2[], a.attnum)::int4 \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
         WHERE c.relkind IN ('r', 'm') \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
           AND has_table_privilege(c.oid, 'SELECT') \
         ORDER BY 1, 2, a.attnum",
    )
    .fetch_all(pool)
    .await?;
    let mut out: Vec<TableInfo> = Vec::new();
    let mut pk: Vec<(i32, String, String)> = Vec::new();
    let flush = |out: &mut Vec<TableInfo>, pk: &mut Vec<(i32, String, String)>| {
        if let Some(t) = out.last_mut() {
            pk.sort();
            t.integer_key =
                pk.len() == 1 && ["bigint", "integer", "smallint"].contains(&pk[0].2.as_str());
            t.primary_key = pk.drain(..).map(|(_, n, _)| n).collect();
        }
    };
    for r in rows {
        let schema: String = r.try_get(0)?;
        let table: String = r.try_get(1)?;
        let col: String = r.try_get(2)?;
        let ty: String = r.try_get(3)?;
        let est: f64 = r.try_get(4)?;
        let pkpos: Option<i32> = r.try_get(5)?;
        if out
            .last()
            .is_none_or(|t| t.schema != schema || t.name != table)
        {
            flush(&mut out, &mut pk);
            out.push(TableInfo {
                schema,
                name: table,
                columns: Vec::new(),
                primary_key: Vec::new(),
                integer_key: false,
                estimated_rows: (est >= 0.0).then_some(est),
                has_rowid: false,
            });
        }
        if let Some(p) = pkpos {
            pk.push((p, col.clone(), ty.clone()));
        }
        let examined = super::examine_column(DbKind::Postgres, &ty, &col);
        out.last_mut()
            .expect("pushed above")
            .columns
            .push(super::ColumnInfo {
                name: col,
                data_type: ty,
                examined,
            });
    }
    flush(&mut out, &mut pk);
    Ok(out)
}

pub(super) async fn measure(
    pool: &PgPool,
    info: &TableInfo,
    wm: Option<&str>,
) -> Result<(u64, Option<String>), ReadError> {
    let q = |c: &str| super::quote_ident(DbKind::Postgres, c);
    let max = wm
        .map(|w| format!("max({})::text", q(w)))
        .unwrap_or_else(|| "NULL::text".into());
    let sql = format!(
        "SELECT count(*)::int8, {max} FROM {}",
        qualified(DbKind::Postgres, info)
    );
    let (n, m): (i64, Option<String>) = sqlx::query_as(&sql).fetch_one(pool).await?;
    Ok((n as u64, m))
}

pub(super) async fn sample_mode(
    pool: &PgPool,
    info: &TableInfo,
    n: u64,
) -> Result<ReadMode, ReadError> {
    let tbl = qualified(DbKind::Postgres, info);
    let est = match info.estimated_rows {
        Some(e) => e,
        None => {
            // Never analysed: a bounded count tells small from large; size gives a rough estimate.
            let small: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*)::int8 FROM (SELECT 1 FROM {tbl} LIMIT {}) s",
                2 * n + 1
            ))
            .fetch_one(pool)
            .await?;
            if small as u64 <= 2 * n {
                return Ok(ReadMode::Limit(n));
            }
            let lit = quote_literal(DbKind::Postgres, &tbl);
            let bytes: i64 =
                sqlx::query_scalar(&format!("SELECT pg_relation_size({lit}::regclass)::int8"))
                    .fetch_one(pool)
                    .await?;
            (bytes as f64 / 100.0).max(2.0 * n as f64 + 1.0)
        }
    };
    if est <= 2.0 * n as f64 {
        return Ok(ReadMode::Limit(n));
    }
    let pct = (100.0 * n as f64 / est).min(100.0);
    // BERNOULLI picks single rows (best spread); SYSTEM picks whole pages (cheap on huge tables).
    let method = if est > 5_000_000.0 {
        "SYSTEM"
    } else {
        "BERNOULLI"
    };
    Ok(ReadMode::TableSample(method, pct, n))
}

/// Read the rows of `plan` through `COPY … TO STDOUT`, feeding them to `f`.
///
/// The socket is read on a task of its own (on the runtime's workers) that
/// gathers the server's one-message-per-row stream into batches of whole
/// kilobytes and hands them over a small bounded channel, while this future
/// decodes and scans the previous batch: the server streams while the rows
/// are scanned, instead of waiting for each batch to be scanned. The channel
/// bounds memory (a few batches). If this future is dropped (timeout) or
/// fails, the reader sees the channel close and the connection is closed, not
/// returned to the pool mid-COPY; a read error reaches the caller as is (so a
/// lost connection is still retried by the caller).
pub(super) async fn read(
    conn: PoolConnection<Postgres>,
    info: &TableInfo,
    plan: &ReadPlan,
    f: &mut RowFn<'_>,
) -> Result<u64, ReadError> {
    let sql = copy_sql(info, plan)?;
    let ncols = plan.columns.len();
    let want_key = plan.key.is_some();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, sqlx::Error>>(IN_FLIGHT);
    let reader = tokio::spawn(copy_batches(conn, sql, tx, Default::default()));
    let mut rows = 0u64;
    while let Some(batch) = rx.recv().await {
        // Batches are whole lines (copy_batches), the last one included.
        let batch = batch?;
        let used = lines(&batch, ncols, want_key, f, &mut rows);
        debug_assert_eq!(used, batch.len());
    }
    // The channel closed: the reader ended; did it reach the end of the data?
    let complete = reader
        .await
        .map_err(|e| ReadError::Other(format!("the COPY reader failed: {e}")))?;
    if !complete {
        return Err(ReadError::Other("the COPY stream ended early".into()));
    }
    Ok(rows)
}

/// [`read`] with one scanning thread per function of `workers`: batches of
/// whole lines go to whichever thread is free, each row with its ordinal
/// (batch number << 32 | row in batch) so that scanners that each saw part of
/// the rows can be merged as if one had seen them all. Called outside the
/// runtime (the threads block on the channel); past `guard`, the reader is
/// told to stop and the connection is closed.
pub(super) fn read_parallel(
    rt: &tokio::runtime::Handle,
    conn: PoolConnection<Postgres>,
    info: &TableInfo,
    plan: &ReadPlan,
    workers: &mut [impl OrderedRowFn],
    guard: Duration,
    timeout_secs: u64,
) -> Result<u64, ReadError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::RecvTimeoutError;
    let sql = copy_sql(info, plan)?;
    let ncols = plan.columns.len();
    let want_key = plan.key.is_some();
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT * workers.len().max(1));
    let cancel = Arc::new(tokio::sync::Notify::new());
    let reader = rt.spawn(copy_batches(conn, sql, tx, cancel.clone()));
    // The receiver and the next batch number, taken together.
    let next = std::sync::Mutex::new((rx, 0u64));
    let rows = AtomicU64::new(0);
    let failed: std::sync::Mutex<Option<sqlx::Error>> = Default::default();
    let deadline = std::time::Instant::now() + guard;
    let timed_out = std::thread::scope(|s| {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        for f in workers.iter_mut() {
            let (next, rows, failed, done_tx) = (&next, &rows, &failed, done_tx.clone());
            s.spawn(move || {
                loop {
                    let (batch, seq) = {
                        let mut g = next.lock().unwrap_or_else(|p| p.into_inner());
                        match g.0.blocking_recv() {
                            Some(b) => {
                                g.1 += 1;
                                (b, g.1 - 1)
                            }
                            None => break,
                        }
                    };
                    match batch {
                        Ok(buf) => {
                            let mut ordinal = seq << 32;
                            let mut n = 0;
                            lines(
                                &buf,
                                ncols,
                                want_key,
                                &mut |cells, key| {
                                    f(ordinal, cells, key);
                                    ordinal += 1;
                                },
                                &mut n,
                            );
                            rows.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            break;
                        }
                    }
                }
                let _ = done_tx.send(());
            });
        }
        drop(done_tx);
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match done_rx.recv_timeout(left) {
                Ok(()) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) if !timed_out => {
                    // The reader stops and closes the connection; the channel
                    // then closes and the threads end.
                    timed_out = true;
                    cancel.notify_one();
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = done_rx.recv();
                }
            }
        }
        timed_out
    });
    // No receiver: a reader still sending ends (and closes its connection).
    drop(next);
    let complete = rt
        .block_on(reader)
        .map_err(|e| ReadError::Other(format!("the COPY reader failed: {e}")))?;
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e.into());
    }
    if timed_out {
        return Err(ReadError::Timeout(timeout_secs));
    }
    if !complete {
        return Err(ReadError::Other("the COPY stream ended early".into()));
    }
    Ok(rows.into_inner())
}

/// Batches of COPY data in flight between the socket reader and the scanner.
const IN_FLIGHT: usize = 4;

/// The socket side of [`read`]: run `sql` and send its data in batches of at
/// least [`BATCH`] bytes. True when the data ended normally.
async fn copy_batches(
    mut conn: PoolConnection<Postgres>,
    sql: String,
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, sqlx::Error>>,
    cancel: Arc<tokio::sync::Notify>,
) -> bool {
    let res: Result<bool, sqlx::Error> = async {
        // The server may wait (a lock) before it starts sending.
        let mut stream = tokio::select! {
            s = conn.copy_out_raw(&sql) => s?,
            _ = tx.closed() => return Ok(false),
            _ = cancel.notified() => return Ok(false),
        };
        let mut buf: Vec<u8> = Vec::with_capacity(BATCH + 4096);
        loop {
            tokio::select! {
                // The scanner gave up (timeout, error): stop reading.
                _ = tx.closed() => return Ok(false),
                _ = cancel.notified() => return Ok(false),
                next = stream.try_next() => match next? {
                    Some(chunk) => {
                        buf.extend_from_slice(&chunk);
                        // Whole lines only, so batches can be scanned apart.
                        if buf.len() >= BATCH {
                            if let Some(nl) = memchr::memrchr(b'\n', &buf) {
                                let mut next = Vec::with_capacity(BATCH + 4096);
                                next.extend_from_slice(&buf[nl + 1..]);
                                buf.truncate(nl + 1);
                                let full = std::mem::replace(&mut buf, next);
                                if tx.send(Ok(full)).await.is_err() {
                                    return Ok(false);
                                }
                            }
                        }
                    }
                    None => break,
                },
            }
        }
        if !buf.is_empty() {
            if buf.last() != Some(&b'\n') {
                buf.push(b'\n');
            }
            if tx.send(Ok(buf)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
    .await;
    match res {
        Ok(true) => true, // the connection goes back to the pool, COPY finished
        Ok(false) => {
            conn.close_on_drop();
            false
        }
        Err(e) => {
            conn.close_on_drop();
            let _ = tx.send(Err(e)).await;
            false
        }
    }
}

/// Bytes of COPY text decoded at once.
const BATCH: usize = 64 * 1024;

fn copy_sql(info: &TableInfo, plan: &ReadPlan) -> Result<String, ReadError> {
    let mut sel = plan.columns.join(", ");
    if let Some(k) = &plan.key {
        sel.push_str(", ");
        sel.push_str(k);
    }
    let mut sql = format!(
        "COPY (SELECT {sel} FROM {}",
        qualified(DbKind::Postgres, info)
    );
    let mut limit = None;
    match &plan.mode {
        ReadMode::Full => {}
        ReadMode::Limit(n) => limit = Some(*n),
        ReadMode::TableSample(method, pct, n) => {
            sql.push_str(&format!(" TABLESAMPLE {method} ({pct:.6})"));
            limit = Some(2 * n);
        }
        other => {
            return Err(ReadError::Other(format!(
                "unsupported read mode for PostgreSQL: {other:?}"
            )))
        }
    }
    let mut conds: Vec<String> = plan.range_cond().into_iter().collect();
    if let Some((col, lit, ty)) = &plan.since {
        conds.push(format!(
            "{col} > CAST({} AS {ty})",
            quote_literal(DbKind::Postgres, lit)
        ));
    }
    if !conds.is_empty() {
        sql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
    }
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    sql.push_str(") TO STDOUT");
    Ok(sql)
}

/// Feed every complete line of `buf` to `f`; returns the bytes consumed.
fn lines(buf: &[u8], ncols: usize, want_key: bool, f: &mut RowFn<'_>, rows: &mut u64) -> usize {
    let mut start = 0;
    // Whole lines valid UTF-8 at once (one fast pass, not one per field): the
    // fields, cut at ASCII tabs and newlines, are then valid too.
    let whole = memchr::memrchr(b'\n', buf).map_or(0, |p| p + 1);
    let text = std::str::from_utf8(&buf[..whole]).ok();
    // The field at `a..b` as text when the batch is (slicing at ASCII bytes
    // is always on a character boundary).
    let field = |a: usize, b: usize| decode_field(&buf[a..b], text.map(|t| &t[a..b]));
    // Two vectors for all the rows of the batch, not two per row.
    let mut fields: Vec<Option<Cow<'_, str>>> = Vec::new();
    let mut spare: Vec<Option<&'static str>> = Vec::new();
    for nl in memchr::memchr_iter(b'\n', &buf[..whole]) {
        fields.clear();
        let mut from = start;
        for tab in memchr::memchr_iter(b'\t', &buf[start..nl]) {
            fields.push(field(from, start + tab));
            from = start + tab + 1;
        }
        fields.push(field(from, nl));
        start = nl + 1;
        let mut cells = recycle(std::mem::take(&mut spare));
        cells.extend(fields.iter().take(ncols).map(|c| c.as_deref()));
        let key = if want_key {
            fields.get(ncols).and_then(|k| k.as_deref())
        } else {
            None
        };
        f(&cells, key);
        spare = recycle(cells);
        *rows += 1;
    }
    start
}

/// An empty vector with `v`'s allocation, for borrows of another lifetime.
fn recycle<'b>(mut v: Vec<Option<&str>>) -> Vec<Option<&'b str>> {
    v.clear();
    v.into_iter().map(|_| None).collect()
}

/// Decode one field of COPY text format: `\N` is NULL; backslash escapes.
/// `text`: the same bytes as `&str` when the caller already checked them.
fn decode_field<'a>(b: &'a [u8], text: Option<&'a str>) -> Option<Cow<'a, str>> {
    if b == b"\\N" {
        return None;
    }
    if memchr::memchr(b'\\', b).is_none() {
        if let Some(t) = text {
            return Some(Cow::Borrowed(t));
        }
        // Valid UTF-8 (the common case) is checked much faster than decoded lossily.
        return Some(match std::str::from_utf8(b) {
            Ok(v) => Cow::Borrowed(v),
            Err(_) => String::from_utf8_lossy(b),
        });
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                let mut k = 0;
                while k < 2 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + (b[i] - b'0') as u32;
                    i += 1;
                    k += 1;
                }
                out.push(v as u8);
            }
            b'x' if i < b.len() && b[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut k = 0;
                while k < 2 && i < b.len() && b[i].is_ascii_hexdigit() {
                    v = v * 16 + (b[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    k += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_copy_text_fields() {
        assert_eq!(decode_field(b"\\N", None), None);
        assert_eq!(decode_field(b"plain", None).as_deref(), Some("plain"));
        assert_eq!(
            decode_field(b"a\\tb\\nc\\\\d", None).as_deref(),
            Some("a\tb\nc\\d")
        );
        assert_eq!(decode_field(b"\\101\\x42", None).as_deref(), Some("AB"));
        assert_eq!(
            decode_field("学生\\t1".as_bytes(), None).as_deref(),
            Some("学生\t1")
        );
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut got: Vec<(Vec<Option<String>>, Option<String>)> = Vec::new();
        let mut f = |c: &[Option<&str>], k: Option<&str>| {
            got.push((
                c.iter().map(|x| x.map(str::to_string)).collect(),
                k.map(str::to_string),
            ))
        };
        let mut rows = 0;
        let buf = b"a\t\\N\t1\nb\tc\t2\npartial";
        let used = lines(buf, 2, true, &mut f, &mut rows);
        assert_eq!(&buf[used..], b"partial");
        assert_eq!(rows, 2);
        assert_eq!(got[0], (vec![Some("a".into()), None], Some("1".into())));
        assert_eq!(got[1].1.as_deref(), Some("2"));
    }
}
