//! Tables in files: CSV/TSV (header row → column names) and Parquet (row
//! group by row group, projected to columns that can hold PI, cast to
//! strings), both fed to [`TableScanner`]: one finding per column and category.

use super::{FileError, UnitCtx};
use crate::finding::{Finding, Location};
use crate::scan::table::TableScanner;
use crate::source::UnitStats;
use arrow::array::{Array, AsArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;
use std::io::Read;

/// Rows per Arrow batch when reading Parquet (bounds memory per column batch).
pub const PARQUET_BATCH_ROWS: usize = 8192;

fn base(ctx: &UnitCtx<'_>) -> Location {
    Location {
        path: Some(ctx.path.to_string()),
        ..Default::default()
    }
}

/// Err when a table is wider than `max_columns`.
fn check_columns(ctx: &UnitCtx<'_>, n: usize, what: &str) -> Result<(), FileError> {
    if n > ctx.cfg.max_columns {
        return Err(FileError::limit(
            ctx.path,
            format!(
                "{what} has {n} columns, over the limit of {} (max_columns)",
                ctx.cfg.max_columns
            ),
        ));
    }
    Ok(())
}

/// Scan delimited text (already decoded to UTF-8) with a header row.
pub fn scan_delimited(
    ctx: &UnitCtx<'_>,
    reader: impl Read,
    delimiter: u8,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .quoting(delimiter != b'\t')
        .from_reader(reader);
    let corrupt = |e: csv::Error| FileError::from_csv(ctx.path, e);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(corrupt)?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = h.trim().trim_start_matches('\u{feff}');
            if h.is_empty() {
                format!("column_{}", i + 1)
            } else {
                h.to_string()
            }
        })
        .collect();
    let cfg = ctx.cfg;
    check_columns(ctx, headers.len(), "CSV header")?;
    let mut ts = TableScanner::new(ctx.engine, ctx.target, base(ctx), &headers, ctx.opts.rows);
    let mut rec = csv::StringRecord::new();
    let mut n: u64 = 0;
    let result = loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {
                n += 1;
                let line = rec.position().map_or(n + 1, |p| p.line());
                if rec.len() > cfg.max_columns {
                    break check_columns(ctx, rec.len(), &format!("CSV record at line {line}"));
                }
                if rec.as_slice().len() > cfg.max_line_bytes {
                    break Err(FileError::limit(
                        ctx.path,
                        format!(
                            "CSV record at line {line} is longer than {} bytes (max_line_bytes)",
                            cfg.max_line_bytes
                        ),
                    ));
                }
                let cells: Vec<Option<&str>> = rec.iter().map(Some).collect();
                // Row key: the record's line number (header is line 1).
                let key = ctx
                    .opts
                    .rows
                    .then(|| rec.position().map_or(n + 1, |p| p.line()).to_string());
                ts.add_row(&cells, key.as_deref());
            }
            Ok(false) => break Ok(()),
            Err(e) => break Err(corrupt(e)),
        }
    };
    let rows = ts.rows_scanned();
    for f in ts.finish() {
        emit(f);
    }
    result.map(|_| UnitStats {
        rows,
        ..Default::default()
    })
}

/// Whether a Parquet/Arrow column type is read (cast to text) when scanning tables.
/// Indices of the root columns of `schema` that are read ([`projectable`]).
pub fn projectable_roots(schema: &arrow::datatypes::Schema) -> Vec<usize> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| projectable(f.data_type()))
        .map(|(i, _)| i)
        .collect()
}

pub fn projectable(t: &DataType) -> bool {
    use DataType::*;
    match t {
        Utf8
        | LargeUtf8
        | Utf8View
        | Binary
        | LargeBinary
        | BinaryView
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Date32
        | Date64
        | Timestamp(_, _)
        | Decimal128(_, _)
        | Decimal256(_, _) => true,
        Dictionary(_, v) => projectable(v),
        _ => false,
    }
}

/// Scan a Parquet file from any [`ChunkReader`] (a `File`, `bytes::Bytes`
/// fetched from an object store, ...). Row keys for `--rows` are 1-based row
/// numbers. Nested and floating-point columns are not read.
pub fn scan_parquet<R: ChunkReader + 'static>(
    ctx: &UnitCtx<'_>,
    reader: R,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    super::guard_decoder(ctx.path, "Parquet", || {
        scan_parquet_unguarded(ctx, reader, emit)
    })
}

fn scan_parquet_unguarded<R: ChunkReader + 'static>(
    ctx: &UnitCtx<'_>,
    reader: R,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    let corrupt = |e: parquet::errors::ParquetError| FileError::corrupt(ctx.path, "Parquet", e);
    super::footer::check_file_footer(reader.len(), |start, n| reader.get_bytes(start, n)).map_err(
        |message| FileError::Corrupt {
            path: ctx.path.to_string(),
            format: "Parquet",
            message,
        },
    )?;
    let meta = ArrowReaderMetadata::load(&reader, Default::default()).map_err(corrupt)?;
    let schema = meta.schema().clone();
    check_columns(ctx, schema.fields().len(), "Parquet schema")?;
    let indices = projectable_roots(&schema);
    let names: Vec<String> = indices
        .iter()
        .map(|&i| schema.field(i).name().clone())
        .collect();
    if indices.is_empty() {
        return Ok(UnitStats {
            rows: 0,
            ..Default::default()
        });
    }
    // Every page header of the chunks to be read is checked before parquet-rs
    // trusts its sizes (see files::pages): one small read per page.
    let md = meta.metadata();
    let descr = md.file_metadata().schema_descr();
    let groups: Vec<usize> = (0..md.num_row_groups()).collect();
    let page_err = |message: String| FileError::Corrupt {
        path: ctx.path.to_string(),
        format: "Parquet",
        message,
    };
    for chunk in super::pages::chunks(md, reader.len(), &groups, |leaf| {
        indices.contains(&descr.get_column_root_idx(leaf))
    })
    .map_err(page_err)?
    {
        super::pages::check_chunk(&chunk, ctx.cfg.max_parquet_page_bytes, |start, n| {
            reader.get_bytes(start, n)
        })
        .map_err(page_err)?;
    }
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, meta);
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
    let batches = builder
        .with_projection(mask)
        .with_batch_size(PARQUET_BATCH_ROWS)
        .build()
        .map_err(corrupt)?;
    let mut ts = TableScanner::new(ctx.engine, ctx.target, base(ctx), &names, ctx.opts.rows);
    let opts = CastOptions {
        safe: true,
        ..Default::default()
    };
    let mut row: u64 = 0;
    let mut result = Ok(());
    for batch in batches {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                result = Err(FileError::corrupt(ctx.path, "Parquet", e));
                break;
            }
        };
        let mut cols = Vec::with_capacity(batch.num_columns());
        for c in batch.columns() {
            let s = match c.data_type() {
                DataType::Utf8 => c.clone(),
                _ => match cast_with_options(c, &DataType::Utf8, &opts) {
                    Ok(a) => a,
                    Err(e) => {
                        result = Err(FileError::corrupt(ctx.path, "Parquet", e));
                        break;
                    }
                },
            };
            cols.push(s);
        }
        if result.is_err() {
            break;
        }
        let strs: Vec<_> = cols.iter().map(|a| a.as_string::<i32>()).collect();
        let mut cells: Vec<Option<&str>> = Vec::with_capacity(strs.len());
        for r in 0..batch.num_rows() {
            row += 1;
            cells.clear();
            cells.extend(strs.iter().map(|a| (!a.is_null(r)).then(|| a.value(r))));
            let key = ctx.opts.rows.then(|| row.to_string());
            ts.add_row(&cells, key.as_deref());
        }
    }
    let rows = ts.rows_scanned();
    for f in ts.finish() {
        emit(f);
    }
    result.map(|_| UnitStats {
        rows,
        ..Default::default()
    })
}
