//! The classifier: joins findings with the purpose inventory and yields
//! violations (DESIGN.md legal mapping, CAC Order No. 4):
//!
//! | kind | when | article |
//! |---|---|---|
//! | `undeclared_dataset` | children's PI where no dataset is declared | Art. 11, 14 |
//! | `undeclared_category` | a category (or children's PI at all) a dataset does not declare | Art. 7, 11 |
//! | `plaintext_in_encrypted` | PI readable in a column declared encrypted | Art. 13 |
//! | `retention_overdue` | records past the declared period exist (with their count) | Art. 12, 20 |
//! | `declared_not_found` | a scanned dataset in which none of its declared PI was found (info) | Art. 10(2) |
//!
//! Severity rises with children's data and with the category's sensitivity.
//! Every violation names the dataset's owner (Art. 8). Findings triaged as
//! false positive or accepted risk raise no violation.

mod retention;

pub use retention::{count_overdue, OverdueCount};

use crate::source::shard::split_unit_id;

use crate::config::inventory::{compile_match, Dataset};
use crate::config::Config;
use crate::finding::{Category, Finding, Sensitivity};
use crate::store::{
    FindingFilter, RunSummary, Severity, Store, StoreError, StoredFinding, TriageStatus, Violation,
    ViolationKind,
};
use chrono::NaiveDateTime;
use globset::GlobMatcher;
use std::collections::{BTreeMap, HashSet};

/// Classifier errors (the store failing). Problems counting one dataset's
/// records are not errors: they are reported in [`Classified::problems`].
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("inventory: dataset `{dataset}`: bad match pattern `{pattern}`: {message}")]
    Pattern {
        dataset: String,
        pattern: String,
        message: String,
    },
    #[error("no run {0}")]
    NoRun(i64),
}

pub const ART_UNDECLARED_DATASET: &str = "CAC Order No. 4 Art. 11, 14";
pub const ART_UNDECLARED_CATEGORY: &str = "CAC Order No. 4 Art. 7, 11";
pub const ART_PLAINTEXT: &str = "CAC Order No. 4 Art. 13";
pub const ART_RETENTION: &str = "CAC Order No. 4 Art. 12, 20";
pub const ART_NOT_FOUND: &str = "CAC Order No. 4 Art. 10(2)";

/// Normalize a target for comparison: no `file://`, no trailing `/`, no
/// credentials in URLs.
pub fn normalize_target(t: &str) -> String {
    let t = t.trim();
    let t = t.strip_prefix("file://").unwrap_or(t);
    let mut s = match t.find("://") {
        Some(i) => {
            let (scheme, rest) = t.split_at(i + 3);
            let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
            format!("{scheme}{host}{path}")
        }
        None => t.to_string(),
    };
    while s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    if let Some(p) = s.strip_prefix("./") {
        s = p.to_string();
    }
    s
}

/// One dataset compiled for matching.
struct Compiled {
    /// Resolved source target (may carry credentials: never print it).
    source: String,
    source_norm: String,
    globs: Vec<(String, GlobMatcher)>,
}

/// The inventory compiled for matching findings to datasets.
pub struct Inventory {
    pub datasets: Vec<Dataset>,
    compiled: Vec<Compiled>,
}

impl Inventory {
    /// Compile the config's datasets; `[[sources]]` names are resolved to their targets.
    pub fn new(config: &Config) -> Result<Inventory, ClassifyError> {
        let sources = config.source_targets();
        let mut compiled = Vec::new();
        for d in &config.datasets {
            let source = sources
                .get(&d.source)
                .cloned()
                .unwrap_or_else(|| d.source.clone());
            let mut globs = Vec::new();
            for m in &d.matches {
                let g = compile_match(m).map_err(|e| ClassifyError::Pattern {
                    dataset: d.name.clone(),
                    pattern: m.clone(),
                    message: e.kind().to_string(),
                })?;
                globs.push((m.clone(), g));
            }
            compiled.push(Compiled {
                source_norm: normalize_target(&source),
                source,
                globs,
            });
        }
        Ok(Inventory {
            datasets: config.datasets.clone(),
            compiled,
        })
    }

    /// The resolved source target of dataset `i` (may carry credentials).
    pub fn source_of(&self, i: usize) -> &str {
        &self.compiled[i].source
    }

    /// Index of the first dataset a finding belongs to.
    pub fn match_finding(&self, f: &Finding) -> Option<usize> {
        let target = normalize_target(&f.target);
        let subject = f
            .location
            .table
            .as_deref()
            .or(f.location.path.as_deref())
            .unwrap_or("");
        let short = f
            .location
            .table
            .as_deref()
            .and_then(|t| t.split_once('.').map(|(_, n)| n));
        self.compiled.iter().position(|c| {
            c.source_norm == target
                && (c.globs.is_empty()
                    || c.globs.iter().any(|(p, g)| {
                        g.is_match(subject)
                            || (!p.contains('.') && short.is_some_and(|s| g.is_match(s)))
                    }))
        })
    }

    /// True when dataset `i`'s source was a target of the run.
    pub fn scanned_in(&self, i: usize, targets: &[String]) -> bool {
        targets
            .iter()
            .any(|t| normalize_target(t) == self.compiled[i].source_norm)
    }

    /// Literal table names / paths among dataset `i`'s match patterns.
    pub fn literal_matches(&self, i: usize) -> Vec<String> {
        self.compiled[i]
            .globs
            .iter()
            .filter(|(p, _)| !p.contains(['*', '?', '[', '{']) && !p.ends_with('/'))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// True when `subject` (table or path) matches dataset `i`.
    pub fn matches_subject(&self, i: usize, subject: &str) -> bool {
        let c = &self.compiled[i];
        c.globs.is_empty() || c.globs.iter().any(|(_, g)| g.is_match(subject))
    }
}

/// What a classification produced.
#[derive(Debug, Default)]
pub struct Classified {
    pub violations: Vec<Violation>,
    /// (finding_id, dataset) for every finding considered.
    pub assignments: Vec<(String, Option<String>)>,
    /// Datasets whose records could not be counted, with the cause.
    pub problems: Vec<String>,
    /// Set when this run was the last shard of its run group to be
    /// classified: the whole group was then classified as one scan.
    pub group: Option<GroupClassified>,
}

/// The classification of a complete run group (every shard `K/N` finished):
/// the union of the shards' findings classified as one scan, stored as the
/// violations of the group's newest run (`run_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupClassified {
    pub run_group: String,
    pub run_id: i64,
    /// The runs classified together (one per shard).
    pub runs: Vec<i64>,
    pub violations: usize,
}

fn sensitivity_raise(s: Severity, sens: Sensitivity) -> Severity {
    if sens == Sensitivity::High {
        s.raise()
    } else {
        s
    }
}

fn column_of(f: &Finding) -> Option<&str> {
    f.location.column.as_deref().or(f.location.field.as_deref())
}

/// Key of an aggregated violation: one per kind, dataset, unit, column, category.
type AggKey = (
    ViolationKind,
    Option<usize>,
    String,
    String,
    Option<String>,
    Category,
);

struct Agg {
    findings: u64,
    /// Children's records when the finding is a child's, else matching values.
    records: u64,
    /// All matching values (plaintext counts every readable value).
    values: u64,
    child: bool,
    sensitivity: Sensitivity,
    example: String,
    not_child_declared: bool,
}

/// Classify findings of one run (pure: no I/O). Retention counts are added by
/// [`classify_run`].
pub fn classify_findings(
    inv: &Inventory,
    findings: &[StoredFinding],
    run_targets: &[String],
) -> Classified {
    let mut out = Classified::default();
    let mut agg: BTreeMap<AggKey, Agg> = BTreeMap::new();
    let mut found: HashSet<usize> = HashSet::new();
    for sf in findings {
        let f = &sf.finding;
        let ds = inv.match_finding(f);
        out.assignments.push((
            f.finding_id.clone(),
            ds.map(|i| inv.datasets[i].name.clone()),
        ));
        if let Some(i) = ds {
            found.insert(i);
        }
        if sf.resolved_at.is_some()
            || matches!(
                sf.triage.status,
                TriageStatus::FalsePositive | TriageStatus::AcceptedRisk
            )
        {
            continue;
        }
        let child = f.child == Some(true)
            || f.child_count.unwrap_or(0) > 0
            || f.category == Category::VulnerableChild;
        let records = f.child_count.filter(|_| child).or(f.count).unwrap_or(1);
        let col = column_of(f).map(str::to_string);
        let mut add = |kind, ds: Option<usize>, not_child_declared: bool| {
            let e = agg
                .entry((
                    kind,
                    ds,
                    f.target.clone(),
                    // Range units of one table or file are one unit here.
                    split_unit_id(&sf.unit_id).0.to_string(),
                    col.clone(),
                    f.category,
                ))
                .or_insert(Agg {
                    findings: 0,
                    records: 0,
                    values: 0,
                    child: false,
                    sensitivity: f.sensitivity,
                    example: f.finding_id.clone(),
                    not_child_declared,
                });
            e.findings += 1;
            e.records += records;
            e.values += f.count.unwrap_or(1);
            e.child |= child;
            e.sensitivity = e.sensitivity.max(f.sensitivity);
            e.not_child_declared |= not_child_declared;
        };
        match ds {
            None => {
                if child {
                    add(ViolationKind::UndeclaredDataset, None, false);
                }
            }
            Some(i) => {
                let d = &inv.datasets[i];
                let declared = d.declared_for(col.as_deref()).any(|c| c == f.category);
                let not_child_declared = child && !d.holds_child_data();
                if !declared || not_child_declared {
                    add(
                        ViolationKind::UndeclaredCategory,
                        Some(i),
                        not_child_declared,
                    );
                }
                if col.as_deref().is_some_and(|c| d.is_encrypted(c)) {
                    add(ViolationKind::PlaintextInEncrypted, Some(i), false);
                }
            }
        }
    }

    for ((kind, ds, target, unit, col, category), a) in agg {
        let d = ds.map(|i| &inv.datasets[i]);
        let (severity, article, message) = match kind {
            ViolationKind::UndeclaredDataset => (
                sensitivity_raise(Severity::High, a.sensitivity),
                ART_UNDECLARED_DATASET,
                format!(
                    "children's {category} found in {unit}{} ({} finding(s), {} record(s)) where no dataset is declared",
                    col.as_deref().map(|c| format!(" column {c}")).unwrap_or_default(),
                    a.findings,
                    a.records
                ),
            ),
            ViolationKind::UndeclaredCategory => {
                let mut s = if a.child { Severity::Medium } else { Severity::Low };
                if a.not_child_declared {
                    s = s.raise();
                }
                let what = if a.not_child_declared {
                    format!("children's {category}, but the dataset is not declared to hold children's PI")
                } else {
                    format!("{category}, which the dataset does not declare for this {}", if col.is_some() { "column" } else { "data" })
                };
                (
                    sensitivity_raise(s, a.sensitivity),
                    ART_UNDECLARED_CATEGORY,
                    format!("{unit}{}: {what} ({} finding(s))", col.as_deref().map(|c| format!(" column {c}")).unwrap_or_default(), a.findings),
                )
            }
            ViolationKind::PlaintextInEncrypted => {
                let s = if a.child || d.is_some_and(|d| d.holds_child_data()) { Severity::Critical } else { Severity::High };
                (
                    s,
                    ART_PLAINTEXT,
                    format!(
                        "{unit} column {} is declared encrypted but holds readable {category} ({} record(s))",
                        col.as_deref().unwrap_or("?"),
                        a.values
                    ),
                )
            }
            _ => unreachable!("aggregated kinds only"),
        };
        out.violations.push(Violation {
            id: 0,
            run_id: 0,
            kind,
            severity,
            dataset: d.map(|d| d.name.clone()),
            owner: d.and_then(|d| d.owner.clone()),
            article: article.into(),
            category: Some(category),
            target: Some(normalize_target(&target)),
            unit_id: Some(unit),
            column: col,
            finding_id: Some(a.example),
            record_count: Some(if kind == ViolationKind::PlaintextInEncrypted {
                a.values
            } else {
                a.records
            }),
            message,
        });
    }

    for (i, d) in inv.datasets.iter().enumerate() {
        if !found.contains(&i) && !d.categories.is_empty() && inv.scanned_in(i, run_targets) {
            out.violations.push(Violation {
                id: 0,
                run_id: 0,
                kind: ViolationKind::DeclaredNotFound,
                severity: Severity::Info,
                dataset: Some(d.name.clone()),
                owner: d.owner.clone(),
                article: ART_NOT_FOUND.into(),
                category: None,
                target: Some(normalize_target(inv.source_of(i))),
                unit_id: None,
                column: None,
                finding_id: None,
                record_count: None,
                message: format!("dataset `{}` was scanned but none of its declared PI was found: check the inventory is current", d.name),
            });
        }
    }
    out
}

/// Retention violation for one counted unit.
pub fn retention_violation(d: &Dataset, c: &OverdueCount, target: &str) -> Violation {
    let high = d
        .categories
        .values()
        .flatten()
        .any(|c| matches!(c, Category::CnResidentId | Category::VulnerableChild));
    let mut s = if d.holds_child_data() {
        Severity::High
    } else {
        Severity::Medium
    };
    if high {
        s = s.raise();
    }
    let r = d
        .retention
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    Violation {
        id: 0,
        run_id: 0,
        kind: ViolationKind::RetentionOverdue,
        severity: s,
        dataset: Some(d.name.clone()),
        owner: d.owner.clone(),
        article: ART_RETENTION.into(),
        category: None,
        target: Some(normalize_target(target)),
        unit_id: Some(c.unit.clone()),
        column: c.clock_column.clone(),
        finding_id: None,
        record_count: Some(c.count),
        message: format!(
            "{} {} in {} past retention ({r}, cutoff {})",
            c.count,
            c.what,
            c.unit,
            c.cutoff.format("%Y-%m-%d %H:%M:%S")
        ),
    }
}

/// Classify a stored run against the config's inventory: assigns findings
/// to datasets, counts records past retention (databases by SQL, files by
/// modification time), stores the violations and the run summary.
pub async fn classify_run(
    store: &dyn Store,
    run_id: i64,
    config: &Config,
    as_of: NaiveDateTime,
) -> Result<Classified, ClassifyError> {
    let run = store
        .run(run_id)
        .await?
        .ok_or(ClassifyError::NoRun(run_id))?;
    let inv = Inventory::new(config)?;
    let group = match (&run.run_group, &run.shard) {
        (Some(g), Some(_)) => complete_group(store, g).await?,
        _ => None,
    };
    // The group's newest run holds the group's violations once every shard
    // has finished; until then (and for every other shard) a shard run holds
    // its own, without "declared but not found" (one shard saw part of each
    // target).
    let mut out = match &group {
        Some(runs) if runs.last().map(|r| r.id) == Some(run_id) => {
            classify_runs(store, &inv, runs, run_id, as_of, true).await?
        }
        _ => {
            classify_runs(
                store,
                &inv,
                std::slice::from_ref(&run),
                run_id,
                as_of,
                run.shard.is_none(),
            )
            .await?
        }
    };
    if let (Some(runs), Some(g)) = (&group, &run.run_group) {
        let newest = runs.last().expect("a complete group has runs").id;
        let violations = if newest == run_id {
            out.violations.len()
        } else {
            let g_out = classify_runs(store, &inv, runs, newest, as_of, true).await?;
            out.problems.extend(g_out.problems);
            g_out.violations.len()
        };
        out.group = Some(GroupClassified {
            run_group: g.clone(),
            run_id: newest,
            runs: runs.iter().map(|r| r.id).collect(),
            violations,
        });
    }
    Ok(out)
}

/// The runs of `run_group` when it is complete: for each shard K of N the
/// newest run that finished (completed, with or without unit errors), one
/// per shard, in run-id order. None while a shard is missing, running or
/// failed.
pub async fn complete_group(
    store: &dyn Store,
    run_group: &str,
) -> Result<Option<Vec<crate::store::Run>>, crate::store::StoreError> {
    use crate::store::RunStatus;
    let runs = store.group_runs(run_group).await?;
    let mut by_shard: BTreeMap<u64, crate::store::Run> = BTreeMap::new();
    let mut count = None;
    for r in runs {
        let Some(shard) = r
            .shard
            .as_deref()
            .and_then(|s| s.parse::<crate::source::shard::Shard>().ok())
        else {
            continue;
        };
        if *count.get_or_insert(shard.count) != shard.count {
            return Ok(None); // one group name reused with another N: not one scan
        }
        // group_runs is in id order: a later run of shard K replaces an earlier one.
        by_shard.insert(shard.index, r);
    }
    let Some(n) = count else { return Ok(None) };
    let done = |r: &crate::store::Run| {
        matches!(
            r.status,
            RunStatus::Completed | RunStatus::CompletedWithErrors
        )
    };
    if by_shard.len() as u64 != n || !by_shard.values().all(done) {
        return Ok(None);
    }
    let mut runs: Vec<_> = by_shard.into_values().collect();
    runs.sort_by_key(|r| r.id);
    Ok(Some(runs))
}

/// Classify the findings of `runs` as one scan and store the result as the
/// violations and summary of `store_as`. `whole` says the runs together
/// scanned whole targets, so a declared dataset with no finding is reported.
async fn classify_runs(
    store: &dyn Store,
    inv: &Inventory,
    runs: &[crate::store::Run],
    store_as: i64,
    as_of: NaiveDateTime,
    whole: bool,
) -> Result<Classified, ClassifyError> {
    let mut findings = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    for run in runs {
        let mut after = None;
        loop {
            let page = store
                .findings(&FindingFilter {
                    run: Some(run.id),
                    after: after.clone(),
                    limit: 10_000,
                    ..Default::default()
                })
                .await?;
            findings.extend(page.items);
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        for t in &run.targets {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
    }
    let mut out = classify_findings(inv, &findings, &targets);
    if !whole {
        out.violations
            .retain(|v| v.kind != ViolationKind::DeclaredNotFound);
    }
    store.set_datasets(&out.assignments).await?;

    for (i, d) in inv.datasets.iter().enumerate() {
        if d.retention.is_none() {
            continue;
        }
        let mut units: Vec<String> = inv.literal_matches(i);
        for (sf, (_, ds)) in findings.iter().zip(&out.assignments) {
            let unit = split_unit_id(&sf.unit_id).0;
            if ds.as_deref() == Some(d.name.as_str()) && !units.iter().any(|u| u == unit) {
                units.push(unit.to_string());
            }
        }
        match count_overdue(
            d,
            inv.source_of(i),
            &units,
            |s| inv.matches_subject(i, s),
            as_of,
        )
        .await
        {
            Ok(counts) => {
                for c in counts.iter().filter(|c| c.count > 0) {
                    out.violations
                        .push(retention_violation(d, c, inv.source_of(i)));
                }
            }
            Err(e) => {
                tracing::warn!(dataset = %d.name, "retention count failed: {e}");
                out.problems.push(format!("dataset `{}`: {e}", d.name));
            }
        }
    }

    out.violations
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
    store.replace_violations(store_as, &out.violations).await?;
    let own = store
        .run(store_as)
        .await?
        .ok_or(ClassifyError::NoRun(store_as))?;
    let child = findings
        .iter()
        .filter(|f| f.finding.child == Some(true) || f.finding.child_count.unwrap_or(0) > 0)
        .count() as u64;
    store
        .set_run_summary(
            store_as,
            &RunSummary {
                findings: findings.len() as u64,
                child_findings: child,
                violations: out.violations.len() as u64,
                resolved: own.summary.resolved,
                classified: true,
                group_complete: whole && runs.iter().all(|r| r.shard.is_some()),
            },
        )
        .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(target: &str, table: Option<&str>, path: Option<&str>) -> Finding {
        let location = crate::finding::Location {
            table: table.map(Into::into),
            path: path.map(Into::into),
            column: table.map(|_| "c".to_string()),
            ..Default::default()
        };
        Finding {
            finding_id: Finding::compute_id(target, &location, "r", "f"),
            target: target.into(),
            location,
            category: Category::CnMobile,
            rule: "r".into(),
            child: Some(true),
            confidence: 0.9,
            masked: "m".into(),
            fingerprint: "f".into(),
            sensitivity: Sensitivity::Medium,
            rows_scanned: None,
            count: None,
            child_count: None,
            rows: None,
        }
    }

    #[test]
    fn matches_findings_to_datasets() {
        let text = r#"
[[sources]]
name = "db"
url = "postgres://u@h:5432/school"

[[datasets]]
name = "students"
source = "db"
match = ["public.stud*", "grades"]

[[datasets]]
name = "exports"
source = "s3://bucket/base/"
match = ["daily/"]

[[datasets]]
name = "everything"
source = "./logs"
"#;
        let (cfg, d) = crate::config::check_str(text, std::path::Path::new("c.toml"));
        assert!(d.is_empty(), "{d:?}");
        let inv = Inventory::new(&cfg.unwrap()).unwrap();
        let m = |f: Finding| inv.match_finding(&f).map(|i| inv.datasets[i].name.as_str());
        assert_eq!(
            m(finding(
                "postgres://h:5432/school",
                Some("public.students"),
                None
            )),
            Some("students")
        );
        assert_eq!(
            m(finding(
                "postgres://other@h:5432/school",
                Some("public.grades"),
                None
            )),
            Some("students"),
            "short table name"
        );
        assert_eq!(
            m(finding(
                "postgres://h:5432/school",
                Some("public.teachers"),
                None
            )),
            None
        );
        assert_eq!(
            m(finding(
                "postgres://h:5432/other",
                Some("public.students"),
                None
            )),
            None,
            "other database"
        );
        assert_eq!(
            m(finding(
                "s3://bucket/base",
                None,
                Some("daily/2025/a.parquet")
            )),
            Some("exports"),
            "prefix"
        );
        assert_eq!(
            m(finding("s3://bucket/base", None, Some("weekly/a.parquet"))),
            None
        );
        assert_eq!(
            m(finding("logs/", None, Some("any/file.log"))),
            Some("everything"),
            "no match = whole source"
        );
    }

    #[test]
    fn normalizes_targets() {
        assert_eq!(
            normalize_target("postgres://u:secret@h:5432/db"),
            "postgres://h:5432/db"
        );
        assert_eq!(normalize_target("file:///data/logs/"), "/data/logs");
        assert_eq!(normalize_target("./fixtures/"), "fixtures");
        assert_eq!(
            normalize_target("s3://bucket/prefix/"),
            "s3://bucket/prefix"
        );
    }
}
