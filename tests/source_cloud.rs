//! `az://` targets against Azurite, Microsoft's Azure Blob Storage emulator
//! (npm `azurite`, telemetry off, loopback only), through the same
//! object-store source as S3: list with a prefix, read CSV, gzip text and
//! Parquet (ranged reads of the footer and row groups) with the same counts
//! as the S3 test for the same objects. scripts/test.sh installs Azurite and
//! the Azure SDK for Python (used only to create the container).
//!
//! `gs://` targets against PyPI's `gcp-storage-emulator`, started by
//! tests/emulators/gcs_server.py, which adds the ETag and Last-Modified
//! headers real GCS sends on downloads (the emulator omits them and
//! object_store requires them). childguard reaches it as documented for
//! GCS-compatible servers: a service-account key file with `gcs_base_url`
//! and `disable_oauth`.

mod common;
mod dbfix;

use childguard::config::sources::SourceConfig;
use childguard::finding::Category;
use childguard::source::db::RemoteOptions;
use childguard::source::objstore::ObjectSource;
use childguard::source::{ScanOptions, Source};
use dbfix::objects::*;
use dbfix::*;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutPayload};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server process on a loopback port, killed on drop.
struct Emulator(Child);

impl Emulator {
    fn start(mut cmd: Command, port: u16, what: &str) -> Emulator {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} is installed (scripts/test.sh installs it): {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{what} did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Emulator(child)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The estate the emulator holds: the same objects as the S3 test.
fn load(rt: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>) {
    let put = |key: &str, body: Vec<u8>| {
        rt.block_on(store.put(&ObjPath::from(key), PutPayload::from(body)))
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    };
    put("exports/students.csv", csv_body());
    let log = format!("boot ok\nuser {} signed in\n", child_id(3));
    put("exports/logs/app.log.gz", gz(log.as_bytes()));
    put("exports/data/students.parquet", parquet_body(300));
    put("other/outside.csv", csv_body());
}

/// Scan the `exports/` prefix and check units, counts and child counts.
fn check(cfg: &SourceConfig) {
    let src = ObjectSource::open(cfg, &RemoteOptions::default()).unwrap();
    let units: Vec<String> = src.units().unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(
        units,
        [
            "exports/data/students.parquet",
            "exports/logs/app.log.gz",
            "exports/students.csv"
        ]
    );
    let out = scan_all(
        &src,
        &ScanOptions {
            full: false,
            sample_rows: 1000,
            rows: true,
        },
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let id = out
        .find("exports/students.csv", "sfzh", Category::CnResidentId)
        .unwrap();
    assert_eq!(
        (id.rows_scanned, id.count, id.child_count),
        (Some(30), Some(20), Some(10))
    );
    assert_eq!(id.target, cfg.url);
    assert!(out
        .find("exports/students.csv", "order_no", Category::CnResidentId)
        .is_none());
    let pq = out
        .find(
            "exports/data/students.parquet",
            "sfzh",
            Category::CnResidentId,
        )
        .unwrap();
    assert_eq!(
        (pq.rows_scanned, pq.count, pq.child_count),
        (Some(300), Some(300), Some(75))
    );
    assert_eq!(pq.rows.as_ref().map(Vec::len), Some(75));
    let log = out.in_table("exports/logs/app.log.gz");
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].category, log[0].location.line, log[0].child),
        (Category::CnResidentId, Some(2), Some(true))
    );
    let all = serde_json::to_string(&out.findings).unwrap();
    assert!(!all.contains(&child_id(3)), "a raw ID in the findings");
}

/// Azurite's well-known development account and key (public, in Microsoft's docs).
const AZ_ACCOUNT: &str = "devstoreaccount1";
const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn azurite_exe() -> String {
    std::env::var("CHILDGUARD_AZURITE").unwrap_or_else(|_| {
        let local = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/emulators/node_modules/.bin/azurite-blob");
        if local.exists() {
            local.to_string_lossy().into_owned()
        } else {
            "azurite-blob".into()
        }
    })
}

#[test]
fn azure_container_on_azurite() {
    let port = common::free_port();
    let mut cmd = Command::new(azurite_exe());
    cmd.args([
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
    ]);
    let _server = Emulator::start(cmd, port, "Azurite (npm azurite)");
    let container = common::unique_name("cg-az").replace('_', "-");
    let endpoint = format!("http://127.0.0.1:{port}/{AZ_ACCOUNT}");
    // Containers are created with the Azure SDK (object_store only reads and writes blobs).
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};BlobEndpoint={endpoint};"
    );
    let py = Command::new("python3")
        .args([
            "-c",
            "import sys; from azure.storage.blob import BlobServiceClient as C; C.from_connection_string(sys.argv[1]).create_container(sys.argv[2])",
            &conn,
            &container,
        ])
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "create container (pip install azure-storage-blob): {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let rt = rt();
    let store: Arc<dyn ObjectStore> = Arc::new(
        object_store::azure::MicrosoftAzureBuilder::new()
            .with_container_name(&container)
            .with_account(AZ_ACCOUNT)
            .with_access_key(AZ_KEY)
            .with_endpoint(endpoint.clone())
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    load(&rt, &store);

    std::env::set_var("CG_AZ_TEST_KEY", AZ_KEY);
    let mut cfg = SourceConfig::from_url(&format!("az://{container}/exports/"));
    cfg.endpoint = Some(endpoint);
    cfg.account = Some(AZ_ACCOUNT.into());
    cfg.access_key_env = Some("CG_AZ_TEST_KEY".into());
    cfg.allow_http = true;
    cfg.max_retries = 1;
    check(&cfg);
}

#[test]
fn gcs_bucket_on_the_gcs_emulator() {
    let port = common::free_port();
    // Letters and digits only: object_store percent-encodes `-` and `_` in the
    // bucket segment, which real GCS decodes and the emulator's routes do not.
    let bucket = common::unique_name("cggcs").replace('_', "");
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulators/gcs_server.py"))
        .args([&port.to_string(), &bucket]);
    let _server = Emulator::start(
        cmd,
        port,
        "gcp-storage-emulator (pip install gcp-storage-emulator)",
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("gcs-key.json");
    std::fs::write(
        &key,
        format!(
            r#"{{"private_key": "unused", "private_key_id": "unused", "client_email": "scanner@example.iam.gserviceaccount.com", "disable_oauth": true, "gcs_base_url": "http://127.0.0.1:{port}"}}"#
        ),
    )
    .unwrap();
    let rt = rt();
    let store: Arc<dyn ObjectStore> = Arc::new(
        object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_bucket_name(&bucket)
            .with_service_account_path(key.to_string_lossy())
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .build()
            .unwrap(),
    );
    load(&rt, &store);

    let mut cfg = SourceConfig::from_url(&format!("gs://{bucket}/exports/"));
    cfg.service_account_file = Some(key);
    cfg.allow_http = true;
    cfg.max_retries = 1;
    check(&cfg);
}
