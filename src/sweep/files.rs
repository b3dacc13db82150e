//! File and object executor: Parquet, CSV, JSON lines and logs, on local disk
//! or an S3-compatible object store.
//!
//! A file is rewritten without its expired rows (or with anonymized
//! columns) into a temporary file/object, which is re-read and verified
//! (rows = before − removed, schema unchanged, nothing left that matches),
//! then swapped in atomically: locally fsync + rename + fsync of the
//! directory; on an object store a conditional put with `If-Match` on the
//! ETag read at the start, so an object changed since it was read is never
//! overwritten (the unit fails and is retried on resume). Whole files and
//! objects (rotated logs, `object_age` retention, purge) are deleted.
//!
//! Rows whose time cannot be read are kept (never delete what cannot be
//! dated); their number is reported.

use super::journal::{JournalEntry, SweepJournal};
use super::SweepError;
use crate::config::inventory::AnonOp;
use crate::fingerprint::Fingerprinter;
use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use futures::TryStreamExt;
use object_store::{
    path::Path as ObjPath, ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Record formats understood row by row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Parquet,
    Csv,
    Jsonl,
    Log,
    /// Compressed or unknown: only whole-file disposal.
    Opaque,
}

impl Format {
    pub fn of(name: &str) -> Format {
        let n = name.to_ascii_lowercase();
        if n.ends_with(".gz") || n.ends_with(".zst") || n.ends_with(".bz2") || n.ends_with(".xz") {
            Format::Opaque
        } else if n.ends_with(".parquet") {
            Format::Parquet
        } else if n.ends_with(".csv") {
            Format::Csv
        } else if n.ends_with(".jsonl") || n.ends_with(".ndjson") || n.ends_with(".json") {
            Format::Jsonl
        } else if n.ends_with(".log") || n.ends_with(".txt") || n.contains(".log.") {
            Format::Log
        } else {
            Format::Opaque
        }
    }
}

/// Which rows of a file are disposed of.
#[derive(Debug, Clone)]
pub enum RowPred {
    /// Time field (log lines: the leading timestamp) strictly before the cutoff.
    Expired {
        field: String,
        cutoff: NaiveDateTime,
    },
    /// Subject field equals the key (log lines: contain the key as a token).
    Subject { field: String, key: String },
}

/// Delete rows or anonymize their fields (and blank the time field).
#[derive(Debug, Clone)]
pub enum RowAction {
    Delete,
    Anonymize {
        ops: BTreeMap<String, AnonOp>,
        clock: String,
    },
}

/// Where files live.
#[derive(Clone)]
pub enum Location {
    Local(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        bucket: String,
        prefix: String,
    },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "Local({})", p.display()),
            Location::S3 { bucket, prefix, .. } => write!(f, "S3({bucket}/{prefix})"),
        }
    }
}

/// A file or object found at plan time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileMeta {
    /// Relative path (local) or object key.
    pub key: String,
    pub size: u64,
    pub modified: NaiveDateTime,
    /// ETag (objects) or `mtime:size` (files).
    pub version: String,
}

fn io(path: &Path, e: std::io::Error) -> SweepError {
    SweepError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

fn objerr(key: &str, e: object_store::Error) -> SweepError {
    SweepError::Object {
        key: key.to_string(),
        message: e.to_string(),
    }
}

impl Location {
    /// `s3://bucket/prefix` (credentials and endpoint from the AWS_* environment) or a local path.
    pub fn parse(source: &str) -> Result<Location, SweepError> {
        if let Some(rest) = source.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .build()
                .map_err(|e| objerr(source, e))?;
            // Reads (the object, its ETag) are retried on transport errors
            // object_store gives up on at once; writes stay conditional.
            let store = crate::source::objstore::retry::RetryReads::new(
                Arc::new(store),
                5,
                std::time::Duration::from_millis(500),
                std::time::Duration::from_secs(8),
            );
            Ok(Location::S3 {
                store: Arc::new(store),
                bucket: bucket.into(),
                prefix: prefix.trim_end_matches('/').into(),
            })
        } else {
            Ok(Location::Local(PathBuf::from(
                source.strip_prefix("file://").unwrap_or(source),
            )))
        }
    }

    fn full_key(&self, key: &str) -> String {
        match self {
            Location::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{key}"),
            _ => key.to_string(),
        }
    }

    /// Files/objects whose relative path matches one of `globs` (all when empty).
    pub async fn list(&self, globs: &[String]) -> Result<Vec<FileMeta>, SweepError> {
        let mut b = globset::GlobSetBuilder::new();
        for g in globs {
            b.add(
                globset::Glob::new(g).map_err(|e| SweepError::Plan(format!("match `{g}`: {e}")))?,
            );
        }
        let set = b.build().map_err(|e| SweepError::Plan(e.to_string()))?;
        let keep =
            |k: &str| !k.contains(".childguard-tmp") && (globs.is_empty() || set.is_match(k));
        let mut out = Vec::new();
        match self {
            Location::Local(root) => {
                if root.is_file() {
                    let m = std::fs::metadata(root).map_err(|e| io(root, e))?;
                    out.push(local_meta(
                        root.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned(),
                        &m,
                    ));
                    return Ok(out);
                }
                let mut stack = vec![root.clone()];
                while let Some(dir) = stack.pop() {
                    for ent in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
                        let ent = ent.map_err(|e| io(&dir, e))?;
                        let p = ent.path();
                        let m = ent.metadata().map_err(|e| io(&p, e))?;
                        if m.is_dir() {
                            stack.push(p);
                        } else if m.is_file() {
                            let rel = p
                                .strip_prefix(root)
                                .unwrap_or(&p)
                                .to_string_lossy()
                                .into_owned();
                            if keep(&rel) {
                                out.push(local_meta(rel, &m));
                            }
                        }
                    }
                }
            }
            Location::S3 { store, prefix, .. } => {
                let pfx = if prefix.is_empty() {
                    None
                } else {
                    Some(ObjPath::from(prefix.as_str()))
                };
                let metas: Vec<object_store::ObjectMeta> = store
                    .list(pfx.as_ref())
                    .try_collect()
                    .await
                    .map_err(|e| objerr(prefix, e))?;
                for m in metas {
                    let full = m.location.to_string();
                    let rel = if prefix.is_empty() {
                        full.clone()
                    } else {
                        full.strip_prefix(&format!("{prefix}/"))
                            .unwrap_or(&full)
                            .to_string()
                    };
                    if keep(&rel) {
                        out.push(FileMeta {
                            key: rel,
                            size: m.size,
                            modified: m.last_modified.naive_utc(),
                            version: m.e_tag.unwrap_or_default(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Content and current version; `None` when the file/object is gone.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, String, Option<String>)>, SweepError> {
        match self {
            Location::Local(root) => {
                let p = local_path(root, key);
                match std::fs::read(&p) {
                    Ok(b) => {
                        let m = std::fs::metadata(&p).map_err(|e| io(&p, e))?;
                        Ok(Some((
                            Bytes::from(b),
                            local_meta(key.into(), &m).version,
                            None,
                        )))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&p, e)),
                }
            }
            Location::S3 { store, .. } => {
                let k = self.full_key(key);
                match store.get(&ObjPath::from(k.as_str())).await {
                    Ok(r) => {
                        let etag = r.meta.e_tag.clone().unwrap_or_default();
                        let ver = r.meta.version.clone();
                        let b = r.bytes().await.map_err(|e| objerr(&k, e))?;
                        Ok(Some((b, etag, ver)))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(objerr(&k, e)),
                }
            }
        }
    }

    /// Write `data` to a temporary file/object, re-read and verify it with
    /// `verify`, then swap it in atomically over `key` (If-Match `etag` on S3).
    pub async fn swap(
        &self,
        key: &str,
        data: Bytes,
        etag: &str,
        version: Option<String>,
        tmp_tag: &str,
        verify: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Result<(), SweepError> {
        match self {
            Location::Local(root) => {
                let p = if root.is_file() {
                    root.clone()
                } else {
                    local_path(root, key)
                };
                let dir = p.parent().unwrap_or(Path::new(".")).to_path_buf();
                let tmp = dir.join(format!(
                    ".{}.childguard-tmp-{tmp_tag}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ));
                {
                    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
                    f.write_all(&data).map_err(|e| io(&tmp, e))?;
                    f.sync_all().map_err(|e| io(&tmp, e))?;
                }
                let back = std::fs::read(&tmp).map_err(|e| io(&tmp, e))?;
                if let Err(m) = verify(&back) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(SweepError::Verify {
                        target: p.display().to_string(),
                        message: m,
                    });
                }
                // Refuse when the file changed since it was read.
                let cur = std::fs::metadata(&p).map_err(|e| io(&p, e))?;
                if local_meta(key.into(), &cur).version != etag {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(SweepError::Changed(p.display().to_string()));
                }
                std::fs::rename(&tmp, &p).map_err(|e| io(&p, e))?;
                std::fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io(&dir, e))?;
                Ok(())
            }
            Location::S3 { store, .. } => {
                let k = self.full_key(key);
                let tmpk = ObjPath::from(format!("{k}.childguard-tmp-{tmp_tag}"));
                store
                    .put(&tmpk, PutPayload::from(data.clone()))
                    .await
                    .map_err(|e| objerr(&k, e))?;
                let back = store
                    .get(&tmpk)
                    .await
                    .map_err(|e| objerr(&k, e))?
                    .bytes()
                    .await
                    .map_err(|e| objerr(&k, e))?;
                if let Err(m) = verify(&back) {
                    let _ = store.delete(&tmpk).await;
                    return Err(SweepError::Verify {
                        target: k,
                        message: m,
                    });
                }
                let opts = PutOptions {
                    mode: PutMode::Update(UpdateVersion {
                        e_tag: Some(etag.to_string()),
                        version,
                    }),
                    ..Default::default()
                };
                let r = store
                    .put_opts(&ObjPath::from(k.as_str()), PutPayload::from(back), opts)
                    .await;
                let _ = store.delete(&tmpk).await;
                match r {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::Precondition { .. }) => Err(SweepError::Changed(k)),
                    Err(e) => Err(objerr(&k, e)),
                }
            }
        }
    }

    /// Metadata of one file/object; `None` when it is gone.
    pub async fn head(&self, key: &str) -> Result<Option<FileMeta>, SweepError> {
        match self {
            Location::Local(root) => {
                let p = if root.is_file() {
                    root.clone()
                } else {
                    local_path(root, key)
                };
                match std::fs::metadata(&p) {
                    Ok(m) => Ok(Some(local_meta(key.into(), &m))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&p, e)),
                }
            }
            Location::S3 { store, .. } => {
                let k = self.full_key(key);
                match store.head(&ObjPath::from(k.as_str())).await {
                    Ok(m) => Ok(Some(FileMeta {
                        key: key.into(),
                        size: m.size,
                        modified: m.last_modified.naive_utc(),
                        version: m.e_tag.unwrap_or_default(),
                    })),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(objerr(&k, e)),
                }
            }
        }
    }

    /// Delete a whole file/object; `Ok(false)` when it was already gone.
    pub async fn delete(&self, key: &str) -> Result<bool, SweepError> {
        match self {
            Location::Local(root) => {
                let p = if root.is_file() {
                    root.clone()
                } else {
                    local_path(root, key)
                };
                match std::fs::remove_file(&p) {
                    Ok(()) => {
                        let dir = p.parent().unwrap_or(Path::new("."));
                        std::fs::File::open(dir)
                            .and_then(|d| d.sync_all())
                            .map_err(|e| io(dir, e))?;
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(io(&p, e)),
                }
            }
            Location::S3 { store, .. } => {
                let k = self.full_key(key);
                let op = ObjPath::from(k.as_str());
                match store.head(&op).await {
                    Err(object_store::Error::NotFound { .. }) => return Ok(false),
                    Err(e) => return Err(objerr(&k, e)),
                    Ok(_) => {}
                }
                store.delete(&op).await.map_err(|e| objerr(&k, e))?;
                Ok(true)
            }
        }
    }
}

fn local_path(root: &Path, key: &str) -> PathBuf {
    if root.is_file() {
        root.to_path_buf()
    } else {
        root.join(key)
    }
}

fn local_meta(key: String, m: &std::fs::Metadata) -> FileMeta {
    let mt: DateTime<chrono::Utc> = m.modified().map(DateTime::from).unwrap_or_default();
    let nanos = mt.timestamp_nanos_opt().unwrap_or(0);
    FileMeta {
        key,
        size: m.len(),
        modified: mt.naive_utc(),
        version: format!("{nanos}:{}", m.len()),
    }
}

/// Parse a time value: ISO-8601 / RFC 3339 (offsets converted to UTC),
/// `YYYY-MM-DD HH:MM:SS[.fff]`, `YYYY/MM/DD …`, or a date (midnight).
pub fn parse_ts(s: &str) -> Option<NaiveDateTime> {
    let s = s
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .replace(',', ".");
    if let Ok(d) = DateTime::parse_from_rfc3339(&s) {
        return Some(d.naive_utc());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(&s, f) {
            return Some(d.naive_utc());
        }
        if let Ok(d) = NaiveDateTime::parse_from_str(&s, f) {
            return Some(d);
        }
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(&s, f) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    None
}

/// Leading timestamp of a log line (`2024-05-01 10:00:00,123 …`, `[2024-05-01T10:00:00Z] …`).
pub fn log_line_ts(line: &str) -> Option<NaiveDateTime> {
    let t = line.trim_start().trim_start_matches('[');
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut it = t.split(|c: char| c.is_whitespace() || c == ']');
    let a = it.next()?;
    if let Some(b) = it.next() {
        if b.starts_with(|c: char| c.is_ascii_digit()) {
            if let Some(ts) = parse_ts(&format!("{a} {b}")) {
                return Some(ts);
            }
        }
    }
    parse_ts(a)
}

fn token_match(line: &str, key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    let mut start = 0;
    while let Some(i) = line[start..].find(key) {
        let s = start + i;
        let e = s + key.len();
        let before = line[..s]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let after = line[e..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric());
        if before && after {
            return true;
        }
        start = s + key.len().max(1);
        while !line.is_char_boundary(start) {
            start += 1;
        }
    }
    false
}

/// Counts of a file's rows.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub rows: usize,
    pub matching: usize,
    /// Rows whose time could not be read (kept).
    pub undated: usize,
    /// Schema signature (column names and types; empty for logs/JSON lines).
    pub schema: String,
}

/// Result of a rewrite.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub data: Bytes,
    pub before: Counts,
    pub changed: usize,
}

fn row_matches(pred: &RowPred, val: Option<&str>) -> (bool, bool) {
    // (matches, undated)
    match pred {
        RowPred::Expired { cutoff, .. } => match val {
            None => (false, false),
            Some(v) if v.trim().is_empty() => (false, false),
            Some(v) => match parse_ts(v) {
                Some(t) => (t < *cutoff, false),
                None => (false, true),
            },
        },
        RowPred::Subject { key, .. } => (val.map(|v| v.trim() == key).unwrap_or(false), false),
    }
}

fn pred_field(pred: &RowPred) -> &str {
    match pred {
        RowPred::Expired { field, .. } | RowPred::Subject { field, .. } => field,
    }
}

fn json_get<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn anon_type_hint(v: &serde_json::Value) -> &'static str {
    if v.is_number() {
        "integer"
    } else {
        "text"
    }
}

/// Up to `n` matching rows' values of `fields` (those present), raw: callers
/// mask them before showing. Logs give the line number only.
pub fn samples(
    fmt: Format,
    data: &[u8],
    pred: &RowPred,
    fields: &[String],
    n: usize,
) -> Result<Vec<BTreeMap<String, String>>, String> {
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    match fmt {
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(data);
            let hdr = r.headers().map_err(|e| e.to_string())?.clone();
            let idx = hdr
                .iter()
                .position(|h| h == pred_field(pred))
                .ok_or_else(|| format!("no column `{}`", pred_field(pred)))?;
            let cols: Vec<(usize, &String)> = fields
                .iter()
                .filter_map(|f| hdr.iter().position(|h| h == f).map(|i| (i, f)))
                .collect();
            for rec in r.records() {
                let rec = rec.map_err(|e| e.to_string())?;
                if row_matches(pred, rec.get(idx)).0 {
                    out.push(
                        cols.iter()
                            .map(|(i, f)| ((*f).clone(), rec.get(*i).unwrap_or("").to_string()))
                            .collect(),
                    );
                    if out.len() >= n {
                        break;
                    }
                }
            }
        }
        Format::Jsonl => {
            for line in data.split(|b| *b == b'\n') {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                    continue;
                };
                let val = json_get(&v, pred_field(pred)).and_then(json_text);
                if row_matches(pred, val.as_deref()).0 {
                    out.push(
                        fields
                            .iter()
                            .filter_map(|f| {
                                json_get(&v, f).and_then(json_text).map(|t| (f.clone(), t))
                            })
                            .collect(),
                    );
                    if out.len() >= n {
                        break;
                    }
                }
            }
        }
        Format::Parquet => {
            let (schema, batches) = read_parquet(data)?;
            let present: Vec<&String> = fields
                .iter()
                .filter(|f| schema.index_of(f).is_ok())
                .collect();
            'b: for b in &batches {
                let (m, _) = parquet_mask(b, pred)?;
                let cols: Vec<StringArray> = present
                    .iter()
                    .map(|f| col_text(b, f))
                    .collect::<Result<_, _>>()?;
                for i in 0..b.num_rows() {
                    if m.value(i) {
                        out.push(
                            present
                                .iter()
                                .zip(&cols)
                                .filter(|(_, c)| !c.is_null(i))
                                .map(|(f, c)| ((*f).clone(), c.value(i).to_string()))
                                .collect(),
                        );
                        if out.len() >= n {
                            break 'b;
                        }
                    }
                }
            }
        }
        Format::Log => {
            let text = String::from_utf8_lossy(data);
            let mut cur: Option<bool> = None;
            for (i, line) in text.lines().enumerate() {
                let m = match pred {
                    RowPred::Expired { cutoff, .. } => {
                        if let Some(t) = log_line_ts(line) {
                            cur = Some(t < *cutoff);
                        }
                        cur.unwrap_or(false)
                    }
                    RowPred::Subject { key, .. } => token_match(line, key),
                };
                if m {
                    out.push([("line".to_string(), (i + 1).to_string())].into());
                    if out.len() >= n {
                        break;
                    }
                }
            }
        }
        Format::Opaque => {}
    }
    Ok(out)
}

/// Count rows, matching rows and the schema signature.
pub fn count(fmt: Format, data: &[u8], pred: &RowPred) -> Result<Counts, String> {
    let mut c = Counts::default();
    match fmt {
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .from_reader(data);
            let hdr = r.headers().map_err(|e| e.to_string())?.clone();
            c.schema = hdr.iter().collect::<Vec<_>>().join(",");
            let idx = hdr
                .iter()
                .position(|h| h == pred_field(pred))
                .ok_or_else(|| format!("no column `{}`", pred_field(pred)))?;
            for rec in r.records() {
                let rec = rec.map_err(|e| e.to_string())?;
                c.rows += 1;
                let (m, u) = row_matches(pred, rec.get(idx));
                c.matching += m as usize;
                c.undated += u as usize;
            }
        }
        Format::Jsonl => {
            for (i, line) in data.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let v: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", i + 1))?;
                c.rows += 1;
                let val = json_get(&v, pred_field(pred)).and_then(json_text);
                let (m, u) = row_matches(pred, val.as_deref());
                c.matching += m as usize;
                c.undated += u as usize;
            }
        }
        Format::Log => {
            let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
            let mut cur: Option<bool> = None;
            for line in text.lines() {
                c.rows += 1;
                let m = match pred {
                    RowPred::Expired { cutoff, .. } => {
                        if let Some(t) = log_line_ts(line) {
                            cur = Some(t < *cutoff);
                        } else if cur.is_none() {
                            c.undated += 1;
                        }
                        cur.unwrap_or(false)
                    }
                    RowPred::Subject { key, .. } => token_match(line, key),
                };
                c.matching += m as usize;
            }
        }
        Format::Parquet => {
            let (schema, batches) = read_parquet(data)?;
            c.schema = schema_sig(&schema);
            for b in &batches {
                let (m, u) = parquet_mask(b, pred)?;
                c.rows += b.num_rows();
                c.matching += m.true_count();
                c.undated += u;
            }
        }
        Format::Opaque => {
            return Err(
                "compressed or unknown format: only whole-file retention (object_age) applies"
                    .into(),
            )
        }
    }
    Ok(c)
}

fn schema_sig(s: &arrow::datatypes::Schema) -> String {
    s.fields()
        .iter()
        .map(|f| format!("{}:{}:{}", f.name(), f.data_type(), f.is_nullable()))
        .collect::<Vec<_>>()
        .join(",")
}

fn read_parquet(data: &[u8]) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>), String> {
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        Bytes::copy_from_slice(data),
    )
    .map_err(|e| e.to_string())?;
    let schema = b.schema().clone();
    let r = b
        .with_batch_size(65536)
        .build()
        .map_err(|e| e.to_string())?;
    let batches = r
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((schema, batches))
}

fn col_text(b: &RecordBatch, name: &str) -> Result<StringArray, String> {
    let i = b
        .schema()
        .index_of(name)
        .map_err(|_| format!("no column `{name}`"))?;
    let a = arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
        .map_err(|e| format!("column `{name}`: {e}"))?;
    Ok(a.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .expect("cast to Utf8 gives StringArray"))
}

fn parquet_mask(b: &RecordBatch, pred: &RowPred) -> Result<(BooleanArray, usize), String> {
    use arrow::datatypes::{DataType, TimeUnit};
    // Fast path: typed time columns compare as integers (UTC-based epoch values).
    if let RowPred::Expired { field, cutoff } = pred {
        let i = b
            .schema()
            .index_of(field)
            .map_err(|_| format!("no column `{field}`"))?;
        let col = b.column(i);
        let us = |t: NaiveDateTime| t.and_utc().timestamp_micros();
        let target = match col.data_type() {
            DataType::Timestamp(_, tz) => {
                Some(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))
            }
            DataType::Date32 | DataType::Date64 => {
                Some(DataType::Timestamp(TimeUnit::Microsecond, None))
            }
            _ => None,
        };
        if let Some(t) = target {
            let a = arrow::compute::cast(col, &t).map_err(|e| format!("column `{field}`: {e}"))?;
            let a = arrow::compute::cast(&a, &DataType::Int64)
                .map_err(|e| format!("column `{field}`: {e}"))?;
            let a = a
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("cast to Int64");
            let c = us(*cutoff);
            let m: BooleanArray = a.iter().map(|v| Some(v.is_some_and(|v| v < c))).collect();
            return Ok((m, 0));
        }
    }
    let s = col_text(b, pred_field(pred))?;
    let mut und = 0;
    let m: BooleanArray = s
        .iter()
        .map(|v| {
            let (m, u) = row_matches(pred, v);
            und += u as usize;
            Some(m)
        })
        .collect();
    Ok((m, und))
}

/// Rewrite a file without (or with anonymized) matching rows.
pub fn rewrite(
    fmt: Format,
    data: &[u8],
    pred: &RowPred,
    action: &RowAction,
    fp: &Fingerprinter,
) -> Result<Rewrite, String> {
    let before = count(fmt, data, pred)?;
    let mut changed = 0usize;
    let out: Vec<u8> = match fmt {
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(data);
            let hdr = r.headers().map_err(|e| e.to_string())?.clone();
            let idx = hdr
                .iter()
                .position(|h| h == pred_field(pred))
                .ok_or("no column")?;
            let mut w = csv::Writer::from_writer(Vec::with_capacity(data.len()));
            w.write_record(&hdr).map_err(|e| e.to_string())?;
            for rec in r.records() {
                let rec = rec.map_err(|e| e.to_string())?;
                let (m, _) = row_matches(pred, rec.get(idx));
                if !m {
                    w.write_record(&rec).map_err(|e| e.to_string())?;
                    continue;
                }
                changed += 1;
                if let RowAction::Anonymize { ops, clock } = action {
                    let mut fields: Vec<String> = rec.iter().map(String::from).collect();
                    for (i, h) in hdr.iter().enumerate() {
                        if h == clock {
                            fields[i].clear();
                        } else if let Some(op) = ops.get(h) {
                            fields[i] = op.apply(&fields[i], fp).unwrap_or_default();
                        }
                    }
                    w.write_record(&fields).map_err(|e| e.to_string())?;
                }
            }
            w.into_inner().map_err(|e| e.to_string())?
        }
        Format::Jsonl => {
            let mut o = Vec::with_capacity(data.len());
            let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
            let n = lines.len();
            for (i, line) in lines.into_iter().enumerate() {
                let last = i + 1 == n;
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    if !last || !line.is_empty() {
                        o.extend_from_slice(line);
                        if !last {
                            o.push(b'\n');
                        }
                    }
                    continue;
                }
                let mut v: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", i + 1))?;
                let val = json_get(&v, pred_field(pred)).and_then(json_text);
                let (m, _) = row_matches(pred, val.as_deref());
                if !m {
                    o.extend_from_slice(line);
                    if !last {
                        o.push(b'\n');
                    }
                    continue;
                }
                changed += 1;
                if let RowAction::Anonymize { ops, clock } = action {
                    set_json(&mut v, clock, serde_json::Value::Null);
                    for (f, op) in ops {
                        if f == clock {
                            continue;
                        }
                        if let Some(cur) = json_get(&v, f).cloned() {
                            let hint = anon_type_hint(&cur);
                            let nv = json_text(&cur)
                                .and_then(|t| super::db::anon_text(op, &t, hint, fp));
                            let nv = match nv {
                                None => serde_json::Value::Null,
                                Some(s) if hint == "integer" => s
                                    .parse::<i64>()
                                    .map(serde_json::Value::from)
                                    .unwrap_or(serde_json::Value::String(s)),
                                Some(s) => serde_json::Value::String(s),
                            };
                            set_json(&mut v, f, nv);
                        }
                    }
                    o.extend_from_slice(v.to_string().as_bytes());
                    if !last {
                        o.push(b'\n');
                    }
                }
            }
            o
        }
        Format::Log => {
            if matches!(action, RowAction::Anonymize { .. }) {
                return Err("logs are swept by deleting lines; set disposal = \"delete\"".into());
            }
            let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
            let mut o = String::with_capacity(text.len());
            let mut cur: Option<bool> = None;
            for line in text.split_inclusive('\n') {
                let m = match pred {
                    RowPred::Expired { cutoff, .. } => {
                        if let Some(t) = log_line_ts(line) {
                            cur = Some(t < *cutoff);
                        }
                        cur.unwrap_or(false)
                    }
                    RowPred::Subject { key, .. } => token_match(line.trim_end_matches('\n'), key),
                };
                if m {
                    changed += 1;
                } else {
                    o.push_str(line);
                }
            }
            o.into_bytes()
        }
        Format::Parquet => {
            let meta = parquet::file::reader::FileReader::metadata(
                &parquet::file::serialized_reader::SerializedFileReader::new(
                    Bytes::copy_from_slice(data),
                )
                .map_err(|e| e.to_string())?,
            )
            .clone();
            let compression = meta
                .row_groups()
                .first()
                .and_then(|rg| rg.columns().first())
                .map(|c| c.compression())
                .unwrap_or(parquet::basic::Compression::SNAPPY);
            let (schema, batches) = read_parquet(data)?;
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(compression)
                .build();
            let mut buf = Vec::with_capacity(data.len());
            {
                let mut w =
                    parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))
                        .map_err(|e| e.to_string())?;
                for b in &batches {
                    let (m, _) = parquet_mask(b, pred)?;
                    changed += m.true_count();
                    let nb = match action {
                        RowAction::Delete => {
                            let keep = arrow::compute::not(&m).map_err(|e| e.to_string())?;
                            arrow::compute::filter_record_batch(b, &keep)
                                .map_err(|e| e.to_string())?
                        }
                        RowAction::Anonymize { ops, clock } => {
                            anonymize_batch(b, &m, ops, clock, fp)?
                        }
                    };
                    w.write(&nb).map_err(|e| e.to_string())?;
                }
                w.close().map_err(|e| e.to_string())?;
            }
            buf
        }
        Format::Opaque => {
            return Err(
                "compressed or unknown format: only whole-file retention (object_age) applies"
                    .into(),
            )
        }
    };
    Ok(Rewrite {
        data: Bytes::from(out),
        before,
        changed,
    })
}

fn set_json(v: &mut serde_json::Value, path: &str, nv: serde_json::Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            if let Some(o) = cur.as_object_mut() {
                if o.contains_key(*p) {
                    o.insert((*p).to_string(), nv);
                }
            }
            return;
        }
        match cur.get_mut(*p) {
            Some(n) => cur = n,
            None => return,
        }
    }
}

fn anonymize_batch(
    b: &RecordBatch,
    m: &BooleanArray,
    ops: &BTreeMap<String, AnonOp>,
    clock: &str,
    fp: &Fingerprinter,
) -> Result<RecordBatch, String> {
    let schema = b.schema();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
    for (i, f) in schema.fields().iter().enumerate() {
        let name = f.name().as_str();
        let is_clock = name == clock;
        let op = ops.get(name);
        if !is_clock && op.is_none() {
            cols.push(b.column(i).clone());
            continue;
        }
        if !f.is_nullable() && (is_clock || matches!(op, Some(AnonOp::Null))) {
            return Err(format!("column `{name}` is not nullable; cannot blank it"));
        }
        let s = col_text(b, name)?;
        let hint = format!("{}", f.data_type()).to_ascii_lowercase();
        let nv: StringArray = s
            .iter()
            .zip(m.iter())
            .map(|(v, mm)| {
                if mm != Some(true) {
                    return v.map(String::from);
                }
                if is_clock {
                    return None;
                }
                v.and_then(|v| super::db::anon_text(op.unwrap(), v, &hint, fp))
            })
            .collect();
        let back = arrow::compute::cast(&(Arc::new(nv) as ArrayRef), f.data_type())
            .map_err(|e| format!("column `{name}`: {e}"))?;
        cols.push(back);
    }
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())
}

/// Check a rewritten file: readable, same schema, rows = before − removed
/// (or = before for anonymization), nothing matching left.
pub fn verify(
    fmt: Format,
    new: &[u8],
    pred: &RowPred,
    action: &RowAction,
    before: &Counts,
    changed: usize,
) -> Result<Counts, String> {
    let after = count(fmt, new, pred)?;
    if after.schema != before.schema {
        return Err("schema changed".into());
    }
    let want = match action {
        RowAction::Delete => before.rows - changed,
        RowAction::Anonymize { .. } => before.rows,
    };
    if after.rows != want {
        return Err(format!(
            "row count {} after rewrite, expected {want}",
            after.rows
        ));
    }
    if after.matching != 0 {
        return Err(format!("{} rows still match after rewrite", after.matching));
    }
    Ok(after)
}

/// What one file's disposal did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileOutcome {
    pub rows_before: usize,
    pub changed: usize,
    pub deleted_whole: bool,
    pub exact: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileStart {
    version: String,
    changed: usize,
    whole: bool,
}

/// Run (or resume) one file/object: journal `start` (version read, rows to
/// change), rewrite/verify/swap or delete, journal `done`.
#[allow(clippy::too_many_arguments)]
pub async fn run_file(
    loc: &Location,
    journal: &SweepJournal,
    plan_id: &str,
    item: i64,
    key: &str,
    whole: bool,
    pred: Option<&RowPred>,
    age_cutoff: Option<NaiveDateTime>,
    action: &RowAction,
    fp: &Fingerprinter,
) -> Result<FileOutcome, SweepError> {
    let mine: Vec<JournalEntry> = journal
        .entries(plan_id)
        .await?
        .into_iter()
        .filter(|e| e.item == item && e.unit == key)
        .collect();
    if let Some(d) = mine.iter().find(|e| e.phase == "done") {
        return Ok(serde_json::from_str(&d.detail).unwrap_or_default());
    }
    let started: Option<FileStart> = mine
        .iter()
        .find(|e| e.phase == "start")
        .and_then(|e| serde_json::from_str(&e.detail).ok());
    let entry = |phase: &str, affected: i64, detail: String| JournalEntry {
        item,
        unit: key.into(),
        seq: 0,
        phase: phase.into(),
        affected,
        detail,
    };
    let fmt = Format::of(key);
    if whole {
        let outcome = match loc.head(key).await? {
            // Gone: deleted by the killed attempt (journaled start), or by someone else.
            None => FileOutcome {
                rows_before: 0,
                changed: started.is_some() as usize,
                deleted_whole: started.is_some(),
                exact: true,
            },
            // Re-check the retention predicate: a file modified since planning is within retention.
            Some(m) if age_cutoff.is_some_and(|c| m.modified >= c) => FileOutcome {
                rows_before: 0,
                changed: 0,
                deleted_whole: false,
                exact: true,
            },
            Some(m) => {
                if started.is_none() {
                    let d = serde_json::to_string(&FileStart {
                        version: m.version.clone(),
                        changed: 1,
                        whole: true,
                    })
                    .unwrap();
                    journal.record(plan_id, &entry("start", 0, d)).await?;
                }
                let existed = loc.delete(key).await?;
                FileOutcome {
                    rows_before: 0,
                    changed: (existed || started.is_some()) as usize,
                    deleted_whole: true,
                    exact: true,
                }
            }
        };
        journal
            .record(
                plan_id,
                &entry(
                    "done",
                    outcome.changed as i64,
                    serde_json::to_string(&outcome).unwrap(),
                ),
            )
            .await?;
        return Ok(outcome);
    }
    let cur = loc.read(key).await?;
    let outcome = match (whole, cur) {
        (true, _) => unreachable!("whole files handled above"),
        (false, None) => {
            return Err(SweepError::Object {
                key: key.into(),
                message: "file disappeared since planning; nothing rewritten".into(),
            });
        }
        (false, Some((data, etag, version))) => {
            let pred = pred.expect("row predicate for a rewrite");
            let rw = rewrite(fmt, &data, pred, action, fp).map_err(|m| SweepError::Verify {
                target: key.into(),
                message: m,
            })?;
            if rw.changed == 0 {
                // Nothing (left) to do. After a kill between swap and `done`
                // the killed attempt did the work: take its count.
                let (changed, exact) = match &started {
                    Some(s) if s.version != etag => (s.changed, true),
                    _ => (0, true),
                };
                FileOutcome {
                    rows_before: rw.before.rows
                        + if matches!(action, RowAction::Delete) {
                            changed
                        } else {
                            0
                        },
                    changed,
                    deleted_whole: false,
                    exact,
                }
            } else {
                if started.is_none() {
                    journal
                        .record(
                            plan_id,
                            &entry(
                                "start",
                                0,
                                serde_json::to_string(&FileStart {
                                    version: etag.clone(),
                                    changed: rw.changed,
                                    whole: false,
                                })
                                .unwrap(),
                            ),
                        )
                        .await?;
                }
                let before = rw.before.clone();
                let changed = rw.changed;
                loc.swap(key, rw.data, &etag, version, plan_id, |b| {
                    verify(fmt, b, pred, action, &before, changed).map(|_| ())
                })
                .await?;
                FileOutcome {
                    rows_before: before.rows,
                    changed,
                    deleted_whole: false,
                    exact: true,
                }
            }
        }
    };
    journal
        .record(
            plan_id,
            &entry(
                "done",
                outcome.changed as i64,
                serde_json::to_string(&outcome).unwrap(),
            ),
        )
        .await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("2024-01-01"), Some(cut()));
        assert_eq!(parse_ts("2024-01-01T08:00:00+08:00"), Some(cut()));
        assert_eq!(
            parse_ts("2023-12-31 23:59:59.5").map(|t| t < cut()),
            Some(true)
        );
        assert_eq!(
            log_line_ts("2024-01-01 00:00:00,123 INFO x"),
            Some(cut() + chrono::Duration::milliseconds(123))
        );
        assert_eq!(log_line_ts("[2024-01-01T00:00:00Z] x"), Some(cut()));
        assert_eq!(log_line_ts("  at foo.bar"), None);
        assert!(token_match("user=123 x", "123") && !token_match("user=1234", "123"));
    }

    #[test]
    fn csv_cutoff_is_strict() {
        let data = b"id,ts,phone\n1,2023-12-31 23:59:59,13800000001\n2,2024-01-01 00:00:00,13800000002\n3,bad,13800000003\n";
        let p = RowPred::Expired {
            field: "ts".into(),
            cutoff: cut(),
        };
        let fp = Fingerprinter::new(b"k");
        let rw = rewrite(Format::Csv, data, &p, &RowAction::Delete, &fp).unwrap();
        assert_eq!(
            (
                rw.before.rows,
                rw.before.matching,
                rw.before.undated,
                rw.changed
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(
            std::str::from_utf8(&rw.data).unwrap(),
            "id,ts,phone\n2,2024-01-01 00:00:00,13800000002\n3,bad,13800000003\n"
        );
        verify(Format::Csv, &rw.data, &p, &RowAction::Delete, &rw.before, 1).unwrap();
        assert!(verify(Format::Csv, data, &p, &RowAction::Delete, &rw.before, 1).is_err());
    }

    #[test]
    fn log_continuation_lines_follow_their_record() {
        let data = b"2023-06-01 10:00:00 ERROR a\n  at x\n2024-02-01 10:00:00 INFO b\n";
        let p = RowPred::Expired {
            field: "ts".into(),
            cutoff: cut(),
        };
        let rw = rewrite(
            Format::Log,
            data,
            &p,
            &RowAction::Delete,
            &Fingerprinter::new(b"k"),
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&rw.data).unwrap(),
            "2024-02-01 10:00:00 INFO b\n"
        );
        assert_eq!(rw.changed, 2);
    }

    #[test]
    fn jsonl_anonymize() {
        let data = b"{\"ts\":\"2023-01-01\",\"phone\":\"13812345678\",\"age\":8}\n{\"ts\":\"2024-06-01\",\"phone\":\"13900000000\",\"age\":9}\n";
        let p = RowPred::Expired {
            field: "ts".into(),
            cutoff: cut(),
        };
        let ops: BTreeMap<String, AnonOp> = [
            ("phone".to_string(), "mask:3,4".parse().unwrap()),
            ("age".to_string(), "age_band:5".parse().unwrap()),
        ]
        .into();
        let a = RowAction::Anonymize {
            ops,
            clock: "ts".into(),
        };
        let rw = rewrite(Format::Jsonl, data, &p, &a, &Fingerprinter::new(b"k")).unwrap();
        let s = std::str::from_utf8(&rw.data).unwrap();
        assert_eq!(
            s.lines().next().unwrap(),
            r#"{"age":5,"phone":"138****5678","ts":null}"#
        );
        assert!(s.contains("13900000000"));
        verify(Format::Jsonl, &rw.data, &p, &a, &rw.before, 1).unwrap();
    }

    #[test]
    fn parquet_typed_time_columns_cutoff_is_strict() {
        use arrow::array::{Date32Array, TimestampMicrosecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let c = cut().and_utc().timestamp_micros();
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+08:00".into())),
                true,
            ),
            Field::new("d", DataType::Date32, true),
        ]));
        let day = 19723; // 2024-01-01
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(c - 1), Some(c), None])
                        .with_timezone("+08:00"),
                ),
                Arc::new(Date32Array::from(vec![
                    Some(day - 1),
                    Some(day),
                    Some(day + 1),
                ])),
            ],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        let fp = Fingerprinter::new(b"k");
        for field in ["ts", "d"] {
            let p = RowPred::Expired {
                field: field.into(),
                cutoff: cut(),
            };
            let rw = rewrite(Format::Parquet, &buf, &p, &RowAction::Delete, &fp).unwrap();
            assert_eq!((rw.before.rows, rw.changed), (3, 1), "{field}");
            verify(
                Format::Parquet,
                &rw.data,
                &p,
                &RowAction::Delete,
                &rw.before,
                1,
            )
            .unwrap();
        }
    }
}
