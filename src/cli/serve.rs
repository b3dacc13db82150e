//! `childguard serve`: the daemon (schedules, HTTP API, dashboard, metrics).

use crate::config::daemon::LogFormat;
use crate::config::Config;
use crate::daemon::{self, ServeOptions};
use anyhow::Context;
use std::path::PathBuf;

/// Run the daemon: scheduled scans and sweeps, the HTTP API under /api/v1,
/// the dashboard at /, Prometheus metrics at /metrics. Stops cleanly on
/// SIGTERM or Ctrl-C (the running job stops at its next checkpoint; a restart
/// resumes interrupted sweeps).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (sources, inventory, [[schedules]], [[tokens]], [server]).
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        required_unless_present_any = ["hash_token", "demo"]
    )]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding `[server] listen` (e.g. 127.0.0.1:8080; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// State directory (daemon database, fingerprint key, last-run times); default `state_dir` of the config, else $CHILDGUARD_STATE_DIR.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log as JSON lines, overriding `[server] log_format`.
    #[arg(long)]
    pub log_json: bool,
    /// Generate a demo estate in DIR (logs, an undeclared export, a SQLite school
    /// database with records past retention, an inventory and tokens), scan it,
    /// plan a sweep, and serve the dashboard. Reuses DIR when already generated.
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub demo: Option<PathBuf>,
    /// Print the `sha256:<hex>` line to put in a [[tokens]] entry for TOKEN, and exit.
    #[arg(long, value_name = "TOKEN")]
    pub hash_token: Option<String>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    if let Some(t) = &args.hash_token {
        println!("{}", daemon::auth::hash_token(t));
        return Ok(0);
    }
    let demo = match &args.demo {
        Some(dir) => Some(daemon::demo::generate(dir)?),
        None => None,
    };
    let path = match &demo {
        Some(d) => d.config.clone(),
        None => args.config.clone().context("--config is required")?,
    };
    let config = Config::load(&path)?;
    let json = args.log_json || config.server.log_format == LogFormat::Json;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // The CLI may already have installed a global subscriber (plain, `warn`);
    // the daemon's own (info, optionally JSON) is set as the default of every
    // thread it runs on instead.
    let dispatch = if json {
        tracing::Dispatch::new(sub.json().finish())
    } else {
        tracing::Dispatch::new(sub.finish())
    };
    let _main_guard = tracing::dispatcher::set_default(&dispatch);
    let for_threads = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || {
            // Lives as long as the thread.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()
        .context("start the async runtime")?;
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| config.state_dir.clone())
        .unwrap_or_else(crate::fingerprint::default_state_dir);
    let mut opts = ServeOptions {
        config,
        listen: args.listen.clone(),
        state_dir,
        startup_scan: None,
        startup_plan_by: None,
    };
    if demo.is_some() {
        // No targets: every dataset's source — the SQLite database and the data
        // directory, where the undeclared export sits.
        opts.startup_scan = Some((vec![], "demo-operator".into()));
        opts.startup_plan_by = Some("demo-operator".into());
    }
    rt.block_on(async move {
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
            }
        };
        daemon::serve(opts, stop, |addr| {
            // Machine-readable line for supervisors and tests.
            println!("listening on http://{addr}");
            if let Some(d) = &demo {
                println!(
                    "demo estate in {} — open http://{addr}/ and sign in with a token:",
                    d.data.display()
                );
                for (name, tok, role) in &d.tokens {
                    println!("  {role:<9} {tok}   ({name})");
                }
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        })
        .await
    })
    .with_context(|| format!("serve with {}", path.display()))?;
    Ok(0)
}
