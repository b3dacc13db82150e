//! Text searcher: one engine pass over a chunk of decoded text, hits mapped
//! to exact 1-based lines and byte offsets, child inference per line.

use crate::detect::{Engine, Hit};
use crate::finding::{Finding, Location};

/// Where a chunk of text comes from.
#[derive(Debug, Clone)]
pub struct TextOrigin<'a> {
    /// The scan target as the user gave it.
    pub target: &'a str,
    /// Path of the file (relative to the target directory) or object key.
    pub path: &'a str,
}

/// Scan `chunk` (whole lines of decoded text), whose first line is
/// `first_line` (1-based) and whose first byte is at `base_offset` in the
/// decoded text. Appends findings in text order.
pub fn scan_chunk(
    engine: &Engine,
    origin: &TextOrigin<'_>,
    chunk: &str,
    first_line: u64,
    base_offset: u64,
    out: &mut Vec<Finding>,
) {
    let mut hits = Vec::new();
    engine.scan_text(chunk, &mut hits);
    if hits.is_empty() {
        return;
    }
    hits.sort_by_key(|h| (h.start, h.end));
    out.reserve(hits.len());
    // Id hash states after the parts shared by a rule's findings in this
    // file (a text finding's place is its path: rule, target and path are
    // most of the bytes an id hashes).
    let mut prefixes: Vec<(&'static str, sha2::Sha256)> = Vec::new();
    let place = Location {
        path: Some(origin.path.to_string()),
        ..Default::default()
    };
    let bytes = chunk.as_bytes();
    let mut line = first_line;
    let mut pos = 0usize; // bytes before `pos` have been counted into `line`
                          // Each line's hits are taken off the front (moved into findings, not copied).
    let mut hits = std::collections::VecDeque::from(hits);
    while let Some(first) = hits.front() {
        line += memchr::memchr_iter(b'\n', &bytes[pos..first.start]).count() as u64;
        pos = first.start;
        let line_end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |e| pos + e);
        let j = hits.partition_point(|h| h.start < line_end);
        let child = engine.infer_child(hits.range(..j).filter_map(|h| h.evidence.as_ref()));
        for h in hits.drain(..j) {
            let off = base_offset + h.start as u64;
            let prefix = match prefixes.iter().find(|(r, _)| std::ptr::eq(*r, h.rule)) {
                Some((_, p)) => p.clone(),
                None => {
                    let p = Finding::id_prefix(origin.target, &place, h.rule);
                    prefixes.push((h.rule, p.clone()));
                    p
                }
            };
            let location = text_location(origin, line, off, None);
            out.push(make_finding(origin, h, location, child, prefix));
        }
    }
}

/// Build a text finding from a hit (its mask and fingerprint move into it).
pub fn to_finding(
    origin: &TextOrigin<'_>,
    h: Hit,
    line: u64,
    byte_offset: u64,
    field: Option<String>,
    child: Option<bool>,
) -> Finding {
    let location = text_location(origin, line, byte_offset, field);
    // The id prefix hashes the place (path, field), not the line or offset.
    let prefix = Finding::id_prefix(origin.target, &location, h.rule);
    make_finding(origin, h, location, child, prefix)
}

/// Where a text finding is: path, 1-based line, byte offset, JSON field.
fn text_location(
    origin: &TextOrigin<'_>,
    line: u64,
    byte_offset: u64,
    field: Option<String>,
) -> Location {
    Location {
        path: Some(origin.path.to_string()),
        line: Some(line),
        byte_offset: Some(byte_offset),
        field,
        ..Default::default()
    }
}

/// [`to_finding`] at `location`, given the id's [`Finding::id_prefix`]
/// state for the hit's rule at its path and field.
fn make_finding(
    origin: &TextOrigin<'_>,
    h: Hit,
    location: Location,
    child: Option<bool>,
    id_prefix: sha2::Sha256,
) -> Finding {
    let fingerprint = h.fingerprint.hex();
    let finding_id = Finding::finish_id(id_prefix, &location, &fingerprint);
    Finding {
        finding_id,
        target: origin.target.to_string(),
        location,
        category: h.category,
        rule: h.rule.to_string(),
        child,
        confidence: Finding::round_confidence(h.confidence),
        masked: h.masked,
        fingerprint,
        sensitivity: h.sensitivity,
        rows_scanned: None,
        count: None,
        child_count: None,
        rows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::EngineOptions;
    use crate::fingerprint::Fingerprinter;

    #[test]
    fn lines_and_offsets_are_exact() {
        let e = Engine::new(
            EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
            Fingerprinter::new(b"k"),
        )
        .unwrap();
        let text = "a\nid=110105201503071235\n\nphone 13812345678 x\n";
        let mut out = Vec::new();
        let o = TextOrigin {
            target: "t",
            path: "p.log",
        };
        scan_chunk(&e, &o, text, 10, 100, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].location.line, Some(11));
        assert_eq!(out[0].location.byte_offset, Some(105));
        assert_eq!(out[0].child, Some(true));
        assert_eq!(out[1].location.line, Some(13));
        assert_eq!(out[1].location.byte_offset, Some(100 + 25 + 6));
        assert_eq!(out[1].child, None);
    }
}
