//! The hash-chained audit log (CAC Order No. 4 Art. 15; MIIT Order No. 24
//! Art. 13(6): who, when, from where, what). Each row stores the hash of the
//! previous row and the hash of its own content including that previous
//! hash, so editing, deleting or reordering rows breaks the chain at the
//! first row touched; [`verify`] names it.
//!
//! Rows are appended through [`crate::store::Store::audit_append`]; details
//! are JSON and never hold a raw value.

use crate::store::{AuditEntry, AuditRow, Store, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The timestamp form that is stored and hashed.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Hash of a row's content (everything but `hash`), length-prefixed fields.
pub fn row_hash(
    id: i64,
    at: &str,
    actor: &str,
    action: &str,
    object: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"childguard-audit-v1");
    h.update(id.to_le_bytes());
    for part in [at, actor, action, object, details, prev_hash] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Build the row to store after `prev_hash`.
pub fn seal(id: i64, at: &str, e: &AuditEntry, prev_hash: &str) -> AuditRow {
    let details = serde_json::to_string(&e.details).expect("JSON value serializes");
    let hash = row_hash(id, at, &e.actor, &e.action, &e.object, &details, prev_hash);
    AuditRow {
        id,
        at: at.to_string(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        object: e.object.clone(),
        details,
        prev_hash: prev_hash.to_string(),
        hash,
    }
}

/// Why the chain is broken at a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("audit row {id}: content does not match its hash (edited)")]
    Content { id: i64 },
    #[error("audit row {id}: previous-hash link does not match row {prev_id} (a row was deleted, inserted or reordered)")]
    Link { id: i64, prev_id: i64 },
    #[error("audit row {id}: expected id {expected} (a row was deleted or reordered)")]
    Sequence { id: i64, expected: i64 },
}

impl ChainError {
    /// The first broken row.
    pub fn row(&self) -> i64 {
        match self {
            ChainError::Content { id }
            | ChainError::Link { id, .. }
            | ChainError::Sequence { id, .. } => *id,
        }
    }
}

/// Incremental verifier over rows in id order.
#[derive(Debug)]
pub struct Verifier {
    prev_id: i64,
    prev_hash: String,
    pub rows: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            prev_id: 0,
            prev_hash: GENESIS.into(),
            rows: 0,
        }
    }
}

impl Verifier {
    pub fn push(&mut self, r: &AuditRow) -> Result<(), ChainError> {
        if r.prev_hash != self.prev_hash {
            return Err(ChainError::Link {
                id: r.id,
                prev_id: self.prev_id,
            });
        }
        if r.hash
            != row_hash(
                r.id,
                &r.at,
                &r.actor,
                &r.action,
                &r.object,
                &r.details,
                &r.prev_hash,
            )
        {
            return Err(ChainError::Content { id: r.id });
        }
        if r.id != self.prev_id + 1 {
            return Err(ChainError::Sequence {
                id: r.id,
                expected: self.prev_id + 1,
            });
        }
        self.prev_id = r.id;
        self.prev_hash = r.hash.clone();
        self.rows += 1;
        Ok(())
    }
}

/// Verify rows (in id order); Err names the first broken row.
pub fn verify(rows: &[AuditRow]) -> Result<u64, ChainError> {
    let mut v = Verifier::default();
    for r in rows {
        v.push(r)?;
    }
    Ok(v.rows)
}

/// Errors of a store-wide verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broken(#[from] ChainError),
}

/// Verify the whole audit log of a store, page by page. Ok(rows checked).
pub async fn verify_store(store: &dyn Store) -> Result<u64, VerifyError> {
    let mut v = Verifier::default();
    let mut after = 0;
    loop {
        let rows = store.audit_rows(after, 10_000).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for r in &rows {
            v.push(r)?;
        }
    }
    Ok(v.rows)
}

/// Write the audit log as JSON lines; returns rows written.
pub async fn export_jsonl(
    store: &dyn Store,
    out: &mut dyn std::io::Write,
) -> Result<u64, VerifyError> {
    let mut after = 0;
    let mut n = 0;
    loop {
        let rows = store.audit_rows(after, 10_000).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for r in &rows {
            let line = serde_json::to_string(r).expect("audit row serializes");
            writeln!(out, "{line}")
                .map_err(|e| StoreError::Invalid(format!("writing audit export: {e}")))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|i| {
                let e = AuditEntry {
                    actor: "a".into(),
                    action: "x".into(),
                    object: format!("o{i}"),
                    details: serde_json::json!({"i": i}),
                };
                let r = seal(i, "2025-01-01T00:00:00.000000Z", &e, &prev);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn detects_edit_delete_reorder() {
        let rows = chain(5);
        assert_eq!(verify(&rows), Ok(5));
        let mut edited = rows.clone();
        edited[2].actor = "mallory".into();
        assert_eq!(verify(&edited).unwrap_err().row(), 3);
        let mut deleted = rows.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted).unwrap_err().row(), 3);
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        assert_eq!(verify(&swapped).unwrap_err().row(), 3);
    }
}
