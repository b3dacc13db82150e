//! One conformance suite, run against both store implementations: embedded
//! SQLite and PostgreSQL (a fresh database on the real server).

mod common;

use childguard::detect::{Engine, EngineOptions};
use childguard::finding::{Category, Finding, Location, Sensitivity};
use childguard::fingerprint::Fingerprinter;
use childguard::scan::text::{scan_chunk, TextOrigin};
use childguard::scan::FindingSink;
use childguard::store::*;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Resident id with a valid MOD 11-2 check digit.
pub fn resident_id(region: &str, birth: &str, seq: &str) -> String {
    let body = format!("{region}{birth}{seq}");
    let w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = body
        .bytes()
        .zip(w)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    let check = b"10X98765432"[(s % 11) as usize] as char;
    format!("{body}{check}")
}

fn engine() -> Engine {
    Engine::new(
        EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
        Fingerprinter::new(b"test-key"),
    )
    .unwrap()
}

fn scan_text(e: &Engine, target: &str, path: &str, text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    scan_chunk(e, &TextOrigin { target, path }, text, 1, 0, &mut out);
    // These tests are about the store, not detection: keep the ID and mobile
    // findings their ground truth is written for (the engine finds more).
    out.retain(|f| matches!(f.category, Category::CnResidentId | Category::CnMobile));
    out
}

fn unit(target: &str, id: &str, error: Option<&str>) -> UnitRecord {
    UnitRecord {
        target: target.into(),
        unit_id: id.into(),
        bytes: 100,
        rows: 0,
        error: error.map(Into::into),
        skipped: None,
        shard: None,
    }
}

type Exec = Box<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;

async fn record(
    store: &Arc<dyn Store>,
    targets: &[&str],
    files: &[(&str, &str, Option<&str>)],
    e: &Engine,
) -> (i64, u64) {
    let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
    let run = store.begin_run(&targets).await.unwrap();
    let (mut sink, writer) = StoreSink::spawn(store.clone(), run);
    let mut n = 0;
    for (path, text, err) in files {
        if err.is_none() {
            for f in scan_text(e, "fixtures", path, text) {
                sink.finding(f).unwrap();
                n += 1;
            }
        }
        store
            .record_unit(run, &unit("fixtures", path, *err))
            .await
            .unwrap();
    }
    drop(sink);
    assert_eq!(writer.finish_async().await.unwrap(), n);
    let failed = files.iter().filter(|f| f.2.is_some()).count() as u64;
    let resolved = store
        .finish_run(
            run,
            &RunStats {
                units: files.len() as u64,
                units_failed: failed,
                findings: n,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (run, resolved)
}

async fn conformance(store: Arc<dyn Store>, exec: Exec) {
    let e = engine();
    let child = resident_id("110105", "20150307", "123");
    let adult = resident_id("110105", "19800101", "456");
    let a_log = format!("login id={child} phone 13812345678\nadult id={adult}\n");
    let b_log = format!("student {child}\n");
    let c_log = format!("guardian phone 13987654321 child {child}\n");

    // Run 1: three files.
    let (r1, resolved) = record(
        &store,
        &["fixtures"],
        &[
            ("a.log", &a_log, None),
            ("b.log", &b_log, None),
            ("c.log", &c_log, None),
        ],
        &e,
    )
    .await;
    assert_eq!(resolved, 0);
    let run1 = store.run(r1).await.unwrap().unwrap();
    assert_eq!(run1.status, RunStatus::Completed);
    assert_eq!(run1.targets, vec!["fixtures".to_string()]);
    assert!(run1.finished_at.is_some());
    assert_eq!(
        (run1.trigger.as_deref(), run1.started_by.as_deref()),
        (None, None)
    );
    // Origin (the daemon's API shows it) and interrupted runs.
    store.set_run_origin(r1, "api", "otto").await.unwrap();
    let run1 = store.run(r1).await.unwrap().unwrap();
    assert_eq!(
        (run1.trigger.as_deref(), run1.started_by.as_deref()),
        (Some("api"), Some("otto"))
    );
    let all = store
        .findings(&FindingFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.total, 6, "{:#?}", all.items);
    assert_eq!(all.items.len(), 6);
    assert!(all
        .items
        .iter()
        .all(|f| f.first_run == r1 && f.last_run == r1 && f.resolved_at.is_none()));
    // Never a raw value in the store.
    for f in &all.items {
        assert!(
            !f.finding.masked.contains(&child[6..14]),
            "masked value leaks the birth date"
        );
    }
    let children = store
        .findings(&FindingFilter {
            child: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(children.total, 5);
    let ids = store
        .findings(&FindingFilter {
            category: Some(Category::CnResidentId),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids.total, 4);
    let high = store
        .findings(&FindingFilter {
            sensitivity: Some(Sensitivity::High),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(high.total, 4);
    assert_eq!(store.units(r1).await.unwrap().len(), 3);

    // Triage one finding in a.log and one in b.log.
    let a_child = all
        .items
        .iter()
        .find(|f| {
            f.unit_id == "a.log"
                && f.finding.category == Category::CnResidentId
                && f.finding.child == Some(true)
        })
        .unwrap()
        .finding
        .finding_id
        .clone();
    let b_id = all
        .items
        .iter()
        .find(|f| f.unit_id == "b.log")
        .unwrap()
        .finding
        .finding_id
        .clone();
    let t = store
        .triage(
            &a_child,
            TriageStatus::FalsePositive,
            Some("test account"),
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(t.triage.status, TriageStatus::FalsePositive);
    assert_eq!(t.triage.by.as_deref(), Some("alice"));
    store
        .triage(&b_id, TriageStatus::Confirmed, None, "bob")
        .await
        .unwrap();
    assert!(matches!(
        store
            .triage("nope", TriageStatus::Confirmed, None, "bob")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let fp = store
        .findings(&FindingFilter {
            status: Some(TriageStatus::FalsePositive),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(fp.total, 1);

    // Run 2: a.log unchanged, b.log emptied (data gone), c.log unreadable.
    let (r2, resolved) = record(
        &store,
        &["fixtures"],
        &[
            ("a.log", &a_log, None),
            ("b.log", "nothing here\n", None),
            ("c.log", "", Some("permission denied")),
        ],
        &e,
    )
    .await;
    assert!(r2 > r1);
    assert_eq!(
        resolved, 1,
        "only b.log's finding resolves; c.log failed so its findings stay open"
    );
    assert_eq!(
        store.run(r2).await.unwrap().unwrap().status,
        RunStatus::CompletedWithErrors
    );
    let t = store.finding(&a_child).await.unwrap().unwrap();
    assert_eq!(
        t.triage.status,
        TriageStatus::FalsePositive,
        "triage survives a re-scan"
    );
    assert_eq!(t.triage.comment.as_deref(), Some("test account"));
    assert_eq!((t.first_run, t.last_run), (r1, r2));
    assert!(t.resolved_at.is_none());
    let b = store.finding(&b_id).await.unwrap().unwrap();
    assert!(
        b.resolved_at.is_some(),
        "b.log's finding resolves when the data disappears"
    );
    assert_eq!(b.triage.status, TriageStatus::Confirmed);
    let c_open = store
        .findings(&FindingFilter {
            resolved: Some(false),
            run: Some(r1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        c_open.total, 2,
        "c.log findings (last seen in run 1) stay open"
    );
    let seen2 = store
        .findings(&FindingFilter {
            run: Some(r2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seen2.total, 3);

    // Run 3: b.log's data comes back: the same finding re-opens, triage kept.
    let (r3b, _) = record(&store, &["fixtures"], &[("b.log", &b_log, None)], &e).await;
    let b = store.finding(&b_id).await.unwrap().unwrap();
    assert!(b.resolved_at.is_none());
    assert_eq!(b.last_run, r3b);
    assert_eq!(b.triage.status, TriageStatus::Confirmed);

    // A unit that no longer exists resolves only when the run listed its target completely.
    let d_log = format!("child {child} again\n");
    let (_, _) = record(&store, &["fixtures"], &[("d.log", &d_log, None)], &e).await;
    let d_id = store
        .findings(&FindingFilter {
            target: Some("fixtures".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let d_id = d_id
        .items
        .iter()
        .find(|f| f.unit_id == "d.log")
        .unwrap()
        .finding
        .finding_id
        .clone();
    let r = store.begin_run(&["fixtures".into()]).await.unwrap();
    store
        .record_unit(r, &unit("fixtures", "a.log", None))
        .await
        .unwrap();
    store
        .upsert_findings(r, &scan_text(&e, "fixtures", "a.log", &a_log))
        .await
        .unwrap();
    assert_eq!(
        store.finish_run(r, &RunStats::default()).await.unwrap(),
        0,
        "a sharded/partial run resolves nothing it did not scan"
    );
    assert!(store
        .finding(&d_id)
        .await
        .unwrap()
        .unwrap()
        .resolved_at
        .is_none());
    let r = store.begin_run(&["fixtures".into()]).await.unwrap();
    store
        .record_unit(r, &unit("fixtures", "a.log", None))
        .await
        .unwrap();
    store
        .record_unit(r, &unit("fixtures", "c.log", Some("still unreadable")))
        .await
        .unwrap();
    store
        .upsert_findings(r, &scan_text(&e, "fixtures", "a.log", &a_log))
        .await
        .unwrap();
    let stats = RunStats {
        complete_targets: vec!["fixtures".into()],
        ..Default::default()
    };
    assert_eq!(
        store.finish_run(r, &stats).await.unwrap(),
        2,
        "d.log is gone and b.log was not listed: both resolve; c.log failed: stays"
    );
    assert!(store
        .finding(&d_id)
        .await
        .unwrap()
        .unwrap()
        .resolved_at
        .is_some());
    assert_eq!(store.run(r).await.unwrap().unwrap().summary.resolved, 2);
    let r3 = r;

    // Paging over many findings: keyset and offset, with totals.
    let many: Vec<Finding> = (0..2_345)
        .map(|i| {
            let location = Location {
                table: Some(format!("public.t{}", i % 7)),
                column: Some(format!("c{i}")),
                ..Default::default()
            };
            Finding {
                finding_id: Finding::compute_id("db", &location, "cn.mobile", ""),
                target: "db".into(),
                location,
                category: if i % 3 == 0 {
                    Category::CnResidentId
                } else {
                    Category::CnMobile
                },
                rule: "cn.mobile".into(),
                child: if i % 2 == 0 { Some(true) } else { None },
                confidence: 0.9,
                masked: "138****5678".into(),
                fingerprint: format!("{i:064x}"),
                sensitivity: Sensitivity::Medium,
                rows_scanned: Some(100),
                count: Some(10),
                child_count: Some(if i % 2 == 0 { 4 } else { 0 }),
                rows: None,
            }
        })
        .collect();
    let r4 = store.begin_run(&["db".into()]).await.unwrap();
    assert_eq!(store.upsert_findings(r4, &many).await.unwrap(), 2_345);
    // Duplicate ids within one batch are written once.
    assert_eq!(
        store
            .upsert_findings(
                r4,
                &many[..10]
                    .iter()
                    .chain(&many[..10])
                    .cloned()
                    .collect::<Vec<_>>()
            )
            .await
            .unwrap(),
        10
    );
    store.finish_run(r4, &RunStats::default()).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let p = store
            .findings(&FindingFilter {
                run: Some(r4),
                child: Some(true),
                after: after.clone(),
                limit: 300,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(p.total, 1_173);
        pages += 1;
        for f in &p.items {
            assert!(seen.insert(f.finding.finding_id.clone()));
            assert_eq!(f.finding.child, Some(true));
        }
        match p.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1_173);
    assert_eq!(pages, 4);
    let p = store
        .findings(&FindingFilter {
            run: Some(r4),
            offset: Some(2_300),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(p.items.len(), 45);
    assert!(p.next_after.is_none());

    // Datasets and counts.
    let assign: Vec<(String, Option<String>)> = many
        .iter()
        .take(100)
        .map(|f| (f.finding_id.clone(), Some("students".to_string())))
        .collect();
    store.set_datasets(&assign).await.unwrap();
    let ds = store
        .findings(&FindingFilter {
            dataset: Some("students".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ds.total, 100);
    // Assigning again (rows already in place are left alone), moving some and clearing some.
    let mut again = assign.clone();
    for (i, a) in again.iter_mut().enumerate().take(30) {
        a.1 = if i < 10 {
            None
        } else {
            Some("moved".to_string())
        };
    }
    store.set_datasets(&again).await.unwrap();
    let total = |d: &'static str| {
        let store = store.clone();
        async move {
            store
                .findings(&FindingFilter {
                    dataset: Some(d.into()),
                    limit: 1,
                    ..Default::default()
                })
                .await
                .unwrap()
                .total
        }
    };
    assert_eq!((total("students").await, total("moved").await), (70, 20));
    let first = store.finding(&again[0].0).await.unwrap().unwrap();
    assert_eq!(first.dataset, None);
    store.set_datasets(&assign).await.unwrap();
    assert_eq!((total("students").await, total("moved").await), (100, 0));
    let counts = store.dataset_counts(Some(r4)).await.unwrap();
    let students_mobile = counts
        .iter()
        .find(|c| c.dataset.as_deref() == Some("students") && c.category == Category::CnMobile)
        .unwrap();
    assert_eq!(students_mobile.findings, 66);
    assert_eq!(students_mobile.child_findings, 33);
    assert_eq!(students_mobile.child_records, 33 * 4);
    let undeclared = store
        .findings(&FindingFilter {
            undeclared: true,
            run: Some(r4),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(undeclared.total, 2_245);

    // Violations: replace per run, filter.
    let v = |kind, sev| Violation {
        id: 0,
        run_id: 0,
        kind,
        severity: sev,
        dataset: Some("students".into()),
        owner: Some("Li Wei".into()),
        article: "CAC Order No. 4 Art. 12".into(),
        category: Some(Category::CnResidentId),
        target: Some("db".into()),
        unit_id: Some("public.t1".into()),
        column: Some("sfzh".into()),
        finding_id: None,
        record_count: Some(42),
        message: "records past retention".into(),
    };
    store
        .replace_violations(
            r4,
            &[
                v(ViolationKind::RetentionOverdue, Severity::High),
                v(ViolationKind::DeclaredNotFound, Severity::Info),
            ],
        )
        .await
        .unwrap();
    store
        .replace_violations(
            r4,
            &[
                v(ViolationKind::RetentionOverdue, Severity::High),
                v(ViolationKind::UndeclaredCategory, Severity::Medium),
            ],
        )
        .await
        .unwrap();
    let vs = store
        .violations(&ViolationFilter {
            run: Some(r4),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(vs.len(), 2);
    assert_eq!(vs[0].kind, ViolationKind::RetentionOverdue);
    assert_eq!(vs[0].record_count, Some(42));
    assert_eq!(vs[0].run_id, r4);
    let only = store
        .violations(&ViolationFilter {
            kind: Some(ViolationKind::UndeclaredCategory),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    let high = store
        .violations(&ViolationFilter {
            min_severity: Some(Severity::High),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(high.len(), 1);

    // Trend from run summaries.
    store
        .set_run_summary(
            r4,
            &RunSummary {
                findings: 2_345,
                child_findings: 1_173,
                violations: 2,
                resolved: 0,
                classified: true,
                group_complete: true,
            },
        )
        .await
        .unwrap();
    let trend = store.trend(10).await.unwrap();
    assert_eq!(trend.len(), 7);
    assert_eq!(
        (
            trend[0].run_id,
            trend[1].run_id,
            trend[5].run_id,
            trend[6].run_id
        ),
        (r1, r2, r3, r4)
    );
    assert_eq!(trend[6].child_findings, 1_173);
    assert_eq!(store.latest_run().await.unwrap().unwrap().id, r4);
    assert_eq!(store.previous_run(r4).await.unwrap().unwrap().id, r3);
    assert!(store.previous_run(r1).await.unwrap().is_none());
    assert_eq!(store.runs(2).await.unwrap().len(), 2);
    // A run left running (e.g. by a daemon that crashed) is marked interrupted.
    let stale = store.begin_run(&["elsewhere".into()]).await.unwrap();
    // A running run reads back (its stats are not written yet).
    assert_eq!(
        store.run(stale).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    assert_eq!(
        store.interrupt_runs(None).await.unwrap(),
        1,
        "only the running run"
    );
    let st = store.run(stale).await.unwrap().unwrap();
    assert_eq!(st.status, RunStatus::Interrupted);
    assert!(st.finished_at.is_some());
    assert_eq!(
        store.run(r1).await.unwrap().unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(store.interrupt_runs(None).await.unwrap(), 0);

    // Audit: scans and triage were recorded, chained, and tampering is caught.
    let rows = store.audit_rows(0, 1000).await.unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "scan.start").count(), 8);
    assert_eq!(
        actions.iter().filter(|a| **a == "finding.triage").count(),
        2
    );
    assert_eq!(
        childguard::audit::verify_store(&*store).await.unwrap(),
        rows.len() as u64
    );
    let n = rows.len() as i64;
    exec("UPDATE audit_log SET actor = 'mallory' WHERE id = 3".into()).await;
    let err = childguard::audit::verify_store(&*store).await.unwrap_err();
    assert!(err.to_string().contains("row 3"), "{err}");
    exec(format!(
        "UPDATE audit_log SET actor = '{}' WHERE id = 3",
        rows[2].actor
    ))
    .await;
    childguard::audit::verify_store(&*store).await.unwrap();
    exec("DELETE FROM audit_log WHERE id = 5".into()).await;
    let err = childguard::audit::verify_store(&*store).await.unwrap_err();
    assert!(err.to_string().contains("row 6"), "{err}");
    assert!(n > 6);

    // Sweep tables are read when the sweeper's migration exists.
    assert!(store.sweep_plans().await.unwrap().is_none());
    exec("CREATE TABLE sweep_plans (id BIGINT PRIMARY KEY, dataset TEXT, status TEXT)".into())
        .await;
    exec("INSERT INTO sweep_plans VALUES (7, 'students', 'approved')".into()).await;
    let plans = store.sweep_plans().await.unwrap().unwrap();
    assert_eq!(plans.len(), 1);
    assert!(
        plans[0].contains(&("status".to_string(), "approved".to_string())),
        "{plans:?}"
    );
    assert!(
        plans[0].contains(&("id".to_string(), "7".to_string())),
        "{plans:?}"
    );

    // Sharded runs: each shard's run belongs to its run group, each unit names its shard,
    // and a range unit's findings come back with their range.
    let targets = vec!["fixtures".to_string()];
    let s0 = store.begin_run(&targets).await.unwrap();
    let s1 = store.begin_run(&targets).await.unwrap();
    store
        .set_run_shard(s0, Some("nightly-1"), Some("0/2"))
        .await
        .unwrap();
    store
        .set_run_shard(s1, Some("nightly-1"), Some("1/2"))
        .await
        .unwrap();
    let other = store.begin_run(&targets).await.unwrap();
    assert!(matches!(
        store.set_run_shard(999_999, Some("x"), None).await,
        Err(StoreError::NotFound { .. })
    ));
    let mut f = scan_text(&e, "fixtures", "big.log", &format!("x\nid={child}\n"))
        .into_iter()
        .next()
        .unwrap();
    f.location.range = Some("bytes=0..100".into());
    store.upsert_findings(s0, &[f.clone()]).await.unwrap();
    let mut u = unit("fixtures", "big.log#bytes=0..100", None);
    u.shard = Some("0/2".into());
    store.record_unit(s0, &u).await.unwrap();
    assert_eq!(store.units(s0).await.unwrap(), vec![u.clone()]);
    // Many units at once (more than one statement's worth); the last record of a unit wins.
    let mut many_units: Vec<UnitRecord> = (0..1_203)
        .map(|i| {
            let mut x = unit(
                "fixtures",
                &format!("logs/{i:05}.log"),
                (i % 7 == 0).then_some("unreadable"),
            );
            x.bytes = i;
            x.rows = 2 * i;
            x.shard = Some("1/2".into());
            x
        })
        .collect();
    many_units[5].skipped = Some("binary".into());
    let mut redo = many_units[3].clone();
    redo.error = None;
    redo.bytes = 99_999;
    many_units.push(redo);
    store.record_units(s1, &many_units).await.unwrap();
    store.record_units(s1, &[]).await.unwrap();
    let back = store.units(s1).await.unwrap();
    assert_eq!(back.len(), 1_203);
    let mut want: Vec<UnitRecord> = many_units[..1_203].to_vec();
    want[3] = many_units[1_203].clone();
    assert_eq!(back, want);
    let stored = store.finding(&f.finding_id).await.unwrap().unwrap();
    assert_eq!(stored.unit_id, "big.log#bytes=0..100");
    assert_eq!(
        stored.finding.location.range.as_deref(),
        Some("bytes=0..100")
    );
    let group = store.group_runs("nightly-1").await.unwrap();
    assert_eq!(group.iter().map(|r| r.id).collect::<Vec<_>>(), vec![s0, s1]);
    assert_eq!(
        group.iter().map(|r| r.shard.clone()).collect::<Vec<_>>(),
        vec![Some("0/2".to_string()), Some("1/2".to_string())]
    );
    assert!(group
        .iter()
        .all(|r| r.run_group.as_deref() == Some("nightly-1")));
    let plain = store.run(other).await.unwrap().unwrap();
    assert_eq!((plain.run_group, plain.shard), (None, None));
    assert!(store.group_runs("nightly-2").await.unwrap().is_empty());

    // The batched writer with every finding sent three times, in different
    // orders, so batches written at once (PostgreSQL) share ids: no deadlock,
    // each finding stored once and seen in this run.
    let r5 = store.begin_run(&["db".into()]).await.unwrap();
    let (mut sink, writer) = StoreSink::spawn(store.clone(), r5);
    for f in many.iter().chain(many.iter().rev()).chain(many.iter()) {
        sink.finding(f.clone()).unwrap();
    }
    drop(sink);
    let written = writer.finish_async().await.unwrap();
    assert!(written >= 2_345, "{written}");
    let seen = store
        .findings(&FindingFilter {
            run: Some(r5),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seen.total, 2_345);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join(DB_FILE);
    let store = SqliteStore::open(&path).await.unwrap();
    let pool = store.pool().clone();
    let exec: Exec = Box::new(move |sql| {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        })
    });
    conformance(Arc::new(store), exec).await;
    // Reopening applies no migration twice and keeps the data.
    let again = SqliteStore::open(&path).await.unwrap();
    assert!(again.latest_run().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let url = common::fresh_pg_db("cg_store").await;
    let store = PgStore::connect(&url).await.unwrap();
    let pool = store.pool().clone();
    let exec: Exec = Box::new(move |sql| {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        })
    });
    conformance(Arc::new(store), exec).await;
    let again = PgStore::connect(&url).await.unwrap();
    assert!(again.latest_run().await.unwrap().is_some());
}
