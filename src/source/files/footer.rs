//! A structural check of a Parquet footer before parquet-rs decodes it.
//!
//! parquet-rs (55) trusts the element counts of the footer's Thrift lists:
//! a 700-byte file claiming a list of billions of elements makes it reserve
//! tens of GB, and a failed allocation aborts the whole process — no
//! `catch_unwind` can turn that into the file's error (found by
//! `fuzz/run.sh`, input kept in tests/fixtures/fuzz/). This walks the
//! footer's Thrift compact encoding once, without allocating, and rejects
//! a list, set or map that claims more elements than bytes remain (every
//! element takes at least one byte), a nesting deeper than [`MAX_DEPTH`],
//! and a truncated value. Valid footers pass unchanged.

/// Deeper Thrift nesting than any Parquet footer has (the schema is a flat
/// list of elements; nested column types do not nest the Thrift).
pub const MAX_DEPTH: usize = 64;

/// Check the Thrift compact encoding of a Parquet footer (`FileMetaData`).
pub fn check_footer(meta: &[u8]) -> Result<(), String> {
    let mut w = Walker { b: meta, pos: 0 };
    w.structure(0)?;
    Ok(())
}

/// Check the footer at the end of a Parquet file of `len` bytes, reading
/// through `get(start, len)`. Files too short to have a footer, and
/// encrypted footers (`PARE`), are left to parquet-rs.
pub fn check_file_footer<E: std::fmt::Display>(
    len: u64,
    mut get: impl FnMut(u64, usize) -> Result<bytes::Bytes, E>,
) -> Result<(), String> {
    if len < 12 {
        return Ok(());
    }
    let tail = get(len - 8, 8).map_err(|e| format!("reading the footer: {e}"))?;
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Ok(());
    }
    let meta_len = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    if meta_len + 8 > len {
        return Err(format!(
            "footer length {meta_len} exceeds the file size {len}"
        ));
    }
    let meta = get(len - 8 - meta_len, meta_len as usize)
        .map_err(|e| format!("reading the footer: {e}"))?;
    check_footer(&meta).map_err(|e| format!("malformed footer: {e}"))
}

struct Walker<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Walker<'_> {
    fn left(&self) -> usize {
        self.b.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, String> {
        let v = *self
            .b
            .get(self.pos)
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        self.pos += 1;
        Ok(v)
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        if n > self.left() as u64 {
            return Err(format!(
                "a value of {n} bytes at byte {} runs past the footer",
                self.pos
            ));
        }
        self.pos += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("overlong varint at byte {}", self.pos))
    }

    /// A count of elements that each take at least one byte.
    fn count(&mut self, n: u64, what: &str) -> Result<u64, String> {
        if n > self.left() as u64 {
            return Err(format!(
                "a {what} of {n} elements at byte {} has only {} bytes left",
                self.pos,
                self.left()
            ));
        }
        Ok(n)
    }

    fn structure(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Ok(()); // STOP
            }
            if h >> 4 == 0 {
                self.varint()?; // long-form field id
            }
            match h & 0x0f {
                1 | 2 => {} // boolean held in the field type
                t => self.value(t, depth + 1)?,
            }
        }
    }

    fn value(&mut self, t: u8, depth: usize) -> Result<(), String> {
        match t {
            1 | 2 | 3 => self.skip(1),   // bool (in a list: one byte), byte
            4..=6 => self.varint().map(drop), // i16, i32, i64
            7 => self.skip(8),           // double
            8 => {
                let n = self.varint()?;
                self.skip(n) // binary / string
            }
            9 | 10 => {
                let h = self.byte()?;
                let mut n = u64::from(h >> 4);
                if n == 15 {
                    n = self.varint()?;
                }
                let n = self.count(n, "list")?;
                let et = h & 0x0f;
                for _ in 0..n {
                    self.value(et, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let n = self.count(n, "map")?;
                let kv = self.byte()?;
                for _ in 0..n {
                    self.value(kv >> 4, depth + 1)?;
                    self.value(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.structure(depth),
            _ => Err(format!("unknown Thrift type {t} at byte {}", self.pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer_of(file: &[u8]) -> &[u8] {
        let n = file.len();
        let m = u32::from_le_bytes(file[n - 8..n - 4].try_into().unwrap()) as usize;
        &file[n - 8 - m..n - 8]
    }

    #[test]
    fn a_real_footer_passes() {
        let file = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/seeds/reader_parquet/a.parquet"
        ))
        .unwrap();
        check_footer(footer_of(&file)).unwrap();
    }

    #[test]
    fn a_list_longer_than_the_footer_is_rejected() {
        let file = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fuzz/parquet-footer-alloc.parquet"
        ))
        .unwrap();
        let e = check_footer(footer_of(&file)).unwrap_err();
        assert!(e.contains("elements") || e.contains("runs past the footer"), "{e}");
    }

    #[test]
    fn hand_made_encodings() {
        // struct { 1: list<i32> [1, 2] } STOP
        check_footer(&[0x19, 0x25, 0x02, 0x04, 0x00]).unwrap();
        // the same list claiming 2^31 elements
        let e = check_footer(&[0x19, 0xf5, 0x80, 0x80, 0x80, 0x80, 0x08, 0x02, 0x00]).unwrap_err();
        assert!(e.contains("2147483648 elements"), "{e}");
        // truncated binary
        assert!(check_footer(&[0x18, 0x10, b'a']).is_err());
        // nesting: struct in struct ... deeper than MAX_DEPTH
        let mut deep = vec![0x1c; MAX_DEPTH + 2];
        deep.extend(vec![0; MAX_DEPTH + 3]);
        assert!(check_footer(&deep).unwrap_err().contains("nesting"));
        // empty map, bool fields
        check_footer(&[0x1b, 0x00, 0x11, 0x12, 0x00]).unwrap();
    }
}
