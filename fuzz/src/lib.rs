//! Shared set-up of the fuzz targets: one engine, and a reader call that
//! checks what must hold for any input (no panic; findings inside the text;
//! an error names the file).

use childguard::detect::{Engine, EngineOptions};
use childguard::fingerprint::Fingerprinter;
use childguard::source::files::{scan_reader, FileSourceConfig, UnitCtx};
use childguard::source::ScanOptions;
use std::sync::OnceLock;

/// The detector engine, compiled once per process.
pub fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        // libfuzzer-sys aborts on every panic, even one childguard catches on
        // purpose (a decoder panic turned into the unit's error by
        // `guard_decoder`). Back to the default hook: a panic that escapes
        // the target still aborts (libfuzzer-sys's catch_unwind) and is a crash.
        drop(std::panic::take_hook());
        let as_of = chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        Engine::new(EngineOptions::new(as_of), Fingerprinter::new(b"fuzz")).unwrap()
    })
}

/// Scan `data` as a file named `name` (the name picks compression/format
/// hints; the bytes are sniffed too) with small limits so bombs stay cheap.
pub fn scan_bytes(name: &str, data: &[u8]) {
    let cfg = FileSourceConfig {
        chunk_bytes: 4096,
        max_json_document_bytes: 1 << 20,
        max_buffered_parquet_bytes: 4 << 20,
        max_parquet_page_bytes: 4 << 20,
        max_line_bytes: 1 << 20,
        ..FileSourceConfig::default()
    };
    let opts = ScanOptions::default();
    let ctx = UnitCtx {
        engine: engine(),
        target: "fuzz",
        path: name,
        opts: &opts,
        cfg: &cfg,
    };
    let reader = Box::new(std::io::Cursor::new(data.to_vec()));
    match scan_reader(&ctx, name, reader, &mut |f| {
        assert_eq!(f.location.path.as_deref(), Some(name));
        assert!(!f.masked.is_empty());
    }) {
        Ok(_) => {}
        Err(e) => assert!(e.to_string().starts_with(name), "{e}"),
    }
}
