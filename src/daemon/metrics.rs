//! A small Prometheus registry: counters (`*_total`), gauges and histograms
//! (`*_seconds`), rendered in the text exposition format at `/metrics`.
//! Labels carry names of schedules, routes, jobs and outcomes — never a value
//! found in the data.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

/// Help text of every metric the daemon exports.
const HELP: &[(&str, &str, &str)] = &[
    (
        "childguard_http_requests_total",
        "counter",
        "HTTP requests by method, route and status.",
    ),
    (
        "childguard_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by route.",
    ),
    (
        "childguard_auth_failures_total",
        "counter",
        "Rejected API requests by error code.",
    ),
    (
        "childguard_scans_total",
        "counter",
        "Scans finished, by outcome.",
    ),
    (
        "childguard_scan_bytes_total",
        "counter",
        "Bytes read by scans.",
    ),
    (
        "childguard_scan_units_total",
        "counter",
        "Work units (files, tables) scanned.",
    ),
    (
        "childguard_findings_total",
        "counter",
        "Findings produced by scans.",
    ),
    (
        "childguard_scan_errors_total",
        "counter",
        "Work units that could not be read.",
    ),
    (
        "childguard_scan_duration_seconds",
        "histogram",
        "Scan duration.",
    ),
    (
        "childguard_sweeps_total",
        "counter",
        "Sweep plans finished, by outcome.",
    ),
    (
        "childguard_sweep_rows_total",
        "counter",
        "Records or files deleted by sweeps.",
    ),
    (
        "childguard_sweep_duration_seconds",
        "histogram",
        "Sweep execution duration.",
    ),
    (
        "childguard_erasures_total",
        "counter",
        "Erasure requests executed.",
    ),
    (
        "childguard_schedule_runs_total",
        "counter",
        "Scheduled job runs by schedule and outcome.",
    ),
    (
        "childguard_schedule_skipped_total",
        "counter",
        "Scheduled ticks skipped because the previous run was still going.",
    ),
    (
        "childguard_scheduler_leader",
        "gauge",
        "1 while this daemon holds the scheduler lease and fires the schedules.",
    ),
    (
        "childguard_job_duration_seconds",
        "histogram",
        "Scheduled job duration by job kind.",
    ),
];

#[derive(Debug, Default, Clone)]
struct Hist {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

type Key = (String, String);

/// The registry. Cheap to share in an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, f64>>,
    hists: Mutex<BTreeMap<Key, Hist>>,
}

fn labels(l: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `by` to a counter.
    pub fn inc(&self, name: &str, l: &[(&str, &str)], by: f64) {
        *self
            .counters
            .lock()
            .unwrap()
            .entry((name.to_string(), labels(l)))
            .or_insert(0.0) += by;
    }

    /// Set a gauge.
    pub fn set(&self, name: &str, l: &[(&str, &str)], v: f64) {
        self.counters
            .lock()
            .unwrap()
            .insert((name.to_string(), labels(l)), v);
    }

    /// Record one observation (seconds) in a histogram.
    pub fn observe(&self, name: &str, l: &[(&str, &str)], v: f64) {
        let mut m = self.hists.lock().unwrap();
        let h = m.entry((name.to_string(), labels(l))).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += v;
    }

    /// Current value of a counter (tests, readiness).
    pub fn counter(&self, name: &str, l: &[(&str, &str)]) -> f64 {
        self.counters
            .lock()
            .unwrap()
            .get(&(name.to_string(), labels(l)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().unwrap().clone();
        let hists = self.hists.lock().unwrap().clone();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if *kind == "counter" || *kind == "gauge" {
                let mut any = false;
                for ((n, l), v) in counters.iter().filter(|((n, _), _)| n == name) {
                    any = true;
                    if l.is_empty() {
                        let _ = writeln!(out, "{n} {v}");
                    } else {
                        let _ = writeln!(out, "{n}{{{l}}} {v}");
                    }
                }
                if !any && !name.contains("http") {
                    let _ = writeln!(out, "{name} 0");
                }
            } else {
                for ((n, l), h) in hists.iter().filter(|((n, _), _)| n == name) {
                    let sep = if l.is_empty() { "" } else { "," };
                    for (i, b) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"{b}\"}} {}", h.buckets[i]);
                    }
                    let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                    let braces = if l.is_empty() {
                        String::new()
                    } else {
                        format!("{{{l}}}")
                    };
                    let _ = writeln!(out, "{n}_sum{braces} {}", h.sum);
                    let _ = writeln!(out, "{n}_count{braces} {}", h.count);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.inc("childguard_scans_total", &[("outcome", "ok")], 1.0);
        m.inc("childguard_scans_total", &[("outcome", "ok")], 1.0);
        m.observe("childguard_scan_duration_seconds", &[], 0.02);
        let t = m.render();
        assert!(t.contains("# TYPE childguard_scans_total counter"));
        assert!(t.contains("childguard_scans_total{outcome=\"ok\"} 2"));
        assert!(t.contains("childguard_scan_duration_seconds_bucket{le=\"0.025\"} 1"));
        assert!(t.contains("childguard_scan_duration_seconds_bucket{le=\"0.01\"} 0"));
        assert!(t.contains("childguard_scan_duration_seconds_count 1"));
        assert!(t.contains("childguard_sweeps_total 0"));
        assert_eq!(
            m.counter("childguard_scans_total", &[("outcome", "ok")]),
            2.0
        );
    }
}
