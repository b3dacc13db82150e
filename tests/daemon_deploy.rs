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
