//! Table searcher: rows of string cells in, one finding per column and
//! category out, with `rows_scanned`, `count` and `child_count`. Used for
//! CSV, Parquet, JSON-as-table and database tables alike.

use crate::detect::{ColumnCtx, Engine, Hit};
use crate::finding::{Category, Finding, Location, Sensitivity};
use std::collections::BTreeMap;

/// How many row keys a finding lists at most in row-level mode.
pub const MAX_ROW_KEYS: usize = 100_000;

#[derive(Debug, Default)]
struct Acc {
    rule: String,
    sensitivity: Sensitivity,
    count: u64,
    child_count: u64,
    adult_count: u64,
    conf_sum: f64,
    masked: String,
    fingerprint: crate::fingerprint::Fp,
    /// Ordinal of the row the identity (rule, mask, fingerprint) comes from.
    first: u64,
    /// Keys of child rows, with their ordinals (for [`TableScanner::merge`]).
    rows: Vec<(u64, String)>,
}

/// Values at most this long are remembered per column (see [`Memo`]).
const MEMO_VALUE_BYTES: usize = 64;
/// Distinct values remembered per column.
const MEMO_ENTRIES: usize = 4096;
/// Distinct values remembered over all columns of a scanner (a wide table
/// must not hold thousands of memos: ~8 MB at most).
const MEMO_TOTAL: usize = 65_536;
/// Lookups after which a column whose values rarely repeat stops being memoized.
const MEMO_PROBE: u32 = 4096;

/// The hits of a column's repeated values: database and CSV columns often
/// hold few distinct values (grades, schools, districts, status words), and
/// a value's hits depend only on the value and its column, so each distinct
/// value is scanned once. A column whose values mostly differ (ids, phone
/// numbers) turns the memo off after [`MEMO_PROBE`] lookups. Held in memory
/// for the table's scan only, like the rows themselves; nothing is written.
#[derive(Debug, Default)]
struct Memo {
    /// foldhash, not SipHash: the keys are cell values of a table being
    /// scanned, hashed once per cell; no adversary chooses them to collide
    /// that could not as well make the table large.
    map: std::collections::HashMap<Box<str>, Vec<Hit>, foldhash::fast::RandomState>,
    lookups: u32,
    found: u32,
    off: bool,
}

/// Accumulates findings for one table (or one file read as a table).
pub struct TableScanner<'e> {
    engine: &'e Engine,
    target: String,
    base: Location,
    columns: Vec<ColumnCtx>,
    acc: BTreeMap<(usize, Category), Acc>,
    rows: u64,
    want_rows: bool,
    hits: Vec<Hit>,
    row_hits: Vec<(usize, Hit)>,
    /// (column, category) pairs already counted in the current row.
    seen: Vec<(usize, Category)>,
    /// Per column: hits of values seen before.
    memos: Vec<Memo>,
    /// Entries in all `memos` (at most [`MEMO_TOTAL`]).
    memo_total: usize,
    /// Ordinal of the next row (its position in the table's read order).
    ordinal: u64,
}

impl<'e> TableScanner<'e> {
    /// `base` carries `path` (files, objects) or `table` (databases).
    pub fn new(
        engine: &'e Engine,
        target: &str,
        base: Location,
        columns: &[String],
        want_rows: bool,
    ) -> Self {
        TableScanner {
            engine,
            target: target.to_string(),
            base,
            columns: columns.iter().map(|c| engine.column_ctx(c)).collect(),
            acc: BTreeMap::new(),
            rows: 0,
            want_rows,
            hits: Vec::new(),
            row_hits: Vec::new(),
            seen: Vec::new(),
            memos: columns.iter().map(|_| Memo::default()).collect(),
            memo_total: 0,
            ordinal: 0,
        }
    }

    /// Set the ordinal of the next row (rows after it count up from it).
    /// Scanners that each see part of a table's rows number them by their
    /// place in the whole read, so [`TableScanner::merge`] keeps the identity
    /// of the first hit and the first row keys as one scanner would.
    pub fn set_ordinal(&mut self, ordinal: u64) {
        self.ordinal = ordinal;
    }

    /// Fold `other` (the same table's other rows, same columns) into `self`.
    pub fn merge(mut self, other: TableScanner<'e>) -> TableScanner<'e> {
        self.rows += other.rows;
        for (k, b) in other.acc {
            match self.acc.entry(k) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(b);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    let a = o.get_mut();
                    if b.first < a.first {
                        a.first = b.first;
                        a.rule = b.rule;
                        a.sensitivity = b.sensitivity;
                        a.masked = b.masked;
                        a.fingerprint = b.fingerprint;
                    }
                    a.count += b.count;
                    a.child_count += b.child_count;
                    a.adult_count += b.adult_count;
                    a.conf_sum += b.conf_sum;
                    a.rows.extend(b.rows);
                    a.rows.sort_by_key(|r| r.0);
                    a.rows.truncate(MAX_ROW_KEYS);
                }
            }
        }
        self
    }

    pub fn columns(&self) -> &[ColumnCtx] {
        &self.columns
    }

    pub fn rows_scanned(&self) -> u64 {
        self.rows
    }

    /// Add one row; `cells[i]` belongs to column `i` (None = SQL NULL).
    /// `row_key` is the primary key (or row number) for row-level mode.
    pub fn add_row(&mut self, cells: &[Option<&str>], row_key: Option<&str>) {
        self.rows += 1;
        let ordinal = self.ordinal;
        self.ordinal += 1;
        self.row_hits.clear();
        for (i, cell) in cells.iter().enumerate().take(self.columns.len()) {
            let Some(v) = cell else { continue };
            if v.is_empty() {
                continue;
            }
            let memo = &mut self.memos[i];
            let remember = !memo.off && v.len() <= MEMO_VALUE_BYTES;
            if remember {
                memo.lookups += 1;
                if let Some(hits) = memo.map.get(*v) {
                    memo.found += 1;
                    self.row_hits.extend(hits.iter().map(|h| (i, h.clone())));
                    continue;
                }
            }
            self.hits.clear();
            // Hits without fingerprints: only the first hit of a (column,
            // category) keeps its identity, fetched below by a second scan.
            self.engine
                .scan_value_counted(v, &self.columns[i], &mut self.hits);
            if remember {
                if memo.lookups >= MEMO_PROBE && memo.found < memo.lookups / 2 {
                    memo.off = true;
                    self.memo_total -= memo.map.len();
                    memo.map = Default::default();
                } else if memo.map.len() < MEMO_ENTRIES && self.memo_total < MEMO_TOTAL {
                    memo.map.insert((*v).into(), self.hits.clone());
                    self.memo_total += 1;
                }
            }
            self.row_hits.extend(self.hits.drain(..).map(|h| (i, h)));
        }
        if self.row_hits.is_empty() {
            return;
        }
        let child = self.engine.infer_child(
            self.row_hits
                .iter()
                .filter_map(|(_, h)| h.evidence.as_ref()),
        );
        // One count per (column, category) per row, even if a cell holds several values.
        self.seen.clear();
        for (col, h) in &self.row_hits {
            let k = (*col, h.category);
            if self.seen.contains(&k) {
                continue;
            }
            self.seen.push(k);
            let a = self.acc.entry(k).or_default();
            if a.count == 0 {
                // The same scan with fingerprints yields the same hits in the same order.
                let cell = cells[*col].unwrap_or_default();
                self.hits.clear();
                self.engine
                    .scan_value(cell, &self.columns[*col], &mut self.hits);
                let first = self
                    .hits
                    .iter()
                    .find(|x| x.category == h.category)
                    .unwrap_or(h);
                a.rule = first.rule.to_string();
                a.sensitivity = first.sensitivity;
                a.masked = first.masked.clone();
                a.fingerprint = first.fingerprint;
                a.first = ordinal;
            }
            a.count += 1;
            a.conf_sum += h.confidence;
            match child {
                Some(true) => {
                    a.child_count += 1;
                    if self.want_rows && a.rows.len() < MAX_ROW_KEYS {
                        if let Some(k) = row_key {
                            a.rows.push((ordinal, k.to_string()));
                        }
                    }
                }
                Some(false) => a.adult_count += 1,
                None => {}
            }
        }
    }

    /// One finding per column and category.
    pub fn finish(self) -> Vec<Finding> {
        let mut out = Vec::with_capacity(self.acc.len());
        for ((col, category), a) in self.acc {
            let mut location = self.base.clone();
            location.column = Some(self.columns[col].name.clone());
            let hinted = self.columns[col].hints.contains(&category);
            let ratio = a.count as f64 / self.rows.max(1) as f64;
            let mut conf = a.conf_sum / a.count as f64;
            if hinted {
                conf = conf.max(0.9);
            }
            conf = conf * (0.85 + 0.15 * ratio.min(1.0));
            let child = if a.child_count > 0 {
                Some(true)
            } else if a.adult_count > 0 {
                Some(false)
            } else {
                None
            };
            let fingerprint = a.fingerprint.hex();
            let finding_id = Finding::compute_id(&self.target, &location, &a.rule, &fingerprint);
            out.push(Finding {
                finding_id,
                target: self.target.clone(),
                location,
                category,
                rule: a.rule,
                child,
                confidence: Finding::round_confidence(conf),
                masked: a.masked,
                fingerprint,
                sensitivity: a.sensitivity,
                rows_scanned: Some(self.rows),
                count: Some(a.count),
                child_count: Some(a.child_count),
                rows: self
                    .want_rows
                    .then(|| a.rows.into_iter().map(|(_, k)| k).collect()),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::EngineOptions;
    use crate::fingerprint::Fingerprinter;

    /// The engine the tests scan with (as of 2025-06-01, key `k`).
    fn engine() -> Engine {
        Engine::new(
            EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
            Fingerprinter::new(b"k"),
        )
        .unwrap()
    }

    #[test]
    fn merged_scanners_give_the_findings_of_one() {
        let e = engine();
        let cols = ["sfzh".to_string(), "note".to_string()];
        let ids = [
            "110105201503071235",
            "11010519491231002X",
            "110105201001010019",
        ];
        let rows: Vec<[String; 3]> = (0..500)
            .map(|r| {
                let id = if r % 7 == 3 {
                    ids[(r / 10) % 3].to_string()
                } else {
                    "无".into()
                };
                [id, format!("phone 139{:08}", r * 13), format!("k{r}")]
            })
            .collect();
        let one = {
            let mut ts = TableScanner::new(&e, "t", Location::default(), &cols, true);
            for r in &rows {
                ts.add_row(&[Some(&r[0]), Some(&r[1])], Some(&r[2]));
            }
            ts.finish()
        };
        // Batches of 40 rows dealt alternately to two scanners, numbered by batch.
        let mut two: Vec<TableScanner> = (0..2)
            .map(|_| TableScanner::new(&e, "t", Location::default(), &cols, true))
            .collect();
        for (b, batch) in rows.chunks(40).enumerate() {
            let ts = &mut two[(b * 7 + 1) % 2];
            ts.set_ordinal((b as u64) << 32);
            for r in batch {
                ts.add_row(&[Some(&r[0]), Some(&r[1])], Some(&r[2]));
            }
        }
        let b = two.pop().unwrap();
        let merged = two.pop().unwrap().merge(b).finish();
        assert!(one.len() >= 2);
        assert_eq!(format!("{one:?}"), format!("{merged:?}"));
    }

    #[test]
    fn memoized_repeated_values_count_like_fresh_scans() {
        let e = engine();
        let cols = ["sfzh".to_string(), "phone".to_string()];
        let mut ts = TableScanner::new(&e, "t", Location::default(), &cols, true);
        // Column 0 repeats three values (child ID, adult ID, none): memoized.
        // Column 1 never repeats: its memo turns off after MEMO_PROBE lookups.
        let vals = ["110105201503071235", "11010519491231002X", "无"];
        let n = 3 * MEMO_PROBE as usize + 7;
        let phones: Vec<String> = (0..n).map(|r| format!("139{:08}", r)).collect();
        let keys: Vec<String> = (0..n).map(|r| r.to_string()).collect();
        for r in 0..n {
            ts.add_row(&[Some(vals[r % 3]), Some(&phones[r])], Some(&keys[r]));
        }
        assert!(ts.memos[0].found as usize > n - 10 && !ts.memos[0].off);
        assert!(ts.memos[1].off && ts.memos[1].map.is_empty());
        assert_eq!(ts.memo_total, 3, "the budget counts the entries held");
        let fs = ts.finish();
        let id = fs
            .iter()
            .find(|f| f.category == Category::CnResidentId)
            .unwrap();
        let ids = (n + 2) / 3 + (n + 1) / 3;
        assert_eq!(
            (id.count, id.child_count),
            (Some(ids as u64), Some(n.div_ceil(3) as u64))
        );
        assert_eq!(id.masked, "110105********1235");
        assert_eq!(
            id.fingerprint,
            e.fingerprinter().fingerprint("110105201503071235")
        );
        let ph = fs
            .iter()
            .find(|f| f.category == Category::CnMobile)
            .unwrap();
        // A phone on a child's row is a child's: the memo keeps the ID's age evidence.
        assert_eq!(
            (ph.count, ph.child_count),
            (Some(n as u64), Some(n.div_ceil(3) as u64))
        );
    }

    #[test]
    fn counts_per_column_with_child_rows() {
        let e = engine();
        let cols = vec!["id".to_string(), "sfzh".to_string(), "phone".to_string()];
        let base = Location {
            table: Some("public.students".into()),
            ..Default::default()
        };
        let mut t = TableScanner::new(&e, "postgres://db", base, &cols, true);
        t.add_row(
            &[Some("1"), Some("110105201503071235"), Some("13812345678")],
            Some("1"),
        );
        t.add_row(&[Some("2"), Some("11010519491231002X"), None], Some("2"));
        t.add_row(
            &[Some("3"), Some("110105201503071234"), Some("")],
            Some("3"),
        );
        let f = t.finish();
        assert_eq!(f.len(), 2);
        let id = f
            .iter()
            .find(|f| f.category == Category::CnResidentId)
            .unwrap();
        assert_eq!(id.location.column.as_deref(), Some("sfzh"));
        assert_eq!(
            (id.rows_scanned, id.count, id.child_count),
            (Some(3), Some(2), Some(1))
        );
        assert_eq!(id.rows.as_deref(), Some(&["1".to_string()][..]));
        // Identity of the first hit of the column, though cells are scanned without fingerprints.
        assert_eq!(
            id.fingerprint,
            e.fingerprinter().fingerprint("110105201503071235")
        );
        assert_eq!(id.masked, "110105********1235");
        let ph = f.iter().find(|f| f.category == Category::CnMobile).unwrap();
        assert_eq!(
            (ph.count, ph.child_count, ph.child),
            (Some(1), Some(1), Some(true))
        );
        assert_eq!(ph.fingerprint, e.fingerprinter().fingerprint("13812345678"));

        // Counted scans give the same hits as full scans, less fingerprint and mask, and leave
        // later full scans fingerprinted.
        let ctx = e.column_ctx("note");
        let text = "id 110105201503071235, phone 13812345678, 北京四中";
        let (mut full, mut counted) = (Vec::new(), Vec::new());
        e.scan_value(text, &ctx, &mut full);
        e.scan_value_counted(text, &ctx, &mut counted);
        assert!(full.len() >= 2);
        assert_eq!(full.len(), counted.len());
        for (a, b) in full.iter().zip(&counted) {
            assert_eq!(
                (a.start, a.end, a.category, &a.rule),
                (b.start, b.end, b.category, &b.rule)
            );
            assert!(!a.fingerprint.is_empty() && b.fingerprint.is_empty());
            assert!(!a.masked.is_empty() && b.masked.is_empty());
        }
        let mut again = Vec::new();
        e.scan_value(text, &ctx, &mut again);
        assert_eq!(again[0].fingerprint, full[0].fingerprint);
    }
}
