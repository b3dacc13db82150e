//! [`StoreSink`]: a [`FindingSink`] that hands findings to one writer thread,
//! which writes them in batches of [`BATCH`] per transaction (on PostgreSQL
//! two batches in flight at once). Cloneable, so every scanning thread gets
//! its own sender; the writer is the one writer.

use super::{Store, StoreError, BATCH};
use crate::finding::Finding;
use crate::scan::FindingSink;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Sends findings to the writer. Drop every clone, then call [`WriterHandle::finish`].
#[derive(Clone)]
pub struct StoreSink {
    tx: Sender<Finding>,
}

/// The writer thread; `finish` waits for it and returns how many findings it wrote.
pub struct WriterHandle {
    thread: std::thread::JoinHandle<Result<u64, StoreError>>,
}

impl StoreSink {
    /// Start the writer for `run_id`. Must be called inside a tokio runtime
    /// (the writer thread drives the store's async calls on it).
    pub fn spawn(store: Arc<dyn Store>, run_id: i64) -> (StoreSink, WriterHandle) {
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = bounded::<Finding>(BATCH * 4);
        let thread = std::thread::Builder::new()
            .name("childguard-store-writer".into())
            .spawn(move || writer(store, run_id, rx, handle))
            .expect("spawn store writer thread");
        (StoreSink { tx }, WriterHandle { thread })
    }
}

/// Batches in flight at once: PostgreSQL writes two on two connections (the
/// server works on one while the next is sent); SQLite has one writer.
fn in_flight(store: &dyn Store) -> usize {
    if store.backend() == "postgres" {
        2
    } else {
        1
    }
}

/// Batches being written: (findings in the batch, result).
type Pending = VecDeque<tokio::task::JoinHandle<(usize, Result<u64, StoreError>)>>;

fn writer(
    store: Arc<dyn Store>,
    run_id: i64,
    rx: Receiver<Finding>,
    rt: tokio::runtime::Handle,
) -> Result<u64, StoreError> {
    let max_in_flight = in_flight(&*store);
    let mut pending: Pending = VecDeque::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut written = 0u64;
    let mut first_err = None;
    let mut wait_one = |pending: &mut Pending| {
        let Some(h) = pending.pop_front() else { return };
        let (n, r) = rt.block_on(h).unwrap_or_else(|_| {
            (
                0,
                Err(StoreError::Invalid("store writer task failed".into())),
            )
        });
        match r {
            Ok(k) => written += k,
            Err(e) => {
                tracing::error!(run_id, error = %e, "store writer: batch of {n} findings not written");
                first_err.get_or_insert(e);
            }
        }
    };
    let flush = |batch: &mut Vec<Finding>,
                 pending: &mut Pending,
                 wait_one: &mut dyn FnMut(&mut Pending)| {
        if batch.is_empty() {
            return;
        }
        // Sorted by id: concurrent batches take row locks in one order (no deadlock).
        let mut b = std::mem::replace(batch, Vec::with_capacity(BATCH));
        b.sort_by(|x, y| x.finding_id.cmp(&y.finding_id));
        let store = store.clone();
        pending
            .push_back(rt.spawn(async move { (b.len(), store.upsert_findings(run_id, &b).await) }));
        while pending.len() >= max_in_flight {
            wait_one(pending);
        }
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(f) => {
                batch.push(f);
                if batch.len() >= BATCH {
                    flush(&mut batch, &mut pending, &mut wait_one);
                }
            }
            Err(RecvTimeoutError::Timeout) => flush(&mut batch, &mut pending, &mut wait_one),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    flush(&mut batch, &mut pending, &mut wait_one);
    while !pending.is_empty() {
        wait_one(&mut pending);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

impl FindingSink for StoreSink {
    fn finding(&mut self, f: Finding) -> std::io::Result<()> {
        self.tx.send(f).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "store writer stopped")
        })
    }
}

impl WriterHandle {
    /// Wait for the writer (blocking; all sinks must be dropped first).
    pub fn finish(self) -> Result<u64, StoreError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(StoreError::Invalid("store writer thread panicked".into())))
    }

    /// [`WriterHandle::finish`] from async code.
    pub async fn finish_async(self) -> Result<u64, StoreError> {
        tokio::task::spawn_blocking(move || self.finish())
            .await
            .unwrap_or_else(|_| Err(StoreError::Invalid("store writer join failed".into())))
    }
}
