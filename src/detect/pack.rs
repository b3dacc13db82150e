//! Rule packs: TOML data in `detectors/`, embedded in the binary and
//! overridable with `--detectors DIR` (every `*.toml` there, plus an optional
//! `regions.tsv`).

use super::DetectError;
use crate::finding::{Category, Sensitivity};
use serde::Deserialize;
use std::path::Path;

/// The packs shipped in the binary: (file name, TOML text).
pub const EMBEDDED: [(&str, &str); 5] = [
    (
        "identity.toml",
        include_str!("../../detectors/identity.toml"),
    ),
    ("contact.toml", include_str!("../../detectors/contact.toml")),
    ("person.toml", include_str!("../../detectors/person.toml")),
    ("school.toml", include_str!("../../detectors/school.toml")),
    (
        "vulnerable.toml",
        include_str!("../../detectors/vulnerable.toml"),
    ),
];

/// The administrative-division table shipped in the binary (scripts/gen_regions.py).
pub const EMBEDDED_REGIONS: &str = include_str!("../../detectors/regions.tsv");

/// One rule pack file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackFile {
    /// Pack metadata.
    pub pack: PackMeta,
    /// The rules of the pack.
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// Pack metadata.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackMeta {
    /// Pack name.
    pub name: String,
    /// What the pack detects.
    #[serde(default)]
    pub description: String,
    /// Legal and standards references for the whole pack.
    #[serde(default)]
    pub references: Vec<String>,
}

/// One rule as written in a pack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable rule id, e.g. `cn.resident_id`.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Category id of DESIGN.md.
    pub category: Category,
    /// low / medium / high.
    #[serde(default)]
    pub sensitivity: Sensitivity,
    /// Named built-in scanner (see [`super::Scanner`]).
    #[serde(default)]
    pub scanner: Option<String>,
    /// A regular expression matcher (for rules without a built-in scanner).
    #[serde(default)]
    pub regex: Option<String>,
    /// Validator applied (documentation; built-in scanners apply their own).
    #[serde(default)]
    pub validator: Option<String>,
    /// Base confidence of a match without context (0..1).
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Report only when a context word (or a hinted column) supports the match.
    #[serde(default)]
    pub required_context: bool,
    /// Literal keywords: matched as findings by the `keywords` scanner, or
    /// as triggers by `guardian`. A trailing `!` marks a keyword that by
    /// itself shows the person is a child.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Words that raise confidence within the window before a match (same line).
    #[serde(default)]
    pub context: Vec<String>,
    /// Words that, as the nearest context word before a match, suppress it.
    #[serde(default)]
    pub negative_context: Vec<String>,
    /// Regexes on normalized column/field names (lowercase, camelCase split by `_`).
    #[serde(default)]
    pub column_hints: Vec<String>,
    /// Texts in which the rule must find something.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Texts in which the rule must find nothing.
    #[serde(default)]
    pub negative_examples: Vec<String>,
    /// Legal and standards references.
    #[serde(default)]
    pub references: Vec<String>,
}

/// A loaded pack with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPack {
    /// File name or path.
    pub source: String,
    pub file: PackFile,
}

/// Load the embedded packs, or every `*.toml` in `dir`. Returns the packs and the region table text.
pub fn load(dir: Option<&Path>) -> Result<(Vec<LoadedPack>, String), DetectError> {
    let mut packs = Vec::new();
    let regions;
    match dir {
        None => {
            for (name, text) in EMBEDDED {
                packs.push(parse(name, text)?);
            }
            regions = EMBEDDED_REGIONS.to_string();
        }
        Some(dir) => {
            let err = |message: String| DetectError::Pack {
                path: dir.display().to_string(),
                message,
            };
            let rd = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
            let mut paths: Vec<_> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            if paths.is_empty() {
                return Err(err("no *.toml rule packs in the directory".into()));
            }
            for p in paths {
                let text = std::fs::read_to_string(&p).map_err(|e| DetectError::Pack {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?;
                packs.push(parse(&p.display().to_string(), &text)?);
            }
            let rp = dir.join("regions.tsv");
            regions = if rp.exists() {
                std::fs::read_to_string(&rp).map_err(|e| DetectError::Pack {
                    path: rp.display().to_string(),
                    message: e.to_string(),
                })?
            } else {
                EMBEDDED_REGIONS.to_string()
            };
        }
    }
    Ok((packs, regions))
}

fn parse(source: &str, text: &str) -> Result<LoadedPack, DetectError> {
    let file: PackFile = toml::from_str(text).map_err(|e| DetectError::Pack {
        path: source.to_string(),
        message: e.to_string(),
    })?;
    Ok(LoadedPack {
        source: source.to_string(),
        file,
    })
}
