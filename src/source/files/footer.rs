//! A structural check of a Parquet footer before parquet-rs decodes it.
//!
//! parquet-rs (55) trusts the element counts of the footer's Thrift lists
//! (`Vec::with_capacity(count)`) and reads every known field as the type its
//! schema says, whatever type the bytes declare: a 700-byte file claiming a
//! list of billions of elements makes it reserve tens of GB, and a failed
//! allocation aborts the whole process — no `catch_unwind` can turn that
//! into the file's error (found by `fuzz/run.sh`, inputs kept in
//! tests/fixtures/fuzz/). This walks the footer's Thrift compact encoding
//! once, without allocating, the way parquet-rs will read it: known fields
//! must carry the type parquet-rs reads them as (so the walk and the decoder
//! stay on the same bytes; the table is generated from parquet-rs's own
//! `format.rs` into `footer_schema.rs`), unknown fields are skipped by their
//! declared type as parquet-rs does. It rejects a list claiming more
//! elements than bytes remain (every element takes at least one byte), a
//! nesting deeper than [`MAX_DEPTH`], a type mismatch and a truncated value.
//! Valid footers pass unchanged.
//!
//! Regenerating `footer_schema.rs` after a parquet upgrade: for every
//! `impl TSerializable for X` in parquet's `format.rs` that is not an enum
//! (`read_i32` newtype), list each `N => { let val = …read_T()… }` arm as
//! `(S::X, N) => T::…`, `Vec<Y>` arms as `T::List(&…)`, enum fields as I32.

pub use super::footer_schema::Struct as S;

/// The type parquet-rs reads a field or list element as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    Bool,
    I8,
    I16,
    I32,
    I64,
    Double,
    Binary,
    Struct(S),
    List(&'static T),
}

impl T {
    /// Does the compact-protocol type code `code` declare this type?
    fn declared_by(self, code: u8) -> bool {
        match self {
            T::Bool => code == 1 || code == 2,
            T::I8 => code == 3,
            T::I16 => code == 4,
            T::I32 => code == 5,
            T::I64 => code == 6,
            T::Double => code == 7,
            T::Binary => code == 8,
            T::List(_) => code == 9,
            T::Struct(_) => code == 12,
        }
    }
}

/// Deeper Thrift nesting than any Parquet footer has (the schema is a flat
/// list of elements; nested column types do not nest the Thrift).
pub const MAX_DEPTH: usize = 64;

/// Check the Thrift compact encoding of a Parquet footer (`FileMetaData`).
pub fn check_footer(meta: &[u8]) -> Result<(), String> {
    let mut w = Walker { b: meta, pos: 0 };
    w.structure(Some(S::FileMetaData), 0)
}

/// Check one Thrift struct `s` at the start of `b` (a page header, say);
/// its encoded length.
pub fn check_struct(b: &[u8], s: S) -> Result<usize, String> {
    let mut w = Walker { b, pos: 0 };
    w.structure(Some(s), 0)?;
    Ok(w.pos)
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

    /// A list header: (element type code, element count), the count checked
    /// against the bytes left (every element takes at least one byte).
    fn list_header(&mut self) -> Result<(u8, u64), String> {
        let h = self.byte()?;
        let mut n = u64::from(h >> 4);
        if n == 15 {
            n = self.varint()?;
        }
        if n > self.left() as u64 {
            return Err(format!(
                "a list of {n} elements at byte {} has only {} bytes left",
                self.pos,
                self.left()
            ));
        }
        Ok((h & 0x0f, n))
    }

    /// A struct: `Some(s)` when parquet-rs reads it as `s` (known fields
    /// typed), None when it skips it (every field by its declared type).
    fn structure(&mut self, s: Option<S>, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        let mut last: i16 = 0;
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Ok(()); // STOP
            }
            let code = h & 0x0f;
            let id = match h >> 4 {
                0 => {
                    let z = self.varint()?;
                    ((z >> 1) as i64 ^ -((z & 1) as i64)) as i16
                }
                d => last.wrapping_add(i16::from(d)),
            };
            last = id;
            match s.and_then(|s| super::footer_schema::field(s, id)) {
                Some(want) => {
                    if !want.declared_by(code) {
                        return Err(format!(
                            "field {id} of {s:?} at byte {} has type code {code}, not {want:?}",
                            self.pos,
                            s = s.expect("typed")
                        ));
                    }
                    if want != T::Bool {
                        self.typed(want, depth + 1)?;
                    }
                }
                None if code == 1 || code == 2 => {} // a boolean field holds its value in the type
                None => self.untyped(code, depth + 1)?,
            }
        }
    }

    /// A value parquet-rs reads as `t`.
    fn typed(&mut self, t: T, depth: usize) -> Result<(), String> {
        match t {
            T::Bool | T::I8 => self.skip(1),
            T::I16 | T::I32 | T::I64 => self.varint().map(drop),
            T::Double => self.skip(8),
            T::Binary => {
                let n = self.varint()?;
                self.skip(n)
            }
            T::Struct(s) => self.structure(Some(s), depth),
            T::List(elem) => {
                if depth > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH}"));
                }
                let (code, n) = self.list_header()?;
                if !elem.declared_by(code) {
                    return Err(format!(
                        "a list at byte {} has elements of type code {code}, not {elem:?}",
                        self.pos
                    ));
                }
                for _ in 0..n {
                    self.typed(*elem, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    /// A value parquet-rs skips: walked by its declared type code.
    fn untyped(&mut self, code: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        match code {
            1..=3 => self.skip(1), // bool (as an element: one byte), byte
            4..=6 => self.varint().map(drop),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let (et, n) = self.list_header()?;
                for _ in 0..n {
                    self.untyped(et, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                if n > self.left() as u64 {
                    return Err(format!(
                        "a map of {n} entries at byte {} runs past the footer",
                        self.pos
                    ));
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.untyped(kv >> 4, depth + 1)?;
                    self.untyped(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.structure(None, depth),
            _ => Err(format!("unknown Thrift type {code} at byte {}", self.pos)),
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

    /// The two footers `fuzz/run.sh` found that made parquet-rs abort.
    #[test]
    fn the_fuzzed_footers_are_rejected() {
        for f in [
            "parquet-footer-alloc.parquet",
            "parquet-footer-mistyped.parquet",
        ] {
            let file = std::fs::read(format!(
                "{}/tests/fixtures/fuzz/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            assert!(check_footer(footer_of(&file)).is_err(), "{f}");
        }
    }

    #[test]
    fn hand_made_encodings() {
        // FileMetaData { 1: version = 1, 5: key_value_metadata = [] } STOP
        check_footer(&[0x15, 0x02, 0x49, 0x0c, 0x00]).unwrap();
        // version declared as a binary: parquet-rs would read it as an i32
        assert!(check_footer(&[0x18, 0x01, b'a', 0x00])
            .unwrap_err()
            .contains("type code 8"));
        // key_value_metadata claiming 2^31 elements
        let e = check_footer(&[0x59, 0xfc, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00]).unwrap_err();
        assert!(e.contains("2147483648 elements"), "{e}");
        // an unknown field (id 99): a list of 2 i32 skipped, then STOP
        check_footer(&[0x09, 0xc6, 0x01, 0x25, 0x02, 0x04, 0x00]).unwrap();
        // truncated created_by string
        assert!(check_footer(&[0x68, 0x10, b'a']).is_err());
        // nesting: an unknown struct field in a struct ... deeper than MAX_DEPTH
        let mut deep = vec![0x0c, 0xc6, 0x01];
        deep.extend(vec![0x1c; MAX_DEPTH + 2]);
        deep.extend(vec![0; MAX_DEPTH + 4]);
        assert!(check_footer(&deep).unwrap_err().contains("nesting"));
    }
}
