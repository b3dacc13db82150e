//! The detector engine (the "matcher" of the pipeline): compiled once from
//! the rule packs, it finds every candidate in a chunk of text or a table
//! value in one pass, validates it, scores it in context and attaches the
//! age evidence used for child inference.
//!
//! Callers (the text and table searchers in [`crate::scan`]) see only
//! [`Engine`], [`Hit`], [`ColumnCtx`] and [`AgeEvidence`].

use crate::finding::{Category, Sensitivity};
use crate::fingerprint::{mask_keep, Fingerprinter};
use chrono::{Datelike, NaiveDate};
use std::path::PathBuf;
use std::sync::Arc;

pub mod validate;

/// Errors building the engine from rule packs.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("rule pack {path}: {message}")]
    Pack { path: String, message: String },
    #[error("rule `{rule}`: {message}")]
    Rule { rule: String, message: String },
}

/// How the engine is built.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Reference date for ages (`--as-of`).
    pub as_of: NaiveDate,
    /// A person younger than this many years at `as_of` is a child (CAC Order No. 4 Art. 2: 14).
    pub child_age: u32,
    /// Rule packs to use instead of the embedded ones (`--detectors DIR`).
    pub detectors_dir: Option<PathBuf>,
}

impl EngineOptions {
    pub fn new(as_of: NaiveDate) -> Self {
        EngineOptions { as_of, child_age: 14, detectors_dir: None }
    }
}

/// What a hit says about the age of the person it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeEvidence {
    /// A birth date (from an ID number or a birth-date value).
    BirthDate(NaiveDate),
    /// An age in years stated in the data.
    Years(u32),
    /// A grade of primary or lower secondary school: very likely a child.
    ChildGrade,
    /// A marker that by itself shows a child (e.g. 留守儿童).
    ChildMarker,
}

/// One validated match of one rule. Offsets are byte offsets into the text
/// handed to [`Engine::scan_text`] / [`Engine::scan_value`]. No raw value is
/// kept: only `masked` and `fingerprint`.
#[derive(Debug, Clone)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub category: Category,
    pub rule: Arc<str>,
    pub sensitivity: Sensitivity,
    pub confidence: f64,
    pub masked: String,
    pub fingerprint: String,
    pub evidence: Option<AgeEvidence>,
}

/// What the engine knows about a column or JSON field from its name.
#[derive(Debug, Clone, Default)]
pub struct ColumnCtx {
    /// The column/field name as given.
    pub name: String,
    /// Categories the name hints at (e.g. `sfzh` → cn_resident_id, `csrq` → birth_date).
    pub hints: Vec<Category>,
}

/// The compiled rule set.
pub struct Engine {
    opts: EngineOptions,
    fp: Fingerprinter,
}

impl Engine {
    pub fn new(opts: EngineOptions, fp: Fingerprinter) -> Result<Self, DetectError> {
        Ok(Engine { opts, fp })
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fp
    }

    /// Find every hit in free text (one or many lines). Appends to `out`.
    pub fn scan_text(&self, text: &str, out: &mut Vec<Hit>) {
        self.scan_digits(text, None, out);
    }

    /// Find hits in one table cell or JSON value, using the column's hints.
    pub fn scan_value(&self, value: &str, column: &ColumnCtx, out: &mut Vec<Hit>) {
        self.scan_digits(value, Some(column), out);
    }

    /// Hints from a column or field name.
    pub fn column_ctx(&self, name: &str) -> ColumnCtx {
        let lower = name.to_ascii_lowercase();
        let mut hints = Vec::new();
        if ["sfz", "idcard", "id_card", "zjhm", "id_no", "idno"].iter().any(|h| lower.contains(h)) {
            hints.push(Category::CnResidentId);
        }
        if ["phone", "mobile", "lxdh", "sjh", "tel"].iter().any(|h| lower.contains(h)) {
            hints.push(Category::CnMobile);
        }
        ColumnCtx { name: name.to_string(), hints }
    }

    /// Child inference over the evidence of one line or row: a child signal
    /// wins (the data then holds a child's PI); else an adult signal gives
    /// `Some(false)`; else unknown.
    pub fn infer_child<'a>(&self, evidence: impl IntoIterator<Item = &'a AgeEvidence>) -> Option<bool> {
        let mut adult = false;
        for e in evidence {
            match self.is_child(e) {
                Some(true) => return Some(true),
                Some(false) => adult = true,
                None => {}
            }
        }
        adult.then_some(false)
    }

    /// Whether one piece of evidence shows a child at `as_of`.
    pub fn is_child(&self, e: &AgeEvidence) -> Option<bool> {
        match *e {
            AgeEvidence::BirthDate(b) => Some(age_at(b, self.opts.as_of)? < self.opts.child_age as i32),
            AgeEvidence::Years(y) => Some(y < self.opts.child_age),
            AgeEvidence::ChildGrade | AgeEvidence::ChildMarker => Some(true),
        }
    }

    fn scan_digits(&self, text: &str, _col: Option<&ColumnCtx>, out: &mut Vec<Hit>) {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let mut e = i;
            if e - s == 17 && e < b.len() && (b[e] == b'X' || b[e] == b'x') {
                e += 1;
                i = e;
            }
            let run = &text[s..e];
            if run.len() == 18 {
                if let Some(birth) = validate::resident_id_18(run) {
                    let norm = run.to_ascii_uppercase();
                    out.push(Hit {
                        start: s,
                        end: e,
                        category: Category::CnResidentId,
                        rule: Arc::from("cn.resident_id"),
                        sensitivity: Sensitivity::High,
                        confidence: 0.98,
                        masked: mask_keep(&norm, 6, 4),
                        fingerprint: self.fp.fingerprint(&norm),
                        evidence: Some(AgeEvidence::BirthDate(birth)),
                    });
                }
            } else if run.len() == 11 && validate::mobile(run) {
                out.push(Hit {
                    start: s,
                    end: e,
                    category: Category::CnMobile,
                    rule: Arc::from("cn.mobile"),
                    sensitivity: Sensitivity::Medium,
                    confidence: 0.9,
                    masked: mask_keep(run, 3, 4),
                    fingerprint: self.fp.fingerprint(run),
                    evidence: None,
                });
            }
        }
    }
}

/// Completed years between `birth` and `as_of`; None when born after `as_of`.
/// Born exactly N years before `as_of` is N years old that day.
pub fn age_at(birth: NaiveDate, as_of: NaiveDate) -> Option<i32> {
    if birth > as_of {
        return None;
    }
    let mut years = as_of.year() - birth.year();
    if (as_of.month(), as_of.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    Some(years)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::new(
            EngineOptions::new(NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
            Fingerprinter::new(b"test"),
        )
        .unwrap()
    }

    #[test]
    fn finds_id_and_mobile() {
        let mut out = Vec::new();
        engine().scan_text("学生 110105201503071235 家长电话 13812345678", &mut out);
        let cats: Vec<_> = out.iter().map(|h| h.category).collect();
        assert_eq!(cats, vec![Category::CnResidentId, Category::CnMobile]);
    }

    #[test]
    fn child_age_edge() {
        let e = engine();
        // Born exactly 14 years before as-of: not a child; one day later: child.
        let b14 = NaiveDate::from_ymd_opt(2011, 6, 1).unwrap();
        assert_eq!(e.is_child(&AgeEvidence::BirthDate(b14)), Some(false));
        assert_eq!(e.is_child(&AgeEvidence::BirthDate(b14.succ_opt().unwrap())), Some(true));
    }
}
