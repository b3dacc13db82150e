//! Sources: list deterministic work units (file, object, table, partition)
//! and stream their content to the searchers in [`crate::scan`].
//!
//! Every source implements [`Source`]; the scan orchestrator (`childguard
//! scan`) fans units out over rayon and collects findings, stats and
//! per-unit errors. A failing unit never stops the others.

pub mod db;
pub mod incremental;
pub mod objstore;
pub mod shard;

use crate::detect::Engine;
use crate::finding::Finding;

/// One unit of work: the thing a failure, an incremental watermark and a
/// shard assignment refer to. `id` is stable across runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkUnit {
    /// Stable id: relative path, object key, or `schema.table`.
    pub id: String,
    /// Size in bytes when known (files, objects) — for progress and ETA.
    pub size: Option<u64>,
    /// Version marker when known (ETag, mtime+size, row count + watermark) for incremental scans.
    pub version: Option<String>,
}

/// Options shared by every source for one scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Stream every row (`--full`) instead of sampling tables.
    pub full: bool,
    /// Rows sampled per table when not `full`.
    pub sample_rows: u64,
    /// List the primary keys of rows with child PI (`--rows`).
    pub rows: bool,
}

/// What a unit scan read.
#[derive(Debug, Clone, Default)]
pub struct UnitStats {
    pub bytes: u64,
    pub rows: u64,
    /// True when the unit was skipped (binary file, unchanged in an incremental scan).
    pub skipped: Option<String>,
}

/// A unit that could not be read: names the unit and the cause, never a value.
#[derive(Debug, thiserror::Error)]
#[error("{unit}: {message}")]
pub struct UnitError {
    pub unit: String,
    pub message: String,
}

impl UnitError {
    pub fn new(unit: impl Into<String>, message: impl std::fmt::Display) -> Self {
        UnitError {
            unit: unit.into(),
            message: message.to_string(),
        }
    }
}

/// The Source extension point.
pub trait Source: Send + Sync {
    /// The target as the user wrote it (credentials removed); goes into `Finding::target`.
    fn target(&self) -> &str;
    /// Deterministic list of work units.
    fn units(&self) -> Result<Vec<WorkUnit>, UnitError>;
    /// Scan one unit; findings are pushed to `emit` (in order within the unit).
    fn scan_unit(
        &self,
        unit: &WorkUnit,
        engine: &Engine,
        opts: &ScanOptions,
        emit: &mut dyn FnMut(Finding),
    ) -> Result<UnitStats, UnitError>;
}

pub mod files;

/// Per-kind options for opening targets (each source adds its own field).
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// Local files and directories.
    pub files: files::FileSourceConfig,
    /// Named `[[sources]]` (databases, object stores) from the configuration.
    pub sources: Vec<crate::config::sources::SourceConfig>,
    /// Databases and object stores: incremental state, extra include/exclude globs.
    pub remote: db::RemoteOptions,
    /// Progress: sources add the bytes they have read here as they read
    /// them (the scan command's progress bar shows it).
    pub progress: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// Open a scan target: a local path or `file://PATH`. Other schemes are
/// answered with a clear "unsupported target scheme" error until their
/// source is built in.
pub fn open_target(target: &str, opts: &TargetOptions) -> Result<Box<dyn Source>, UnitError> {
    // Databases (postgres://, postgresql://, mysql://, mariadb://, sqlite://) and object
    // stores (s3://, gs://, az://), by URL or as `@name` of a `[[sources]]` entry.
    if let Some(r) = db::open_db_target(target, &opts.sources, &opts.remote) {
        return r;
    }
    if !target.starts_with("file://") {
        if let Some(r) = objstore::open_object_target(target, &opts.sources, &opts.remote) {
            return r;
        }
    }
    // `@name` of a `[[sources]]` entry holding a local path.
    let named = target
        .strip_prefix('@')
        .and_then(|n| opts.sources.iter().find(|s| s.name == n));
    let target = named.map_or(target, |s| s.url.as_str());
    let path = match target.split_once("://") {
        None => target,
        Some(("file", rest)) => rest.strip_prefix("localhost").unwrap_or(rest),
        Some((scheme, _)) => {
            return Err(UnitError::new(
                target_label(target),
                format!("unsupported target scheme `{scheme}://` (this build scans local paths and file:// only)"),
            ))
        }
    };
    if path.is_empty() {
        return Err(UnitError::new(target, "empty path"));
    }
    let src = files::FileSource::open(target, std::path::Path::new(path), opts.files.clone())?;
    Ok(Box::new(src.with_progress(opts.progress.clone())))
}

/// A target for messages, findings and the audit log: a URL without its
/// credentials (user, password, secret query parameters).
pub fn target_label(target: &str) -> String {
    match url::Url::parse(target) {
        Ok(mut u) if u.password().is_some() || !u.username().is_empty() || has_secret_query(&u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            redact_query(&mut u);
            u.to_string()
        }
        _ => target.to_string(),
    }
}

/// Whether a query parameter's value is a credential (`password=`,
/// `sslpassword=`, `token=`, `X-Amz-Signature=`, `sig=`, `access_key=`…).
fn secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "pass",
        "secret",
        "token",
        "key",
        "sig",
        "credential",
        "auth",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn has_secret_query(u: &url::Url) -> bool {
    u.query_pairs().any(|(k, _)| secret_param(&k))
}

/// Replace the values of secret query parameters by `***` (other parameters kept).
pub fn redact_query(u: &mut url::Url) {
    if !has_secret_query(u) {
        return;
    }
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if secret_param(&k) {
                "***".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
}
