//! Scale-out: which work units a shard scans, and how one huge table,
//! file or object becomes several units.
//!
//! One mechanism for every source:
//!
//! - [`Shard::contains`] decides whether a unit belongs to shard `K` of `N`
//!   from its id alone: the first 8 bytes of SHA-256 of the unit id (UTF-8),
//!   read big-endian, modulo `N`. SHA-256 is fixed by FIPS 180-4, so the
//!   assignment is the same on every machine, architecture and childguard
//!   version. Unit ids are the path relative to the target root (files), the
//!   object key (object stores) and `schema.table` (databases), so the same
//!   unit goes to the same shard whichever host or mount point a shard runs on.
//! - [`UnitRange`] splits a large unit into ranges, each its own unit with the
//!   id `BASE#pk=LO..HI` (integer primary key in `[LO, HI)`) or
//!   `BASE#bytes=START..END` (the lines that start in `[START, END)`). Range
//!   bounds are multiples of a fixed span, so the list depends only on the
//!   data (not on `N`): the unsharded scan lists exactly the same units, and a
//!   growing table keeps its old ranges and gains new ones.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Environment variable Kubernetes sets in each pod of an Indexed Job.
pub const JOB_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Environment variable giving the number of shards with `--shard-from-env`.
pub const SHARDS_ENV: &str = "CHILDGUARD_SHARDS";

/// Bad `--shard` values; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("shard `{0}`: expected K/N, e.g. 0/4 (K is 0-based)")]
    Syntax(String),
    #[error("shard count must be at least 1 (got N = 0)")]
    ZeroShards,
    #[error("shard index {index} is out of range for {count} shard(s): K is 0-based, so 0 <= K < {count}")]
    OutOfRange { index: u64, count: u64 },
    #[error("{var} is not set (needed by --shard-from-env)")]
    MissingEnv { var: &'static str },
    #[error("{var}=`{value}` is not a non-negative integer")]
    BadEnv { var: &'static str, value: String },
    #[error("--shard-from-env needs the number of shards: --shards N or {SHARDS_ENV}")]
    MissingCount,
}

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub fn new(index: u64, count: u64) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroShards);
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// K from `JOB_COMPLETION_INDEX`, N from `count` (`--shards`) or `CHILDGUARD_SHARDS`.
    pub fn from_env(
        count: Option<u64>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard, ShardError> {
        let num = |var: &'static str| -> Result<Option<u64>, ShardError> {
            match env(var) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| ShardError::BadEnv {
                    var,
                    value: v.clone(),
                }),
            }
        };
        let index = num(JOB_INDEX_ENV)?.ok_or(ShardError::MissingEnv { var: JOB_INDEX_ENV })?;
        let count = match count {
            Some(c) => c,
            None => num(SHARDS_ENV)?.ok_or(ShardError::MissingCount)?,
        };
        Shard::new(index, count)
    }

    /// Whether the unit with this id belongs to this shard.
    pub fn contains(&self, unit_id: &str) -> bool {
        unit_hash(unit_id) % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| ShardError::Syntax(s.into()))?;
        let p = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| ShardError::Syntax(s.into()))
        };
        Shard::new(p(k)?, p(n)?)
    }
}

/// The stable hash of a unit id: SHA-256, first 8 bytes big-endian.
pub fn unit_hash(unit_id: &str) -> u64 {
    let d = Sha256::digest(unit_id.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// A part of a unit that is scanned as its own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitRange {
    /// Rows whose integer primary key is in `[lo, hi)` (`hi == i64::MAX`: no upper bound).
    Key { lo: i64, hi: i64 },
    /// The lines that start at a byte offset in `[start, end)`.
    Bytes { start: u64, end: u64 },
}

impl fmt::Display for UnitRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitRange::Key { lo, hi } => write!(f, "pk={lo}..{hi}"),
            UnitRange::Bytes { start, end } => write!(f, "bytes={start}..{end}"),
        }
    }
}

impl FromStr for UnitRange {
    type Err = String;
    fn from_str(s: &str) -> Result<UnitRange, String> {
        let bad = || format!("invalid unit range `{s}`");
        let (kind, rest) = s.split_once('=').ok_or_else(bad)?;
        let (a, b) = rest.split_once("..").ok_or_else(bad)?;
        match kind {
            "pk" => {
                let lo = a.parse().map_err(|_| bad())?;
                let hi = b.parse().map_err(|_| bad())?;
                (lo < hi)
                    .then_some(UnitRange::Key { lo, hi })
                    .ok_or_else(bad)
            }
            "bytes" => {
                let start = a.parse().map_err(|_| bad())?;
                let end = b.parse().map_err(|_| bad())?;
                (start < end)
                    .then_some(UnitRange::Bytes { start, end })
                    .ok_or_else(bad)
            }
            _ => Err(bad()),
        }
    }
}

impl UnitRange {
    /// The unit id of this range of `base`.
    pub fn unit_id(&self, base: &str) -> String {
        format!("{base}#{self}")
    }
}

/// Split a unit id into its base (path, key, `schema.table`) and range, if any.
/// Ids whose suffix after the last `#` is not a range (a file named `a#b`) have none.
pub fn split_unit_id(id: &str) -> (&str, Option<UnitRange>) {
    if let Some((base, r)) = id.rsplit_once('#') {
        if let Ok(range) = r.parse() {
            return (base, Some(range));
        }
    }
    (id, None)
}

/// Key ranges covering `[min, max]`, aligned to multiples of `span`
/// (`[k·span, (k+1)·span)`); None when the key space fits in one span (the
/// table stays one unit) or `span` is 0 (splitting off).
pub fn key_ranges(min: i64, max: i64, span: u64) -> Option<Vec<UnitRange>> {
    if span == 0 || min > max {
        return None;
    }
    let span = span.min(i64::MAX as u64) as i128;
    if (max as i128 - min as i128 + 1) <= span {
        return None;
    }
    let first = (min as i128).div_euclid(span) * span;
    let mut out = Vec::new();
    let mut lo = first;
    while lo <= max as i128 {
        let hi = (lo + span).min(i64::MAX as i128);
        out.push(UnitRange::Key {
            lo: lo.max(i64::MIN as i128) as i64,
            hi: hi as i64,
        });
        if hi == i64::MAX as i128 {
            break;
        }
        lo += span;
    }
    Some(out)
}

/// Byte ranges of a `size`-byte unit, `span` bytes each; None when it fits in one.
pub fn byte_ranges(size: u64, span: u64) -> Option<Vec<UnitRange>> {
    if span == 0 || size <= span {
        return None;
    }
    Some(
        (0..size.div_ceil(span))
            .map(|i| UnitRange::Bytes {
                start: i * span,
                end: ((i + 1) * span).min(size),
            })
            .collect(),
    )
}

/// Default key-range width: one million keys.
pub const fn default_range_rows() -> u64 {
    1_000_000
}

/// Default byte-range size: 1 GiB.
pub const fn default_range_bytes() -> u64 {
    1 << 30
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_shards() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        assert_eq!(
            "4/4".parse::<Shard>(),
            Err(ShardError::OutOfRange { index: 4, count: 4 })
        );
        assert_eq!("0/0".parse::<Shard>(), Err(ShardError::ZeroShards));
        assert!(matches!("x".parse::<Shard>(), Err(ShardError::Syntax(_))));
        assert!(matches!(
            "-1/3".parse::<Shard>(),
            Err(ShardError::Syntax(_))
        ));
        let env = |k: &str| match k {
            JOB_INDEX_ENV => Some("1".to_string()),
            SHARDS_ENV => Some("3".to_string()),
            _ => None,
        };
        assert_eq!(
            Shard::from_env(None, env).unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert_eq!(
            Shard::from_env(Some(2), env).unwrap(),
            Shard { index: 1, count: 2 }
        );
        assert_eq!(
            Shard::from_env(Some(1), env),
            Err(ShardError::OutOfRange { index: 1, count: 1 })
        );
        assert_eq!(
            Shard::from_env(None, |_| None),
            Err(ShardError::MissingEnv { var: JOB_INDEX_ENV })
        );
        let only_index = |k: &str| (k == JOB_INDEX_ENV).then(|| "0".to_string());
        assert_eq!(
            Shard::from_env(None, only_index),
            Err(ShardError::MissingCount)
        );
        let bad = |_: &str| Some("two".to_string());
        assert!(matches!(
            Shard::from_env(None, bad),
            Err(ShardError::BadEnv { .. })
        ));
    }

    #[test]
    fn every_unit_is_in_exactly_one_shard_and_the_hash_is_fixed() {
        // Pinned values: a change here moves units between shards of a running deployment.
        assert_eq!(unit_hash(""), 0xe3b0c44298fc1c14);
        assert_eq!(unit_hash("public.students"), unit_hash("public.students"));
        for n in 1..=7u64 {
            let mut per = vec![0u32; n as usize];
            for i in 0..2000 {
                let id = format!("logs/app-{i}.log");
                let owners: Vec<u64> = (0..n)
                    .filter(|k| Shard::new(*k, n).unwrap().contains(&id))
                    .collect();
                assert_eq!(owners.len(), 1, "{id} in {owners:?} of {n}");
                per[owners[0] as usize] += 1;
            }
            // Balanced within 20% of the mean.
            let mean = 2000.0 / n as f64;
            assert!(
                per.iter()
                    .all(|&c| (c as f64 - mean).abs() < 0.2 * mean + 5.0),
                "{per:?}"
            );
        }
    }

    #[test]
    fn ranges_are_aligned_cover_everything_and_round_trip() {
        assert_eq!(key_ranges(1, 100, 100), None);
        let r = key_ranges(5, 250, 100).unwrap();
        assert_eq!(
            r,
            vec![
                UnitRange::Key { lo: 0, hi: 100 },
                UnitRange::Key { lo: 100, hi: 200 },
                UnitRange::Key { lo: 200, hi: 300 }
            ]
        );
        // A grown table keeps its old ranges.
        assert_eq!(&key_ranges(5, 450, 100).unwrap()[..3], &r[..]);
        let neg = key_ranges(-150, 20, 100).unwrap();
        assert_eq!(neg[0], UnitRange::Key { lo: -200, hi: -100 });
        let top = key_ranges(i64::MAX - 150, i64::MAX, 100).unwrap();
        assert!(matches!(top.last(), Some(UnitRange::Key { hi, .. }) if *hi == i64::MAX));
        assert_eq!(byte_ranges(10, 10), None);
        let b = byte_ranges(25, 10).unwrap();
        assert_eq!(b.last(), Some(&UnitRange::Bytes { start: 20, end: 25 }));
        for x in r.iter().chain(&b) {
            let id = x.unit_id("public.t");
            assert_eq!(split_unit_id(&id), ("public.t", Some(*x)));
        }
        assert_eq!(split_unit_id("dir/a#b.log"), ("dir/a#b.log", None));
        assert_eq!(split_unit_id("a#pk=5..5"), ("a#pk=5..5", None));
    }
}
