//! Daemon configuration: `[[schedules]]` (what runs when), `[[tokens]]` (who
//! may call the API, with which role) and `[server]` (where and how the HTTP
//! API listens). Used by `childguard serve` (see [`crate::daemon`]).
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! log_format = "json"
//!
//! [[schedules]]
//! name = "nightly-scan"
//! cron = "30 2 * * *"          # standard 5-field crontab; 6-field (seconds first) also accepted
//! timezone = "Asia/Shanghai"
//! job = "scan"
//! targets = ["/srv/app/logs"]
//! catch_up = true
//! jitter_secs = 300
//!
//! [[tokens]]
//! name = "alice"
//! hash = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
//! role = "approver"
//! ```
//!
//! Tokens are stored hashed (`childguard serve --hash-token` prints the line);
//! the plaintext never sits in the config (CAC Order No. 4 Art. 15: least privilege).

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// One scheduled job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name, shown in logs, metrics and the API.
    pub name: String,
    /// When to run: a standard 5-field crontab expression (`min hour dom month dow`,
    /// `0`/`7` = Sunday), or 6/7 fields with seconds first (`sec min hour dom month dow [year]`).
    pub cron: String,
    /// IANA time zone the expression is read in, e.g. `Asia/Shanghai`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// What to run.
    pub job: JobKind,
    /// `scan` jobs: paths (files or directories) to scan; empty means every dataset's source path.
    #[serde(default)]
    pub targets: Vec<String>,
    /// `sweep_plan` / `report` jobs: restrict to these datasets; empty means all.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// `report` jobs: file the report JSON is written to (default `<state_dir>/reports/<name>-<time>.json`).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Run once at start when a fire time was missed while the daemon was down.
    #[serde(default = "default_catch_up")]
    pub catch_up: bool,
    /// Delay each run by a random 0..=jitter_secs seconds (spreads load of many daemons).
    #[serde(default = "default_jitter")]
    pub jitter_secs: u64,
    /// Set to false to keep the entry but not run it.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

/// The job a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Scan the targets, store findings, classify violations.
    Scan,
    /// Plan retention sweeps (dry run with counts) for the datasets; plans wait for approval.
    SweepPlan,
    /// Execute every approved sweep plan.
    SweepRun,
    /// Write a self-inspection report (MIIT Order No. 24 Art. 16).
    Report,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Scan => "scan",
            JobKind::SweepPlan => "sweep_plan",
            JobKind::SweepRun => "sweep_run",
            JobKind::Report => "report",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token; recorded as the actor in the audit log.
    pub name: String,
    /// `sha256:<64 hex digits>` of the token text.
    pub hash: String,
    /// What the holder may do.
    pub role: Role,
}

/// API roles, each including the rights of the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads findings (masked only), violations, datasets, runs, plans, audit.
    Viewer,
    /// Also starts scans, triages findings, plans sweeps, files erasure requests.
    Operator,
    /// Also approves sweep plans, erasures and purges (never their own).
    Approver,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; keep it on loopback unless behind a TLS proxy.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted request body in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Requests taking longer than this many seconds are answered 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Log line format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Rows per batch when a sweep deletes records (a SIGTERM stops between batches).
    #[serde(default = "default_sweep_batch")]
    pub sweep_batch_rows: u32,
    /// Milliseconds to pause between sweep batches, to limit load on the source database.
    #[serde(default = "default_sweep_pause")]
    pub sweep_batch_pause_ms: u64,
    /// Seconds a shutdown waits for the running job to reach a checkpoint.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// API requests per second each token may make on average; over it the
    /// API answers 429 `rate_limited`. 0 turns rate limiting off.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_sec: u32,
    /// API requests a token may make at once above the average rate.
    #[serde(default = "default_rate_burst")]
    pub rate_limit_burst: u32,
    /// Seconds the scheduler lease lasts when several daemons share one
    /// PostgreSQL store (`state_url`): one daemon holds it and fires the
    /// schedules, renewing it every third of this; when it dies another takes
    /// over within about this time. Also the lease of a running scan or sweep.
    #[serde(default = "default_leader_lease")]
    pub leader_lease_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            body_limit_bytes: default_body_limit(),
            request_timeout_secs: default_request_timeout(),
            log_format: LogFormat::Text,
            sweep_batch_rows: default_sweep_batch(),
            sweep_batch_pause_ms: default_sweep_pause(),
            shutdown_grace_secs: default_shutdown_grace(),
            rate_limit_per_sec: default_rate_limit(),
            rate_limit_burst: default_rate_burst(),
            leader_lease_secs: default_leader_lease(),
        }
    }
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
const fn default_catch_up() -> bool {
    false
}
const fn default_jitter() -> u64 {
    0
}
const fn default_enabled() -> bool {
    true
}
const fn default_body_limit() -> usize {
    1024 * 1024
}
const fn default_request_timeout() -> u64 {
    30
}
const fn default_sweep_batch() -> u32 {
    500
}
const fn default_rate_limit() -> u32 {
    20
}
const fn default_rate_burst() -> u32 {
    100
}
const fn default_sweep_pause() -> u64 {
    0
}
const fn default_shutdown_grace() -> u64 {
    30
}
const fn default_leader_lease() -> u64 {
    15
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        #[serde(default)]
        schedules: Vec<ScheduleConfig>,
        #[serde(default)]
        tokens: Vec<TokenConfig>,
        #[serde(default)]
        server: ServerConfig,
    }

    #[test]
    fn parses_daemon_sections_with_defaults() {
        let d: Doc = toml::from_str(
            r#"
            [server]
            log_format = "json"
            [[schedules]]
            name = "n"
            cron = "30 2 * * *"
            timezone = "Asia/Shanghai"
            job = "sweep_plan"
            [[tokens]]
            name = "a"
            hash = "sha256:00"
            role = "approver"
            "#,
        )
        .unwrap();
        assert_eq!(d.server.listen, "127.0.0.1:8080");
        assert_eq!(d.server.log_format, LogFormat::Json);
        assert_eq!(d.schedules[0].job, JobKind::SweepPlan);
        assert!(!d.schedules[0].catch_up);
        assert!(d.schedules[0].enabled);
        assert_eq!(d.tokens[0].role, Role::Approver);
        assert!(Role::Viewer < Role::Operator && Role::Approver < Role::Admin);
        let bad: Result<Doc, _> =
            toml::from_str("[[schedules]]\nname='x'\ncron='* * * * *'\njob='dance'\n");
        assert!(bad.unwrap_err().to_string().contains("dance"));
    }
}
