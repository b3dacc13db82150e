//! Object stores through the `object_store` crate: `s3://bucket/prefix` (any
//! S3-compatible endpoint: endpoint URL, region, path-style requests,
//! credentials from env vars or files), `gs://bucket/prefix`,
//! `az://container/prefix` and `file:///dir`.
//!
//! Work units are objects (the object key, sorted), listed under the prefix
//! and filtered by include/exclude globs (matched against the key relative
//! to the prefix). Each object is streamed (never held whole in memory)
//! through a decompressor chosen by extension (`.gz`, `.zst`) into a reader
//! chosen by extension: Parquet (ranged reads of the footer and only the
//! needed columns and row groups), CSV/TSV as tables, everything else
//! (logs, text, JSON lines) as text with exact lines and byte offsets.
//! Requests are retried with exponential backoff; an object over the size
//! limit, one deleted between listing and reading, or one that is corrupt
//! is reported (key and cause) and the others go on.

mod parquet_reader;
pub mod retry;

use crate::config::sources::SourceConfig;
use crate::detect::Engine;
use crate::finding::Finding;
use crate::source::db::RemoteOptions;
use crate::source::files::{self, FileSourceConfig, UnitCtx};
use crate::source::incremental::{now_rfc3339, JsonStateStore, UnitState, UnitStateStore};
use crate::source::shard::{byte_ranges, split_unit_id, UnitRange};
use crate::source::{ScanOptions, Source, UnitError, UnitStats, WorkUnit};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use globset::{Glob, GlobSet, GlobSetBuilder};
use object_store::path::Path as ObjPath;
use object_store::{BackoffConfig, ObjectMeta, ObjectStore, RetryConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// True when `url` names an object store this module reads.
pub fn is_object_url(url: &str) -> bool {
    matches!(
        url.split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .as_deref(),
        Some("s3" | "s3a" | "gs" | "gcs" | "az" | "azure" | "abfs" | "file")
    )
}

/// An object store as a [`Source`].
pub struct ObjectSource {
    target: String,
    rt: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjPath>,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    cfg: SourceConfig,
    state: Option<Box<dyn UnitStateStore>>,
    /// Listing results by key (size, ETag, last-modified) for the scan.
    listed: Mutex<BTreeMap<String, ObjectMeta>>,
    /// Settings of the shared format readers (chunk size, JSON document and buffered Parquet limits).
    readers: FileSourceConfig,
    secrets: Vec<String>,
}

/// Open an object-store target given as a URL, with default settings.
pub fn open_url(url: &str, opts: &RemoteOptions) -> Result<Box<dyn Source>, UnitError> {
    open(&SourceConfig::from_url(url), opts)
}

/// Open an object-store source (`s3://`, `gs://`, `az://`, `file://`).
pub fn open(source: &SourceConfig, opts: &RemoteOptions) -> Result<Box<dyn Source>, UnitError> {
    Ok(Box::new(ObjectSource::open(source, opts)?))
}

fn globs(target: &str, g: &[String]) -> Result<Option<GlobSet>, UnitError> {
    if g.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in g {
        b.add(Glob::new(p).map_err(|e| UnitError::new(target, format!("bad glob `{p}`: {e}")))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| UnitError::new(target, format!("bad globs: {e}")))
}

fn retry_config(cfg: &SourceConfig) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            // A batch scanner is not latency-bound: wait long enough for a restarting
            // server (10 retries span several seconds to a minute, randomized).
            init_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: cfg.max_retries,
        retry_timeout: Duration::from_secs(180),
    }
}

impl ObjectSource {
    /// The file readers' context for object `key`.
    fn unit_ctx<'a>(
        &'a self,
        engine: &'a Engine,
        key: &'a str,
        opts: &'a ScanOptions,
    ) -> UnitCtx<'a> {
        UnitCtx {
            engine,
            target: &self.target,
            path: key,
            opts,
            cfg: &self.readers,
        }
    }

    pub fn open(source: &SourceConfig, opts: &RemoteOptions) -> Result<ObjectSource, UnitError> {
        // Findings, errors and the audit name the source without credentials.
        let target = crate::source::target_label(&source.url);
        let e = |m: String| UnitError::new(&target, m);
        let u = url::Url::parse(&source.url).map_err(|err| e(format!("not a valid URL: {err}")))?;
        let scheme = u.scheme().to_ascii_lowercase();
        let bucket = u.host_str().unwrap_or_default().to_string();
        let mut secrets = Vec::new();
        let mut secret = |env: Option<&str>,
                          file: Option<&std::path::Path>|
         -> Result<Option<String>, UnitError> {
            let v = source
                .secret(env, file)
                .map_err(|err| UnitError::new(&target, err))?;
            if let Some(s) = &v {
                secrets.push(s.clone());
            }
            Ok(v)
        };
        let store: Arc<dyn ObjectStore> = match scheme.as_str() {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_retry(retry_config(source));
                if let Some(ep) = &source.endpoint {
                    b = b.with_endpoint(ep);
                }
                if let Some(r) = &source.region {
                    b = b.with_region(r);
                }
                if source.path_style {
                    b = b.with_virtual_hosted_style_request(false);
                }
                if source.allow_http {
                    b = b.with_allow_http(true);
                }
                if let Some(k) = secret(
                    source.access_key_id_env.as_deref(),
                    source.access_key_id_file.as_deref(),
                )? {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = secret(
                    source.secret_access_key_env.as_deref(),
                    source.secret_access_key_file.as_deref(),
                )? {
                    b = b.with_secret_access_key(k);
                }
                Arc::new(
                    b.build()
                        .map_err(|err| e(format!("S3 configuration: {err}")))?,
                )
            }
            "gs" | "gcs" => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&bucket)
                    .with_retry(retry_config(source));
                if let Some(p) = &source.service_account_file {
                    // A key file with `gcs_base_url` (and `disable_oauth`) points at
                    // a GCS-compatible server, as object_store documents.
                    b = b.with_service_account_path(p.to_string_lossy());
                }
                if source.allow_http {
                    b = b.with_config(
                        object_store::gcp::GoogleConfigKey::Client(
                            object_store::ClientConfigKey::AllowHttp,
                        ),
                        "true",
                    );
                }
                Arc::new(
                    b.build()
                        .map_err(|err| e(format!("GCS configuration: {err}")))?,
                )
            }
            "az" | "azure" | "abfs" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&bucket)
                    .with_retry(retry_config(source));
                if let Some(a) = &source.account {
                    b = b.with_account(a);
                }
                if let Some(ep) = &source.endpoint {
                    b = b.with_endpoint(ep.clone());
                }
                if source.allow_http {
                    b = b.with_allow_http(true);
                }
                if let Some(k) = secret(
                    source.access_key_env.as_deref(),
                    source.access_key_file.as_deref(),
                )? {
                    b = b.with_access_key(k);
                }
                Arc::new(
                    b.build()
                        .map_err(|err| e(format!("Azure configuration: {err}")))?,
                )
            }
            "file" => {
                let dir = u
                    .to_file_path()
                    .map_err(|_| e("file:// URL without an absolute path".into()))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|err| e(format!("{}: {err}", dir.display())))?,
                )
            }
            other => return Err(e(format!("unsupported object store scheme `{other}`"))),
        };
        let store: Arc<dyn ObjectStore> = if scheme == "file" {
            store
        } else {
            let r = retry_config(source);
            Arc::new(retry::RetryReads::new(
                store,
                r.max_retries,
                r.backoff.init_backoff,
                r.backoff.max_backoff,
            ))
        };
        let prefix_str = if scheme == "file" {
            ""
        } else {
            u.path().trim_matches('/')
        };
        let prefix = (!prefix_str.is_empty()).then(|| ObjPath::from(prefix_str));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("childguard-objstore")
            .enable_all()
            .build()
            .map_err(|err| e(format!("cannot start the I/O runtime: {err}")))?;
        let state: Option<Box<dyn UnitStateStore>> = if opts.incremental {
            let dir = opts
                .state_dir
                .clone()
                .ok_or_else(|| e("--incremental needs a state directory".into()))?;
            Some(Box::new(
                JsonStateStore::open(&dir, &target).map_err(|err| UnitError::new(&target, err))?,
            ))
        } else {
            None
        };
        Ok(ObjectSource {
            include: globs(&target, &source.include)?,
            exclude: globs(&target, &source.exclude)?,
            target,
            rt,
            store,
            prefix,
            cfg: source.clone(),
            state,
            listed: Mutex::new(BTreeMap::new()),
            secrets,
            readers: opts.readers.clone().unwrap_or_default(),
        })
    }

    fn err(&self, unit: &str, e: impl std::fmt::Display) -> UnitError {
        let mut m = e.to_string();
        for s in &self.secrets {
            if !s.is_empty() {
                m = m.replace(s.as_str(), "***");
            }
        }
        UnitError::new(unit, m)
    }

    fn relative<'a>(&self, key: &'a str) -> &'a str {
        match &self.prefix {
            Some(p) => key
                .strip_prefix(p.as_ref())
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(key),
            None => key,
        }
    }

    fn selected(&self, key: &str) -> bool {
        let rel = self.relative(key);
        self.include.as_ref().is_none_or(|g| g.is_match(rel))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(rel))
    }

    fn version(meta: &ObjectMeta) -> String {
        match &meta.e_tag {
            Some(t) => format!("etag={t};size={}", meta.size),
            None => format!(
                "size={};modified={}",
                meta.size,
                meta.last_modified.to_rfc3339()
            ),
        }
    }

    /// A byte stream of the object (retried by the store's retry policy).
    fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, object_store::Result<bytes::Bytes>>, UnitError> {
        let path = ObjPath::from(key);
        let r = self
            .rt
            .block_on(self.store.get(&path))
            .map_err(|e| self.object_err(key, e))?;
        Ok(r.into_stream())
    }

    /// Byte-range units of an object larger than `range_bytes` (the
    /// `--range-bytes` of the file readers) that is uncompressed UTF-8 text
    /// or JSON lines ([`files::line_splittable`], judged from a ranged read
    /// of its first bytes); None: the object is one unit.
    fn byte_ranges(&self, key: &str, size: u64) -> Option<Vec<UnitRange>> {
        let ranges = byte_ranges(size, self.readers.range_bytes)?;
        if is_plain_parquet(key) {
            return None;
        }
        let head_len = size.min(files::sniff::SNIFF_BYTES as u64);
        let head = self
            .rt
            .block_on(self.store.get_range(&ObjPath::from(key), 0..head_len))
            .map_err(
                |e| tracing::debug!(key, error = %e, "head of a large object not read: one unit"),
            )
            .ok()?;
        files::line_splittable(key, &head)?;
        Some(ranges)
    }

    /// Scan the byte range `[start, end)` of an object: one ranged GET from
    /// `start - 1` (the byte that tells whether `start` begins a line) to the
    /// end of the line crossing `end` (at most `max_line_bytes` further).
    #[allow(clippy::too_many_arguments)]
    fn scan_range(
        &self,
        key: &str,
        meta: &ObjectMeta,
        start: u64,
        end: u64,
        engine: &Engine,
        opts: &ScanOptions,
        emit: &mut dyn FnMut(Finding),
    ) -> Result<UnitStats, files::FileError> {
        let unsupported = |message: String| files::FileError::Unsupported {
            path: key.to_string(),
            message,
        };
        if start >= meta.size {
            return Err(files::FileError::Changed {
                path: key.to_string(),
                detail: format!(
                    "range starts at byte {start} of a {}-byte object",
                    meta.size
                ),
            });
        }
        let path = ObjPath::from(key);
        let io = |e: object_store::Error| files::FileError::Io {
            path: key.to_string(),
            source: std::io::Error::other(e),
        };
        let head_len = meta.size.min(files::sniff::SNIFF_BYTES as u64);
        let head = self
            .rt
            .block_on(self.store.get_range(&path, 0..head_len))
            .map_err(io)?;
        let Some(json_lines) = files::line_splittable(key, &head) else {
            return Err(unsupported(
                "byte ranges apply to uncompressed UTF-8 text and JSON lines only".into(),
            ));
        };
        let from = start.saturating_sub(1);
        let to = meta.size.min(
            end.saturating_add(self.readers.max_line_bytes as u64)
                .saturating_add(1),
        );
        let get = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(from..to)),
            // The listed version only: a replaced object is an error, not a mix of two.
            if_match: meta.e_tag.clone(),
            ..Default::default()
        };
        let body = self
            .rt
            .block_on(self.store.get_opts(&path, get))
            .map_err(io)?
            .into_stream();
        let reader = StreamRead::new(self.rt.handle().clone(), body);
        let ctx = self.unit_ctx(engine, key, opts);
        files::scan_line_range(&ctx, Box::new(reader), json_lines, start, end, emit)
    }

    fn object_err(&self, key: &str, e: object_store::Error) -> UnitError {
        match e {
            object_store::Error::NotFound { .. } => {
                self.err(key, "object not found: deleted or replaced after listing")
            }
            other => self.err(key, format!("reading the object: {other}")),
        }
    }
}

impl Source for ObjectSource {
    fn target(&self) -> &str {
        &self.target
    }

    fn units(&self) -> Result<Vec<WorkUnit>, UnitError> {
        let metas: Vec<ObjectMeta> = self
            .rt
            .block_on(self.store.list(self.prefix.as_ref()).try_collect())
            .map_err(|e| self.err(&self.target, format!("listing: {e}")))?;
        let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for m in metas {
            let key = m.location.to_string();
            if !self.selected(&key) {
                continue;
            }
            let version = Self::version(&m);
            match self.byte_ranges(&key, m.size) {
                Some(ranges) => out.extend(ranges.into_iter().map(|r| WorkUnit {
                    id: r.unit_id(&key),
                    size: Some(match r {
                        UnitRange::Bytes { start, end } => end - start,
                        UnitRange::Key { .. } => 0,
                    }),
                    version: Some(version.clone()),
                })),
                None => out.push(WorkUnit {
                    id: key.clone(),
                    size: Some(m.size),
                    version: Some(version),
                }),
            }
            listed.insert(key, m);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn scan_unit(
        &self,
        unit: &WorkUnit,
        engine: &Engine,
        opts: &ScanOptions,
        emit: &mut dyn FnMut(Finding),
    ) -> Result<UnitStats, UnitError> {
        // A byte-range unit (`KEY#bytes=A..B`) reads part of the object KEY.
        let (key, range) = match split_unit_id(&unit.id) {
            (key, Some(UnitRange::Bytes { start, end })) => (key, Some((start, end))),
            _ => (unit.id.as_str(), None),
        };
        let meta = self
            .listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        let meta = match meta {
            Some(m) => m,
            None => self
                .rt
                .block_on(self.store.head(&ObjPath::from(key)))
                .map_err(|e| self.object_err(key, e))?,
        };
        // A range unit reads its range (and the end of the line crossing its end).
        let read_size = range.map_or(meta.size, |(start, end)| end - start);
        if read_size > self.cfg.max_object_bytes {
            return Err(self.err(
                &unit.id,
                format!(
                    "object is {read_size} bytes, over the limit of {} bytes (max_object_bytes)",
                    self.cfg.max_object_bytes
                ),
            ));
        }
        let version = Self::version(&meta);
        if let Some(store) = &self.state {
            if store.get(&unit.id).is_some_and(|p| p.version == version) {
                return Ok(UnitStats {
                    skipped: Some("unchanged".into()),
                    ..Default::default()
                });
            }
        }
        let stats = if let Some((start, end)) = range {
            self.scan_range(key, &meta, start, end, engine, opts, emit)
                .map_err(|e| self.err(&unit.id, e.cause()))?
        } else if is_plain_parquet(key) {
            parquet_reader::scan(self, key, meta.size, engine, opts, emit)?
        } else {
            // Everything else goes through the same readers as local files: compression,
            // encoding and format sniffing, text / JSON lines / CSV / JSON / buffered Parquet.
            let body = self.get_stream(key)?;
            let reader = StreamRead::new(self.rt.handle().clone(), body);
            let ctx = self.unit_ctx(engine, key, opts);
            files::scan_reader(&ctx, key, Box::new(reader), emit)
                .map_err(|e| self.err(key, e.cause()))?
        };
        if let Some(store) = &self.state {
            let st = UnitState {
                version,
                etag: meta.e_tag.clone(),
                size: Some(meta.size),
                last_modified: Some(meta.last_modified.to_rfc3339()),
                scanned_at: now_rfc3339(),
                ..Default::default()
            };
            store
                .put(&unit.id, st)
                .map_err(|e| UnitError::new(&unit.id, e))?;
        }
        Ok(stats)
    }
}

/// An uncompressed Parquet object (by extension): read with ranged requests.
fn is_plain_parquet(key: &str) -> bool {
    let l = key.to_ascii_lowercase();
    l.ends_with(".parquet") || l.ends_with(".parq")
}

/// A blocking `Read` over an object's byte stream, driven by the source's runtime.
pub(crate) struct StreamRead {
    rt: tokio::runtime::Handle,
    stream: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    buf: bytes::Bytes,
}

impl StreamRead {
    pub(crate) fn new(
        rt: tokio::runtime::Handle,
        stream: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    ) -> Self {
        StreamRead {
            rt,
            stream,
            buf: bytes::Bytes::new(),
        }
    }
}

impl std::io::Read for StreamRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// Dispatch for `crate::source::open_target`: `Some` when `target` is an
/// object-store URL (`s3://`, `gs://`, `az://`, `file://`) or names a
/// `[[sources]]` entry with such a URL.
pub fn open_object_target(
    target: &str,
    sources: &[SourceConfig],
    opts: &RemoteOptions,
) -> Option<Result<Box<dyn Source>, UnitError>> {
    let cfg = opts.apply(&crate::config::sources::resolve(target, sources)?);
    is_object_url(&cfg.url).then(|| open(&cfg, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_parquet_by_extension() {
        assert!(is_plain_parquet("a/b.parquet") && is_plain_parquet("B.PARQ"));
        assert!(!is_plain_parquet("a/b.parquet.gz") && !is_plain_parquet("a.csv"));
        assert!(
            is_object_url("s3://b/p") && is_object_url("gs://b") && is_object_url("file:///tmp")
        );
        assert!(!is_object_url("postgres://h/db") && !is_object_url("logs/"));
    }
}
