//! Printers: `jsonl` (the DESIGN.md contract: one finding per line),
//! `json` (findings + summary in one document), `table` (for people) and
//! `sarif` (SARIF 2.1.0 for code-scanning UIs). Every printer streams:
//! findings are written as they come, so memory does not grow with their
//! number. Printers only ever see [`Finding`]s, which carry masked values
//! and keyed fingerprints, never raw ones.

use crate::finding::Finding;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Output format of `childguard scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people (default on a terminal).
    Table,
    /// One JSON object per finding per line (default when piped).
    Jsonl,
    /// One JSON document: `findings` then `summary`.
    Json,
    /// SARIF 2.1.0.
    Sarif,
}

/// A unit that failed or was skipped.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnitIssue {
    pub target: String,
    pub unit: String,
    pub message: String,
}

/// What a scan did; printed at the end (stderr for people, in `json` and `sarif`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanSummary {
    pub targets: Vec<String>,
    pub as_of: String,
    /// Units (files, objects, tables) scanned without error.
    pub units_scanned: u64,
    pub bytes: u64,
    pub rows: u64,
    pub findings: u64,
    pub child_findings: u64,
    pub by_category: BTreeMap<String, u64>,
    pub errors: Vec<UnitIssue>,
    pub skipped: Vec<UnitIssue>,
    pub elapsed_seconds: f64,
    pub mb_per_second: f64,
}

impl ScanSummary {
    /// Count one finding.
    pub fn add(&mut self, f: &Finding) {
        self.findings += 1;
        if f.child == Some(true) {
            self.child_findings += 1;
        }
        *self
            .by_category
            .entry(f.category.as_str().to_string())
            .or_default() += 1;
    }

    /// The human summary (stderr).
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "scanned {} unit(s), {} in {:.2}s ({:.1} MB/s); {} finding(s), {} about children; {} error(s), {} skipped\n",
            self.units_scanned,
            human_bytes(self.bytes),
            self.elapsed_seconds,
            self.mb_per_second,
            self.findings,
            self.child_findings,
            self.errors.len(),
            self.skipped.len()
        ));
        for (c, n) in &self.by_category {
            s.push_str(&format!("  {c:<18} {n}\n"));
        }
        for e in &self.skipped {
            s.push_str(&format!("  skipped: {}: {}\n", unit_label(e), e.message));
        }
        s
    }
}

/// `unit (in target)` or just the unit when it is the target.
pub fn unit_label(i: &UnitIssue) -> String {
    if i.unit == i.target || i.target.is_empty() {
        i.unit.clone()
    } else {
        format!("{} (in {})", i.unit, i.target)
    }
}

fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// A streaming printer.
pub trait Printer: Send {
    fn finding(&mut self, f: &Finding) -> io::Result<()>;
    /// Close the document (and flush).
    fn finish(&mut self, summary: &ScanSummary) -> io::Result<()>;
}

/// Build the printer for `format` writing to `out`.
pub fn printer(format: OutputFormat, out: Box<dyn Write + Send>) -> Box<dyn Printer> {
    match format {
        OutputFormat::Jsonl => Box::new(Jsonl { out }),
        OutputFormat::Json => Box::new(Json { out, n: 0 }),
        OutputFormat::Table => Box::new(Table { out, header: false }),
        OutputFormat::Sarif => Box::new(Sarif { out, n: 0 }),
    }
}

struct Jsonl {
    out: Box<dyn Write + Send>,
}

impl Printer for Jsonl {
    fn finding(&mut self, f: &Finding) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, f)?;
        self.out.write_all(b"\n")
    }
    fn finish(&mut self, _: &ScanSummary) -> io::Result<()> {
        self.out.flush()
    }
}

struct Json {
    out: Box<dyn Write + Send>,
    n: u64,
}

impl Printer for Json {
    fn finding(&mut self, f: &Finding) -> io::Result<()> {
        self.out.write_all(if self.n == 0 {
            b"{\"findings\":[\n"
        } else {
            b",\n"
        })?;
        self.n += 1;
        serde_json::to_writer(&mut self.out, f)?;
        Ok(())
    }
    fn finish(&mut self, s: &ScanSummary) -> io::Result<()> {
        self.out.write_all(if self.n == 0 {
            b"{\"findings\":["
        } else {
            b"\n"
        })?;
        self.out.write_all(b"],\"summary\":")?;
        serde_json::to_writer(&mut self.out, s)?;
        self.out.write_all(b"}\n")?;
        self.out.flush()
    }
}

struct Table {
    out: Box<dyn Write + Send>,
    header: bool,
}

fn location_text(f: &Finding) -> String {
    let l = &f.location;
    let base = l
        .path
        .clone()
        .or_else(|| l.table.clone())
        .unwrap_or_default();
    let mut s = base;
    if let Some(line) = l.line {
        s.push_str(&format!(":{line}"));
    }
    if let Some(c) = &l.column {
        s.push_str(&format!(" [{c}]"));
    }
    if let Some(fl) = &l.field {
        s.push_str(&format!(" {fl}"));
    }
    s
}

impl Printer for Table {
    fn finding(&mut self, f: &Finding) -> io::Result<()> {
        if !self.header {
            self.header = true;
            writeln!(
                self.out,
                "{:<16} {:<5} {:>4}  {:<24} {:<14} LOCATION",
                "CATEGORY", "CHILD", "CONF", "MASKED", "COUNT"
            )?;
        }
        let child = match f.child {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        let count = match (f.count, f.child_count, f.rows_scanned) {
            (Some(c), Some(k), Some(r)) => format!("{c}/{r} ({k} ch)"),
            (Some(c), _, _) => c.to_string(),
            _ => String::new(),
        };
        writeln!(
            self.out,
            "{:<16} {:<5} {:>4.2}  {:<24} {:<14} {}",
            f.category.as_str(),
            child,
            f.confidence,
            f.masked,
            count,
            location_text(f)
        )
    }
    fn finish(&mut self, s: &ScanSummary) -> io::Result<()> {
        if !self.header {
            writeln!(self.out, "no findings")?;
        }
        for e in &s.errors {
            writeln!(self.out, "error: {}: {}", unit_label(e), e.message)?;
        }
        self.out.flush()
    }
}

struct Sarif {
    out: Box<dyn Write + Send>,
    n: u64,
}

const SARIF_HEAD: &str = concat!(
    "{\"$schema\":\"https://json.schemastore.org/sarif-2.1.0.json\",\"version\":\"2.1.0\",\"runs\":[{\"tool\":{\"driver\":",
    "{\"name\":\"childguard\",\"informationUri\":\"https://github.com/childguard/childguard\",\"version\":\"",
    env!("CARGO_PKG_VERSION"),
    "\"}},\"columnKind\":\"utf16CodeUnits\",\"results\":["
);

/// One SARIF result for a finding.
pub fn sarif_result(f: &Finding) -> serde_json::Value {
    use serde_json::json;
    let l = &f.location;
    let uri = l
        .path
        .clone()
        .or_else(|| l.table.clone())
        .unwrap_or_else(|| f.target.clone());
    let mut region = serde_json::Map::new();
    if let Some(line) = l.line {
        region.insert("startLine".into(), json!(line));
    }
    if let Some(off) = l.byte_offset {
        region.insert("byteOffset".into(), json!(off));
    }
    let mut phys = json!({ "artifactLocation": { "uri": uri } });
    if !region.is_empty() {
        phys["region"] = serde_json::Value::Object(region);
    }
    let mut loc = json!({ "physicalLocation": phys });
    let logical: Vec<_> = l
        .column
        .iter()
        .map(|c| json!({"name": c, "kind": "member"}))
        .chain(l.field.iter().map(|c| json!({"name": c, "kind": "member"})))
        .collect();
    if !logical.is_empty() {
        loc["logicalLocations"] = json!(logical);
    }
    let child = match f.child {
        Some(true) => "a child's",
        Some(false) => "an adult's",
        None => "possibly a child's",
    };
    json!({
        "ruleId": f.rule,
        "level": if f.child == Some(true) { "error" } else { "warning" },
        "message": { "text": format!("{} ({}): {}", f.category.as_str(), child, f.masked) },
        "locations": [loc],
        "partialFingerprints": { "childguardFindingId/v1": f.finding_id },
        "properties": {
            "target": f.target, "category": f.category.as_str(), "child": f.child,
            "confidence": f.confidence, "masked": f.masked, "fingerprint": f.fingerprint,
            "rowsScanned": f.rows_scanned, "count": f.count, "childCount": f.child_count,
        }
    })
}

impl Printer for Sarif {
    fn finding(&mut self, f: &Finding) -> io::Result<()> {
        if self.n == 0 {
            self.out.write_all(SARIF_HEAD.as_bytes())?;
        } else {
            self.out.write_all(b",")?;
        }
        self.n += 1;
        serde_json::to_writer(&mut self.out, &sarif_result(f))?;
        self.out.write_all(b"\n")
    }
    fn finish(&mut self, s: &ScanSummary) -> io::Result<()> {
        if self.n == 0 {
            self.out.write_all(SARIF_HEAD.as_bytes())?;
        }
        let notes: Vec<_> = s
            .errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "level": "error",
                    "message": { "text": format!("{}: {}", unit_label(e), e.message) },
                    "locations": [{ "physicalLocation": { "artifactLocation": { "uri": e.unit } } }]
                })
            })
            .collect();
        let inv = serde_json::json!([{
            "executionSuccessful": s.errors.is_empty(),
            "toolExecutionNotifications": notes,
            "properties": { "summary": s }
        }]);
        self.out.write_all(b"],\"invocations\":")?;
        serde_json::to_writer(&mut self.out, &inv)?;
        self.out.write_all(b"}]}\n")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Category, Location, Sensitivity};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn finding(line: u64) -> Finding {
        Finding {
            finding_id: format!("id{line}"),
            target: "t".into(),
            location: Location {
                path: Some("a.log".into()),
                line: Some(line),
                byte_offset: Some(7),
                ..Default::default()
            },
            category: Category::CnMobile,
            rule: "cn.mobile".into(),
            child: None,
            confidence: 0.9,
            masked: "138****5678".into(),
            fingerprint: "ff".into(),
            sensitivity: Sensitivity::Medium,
            rows_scanned: None,
            count: None,
            child_count: None,
            rows: None,
        }
    }

    fn render(fmt: OutputFormat, n: u64) -> String {
        let buf = Buf::default();
        let mut p = printer(fmt, Box::new(buf.clone()));
        let mut s = ScanSummary::default();
        for i in 1..=n {
            let f = finding(i);
            s.add(&f);
            p.finding(&f).unwrap();
        }
        s.errors.push(UnitIssue {
            target: "t".into(),
            unit: "b.gz".into(),
            message: "corrupt".into(),
        });
        p.finish(&s).unwrap();
        let v = buf.0.lock().unwrap().clone();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn json_and_sarif_are_valid_documents() {
        for n in [0, 1, 3] {
            let j: serde_json::Value =
                serde_json::from_str(&render(OutputFormat::Json, n)).unwrap();
            assert_eq!(j["findings"].as_array().unwrap().len(), n as usize);
            assert_eq!(j["summary"]["findings"], n);
            let s: serde_json::Value =
                serde_json::from_str(&render(OutputFormat::Sarif, n)).unwrap();
            assert_eq!(s["version"], "2.1.0");
            let results = s["runs"][0]["results"].as_array().unwrap();
            assert_eq!(results.len(), n as usize);
            if n > 0 {
                assert_eq!(
                    results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
                    1
                );
                assert_eq!(results[0]["ruleId"], "cn.mobile");
            }
            assert_eq!(s["runs"][0]["invocations"][0]["executionSuccessful"], false);
        }
    }

    #[test]
    fn jsonl_is_one_finding_per_line() {
        let out = render(OutputFormat::Jsonl, 2);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        let f: Finding = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(f, finding(2));
        let t = render(OutputFormat::Table, 1);
        assert!(
            t.contains("138****5678")
                && t.contains("a.log:1")
                && t.contains("error: b.gz (in t): corrupt"),
            "{t}"
        );
    }
}
