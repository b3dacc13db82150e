//! Printers: jsonl, json, table, sarif.
