//! Local files and directories (`childguard scan PATH...`, `file://PATH`).
//!
//! The walk (the `ignore` crate, parallel) honors `--include`/`--exclude`
//! globs and per-directory `.childguardignore` files (gitignore syntax),
//! follows symbolic links and reports loops as errors. Each file is one
//! work unit; its id is the path relative to the target directory (or the
//! target itself for a file target), sorted, so output order is stable.
//!
//! Per file: compression (gzip, zstd; streamed) by magic bytes or extension,
//! then encoding (BOM, UTF-8, GB18030/GBK; see [`sniff::encoding`]), then
//! format (text/logs, CSV/TSV, JSON lines, JSON documents, Parquet). Binary
//! files are skipped and reported as skipped. Text is decoded to UTF-8 and
//! cut into newline-aligned chunks scanned in parallel; line numbers and byte
//! offsets refer to the decoded text. Memory is bounded by the chunk size
//! times the number of chunks in flight; no file is read whole (JSON
//! documents up to `max_json_document_bytes` excepted).
//!
//! Invalid bytes in a UTF-8 (or GB18030, UTF-16) file: decoding is lossy —
//! each malformed sequence becomes U+FFFD (offsets then refer to that decoded
//! text), the whole file is still scanned and its findings reported, and the
//! unit ends with an error naming the file and the offset of the first
//! malformed sequence, so the scan exits 2.
//!
//! Other sources reuse the readers: [`scan_reader`] for any byte stream
//! (object bodies), [`scan_parquet`] for Parquet from any `ChunkReader`.

pub mod chunk;
pub mod decode;
pub mod footer;
mod footer_schema;
pub mod json;
pub mod pages;
pub mod sniff;
pub mod table;

pub use table::{scan_delimited, scan_parquet};

use crate::detect::Engine;
use crate::finding::Finding;
use crate::scan::text::{scan_chunk, TextOrigin};
use crate::source::shard::{byte_ranges, split_unit_id, UnitRange};
use crate::source::{ScanOptions, Source, UnitError, UnitStats, WorkUnit};
use chunk::{Chunk, Chunker};
use decode::{read_head, CountingReader, DecodeReader};
use serde::Deserialize;
use sniff::{Compression, Format};
use std::collections::HashMap;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Configuration of the file source (the `[files]` table of the config;
/// `--include`, `--exclude`, `--chunk-size` on the command line).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSourceConfig {
    /// Globs a file's path (relative to the target directory) must match to be
    /// scanned; empty means every file. `*` also matches `/`.
    pub include: Vec<String>,
    /// Globs of files and directories (relative paths) not to scan.
    pub exclude: Vec<String>,
    /// File name of per-directory ignore files in gitignore syntax.
    pub ignore_file: String,
    /// Follow symbolic links; loops are reported as errors.
    pub follow_links: bool,
    /// Size in bytes of the newline-aligned chunks text is cut into and
    /// scanned in parallel; lines longer than this are scanned in overlapping pieces.
    pub chunk_bytes: usize,
    /// JSON documents up to this many decoded bytes are parsed whole (for key
    /// paths); larger ones are scanned as text.
    pub max_json_document_bytes: usize,
    /// Parquet inside a compressed stream (or an object body) up to this many
    /// bytes is buffered in memory to be read; larger ones are an error.
    pub max_buffered_parquet_bytes: usize,
    /// Largest uncompressed size a Parquet page may declare; a page over it
    /// (or one declaring more than its codec can produce, or a dictionary
    /// larger than its bytes) ends its file with an error before it is decoded.
    pub max_parquet_page_bytes: usize,
    /// Uncompressed UTF-8 text and JSON-lines files larger than this are listed
    /// as line-aligned byte-range units of this size (`PATH#bytes=A..B`), so
    /// one huge log spreads across shards; 0: never split (`--range-bytes`).
    pub range_bytes: u64,
    /// Largest ratio of decompressed to compressed bytes of a gzip or zstd
    /// stream (checked once 1 MiB has been decompressed): a decompression bomb
    /// ends its file with an error naming this limit; the scan goes on.
    pub max_decompression_ratio: u64,
    /// Deepest nesting of objects and arrays in a JSON line or document read
    /// with key paths (at most 127, the parser's own limit). A deeper line or
    /// document is scanned as plain text and its file ends with an error.
    pub max_json_depth: usize,
    /// Longest line (or CSV record) in bytes. Lines longer than `chunk_bytes`
    /// are scanned in overlapping pieces; one longer than this ends its file
    /// with an error after what was read before it.
    pub max_line_bytes: usize,
    /// Most columns in a CSV/TSV header or record, or a Parquet schema; a
    /// wider file is an error (not read).
    pub max_columns: usize,
}

const fn default_chunk_bytes() -> usize {
    8 << 20
}
const fn default_max_json_document_bytes() -> usize {
    // A parsed document takes several times its size; keep the whole under ~150 MB.
    16 << 20
}
const fn default_max_buffered_parquet_bytes() -> usize {
    256 << 20
}
const fn default_max_decompression_ratio() -> u64 {
    // gzip tops out near 1032:1 on zeros; real logs compress 5-50:1.
    200
}
const fn default_max_json_depth() -> usize {
    64
}
const fn default_max_line_bytes() -> usize {
    // Text lines are streamed in pieces; CSV records and JSON lines are held whole.
    256 << 20
}
const fn default_max_columns() -> usize {
    10_000
}
const fn default_follow_links() -> bool {
    true
}
/// Default name of the per-directory ignore file.
pub const IGNORE_FILE: &str = ".childguardignore";

impl Default for FileSourceConfig {
    fn default() -> Self {
        FileSourceConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            ignore_file: IGNORE_FILE.to_string(),
            follow_links: default_follow_links(),
            chunk_bytes: default_chunk_bytes(),
            max_json_document_bytes: default_max_json_document_bytes(),
            max_buffered_parquet_bytes: default_max_buffered_parquet_bytes(),
            max_parquet_page_bytes: pages::default_max_page_bytes(),
            range_bytes: crate::source::shard::default_range_bytes(),
            max_decompression_ratio: default_max_decompression_ratio(),
            max_json_depth: default_max_json_depth(),
            max_line_bytes: default_max_line_bytes(),
            max_columns: default_max_columns(),
        }
    }
}

/// A file that could not be (fully) read. Names the file and the cause, never a value.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot read: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: corrupt or truncated {format}: {message}")]
    Corrupt {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error("{path}: invalid {encoding} at decoded byte {offset}: {count} malformed sequence(s) replaced by U+FFFD; the rest of the file was scanned")]
    Encoding {
        path: String,
        encoding: &'static str,
        offset: u64,
        count: u64,
    },
    #[error("{path}: file changed while it was read ({detail})")]
    Changed { path: String, detail: String },
    #[error("{path}: {message}")]
    Walk { path: String, message: String },
    #[error("{path}: {message}")]
    Unsupported { path: String, message: String },
    /// A robustness limit of [`FileSourceConfig`] was hit; `message` names it.
    #[error("{path}: {message}")]
    Limit { path: String, message: String },
}

/// A robustness limit hit inside a reader, carried through `io::Error`
/// (see [`FileError::from_io`]). Names the limit, never a value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(pub String);

impl LimitExceeded {
    pub fn io(message: String) -> io::Error {
        io::Error::other(LimitExceeded(message))
    }
}

impl FileError {
    pub fn corrupt(path: &str, format: &'static str, e: impl std::fmt::Display) -> Self {
        FileError::Corrupt {
            path: path.to_string(),
            format,
            message: e.to_string(),
        }
    }

    pub(crate) fn limit(path: &str, message: String) -> Self {
        FileError::Limit {
            path: path.to_string(),
            message,
        }
    }

    /// A limit hit below an I/O error, if any.
    fn limit_in(path: &str, e: &io::Error) -> Option<Self> {
        let l = e.get_ref()?.downcast_ref::<LimitExceeded>()?;
        Some(Self::limit(path, l.0.clone()))
    }

    fn from_csv(path: &str, e: csv::Error) -> Self {
        if !matches!(e.kind(), csv::ErrorKind::Io(_)) {
            return FileError::corrupt(path, "CSV", e);
        }
        match e.into_kind() {
            csv::ErrorKind::Io(source) => FileError::Io {
                path: path.to_string(),
                source,
            },
            _ => unreachable!("checked above"),
        }
    }

    pub fn path(&self) -> &str {
        match self {
            FileError::Io { path, .. }
            | FileError::Corrupt { path, .. }
            | FileError::Encoding { path, .. }
            | FileError::Changed { path, .. }
            | FileError::Walk { path, .. }
            | FileError::Unsupported { path, .. }
            | FileError::Limit { path, .. } => path,
        }
    }

    /// The cause without the path prefix.
    pub fn cause(&self) -> String {
        let s = self.to_string();
        let p = format!("{}: ", self.path());
        s.strip_prefix(&p).map(str::to_string).unwrap_or(s)
    }
}

impl From<FileError> for UnitError {
    fn from(e: FileError) -> Self {
        UnitError::new(e.path().to_string(), e.cause())
    }
}

/// Everything a reader needs to scan one unit.
#[derive(Clone, Copy)]
pub struct UnitCtx<'a> {
    /// The detector engine.
    pub engine: &'a Engine,
    /// The scan target as the user gave it (`Finding::target`).
    pub target: &'a str,
    /// `location.path` of the findings.
    pub path: &'a str,
    /// Options of the whole scan (`--rows`, ...).
    pub opts: &'a ScanOptions,
    /// Chunk sizes and limits; `FileSourceConfig::default()` suits other sources.
    pub cfg: &'a FileSourceConfig,
}

/// Chunks scanned at once (per pipeline stage): one per worker thread.
fn chunks_in_flight() -> usize {
    rayon::current_num_threads().max(1)
}

/// What a line-based scan read.
struct LinesRead {
    lines: u64,
    /// Invalid UTF-8 met in raw input: (offset of the first, count).
    invalid: Option<(u64, u64)>,
    /// First JSON line nested deeper than `max_json_depth` (scanned as text).
    too_deep: Option<u64>,
}

/// Scan text (or JSON lines) from a UTF-8 stream in parallel chunks.
/// Invalid UTF-8 in a raw stream is replaced and reported in the result.
fn scan_lines<R: Read + Send>(
    ctx: &UnitCtx<'_>,
    reader: R,
    json_lines: bool,
    emit: &mut dyn FnMut(Finding),
) -> io::Result<LinesRead> {
    scan_lines_from(
        ctx,
        Chunker::new(reader, ctx.cfg.chunk_bytes),
        json_lines,
        emit,
    )
}

fn scan_lines_from<R: Read + Send>(
    ctx: &UnitCtx<'_>,
    chunker: Chunker<R>,
    json_lines: bool,
    emit: &mut dyn FnMut(Finding),
) -> io::Result<LinesRead> {
    let mut chunker = chunker.with_max_line(ctx.cfg.max_line_bytes);
    let scan = |c: &Chunk| {
        let mut out = Vec::new();
        let deep = if json_lines {
            json::scan_jsonl_chunk(ctx, c, &mut out)
        } else {
            scan_text_chunk(ctx, c, &mut out);
            None
        };
        (out, deep)
    };
    let mut too_deep: Option<u64> = None;
    let r = chunk::scan_ordered(&mut chunker, chunks_in_flight(), scan, |(v, deep)| {
        too_deep = too_deep.or(deep);
        v.into_iter().for_each(&mut *emit)
    });
    if let Some(line) = chunker.long_line {
        tracing::warn!(
            path = ctx.path,
            line,
            chunk_bytes = ctx.cfg.chunk_bytes,
            "line longer than the chunk size: scanned in overlapping pieces (child inference per piece)"
        );
    }
    r.map(|_| LinesRead {
        lines: chunker.lines,
        invalid: chunker.invalid_first.map(|o| (o, chunker.invalid_count)),
        too_deep,
    })
}

/// Scan one chunk as plain text, keeping hits that start inside the chunk proper.
pub fn scan_text_chunk(ctx: &UnitCtx<'_>, c: &Chunk, out: &mut Vec<Finding>) {
    let origin = TextOrigin {
        target: ctx.target,
        path: ctx.path,
    };
    let before = out.len();
    scan_chunk(
        ctx.engine,
        &origin,
        &c.text,
        c.first_line,
        c.base_offset,
        out,
    );
    if c.keep < c.text.len() {
        // Findings come in text order: drop the tail that starts in the overlap.
        let limit = c.base_offset + c.keep as u64;
        if let Some(k) = out[before..]
            .iter()
            .position(|f| f.location.byte_offset.unwrap_or(0) >= limit)
        {
            out.truncate(before + k);
        }
    }
}

/// Scan a byte stream named `name` (a file name or object key; its
/// extension helps detection): detects gzip/zstd, encoding and format and
/// emits findings in order. Parquet streams are buffered up to
/// `max_buffered_parquet_bytes` (prefer [`scan_parquet`] with random access).
/// Findings read before an error are emitted; the error names the unit.
pub fn scan_reader(
    ctx: &UnitCtx<'_>,
    name: &str,
    reader: Box<dyn Read + Send>,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    let count = Arc::new(AtomicU64::new(0));
    let mut stats = scan_reader_counted(
        ctx,
        name,
        Box::new(CountingReader::new(reader, count.clone())),
        &count,
        emit,
    )?;
    stats.bytes = count.load(Ordering::Relaxed);
    Ok(stats)
}

/// Run a third-party decoder over untrusted bytes, turning a panic inside it
/// into a `Corrupt` error that names the unit: parquet-rs, for one, panics on
/// some malformed pages (found by `fuzz/run.sh`; the input is kept in
/// tests/fixtures/fuzz/). Findings emitted before the panic stand, as after
/// any reader error; the message never repeats the panic's text, which may
/// quote the data.
pub(crate) fn guard_decoder<T>(
    path: &str,
    format: &'static str,
    decode: impl FnOnce() -> Result<T, FileError>,
) -> Result<T, FileError> {
    catch_decoder_panic(path, format, decode).unwrap_or_else(|| {
        Err(FileError::Corrupt {
            path: path.to_string(),
            format,
            message: "the decoder failed on malformed data".into(),
        })
    })
}

/// Run `decode`; None (logged, without the panic's text) when it panicked.
/// [`guard_decoder`] and the object-store Parquet reader build their own
/// error from that.
pub(crate) fn catch_decoder_panic<R>(
    path: &str,
    format: &'static str,
    decode: impl FnOnce() -> R,
) -> Option<R> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).ok();
    if r.is_none() {
        tracing::warn!(path, format, "decoder panicked on malformed input");
    }
    r
}

/// Fails a decompressed stream once it outgrows `ratio` times the compressed
/// bytes read so far (after the first MiB): a decompression bomb.
struct RatioGuard<R> {
    inner: R,
    raw: Arc<AtomicU64>,
    out: u64,
    ratio: u64,
}

impl<R: Read> Read for RatioGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let raw = self.raw.load(Ordering::Relaxed).max(1);
        if self.out > 1 << 20 && self.out / raw > self.ratio {
            return Err(LimitExceeded::io(format!(
                "decompression bomb: {} bytes decompressed from {raw} compressed bytes, over the ratio of {}:1 (max_decompression_ratio)",
                self.out, self.ratio
            )));
        }
        Ok(n)
    }
}

fn scan_reader_counted(
    ctx: &UnitCtx<'_>,
    name: &str,
    mut reader: Box<dyn Read + Send>,
    raw: &Arc<AtomicU64>,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    let path = ctx.path;
    let io_err = |source: io::Error| FileError::Io {
        path: path.to_string(),
        source,
    };
    let raw_head = read_head(&mut reader, sniff::SNIFF_BYTES).map_err(io_err)?;
    let compression = sniff::compression(name, &raw_head);
    let chained: Box<dyn Read + Send> = Box::new(Cursor::new(raw_head).chain(reader));
    let guard = |inner: Box<dyn Read + Send>| -> Box<dyn Read + Send> {
        Box::new(RatioGuard {
            inner,
            raw: raw.clone(),
            out: 0,
            ratio: ctx.cfg.max_decompression_ratio.max(1),
        })
    };
    let (mut content, inner): (Box<dyn Read + Send>, &str) = match compression {
        Compression::None => (chained, name),
        Compression::Gzip => (
            guard(Box::new(flate2::read::MultiGzDecoder::new(chained))),
            sniff::inner_name(name),
        ),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(chained).map_err(io_err)?;
            (guard(Box::new(d)), sniff::inner_name(name))
        }
    };
    // Errors while reading decompressed content are the stream's fault
    // (or a limit's).
    let stream_err = move |e: io::Error| {
        if let Some(limit) = FileError::limit_in(path, &e) {
            return limit;
        }
        match compression {
            Compression::Gzip => FileError::corrupt(path, "gzip stream", e),
            Compression::Zstd => FileError::corrupt(path, "zstd stream", e),
            Compression::None => FileError::Io {
                path: path.to_string(),
                source: e,
            },
        }
    };
    let head = read_head(&mut content, sniff::SNIFF_BYTES).map_err(stream_err)?;
    let whole = head.len() < sniff::SNIFF_BYTES;
    if sniff::is_parquet(inner, &head) {
        let mut buf = head;
        let limit = ctx.cfg.max_buffered_parquet_bytes;
        content
            .take((limit + 1 - buf.len().min(limit)) as u64)
            .read_to_end(&mut buf)
            .map_err(stream_err)?;
        if buf.len() > limit {
            return Err(FileError::Unsupported {
                path: path.to_string(),
                message: format!("Parquet in a stream larger than {limit} bytes cannot be buffered; store it uncompressed"),
            });
        }
        return scan_parquet(ctx, bytes::Bytes::from(buf), emit);
    }
    let Some(encoding) = sniff::encoding(&head, whole) else {
        return Ok(UnitStats {
            skipped: Some("binary file".into()),
            ..Default::default()
        });
    };
    let (decoded_head, _, _) = encoding.decode(&head[..head.len().min(16 * 1024)]);
    let format = sniff::format(inner, &decoded_head);
    drop(decoded_head);
    let mut stats = UnitStats::default();
    let invalid_utf8 = |(offset, count)| FileError::Encoding {
        path: path.to_string(),
        encoding: encoding.name(),
        offset,
        count,
    };
    let max_depth = ctx.cfg.max_json_depth;
    let too_deep = |line: u64| {
        FileError::limit(
            path,
            format!("line {line}: JSON nested deeper than {max_depth} levels (max_json_depth); scanned as text"),
        )
    };
    // UTF-8 without a BOM: no decoding pass, the chunker validates.
    if encoding == encoding_rs::UTF_8
        && !head.starts_with(&[0xef, 0xbb, 0xbf])
        && matches!(format, Format::Text | Format::JsonLines)
    {
        let raw = Cursor::new(head).chain(content);
        let r = scan_lines(ctx, raw, format == Format::JsonLines, emit).map_err(stream_err)?;
        stats.rows = r.lines;
        if let Some(line) = r.too_deep {
            return Err(too_deep(line));
        }
        return match r.invalid {
            Some(inv) => Err(invalid_utf8(inv)),
            None => Ok(stats),
        };
    }
    let decoder = DecodeReader::new(Cursor::new(head).chain(content), encoding);
    let report = decoder.report();
    match format {
        Format::Text | Format::JsonLines => {
            let r =
                scan_lines(ctx, decoder, format == Format::JsonLines, emit).map_err(stream_err)?;
            stats.rows = r.lines;
            if let Some(line) = r.too_deep {
                return Err(too_deep(line));
            }
        }
        Format::Delimited(d) => {
            // CSV I/O errors come from the stream below it.
            stats = match scan_delimited(ctx, decoder, d, emit) {
                Err(FileError::Io { source, .. }) => return Err(stream_err(source)),
                r => r?,
            };
        }
        Format::JsonDocument => {
            let mut decoder = decoder;
            let limit = ctx.cfg.max_json_document_bytes;
            let mut text = Vec::new();
            (&mut decoder)
                .take(limit as u64 + 1)
                .read_to_end(&mut text)
                .map_err(stream_err)?;
            let text = String::from_utf8(text)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            let mut out = Vec::new();
            let deep = json::too_deep(&text, max_depth);
            if text.len() <= limit && !deep && json::scan_document(ctx, &text, &mut out) {
                stats.rows = text.matches('\n').count() as u64;
                out.into_iter().for_each(&mut *emit);
            } else {
                tracing::warn!(
                    path,
                    "JSON document too large or not valid JSON: scanned as text (no key paths)"
                );
                let rest = Cursor::new(text.into_bytes()).chain(decoder);
                stats.rows = scan_lines(ctx, rest, false, emit)
                    .map_err(stream_err)?
                    .lines;
                if deep {
                    return Err(FileError::limit(
                        path,
                        format!("JSON document nested deeper than {max_depth} levels (max_json_depth); scanned as text"),
                    ));
                }
            }
        }
        Format::Parquet => unreachable!("handled above"),
    }
    if let Some(offset) = report.first_error() {
        return Err(invalid_utf8((offset, report.errors())));
    }
    Ok(stats)
}

/// `Some(json_lines)` when a file with this name and head can be split into
/// byte ranges: uncompressed UTF-8 without a BOM (decoded offsets are file
/// offsets), read line by line (text or JSON lines).
pub fn line_splittable(name: &str, head: &[u8]) -> Option<bool> {
    if sniff::compression(name, head) != Compression::None || sniff::is_parquet(name, head) {
        return None;
    }
    let whole = head.len() < sniff::SNIFF_BYTES;
    if sniff::encoding(head, whole)? != encoding_rs::UTF_8 || head.starts_with(&[0xef, 0xbb, 0xbf])
    {
        return None;
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(16 * 1024)]);
    match sniff::format(name, &text) {
        Format::Text => Some(false),
        Format::JsonLines => Some(true),
        _ => None,
    }
}

/// Byte-range units of a local file, when it is larger than `range_bytes`
/// and [`line_splittable`].
fn file_ranges(fs_path: &Path, size: u64, range_bytes: u64) -> Option<Vec<UnitRange>> {
    let ranges = byte_ranges(size, range_bytes)?;
    let mut f = std::fs::File::open(fs_path).ok()?;
    let head = read_head(&mut f, sniff::SNIFF_BYTES).ok()?;
    line_splittable(&fs_path.to_string_lossy(), &head)?;
    Some(ranges)
}

/// Scan the lines of a local file that start in `[start, end)` (a byte-range
/// unit): line numbers and offsets are those of the whole file (the newlines
/// before `start` are counted), so the findings are exactly those the whole
/// file's scan yields for these lines.
pub fn scan_path_range(
    ctx: &UnitCtx<'_>,
    fs_path: &Path,
    start: u64,
    end: u64,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    use std::io::{BufRead, BufReader, Seek, SeekFrom};
    let path = ctx.path;
    let io_err = |source: io::Error| FileError::Io {
        path: path.to_string(),
        source,
    };
    let md = std::fs::metadata(fs_path).map_err(io_err)?;
    let size = md.len();
    if start >= size {
        return Err(FileError::Changed {
            path: path.to_string(),
            detail: format!("range starts at byte {start} of a {size}-byte file"),
        });
    }
    let mut f = std::fs::File::open(fs_path).map_err(io_err)?;
    let head = read_head(&mut f, sniff::SNIFF_BYTES).map_err(io_err)?;
    let Some(json_lines) = line_splittable(&fs_path.to_string_lossy(), &head) else {
        return Err(FileError::Unsupported {
            path: path.to_string(),
            message: "byte ranges apply to uncompressed UTF-8 text and JSON lines only".into(),
        });
    };
    // The first line starting at or after `b`, and the newlines before it.
    let mut r = BufReader::with_capacity(1 << 20, f);
    r.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut pos = 0u64;
    let mut newlines = 0u64;
    let mut line_start_from =
        |r: &mut BufReader<std::fs::File>, b: u64| -> io::Result<(u64, u64)> {
            // Count whole buffers up to b - 1, then skip to the end of the line holding b - 1.
            while b > 0 && pos < b - 1 {
                let buf = r.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let n = buf.len().min((b - 1 - pos) as usize);
                newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                r.consume(n);
                pos += n as u64;
            }
            if b > 0 {
                let (n, newline) = skip_line_rest(r)?;
                pos += n;
                newlines += newline as u64;
            }
            Ok((pos, newlines))
        };
    let (s, before) = line_start_from(&mut r, start).map_err(io_err)?;
    let e = if end >= size {
        size
    } else {
        line_start_from(&mut r, end).map_err(io_err)?.0
    };
    if s >= e {
        // One line runs through the whole range: the range where it starts scans it.
        return Ok(UnitStats::default());
    }
    let mut f = r.into_inner();
    f.seek(SeekFrom::Start(s)).map_err(io_err)?;
    let chunker = Chunker::new(f.take(e - s), ctx.cfg.chunk_bytes).starting_at(before + 1, s);
    let read = scan_lines_from(ctx, chunker, json_lines, emit).map_err(io_err)?;
    if let Some((offset, count)) = read.invalid {
        return Err(FileError::Encoding {
            path: path.to_string(),
            encoding: "UTF-8",
            offset,
            count,
        });
    }
    let after = std::fs::metadata(fs_path).map_err(io_err)?;
    if after.len() != size || after.modified().ok() != md.modified().ok() {
        return Err(FileError::Changed {
            path: path.to_string(),
            detail: format!("size {size} → {} bytes", after.len()),
        });
    }
    Ok(UnitStats {
        bytes: e - s,
        rows: read.lines,
        skipped: None,
    })
}

/// Consume up to and including the next newline (or to the end of the
/// stream): the rest of the line being read. Returns the bytes consumed and
/// whether a newline ended them.
fn skip_line_rest(r: &mut impl io::BufRead) -> io::Result<(u64, bool)> {
    let mut n = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((n, false));
        }
        match memchr::memchr(b'\n', buf) {
            Some(i) => {
                r.consume(i + 1);
                return Ok((n + i as u64 + 1, true));
            }
            None => {
                let len = buf.len();
                r.consume(len);
                n += len as u64;
            }
        }
    }
}

/// The bytes of a stream up to and including the first newline at or after
/// absolute offset `end - 1` (or the end of the stream): the lines that start
/// before `end`. `pos` is the absolute offset of the stream's next byte.
struct UntilLineAfter<B> {
    inner: B,
    pos: u64,
    end: u64,
    done: bool,
}

impl<B: io::BufRead> Read for UntilLineAfter<B> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() {
            return Ok(0);
        }
        // Where the search for the closing newline starts within `buf`.
        let from = self.end.saturating_sub(1).saturating_sub(self.pos);
        let mut n = buf.len();
        let mut last = false;
        if (from as usize) < buf.len() {
            if let Some(j) = memchr::memchr(b'\n', &buf[from as usize..]) {
                n = from as usize + j + 1;
                last = true;
            }
        }
        let k = n.min(out.len());
        out[..k].copy_from_slice(&buf[..k]);
        self.inner.consume(k);
        self.pos += k as u64;
        self.done = last && k == n;
        Ok(k)
    }
}

/// Scan the lines that start in `[start, end)` of an uncompressed UTF-8 text
/// or JSON-lines object whose bytes `stream` yields from absolute offset
/// `start - 1` (from 0 when `start` is 0): a byte-range unit of an object,
/// read with one ranged request. The unit begins after the first newline at
/// or after `start - 1` and ends with the line that crosses `end`, so the
/// ranges of an object cover each line exactly once. The object's line
/// numbers before `start` are not known: findings carry `line: None`,
/// `range_line` (1-based, within the range), `range` and the object's
/// `byte_offset`, and their ids are keyed by range and line within it.
pub fn scan_line_range(
    ctx: &UnitCtx<'_>,
    stream: Box<dyn Read + Send>,
    json_lines: bool,
    start: u64,
    end: u64,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    use io::BufRead;
    let path = ctx.path;
    let io_err = |source: io::Error| {
        FileError::limit_in(path, &source).unwrap_or_else(|| FileError::Io {
            path: path.to_string(),
            source,
        })
    };
    let mut r = io::BufReader::with_capacity(1 << 20, stream);
    let mut s = start.saturating_sub(1);
    if start > 0 {
        s += skip_line_rest(&mut r).map_err(io_err)?.0;
    }
    if s >= end || r.fill_buf().map_err(io_err)?.is_empty() {
        // One line runs through the whole range: the range where it starts scans it.
        return Ok(UnitStats::default());
    }
    let count = Arc::new(AtomicU64::new(0));
    let body = CountingReader::new(
        UntilLineAfter {
            inner: r,
            pos: s,
            end,
            done: false,
        },
        count.clone(),
    );
    let label = UnitRange::Bytes { start, end }.to_string();
    let chunker = Chunker::new(body, ctx.cfg.chunk_bytes).starting_at(1, s);
    let read = scan_lines_from(ctx, chunker, json_lines, &mut |mut f: Finding| {
        let loc = &mut f.location;
        loc.range_line = loc.line.take();
        loc.range = Some(label.clone());
        f.finding_id = Finding::compute_id(&f.target, &f.location, &f.rule, &f.fingerprint);
        emit(f)
    })
    .map_err(io_err)?;
    if let Some((offset, count)) = read.invalid {
        return Err(FileError::Encoding {
            path: path.to_string(),
            encoding: "UTF-8",
            offset,
            count,
        });
    }
    Ok(UnitStats {
        bytes: count.load(Ordering::Relaxed),
        rows: read.lines,
        skipped: None,
    })
}

fn version(md: &std::fs::Metadata) -> String {
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}:{}", md.len(), mtime)
}

/// Scan one local file at `fs_path`; `ctx.path` names it in findings and errors.
pub fn scan_path(
    ctx: &UnitCtx<'_>,
    fs_path: &Path,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    scan_path_with_progress(ctx, fs_path, None, emit)
}

/// [`scan_path`], adding the bytes read to `progress` as they are read.
pub fn scan_path_with_progress(
    ctx: &UnitCtx<'_>,
    fs_path: &Path,
    progress: Option<&Arc<AtomicU64>>,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, FileError> {
    let path = ctx.path;
    let io_err = |source: io::Error| FileError::Io {
        path: path.to_string(),
        source,
    };
    let before = std::fs::metadata(fs_path).map_err(io_err)?;
    if before.is_dir() {
        return Err(FileError::Unsupported {
            path: path.to_string(),
            message: "is a directory".into(),
        });
    }
    let mut file = std::fs::File::open(fs_path).map_err(io_err)?;
    let n = read_head(&mut file, 4).map_err(io_err)?;
    let head_len = n.len() as u64;
    let name = fs_path.to_string_lossy();
    let count = Arc::new(AtomicU64::new(n.len() as u64));
    let mut streamed = true;
    let result =
        if sniff::compression(&name, &n) == Compression::None && sniff::is_parquet(&name, &n) {
            streamed = false;
            scan_parquet(ctx, file, emit)
        } else {
            let counting = CountingReader {
                inner: file,
                count: count.clone(),
                progress: progress.cloned(),
            };
            let reader = Cursor::new(n).chain(counting);
            scan_reader_counted(ctx, &name, Box::new(reader), &count, emit)
        };
    if let Some(p) = progress {
        // What was not counted while read: Parquet, the sniffed head, a skipped tail.
        let counted = if streamed {
            count.load(Ordering::Relaxed).saturating_sub(head_len)
        } else {
            0
        };
        p.fetch_add(before.len().saturating_sub(counted), Ordering::Relaxed);
    }
    let mut stats = result?;
    stats.bytes = before.len();
    let after = std::fs::metadata(fs_path).map_err(io_err)?;
    let read = count.load(Ordering::Relaxed);
    let detail = if after.len() != before.len() {
        Some(format!("size {} → {} bytes", before.len(), after.len()))
    } else if after.modified().ok() != before.modified().ok() {
        Some("modification time changed".to_string())
    } else if streamed && read > before.len() {
        Some(format!("read {read} bytes of a {}-byte file", before.len()))
    } else {
        None
    };
    if let Some(detail) = detail {
        return Err(FileError::Changed {
            path: path.to_string(),
            detail,
        });
    }
    Ok(stats)
}

enum Entry {
    File(PathBuf),
    Error(String),
}

/// Local files and directories.
pub struct FileSource {
    target: String,
    root: PathBuf,
    is_dir: bool,
    cfg: FileSourceConfig,
    entries: RwLock<HashMap<String, Entry>>,
    progress: Option<Arc<AtomicU64>>,
}

impl FileSource {
    /// `target` as given (goes into findings); `path` the local path it names.
    pub fn open(target: &str, path: &Path, cfg: FileSourceConfig) -> Result<Self, UnitError> {
        let md = std::fs::metadata(path)
            .map_err(|e| UnitError::new(target, format!("cannot read: {e}")))?;
        Ok(FileSource {
            target: target.to_string(),
            root: path.to_path_buf(),
            is_dir: md.is_dir(),
            cfg,
            entries: RwLock::new(HashMap::new()),
            progress: None,
        })
    }

    /// Add the bytes read to `progress` as they are read.
    pub fn with_progress(mut self, progress: Option<Arc<AtomicU64>>) -> Self {
        self.progress = progress;
        self
    }

    fn globs(&self, globs: &[String]) -> Result<globset::GlobSet, UnitError> {
        let mut b = globset::GlobSetBuilder::new();
        for g in globs {
            let glob = globset::GlobBuilder::new(g)
                .literal_separator(false)
                .build()
                .map_err(|e| UnitError::new(&self.target, format!("invalid glob `{g}`: {e}")))?;
            b.add(glob);
        }
        b.build()
            .map_err(|e| UnitError::new(&self.target, format!("invalid globs: {e}")))
    }

    fn walk(&self) -> Result<Vec<WorkUnit>, UnitError> {
        let include = self.globs(&self.cfg.include)?;
        let exclude = self.globs(&self.cfg.exclude)?;
        let root = self.root.clone();
        let mut b = ignore::WalkBuilder::new(&self.root);
        b.standard_filters(false)
            .hidden(false)
            .follow_links(self.cfg.follow_links)
            .add_custom_ignore_filename(&self.cfg.ignore_file)
            .threads(rayon::current_num_threads().clamp(1, 8));
        {
            let root = root.clone();
            let exclude = exclude.clone();
            b.filter_entry(move |e| {
                let rel = rel_path(&root, e.path());
                rel.is_empty()
                    || !(exclude.is_match(&rel)
                        || e.file_name().to_str().is_some_and(|n| exclude.is_match(n)))
            });
        }
        let found: Mutex<Vec<(String, Vec<WorkUnit>, Entry)>> = Mutex::new(Vec::new());
        let ignore_name = self.cfg.ignore_file.clone();
        let range_bytes = self.cfg.range_bytes;
        b.build_parallel().run(|| {
            let root = &root;
            let found = &found;
            let include = &include;
            let ignore_name = &ignore_name;
            Box::new(move |res| {
                match res {
                    Ok(e) => {
                        let Some(ft) = e.file_type() else {
                            return ignore::WalkState::Continue;
                        };
                        if ft.is_dir() {
                            return ignore::WalkState::Continue;
                        }
                        let rel = rel_path(root, e.path());
                        if e.file_name().to_str() == Some(ignore_name.as_str()) {
                            return ignore::WalkState::Continue;
                        }
                        let included = include.is_empty()
                            || include.is_match(&rel)
                            || e.file_name().to_str().is_some_and(|n| include.is_match(n));
                        if !included {
                            return ignore::WalkState::Continue;
                        }
                        let (size, ver) = match e.metadata() {
                            Ok(md) => (Some(md.len()), Some(version(&md))),
                            Err(_) => (None, None),
                        };
                        let units = split_file(&rel, e.path(), size, ver, range_bytes);
                        found
                            .lock()
                            .unwrap()
                            .push((rel, units, Entry::File(e.into_path())));
                    }
                    Err(err) => {
                        let (p, msg) = describe_walk_error(&err);
                        let rel = p.map(|p| rel_path(root, &p)).unwrap_or_default();
                        let rel = if rel.is_empty() { ".".to_string() } else { rel };
                        let unit = WorkUnit {
                            id: rel.clone(),
                            size: None,
                            version: None,
                        };
                        found
                            .lock()
                            .unwrap()
                            .push((rel, vec![unit], Entry::Error(msg)));
                    }
                }
                ignore::WalkState::Continue
            })
        });
        let mut found = found.into_inner().unwrap();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        let mut entries = self.entries.write().unwrap();
        let mut units = Vec::with_capacity(found.len());
        for (id, file_units, entry) in found {
            entries.insert(id, entry);
            units.extend(file_units);
        }
        Ok(units)
    }
}

/// The units of one file: itself, or its byte ranges when it is large and line-oriented.
fn split_file(
    id: &str,
    fs_path: &Path,
    size: Option<u64>,
    version: Option<String>,
    range_bytes: u64,
) -> Vec<WorkUnit> {
    match size.and_then(|s| file_ranges(fs_path, s, range_bytes)) {
        Some(ranges) => ranges
            .into_iter()
            .map(|r| {
                let len = match r {
                    UnitRange::Bytes { start, end } => end - start,
                    UnitRange::Key { .. } => 0,
                };
                WorkUnit {
                    id: r.unit_id(id),
                    size: Some(len),
                    version: version.clone(),
                }
            })
            .collect(),
        None => vec![WorkUnit {
            id: id.to_string(),
            size,
            version,
        }],
    }
}

fn rel_path(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    let s = rel.to_string_lossy();
    if std::path::MAIN_SEPARATOR == '/' {
        s.into_owned()
    } else {
        s.replace(std::path::MAIN_SEPARATOR, "/")
    }
}

/// Path and cause of a walk error, without the `ignore` crate's wrapping.
fn describe_walk_error(e: &ignore::Error) -> (Option<PathBuf>, String) {
    match e {
        ignore::Error::WithPath { path, err } => {
            let (p, m) = describe_walk_error(err);
            (p.or_else(|| Some(path.clone())), m)
        }
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            describe_walk_error(err)
        }
        ignore::Error::Loop { child, .. } => (
            Some(child.clone()),
            "symbolic link loop: it points to one of its ancestor directories".into(),
        ),
        ignore::Error::Io(io) => {
            let msg = if io.raw_os_error() == Some(libc::ELOOP) {
                "symbolic link loop: too many levels of symbolic links".to_string()
            } else {
                format!("cannot read: {io}")
            };
            (None, msg)
        }
        other => (None, other.to_string()),
    }
}

impl Source for FileSource {
    fn target(&self) -> &str {
        &self.target
    }

    fn units(&self) -> Result<Vec<WorkUnit>, UnitError> {
        if self.is_dir {
            return self.walk();
        }
        let md = std::fs::metadata(&self.root)
            .map_err(|e| UnitError::new(&self.target, format!("cannot read: {e}")))?;
        let id = self.root.to_string_lossy().into_owned();
        self.entries
            .write()
            .unwrap()
            .insert(id.clone(), Entry::File(self.root.clone()));
        Ok(split_file(
            &id,
            &self.root,
            Some(md.len()),
            Some(version(&md)),
            self.cfg.range_bytes,
        ))
    }

    fn scan_unit(
        &self,
        unit: &WorkUnit,
        engine: &Engine,
        opts: &ScanOptions,
        emit: &mut dyn FnMut(Finding),
    ) -> Result<UnitStats, UnitError> {
        let (file, range) = match split_unit_id(&unit.id) {
            (file, Some(UnitRange::Bytes { start, end })) => (file, Some((start, end))),
            _ => (unit.id.as_str(), None),
        };
        let fs_path = match self.entries.read().unwrap().get(file) {
            Some(Entry::Error(msg)) => return Err(UnitError::new(unit.id.clone(), msg.clone())),
            Some(Entry::File(p)) => p.clone(),
            None if self.is_dir => self.root.join(file),
            None => self.root.clone(),
        };
        let ctx = UnitCtx {
            engine,
            target: &self.target,
            path: file,
            opts,
            cfg: &self.cfg,
        };
        let r = match range {
            Some((start, end)) => {
                let label = UnitRange::Bytes { start, end }.to_string();
                let r = scan_path_range(&ctx, &fs_path, start, end, &mut |mut f: Finding| {
                    f.location.range = Some(label.clone());
                    emit(f)
                });
                if let (Some(p), Ok(st)) = (&self.progress, &r) {
                    p.fetch_add(st.bytes, Ordering::Relaxed);
                }
                r
            }
            None => scan_path_with_progress(&ctx, &fs_path, self.progress.as_ref(), emit),
        };
        if let Err(e) = &r {
            tracing::debug!(unit = %unit.id, error = %e, "unit failed");
        }
        Ok(r?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::EngineOptions;
    use crate::finding::Category;
    use crate::fingerprint::Fingerprinter;
    use std::io::Write;

    fn engine() -> Engine {
        let as_of = chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        Engine::new(EngineOptions::new(as_of), Fingerprinter::new(b"k")).unwrap()
    }

    fn run(name: &str, bytes: Vec<u8>) -> (Vec<Finding>, Result<UnitStats, FileError>) {
        let e = engine();
        let opts = ScanOptions::default();
        let cfg = FileSourceConfig::default();
        let ctx = UnitCtx {
            engine: &e,
            target: "s3://b",
            path: name,
            opts: &opts,
            cfg: &cfg,
        };
        let mut out = Vec::new();
        let r = scan_reader(&ctx, name, Box::new(Cursor::new(bytes)), &mut |f| {
            out.push(f)
        });
        (out, r)
    }

    #[test]
    fn scan_reader_detects_compression_and_format_from_stream() {
        let csv = "id,sfzh\n1,110105201503071235\n2,x\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(csv.as_bytes()).unwrap();
        let (fs, r) = run("k/students.csv.gz", gz.finish().unwrap());
        let st = r.unwrap();
        assert_eq!(st.rows, 2);
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].location.column.as_deref(), Some("sfzh"));
        assert_eq!((fs[0].count, fs[0].rows_scanned), (Some(1), Some(2)));
        assert_eq!(fs[0].target, "s3://b");

        // No extension: gzip by magic, JSON lines by content.
        let jl = "{\"a\":{\"tel\":\"13812345678\"}}\n";
        let z = zstd::encode_all(jl.as_bytes(), 1).unwrap();
        let (fs, r) = run("k/blob", z);
        assert!(r.is_ok());
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].category, Category::CnMobile);
        assert_eq!(fs[0].location.field.as_deref(), Some("a.tel"));
        assert_eq!(
            fs[0].location.byte_offset,
            Some(jl.find("138").unwrap() as u64)
        );

        let (fs, r) = run("k/x.bin", vec![0, 1, 2, 3, b'1']);
        assert!(fs.is_empty());
        assert_eq!(r.unwrap().skipped.as_deref(), Some("binary file"));
    }

    #[test]
    fn open_target_schemes() {
        let o = crate::source::TargetOptions::default();
        for t in ["ftp://u:pw@h/k", "gopher://h/x", "hdfs://u:pw@h/db"] {
            let e = crate::source::open_target(t, &o)
                .err()
                .expect("unsupported");
            assert!(e.message.contains("unsupported target scheme"), "{e}");
            assert!(!e.to_string().contains("pw"));
        }
        let d = tempfile::tempdir().unwrap();
        let url = format!("file://{}", d.path().display());
        let src = crate::source::open_target(&url, &o).unwrap();
        assert_eq!(src.target(), url);
        assert!(src.units().unwrap().is_empty());
        assert!(crate::source::open_target("/no/such/dir", &o).is_err());
    }
}
