//! The deployment files in `deploy/` parse and agree with the binary: the
//! systemd unit's and the Deployment's command lines are accepted by the CLI,
//! the embedded config loads and its schedules compile, probes and ports
//! point at real endpoints, the CronJob runs a plain `childguard scan`.

use childguard::config::Config;
use childguard::daemon::scheduler::CronSchedule;
use clap::Parser;
use serde::Deserialize;
use serde_yaml::Value;
use std::path::PathBuf;

fn deploy(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(p)
}

fn docs(p: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy(p)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{p}: {e}")))
        .collect()
}

fn kind<'a>(d: &'a [Value], k: &str) -> &'a Value {
    d.iter()
        .find(|x| x["kind"] == k)
        .unwrap_or_else(|| panic!("no {k}"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kubernetes_daemon_manifest_is_consistent() {
    let d = docs("kubernetes/daemon.yaml");
    for x in &d {
        assert!(
            x["apiVersion"].is_string()
                && x["kind"].is_string()
                && x["metadata"]["name"].is_string(),
            "{x:?}"
        );
    }
    let cm = kind(&d, "ConfigMap");
    let toml_text = cm["data"]["childguard.toml"].as_str().unwrap();
    let cfg: Config = toml::from_str(toml_text).expect("the embedded config loads");
    assert!(!cfg.schedules.is_empty());
    for s in &cfg.schedules {
        CronSchedule::parse(&s.name, &s.cron, &s.timezone).unwrap();
    }
    let port: u16 = cfg
        .server
        .listen
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(
        cfg.server.listen.starts_with("0.0.0.0"),
        "inside a pod the API must listen on all interfaces"
    );

    let dep = kind(&d, "Deployment");
    let spec = &dep["spec"]["template"]["spec"];
    assert_eq!(
        dep["spec"]["selector"]["matchLabels"],
        dep["spec"]["template"]["metadata"]["labels"]
    );
    let c = &spec["containers"][0];
    let mut argv = vec!["childguard".to_string()];
    argv.extend(strs(&c["args"]));
    childguard::cli::Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("Deployment args rejected by the CLI: {e}"));
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(port as u64));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > cfg.server.shutdown_grace_secs,
        "Kubernetes must wait longer than the daemon's own grace period"
    );
    // Config and state mounts match the args.
    let mounts: Vec<String> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    assert!(argv.iter().any(|a| a.starts_with(&mounts[0])) && argv.iter().any(|a| a == &mounts[1]));
    let pvc = kind(&d, "PersistentVolumeClaim");
    assert_eq!(
        spec["volumes"][1]["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    let svc = kind(&d, "Service");
    assert_eq!(
        svc["spec"]["selector"],
        dep["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"],
        Value::Bool(false)
    );
}

#[test]
fn kubernetes_cronjob_runs_a_plain_nightly_scan() {
    let d = docs("kubernetes/cronjob-scan.yaml");
    assert_eq!(d.len(), 1);
    let cj = kind(&d, "CronJob");
    assert_eq!(cj["apiVersion"], "batch/v1");
    let sched = cj["spec"]["schedule"].as_str().unwrap();
    let tz = cj["spec"]["timeZone"].as_str().unwrap();
    CronSchedule::parse("cronjob", sched, tz).expect("a valid 5-field schedule and time zone");
    assert_eq!(sched.split_whitespace().count(), 5);
    assert_eq!(
        cj["spec"]["concurrencyPolicy"], "Forbid",
        "a nightly scan never overlaps itself"
    );
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let args = strs(&pod["containers"][0]["args"]);
    assert_eq!(args[0], "scan");
    let mut argv = vec!["childguard".to_string()];
    argv.extend(args.iter().cloned());
    childguard::cli::Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("CronJob args rejected by the CLI: {e}"));
    assert!(args
        .windows(2)
        .any(|w| w[0] == "--format" && w[1] == "jsonl"));
    let data_mount = pod["containers"][0]["volumeMounts"][0]["mountPath"]
        .as_str()
        .unwrap();
    assert!(
        args.iter().any(|a| a == data_mount),
        "the scan target is the mounted data"
    );
}

#[test]
fn kubernetes_sharded_cronjob_is_an_indexed_job_of_n_shards_on_one_store() {
    let d = docs("kubernetes/cronjob-shards.yaml");
    let cj = kind(&d, "CronJob");
    assert_eq!(cj["apiVersion"], "batch/v1");
    let sched = cj["spec"]["schedule"].as_str().unwrap();
    let tz = cj["spec"]["timeZone"].as_str().unwrap();
    CronSchedule::parse("cronjob", sched, tz).expect("a valid 5-field schedule and time zone");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    let job = &cj["spec"]["jobTemplate"]["spec"];
    assert_eq!(
        job["completionMode"], "Indexed",
        "JOB_COMPLETION_INDEX is set only in Indexed Jobs"
    );
    let n = job["completions"].as_u64().unwrap();
    assert!(n >= 2);
    assert_eq!(
        job["parallelism"].as_u64(),
        Some(n),
        "all shards run at once"
    );
    let pod = &job["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    let env: Vec<(String, Option<String>)> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().map(String::from),
            )
        })
        .collect();
    let shards = env
        .iter()
        .find(|(k, _)| k == "CHILDGUARD_SHARDS")
        .and_then(|(_, v)| v.clone())
        .expect("CHILDGUARD_SHARDS is set");
    assert_eq!(
        shards,
        n.to_string(),
        "CHILDGUARD_SHARDS must equal completions"
    );
    assert!(env.iter().any(|(k, _)| k == "PGPASSWORD"));
    let args = strs(&c["args"]);
    assert_eq!(args[0], "scan");
    assert!(args.iter().any(|a| a == "--shard-from-env"));
    let mut argv = vec!["childguard".to_string()];
    argv.extend(args.iter().cloned());
    childguard::cli::Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("CronJob args rejected by the CLI: {e}"));
    // Every index resolves to a valid shard.
    for k in 0..n {
        let s = childguard::source::shard::Shard::from_env(None, |v| match v {
            "JOB_COMPLETION_INDEX" => Some(k.to_string()),
            "CHILDGUARD_SHARDS" => Some(shards.clone()),
            _ => None,
        })
        .unwrap();
        assert_eq!((s.index, s.count), (k, n));
    }
    // The config the pods mount loads, points every shard at one PostgreSQL
    // store and defines the named sources the args scan.
    let cm = kind(&d, "ConfigMap");
    let toml = cm["data"]["childguard.toml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("childguard.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("shard config: {e}"));
    assert!(cfg
        .state_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres://")));
    for a in args.iter().filter(|a| a.starts_with('@')) {
        assert!(
            cfg.sources.iter().any(|s| s.name == a[1..]),
            "{a} is not in the config"
        );
    }
    let cfg_arg = args.windows(2).find(|w| w[0] == "--config").unwrap()[1].clone();
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert!(mounts.iter().any(|m| cfg_arg.starts_with(m)));
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        cm["metadata"]["name"]
    );
}

#[test]
fn systemd_unit_is_well_formed_and_its_command_parses() {
    let text = std::fs::read_to_string(deploy("systemd/childguard.service")).unwrap();
    let mut section = String::new();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('[') {
            assert!(l.ends_with(']'), "line {}: bad section", n + 1);
            section = l[1..l.len() - 1].to_string();
            continue;
        }
        let (k, v) = l
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {l}", n + 1));
        assert!(!section.is_empty(), "line {}: key outside a section", n + 1);
        keys.push((section.clone(), k.to_string(), v.to_string()));
    }
    let get = |s: &str, k: &str| {
        keys.iter()
            .find(|x| x.0 == s && x.1 == k)
            .map(|x| x.2.clone())
            .unwrap_or_else(|| panic!("[{s}] {k} missing"))
    };
    for s in ["Unit", "Service", "Install"] {
        assert!(keys.iter().any(|x| x.0 == s), "section {s}");
    }
    let exec = get("Service", "ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert!(argv[0].starts_with('/'), "ExecStart needs an absolute path");
    let mut cli = vec!["childguard"];
    cli.extend(&argv[1..]);
    childguard::cli::Cli::try_parse_from(&cli)
        .unwrap_or_else(|e| panic!("ExecStart rejected by the CLI: {e}"));
    assert_eq!(get("Service", "KillSignal"), "SIGTERM");
    assert!(get("Service", "TimeoutStopSec").parse::<u64>().unwrap() > 30);
    assert_eq!(get("Service", "StateDirectory"), "childguard");
    assert!(
        exec.contains("/var/lib/childguard"),
        "state dir matches StateDirectory"
    );
    assert_eq!(get("Install", "WantedBy"), "multi-user.target");
    assert_eq!(get("Service", "NoNewPrivileges"), "true");
}
