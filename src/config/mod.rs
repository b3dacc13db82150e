//! The configuration file (`config/childguard.toml`): sources, the purpose
//! inventory (`[[datasets]]`), schedules, API tokens, state location.
//!
//! [`Config::load`] parses strictly and fails with every problem found;
//! [`check_str`] / [`check_file`] return every problem as a [`Diagnostic`]
//! with its file, line, column and key path (`datasets[2].retention`), so a
//! user fixes the whole file in one pass (`childguard config check FILE`).
//!
//! Sections owned by other stages (`[[sources]]`, `[[schedules]]`,
//! `[[tokens]]`, …) are tolerated here as tables in [`Config::rest`] until
//! they are typed; an unknown *scalar* key at the top level is an error (it
//! is almost always a typo such as `state_dri`).

pub mod daemon;
pub mod inventory;
pub mod sources;

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Top-level configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// Directory for the embedded store, the fingerprint key and journals.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// PostgreSQL URL of a shared store (teams, several daemons); SQLite under `state_dir` when unset.
    #[serde(default)]
    pub state_url: Option<String>,
    /// Age under which a person is a child (CAC Order No. 4 Art. 2: 14).
    #[serde(default = "default_child_age")]
    pub child_age: u32,
    /// Named scan targets (databases, object stores) with credentials from env vars or files.
    #[serde(default)]
    pub sources: Vec<sources::SourceConfig>,
    /// The purpose inventory.
    #[serde(default)]
    pub datasets: Vec<inventory::Dataset>,
    /// Scheduled jobs run by `childguard serve`.
    #[serde(default)]
    pub schedules: Vec<daemon::ScheduleConfig>,
    /// API bearer tokens (hashed) and their roles.
    #[serde(default)]
    pub tokens: Vec<daemon::TokenConfig>,
    /// HTTP server settings of `childguard serve`.
    #[serde(default)]
    pub server: daemon::ServerConfig,
    /// File readers: include/exclude globs, chunk size and the robustness
    /// limits (decompression ratio, JSON depth, line length, columns); also
    /// used for object bodies.
    #[serde(default)]
    pub files: crate::source::files::FileSourceConfig,
    /// Sections not yet typed by a stage (`sources`, …).
    #[serde(flatten)]
    pub rest: toml::Table,
}

const fn default_child_age() -> u32 {
    14
}

/// Top-level scalar keys this module types.
const TOP_KEYS: &[&str] = &["state_dir", "state_url", "child_age", "datasets"];

/// Errors loading the configuration, each with the file and location.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How bad a diagnostic is: errors make the config unusable, warnings are gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Warning,
    Error,
}

/// One problem in a config file, with its location.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub col: usize,
    /// Key path, e.g. `datasets[2].retention`; empty for syntax errors.
    pub key: String,
    pub level: Level,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lvl = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {lvl}: ",
            self.file.display(),
            self.line,
            self.col
        )?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl Config {
    /// Load and validate; fails with every error found (warnings are not errors).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })?;
        let (cfg, diags) = check_str(&text, path);
        // Secrets in the file are warned about at every start, not only by `config check`.
        for d in diags.iter().filter(|d| d.level == Level::Warning) {
            if d.message.contains("plaintext password") {
                tracing::warn!("{d}");
            }
        }
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| d.to_string())
            .collect();
        match cfg {
            Some(c) if errors.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid {
                path: path.into(),
                message: if errors.is_empty() {
                    "invalid configuration".into()
                } else {
                    errors.join("\n")
                },
            }),
        }
    }

    /// The state directory: the configured one, else [`crate::fingerprint::default_state_dir`].
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(crate::fingerprint::default_state_dir)
    }

    /// `[[sources]]` entries as name → target URL.
    pub fn source_targets(&self) -> HashMap<String, String> {
        self.sources
            .iter()
            .map(|s| (s.name.clone(), s.url.clone()))
            .collect()
    }
}

/// Read and check a file: every diagnostic, and the config when it has no errors.
pub fn check_file(path: &Path) -> Result<(Option<Config>, Vec<Diagnostic>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })?;
    Ok(check_str(&text, path))
}

/// Spans of every key path in a document, for locating diagnostics.
#[derive(Debug, Default)]
pub struct SpanMap {
    spans: HashMap<String, Range<usize>>,
    line_starts: Vec<usize>,
    text: String,
}

impl SpanMap {
    fn new(text: &str, doc: &toml_edit::ImDocument<&str>) -> SpanMap {
        let mut m = SpanMap {
            spans: HashMap::new(),
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            text: text.to_string(),
        };
        walk_table("", doc.as_table(), &mut m.spans);
        m
    }

    /// (line, col), 1-based, of a key path; falls back to its nearest parent.
    pub fn locate(&self, key: &str) -> (usize, usize) {
        let mut k = key;
        loop {
            if let Some(r) = self.spans.get(k) {
                return self.line_col(r.start);
            }
            match k.rfind(['.', '[']) {
                Some(i) => k = &k[..i],
                None => return (1, 1),
            }
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

fn walk_table(prefix: &str, t: &toml_edit::Table, out: &mut HashMap<String, Range<usize>>) {
    for (k, item) in t.iter() {
        let path = join(prefix, k);
        let key_span = t.key(k).and_then(|k| k.span());
        if let Some(ks) = &key_span {
            out.insert(format!("{path}#key"), ks.clone());
        }
        let span = match item {
            toml_edit::Item::Value(v) => v.span(),
            _ => None,
        }
        .or(key_span.clone());
        if let Some(s) = span {
            out.insert(path.clone(), s);
        }
        match item {
            toml_edit::Item::Table(sub) => {
                if let Some(s) = sub.span() {
                    out.entry(path.clone()).or_insert(s);
                }
                walk_table(&path, sub, out)
            }
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, sub) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    if let Some(s) = sub.span() {
                        out.insert(p.clone(), s);
                    }
                    walk_table(&p, sub, out);
                }
            }
            toml_edit::Item::Value(v) => walk_value(&path, v, out),
            toml_edit::Item::None => {}
        }
    }
}

fn walk_value(path: &str, v: &toml_edit::Value, out: &mut HashMap<String, Range<usize>>) {
    match v {
        toml_edit::Value::InlineTable(t) => {
            for (k, sub) in t.iter() {
                let p = join(path, k);
                if let Some(s) = sub.span().or_else(|| t.key(k).and_then(|k| k.span())) {
                    out.insert(p.clone(), s);
                }
                walk_value(&p, sub, out);
            }
        }
        toml_edit::Value::Array(a) => {
            for (i, sub) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if let Some(s) = sub.span() {
                    out.insert(p.clone(), s);
                }
                walk_value(&p, sub, out);
            }
        }
        _ => {}
    }
}

/// Collects diagnostics for one file.
struct Checker<'a> {
    file: &'a Path,
    spans: &'a SpanMap,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn push(&mut self, level: Level, key: &str, message: impl Into<String>) {
        self.push_at(level, key, key, message)
    }

    /// Report at the key itself (`name = …` → `name`), for unknown keys.
    fn push_key(&mut self, level: Level, key: &str, message: impl Into<String>) {
        let at = if self.spans.spans.contains_key(&format!("{key}#key")) {
            format!("{key}#key")
        } else {
            key.to_string()
        };
        self.push_at(level, &at, key, message)
    }

    fn push_at(&mut self, level: Level, at: &str, key: &str, message: impl Into<String>) {
        let (line, col) = self.spans.locate(at);
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            key: key.to_string(),
            level,
            message: message.into(),
        });
    }

    /// Deserialize one value into `T`, reporting a failure at `key`.
    fn field<T: serde::de::DeserializeOwned>(&mut self, key: &str, v: &toml::Value) -> Option<T> {
        match T::deserialize(v.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(Level::Error, key, e.message().trim().to_string());
                None
            }
        }
    }
}

/// Check a config text: every problem with its location, and the parsed
/// config when there is no error. Also runs [`inventory::validate`].
pub fn check_str(text: &str, file: &Path) -> (Option<Config>, Vec<Diagnostic>) {
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let m = SpanMap {
                line_starts: std::iter::once(0)
                    .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect(),
                text: text.to_string(),
                ..Default::default()
            };
            let (line, col) = e.span().map_or((1, 1), |s| m.line_col(s.start));
            let msg = e.message().trim().to_string();
            return (
                None,
                vec![Diagnostic {
                    file: file.into(),
                    line,
                    col,
                    key: String::new(),
                    level: Level::Error,
                    message: format!("TOML syntax: {msg}"),
                }],
            );
        }
    };
    let spans = SpanMap::new(text, &doc);
    let mut c = Checker {
        file,
        spans: &spans,
        diags: Vec::new(),
    };
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            c.push(Level::Error, "", e.message().trim().to_string());
            return (None, c.diags);
        }
    };

    for (k, v) in &table {
        match k.as_str() {
            "state_dir" => {
                c.field::<PathBuf>(k, v);
            }
            "state_url" => {
                if let Some(u) = c.field::<String>(k, v) {
                    if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                        c.push(Level::Error, k, "state_url must be a PostgreSQL URL (postgres://…); leave it unset for the embedded SQLite store");
                    } else if url_has_password(&u) {
                        c.push(Level::Warning, k, "state_url contains a plaintext password; use PGPASSWORD or a password file instead");
                    }
                }
            }
            "child_age" => {
                if let Some(a) = c.field::<u32>(k, v) {
                    if !(1..=18).contains(&a) {
                        c.push(
                            Level::Error,
                            k,
                            format!(
                                "child_age {a} is outside 1..=18 (CAC Order No. 4 Art. 2 uses 14)"
                            ),
                        );
                    }
                }
            }
            "sources" => {
                for (i, src) in v.as_array().into_iter().flatten().enumerate() {
                    if src
                        .get("url")
                        .and_then(|u| u.as_str())
                        .is_some_and(url_has_password)
                    {
                        c.push(Level::Warning, &format!("sources[{i}].url"), "url contains a plaintext password; use password_env or password_file instead");
                    }
                }
            }
            "datasets" => {
                let Some(arr) = v.as_array() else {
                    c.push(
                        Level::Error,
                        k,
                        "`datasets` must be an array of tables ([[datasets]])",
                    );
                    continue;
                };
                let mut parsed = Vec::new();
                for (i, d) in arr.iter().enumerate() {
                    if let Some(ds) = check_dataset(&mut c, i, d) {
                        parsed.push((i, ds));
                    }
                }
                let all: Vec<inventory::Dataset> = parsed.iter().map(|(_, d)| d.clone()).collect();
                for issue in inventory::validate(&all) {
                    let key = issue.key.replace(
                        &format!("datasets[{}]", issue.index),
                        &format!("datasets[{}]", parsed[issue.index].0),
                    );
                    c.push(issue.level, &key, issue.message);
                }
            }
            other if !TOP_KEYS.contains(&other) && !v.is_table() && !is_array_of_tables(v) => {
                c.push_key(
                    Level::Error,
                    other,
                    format!(
                        "unknown key `{other}` (expected one of {}, or a section table)",
                        TOP_KEYS.join(", ")
                    ),
                );
            }
            _ => {}
        }
    }

    let has_errors = c.diags.iter().any(|d| d.level == Level::Error);
    let cfg = if has_errors {
        None
    } else {
        match toml::from_str::<Config>(text) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                let (line, col) = e.span().map_or((1, 1), |s| spans.line_col(s.start));
                c.diags.push(Diagnostic {
                    file: file.into(),
                    line,
                    col,
                    key: String::new(),
                    level: Level::Error,
                    message: e.message().trim().to_string(),
                });
                None
            }
        }
    };
    c.diags.sort_by_key(|d| (d.line, d.col));
    (cfg, c.diags)
}

/// Whether a URL carries a password (`scheme://user:PASSWORD@host`).
fn url_has_password(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|p| p.password().is_some())
}

fn is_array_of_tables(v: &toml::Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(|x| x.is_table()))
}

const DATASET_KEYS: &[&str] = &[
    "name",
    "source",
    "match",
    "owner",
    "purpose",
    "legal_basis",
    "location",
    "categories",
    "child_data",
    "subject_key",
    "primary_key",
    "encrypted",
    "retention",
    "disposal",
    "anonymize",
];

/// Check one `[[datasets]]` entry field by field so every bad field is reported.
fn check_dataset(c: &mut Checker<'_>, i: usize, v: &toml::Value) -> Option<inventory::Dataset> {
    let base = format!("datasets[{i}]");
    let Some(t) = v.as_table() else {
        c.push(Level::Error, &base, "each dataset must be a table");
        return None;
    };
    let mut ok = true;
    for (k, fv) in t {
        let key = format!("{base}.{k}");
        let good = match k.as_str() {
            "name" => c.field::<String>(&key, fv).is_some(),
            "source" => match c.field::<String>(&key, fv) {
                Some(u) => {
                    if url_has_password(&u) {
                        c.push(Level::Warning, &key, "source contains a plaintext password; name a [[sources]] entry with password_env or password_file instead");
                    }
                    true
                }
                None => false,
            },
            "owner" | "purpose" | "legal_basis" | "location" | "subject_key" => {
                c.field::<String>(&key, fv).is_some()
            }
            "match" | "primary_key" | "encrypted" => c.field::<Vec<String>>(&key, fv).is_some(),
            "child_data" => c.field::<bool>(&key, fv).is_some(),
            "categories" => match fv.as_table() {
                None => {
                    c.push(
                        Level::Error,
                        &key,
                        "`categories` must be a table of column = [category, …]",
                    );
                    false
                }
                Some(cats) => {
                    let mut good = true;
                    for (col, list) in cats {
                        let ck = format!("{key}.{col}");
                        match list.as_array() {
                            None => {
                                c.push(Level::Error, &ck, "expected a list of category ids");
                                good = false;
                            }
                            Some(items) => {
                                for (j, item) in items.iter().enumerate() {
                                    good &= c
                                        .field::<crate::finding::Category>(
                                            &format!("{ck}[{j}]"),
                                            item,
                                        )
                                        .is_some();
                                }
                            }
                        }
                    }
                    good
                }
            },
            "retention" => c.field::<inventory::Retention>(&key, fv).is_some(),
            "disposal" => c.field::<inventory::Disposal>(&key, fv).is_some(),
            "anonymize" => match fv.as_table() {
                None => {
                    c.push(
                        Level::Error,
                        &key,
                        "`anonymize` must be a table of column = \"operator\"",
                    );
                    false
                }
                Some(ops) => {
                    let mut good = true;
                    for (col, op) in ops {
                        good &= c
                            .field::<inventory::AnonOp>(&format!("{key}.{col}"), op)
                            .is_some();
                    }
                    good
                }
            },
            other => {
                c.push_key(
                    Level::Error,
                    &key,
                    format!(
                        "unknown key `{other}` (expected one of {})",
                        DATASET_KEYS.join(", ")
                    ),
                );
                false
            }
        };
        ok &= good;
    }
    for req in ["name", "source"] {
        if !t.contains_key(req) {
            c.push(Level::Error, &base, format!("missing required key `{req}`"));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    match inventory::Dataset::deserialize(v.clone()) {
        Ok(d) => Some(d),
        Err(e) => {
            c.push(Level::Error, &base, e.message().trim().to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_error_with_location() {
        let text = r#"state_dri = "/x"
child_age = 40

[[datasets]]
name = "a"
source = "db"
retention = "365 days"
categories = { sfzh = ["cn_resident_id", "nope"] }

[[datasets]]
source = "db"
disposal = "shred"
colour = "red"

[[schedules]]
name = "nightly"
"#;
        let (cfg, d) = check_str(text, Path::new("c.toml"));
        assert!(cfg.is_none());
        let got: Vec<(usize, &str)> = d
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| (d.line, d.key.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "state_dri"),
                (2, "child_age"),
                (7, "datasets[0].retention"),
                (8, "datasets[0].categories.sfzh[1]"),
                (10, "datasets[1]"),
                (12, "datasets[1].disposal"),
                (13, "datasets[1].colour"),
            ],
            "{d:#?}"
        );
        assert_eq!(d[2].col, 13);
        assert!(
            d[2].to_string()
                .starts_with("c.toml:7:13: error: datasets[0].retention:"),
            "{}",
            d[2]
        );
    }

    #[test]
    fn syntax_error_has_location() {
        let (cfg, d) = check_str("a = 1\nb = [\n", Path::new("x.toml"));
        assert!(cfg.is_none());
        assert_eq!(d.len(), 1);
        assert!(d[0].line >= 2, "{:?}", d[0]);
    }

    #[test]
    fn tolerates_other_sections() {
        let text = "[[sources]]\nname = \"logs\"\nurl = \"/var/log\"\n[sweep]\nmax_batch = 5\n";
        let (cfg, d) = check_str(text, Path::new("c.toml"));
        assert!(d.is_empty(), "{d:?}");
        let cfg = cfg.unwrap();
        assert_eq!(
            cfg.source_targets().get("logs").map(String::as_str),
            Some("/var/log")
        );
    }
}
