//! Helpers shared by the sweep integration tests (included with `#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run childguard in `dir` with a private state dir, a fixed fingerprint key and extra env.
pub fn cg(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_childguard"));
    c.current_dir(dir).args(args).env("CHILDGUARD_STATE_DIR", dir.join(".state")).env("CHILDGUARD_FINGERPRINT_KEY", "test-key").env("USER", "tester").env_remove("RUST_LOG").env_remove("CHILDGUARD_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run childguard")
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sweep plan --json` etc.: parse the last stdout line as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    let s = out(o);
    let line = s.lines().last().unwrap_or_else(|| panic!("no output; stderr: {}", err(o)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad json {line}: {e}; stderr: {}", err(o)))
}

pub fn ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", o.status.code(), out(o), err(o));
}

pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("childguard.toml");
    std::fs::write(&p, body).unwrap();
    p
}

pub fn receipt(dir: &Path, plan: &str) -> serde_json::Value {
    let p = dir.join(".state/receipts").join(format!("{plan}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Plan (as alice), approve (as bob), run; returns (plan id, run output).
pub fn plan_approve_run(dir: &Path, plan_args: &[&str], env: &[(&str, String)]) -> (String, Output) {
    let mut a = vec!["sweep", "plan", "--json", "--as", "alice"];
    a.extend_from_slice(plan_args);
    let p = cg(dir, &a, env);
    ok(&p);
    let id = json(&p)["id"].as_str().unwrap().to_string();
    ok(&cg(dir, &["sweep", "approve", &id, "--by", "bob", "--comment", "ok"], env));
    let r = cg(dir, &["sweep", "run", &id, "--json"], env);
    (id, r)
}
