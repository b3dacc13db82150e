//! Object bodies shared by the object-store tests (S3, GCS, Azure): a CSV
//! export, a Parquet file in row groups of 100, and gzip.

use super::*;
use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use std::io::Write;
use std::sync::Arc;

/// 30 rows: `sfzh` holds 10 child IDs and 10 adult IDs, `phone` 15 mobiles
/// (5 on child rows), `order_no` bad-checksum decoys.
pub fn csv_body() -> Vec<u8> {
    let mut s = String::from("name,sfzh,phone,order_no\n");
    for i in 0..30u64 {
        let id = match i % 3 {
            0 => child_id(i),
            1 => adult_id(i),
            _ => String::new(),
        };
        let phone = if i % 2 == 0 { mobile(i) } else { String::new() };
        s.push_str(&format!("学生{i},{id},{phone},{}\n", bad_id(i)));
    }
    s.into_bytes()
}

/// `n` rows, a quarter child IDs, the rest adults; every fifth row a mobile; decoys in `order_no`.
pub fn parquet_body(n: u64) -> Vec<u8> {
    let ids: Vec<i64> = (1..=n as i64).collect();
    let sfzh: Vec<Option<String>> = (0..n)
        .map(|i| {
            if i % 4 == 0 {
                Some(child_id(i))
            } else {
                Some(adult_id(i))
            }
        })
        .collect();
    let phone: Vec<Option<String>> = (0..n).map(|i| (i % 5 == 0).then(|| mobile(i))).collect();
    let decoy: Vec<Option<String>> = (0..n).map(|i| Some(bad_id(i))).collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("sfzh", Arc::new(StringArray::from(sfzh)) as ArrayRef),
        ("phone", Arc::new(StringArray::from(phone)) as ArrayRef),
        ("order_no", Arc::new(StringArray::from(decoy)) as ArrayRef),
    ])
    .unwrap();
    let mut out = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_size(100)
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

/// Gzip-compress.
pub fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}
