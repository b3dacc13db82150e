//! A check of the page headers of the Parquet column chunks parquet-rs is
//! about to decode.
//!
//! parquet-rs (55, and 57 the same) trusts the sizes a page header declares:
//! a dictionary page claiming 2^28 values makes it fill a vector of that many
//! defaults before it decodes one (`DictDecoder::set_dict`), and a SNAPPY or
//! LZ4 page claiming a large uncompressed size makes it zero-fill a buffer of
//! that size before decompressing. A 799-byte file (found by `fuzz/run.sh`,
//! kept as tests/fixtures/fuzz/parquet-page-memory.parquet) drove the process
//! to 5.2 GB resident; a bigger claim aborts it. This walks every page header
//! of the column chunks to be read, before they are decoded, and rejects:
//! - a header that is not well-formed Thrift (checked with the footer walker,
//!   so the Thrift decoder never trusts a length either),
//! - a negative size or a page running past the end of its column chunk
//!   (parquet-rs rejects those too, but only when it reaches them),
//! - an uncompressed size over `max_page_bytes` (`max_parquet_page_bytes`),
//! - an uncompressed size a SNAPPY or LZ4 page cannot decompress to (over
//!   the codec's largest ratio: 32:1 and 256:1, with slack),
//! - a dictionary page declaring more values than its bytes can hold at the
//!   smallest encoded width of the column's physical type.
//!
//! Valid files pass unchanged: every check is a property the Parquet format
//! itself guarantees of a page that parquet-rs would decode successfully.

use super::footer::S;
use bytes::Bytes;
use parquet::basic::{Compression, Type as PhysicalType};
use parquet::file::metadata::ParquetMetaData;
use parquet::thrift::TSerializable;

/// Default for `max_parquet_page_bytes`: writers cut pages at ~1 MiB; a page
/// holding a few huge values can be larger, none legitimately this large.
pub const fn default_max_page_bytes() -> usize {
    256 << 20
}

/// The largest page header read (statistics can hold long min/max values).
const MAX_HEADER_BYTES: usize = 16 << 20;

/// One column chunk to check: where it is and how its pages are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// First byte (the dictionary page when there is one).
    pub start: u64,
    /// Total compressed bytes, page headers included.
    pub len: u64,
    pub physical: PhysicalType,
    /// Bytes per value of FIXED_LEN_BYTE_ARRAY columns.
    pub type_length: i32,
    pub codec: Compression,
    /// Column path, for errors.
    pub column: String,
}

/// The column chunks of `row_groups` whose leaf column `leaf(i)` selects,
/// in a file of `file_len` bytes.
pub fn chunks(
    md: &ParquetMetaData,
    file_len: u64,
    row_groups: &[usize],
    leaf: impl Fn(usize) -> bool,
) -> Result<Vec<Chunk>, String> {
    let mut out = Vec::new();
    for &g in row_groups {
        let rg = md.row_group(g);
        for (i, c) in rg.columns().iter().enumerate() {
            if !leaf(i) {
                continue;
            }
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let len = c.compressed_size();
            if start < 0 || len < 0 {
                return Err(format!(
                    "column `{}` of row group {g}: negative offset or size in the footer",
                    c.column_path()
                ));
            }
            if (start as u64).saturating_add(len as u64) > file_len {
                return Err(format!(
                    "column `{}` of row group {g}: its {len} bytes at byte {start} run past the end of the \
                     {file_len}-byte file",
                    c.column_path()
                ));
            }
            let descr = c.column_descr();
            out.push(Chunk {
                start: start as u64,
                len: len as u64,
                physical: descr.physical_type(),
                type_length: descr.type_length(),
                codec: c.compression(),
                column: c.column_path().string(),
            });
        }
    }
    Ok(out)
}

/// Check every page header of `chunk`, reading through `read(offset, len)`
/// (absolute file offsets, within the chunk).
pub fn check_chunk<E: std::fmt::Display>(
    chunk: &Chunk,
    max_page_bytes: usize,
    mut read: impl FnMut(u64, usize) -> Result<Bytes, E>,
) -> Result<(), String> {
    let end = chunk
        .start
        .checked_add(chunk.len)
        .ok_or_else(|| format!("column `{}`: chunk size overflows", chunk.column))?;
    let mut pos = chunk.start;
    let mut page = 0usize;
    while pos < end {
        let left = (end - pos) as usize;
        let (header, header_len) = read_header(&mut read, pos, left)
            .map_err(|m| format!("column `{}`, page {page} at byte {pos}: {m}", chunk.column))?;
        check_header(chunk, &header, max_page_bytes)
            .map_err(|m| format!("column `{}`, page {page} at byte {pos}: {m}", chunk.column))?;
        let body = header.compressed_page_size as u64;
        if body > (left - header_len) as u64 {
            return Err(format!(
                "column `{}`, page {page} at byte {pos}: {body} bytes of page data run past \
                 the end of the column chunk ({} bytes left)",
                chunk.column,
                left - header_len
            ));
        }
        pos += header_len as u64 + body;
        page += 1;
    }
    Ok(())
}

/// The page header at `pos` and its encoded length; `left` bytes remain in
/// the chunk. Reads a small window first and widens it for long headers.
fn read_header<E: std::fmt::Display>(
    read: &mut impl FnMut(u64, usize) -> Result<Bytes, E>,
    pos: u64,
    left: usize,
) -> Result<(parquet::format::PageHeader, usize), String> {
    let mut window = left.min(4096);
    loop {
        let buf = read(pos, window).map_err(|e| format!("reading the page header: {e}"))?;
        match super::footer::check_struct(&buf, S::PageHeader) {
            Ok(n) => {
                let mut prot = thrift::protocol::TCompactInputProtocol::new(&buf[..n]);
                let h = parquet::format::PageHeader::read_from_in_protocol(&mut prot)
                    .map_err(|e| format!("malformed page header: {e}"))?;
                return Ok((h, n));
            }
            Err(_) if window < left && window < MAX_HEADER_BYTES => {
                window = left.min(window * 16).min(MAX_HEADER_BYTES);
            }
            Err(m) => return Err(format!("malformed page header: {m}")),
        }
    }
}

fn check_header(
    chunk: &Chunk,
    h: &parquet::format::PageHeader,
    max_page_bytes: usize,
) -> Result<(), String> {
    let (c, u) = (h.compressed_page_size, h.uncompressed_page_size);
    if c < 0 || u < 0 {
        return Err(format!(
            "negative page size ({c} compressed, {u} uncompressed)"
        ));
    }
    let (c, u) = (c as u64, u as u64);
    if u > max_page_bytes as u64 {
        return Err(format!(
            "page declares {u} uncompressed bytes, over the limit of {max_page_bytes} (max_parquet_page_bytes)"
        ));
    }
    // Codecs whose decoder zero-fills the declared size before decompressing.
    let ratio = match chunk.codec {
        Compression::SNAPPY => Some(32),
        Compression::LZ4 | Compression::LZ4_RAW => Some(256),
        _ => None,
    };
    if let Some(r) = ratio {
        if u > c.saturating_mul(r).saturating_add(1024) {
            return Err(format!(
                "page declares {u} uncompressed bytes from {c} {:?}-compressed bytes, \
                 more than the codec can produce",
                chunk.codec
            ));
        }
    }
    if h.type_ == parquet::format::PageType::DICTIONARY_PAGE {
        let n = h
            .dictionary_page_header
            .as_ref()
            .map(|d| d.num_values)
            .ok_or("dictionary page without its header")?;
        if n < 0 {
            return Err(format!("dictionary page declares {n} values"));
        }
        // Dictionaries are PLAIN-encoded: every value takes at least this many bits.
        let bits: u64 = match chunk.physical {
            PhysicalType::BOOLEAN => 1,
            PhysicalType::INT32 | PhysicalType::FLOAT => 32,
            PhysicalType::INT64 | PhysicalType::DOUBLE => 64,
            PhysicalType::INT96 => 96,
            PhysicalType::BYTE_ARRAY => 32,
            PhysicalType::FIXED_LEN_BYTE_ARRAY => 8 * chunk.type_length.max(1) as u64,
        };
        if (n as u64).saturating_mul(bits) > u.saturating_mul(8) {
            return Err(format!(
                "dictionary page declares {n} {:?} values in {u} bytes",
                chunk.physical
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::format::{DictionaryPageHeader, Encoding, PageHeader};

    fn encode(h: &PageHeader) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut p = thrift::protocol::TCompactOutputProtocol::new(&mut out);
            h.write_to_out_protocol(&mut p).unwrap();
        }
        out
    }

    fn dict_page(num_values: i32, u: i32, c: i32) -> PageHeader {
        PageHeader::new(
            parquet::format::PageType::DICTIONARY_PAGE,
            u,
            c,
            None,
            None,
            None,
            Some(DictionaryPageHeader::new(num_values, Encoding::PLAIN, None)),
            None,
        )
    }

    fn chunk(len: u64, physical: PhysicalType, codec: Compression) -> Chunk {
        Chunk {
            start: 0,
            len,
            physical,
            type_length: -1,
            codec,
            column: "c".into(),
        }
    }

    fn check(bytes: &[u8], chunk: &Chunk) -> Result<(), String> {
        let b = Bytes::copy_from_slice(bytes);
        check_chunk(chunk, default_max_page_bytes(), |o, n| {
            Ok::<_, String>(b.slice(o as usize..o as usize + n))
        })
    }

    /// Check a chunk of one dictionary page (`n` values, sizes `u`/`c`)
    /// followed by `data` bytes of page data.
    fn dict_chunk(
        n: i32,
        u: i32,
        c: i32,
        data: usize,
        physical: PhysicalType,
        codec: Compression,
    ) -> Result<(), String> {
        let mut file = encode(&dict_page(n, u, c));
        file.extend(vec![0u8; data]);
        check(&file, &chunk(file.len() as u64, physical, codec))
    }

    #[test]
    fn a_plausible_dictionary_page_passes_and_an_inflated_one_fails() {
        dict_chunk(
            10,
            80,
            80,
            80,
            PhysicalType::INT64,
            Compression::UNCOMPRESSED,
        )
        .unwrap();
        let e = dict_chunk(
            335_544_319,
            80,
            80,
            80,
            PhysicalType::INT64,
            Compression::UNCOMPRESSED,
        )
        .unwrap_err();
        assert!(
            e.contains("dictionary page declares 335544319 INT64 values in 80 bytes"),
            "{e}"
        );
    }

    #[test]
    fn sizes_are_bounded() {
        let zstd = Compression::ZSTD(Default::default());
        let e = dict_chunk(1, 1 << 30, 10, 10, PhysicalType::INT32, zstd).unwrap_err();
        assert!(
            e.contains("over the limit of 268435456 (max_parquet_page_bytes)"),
            "{e}"
        );
        let e =
            dict_chunk(1, 100_000, 10, 10, PhysicalType::INT32, Compression::SNAPPY).unwrap_err();
        assert!(e.contains("more than the codec can produce"), "{e}");
        let e = dict_chunk(
            1,
            8,
            100,
            10,
            PhysicalType::INT32,
            Compression::UNCOMPRESSED,
        )
        .unwrap_err();
        assert!(e.contains("run past the end of the column chunk"), "{e}");
        let e = check(
            &[0x15, 0xff],
            &chunk(2, PhysicalType::INT32, Compression::UNCOMPRESSED),
        )
        .unwrap_err();
        assert!(e.contains("malformed page header"), "{e}");
    }

    #[test]
    fn every_page_of_real_files_passes() {
        // Files written by parquet-rs with each codec, dictionary and plain pages, v1 and v2.
        use arrow::array::{ArrayRef, Int64Array, StringArray};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::{WriterProperties, WriterVersion};
        use std::sync::Arc;
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::LZ4_RAW,
            Compression::ZSTD(Default::default()),
            Compression::GZIP(Default::default()),
            Compression::BROTLI(Default::default()),
        ] {
            for v in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
                let ids: ArrayRef =
                    Arc::new(Int64Array::from_iter_values((0..50_000).map(|i| i % 7)));
                let names: ArrayRef =
                    Arc::new(StringArray::from_iter_values((0..50_000).map(|i| {
                        if i % 3 == 0 {
                            "x".repeat(200)
                        } else {
                            format!("n{i}")
                        }
                    })));
                let batch =
                    arrow::record_batch::RecordBatch::try_from_iter([("id", ids), ("name", names)])
                        .unwrap();
                let props = WriterProperties::builder()
                    .set_compression(codec)
                    .set_writer_version(v)
                    .set_data_page_size_limit(4096)
                    .build();
                let mut buf = Vec::new();
                let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
                w.write(&batch).unwrap();
                w.close().unwrap();
                let b = Bytes::from(buf);
                let md = parquet::file::metadata::ParquetMetaDataReader::new()
                    .parse_and_finish(&b)
                    .unwrap();
                let all: Vec<usize> = (0..md.num_row_groups()).collect();
                let cs = chunks(&md, b.len() as u64, &all, |_| true).unwrap();
                assert_eq!(cs.len(), 2 * md.num_row_groups());
                for c in &cs {
                    check_chunk(c, default_max_page_bytes(), |o, n| {
                        Ok::<_, String>(b.slice(o as usize..(o as usize + n).min(b.len())))
                    })
                    .unwrap_or_else(|e| panic!("{codec:?} {v:?}: {e}"));
                }
            }
        }
    }
}
