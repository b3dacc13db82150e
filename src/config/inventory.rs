//! The purpose inventory: `[[datasets]]` in the config. What each dataset may
//! hold, why, for how long, who answers for it, and what happens at expiry.
//! Legal mapping (CAC Order No. 4): owner — Art. 8; location, retention and
//! disposal — Art. 10(2); retention — Art. 12; encrypted — Art. 13;
//! purpose — Art. 7, 14; subject_key — Art. 20 erasure.

use crate::finding::Category;
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One declared dataset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Unique name, used in reports, plans and the API.
    pub name: String,
    /// Name of a `[[sources]]` entry, or a target URI / path the dataset lives in.
    pub source: String,
    /// What in the source belongs to the dataset: `schema.table` globs for
    /// databases, key prefixes/globs for object stores, path globs for files and logs.
    #[serde(rename = "match", default)]
    pub matches: Vec<String>,
    /// Person responsible (CAC Order No. 4 Art. 8).
    #[serde(default)]
    pub owner: Option<String>,
    /// Why the data is held (Art. 7, 14).
    #[serde(default)]
    pub purpose: Option<String>,
    /// e.g. `guardian_consent`, `contract`, `legal_obligation`.
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// Where it is stored, as told to guardians (Art. 10(2)).
    #[serde(default)]
    pub location: Option<String>,
    /// Declared categories per column or field; `"*"` applies to every column
    /// (use it for logs and free text).
    #[serde(default)]
    pub categories: BTreeMap<String, Vec<Category>>,
    /// Whether the dataset is declared to hold children's PI.
    #[serde(default)]
    pub child_data: bool,
    /// Column/field identifying the person, for Art. 20 erasure.
    #[serde(default)]
    pub subject_key: Option<String>,
    /// Primary key column(s) of a table, for batched sweeps (defaults to the catalog's primary key).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Columns/fields declared stored encrypted (Art. 13): plaintext PI found there is a violation.
    #[serde(default)]
    pub encrypted: Vec<String>,
    /// How long records are kept (Art. 12).
    #[serde(default)]
    pub retention: Option<Retention>,
    /// What happens at expiry.
    #[serde(default)]
    pub disposal: Disposal,
    /// Per-column anonymization operators when `disposal = "anonymize"`.
    #[serde(default)]
    pub anonymize: BTreeMap<String, AnonOp>,
}

/// Delete the record, or anonymize its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposal {
    #[default]
    Delete,
    Anonymize,
}

/// Retention rule, written `"365d after created_at"`, `"30d after account_closed_at"`,
/// `"6m after last_login"`, `"1y after object_age"` (objects and files by their
/// last-modified time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub period: Period,
    pub clock: Clock,
}

/// A retention period. Months and years are calendar months and years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Days(u32),
    Months(u32),
    Years(u32),
}

/// What the period runs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clock {
    /// A time column of the record.
    Column(String),
    /// The object's or file's last-modified time.
    ObjectAge,
}

impl Period {
    /// The cutoff: records whose clock is strictly before it are past retention.
    /// A record exactly at the cutoff is still within retention.
    pub fn cutoff(&self, as_of: NaiveDateTime) -> NaiveDateTime {
        match *self {
            Period::Days(d) => as_of - chrono::Duration::days(d as i64),
            Period::Months(m) => as_of
                .checked_sub_months(Months::new(m))
                .unwrap_or(NaiveDateTime::MIN),
            Period::Years(y) => as_of
                .checked_sub_months(Months::new(y.saturating_mul(12)))
                .unwrap_or(NaiveDateTime::MIN),
        }
    }

    pub fn cutoff_date(&self, as_of: NaiveDate) -> NaiveDate {
        self.cutoff(as_of.and_hms_opt(0, 0, 0).unwrap()).date()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Days(n) => write!(f, "{n}d"),
            Period::Months(n) => write!(f, "{n}m"),
            Period::Years(n) => write!(f, "{n}y"),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.clock {
            Clock::Column(c) => write!(f, "{} after {c}", self.period),
            Clock::ObjectAge => write!(f, "{} after object_age", self.period),
        }
    }
}

impl FromStr for Retention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split_whitespace();
        let (Some(p), Some("after"), Some(clock), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("retention `{s}`: expected `<N>d|w|m|y after <time column>` or `<N>d after object_age`"));
        };
        let (num, unit) = p.split_at(p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len()));
        let n: u32 = num
            .parse()
            .map_err(|_| format!("retention `{s}`: `{p}` is not a period like 365d"))?;
        if n == 0 {
            return Err(format!(
                "retention `{s}`: a period of zero would expire everything at once"
            ));
        }
        let period = match unit {
            "d" => Period::Days(n),
            "w" => Period::Days(n * 7),
            "m" => Period::Months(n),
            "y" => Period::Years(n),
            _ => {
                return Err(format!(
                    "retention `{s}`: unit `{unit}` is not one of d, w, m, y"
                ))
            }
        };
        let clock = match clock {
            "object_age" | "mtime" | "last_modified" => Clock::ObjectAge,
            c if c
                .chars()
                .all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '.') =>
            {
                Clock::Column(c.to_string())
            }
            c => return Err(format!("retention `{s}`: `{c}` is not a column name")),
        };
        Ok(Retention { period, clock })
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Anonymization operator for one column, written as a string:
/// `null`, `const:<value>`, `mask:<keep_first>,<keep_last>`, `hash`
/// (keyed hash — pseudonymization, PIPL Art. 73, not anonymization),
/// `year`, `year_month` (generalize a date), `age_band:<width>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnonOp {
    Null,
    Const(String),
    Mask { first: usize, last: usize },
    Hash,
    Year,
    YearMonth,
    AgeBand(u32),
}

impl AnonOp {
    /// True for operators whose output can be linked back with the key: reports
    /// must call them pseudonymization (PIPL Art. 73; MCA 2024 measures Art. 3).
    pub fn is_pseudonymization(&self) -> bool {
        matches!(self, AnonOp::Hash)
    }

    /// Apply to a textual value. Returns None for SQL NULL.
    pub fn apply(&self, value: &str, fp: &crate::fingerprint::Fingerprinter) -> Option<String> {
        match self {
            AnonOp::Null => None,
            AnonOp::Const(c) => Some(c.clone()),
            AnonOp::Mask { first, last } => {
                Some(crate::fingerprint::mask_keep(value, *first, *last))
            }
            AnonOp::Hash => Some(fp.fingerprint(value)),
            AnonOp::Year => Some(value.get(..4).unwrap_or("").to_string()),
            AnonOp::YearMonth => {
                let d = parse_dateish(value)?;
                Some(format!("{:04}-{:02}", d.year(), d.month()))
            }
            AnonOp::AgeBand(w) => {
                let age: u32 = value.trim().parse().ok()?;
                let lo = age / w * w;
                Some(format!("{lo}-{}", lo + w - 1))
            }
        }
    }
}

fn parse_dateish(v: &str) -> Option<NaiveDate> {
    let v = v.trim();
    let head = v.get(..10).unwrap_or(v);
    NaiveDate::parse_from_str(head, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(head, "%Y/%m/%d"))
        .or_else(|_| NaiveDate::parse_from_str(v.get(..8).unwrap_or(v), "%Y%m%d"))
        .ok()
}

impl fmt::Display for AnonOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnonOp::Null => f.write_str("null"),
            AnonOp::Const(c) => write!(f, "const:{c}"),
            AnonOp::Mask { first, last } => write!(f, "mask:{first},{last}"),
            AnonOp::Hash => f.write_str("hash"),
            AnonOp::Year => f.write_str("year"),
            AnonOp::YearMonth => f.write_str("year_month"),
            AnonOp::AgeBand(w) => write!(f, "age_band:{w}"),
        }
    }
}

impl FromStr for AnonOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = s.split_once(':').map_or((s, None), |(a, b)| (a, Some(b)));
        let bad = || {
            format!("anonymize operator `{s}`: expected null, const:<v>, mask:<first>,<last>, hash, year, year_month or age_band:<width>")
        };
        Ok(match (name, arg) {
            ("null", None) => AnonOp::Null,
            ("const", Some(v)) => AnonOp::Const(v.to_string()),
            ("mask", Some(a)) => {
                let (x, y) = a.split_once(',').ok_or_else(bad)?;
                AnonOp::Mask {
                    first: x.trim().parse().map_err(|_| bad())?,
                    last: y.trim().parse().map_err(|_| bad())?,
                }
            }
            ("hash", None) => AnonOp::Hash,
            ("year", None) => AnonOp::Year,
            ("year_month", None) => AnonOp::YearMonth,
            ("age_band", Some(w)) => {
                AnonOp::AgeBand(w.parse().ok().filter(|w| *w > 0).ok_or_else(bad)?)
            }
            _ => return Err(bad()),
        })
    }
}

impl<'de> Deserialize<'de> for AnonOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Dataset {
    /// True when the dataset is declared to hold children's PI, or declares a
    /// category that only exists for children (`vulnerable_child`).
    pub fn holds_child_data(&self) -> bool {
        self.child_data
            || self
                .categories
                .values()
                .flatten()
                .any(|c| *c == Category::VulnerableChild)
    }

    /// Declared categories for a column or field (its own list plus `"*"`).
    pub fn declared_for(&self, column: Option<&str>) -> impl Iterator<Item = Category> + '_ {
        let own = column.and_then(|c| {
            self.categories.get(c).or_else(|| {
                self.categories
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(c))
                    .map(|(_, v)| v)
            })
        });
        own.into_iter()
            .chain(self.categories.get("*"))
            .flatten()
            .copied()
    }

    /// True when `column` is declared stored encrypted (Art. 13).
    pub fn is_encrypted(&self, column: &str) -> bool {
        self.encrypted
            .iter()
            .any(|c| c.eq_ignore_ascii_case(column))
    }
}

/// One problem or gap in the inventory; `key` is the config key path
/// (`datasets[2].retention`), `index` the dataset's position in the slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryIssue {
    pub index: usize,
    pub dataset: String,
    pub key: String,
    pub level: crate::config::Level,
    pub message: String,
}

/// Compile one `match` pattern: `schema.table` globs, path globs, and key
/// prefixes (a pattern ending in `/` matches everything below it).
pub fn compile_match(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    let p = if pattern.ends_with('/') {
        format!("{pattern}**")
    } else {
        pattern.to_string()
    };
    Ok(globset::GlobBuilder::new(&p)
        .literal_separator(false)
        .build()?
        .compile_matcher())
}

/// Validate the inventory: errors (duplicate names, bad globs, anonymize
/// without operators) and gaps (datasets with children's PI but no owner —
/// Art. 8 —, no retention — Art. 12 —, or no subject key — Art. 20).
pub fn validate(datasets: &[Dataset]) -> Vec<InventoryIssue> {
    use crate::config::Level;
    let mut out = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in datasets.iter().enumerate() {
        let mut push = |level, key: &str, message: String| {
            out.push(InventoryIssue {
                index: i,
                dataset: d.name.clone(),
                key: if key.is_empty() {
                    format!("datasets[{i}]")
                } else {
                    format!("datasets[{i}].{key}")
                },
                level,
                message,
            })
        };
        if d.name.trim().is_empty() {
            push(Level::Error, "name", "dataset name is empty".into());
        } else if let Some(first) = seen.insert(d.name.as_str(), i) {
            push(
                Level::Error,
                "name",
                format!(
                    "duplicate dataset name `{}` (first declared as datasets[{first}])",
                    d.name
                ),
            );
        }
        if d.source.trim().is_empty() {
            push(Level::Error, "source", "source is empty".into());
        }
        for (j, m) in d.matches.iter().enumerate() {
            if let Err(e) = compile_match(m) {
                push(
                    Level::Error,
                    &format!("match[{j}]"),
                    format!("bad glob `{m}`: {}", e.kind()),
                );
            }
        }
        if d.disposal == Disposal::Anonymize && d.anonymize.is_empty() {
            push(
                Level::Error,
                "disposal",
                "disposal = \"anonymize\" but no column has an operator".into(),
            );
        }
        if d.disposal == Disposal::Delete && !d.anonymize.is_empty() {
            push(
                Level::Warning,
                "anonymize",
                "operators are ignored: disposal is \"delete\"".into(),
            );
        }
        for col in &d.encrypted {
            if !d.categories.is_empty()
                && !d.categories.contains_key(col)
                && !d.categories.contains_key("*")
            {
                push(
                    Level::Warning,
                    "encrypted",
                    format!("encrypted column `{col}` has no declared categories"),
                );
            }
        }
        if let Some(Retention {
            clock: Clock::Column(c),
            ..
        }) = &d.retention
        {
            if c.is_empty() {
                push(
                    Level::Error,
                    "retention",
                    "retention clock column is empty".into(),
                );
            }
        }
        if d.holds_child_data() {
            if d.owner.as_deref().is_none_or(|o| o.trim().is_empty()) {
                push(
                    Level::Warning,
                    "owner",
                    "gap: holds children's PI but names no owner (CAC Order No. 4 Art. 8)".into(),
                );
            }
            if d.retention.is_none() {
                push(Level::Warning, "retention", "gap: holds children's PI but declares no retention period (CAC Order No. 4 Art. 10(2), 12)".into());
            }
            if d.subject_key.is_none()
                && d.retention
                    .as_ref()
                    .is_none_or(|r| r.clock != Clock::ObjectAge)
            {
                push(Level::Warning, "subject_key", "gap: holds children's PI but has no subject_key for erasure (CAC Order No. 4 Art. 20)".into());
            }
            if d.purpose.is_none() {
                push(
                    Level::Warning,
                    "purpose",
                    "gap: holds children's PI but states no purpose (CAC Order No. 4 Art. 7, 14)"
                        .into(),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_retention() {
        let r: Retention = "365d after created_at".parse().unwrap();
        assert_eq!(r.period, Period::Days(365));
        assert_eq!(r.clock, Clock::Column("created_at".into()));
        assert_eq!(r.to_string(), "365d after created_at");
        assert_eq!(
            "1y after object_age".parse::<Retention>().unwrap().clock,
            Clock::ObjectAge
        );
        assert!("365 days".parse::<Retention>().is_err());
        assert!("0d after x".parse::<Retention>().is_err());
    }

    #[test]
    fn cutoff_is_exclusive() {
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 31).unwrap();
        assert_eq!(
            Period::Days(30).cutoff_date(as_of),
            NaiveDate::from_ymd_opt(2025, 3, 1).unwrap()
        );
        assert_eq!(
            Period::Months(1).cutoff_date(as_of),
            NaiveDate::from_ymd_opt(2025, 2, 28).unwrap()
        );
    }

    #[test]
    fn anon_ops() {
        let fp = crate::fingerprint::Fingerprinter::new(b"k");
        let op: AnonOp = "mask:3,4".parse().unwrap();
        assert_eq!(op.apply("13812345678", &fp).as_deref(), Some("138****5678"));
        assert_eq!(
            "year_month"
                .parse::<AnonOp>()
                .unwrap()
                .apply("2015-03-07", &fp)
                .as_deref(),
            Some("2015-03")
        );
        assert_eq!(
            "age_band:5"
                .parse::<AnonOp>()
                .unwrap()
                .apply("8", &fp)
                .as_deref(),
            Some("5-9")
        );
        assert_eq!("null".parse::<AnonOp>().unwrap().apply("x", &fp), None);
        assert!("hash".parse::<AnonOp>().unwrap().is_pseudonymization());
        assert!("mask:3".parse::<AnonOp>().is_err());
    }
}
