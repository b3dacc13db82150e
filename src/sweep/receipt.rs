//! Receipts: what was disposed of, where, how many, when, who approved it,
//! under which plan, and whether verification found anything left. Written
//! as JSON and HTML to `<state_dir>/receipts/<plan>.{json,html}`. They hold
//! no raw values: names of tables/files, counts, times, people, and for an
//! erasure the subject's keyed fingerprint only.

use super::journal::Approval;
use super::{PlanItem, PlanKind, SweepError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One table or file.
#[derive(Debug, Clone, Serialize)]
pub struct UnitResult {
    pub name: String,
    pub planned: i64,
    /// Rows/lines deleted or anonymized, or 1 for a deleted file.
    pub disposed: i64,
    /// False when an interrupted batch could not be counted exactly.
    pub exact: bool,
    pub batches: i64,
    pub max_batch_ms: f64,
    pub whole: bool,
    /// Records still matching after the run (verification re-count).
    pub remaining: Option<i64>,
    pub verified: bool,
    pub note: Option<String>,
}

/// One dataset.
#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    pub dataset: String,
    pub source: String,
    pub owner: Option<String>,
    pub action: String,
    pub operators: std::collections::BTreeMap<String, String>,
    pub rule: String,
    pub cutoff: Option<chrono::NaiveDateTime>,
    pub units: Vec<UnitResult>,
}

impl ItemResult {
    pub fn new(it: &PlanItem) -> Self {
        ItemResult {
            dataset: it.dataset.clone(),
            source: it.source.clone(),
            owner: it.owner.clone(),
            action: it.action.clone(),
            operators: it.operators.clone(),
            rule: it.rule.clone(),
            cutoff: it.cutoff,
            units: vec![],
        }
    }
}

/// The receipt of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub plan_id: String,
    pub kind: PlanKind,
    pub status: String,
    pub created_by: String,
    pub created_at: String,
    pub approvals: Vec<Approval>,
    pub run_by: String,
    pub started_at: String,
    pub finished_at: String,
    pub subject_fingerprint: Option<String>,
    pub items: Vec<ItemResult>,
    pub disposed: i64,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

pub fn path(state_dir: &Path, plan: &str, ext: &str) -> PathBuf {
    state_dir.join("receipts").join(format!("{plan}.{ext}"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Receipt {
    fn basis(&self) -> &'static str {
        match self.kind {
            PlanKind::Retention => "Retention sweep — CAC Order No. 4 (2019) Art. 12 and 20: children's personal information is not kept longer than its purpose needs.",
            PlanKind::Erasure => "Erasure of one child's personal information on request — CAC Order No. 4 (2019) Art. 20.",
            PlanKind::Purge => "Deletion of all children's personal information on termination of the service — CAC Order No. 4 (2019) Art. 23.",
        }
    }

    pub fn html(&self) -> String {
        let mut h = String::new();
        h.push_str(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>childguard receipt ",
        );
        h.push_str(&esc(&self.plan_id));
        h.push_str("</title><style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.bad{color:#b00}</style><body>");
        h.push_str(&format!(
            "<h1>childguard {} receipt</h1><p>{}</p>",
            esc(self.kind.as_str()),
            esc(self.basis())
        ));
        h.push_str("<table>");
        let mut row = |k: &str, v: &str| {
            h.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v)))
        };
        row("Plan", &self.plan_id);
        row("Status", &self.status);
        row(
            "Planned by",
            &format!("{} at {}", self.created_by, self.created_at),
        );
        let ap: Vec<String> = self
            .approvals
            .iter()
            .map(|a| {
                format!(
                    "{} at {}{}",
                    a.approved_by,
                    a.approved_at,
                    a.comment
                        .as_ref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        row(
            "Approved by",
            &if ap.is_empty() {
                "not required by configuration".to_string()
            } else {
                ap.join("; ")
            },
        );
        row("Run by", &self.run_by);
        row(
            "Started / finished",
            &format!("{} / {}", self.started_at, self.finished_at),
        );
        if let Some(f) = &self.subject_fingerprint {
            row("Subject (keyed fingerprint)", f);
        }
        row("Records disposed of", &self.disposed.to_string());
        h.push_str("</table><h2>Details</h2><table><tr><th>Dataset</th><th>Owner</th><th>Where</th><th>Rule</th><th>Action</th><th>Table / file</th><th>Planned</th><th>Disposed</th><th>Left after (verification)</th></tr>");
        for it in &self.items {
            let action = if it.operators.is_empty() {
                it.action.clone()
            } else {
                format!(
                    "{}: {}",
                    it.action,
                    it.operators
                        .iter()
                        .map(|(c, o)| format!("{c} → {o}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let rule = match it.cutoff {
                Some(c) => format!("{} (records before {c})", it.rule),
                None => it.rule.clone(),
            };
            for u in &it.units {
                let left = match (u.remaining, &u.note) {
                    (Some(n), None) => format!("{n}{}", if u.verified { " ✓" } else { "" }),
                    (r, Some(note)) => format!(
                        "{} — {note}",
                        r.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
                    ),
                    (None, None) => "not verified".into(),
                };
                let cls = if u.verified { "" } else { " class=\"bad\"" };
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}{}</td><td{cls}>{}</td></tr>",
                    esc(&it.dataset),
                    esc(it.owner.as_deref().unwrap_or("")),
                    esc(&it.source),
                    esc(&rule),
                    esc(&action),
                    esc(&u.name),
                    if u.whole { " (whole file)" } else { "" },
                    u.planned,
                    u.disposed,
                    if u.exact { "" } else { " (at least)" },
                    esc(&left)
                ));
            }
        }
        h.push_str("</table>");
        for (title, list) in [("Errors", &self.errors), ("Notes", &self.notes)] {
            if !list.is_empty() {
                h.push_str(&format!("<h2>{title}</h2><ul>"));
                for e in list {
                    h.push_str(&format!("<li>{}</li>", esc(e)));
                }
                h.push_str("</ul>");
            }
        }
        h.push_str("</body></html>\n");
        h
    }

    /// Write `<plan>.json` and `<plan>.html`; returns the JSON path.
    pub fn write(&self, state_dir: &Path) -> Result<PathBuf, SweepError> {
        let dir = state_dir.join("receipts");
        std::fs::create_dir_all(&dir).map_err(|e| SweepError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let j = path(state_dir, &self.plan_id, "json");
        std::fs::write(
            &j,
            serde_json::to_vec_pretty(self).expect("receipt serializes"),
        )
        .map_err(|e| SweepError::Io {
            path: j.clone(),
            source: e,
        })?;
        let hp = path(state_dir, &self.plan_id, "html");
        std::fs::write(&hp, self.html()).map_err(|e| SweepError::Io {
            path: hp.clone(),
            source: e,
        })?;
        Ok(j)
    }
}
