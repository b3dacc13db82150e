//! `childguard findings export`: the stored findings as Parquet (for DuckDB
//! and Spark), CSV or JSON lines. Masked values and fingerprints only.
//! Streams page by page, so memory stays bounded by one page / row group.

use crate::store::{FindingFilter, Store, StoreError, StoredFinding};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::io::Write;
use std::sync::Arc;

/// Export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Parquet,
    Csv,
    Jsonl,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing export: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("writing csv: {0}")]
    Csv(#[from] csv::Error),
}

/// Findings per page read from the store (and per Parquet row group batch).
const PAGE: u64 = 10_000;

/// The Arrow schema of exported findings.
pub fn schema() -> Arc<Schema> {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let i = |n: &str| Field::new(n, DataType::Int64, true);
    let ts = |n: &str| {
        Field::new(
            n,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new("finding_id", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("unit_id", DataType::Utf8, false),
        s("path"),
        s("table"),
        s("column"),
        s("field"),
        i("line"),
        i("byte_offset"),
        Field::new("category", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("child", DataType::Boolean, true),
        Field::new("confidence", DataType::Float64, false),
        Field::new("masked", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, false),
        Field::new("sensitivity", DataType::Utf8, false),
        i("rows_scanned"),
        i("count"),
        i("child_count"),
        s("dataset"),
        ts("first_seen"),
        ts("last_seen"),
        i("first_run"),
        i("last_run"),
        ts("resolved_at"),
        Field::new("triage_status", DataType::Utf8, false),
        s("triage_comment"),
        s("triage_by"),
        ts("triage_at"),
    ]))
}

fn batch(items: &[StoredFinding]) -> Result<RecordBatch, ExportError> {
    let n = items.len();
    macro_rules! strings {
        ($f:expr) => {{
            let mut b = StringBuilder::with_capacity(n, n * 16);
            for x in items {
                b.append_option($f(x));
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    macro_rules! ints {
        ($f:expr) => {{
            let mut b = Int64Builder::with_capacity(n);
            for x in items {
                b.append_option($f(x));
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    macro_rules! times {
        ($f:expr) => {{
            let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
            for x in items {
                b.append_option($f(x).map(|t: chrono::DateTime<chrono::Utc>| t.timestamp_micros()));
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let u = |v: Option<u64>| v.map(|x| x as i64);
    let mut child = BooleanBuilder::with_capacity(n);
    let mut conf = Float64Builder::with_capacity(n);
    for x in items {
        child.append_option(x.finding.child);
        conf.append_value(x.finding.confidence);
    }
    let cols: Vec<ArrayRef> = vec![
        strings!(|x: &StoredFinding| Some(x.finding.finding_id.clone())),
        strings!(|x: &StoredFinding| Some(x.finding.target.clone())),
        strings!(|x: &StoredFinding| Some(x.unit_id.clone())),
        strings!(|x: &StoredFinding| x.finding.location.path.clone()),
        strings!(|x: &StoredFinding| x.finding.location.table.clone()),
        strings!(|x: &StoredFinding| x.finding.location.column.clone()),
        strings!(|x: &StoredFinding| x.finding.location.field.clone()),
        ints!(|x: &StoredFinding| u(x.finding.location.line)),
        ints!(|x: &StoredFinding| u(x.finding.location.byte_offset)),
        strings!(|x: &StoredFinding| Some(x.finding.category.to_string())),
        strings!(|x: &StoredFinding| Some(x.finding.rule.clone())),
        Arc::new(child.finish()),
        Arc::new(conf.finish()),
        strings!(|x: &StoredFinding| Some(x.finding.masked.clone())),
        strings!(|x: &StoredFinding| Some(x.finding.fingerprint.clone())),
        strings!(|x: &StoredFinding| Some(sens(x.finding.sensitivity).to_string())),
        ints!(|x: &StoredFinding| u(x.finding.rows_scanned)),
        ints!(|x: &StoredFinding| u(x.finding.count)),
        ints!(|x: &StoredFinding| u(x.finding.child_count)),
        strings!(|x: &StoredFinding| x.dataset.clone()),
        times!(|x: &StoredFinding| Some(x.first_seen)),
        times!(|x: &StoredFinding| Some(x.last_seen)),
        ints!(|x: &StoredFinding| Some(x.first_run)),
        ints!(|x: &StoredFinding| Some(x.last_run)),
        times!(|x: &StoredFinding| x.resolved_at),
        strings!(|x: &StoredFinding| Some(x.triage.status.to_string())),
        strings!(|x: &StoredFinding| x.triage.comment.clone()),
        strings!(|x: &StoredFinding| x.triage.by.clone()),
        times!(|x: &StoredFinding| x.triage.at),
    ];
    Ok(RecordBatch::try_new(schema(), cols)?)
}

fn sens(s: crate::finding::Sensitivity) -> &'static str {
    match s {
        crate::finding::Sensitivity::Low => "low",
        crate::finding::Sensitivity::Medium => "medium",
        crate::finding::Sensitivity::High => "high",
    }
}

/// Export every finding matching `filter` (its paging fields are ignored).
/// Returns the number of findings written.
pub async fn export_findings<W: Write + Send>(
    store: &dyn Store,
    filter: &FindingFilter,
    format: ExportFormat,
    out: W,
) -> Result<u64, ExportError> {
    let mut f = filter.clone();
    f.offset = None;
    f.after = None;
    f.limit = PAGE;
    let mut n = 0u64;
    match format {
        ExportFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(out, schema(), Some(props))?;
            loop {
                let page = store.findings(&f).await?;
                if !page.items.is_empty() {
                    w.write(&batch(&page.items)?)?;
                    n += page.items.len() as u64;
                }
                match page.next_after {
                    Some(a) => f.after = Some(a),
                    None => break,
                }
            }
            w.close()?;
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let names: Vec<String> = schema().fields().iter().map(|f| f.name().clone()).collect();
            w.write_record(&names)?;
            loop {
                let page = store.findings(&f).await?;
                for x in &page.items {
                    let fi = &x.finding;
                    let l = &fi.location;
                    let o = |v: &Option<String>| v.clone().unwrap_or_default();
                    let on = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
                    let ot = |v: Option<chrono::DateTime<chrono::Utc>>| {
                        v.map(|t| t.to_rfc3339()).unwrap_or_default()
                    };
                    w.write_record([
                        fi.finding_id.clone(),
                        fi.target.clone(),
                        x.unit_id.clone(),
                        o(&l.path),
                        o(&l.table),
                        o(&l.column),
                        o(&l.field),
                        on(l.line),
                        on(l.byte_offset),
                        fi.category.to_string(),
                        fi.rule.clone(),
                        fi.child.map(|c| c.to_string()).unwrap_or_default(),
                        fi.confidence.to_string(),
                        fi.masked.clone(),
                        fi.fingerprint.clone(),
                        sens(fi.sensitivity).into(),
                        on(fi.rows_scanned),
                        on(fi.count),
                        on(fi.child_count),
                        o(&x.dataset),
                        ot(Some(x.first_seen)),
                        ot(Some(x.last_seen)),
                        x.first_run.to_string(),
                        x.last_run.to_string(),
                        ot(x.resolved_at),
                        x.triage.status.to_string(),
                        o(&x.triage.comment),
                        o(&x.triage.by),
                        ot(x.triage.at),
                    ])?;
                    n += 1;
                }
                match page.next_after {
                    Some(a) => f.after = Some(a),
                    None => break,
                }
            }
            w.flush()?;
        }
        ExportFormat::Jsonl => {
            let mut w = std::io::BufWriter::new(out);
            loop {
                let page = store.findings(&f).await?;
                for x in &page.items {
                    serde_json::to_writer(&mut w, x).map_err(std::io::Error::other)?;
                    w.write_all(b"\n")?;
                    n += 1;
                }
                match page.next_after {
                    Some(a) => f.after = Some(a),
                    None => break,
                }
            }
            w.flush()?;
        }
    }
    Ok(n)
}
