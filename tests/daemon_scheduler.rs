//! The scheduler with fast schedules: runs happen, a run never overlaps
//! itself (ticks during a run are skipped and counted), a missed run is
//! caught up once at start, and shutdown waits for the running job.

use childguard::config::daemon::{JobKind, ScheduleConfig};
use childguard::daemon::metrics::Metrics;
use childguard::daemon::scheduler::{JobFuture, JobRunner, LastRunFile, Scheduler, Trigger};
use chrono::Utc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Default)]
struct Recorder {
    running: AtomicUsize,
    max_running: AtomicUsize,
    runs: Mutex<Vec<(String, Trigger, chrono::DateTime<Utc>)>>,
    finished: AtomicUsize,
    job_ms: u64,
}

struct Runner(Arc<Recorder>);

impl JobRunner for Runner {
    fn run(&self, s: &ScheduleConfig, trigger: Trigger) -> JobFuture {
        let r = self.0.clone();
        let name = s.name.clone();
        Box::pin(async move {
            let now = r.running.fetch_add(1, Ordering::SeqCst) + 1;
            r.max_running.fetch_max(now, Ordering::SeqCst);
            r.runs.lock().unwrap().push((name, trigger, Utc::now()));
            tokio::time::sleep(Duration::from_millis(r.job_ms)).await;
            r.running.fetch_sub(1, Ordering::SeqCst);
            r.finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

fn sched(name: &str, cron: &str, catch_up: bool) -> ScheduleConfig {
    ScheduleConfig {
        name: name.into(),
        cron: cron.into(),
        timezone: "Asia/Shanghai".into(),
        job: JobKind::Scan,
        targets: vec![],
        datasets: vec![],
        output: None,
        catch_up,
        jitter_secs: 0,
        enabled: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_runs_without_overlap_and_skips_logged() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder {
        job_ms: 2300,
        ..Default::default()
    });
    let metrics = Arc::new(Metrics::new());
    let s = Scheduler::new(
        &[sched("fast", "* * * * * *", false)],
        Arc::new(Runner(rec.clone())),
        &dir.path().join("last.json"),
        metrics.clone(),
    )
    .unwrap();
    let (tx, rx) = watch::channel(false);
    let h = s.spawn(rx);
    tokio::time::sleep(Duration::from_millis(7500)).await;
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), h)
        .await
        .expect("scheduler stops after shutdown")
        .unwrap();

    let runs = rec.runs.lock().unwrap().clone();
    assert!(
        runs.len() >= 2 && runs.len() <= 4,
        "a 2.3 s job on a 1 s schedule for 7.5 s runs 2-4 times, ran {}",
        runs.len()
    );
    assert_eq!(
        rec.max_running.load(Ordering::SeqCst),
        1,
        "a job never overlaps itself"
    );
    for w in runs.windows(2) {
        assert!(
            w[1].2 - w[0].2 >= chrono::Duration::milliseconds(2300),
            "next run started only after the previous one finished"
        );
    }
    let skipped = metrics.counter("childguard_schedule_skipped_total", &[("schedule", "fast")]);
    assert!(
        skipped >= 3.0,
        "ticks during a run are skipped and counted: {skipped}"
    );
    // Shutdown waited for the running job.
    assert_eq!(rec.finished.load(Ordering::SeqCst), runs.len());
    assert_eq!(
        metrics.counter(
            "childguard_schedule_runs_total",
            &[("schedule", "fast"), ("outcome", "ok")]
        ) as usize,
        runs.len()
    );
    // The last run is persisted.
    assert!(LastRunFile::open(&dir.path().join("last.json"))
        .unwrap()
        .get("fast")
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_run_is_caught_up_once_at_start_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let last = dir.path().join("last.json");
    let f = LastRunFile::open(&last).unwrap();
    // The daemon was down for three hours: three hourly runs were missed.
    let three_hours_ago = Utc::now() - chrono::Duration::hours(3);
    f.set("hourly", three_hours_ago).unwrap();
    f.set("hourly-no-catch-up", three_hours_ago).unwrap();
    drop(f);

    let rec = Arc::new(Recorder {
        job_ms: 50,
        ..Default::default()
    });
    let s = Scheduler::new(
        &[
            sched("hourly", "0 * * * *", true),
            sched("hourly-no-catch-up", "0 * * * *", false),
            sched("fresh", "0 * * * *", true),
        ],
        Arc::new(Runner(rec.clone())),
        &last,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let (tx, rx) = watch::channel(false);
    let h = s.spawn(rx);
    tokio::time::sleep(Duration::from_millis(800)).await;
    tx.send(true).unwrap();
    h.await.unwrap();

    let runs = rec.runs.lock().unwrap().clone();
    let names: Vec<_> = runs.iter().map(|r| (r.0.as_str(), r.1)).collect();
    assert_eq!(
        names,
        vec![("hourly", Trigger::CatchUp)],
        "one catch-up run, not three; none without catch_up; none for a first start"
    );
    let f = LastRunFile::open(&last).unwrap();
    let recorded = f.get("hourly").unwrap();
    assert!(
        recorded > three_hours_ago && recorded <= Utc::now(),
        "the caught-up fire time is recorded"
    );
    assert!(
        f.get("fresh").is_some(),
        "a first start records a baseline so later downtime can be caught up"
    );
}

#[tokio::test]
async fn bad_schedules_are_refused_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Arc::new(Runner(Arc::new(Recorder::default())));
    let m = Arc::new(Metrics::new());
    let p = dir.path().join("l.json");
    let e = Scheduler::new(
        &[sched("x", "every day", false)],
        runner.clone(),
        &p,
        m.clone(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("schedule `x`"), "{e}");
    let mut tz = sched("y", "0 3 * * *", false);
    tz.timezone = "Asia/Atlantis".into();
    let e = Scheduler::new(&[tz], runner.clone(), &p, m.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("Asia/Atlantis"), "{e}");
    let e = Scheduler::new(
        &[
            sched("z", "0 3 * * *", false),
            sched("z", "0 4 * * *", false),
        ],
        runner,
        &p,
        m,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("twice"), "{e}");
}

mod daemon_support;

/// The real daemon runs its `[[schedules]]`: a scan every 2 seconds and a
/// report every 3, visible in the API with their trigger and actor.
#[test]
fn the_daemon_runs_its_schedules() {
    let e = daemon_support::estate(20, 5, "");
    let logs = e.root().join("logs").display().to_string();
    let report = e.root().join("reports/self-inspection.json");
    let mut cfg = std::fs::read_to_string(&e.config).unwrap();
    cfg.push_str(&format!(
        "\n[[schedules]]\nname = \"fast-scan\"\ncron = \"*/2 * * * * *\"\njob = \"scan\"\ntargets = [{logs:?}]\n\
         \n[[schedules]]\nname = \"report\"\ncron = \"*/3 * * * * *\"\ntimezone = \"Asia/Shanghai\"\njob = \"report\"\noutput = {:?}\n\
         \n[[schedules]]\nname = \"plan\"\ncron = \"*/3 * * * * *\"\njob = \"sweep_plan\"\ndatasets = [\"students\"]\n",
        report.display().to_string()
    ));
    std::fs::write(&e.config, cfg).unwrap();
    let s = daemon_support::Server::start(&e, &[]);
    std::thread::sleep(Duration::from_millis(5500));
    let runs = s.get("/api/v1/runs", "vera").json;
    let sched: Vec<&serde_json::Value> = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["started_by"] == "schedule:fast-scan")
        .collect();
    assert!(sched.len() >= 2, "scheduled scans ran: {runs}");
    assert!(sched.iter().all(|r| r["trigger"] == "scheduled"));
    assert!(
        sched
            .iter()
            .any(|r| r["status"] == "completed" && r["findings"].as_i64().unwrap() >= 3),
        "{runs}"
    );
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written")).unwrap();
    assert!(rep["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "students"));
    let plans = s.get("/api/v1/sweep/plans", "vera").json;
    assert!(
        plans["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["created_by"] == "schedule:plan" && p["planned_rows"] == 5),
        "{plans}"
    );
    let m = s.req("GET", "/metrics", None, None).body;
    assert!(
        m.contains("childguard_schedule_runs_total{schedule=\"fast-scan\",outcome=\"ok\"}"),
        "{m}"
    );
}
