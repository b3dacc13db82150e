//! Newline-aligned chunking of a decoded UTF-8 stream with exact line
//! numbers and byte offsets, and an ordered parallel pipeline over chunks.
//!
//! A chunk holds whole lines. A line longer than the chunk size is cut into
//! pieces at a non-word byte (or a character boundary); each piece is scanned
//! together with `overlap` bytes of the next one so a value crossing the cut
//! is still found, and only hits starting inside the piece are kept. The
//! line number of every piece is the line's number.

use rayon::prelude::*;
use std::io::{self, Read};

/// One chunk of decoded text.
#[derive(Debug)]
pub struct Chunk {
    /// Valid UTF-8 text: whole lines, or a piece of a long line plus overlap.
    pub text: String,
    /// 1-based line number of the first byte.
    pub first_line: u64,
    /// Offset of the first byte in the decoded text.
    pub base_offset: u64,
    /// Hits starting at or after this byte offset (within `text`) belong to the next chunk.
    pub keep: usize,
    /// The first line started in an earlier chunk (a piece of a long line).
    pub partial_head: bool,
    /// The last line continues in the next chunk.
    pub partial_tail: bool,
}

/// Splits a decoded stream into chunks.
pub struct Chunker<R> {
    reader: R,
    chunk_bytes: usize,
    overlap: usize,
    buf: Vec<u8>,
    line: u64,
    offset: u64,
    eof: bool,
    in_long_line: bool,
    /// A read error, returned after the data read before it was chunked.
    error: Option<io::Error>,
    /// Offset (in the decoded text) of the first invalid UTF-8 sequence, if any.
    pub invalid_first: Option<u64>,
    /// Invalid UTF-8 sequences replaced by U+FFFD.
    pub invalid_count: u64,
    /// Lines read (complete or not) so far.
    pub lines: u64,
    /// Longest line cut into pieces: (line number, length so far), if any.
    pub long_line: Option<u64>,
    /// Longest line allowed (`max_line_bytes`); a longer one is an error.
    max_line: u64,
    /// Bytes of the current over-long line already cut into chunks.
    long_run: u64,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b == b'_'
}

fn char_boundary(buf: &[u8], mut pos: usize) -> usize {
    let mut steps = 0;
    while steps < 3 && pos > 0 && pos < buf.len() && (buf[pos] & 0xc0) == 0x80 {
        pos -= 1;
        steps += 1;
    }
    pos
}

/// Lossy UTF-8 decoding (each maximal invalid subsequence becomes U+FFFD,
/// as `String::from_utf8_lossy`), with the number of replacements.
fn lossy(b: &[u8]) -> (String, u64) {
    let mut s = String::with_capacity(b.len() + 8);
    let mut n = 0;
    for c in b.utf8_chunks() {
        s.push_str(c.valid());
        if !c.invalid().is_empty() {
            s.push('\u{fffd}');
            n += 1;
        }
    }
    (s, n)
}

/// A cut position at or before `pos`: after a non-word ASCII byte within the
/// last 4 KiB when there is one, else a character boundary.
fn cut_before(buf: &[u8], pos: usize) -> usize {
    if pos >= buf.len() {
        return buf.len();
    }
    let lo = pos.saturating_sub(4096);
    if let Some(i) = buf[lo..pos].iter().rposition(|&b| !is_word(b)) {
        if lo + i + 1 > 0 {
            return lo + i + 1;
        }
    }
    let c = char_boundary(buf, pos);
    if c == 0 {
        pos
    } else {
        c
    }
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, chunk_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(64);
        Chunker {
            reader,
            chunk_bytes,
            overlap: (chunk_bytes / 4).clamp(16, 4096),
            buf: Vec::new(),
            line: 1,
            offset: 0,
            eof: false,
            in_long_line: false,
            error: None,
            invalid_first: None,
            invalid_count: 0,
            lines: 0,
            long_line: None,
            max_line: u64::MAX,
            long_run: 0,
        }
    }

    /// Start numbering at `line` (1-based) and decoded byte `offset`: the
    /// stream is a part of a file that begins at a line start (a byte-range unit).
    pub fn starting_at(mut self, line: u64, offset: u64) -> Self {
        self.line = line;
        self.offset = offset;
        self
    }

    /// Fail (with [`super::LimitExceeded`]) on a line longer than `max` bytes.
    pub fn with_max_line(mut self, max: usize) -> Self {
        self.max_line = (max as u64).max(1);
        self
    }

    /// Fill the buffer; a read error ends the stream after what was read
    /// before it (the error is returned once that is chunked).
    fn fill(&mut self, want: usize) {
        while !self.eof && self.buf.len() < want {
            let need = (want - self.buf.len()) as u64;
            match (&mut self.reader).take(need).read_to_end(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => {
                    self.eof = true;
                    self.error = Some(e);
                }
            }
        }
    }

    /// The next chunk, or None at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let want = self.chunk_bytes + self.overlap;
        if self.buf.capacity() < want {
            self.buf.reserve(want - self.buf.len());
        }
        self.fill(want);
        if self.buf.is_empty() {
            return match self.error.take() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        let partial_head = self.in_long_line;
        let (cut, end, partial_tail) = if self.eof && self.buf.len() <= self.chunk_bytes {
            (self.buf.len(), self.buf.len(), false)
        } else if let Some(nl) =
            memchr::memrchr(b'\n', &self.buf[..self.chunk_bytes.min(self.buf.len())])
        {
            (nl + 1, nl + 1, false)
        } else {
            // A line longer than the chunk: cut it, scan with overlap.
            let cut = cut_before(&self.buf, self.chunk_bytes);
            let end = cut_before(&self.buf, (cut + self.overlap).min(self.buf.len()));
            (cut, end.max(cut), true)
        };
        let newlines = memchr::memchr_iter(b'\n', &self.buf[..cut]).count() as u64;
        if partial_tail {
            let tail = cut - memchr::memrchr(b'\n', &self.buf[..cut]).map_or(0, |p| p + 1);
            self.long_run = if partial_head { self.long_run } else { 0 } + tail as u64;
            if self.long_run > self.max_line {
                let line = self.line + newlines;
                self.buf.clear();
                self.eof = true;
                return Err(super::LimitExceeded::io(format!(
                    "line {line} is longer than {} bytes (max_line_bytes)",
                    self.max_line
                )));
            }
        }
        let rest = self.buf[cut..].to_vec();
        let mut bytes = std::mem::replace(&mut self.buf, rest);
        bytes.truncate(end);
        // Input is UTF-8 (raw or from a DecodeReader). Invalid sequences are
        // replaced; `cut` and offsets then count decoded bytes.
        // SIMD validation first (std's check is byte-at-a-time on CJK text:
        // ~4% of a log scan); the std path below then sees only invalid input.
        let valid = simdutf8::basic::from_utf8(&bytes).is_ok();
        let (text, cut) = match if valid {
            // SAFETY: simdutf8 has just validated `bytes` as UTF-8.
            Ok(unsafe { String::from_utf8_unchecked(bytes) })
        } else {
            String::from_utf8(bytes)
        } {
            Ok(s) => (s, cut),
            Err(e) => {
                let bytes = e.into_bytes();
                let (mut head, n) = lossy(&bytes[..cut]);
                if n > 0 && self.invalid_first.is_none() {
                    let valid =
                        std::str::from_utf8(&bytes[..cut]).map_or_else(|e| e.valid_up_to(), |_| 0);
                    self.invalid_first = Some(self.offset + valid as u64);
                }
                self.invalid_count += n;
                let decoded_cut = head.len();
                // The overlap is decoded again (and counted) with the next chunk.
                head.push_str(&lossy(&bytes[cut..]).0);
                (head, decoded_cut)
            }
        };
        let chunk = Chunk {
            text,
            first_line: self.line,
            base_offset: self.offset,
            keep: cut,
            partial_head,
            partial_tail,
        };
        if partial_tail && self.long_line.is_none() {
            self.long_line = Some(self.line + newlines);
        }
        self.line += newlines;
        self.lines += newlines;
        self.offset += cut as u64;
        self.in_long_line = partial_tail;
        if !partial_tail
            && self.eof
            && self.buf.is_empty()
            && !chunk.text.ends_with('\n')
            && cut > 0
        {
            self.lines += 1; // last line without a newline
        }
        Ok(Some(chunk))
    }
}

/// Read chunks and scan them in parallel, results handed to `emit` in
/// stream order. Three stages overlap: while window k is emitted on the
/// calling thread (printing is often the slowest part), window k+1 is
/// scanned by the pool and window k+2 is read. At most three windows of
/// `window` chunks are in memory. A read error ends the stream: what was
/// read before it is scanned and emitted, then the error is returned.
pub fn scan_ordered<R, T, S, E>(
    chunker: &mut Chunker<R>,
    window: usize,
    scan: S,
    mut emit: E,
) -> io::Result<()>
where
    R: Read + Send,
    T: Send,
    S: Fn(&Chunk) -> T + Sync,
    E: FnMut(T),
{
    let window = window.max(1);
    let read_batch = |c: &mut Chunker<R>| -> (Vec<Chunk>, Option<io::Error>, bool) {
        let mut v = Vec::with_capacity(window);
        while v.len() < window {
            match c.next_chunk() {
                Ok(Some(ch)) => v.push(ch),
                Ok(None) => return (v, None, true),
                Err(e) => return (v, Some(e), true),
            }
        }
        (v, None, false)
    };
    let (mut batch, mut err, mut end) = read_batch(chunker);
    let mut ready: Vec<T> = Vec::new();
    loop {
        if batch.is_empty() && ready.is_empty() {
            return err.map_or(Ok(()), Err);
        }
        let mut scanned: Vec<T> = Vec::new();
        let mut next = (Vec::new(), None, true);
        let scan = &scan;
        let to_scan = std::mem::take(&mut batch);
        let reader: Option<&mut Chunker<R>> = if end { None } else { Some(&mut *chunker) };
        rayon::in_place_scope(|s| {
            if !to_scan.is_empty() {
                let (scanned, next) = (&mut scanned, &mut next);
                s.spawn(move |_| match reader {
                    Some(r) => {
                        let (a, b) = rayon::join(
                            || to_scan.par_iter().map(scan).collect::<Vec<T>>(),
                            || read_batch(r),
                        );
                        *scanned = a;
                        *next = b;
                    }
                    None => *scanned = to_scan.par_iter().map(scan).collect(),
                });
            }
            for r in ready.drain(..) {
                emit(r);
            }
        });
        ready = scanned;
        if !end {
            batch = next.0;
            err = next.1;
            end = next.2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &str, size: usize) -> Vec<Chunk> {
        let mut c = Chunker::new(text.as_bytes(), size);
        let mut v = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            v.push(ch);
        }
        v
    }

    #[test]
    fn chunks_are_line_aligned_with_exact_numbers() {
        let text: String = (1..=100)
            .map(|i| format!("line {i} some text here\n"))
            .collect();
        let cs = chunks(&text, 64);
        assert!(cs.len() > 10);
        let mut joined = String::new();
        for c in &cs {
            assert!(c.text.ends_with('\n'));
            assert_eq!(c.base_offset as usize, joined.len());
            let expect_line = joined.matches('\n').count() as u64 + 1;
            assert_eq!(c.first_line, expect_line);
            assert!(c.text.starts_with(&format!("line {expect_line} ")));
            joined.push_str(&c.text[..c.keep]);
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn long_lines_are_cut_with_overlap() {
        let long = "数据 ".repeat(100) + "x".repeat(300).as_str();
        let text = format!("a\n{long}\nb\n");
        let cs = chunks(&text, 64);
        let mut joined = String::new();
        for c in &cs {
            assert_eq!(c.base_offset as usize, joined.len());
            joined.push_str(&c.text[..c.keep]);
            if c.partial_head || c.partial_tail {
                assert!(c.first_line == 2 || c.first_line == 1, "{}", c.first_line);
            }
        }
        assert_eq!(joined, text);
        assert!(cs.iter().any(|c| c.partial_tail && c.text.len() > c.keep));
    }

    #[test]
    fn invalid_utf8_is_replaced_and_offsets_count_decoded_bytes() {
        let mut raw = Vec::new();
        for i in 0..200 {
            raw.extend_from_slice(format!("line {i} 数据").as_bytes());
            if i % 37 == 0 {
                raw.extend_from_slice(b"\xff\xc3");
            }
            raw.push(b'\n');
        }
        // One long line of invalid bytes and letters, cut into pieces.
        raw.extend(std::iter::repeat_n(b"ab\xfe".iter().copied(), 100).flatten());
        raw.push(b'\n');
        let decoded = String::from_utf8_lossy(&raw).into_owned();
        let mut c = Chunker::new(&raw[..], 64);
        let mut joined = String::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            assert_eq!(ch.base_offset as usize, joined.len());
            joined.push_str(&ch.text[..ch.keep]);
        }
        assert_eq!(joined, decoded);
        let first = decoded.find('\u{fffd}').unwrap() as u64;
        assert_eq!(c.invalid_first, Some(first));
        assert_eq!(c.invalid_count, decoded.matches('\u{fffd}').count() as u64);
    }
}
