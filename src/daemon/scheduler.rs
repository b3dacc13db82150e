//! The scheduler: one tokio task per `[[schedules]]` entry. Each computes the
//! next fire time of its cron expression in its time zone, sleeps until then
//! (plus jitter), and starts the job unless the previous run of the same
//! schedule is still going (then the tick is skipped and logged: a job never
//! overlaps itself). The time of the last run of each schedule is kept in a
//! small JSON file so that, with `catch_up = true`, a fire time missed while
//! the daemon was down is run once at start. On shutdown no new run starts;
//! the running one is awaited (jobs watch the same shutdown signal and stop
//! at their next checkpoint).

use crate::config::daemon::ScheduleConfig;
use crate::daemon::metrics::Metrics;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Errors in a schedule definition or the last-run file.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule `{name}`: cron expression `{expr}`: {message}")]
    Cron {
        name: String,
        expr: String,
        message: String,
    },
    #[error(
        "schedule `{name}`: unknown time zone `{tz}` (use an IANA name such as Asia/Shanghai)"
    )]
    TimeZone { name: String, tz: String },
    #[error("schedule `{name}` is defined twice")]
    Duplicate { name: String },
    #[error("last-run file {path}: {message}")]
    LastRun { path: PathBuf, message: String },
}

/// Convert a crontab expression to the `cron` crate's form (seconds first).
/// 5 fields (`min hour dom month dow`) get `0` seconds prepended and their
/// numeric day-of-week (0 or 7 = Sunday, crontab style) turned into names,
/// because the `cron` crate numbers Sunday 1. 6 and 7 fields pass unchanged.
pub fn to_cron_crate(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.len() {
        5 => {
            let dow = crontab_dow(fields[4])?;
            Ok(format!(
                "0 {} {} {} {} {}",
                fields[0], fields[1], fields[2], fields[3], dow
            ))
        }
        6 | 7 => Ok(fields.join(" ")),
        n => Err(format!(
            "has {n} fields; expected 5 (min hour dom month dow) or 6-7 (seconds first)"
        )),
    }
}

fn crontab_dow(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |s: &str| -> Result<String, String> {
        if s.chars().all(|c| c.is_ascii_digit()) {
            let n: usize = s.parse().map_err(|_| format!("day of week `{s}`"))?;
            NAMES
                .get(n)
                .map(|n| n.to_string())
                .ok_or_else(|| format!("day of week `{s}` is not 0-7"))
        } else {
            Ok(s.to_string())
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = item
            .split_once('/')
            .map_or((item, None), |(r, s)| (r, Some(s)));
        let conv = match range.split_once('-') {
            // `5-7` (Fri..Sun) would wrap in names: split it.
            Some((a, "7")) if step.is_none() && a != "7" => {
                let a = name(a)?;
                if a == "SUN" {
                    "SUN-SAT".to_string()
                } else {
                    format!("{a}-SAT,SUN")
                }
            }
            Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
            None => name(range)?,
        };
        out.push(match step {
            Some(s) => format!("{conv}/{s}"),
            None => conv,
        });
    }
    Ok(out.join(","))
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    tz: Tz,
}

impl CronSchedule {
    pub fn parse(name: &str, expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let bad = |message: String| ScheduleError::Cron {
            name: name.into(),
            expr: expr.into(),
            message,
        };
        let six = to_cron_crate(expr).map_err(bad)?;
        let schedule = cron::Schedule::from_str(&six).map_err(|e| bad(e.to_string()))?;
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone {
            name: name.into(),
            tz: tz.into(),
        })?;
        Ok(CronSchedule { schedule, tz })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest fire time in `(after, until]`, if any (a missed run).
    pub fn last_missed(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut last = None;
        for d in self.schedule.after(&after.with_timezone(&self.tz)) {
            let d = d.with_timezone(&Utc);
            if d > until {
                break;
            }
            last = Some(d);
        }
        last
    }
}

/// Why a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its fire time came.
    Scheduled,
    /// A fire time was missed while the daemon was down (`catch_up = true`).
    CatchUp,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::CatchUp => "catch_up",
        }
    }
}

pub type JobFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Runs a schedule's job. The daemon's implementation dispatches on
/// [`crate::config::daemon::JobKind`]; tests pass their own.
pub trait JobRunner: Send + Sync + 'static {
    fn run(&self, schedule: &ScheduleConfig, trigger: Trigger) -> JobFuture;
}

/// The persisted last-run times, `{"schedule name": "RFC 3339 time"}`.
#[derive(Debug)]
pub struct LastRunFile {
    path: PathBuf,
    times: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl LastRunFile {
    pub fn open(path: &Path) -> Result<Self, ScheduleError> {
        let err = |message: String| ScheduleError::LastRun {
            path: path.into(),
            message,
        };
        let times = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(LastRunFile {
            path: path.into(),
            times: Mutex::new(times),
        })
    }

    pub fn get(&self, name: &str) -> Option<DateTime<Utc>> {
        self.times.lock().unwrap().get(name).copied()
    }

    /// Record and persist atomically (write a temporary file, then rename).
    pub fn set(&self, name: &str, t: DateTime<Utc>) -> Result<(), ScheduleError> {
        let text = {
            let mut m = self.times.lock().unwrap();
            m.insert(name.to_string(), t);
            serde_json::to_string_pretty(&*m).expect("map of strings serializes")
        };
        let err = |e: std::io::Error| ScheduleError::LastRun {
            path: self.path.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

/// Whether this process may fire schedules now (the scheduler lease when
/// several daemons share a store; always true otherwise).
pub type LeaderCheck = Arc<dyn Fn() -> bool + Send + Sync>;

struct Entry {
    cfg: ScheduleConfig,
    cron: CronSchedule,
    running: Arc<AtomicBool>,
}

/// The scheduler. [`Scheduler::spawn`] starts it; it stops when the shutdown
/// channel turns true, after the running jobs return.
pub struct Scheduler {
    entries: Vec<Entry>,
    runner: Arc<dyn JobRunner>,
    last_run: Arc<LastRunFile>,
    metrics: Arc<Metrics>,
    leader: LeaderCheck,
}

impl Scheduler {
    pub fn new(
        schedules: &[ScheduleConfig],
        runner: Arc<dyn JobRunner>,
        last_run_path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ScheduleError> {
        let mut entries: Vec<Entry> = Vec::new();
        for s in schedules.iter().filter(|s| s.enabled) {
            if entries.iter().any(|e| e.cfg.name == s.name) {
                return Err(ScheduleError::Duplicate {
                    name: s.name.clone(),
                });
            }
            let cron = CronSchedule::parse(&s.name, &s.cron, &s.timezone)?;
            entries.push(Entry {
                cfg: s.clone(),
                cron,
                running: Arc::new(AtomicBool::new(false)),
            });
        }
        Ok(Scheduler {
            entries,
            runner,
            last_run: Arc::new(LastRunFile::open(last_run_path)?),
            metrics,
            leader: Arc::new(|| true),
        })
    }

    /// Fire only while `leader()` is true; a tick while it is false is
    /// skipped (another daemon holds the scheduler lease and fires it).
    pub fn with_leader(mut self, leader: LeaderCheck) -> Self {
        self.leader = leader;
        self
    }

    /// Start one task per schedule; the returned handle finishes after shutdown
    /// once every running job has returned.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let mut handles = Vec::new();
        for e in self.entries {
            let runner = self.runner.clone();
            let last_run = self.last_run.clone();
            let metrics = self.metrics.clone();
            handles.push(tokio::spawn(run_entry(
                e,
                runner,
                last_run,
                metrics,
                self.leader.clone(),
                shutdown.clone(),
            )));
        }
        tokio::spawn(async move {
            for h in handles {
                let _ = h.await;
            }
        })
    }
}

async fn run_entry(
    e: Entry,
    runner: Arc<dyn JobRunner>,
    last_run: Arc<LastRunFile>,
    metrics: Arc<Metrics>,
    leader: LeaderCheck,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = e.cfg.name.clone();
    let now = Utc::now();
    let mut inflight: Option<tokio::task::JoinHandle<()>> = None;
    match last_run.get(&name) {
        Some(last) if e.cfg.catch_up && leader() => {
            if let Some(missed) = e.cron.last_missed(last, now) {
                tracing::info!(schedule = %name, missed = %missed, "catching up a run missed while the daemon was down");
                inflight = Some(start(
                    &e,
                    runner.clone(),
                    last_run.clone(),
                    metrics.clone(),
                    Trigger::CatchUp,
                    missed,
                ));
            }
        }
        Some(_) => {}
        None => {
            // First start: remember it, so downtime from now on can be caught up.
            if let Err(err) = last_run.set(&name, now) {
                tracing::error!(schedule = %name, error = %err, "cannot record last run");
            }
        }
    }
    let mut after = now;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let Some(next) = e.cron.next_after(after) else {
            tracing::info!(schedule = %name, "no further fire times");
            break;
        };
        after = next;
        let jitter = if e.cfg.jitter_secs > 0 {
            rand::random::<u64>() % (e.cfg.jitter_secs * 1000 + 1)
        } else {
            0
        };
        let wait =
            (next - Utc::now()).to_std().unwrap_or(Duration::ZERO) + Duration::from_millis(jitter);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if !leader() {
            tracing::debug!(schedule = %name, fire_time = %next, "not the scheduler leader: tick left to the daemon holding the lease");
            continue;
        }
        if e.running.load(Ordering::SeqCst) {
            tracing::warn!(schedule = %name, fire_time = %next, "skipped: the previous run of this schedule is still going");
            metrics.inc(
                "childguard_schedule_skipped_total",
                &[("schedule", &name)],
                1.0,
            );
            continue;
        }
        inflight = Some(start(
            &e,
            runner.clone(),
            last_run.clone(),
            metrics.clone(),
            Trigger::Scheduled,
            next,
        ));
    }
    tracing::info!(schedule = %name, "scheduling stopped");
    if let Some(h) = inflight {
        let _ = h.await;
    }
}

fn start(
    e: &Entry,
    runner: Arc<dyn JobRunner>,
    last_run: Arc<LastRunFile>,
    metrics: Arc<Metrics>,
    trigger: Trigger,
    fire_time: DateTime<Utc>,
) -> tokio::task::JoinHandle<()> {
    e.running.store(true, Ordering::SeqCst);
    let running = e.running.clone();
    let cfg = e.cfg.clone();
    tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        tracing::info!(schedule = %cfg.name, job = %cfg.job, trigger = trigger.as_str(), fire_time = %fire_time.to_rfc3339(), "job started");
        let res = runner.run(&cfg, trigger).await;
        let outcome = if res.is_ok() { "ok" } else { "error" };
        match &res {
            Ok(()) => {
                tracing::info!(schedule = %cfg.name, job = %cfg.job, secs = t0.elapsed().as_secs_f64(), "job finished")
            }
            Err(m) => {
                tracing::error!(schedule = %cfg.name, job = %cfg.job, error = %m, "job failed")
            }
        }
        metrics.inc(
            "childguard_schedule_runs_total",
            &[("schedule", &cfg.name), ("outcome", outcome)],
            1.0,
        );
        metrics.observe(
            "childguard_job_duration_seconds",
            &[("job", cfg.job.as_str())],
            t0.elapsed().as_secs_f64(),
        );
        if let Err(err) = last_run.set(&cfg.name, fire_time) {
            tracing::error!(schedule = %cfg.name, error = %err, "cannot record last run");
        }
        running.store(false, Ordering::SeqCst);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_fields_become_six_with_crontab_sundays() {
        assert_eq!(to_cron_crate("30 2 * * *").unwrap(), "0 30 2 * * *");
        assert_eq!(to_cron_crate("0 3 * * 0").unwrap(), "0 0 3 * * SUN");
        assert_eq!(to_cron_crate("0 3 * * 1-5").unwrap(), "0 0 3 * * MON-FRI");
        assert_eq!(
            to_cron_crate("0 3 * * 5-7").unwrap(),
            "0 0 3 * * FRI-SAT,SUN"
        );
        assert_eq!(to_cron_crate("0 3 * * */2").unwrap(), "0 0 3 * * */2");
        assert_eq!(to_cron_crate("*/5 * * * * *").unwrap(), "*/5 * * * * *");
        assert!(to_cron_crate("* * *").unwrap_err().contains("3 fields"));
        assert!(to_cron_crate("0 3 * * 8").is_err());
    }

    #[test]
    fn sunday_in_crontab_is_sunday() {
        let s = CronSchedule::parse("s", "0 3 * * 0", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2025, 3, 3, 0, 0, 0).unwrap(); // a Monday
        assert_eq!(
            s.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2025, 3, 9, 3, 0, 0).unwrap()
        );
    }

    #[test]
    fn time_zone_is_applied() {
        // 02:30 in Shanghai is 18:30 UTC the day before.
        let s = CronSchedule::parse("n", "30 2 * * *", "Asia/Shanghai").unwrap();
        let t = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2025, 6, 1, 18, 30, 0).unwrap()
        );
        assert!(matches!(
            CronSchedule::parse("n", "30 2 * * *", "Mars/Base"),
            Err(ScheduleError::TimeZone { .. })
        ));
        let e = CronSchedule::parse("n", "61 2 * * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(e.contains("schedule `n`") && e.contains("61 2"), "{e}");
    }

    #[test]
    fn last_missed_finds_the_latest() {
        let s = CronSchedule::parse("h", "0 * * * *", "UTC").unwrap();
        let a = Utc.with_ymd_and_hms(2025, 1, 1, 0, 30, 0).unwrap();
        let b = Utc.with_ymd_and_hms(2025, 1, 1, 3, 10, 0).unwrap();
        assert_eq!(
            s.last_missed(a, b).unwrap(),
            Utc.with_ymd_and_hms(2025, 1, 1, 3, 0, 0).unwrap()
        );
        assert_eq!(
            s.last_missed(a, Utc.with_ymd_and_hms(2025, 1, 1, 0, 59, 0).unwrap()),
            None
        );
    }

    #[test]
    fn last_run_file_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/last_run.json");
        let f = LastRunFile::open(&p).unwrap();
        let t = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        f.set("a", t).unwrap();
        assert_eq!(LastRunFile::open(&p).unwrap().get("a"), Some(t));
        std::fs::write(&p, "{not json").unwrap();
        assert!(LastRunFile::open(&p)
            .unwrap_err()
            .to_string()
            .contains("last_run.json"));
    }
}
