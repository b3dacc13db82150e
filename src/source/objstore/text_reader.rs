//! Text and CSV objects, streamed: decompression by extension, then either
//! newline-aligned chunks through the text searcher (exact lines and byte
//! offsets in the decoded text) or CSV records through the table searcher.

use super::{Compression, ObjectSource, StreamRead};
use crate::detect::Engine;
use crate::finding::{Finding, Location};
use crate::scan::table::TableScanner;
use crate::scan::text::{scan_chunk, TextOrigin};
use crate::source::{ScanOptions, UnitError, UnitStats};
use futures::stream::BoxStream;
use std::io::Read;

/// Bytes read per chunk before cutting at the last newline.
const CHUNK: usize = 1 << 20;

fn reader<'a>(
    src: &'a ObjectSource,
    body: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    c: Compression,
) -> Result<Box<dyn Read + 'a>, std::io::Error> {
    let raw = StreamRead::new(&src.rt, body);
    Ok(match c {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(zstd::Decoder::new(raw)?),
    })
}

/// Decode a chunk of whole lines: UTF-8, else GB18030 (a superset of GBK).
fn decode(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => encoding_rs::GB18030.decode_without_bom_handling(b).0,
    }
}

pub(super) fn scan_text(
    src: &ObjectSource,
    key: &str,
    body: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    c: Compression,
    engine: &Engine,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, UnitError> {
    let mut r = reader(src, body, c).map_err(|e| src.err(key, format!("decompressing: {e}")))?;
    let origin = TextOrigin {
        target: &src.target,
        path: key,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let mut line = 1u64;
    let mut offset = 0u64;
    let mut bytes = 0u64;
    let mut first = true;
    let mut out = Vec::new();
    loop {
        // Fill up to CHUNK bytes.
        let start = buf.len();
        buf.resize(CHUNK.max(start + 4096), 0);
        let mut filled = start;
        let mut eof = false;
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(src.err(
                        key,
                        format!("reading after {} bytes: {e}", bytes + filled as u64),
                    ))
                }
            }
        }
        buf.truncate(filled);
        if first {
            first = false;
            if memchr::memchr(0, &buf[..buf.len().min(8192)]).is_some() {
                return Ok(UnitStats {
                    bytes: 0,
                    rows: 0,
                    skipped: Some("binary".into()),
                });
            }
        }
        let cut = if eof {
            buf.len()
        } else {
            memchr::memrchr(b'\n', &buf).map_or(buf.len(), |p| p + 1)
        };
        let text = decode(&buf[..cut]);
        scan_chunk(engine, &origin, &text, line, offset, &mut out);
        for f in out.drain(..) {
            emit(f);
        }
        line += memchr::memchr_iter(b'\n', text.as_bytes()).count() as u64;
        offset += text.len() as u64;
        bytes += cut as u64;
        buf.drain(..cut);
        if eof {
            break;
        }
    }
    Ok(UnitStats {
        bytes,
        rows: line - 1,
        skipped: None,
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn scan_csv(
    src: &ObjectSource,
    key: &str,
    body: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    c: Compression,
    delimiter: u8,
    engine: &Engine,
    opts: &ScanOptions,
    emit: &mut dyn FnMut(Finding),
) -> Result<UnitStats, UnitError> {
    let r = reader(src, body, c).map_err(|e| src.err(key, format!("decompressing: {e}")))?;
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(r);
    let headers: Vec<String> = csv
        .byte_headers()
        .map_err(|e| src.err(key, format!("reading the CSV header: {e}")))?
        .iter()
        .map(|h| decode(h).trim().to_string())
        .collect();
    let base = Location {
        path: Some(key.to_string()),
        ..Default::default()
    };
    let mut scanner = TableScanner::new(engine, &src.target, base, &headers, opts.rows);
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    loop {
        match csv.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                n += 1;
                let cells: Vec<std::borrow::Cow<'_, str>> = rec.iter().map(decode).collect();
                let refs: Vec<Option<&str>> = cells.iter().map(|c| Some(c.as_ref())).collect();
                let k = opts.rows.then(|| n.to_string());
                scanner.add_row(&refs, k.as_deref());
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Err(src.err(
                    key,
                    format!("CSV record near line {line}: {}", csv_cause(&e)),
                ));
            }
        }
    }
    for f in scanner.finish() {
        emit(f);
    }
    Ok(UnitStats {
        bytes: csv.position().byte(),
        rows: n,
        skipped: None,
    })
}

/// A CSV error's cause without the record contents.
fn csv_cause(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields, expected {expected_len}"),
        _ => "malformed record".into(),
    }
}
