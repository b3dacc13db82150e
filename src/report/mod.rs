//! The self-inspection report (MIIT Order No. 24 Art. 16: inspect the
//! protection of users' PI at least yearly and keep a record): what was
//! scanned and when, children's PI by dataset and category, violations with
//! owners (CAC Order No. 4 Art. 8) and the articles they cite, sweeps done
//! and pending, and the trend since the previous run. Rendered as JSON,
//! Markdown, or one self-contained HTML file with inline SVG charts.
//!
//! Reports carry counts, masked locations and owners — never a value.

pub mod export;

use crate::config::Config;
use crate::store::{
    DatasetCount, Run, Severity, Store, StoreError, SweepRow, TrendPoint, UnitRecord, Violation,
    ViolationFilter,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no run {0} in the store")]
    NoRun(i64),
    #[error("the store has no runs yet: run `childguard scan` first")]
    NoRuns,
}

/// Which run a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSel {
    Latest,
    Id(i64),
}

impl std::str::FromStr for RunSel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "latest" {
            return Ok(RunSel::Latest);
        }
        s.parse()
            .map(RunSel::Id)
            .map_err(|_| format!("`{s}` is not a run id or `latest`"))
    }
}

/// Per-target scan summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetSummary {
    pub target: String,
    pub units: u64,
    pub units_failed: u64,
    pub bytes: u64,
    pub rows: u64,
}

/// A declared dataset and what was found in it.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetLine {
    pub name: String,
    pub owner: Option<String>,
    pub purpose: Option<String>,
    pub retention: Option<String>,
    pub child_data: bool,
    pub declared: Vec<String>,
    pub found: Vec<String>,
    pub findings: u64,
    pub child_findings: u64,
}

/// Change since the previous run.
#[derive(Debug, Clone, Serialize)]
pub struct Delta {
    pub previous_run: i64,
    pub findings: i64,
    pub child_findings: i64,
    pub violations: i64,
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub title: String,
    pub basis: Vec<String>,
    pub generated_at: DateTime<Utc>,
    pub store: String,
    pub run: Run,
    pub previous_run: Option<Run>,
    pub targets: Vec<TargetSummary>,
    pub failed_units: Vec<UnitRecord>,
    /// Open findings last seen in this run, per dataset (None: undeclared) and category.
    pub by_dataset_category: Vec<DatasetCount>,
    pub datasets: Vec<DatasetLine>,
    pub violations: Vec<Violation>,
    pub violations_by_kind: BTreeMap<String, u64>,
    pub violations_by_severity: BTreeMap<String, u64>,
    /// None: no sweep recorded (the sweeper's tables are absent).
    pub sweeps: Option<Vec<SweepRow>>,
    pub trend: Vec<TrendPoint>,
    pub delta: Option<Delta>,
}

/// Gather a report for a run.
pub async fn build(
    store: &dyn Store,
    sel: RunSel,
    config: Option<&Config>,
) -> Result<ReportData, ReportError> {
    let run = match sel {
        RunSel::Latest => {
            // The newest whole scan: an unsharded run, or the newest run of a
            // complete run group; a shard run only when nothing else exists.
            let runs = store.runs(200).await?;
            runs.iter()
                .find(|r| r.shard.is_none() || r.summary.group_complete)
                .or(runs.first())
                .cloned()
                .ok_or(ReportError::NoRuns)?
        }
        RunSel::Id(id) => store.run(id).await?.ok_or(ReportError::NoRun(id))?,
    };
    let previous_run = store.previous_run(run.id).await?;
    // A complete run group is reported as one scan: the units and findings of
    // every shard run (the violations and summary are already the group's).
    let member_runs: Vec<i64> = match (&run.run_group, run.summary.group_complete) {
        (Some(g), true) => crate::classify::complete_group(store, g)
            .await?
            .map(|rs| rs.iter().map(|r| r.id).collect())
            .unwrap_or_else(|| vec![run.id]),
        _ => vec![run.id],
    };
    let mut units = Vec::new();
    let mut by_dataset_category: Vec<DatasetCount> = Vec::new();
    for id in &member_runs {
        units.extend(store.units(*id).await?);
        for c in store.dataset_counts(Some(*id)).await? {
            match by_dataset_category
                .iter_mut()
                .find(|x| x.dataset == c.dataset && x.category == c.category)
            {
                Some(x) => {
                    x.findings += c.findings;
                    x.child_findings += c.child_findings;
                    x.child_records += c.child_records;
                }
                None => by_dataset_category.push(c),
            }
        }
    }
    let mut targets: BTreeMap<String, TargetSummary> = BTreeMap::new();
    for u in &units {
        let t = targets
            .entry(u.target.clone())
            .or_insert_with(|| TargetSummary {
                target: u.target.clone(),
                ..Default::default()
            });
        t.units += 1;
        t.units_failed += u.error.is_some() as u64;
        t.bytes += u.bytes;
        t.rows += u.rows;
    }
    for t in &run.targets {
        let t = crate::classify::normalize_target(t);
        if !targets
            .keys()
            .any(|k| crate::classify::normalize_target(k) == t)
        {
            targets.insert(
                t.clone(),
                TargetSummary {
                    target: t,
                    ..Default::default()
                },
            );
        }
    }
    let failed_units: Vec<UnitRecord> = units.into_iter().filter(|u| u.error.is_some()).collect();
    let violations = store
        .violations(&ViolationFilter {
            run: Some(run.id),
            ..Default::default()
        })
        .await?;
    let mut violations_by_kind = BTreeMap::new();
    let mut violations_by_severity = BTreeMap::new();
    for v in &violations {
        *violations_by_kind.entry(v.kind.to_string()).or_insert(0) += 1;
        *violations_by_severity
            .entry(v.severity.to_string())
            .or_insert(0) += 1;
    }
    let datasets = config
        .map(|c| {
            c.datasets
                .iter()
                .map(|d| {
                    let mine: Vec<&DatasetCount> = by_dataset_category
                        .iter()
                        .filter(|x| x.dataset.as_deref() == Some(d.name.as_str()))
                        .collect();
                    let mut declared: Vec<String> = d
                        .categories
                        .values()
                        .flatten()
                        .map(|c| c.to_string())
                        .collect();
                    declared.sort();
                    declared.dedup();
                    DatasetLine {
                        name: d.name.clone(),
                        owner: d.owner.clone(),
                        purpose: d.purpose.clone(),
                        retention: d.retention.as_ref().map(|r| r.to_string()),
                        child_data: d.holds_child_data(),
                        declared,
                        found: mine.iter().map(|x| x.category.to_string()).collect(),
                        findings: mine.iter().map(|x| x.findings).sum(),
                        child_findings: mine.iter().map(|x| x.child_findings).sum(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut trend = store.trend(1_000).await?;
    trend.retain(|t| t.run_id <= run.id);
    let keep = trend.len().saturating_sub(24);
    trend.drain(..keep);
    let delta = previous_run.as_ref().map(|p| Delta {
        previous_run: p.id,
        findings: run.summary.findings as i64 - p.summary.findings as i64,
        child_findings: run.summary.child_findings as i64 - p.summary.child_findings as i64,
        violations: run.summary.violations as i64 - p.summary.violations as i64,
    });
    Ok(ReportData {
        title: "Children's personal information self-inspection record".into(),
        basis: vec![
            "MIIT Order No. 24 (2013) Art. 16: self-inspection of user PI protection at least once a year, recorded".into(),
            "CAC Order No. 4 (2019): children's PI (under 14) — Art. 8 owner, Art. 10(2) location and retention, Art. 11 and 14 purpose, Art. 12 retention, Art. 13 encryption, Art. 20 deletion".into(),
        ],
        generated_at: crate::store::now(),
        store: store.backend().into(),
        run,
        previous_run,
        targets: targets.into_values().collect(),
        failed_units,
        by_dataset_category,
        datasets,
        violations,
        violations_by_kind,
        violations_by_severity,
        sweeps: store.sweep_plans().await?,
        trend,
        delta,
    })
}

pub fn render_json(r: &ReportData) -> String {
    serde_json::to_string_pretty(r).expect("report serializes")
}

fn fmt_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn sweep_field<'a>(row: &'a SweepRow, names: &[&str]) -> &'a str {
    row.iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map_or("", |(_, v)| v.as_str())
}

/// Pending: a plan whose status is not a finished state.
fn sweep_done(row: &SweepRow) -> bool {
    matches!(
        sweep_field(row, &["status", "state"]),
        "done" | "completed" | "complete" | "finished" | "verified" | "succeeded"
    )
}

pub fn render_markdown(r: &ReportData) -> String {
    let mut s = String::new();
    let run = &r.run;
    let _ = writeln!(s, "# {}\n", r.title);
    for b in &r.basis {
        let _ = writeln!(s, "- {b}");
    }
    let _ = writeln!(
        s,
        "\nGenerated {} from the {} store.\n",
        fmt_time(&r.generated_at),
        r.store
    );
    let _ = writeln!(s, "## 1. What was scanned and when\n");
    let _ = writeln!(
        s,
        "Run {} — started {}, finished {}, status **{}**.\n",
        run.id,
        fmt_time(&run.started_at),
        run.finished_at
            .as_ref()
            .map(fmt_time)
            .unwrap_or_else(|| "(not finished)".into()),
        run.status.as_str()
    );
    let _ = writeln!(
        s,
        "| target | units | failed | bytes | rows |\n|---|---:|---:|---:|---:|"
    );
    for t in &r.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            md_cell(&t.target),
            t.units,
            t.units_failed,
            t.bytes,
            t.rows
        );
    }
    if !r.failed_units.is_empty() {
        let _ = writeln!(s, "\nUnits that could not be read:\n");
        for u in &r.failed_units {
            let _ = writeln!(
                s,
                "- {} {}: {}",
                md_cell(&u.target),
                md_cell(&u.unit_id),
                md_cell(u.error.as_deref().unwrap_or(""))
            );
        }
    }
    let _ = writeln!(
        s,
        "\n## 2. Children's personal information by dataset and category\n"
    );
    let _ = writeln!(s, "| dataset | category | findings | child findings | child records |\n|---|---|---:|---:|---:|");
    for c in &r.by_dataset_category {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            md_cell(c.dataset.as_deref().unwrap_or("(undeclared)")),
            c.category,
            c.findings,
            c.child_findings,
            c.child_records
        );
    }
    if !r.datasets.is_empty() {
        let _ = writeln!(s, "\n### Declared datasets: declared vs found\n");
        let _ = writeln!(s, "| dataset | owner | retention | declared | found | child findings |\n|---|---|---|---|---|---:|");
        for d in &r.datasets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                md_cell(&d.name),
                md_cell(d.owner.as_deref().unwrap_or("**none (Art. 8 gap)**")),
                md_cell(d.retention.as_deref().unwrap_or("none")),
                d.declared.join(", "),
                d.found.join(", "),
                d.child_findings
            );
        }
    }
    let _ = writeln!(s, "\n## 3. Violations\n");
    if r.violations.is_empty() {
        let _ = writeln!(s, "No violations.");
    } else {
        let _ = writeln!(s, "| severity | kind | dataset | owner | article | where | records | detail |\n|---|---|---|---|---|---|---:|---|");
        for v in &r.violations {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                v.severity,
                v.kind,
                md_cell(v.dataset.as_deref().unwrap_or("(none declared)")),
                md_cell(v.owner.as_deref().unwrap_or("(unassigned)")),
                v.article,
                md_cell(&where_of(v)),
                v.record_count.map(|c| c.to_string()).unwrap_or_default(),
                md_cell(&v.message)
            );
        }
    }
    let _ = writeln!(s, "\n## 4. Sweeps done and pending\n");
    match &r.sweeps {
        None => {
            let _ = writeln!(s, "None recorded.");
        }
        Some(rows) if rows.is_empty() => {
            let _ = writeln!(s, "None recorded.");
        }
        Some(rows) => {
            let (done, pending): (Vec<&SweepRow>, Vec<&SweepRow>) =
                rows.iter().partition(|r| sweep_done(r));
            let _ = writeln!(s, "{} done, {} pending.\n", done.len(), pending.len());
            for row in rows {
                let line: Vec<String> = row.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(s, "- {}", md_cell(&line.join(", ")));
            }
        }
    }
    let _ = writeln!(s, "\n## 5. Trend since the previous run\n");
    match &r.delta {
        Some(d) => {
            let _ = writeln!(
                s,
                "Since run {}: findings {}, children's findings {}, violations {}.\n",
                d.previous_run,
                signed(d.findings),
                signed(d.child_findings),
                signed(d.violations)
            );
        }
        None => {
            let _ = writeln!(s, "This is the first run.\n");
        }
    }
    let _ = writeln!(
        s,
        "| run | started | findings | child findings | violations |\n|---:|---|---:|---:|---:|"
    );
    for t in &r.trend {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            t.run_id,
            fmt_time(&t.started_at),
            t.findings,
            t.child_findings,
            t.violations
        );
    }
    s
}

fn where_of(v: &Violation) -> String {
    let mut w = v
        .unit_id
        .clone()
        .unwrap_or_else(|| v.target.clone().unwrap_or_default());
    if let Some(c) = &v.column {
        let _ = write!(w, " ({c})");
    }
    w
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#8b0000",
        Severity::High => "#d9480f",
        Severity::Medium => "#e6a700",
        Severity::Low => "#2b8a3e",
        Severity::Info => "#5c7cfa",
    }
}

/// Horizontal bar chart: one bar per (label, value).
fn svg_bars(id: &str, title: &str, bars: &[(String, u64, &str)]) -> String {
    let w = 640.0;
    let row = 26.0;
    let label_w = 190.0;
    let h = 40.0 + row * bars.len().max(1) as f64;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let mut s = format!(
        r#"<svg id="{id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title><text x="0" y="18" class="ct">{t}</text>"#,
        t = esc(title)
    );
    if bars.is_empty() {
        let _ = write!(s, r#"<text x="0" y="50" class="cl">none</text>"#);
    }
    for (i, (label, v, color)) in bars.iter().enumerate() {
        let y = 30.0 + i as f64 * row;
        let bw = ((w - label_w - 60.0) * *v as f64 / max).max(if *v > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" class="cl" text-anchor="end">{l}</text><rect x="{label_w}" y="{y}" width="{bw:.1}" height="18" fill="{color}"><title>{l}: {v}</title></rect><text x="{vx:.1}" y="{ty}" class="cv">{v}</text>"#,
            lx = label_w - 8.0,
            ty = y + 14.0,
            l = esc(label),
            vx = label_w + bw + 6.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// Trend chart: children's findings (bars) and violations (line) per run.
fn svg_trend(trend: &[TrendPoint]) -> String {
    let (w, h) = (640.0, 240.0);
    let (left, right, top, bottom) = (50.0, 20.0, 30.0, 40.0);
    let max = trend
        .iter()
        .map(|t| t.child_findings)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let vmax = trend.iter().map(|t| t.violations).max().unwrap_or(0).max(1) as f64;
    let n = trend.len().max(1) as f64;
    let slot = (w - left - right) / n;
    let y_of = |v: u64| top + (h - top - bottom) * (1.0 - v as f64 / max);
    let yv_of = |v: u64| top + (h - top - bottom) * (1.0 - v as f64 / vmax);
    let mut s = format!(
        r##"<svg id="trend-chart" class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="Trend over runs"><title>Trend over runs</title><text x="0" y="18" class="ct">Trend over runs: children's findings (bars, left scale), violations (line, right scale)</text><line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><text x="{lt}" y="{yt}" class="cl" text-anchor="end">{max}</text><text x="{lt}" y="{b}" class="cl" text-anchor="end">0</text><text x="{rt}" y="{yt}" class="cl" fill="#c92a2a" text-anchor="end">{vmax} violations</text>"##,
        rt = w - right,
        vmax = vmax as u64,
        b = h - bottom,
        r = w - right,
        lt = left - 6.0,
        yt = top + 4.0,
        max = max as u64
    );
    let mut points = Vec::new();
    for (i, t) in trend.iter().enumerate() {
        let x = left + slot * i as f64;
        let y = y_of(t.child_findings);
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="#4263eb"><title>run {id}: {c} children's findings</title></rect><text x="{tx:.1}" y="{ly}" class="cl" text-anchor="middle">#{id}</text>"##,
            x = x + slot * 0.15,
            bw = slot * 0.7,
            bh = (h - bottom - y).max(0.0),
            id = t.run_id,
            c = t.child_findings,
            tx = x + slot / 2.0,
            ly = h - bottom + 16.0
        );
        points.push(format!("{:.1},{:.1}", x + slot / 2.0, yv_of(t.violations)));
    }
    if !points.is_empty() {
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#c92a2a" stroke-width="2.5"/>"##,
            points.join(" ")
        );
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r##"<circle cx="{x}" cy="{y}" r="4" fill="#c92a2a"/>"##);
        }
    }
    s.push_str("</svg>");
    s
}

/// One self-contained HTML file: inline CSS and SVG, no script, no external assets.
pub fn render_html(r: &ReportData) -> String {
    let run = &r.run;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{t} — run {id}</title><style>
body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;margin:24px auto;max-width:1100px;color:#212529;padding:0 16px}}
h1{{font-size:24px;margin-bottom:4px}}h2{{font-size:19px;border-bottom:2px solid #dee2e6;padding-bottom:4px;margin-top:32px}}
table{{border-collapse:collapse;width:100%;margin:8px 0}}th,td{{border:1px solid #dee2e6;padding:4px 8px;text-align:left;vertical-align:top}}th{{background:#f1f3f5}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}}.sev{{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px}}
.cards{{display:flex;gap:12px;flex-wrap:wrap}}.card{{border:1px solid #dee2e6;border-radius:6px;padding:10px 16px;min-width:150px}}.card b{{font-size:22px;display:block}}
.chart .ct{{font-weight:600;font-size:13px}}.chart .cl,.chart .cv{{font-size:12px}}.muted{{color:#868e96}}.gap{{color:#c92a2a;font-weight:600}}
@media print{{body{{margin:0}}}}
</style></head><body>
<h1>{t}</h1><p class="muted">Run {id} · generated {g} · {store} store</p><ul>"#,
        t = esc(&r.title),
        id = run.id,
        g = fmt_time(&r.generated_at),
        store = esc(&r.store)
    );
    for b in &r.basis {
        let _ = write!(s, "<li>{}</li>", esc(b));
    }
    s.push_str("</ul>");
    let child_total: u64 = r.by_dataset_category.iter().map(|c| c.child_findings).sum();
    let _ = write!(
        s,
        r#"<div class="cards"><div class="card" id="card-status">Run status<b>{st}</b></div><div class="card" id="card-child">Children's findings<b>{child}</b></div><div class="card" id="card-violations">Violations<b>{nv}</b></div><div class="card" id="card-delta">Since previous run<b>{delta}</b></div></div>"#,
        st = esc(run.status.as_str()),
        child = child_total,
        nv = r.violations.len(),
        delta = r
            .delta
            .as_ref()
            .map(|d| format!("{} child", signed(d.child_findings)))
            .unwrap_or_else(|| "first run".into())
    );

    let _ = write!(
        s,
        "<h2>1. What was scanned and when</h2><p>Started {}, finished {}.</p><table id=\"targets\"><tr><th>target</th><th>units</th><th>failed</th><th>bytes</th><th>rows</th></tr>",
        fmt_time(&run.started_at),
        run.finished_at.as_ref().map(fmt_time).unwrap_or_else(|| "(not finished)".into())
    );
    for t in &r.targets {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&t.target),
            t.units,
            t.units_failed,
            t.bytes,
            t.rows
        );
    }
    s.push_str("</table>");
    if !r.failed_units.is_empty() {
        s.push_str("<p>Units that could not be read:</p><ul>");
        for u in &r.failed_units {
            let _ = write!(
                s,
                "<li>{} {}: {}</li>",
                esc(&u.target),
                esc(&u.unit_id),
                esc(u.error.as_deref().unwrap_or(""))
            );
        }
        s.push_str("</ul>");
    }

    s.push_str("<h2>2. Children's personal information by dataset and category</h2>");
    let mut by_cat: BTreeMap<String, u64> = BTreeMap::new();
    for c in &r.by_dataset_category {
        *by_cat.entry(c.category.to_string()).or_insert(0) += c.child_findings;
    }
    let bars: Vec<(String, u64, &str)> =
        by_cat.into_iter().map(|(k, v)| (k, v, "#4263eb")).collect();
    s.push_str(&svg_bars(
        "category-chart",
        "Children's findings by category",
        &bars,
    ));
    s.push_str("<table id=\"by-dataset\"><tr><th>dataset</th><th>category</th><th>findings</th><th>child findings</th><th>child records</th></tr>");
    for c in &r.by_dataset_category {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            c.dataset.as_deref().map(esc).unwrap_or_else(|| "<span class=gap>(undeclared)</span>".into()),
            c.category,
            c.findings,
            c.child_findings,
            c.child_records
        );
    }
    s.push_str("</table>");
    if !r.datasets.is_empty() {
        s.push_str("<h3>Declared datasets: declared vs found</h3><table id=\"datasets\"><tr><th>dataset</th><th>owner</th><th>purpose</th><th>retention</th><th>declared</th><th>found</th><th>child findings</th></tr>");
        for d in &r.datasets {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td></tr>",
                esc(&d.name),
                d.owner.as_deref().map(esc).unwrap_or_else(|| "<span class=gap>none (Art. 8 gap)</span>".into()),
                esc(d.purpose.as_deref().unwrap_or("")),
                d.retention.as_deref().map(esc).unwrap_or_else(|| if d.child_data { "<span class=gap>none (Art. 12 gap)</span>".into() } else { "none".into() }),
                esc(&d.declared.join(", ")),
                esc(&d.found.join(", ")),
                d.child_findings
            );
        }
        s.push_str("</table>");
    }

    s.push_str("<h2>3. Violations</h2>");
    let sev_bars: Vec<(String, u64, &str)> = Severity::ALL
        .iter()
        .rev()
        .map(|sv| {
            (
                sv.to_string(),
                r.violations.iter().filter(|v| v.severity == *sv).count() as u64,
                severity_color(*sv),
            )
        })
        .collect();
    s.push_str(&svg_bars(
        "severity-chart",
        "Violations by severity",
        &sev_bars,
    ));
    if r.violations.is_empty() {
        s.push_str("<p id=\"no-violations\">No violations.</p>");
    } else {
        s.push_str("<table id=\"violations\"><tr><th>severity</th><th>kind</th><th>dataset</th><th>owner</th><th>article</th><th>where</th><th>records</th><th>detail</th></tr>");
        for v in &r.violations {
            let _ = write!(
                s,
                "<tr><td><span class=sev style=\"background:{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td></tr>",
                severity_color(v.severity),
                v.severity,
                v.kind,
                v.dataset.as_deref().map(esc).unwrap_or_else(|| "<span class=gap>(none declared)</span>".into()),
                v.owner.as_deref().map(esc).unwrap_or_else(|| "<span class=gap>(unassigned)</span>".into()),
                esc(&v.article),
                esc(&where_of(v)),
                v.record_count.map(|c| c.to_string()).unwrap_or_default(),
                esc(&v.message)
            );
        }
        s.push_str("</table>");
    }

    s.push_str("<h2>4. Sweeps done and pending</h2>");
    match &r.sweeps {
        Some(rows) if !rows.is_empty() => {
            let done = rows.iter().filter(|r| sweep_done(r)).count();
            let _ = write!(
                s,
                "<p id=\"sweeps\">{done} done, {} pending.</p><table><tr>",
                rows.len() - done
            );
            for (k, _) in &rows[0] {
                let _ = write!(s, "<th>{}</th>", esc(k));
            }
            s.push_str("</tr>");
            for row in rows {
                s.push_str("<tr>");
                for (_, v) in row {
                    let _ = write!(s, "<td>{}</td>", esc(v));
                }
                s.push_str("</tr>");
            }
            s.push_str("</table>");
        }
        _ => s.push_str("<p id=\"sweeps\">None recorded.</p>"),
    }

    s.push_str("<h2>5. Trend since the previous run</h2>");
    match &r.delta {
        Some(d) => {
            let _ = write!(
                s,
                "<p id=\"delta\">Since run {}: findings {}, children's findings {}, violations {}.</p>",
                d.previous_run,
                signed(d.findings),
                signed(d.child_findings),
                signed(d.violations)
            );
        }
        None => s.push_str("<p id=\"delta\">This is the first run.</p>"),
    }
    s.push_str(&svg_trend(&r.trend));
    s.push_str("<table id=\"trend\"><tr><th>run</th><th>started</th><th>findings</th><th>child findings</th><th>violations</th></tr>");
    for t in &r.trend {
        let _ = write!(
            s,
            "<tr><td class=n>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            t.run_id,
            fmt_time(&t.started_at),
            t.findings,
            t.child_findings,
            t.violations
        );
    }
    s.push_str("</table><p class=\"muted\">childguard keeps no raw values: findings hold masked forms and keyed fingerprints (pseudonymization, PIPL Art. 73).</p></body></html>\n");
    s
}
