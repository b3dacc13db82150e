//! Stage `daemon` (see DESIGN.md): `childguard serve`. Cron schedules
//! ([`scheduler`]), the HTTP API under `/api/v1` with bearer-token roles
//! ([`api`], [`auth`]), the embedded dashboard, Prometheus `/metrics`
//! ([`metrics`]), `/healthz` and `/readyz`. On SIGTERM it stops scheduling
//! and accepting requests, lets the running scan or sweep reach its next
//! checkpoint, and exits; a restart resumes interrupted sweeps.
//!
//! Several daemons may share one PostgreSQL store (`state_url`): the one
//! holding the store lease [`SCHEDULER_LEASE`] fires the schedules
//! (`lease_keeper` takes and renews it), a sweep holds `sweep:<dataset>`
//! leases, and each scan a `run:<id>` lease so that only runs of dead
//! daemons are marked interrupted.

pub mod api;
pub mod auth;
pub mod demo;
pub mod jobs;
pub mod limit;
pub mod metrics;
pub mod scheduler;

use crate::config::daemon::{JobKind, ScheduleConfig};
use crate::config::Config;
use crate::detect::{Engine, EngineOptions};
use crate::fingerprint::Fingerprinter;
use metrics::Metrics;
use scheduler::{JobFuture, JobRunner, Scheduler, Trigger};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Errors starting or running the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Sweep(#[from] crate::sweep::SweepError),
    #[error(transparent)]
    Jobs(#[from] jobs::JobError),
    #[error(transparent)]
    Schedule(#[from] scheduler::ScheduleError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Tokens(#[from] auth::TokenConfigError),
    #[error("fingerprint key: {0}")]
    Key(String),
    #[error("detector engine: {0}")]
    Engine(String),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// One access or action record, appended to the shared hash-chained audit
/// log (CAC Order No. 4 Art. 15; MIIT Order No. 24 Art. 13(6): who, when,
/// from where, what). Never carries a raw value.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub role: String,
    pub action: String,
    pub object: String,
    pub outcome: String,
    pub detail: Option<String>,
    /// The client's address for API requests.
    pub peer: Option<String>,
}

/// Everything handlers and jobs share.
pub struct Daemon {
    pub config: Config,
    /// The shared findings store (runs, findings, triage, violations, the
    /// hash-chained audit log) that `childguard findings`/`report`/`audit` read.
    pub store: Arc<dyn crate::store::Store>,
    /// The shared sweep stage: plans, approvals, journaled runs, receipts.
    pub sweeper: crate::sweep::Sweeper,
    /// Set on shutdown: a running sweep stops at its next batch boundary.
    pub stop: crate::sweep::Stop,
    /// Scans still being written or classified (shown as `running`).
    pub active_runs: std::sync::Mutex<HashSet<i64>>,
    /// Erasure subjects by plan id, in memory only until the erasure ran
    /// (plans keep only the keyed fingerprint).
    pub subjects: std::sync::Mutex<HashMap<String, String>>,
    /// Serializes plan state changes (approve, supersede) in this daemon.
    pub plan_lock: tokio::sync::Mutex<()>,
    pub metrics: Arc<Metrics>,
    pub engine: Engine,
    pub tokens: auth::TokenSet,
    /// Per-token API rate limit.
    pub limiter: limit::RateLimiter,
    pub shutdown: watch::Receiver<bool>,
    pub audit_tx: mpsc::UnboundedSender<AuditEntry>,
    pub scan_lock: Arc<tokio::sync::Mutex<()>>,
    pub sweep_lock: tokio::sync::Mutex<()>,
    pub state_dir: PathBuf,
    pub ready: AtomicBool,
    /// Leases on the shared store: the scheduler lease, one per running scan
    /// (`run:<id>`) and one per dataset being swept (`sweep:<dataset>`).
    pub coord: crate::store::lease::Coordinator,
    /// This process's holder name in those leases (`pid-random`).
    pub instance: String,
    /// The store is shared by several daemons (`state_url`): the scheduler
    /// is elected. On the embedded SQLite store this daemon always leads.
    pub shared: bool,
    /// Until when (epoch ms) this daemon holds the scheduler lease.
    pub leader_until: AtomicI64,
}

impl Daemon {
    /// The lease time of the scheduler, runs and sweeps (`[server] leader_lease_secs`).
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.config.server.leader_lease_secs.max(1))
    }

    /// Whether this daemon fires the schedules now: always on a private
    /// store; on a shared one while its scheduler lease has not expired.
    pub fn is_leader(&self) -> bool {
        !self.shared || crate::store::lease::now_ms() < self.leader_until.load(Ordering::SeqCst)
    }
}

/// The lease the scheduling daemon holds.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// The lease a daemon holds on one of its running scans.
pub fn run_lease(run_id: i64) -> String {
    format!("run:{run_id}")
}

/// Every third of the lease time: take or keep the scheduler lease, renew
/// the leases of this daemon's running scans, and (as leader) mark
/// interrupted the daemon-started runs whose daemon died (their run lease
/// expired). Other daemons' live scans keep their lease and are left alone.
async fn lease_keeper(d: Arc<Daemon>, mut shutdown: watch::Receiver<bool>) {
    let ttl = d.lease_ttl();
    loop {
        keep_leases(&d, ttl).await;
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    // Hand the scheduler over at once rather than after the lease runs out.
    if d.is_leader() {
        if let Ok(Some(l)) = d.coord.try_acquire(SCHEDULER_LEASE, &d.instance, ttl).await {
            let _ = d.coord.release(&l).await;
        }
        d.leader_until.store(0, Ordering::SeqCst);
    }
}

async fn keep_leases(d: &Daemon, ttl: Duration) {
    let was = d.is_leader();
    match d.coord.try_acquire(SCHEDULER_LEASE, &d.instance, ttl).await {
        Ok(Some(l)) => d.leader_until.store(l.expires_ms, Ordering::SeqCst),
        Ok(None) => d.leader_until.store(0, Ordering::SeqCst),
        // Keep what we had: it runs out by itself if the store stays away.
        Err(e) => tracing::warn!(error = %e, "cannot renew the scheduler lease"),
    }
    let now = d.is_leader();
    if now != was {
        if now {
            tracing::info!(instance = %d.instance, "took the scheduler lease: this daemon fires the schedules");
        } else {
            tracing::warn!(instance = %d.instance, "lost the scheduler lease: schedules fire elsewhere");
        }
    }
    d.metrics.set(
        "childguard_scheduler_leader",
        &[],
        if now { 1.0 } else { 0.0 },
    );
    let active: Vec<i64> = d.active_runs.lock().unwrap().iter().copied().collect();
    for id in active {
        if let Err(e) = d.coord.try_acquire(&run_lease(id), &d.instance, ttl).await {
            tracing::warn!(run = id, error = %e, "cannot renew a run lease");
        }
    }
    if now {
        if let Err(e) = reap_dead_runs(d, ttl).await {
            tracing::warn!(error = %e, "cannot check for runs of dead daemons");
        }
    }
}

/// Runs a daemon started (trigger set, not `cli`) that are still `running`
/// but whose run lease nobody renews any more: their daemon died.
async fn reap_dead_runs(d: &Daemon, ttl: Duration) -> Result<(), crate::store::StoreError> {
    if !d.shared {
        return Ok(());
    }
    for r in d.store.runs(1000).await? {
        let daemon_run = r.trigger.as_deref().is_some_and(|t| t != "cli");
        if r.status != crate::store::RunStatus::Running
            || !daemon_run
            || d.active_runs.lock().unwrap().contains(&r.id)
        {
            continue;
        }
        if let Some(l) = d
            .coord
            .try_acquire(&run_lease(r.id), &d.instance, ttl)
            .await?
        {
            d.store.interrupt_runs(Some(r.id)).await?;
            let _ = d.coord.release(&l).await;
            tracing::warn!(
                run = r.id,
                "run of a daemon that stopped renewing its lease marked interrupted"
            );
        }
    }
    Ok(())
}

/// How `serve` is started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: Config,
    /// Overrides `[server] listen`.
    pub listen: Option<String>,
    pub state_dir: PathBuf,
    /// Scan these targets once at start (the demo), as this actor.
    pub startup_scan: Option<(Vec<String>, String)>,
    /// After the startup scan, plan retention sweeps as this actor.
    pub startup_plan_by: Option<String>,
}

/// Runs scheduled jobs on the daemon.
struct DaemonRunner(Arc<Daemon>);

impl JobRunner for DaemonRunner {
    fn run(&self, s: &ScheduleConfig, trigger: Trigger) -> JobFuture {
        let d = self.0.clone();
        let s = s.clone();
        Box::pin(async move {
            let by = format!("schedule:{}", s.name);
            match s.job {
                JobKind::Scan => {
                    let id = jobs::scan(d.clone(), s.targets.clone(), trigger.as_str(), &by)
                        .await
                        .map_err(|e| e.to_string())?;
                    let st = jobs::wait_run(&d, id).await.map_err(|e| e.to_string())?;
                    if st == "failed" {
                        return Err(format!("scan run {id} failed"));
                    }
                }
                JobKind::SweepPlan => {
                    jobs::plan_sweeps(&d, &s.datasets, &by)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                JobKind::SweepRun => {
                    jobs::run_approved(d.clone(), &by)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                JobKind::Report => {
                    let (meta, data) = jobs::create_report(&d, &by)
                        .await
                        .map_err(|e| e.to_string())?;
                    // Also where the schedule asks, in the format its extension names.
                    if let Some(path) = &s.output {
                        let body = match path.extension().and_then(|e| e.to_str()) {
                            Some("md") => crate::report::render_markdown(&data),
                            Some("html") | Some("htm") => crate::report::render_html(&data),
                            _ => crate::report::render_json(&data),
                        };
                        if let Some(dir) = path.parent() {
                            std::fs::create_dir_all(dir)
                                .map_err(|e| format!("{}: {e}", dir.display()))?;
                        }
                        std::fs::write(path, body)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                    }
                    d.audit(
                        &by,
                        "-",
                        "report.create",
                        &format!("report/{}", meta.id),
                        "ok",
                        Some(format!("run {}", meta.run_id)),
                    );
                }
            }
            Ok(())
        })
    }
}

/// Appends queued records to the shared audit chain in order, off the
/// request path.
async fn audit_writer(
    store: Arc<dyn crate::store::Store>,
    mut rx: mpsc::UnboundedReceiver<AuditEntry>,
) {
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, 1000).await > 0 {
        for e in &buf {
            // The store records its own triage entries (`Store::triage`).
            if e.action == "finding.triage" {
                continue;
            }
            // A busy database (SQLite: another writer upgrading its
            // transaction) is retried, so no access record is dropped.
            let entry = shared_audit(e);
            for attempt in 1..=5u64 {
                match store.audit_append(&entry).await {
                    Ok(_) => break,
                    Err(err) if attempt == 5 => {
                        tracing::error!(error = %err, action = %e.action, "cannot append to the audit chain");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, attempt, "audit append failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    }
                }
            }
        }
        buf.clear();
    }
}

/// A daemon audit record as an entry of the shared hash-chained audit log.
fn shared_audit(e: &AuditEntry) -> crate::store::AuditEntry {
    crate::store::AuditEntry {
        actor: e.actor.clone(),
        action: e.action.clone(),
        object: e.object.clone(),
        details: serde_json::json!({
            "role": e.role,
            "outcome": e.outcome,
            "detail": e.detail,
            "peer": e.peer,
        }),
    }
}

/// The config the shared store is opened with: the daemon's state directory
/// unless `state_url` points to PostgreSQL.
fn store_config(opts: &ServeOptions) -> Config {
    let mut c = opts.config.clone();
    c.state_dir = Some(opts.state_dir.clone());
    c
}

/// Record a `config.change` entry in the shared audit chain when the
/// configuration (inventory, tokens, schedules, server settings) differs from
/// the one the last entry recorded (CAC Order No. 4 Art. 15: changes to who
/// may access what, and to retention rules, are on record). The config is
/// identified by a keyed fingerprint, so no secret in it is ever written.
async fn record_config(
    store: &dyn crate::store::Store,
    engine: &Engine,
    config: &Config,
) -> Result<(), DaemonError> {
    let fp = engine
        .fingerprinter()
        .fingerprint(&format!("config\0{config:?}"));
    let mut last: Option<String> = None;
    let mut after = 0;
    loop {
        let rows = store.audit_rows(after, 10_000).await?;
        let Some(end) = rows.last() else { break };
        after = end.id;
        for r in rows.iter().filter(|r| r.action == "config.change") {
            last = serde_json::from_str::<serde_json::Value>(&r.details)
                .ok()
                .and_then(|d| d["fingerprint"].as_str().map(str::to_string));
        }
    }
    if last.as_deref() == Some(fp.as_str()) {
        return Ok(());
    }
    store
        .audit_append(&crate::store::AuditEntry {
            actor: "daemon".into(),
            action: "config.change".into(),
            object: "config".into(),
            details: serde_json::json!({
                "fingerprint": fp,
                "previous": last,
                "datasets": config.datasets.len(),
                "tokens": config.tokens.len(),
                "schedules": config.schedules.len(),
            }),
        })
        .await?;
    tracing::info!(fingerprint = %&fp[..16.min(fp.len())], "configuration changed since the last start: recorded in the audit log");
    Ok(())
}

/// Build the shared daemon state (used by `serve` and by tests).
pub async fn build(
    opts: &ServeOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(Arc<Daemon>, tokio::task::JoinHandle<()>), DaemonError> {
    let fp = Fingerprinter::load(&opts.state_dir).map_err(|e| DaemonError::Key(e.to_string()))?;
    let mut eo = EngineOptions::new(chrono::Utc::now().date_naive());
    eo.child_age = opts.config.child_age;
    let engine = Engine::new(eo, fp).map_err(|e| DaemonError::Engine(e.to_string()))?;
    let tokens = auth::TokenSet::from_config(&opts.config.tokens)?;
    if tokens.is_empty() {
        tracing::warn!("no [[tokens]] configured: every API call will be refused (401)");
    }
    let store = crate::store::open(&store_config(opts)).await?;
    record_config(&*store, &engine, &opts.config).await?;
    let shared = opts.config.state_url.is_some();
    // A private store's running runs were this daemon's before it stopped.
    // On a shared store they may be other daemons' live scans: the leader
    // marks only those whose run lease expired (`lease_keeper`).
    if !shared {
        let stale = store.interrupt_runs(None).await?;
        if stale > 0 {
            tracing::warn!(
                runs = stale,
                "runs left running by a previous daemon marked interrupted"
            );
        }
    }
    let coord = crate::store::lease::Coordinator::open(&store_config(opts)).await?;
    let instance = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
    let mut sweeper = crate::sweep::Sweeper::open(store_config(opts)).await?;
    // `[server]` batch settings bound the sweeper's adaptive batches.
    let rows = (opts.config.server.sweep_batch_rows as usize).max(1);
    sweeper.settings.max_batch = sweeper.settings.max_batch.min(rows);
    sweeper.settings.initial_batch = sweeper.settings.initial_batch.min(rows);
    sweeper.settings.min_batch = sweeper.settings.min_batch.min(rows);
    sweeper.settings.sleep_ms = sweeper
        .settings
        .sleep_ms
        .max(opts.config.server.sweep_batch_pause_ms);
    let stop = crate::sweep::Stop::new(&opts.state_dir);
    let (audit_tx, audit_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(audit_writer(store.clone(), audit_rx));
    let d = Arc::new(Daemon {
        config: opts.config.clone(),
        store,
        sweeper,
        stop,
        active_runs: Default::default(),
        subjects: Default::default(),
        plan_lock: Default::default(),
        metrics: Arc::new(Metrics::new()),
        engine,
        tokens,
        limiter: limit::RateLimiter::new(
            opts.config.server.rate_limit_per_sec,
            opts.config.server.rate_limit_burst,
        ),
        shutdown,
        audit_tx,
        scan_lock: Arc::new(tokio::sync::Mutex::new(())),
        sweep_lock: tokio::sync::Mutex::new(()),
        state_dir: opts.state_dir.clone(),
        ready: AtomicBool::new(false),
        coord,
        instance,
        shared,
        leader_until: AtomicI64::new(0),
    });
    if shared {
        // Decide leadership before the scheduler starts (catch-up runs need it).
        keep_leases(&d, d.lease_ttl()).await;
    } else {
        d.metrics.set("childguard_scheduler_leader", &[], 1.0);
    }
    Ok((d, writer))
}

/// Run the daemon until `stop` resolves (SIGTERM / Ctrl-C in `childguard serve`).
/// `on_listen` receives the bound address (tests listen on port 0).
pub async fn serve(
    opts: ServeOptions,
    stop: impl Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(std::net::SocketAddr) + Send,
) -> Result<(), DaemonError> {
    let (tx, rx) = watch::channel(false);
    let (d, writer) = build(&opts, rx.clone()).await?;
    let d_lead = d.clone();
    let sched = Scheduler::new(
        &d.config.schedules,
        Arc::new(DaemonRunner(d.clone())),
        &opts.state_dir.join("schedules.json"),
        d.metrics.clone(),
    )?
    .with_leader(Arc::new(move || d_lead.is_leader()));
    let sched_handle = sched.spawn(rx.clone());
    let keeper = d
        .shared
        .then(|| tokio::spawn(lease_keeper(d.clone(), rx.clone())));

    // Resume sweeps a previous daemon was executing when it stopped.
    {
        let d2 = d.clone();
        tokio::spawn(async move {
            match jobs::interrupted_plans(&d2).await {
                Ok(plans) => {
                    for id in plans {
                        tracing::info!(plan = %id, "resuming an interrupted sweep");
                        if let Err(e) = jobs::run_sweep(d2.clone(), &id, "daemon:resume").await {
                            tracing::error!(plan = %id, error = %e, "resumed sweep failed");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list sweeps to resume"),
            }
        });
    }

    let addr = opts
        .listen
        .clone()
        .unwrap_or_else(|| d.config.server.listen.clone());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: addr.clone(),
            source,
        })?;
    tracing::info!(addr = %local, "listening");
    on_listen(local);
    d.ready.store(true, Ordering::SeqCst);

    if let Some((targets, by)) = opts.startup_scan.clone() {
        let d2 = d.clone();
        let plan_by = opts.startup_plan_by.clone();
        tokio::spawn(async move {
            let res = async {
                let id = jobs::scan(d2.clone(), targets, "startup", &by).await?;
                jobs::wait_run(&d2, id).await?;
                if let Some(p) = plan_by {
                    jobs::plan_sweeps(&d2, &[], &p).await?;
                }
                Ok::<_, jobs::JobError>(())
            };
            if let Err(e) = res.await {
                tracing::error!(error = %e, "startup scan failed");
            }
        });
    }

    let sweep_stop = d.stop.clone();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutdown requested: scheduling stopped, finishing the current job");
        sweep_stop.request();
        let _ = tx.send(true);
    });
    let mut rx2 = rx.clone();
    let app = api::router(d.clone());
    let d3 = d.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = rx2.wait_for(|v| *v).await;
        d3.ready.store(false, Ordering::SeqCst);
    })
    .await
    .map_err(DaemonError::Serve)?;

    let grace = Duration::from_secs(d.config.server.shutdown_grace_secs);
    let wait_jobs = async {
        let _ = sched_handle.await;
        let _s = d.scan_lock.lock().await;
        let _w = d.sweep_lock.lock().await;
        if let Some(k) = keeper {
            let _ = k.await;
        }
    };
    if tokio::time::timeout(grace, wait_jobs).await.is_err() {
        tracing::warn!(
            secs = grace.as_secs(),
            "jobs did not reach a checkpoint within the grace period"
        );
    }
    let Daemon { audit_tx, .. } = match Arc::try_unwrap(d) {
        Ok(d) => d,
        Err(d) => {
            // Background tasks still hold it; flush what was queued and leave.
            d.audit("daemon", "-", "daemon.stop", "-", "ok", None);
            tokio::time::sleep(Duration::from_millis(200)).await;
            tracing::info!("stopped");
            return Ok(());
        }
    };
    drop(audit_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    tracing::info!("stopped");
    Ok(())
}
