//! The searchers: turn the engine's hits over text chunks and table rows
//! into [`Finding`]s (with per-line / per-row child inference), and hand
//! them to a [`FindingSink`]. Sources feed these; printers and the store
//! implement the sink.

use crate::finding::Finding;

pub mod table;
pub mod text;

/// Where findings go: a printer, the store, a collector in tests.
pub trait FindingSink: Send {
    fn finding(&mut self, f: Finding) -> std::io::Result<()>;
}

impl FindingSink for Vec<Finding> {
    fn finding(&mut self, f: Finding) -> std::io::Result<()> {
        self.push(f);
        Ok(())
    }
}
