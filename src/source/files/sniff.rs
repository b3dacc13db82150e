//! Format, compression and encoding detection from a file name and the
//! first bytes of its (decompressed) content.

use encoding_rs::{Encoding, GB18030, UTF_16BE, UTF_16LE, UTF_8};

/// How many bytes of the head are sampled for detection.
pub const SNIFF_BYTES: usize = 64 * 1024;

/// Stream compression wrapped around the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What a (decompressed) file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text and logs, scanned line by line.
    Text,
    /// Delimited table with a header row (CSV: `,`, TSV: tab).
    Delimited(u8),
    /// One JSON value per line.
    JsonLines,
    /// One JSON document.
    JsonDocument,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Delimited(b'\t') => "tsv",
            Format::Delimited(_) => "csv",
            Format::JsonLines => "jsonl",
            Format::JsonDocument => "json",
            Format::Parquet => "parquet",
        }
    }
}

fn ext(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    match base.rsplit_once('.') {
        Some((stem, e)) if !stem.is_empty() => e.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Compression by magic bytes, else by extension.
pub fn compression(name: &str, head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        return Compression::Gzip;
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Compression::Zstd;
    }
    match ext(name).as_str() {
        // A corrupt stream with the extension is still reported as that stream.
        "gz" | "gzip" => Compression::Gzip,
        "zst" | "zstd" => Compression::Zstd,
        _ => Compression::None,
    }
}

/// The name without a compression extension (`app.log.gz` → `app.log`).
pub fn inner_name(name: &str) -> &str {
    for sfx in [".gz", ".gzip", ".zst", ".zstd", ".GZ", ".ZST"] {
        if let Some(s) = name.strip_suffix(sfx) {
            return s;
        }
    }
    name
}

/// True when the name says Parquet or the head starts with the Parquet magic.
pub fn is_parquet(name: &str, head: &[u8]) -> bool {
    head.starts_with(b"PAR1") || matches!(ext(name).as_str(), "parquet" | "pq")
}

/// Format of decoded text by extension, then by content (`decoded_head` is UTF-8).
pub fn format(name: &str, decoded_head: &str) -> Format {
    match ext(name).as_str() {
        "csv" => return Format::Delimited(b','),
        "tsv" | "tab" => return Format::Delimited(b'\t'),
        "jsonl" | "ndjson" => return Format::JsonLines,
        "json" => {
            return if looks_like_json_lines(decoded_head) {
                Format::JsonLines
            } else {
                Format::JsonDocument
            }
        }
        _ => {}
    }
    if looks_like_json_lines(decoded_head) {
        return Format::JsonLines;
    }
    Format::Text
}

/// The first non-empty line is a complete JSON object and is followed by
/// another line (or is the whole file): a JSON-lines file.
fn looks_like_json_lines(head: &str) -> bool {
    let mut lines = head
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return false;
    };
    let t = first.trim_start();
    if !t.starts_with('{') {
        return false;
    }
    serde_json::from_str::<serde::de::IgnoredAny>(first).is_ok()
}

/// Encoding of a file from its head: a BOM, else valid UTF-8, else valid
/// GB18030 (which covers GBK), else UTF-8 (invalid bytes are then reported).
/// `None` means binary (NUL bytes or mostly control bytes without a BOM).
pub fn encoding(head: &[u8], whole: bool) -> Option<&'static Encoding> {
    if head.starts_with(&[0xef, 0xbb, 0xbf]) {
        return Some(UTF_8);
    }
    if head.starts_with(&[0xff, 0xfe]) {
        return Some(UTF_16LE);
    }
    if head.starts_with(&[0xfe, 0xff]) {
        return Some(UTF_16BE);
    }
    let probe = &head[..head.len().min(8192)];
    if memchr::memchr(0, probe).is_some() {
        return None;
    }
    match std::str::from_utf8(head) {
        Ok(_) => return Some(UTF_8),
        // Only an incomplete character cut off by the sample's end.
        Err(e) if e.error_len().is_none() && !whole => return Some(UTF_8),
        Err(_) => {}
    }
    // GB18030: decode the head without replacement; drop up to 3 trailing
    // bytes that may be a character cut off by the sample's end.
    let mut end = head.len();
    for _ in 0..4 {
        if GB18030
            .decode_without_bom_handling_and_without_replacement(&head[..end])
            .is_some()
        {
            return Some(GB18030);
        }
        if whole || end == 0 {
            break;
        }
        end -= 1;
    }
    let control = probe
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)) || b == 0x7f)
        .count();
    if !probe.is_empty() && control * 10 > probe.len() {
        return None;
    }
    Some(UTF_8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_encodings() {
        assert_eq!(
            encoding("身份证 110105201503071235\n".as_bytes(), true),
            Some(UTF_8)
        );
        let (gb, _, _) = GB18030.encode("学生身份证号码 110105201503071235 家长\n");
        assert_eq!(encoding(&gb, true), Some(GB18030));
        assert_eq!(encoding(&[0xff, 0xfe, b'a', 0], true), Some(UTF_16LE));
        assert_eq!(encoding(&[0xfe, 0xff, 0, b'a'], true), Some(UTF_16BE));
        assert_eq!(encoding(b"ab\0cd", true), None);
        // A UTF-8 character cut off by the sample end is still UTF-8.
        let s = "学生".as_bytes();
        assert_eq!(encoding(&s[..4], false), Some(UTF_8));
    }

    #[test]
    fn detects_formats() {
        assert_eq!(format("a.csv", ""), Format::Delimited(b','));
        assert_eq!(format("a.TSV", ""), Format::Delimited(b'\t'));
        assert_eq!(format("a.log", "{\"a\":1}\n{\"a\":2}\n"), Format::JsonLines);
        assert_eq!(format("a.json", "{\n \"a\": 1\n}\n"), Format::JsonDocument);
        assert_eq!(
            format("a.json", "{\"a\": 1}\n{\"a\": 2}\n"),
            Format::JsonLines
        );
        assert_eq!(format("a.log", "plain {text\n"), Format::Text);
        assert_eq!(inner_name("x/app.log.gz"), "x/app.log");
        assert_eq!(compression("a.bin", &[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            compression("a", &[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert!(is_parquet("x", b"PAR1...."));
    }
}
