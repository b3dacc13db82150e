//! The one `Finding` type that flows from the detector engine to the store,
//! the API and every output format (DESIGN.md, "Contracts other tools depend
//! on"). A finding never holds a raw value: only a masked form and a keyed
//! fingerprint (see [`crate::fingerprint`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Category ids of DESIGN.md. Serialized as the snake_case id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    CnResidentId,
    CnMobile,
    CnLandline,
    BirthDate,
    Age,
    SchoolName,
    GradeClass,
    StudentId,
    CnPassport,
    HkMacauPermit,
    TwPermit,
    BankCard,
    Email,
    PersonName,
    Guardian,
    Address,
    VulnerableChild,
}

impl Category {
    pub const ALL: [Category; 17] = [
        Category::CnResidentId,
        Category::CnMobile,
        Category::CnLandline,
        Category::BirthDate,
        Category::Age,
        Category::SchoolName,
        Category::GradeClass,
        Category::StudentId,
        Category::CnPassport,
        Category::HkMacauPermit,
        Category::TwPermit,
        Category::BankCard,
        Category::Email,
        Category::PersonName,
        Category::Guardian,
        Category::Address,
        Category::VulnerableChild,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::CnResidentId => "cn_resident_id",
            Category::CnMobile => "cn_mobile",
            Category::CnLandline => "cn_landline",
            Category::BirthDate => "birth_date",
            Category::Age => "age",
            Category::SchoolName => "school_name",
            Category::GradeClass => "grade_class",
            Category::StudentId => "student_id",
            Category::CnPassport => "cn_passport",
            Category::HkMacauPermit => "hk_macau_permit",
            Category::TwPermit => "tw_permit",
            Category::BankCard => "bank_card",
            Category::Email => "email",
            Category::PersonName => "person_name",
            Category::Guardian => "guardian",
            Category::Address => "address",
            Category::VulnerableChild => "vulnerable_child",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category `{s}`"))
    }
}

/// How harmful exposure of the category is; drives violation severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    Low,
    #[default]
    Medium,
    High,
}

/// Where a finding sits. Text findings carry `path`, `line`, `byte_offset`
/// (and `field` for JSON); table findings carry `path` or `table`, and `column`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// File path (relative to the target when the target is a directory) or object key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    /// Database table as `schema.table`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub table: Option<String>,
    /// 1-based line in the decompressed, decoded text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u64>,
    /// Byte offset of the match start in the decompressed, decoded (UTF-8) text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub byte_offset: Option<u64>,
    /// JSON key path, e.g. `student.idNo` (`items[0].id` for arrays).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
    /// Column name for table findings (Parquet, CSV, database tables).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub column: Option<String>,
    /// The range unit that found it when a large table or file is split
    /// (`pk=LO..HI`, `bytes=START..END`; see `source::shard`). Table findings
    /// then count the rows of that range only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub range: Option<String>,
    /// 1-based line within the byte range, for text findings of an object
    /// byte range (`range`): their `line` in the whole object is unknown
    /// (None) without reading every byte before the range. `byte_offset`
    /// stays the offset in the whole object.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub range_line: Option<u64>,
}

/// One finding: the stable output contract of `childguard scan --format jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub finding_id: String,
    pub target: String,
    pub location: Location,
    pub category: Category,
    pub rule: String,
    /// true: the person is a child at `--as-of`; false: shown not to be; null: unknown.
    pub child: Option<bool>,
    pub confidence: f64,
    pub masked: String,
    pub fingerprint: String,
    #[serde(default)]
    pub sensitivity: Sensitivity,
    /// Table findings: rows examined in the column.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rows_scanned: Option<u64>,
    /// Table findings: values in the column that matched the category.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub count: Option<u64>,
    /// Table findings: matching values that identify a child.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub child_count: Option<u64>,
    /// Row-level mode (`--rows`): primary keys of the rows holding child PI.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rows: Option<Vec<String>>,
}

impl Finding {
    /// Content-derived id: the same rule at the same place with the same
    /// (fingerprinted) value gets the same id on every rescan, so triage
    /// survives. Table findings are identified by rule + table/path + column
    /// (values in a column change between scans; the column is the finding).
    pub fn compute_id(target: &str, loc: &Location, rule: &str, fingerprint: &str) -> String {
        Self::finish_id(Self::id_prefix(target, loc, rule), loc, fingerprint)
    }

    /// The id's hash state after the parts every finding of one rule in
    /// one place shares (rule, target, path, table, column, field): a
    /// caller making many findings there hashes them once and finishes
    /// each id with [`Finding::finish_id`] (same ids as `compute_id`).
    pub fn id_prefix(target: &str, loc: &Location, rule: &str) -> Sha256 {
        let mut h = Sha256::new();
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        part(rule);
        part(target);
        part(loc.path.as_deref().unwrap_or(""));
        part(loc.table.as_deref().unwrap_or(""));
        part(loc.column.as_deref().unwrap_or(""));
        part(loc.field.as_deref().unwrap_or(""));
        h
    }

    /// The id from an [`Finding::id_prefix`] state of the same target,
    /// rule and place (path, table, column, field) as `loc`.
    pub fn finish_id(mut h: Sha256, loc: &Location, fingerprint: &str) -> String {
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        // A table finding of a key range counts that range only: its own finding.
        // A text match is the same finding whichever byte range found it.
        if loc.column.is_some() {
            if let Some(r) = &loc.range {
                part(r);
            }
        }
        if loc.column.is_none() {
            // the line's decimal digits, without a String per finding
            let mut digits = [0u8; 20];
            let mut k = digits.len();
            if let Some(mut l) = loc.line {
                loop {
                    k -= 1;
                    digits[k] = b'0' + (l % 10) as u8;
                    l /= 10;
                    if l == 0 {
                        break;
                    }
                }
            }
            part(std::str::from_utf8(&digits[k..]).unwrap_or_default());
            part(fingerprint);
            // An object byte range's line: the range and the line within it.
            if let (None, Some(r), Some(l)) = (loc.line, &loc.range, loc.range_line) {
                part(&format!("{r}:{l}"));
            }
        }
        let d = h.finalize();
        crate::fingerprint::hex_lower(&d[..12])
    }

    /// Round to two decimals so output is stable across platforms.
    pub fn round_confidence(c: f64) -> f64 {
        (c.clamp(0.0, 1.0) * 100.0).round() / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_ids_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert!("nope".parse::<Category>().is_err());
    }

    #[test]
    fn finding_id_is_content_derived() {
        let loc = Location {
            path: Some("a.log".into()),
            line: Some(3),
            ..Default::default()
        };
        let a = Finding::compute_id("t", &loc, "cn.resident_id", "ff");
        assert_eq!(a, Finding::compute_id("t", &loc, "cn.resident_id", "ff"));
        assert_ne!(a, Finding::compute_id("t", &loc, "cn.resident_id", "fe"));
        let col = Location {
            table: Some("s.t".into()),
            column: Some("c".into()),
            ..Default::default()
        };
        assert_eq!(
            Finding::compute_id("t", &col, "r", "x"),
            Finding::compute_id("t", &col, "r", "y")
        );
    }
}
