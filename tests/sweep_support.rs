//! Helpers shared by the sweep integration tests (included with `#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run childguard in `dir` with a private state dir, a fixed fingerprint key and extra env.
pub fn cg(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_childguard"));
    c.current_dir(dir)
        .args(args)
        .env("CHILDGUARD_STATE_DIR", dir.join(".state"))
        .env("CHILDGUARD_FINGERPRINT_KEY", "test-key")
        .env("USER", "tester")
        .env_remove("RUST_LOG")
        .env_remove("CHILDGUARD_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run childguard")
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sweep plan --json` etc.: parse the last stdout line as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    let s = out(o);
    let line = s
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {}", err(o)));
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("bad json {line}: {e}; stderr: {}", err(o)))
}

pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        out(o),
        err(o)
    );
}

pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("childguard.toml");
    std::fs::write(&p, body).unwrap();
    p
}

pub fn receipt(dir: &Path, plan: &str) -> serde_json::Value {
    let p = dir.join(".state/receipts").join(format!("{plan}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// Plan (as alice), approve (as bob), run; returns (plan id, run output).
pub fn plan_approve_run(
    dir: &Path,
    plan_args: &[&str],
    env: &[(&str, String)],
) -> (String, Output) {
    let mut a = vec!["sweep", "plan", "--json", "--as", "alice"];
    a.extend_from_slice(plan_args);
    let p = cg(dir, &a, env);
    ok(&p);
    let id = json(&p)["id"].as_str().unwrap().to_string();
    ok(&cg(
        dir,
        &["sweep", "approve", &id, "--by", "bob", "--comment", "ok"],
        env,
    ));
    let r = cg(dir, &["sweep", "run", &id, "--json"], env);
    (id, r)
}

/// Create a bucket on moto_server (unsigned PUT; moto does not check signatures).
pub fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let hostport = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
}

pub fn s3_store(endpoint: &str, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
    std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

pub async fn s3_put(store: &dyn object_store::ObjectStore, key: &str, data: Vec<u8>) {
    store
        .put(&object_store::path::Path::from(key), data.into())
        .await
        .unwrap();
}

pub async fn s3_get(store: &dyn object_store::ObjectStore, key: &str) -> Option<Vec<u8>> {
    match store.get(&object_store::path::Path::from(key)).await {
        Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("{key}: {e}"),
    }
}

/// A Parquet file with columns id (int64), user_id (utf8), phone (utf8), created_at (utf8 timestamp text).
pub fn parquet_bytes(rows: &[(i64, String, String, String)]) -> Vec<u8> {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("phone", DataType::Utf8, true),
        Field::new("created_at", DataType::Utf8, true),
    ]));
    let b = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            std::sync::Arc::new(StringArray::from(
                rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            )),
            std::sync::Arc::new(StringArray::from(
                rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
            )),
            std::sync::Arc::new(StringArray::from(
                rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    buf
}

/// (id, user_id, phone, created_at) rows of a Parquet file written by [`parquet_bytes`]; panics if unreadable.
pub fn parquet_rows(data: &[u8]) -> Vec<(i64, Option<String>, Option<String>, Option<String>)> {
    use arrow::array::{Array, Int64Array, StringArray};
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::copy_from_slice(data),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        assert_eq!(b.num_columns(), 4, "schema unchanged");
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let s = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (u, p, c) = (s(1), s(2), s(3));
        for i in 0..b.num_rows() {
            let g = |a: &StringArray| {
                if a.is_null(i) {
                    None
                } else {
                    Some(a.value(i).to_string())
                }
            };
            out.push((id.value(i), g(&u), g(&p), g(&c)));
        }
    }
    out
}
