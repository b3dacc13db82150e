//! Per-unit state for `--incremental`: what a scan saw of each work unit
//! (table row count and watermark maximum; object ETag, size and
//! last-modified), so the next scan skips unchanged units and reads only
//! rows newer than the watermark.
//!
//! Behind the small [`UnitStateStore`] trait so the findings store can take
//! it over; [`JsonStateStore`] keeps one JSON file per source under
//! `<state_dir>/incremental/<source-hash>.json`, written atomically
//! (temp file + rename) after every unit.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What one scan saw of one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    /// The unit's version marker (row count + watermark, or ETag/size/mtime).
    pub version: String,
    /// Rows in the table at the scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Maximum of the declared watermark column, rendered as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Object ETag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Object size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Object last-modified (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// When the unit was scanned (RFC 3339, UTC).
    pub scanned_at: String,
}

/// Errors reading or writing incremental state; names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("incremental state {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("incremental state {path}: not valid state JSON: {cause}")]
    Parse {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

/// Where per-unit state lives.
pub trait UnitStateStore: Send + Sync {
    /// The state recorded by the last scan of `unit`, if any.
    fn get(&self, unit: &str) -> Option<UnitState>;
    /// Record the state of `unit` after a successful scan (durably).
    fn put(&self, unit: &str, state: UnitState) -> Result<(), StateError>;
}

/// Stable short hash of a (credential-free) target, naming its state file.
pub fn source_hash(target: &str) -> String {
    let d = Sha256::digest(target.as_bytes());
    hex::encode(&d[..12])
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    target: String,
    units: BTreeMap<String, UnitState>,
}

/// One JSON file per source: `<state_dir>/incremental/<source-hash>.json`.
pub struct JsonStateStore {
    path: PathBuf,
    inner: Mutex<StateFile>,
}

impl JsonStateStore {
    /// Open (or start) the state of `target` under `state_dir`.
    pub fn open(state_dir: &Path, target: &str) -> Result<JsonStateStore, StateError> {
        let path = state_dir
            .join("incremental")
            .join(format!("{}.json", source_hash(target)));
        let file = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|cause| StateError::Parse {
                path: path.clone(),
                cause,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile {
                target: target.to_string(),
                ..Default::default()
            },
            Err(cause) => return Err(StateError::Io { path, cause }),
        };
        Ok(JsonStateStore {
            path,
            inner: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, file: &StateFile) -> Result<(), StateError> {
        let io = |cause| StateError::Io {
            path: self.path.clone(),
            cause,
        };
        let dir = self.path.parent().expect("state path has a parent");
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(format!(
            ".{}.tmp.{}.{:x}",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("state"),
            std::process::id(),
            rand::random::<u64>()
        ));
        let res = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(file)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }
}

impl UnitStateStore for JsonStateStore {
    fn get(&self, unit: &str) -> Option<UnitState> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .units
            .get(unit)
            .cloned()
    }

    fn put(&self, unit: &str, state: UnitState) -> Result<(), StateError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.units.insert(unit.to_string(), state);
        self.write(&g)
    }
}

/// Now as RFC 3339 UTC, for `scanned_at`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_atomically_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let s = JsonStateStore::open(dir.path(), "postgres://h/db").unwrap();
        assert!(s.get("public.t").is_none());
        let st = UnitState {
            version: "rows=3".into(),
            rows: Some(3),
            scanned_at: now_rfc3339(),
            ..Default::default()
        };
        s.put("public.t", st.clone()).unwrap();
        let again = JsonStateStore::open(dir.path(), "postgres://h/db").unwrap();
        assert_eq!(again.get("public.t"), Some(st));
        let other = JsonStateStore::open(dir.path(), "postgres://h/other").unwrap();
        assert!(other.get("public.t").is_none());
        assert_ne!(again.path(), other.path());
        // No temp files left behind.
        let n = std::fs::read_dir(dir.path().join("incremental"))
            .unwrap()
            .count();
        assert_eq!(n, 1);
        std::fs::write(again.path(), "{not json").unwrap();
        let e = JsonStateStore::open(dir.path(), "postgres://h/db")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("incremental"), "{e}");
    }
}
