//! Parquet objects with ranged reads: the footer first, then only the
//! columns that can hold personal information, and only the row groups in
//! which at least one of those columns has a non-null value (from the
//! footer statistics). Values are rendered as text for the table searcher.

use super::ObjectSource;
use crate::detect::Engine;
use crate::finding::{Finding, Location};
use crate::scan::table::TableScanner;
use crate::source::files::pages;
use crate::source::files::table::{projectable_roots, PARQUET_BATCH_ROWS};
use crate::source::{ScanOptions, UnitError, UnitStats};
use arrow::array::{Array, AsArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::DataType;
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{
    AsyncFileReader, ParquetObjectReader, ParquetRecordBatchStreamBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::ParquetMetaData;
use std::ops::Range;
use std::sync::Arc;

/// Row groups in which some projected root column is not entirely null.
fn useful_row_groups(md: &ParquetMetaData, roots: &[usize]) -> Vec<usize> {
    let schema = md.file_metadata().schema_descr();
    (0..md.num_row_groups())
        .filter(|&i| {
            let rg = md.row_group(i);
            let rows = rg.num_rows() as u64;
            rg.columns().iter().enumerate().any(|(leaf, c)| {
                roots.contains(&schema.get_column_root_idx(leaf))
                    && c.statistics()
                        .and_then(|s| s.null_count_opt())
                        .is_none_or(|n| n < rows)
            })
        })
        .collect()
}

/// The object reader parquet-rs fetches column chunks through: each fetched
/// chunk of `chunks` has its page headers checked (files::pages) before the
/// bytes are handed on, so the check costs no extra request.
struct CheckedPages {
    inner: ParquetObjectReader,
    chunks: Vec<pages::Chunk>,
    max_page_bytes: usize,
}

impl CheckedPages {
    fn check(&self, range: &Range<u64>, bytes: &Bytes) -> parquet::errors::Result<()> {
        for c in self
            .chunks
            .iter()
            .filter(|c| c.start == range.start && c.len == range.end - range.start)
        {
            pages::check_chunk(c, self.max_page_bytes, |start, n| {
                let at = (start - range.start) as usize;
                bytes
                    .get(at..at + n)
                    .map(|_| bytes.slice(at..at + n))
                    .ok_or_else(|| format!("short read of {} bytes at {start}", bytes.len()))
            })
            .map_err(parquet::errors::ParquetError::General)?;
        }
        Ok(())
    }
}

impl AsyncFileReader for CheckedPages {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let b = self.inner.get_bytes(range.clone()).await?;
            self.check(&range, &b)?;
            Ok(b)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let got = self.inner.get_byte_ranges(ranges.clone()).await?;
            for (r, b) in ranges.iter().zip(&got) {
                self.check(r, b)?;
            }
            Ok(got)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        self.inner.get_metadata(options)
    }
}

pub(super) fn scan(
    src: &ObjectSource,
    key: &str,
    size: u64,
    engine: &Engine,
    opts: &ScanOptions,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, UnitError> {
    let path = ObjPath::from(key);
    let mut reader = ParquetObjectReader::new(src.store.clone(), path.clone()).with_file_size(size);
    // A panic inside parquet-rs on malformed pages (see files::guard_decoder)
    // becomes this object's error; the scan goes on with the rest.
    let decode = || -> Result<(Vec<Finding>, UnitStats), String> {
        // Two small ranged reads: the footer is checked before parquet-rs trusts
        // its list lengths (see files::footer).
        crate::source::files::footer::check_file_footer(size, |start, n| {
            src.rt
                .block_on(src.store.get_range(&path, start..start + n as u64))
        })
        .map_err(|m| format!("corrupt Parquet: {m}"))?;
        src.rt.block_on(async {
            let meta = ArrowReaderMetadata::load_async(&mut reader, Default::default())
                .await
                .map_err(|e| format!("reading the Parquet footer: {e}"))?;
            let schema = meta.schema().clone();
            let max = src.readers.max_columns;
            if schema.fields().len() > max {
                return Err(format!(
                    "Parquet schema has {} columns, over the limit of {max} (max_columns)",
                    schema.fields().len()
                ));
            }
            let roots = projectable_roots(&schema);
            if roots.is_empty() {
                let skipped = Some("no columns that can hold personal information".to_string());
                return Ok((
                    Vec::new(),
                    UnitStats {
                        bytes: 0,
                        rows: 0,
                        skipped,
                    },
                ));
            }
            let md = meta.metadata().clone();
            let groups = useful_row_groups(&md, &roots);
            let descr = md.file_metadata().schema_descr();
            let chunks = pages::chunks(&md, size, &groups, |leaf| {
                roots.contains(&descr.get_column_root_idx(leaf))
            })
            .map_err(|m| format!("corrupt Parquet: {m}"))?;
            let checked = CheckedPages {
                inner: reader,
                chunks,
                max_page_bytes: src.readers.max_parquet_page_bytes,
            };
            let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(checked, meta);
            // Row numbers (1-based, file-wide) for row-level mode: start of each kept row group.
            let starts: Vec<(u64, u64)> = {
                let mut acc = 0u64;
                let mut all = Vec::new();
                for i in 0..md.num_row_groups() {
                    all.push((acc, md.row_group(i).num_rows() as u64));
                    acc += md.row_group(i).num_rows() as u64;
                }
                groups.iter().map(|&g| all[g]).collect()
            };
            let names: Vec<String> = roots
                .iter()
                .map(|&i| schema.field(i).name().clone())
                .collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots.clone());
            let mut stream = builder
                .with_projection(mask)
                .with_row_groups(groups)
                .with_batch_size(PARQUET_BATCH_ROWS)
                .build()
                .map_err(|e| format!("reading Parquet: {e}"))?;
            let base = Location {
                path: Some(key.to_string()),
                ..Default::default()
            };
            let mut scanner = TableScanner::new(engine, &src.target, base, &names, opts.rows);
            // Rendered as text exactly as the local-file reader does (Arrow cast to Utf8).
            let copts = CastOptions {
                safe: true,
                ..Default::default()
            };
            let (mut rg, mut rg_left, mut row_no) = (
                0usize,
                starts.first().map_or(0, |s| s.1),
                starts.first().map_or(0, |s| s.0),
            );
            let mut bytes = 0u64;
            while let Some(batch) = stream
                .try_next()
                .await
                .map_err(|e| format!("reading Parquet data: {e}"))?
            {
                bytes += batch.get_array_memory_size() as u64;
                let mut cols = Vec::with_capacity(batch.num_columns());
                for c in batch.columns() {
                    cols.push(match c.data_type() {
                        DataType::Utf8 => c.clone(),
                        _ => cast_with_options(c, &DataType::Utf8, &copts)
                            .map_err(|e| format!("rendering Parquet values: {e}"))?,
                    });
                }
                let strs: Vec<_> = cols.iter().map(|a| a.as_string::<i32>()).collect();
                let mut cells: Vec<Option<&str>> = Vec::with_capacity(strs.len());
                for r in 0..batch.num_rows() {
                    while rg_left == 0 && rg + 1 < starts.len() {
                        rg += 1;
                        row_no = starts[rg].0;
                        rg_left = starts[rg].1;
                    }
                    cells.clear();
                    cells.extend(strs.iter().map(|a| (!a.is_null(r)).then(|| a.value(r))));
                    row_no += 1;
                    rg_left = rg_left.saturating_sub(1);
                    let k = opts.rows.then(|| row_no.to_string());
                    scanner.add_row(&cells, k.as_deref());
                }
            }
            let rows = scanner.rows_scanned();
            Ok((
                scanner.finish(),
                UnitStats {
                    bytes,
                    rows,
                    skipped: None,
                },
            ))
        })
    };
    let res =
        crate::source::files::catch_decoder_panic(key, "Parquet", decode).unwrap_or_else(|| {
            Err("corrupt Parquet: the decoder failed on malformed data".to_string())
        });
    match res {
        Ok((findings, stats)) => {
            for f in findings {
                emit(f);
            }
            Ok(stats)
        }
        Err(msg) => {
            // Tell "deleted after listing" apart from a corrupt object.
            if let Err(e @ object_store::Error::NotFound { .. }) =
                src.rt.block_on(src.store.head(&path))
            {
                return Err(src.object_err(key, e));
            }
            Err(src.err(key, msg))
        }
    }
}
