//! Streaming decoding of any supported encoding to UTF-8, with a record of
//! the first malformed sequence (replaced by U+FFFD, never printed).

use encoding_rs::{CoderResult, Decoder, Encoding};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Shared record of decoding problems, readable after the stream is consumed.
#[derive(Debug, Default)]
pub struct DecodeReport {
    /// Decoded byte offset of the first replacement + 1 (0 = none).
    first_error: AtomicU64,
    /// Number of malformed sequences replaced (counted per decode call).
    errors: AtomicU64,
}

impl DecodeReport {
    /// Offset in the decoded text of the first malformed sequence.
    pub fn first_error(&self) -> Option<u64> {
        match self.first_error.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n - 1),
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

const IN_BUF: usize = 256 * 1024;

/// A `Read` yielding valid UTF-8 decoded from `inner` (a BOM is removed).
pub struct DecodeReader<R> {
    inner: R,
    dec: Decoder,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    eof: bool,
    done: bool,
    /// Decoded output that did not fit the caller's (tiny) buffer.
    pending: Vec<u8>,
    pending_pos: usize,
    decoded: u64,
    report: Arc<DecodeReport>,
}

impl<R: Read> DecodeReader<R> {
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        DecodeReader {
            inner,
            dec: encoding.new_decoder_with_bom_removal(),
            inbuf: vec![0; IN_BUF],
            in_pos: 0,
            in_len: 0,
            eof: false,
            done: false,
            pending: Vec::new(),
            pending_pos: 0,
            decoded: 0,
            report: Arc::new(DecodeReport::default()),
        }
    }

    pub fn report(&self) -> Arc<DecodeReport> {
        self.report.clone()
    }

    fn decode_into(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done {
                return Ok(0);
            }
            if self.in_pos == self.in_len && !self.eof {
                self.in_pos = 0;
                self.in_len = 0;
                let n = loop {
                    match self.inner.read(&mut self.inbuf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                self.in_len = n;
                if n == 0 {
                    self.eof = true;
                }
            }
            let src = &self.inbuf[self.in_pos..self.in_len];
            let (res, read, written, replaced) = self.dec.decode_to_utf8(src, out, self.eof);
            self.in_pos += read;
            if replaced {
                self.report.errors.fetch_add(1, Ordering::Relaxed);
                if self.report.first_error.load(Ordering::Relaxed) == 0 {
                    let at =
                        memchr::memmem::find(&out[..written], "\u{fffd}".as_bytes()).unwrap_or(0);
                    self.report
                        .first_error
                        .store(self.decoded + at as u64 + 1, Ordering::Relaxed);
                }
            }
            self.decoded += written as u64;
            if self.eof && res == CoderResult::InputEmpty && self.in_pos == self.in_len {
                self.done = true;
            }
            if written > 0 || self.done {
                return Ok(written);
            }
        }
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.pending_pos < self.pending.len() {
            let n = (self.pending.len() - self.pending_pos).min(out.len());
            out[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
            self.pending_pos += n;
            return Ok(n);
        }
        if out.len() >= 16 {
            return self.decode_into(out);
        }
        // Too small for one decoded character in every case: go through `pending`.
        let mut tmp = std::mem::take(&mut self.pending);
        tmp.clear();
        tmp.resize(1024, 0);
        let n = self.decode_into(&mut tmp)?;
        tmp.truncate(n);
        self.pending = tmp;
        self.pending_pos = 0;
        let k = n.min(out.len());
        out[..k].copy_from_slice(&self.pending[..k]);
        self.pending_pos = k;
        Ok(k)
    }
}

/// Counts the raw bytes read through it (for the changed-while-read check and progress).
pub struct CountingReader<R> {
    pub inner: R,
    pub count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Read up to `n` bytes (fewer only at end of stream).
pub fn read_head<R: Read + ?Sized>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n.min(1 << 20));
    r.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{GB18030, UTF_16BE, UTF_16LE, UTF_8};

    fn decode(bytes: &[u8], enc: &'static Encoding, step: usize) -> (String, Option<u64>) {
        let mut r = DecodeReader::new(bytes, enc);
        let rep = r.report();
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (String::from_utf8(out).unwrap(), rep.first_error())
    }

    #[test]
    fn decodes_all_encodings_with_any_buffer_size() {
        let text = "学生 110105201503071235\n家长 13812345678\n";
        let (gb, _, _) = GB18030.encode(text);
        let mut le = vec![0xff, 0xfe];
        let mut be = vec![0xfe, 0xff];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
        }
        let mut bom8 = vec![0xef, 0xbb, 0xbf];
        bom8.extend_from_slice(text.as_bytes());
        for step in [1, 3, 17, 4096] {
            assert_eq!(decode(&gb, GB18030, step), (text.to_string(), None));
            assert_eq!(decode(&le, UTF_16LE, step), (text.to_string(), None));
            assert_eq!(decode(&be, UTF_16BE, step), (text.to_string(), None));
            assert_eq!(decode(&bom8, UTF_8, step), (text.to_string(), None));
        }
    }

    #[test]
    fn reports_first_invalid_sequence() {
        let (s, err) = decode(b"abc\xffdef\xfe", UTF_8, 4096);
        assert_eq!(s, "abc\u{fffd}def\u{fffd}");
        assert_eq!(err, Some(3));
    }
}
