//! Detection quality on the generated labelled corpus (UTF-8, GB18030 and
//! gzip copies), on a generated table, and on regression cases.

use childguard::corpus::{score_line, write_corpus, CorpusOptions, Generator, LineTruth, Quality};
use childguard::detect::{validate, AgeEvidence, Engine, EngineOptions, Hit};
use childguard::finding::Category;
use childguard::fingerprint::Fingerprinter;
use chrono::NaiveDate;
use std::io::Read;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
}

fn engine() -> Engine {
    Engine::new(EngineOptions::new(as_of()), Fingerprinter::new(b"quality")).unwrap()
}

fn report(name: &str, q: &Quality) {
    eprintln!("== {name}");
    for (c, s) in &q.per_category {
        eprintln!(
            "{c:<18} tp={:<6} fp={:<5} fn={:<5} precision={:.4} recall={:.4}",
            s.tp,
            s.fp,
            s.fn_,
            s.precision(),
            s.recall()
        );
    }
    eprintln!(
        "child lines: {} recall {:.4}; adult/unknown lines: {} flagged child {:.4}",
        q.child_lines,
        q.child_recall(),
        q.adult_lines,
        q.adult_false_child_rate()
    );
}

fn assert_targets(name: &str, q: &Quality) {
    let t = [
        (Category::CnResidentId, 0.999, 0.999),
        (Category::CnMobile, 0.995, 0.995),
        (Category::SchoolName, 0.98, 0.97),
        (Category::Age, 0.98, 0.98),
        (Category::BirthDate, 0.95, 0.95),
        (Category::PersonName, 0.9, 0.9),
        (Category::GradeClass, 0.95, 0.95),
        (Category::Guardian, 0.9, 0.9),
        (Category::Address, 0.9, 0.9),
        (Category::VulnerableChild, 0.95, 0.95),
        (Category::Email, 0.99, 0.99),
    ];
    for (c, p, r) in t {
        let s = q.score(c);
        assert!(s.tp > 20, "{name}: too few {c} in corpus");
        assert!(
            s.precision() >= p,
            "{name}: {c} precision {:.4} < {p}",
            s.precision()
        );
        assert!(
            s.recall() >= r,
            "{name}: {c} recall {:.4} < {r}",
            s.recall()
        );
    }
    assert!(
        q.child_recall() >= 0.99,
        "{name}: child-line recall {:.4}",
        q.child_recall()
    );
    assert!(
        q.adult_false_child_rate() <= 0.005,
        "{name}: adult lines flagged child {:.4}",
        q.adult_false_child_rate()
    );
}

fn score_text(e: &Engine, text: &str, truth: &[LineTruth]) -> Quality {
    let mut q = Quality::default();
    let mut misses = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), truth.len());
    for (l, t) in lines.iter().zip(truth) {
        score_line(e, l, &t.spans, t.child, &mut q, &mut misses);
    }
    let filter = std::env::var("CG_SHOW").unwrap_or_default();
    for m in misses.iter().filter(|m| m.contains(&filter)).take(40) {
        eprintln!("{m}");
    }
    q
}

#[test]
fn corpus_quality_utf8_gb18030_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CorpusOptions::new(20250601, as_of());
    write_corpus(dir.path(), &opts, 20_000, 0).unwrap();
    let truth: Vec<LineTruth> = std::fs::read_to_string(dir.path().join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let e = engine();

    let utf8 = std::fs::read_to_string(dir.path().join("corpus.log")).unwrap();
    let q = score_text(&e, &utf8, &truth);
    report("utf-8", &q);
    assert_targets("utf-8", &q);

    let gb = std::fs::read(dir.path().join("corpus.gb18030.log")).unwrap();
    assert_ne!(gb, utf8.as_bytes(), "the GB18030 copy is really re-encoded");
    let (dec, _, bad) = encoding_rs::GB18030.decode(&gb);
    assert!(!bad);
    let q = score_text(&e, &dec, &truth);
    report("gb18030", &q);
    assert_targets("gb18030", &q);

    let mut gz = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join("corpus.log.gz")).unwrap())
        .read_to_string(&mut gz)
        .unwrap();
    let q = score_text(&e, &gz, &truth);
    report("gzip", &q);
    assert_targets("gzip", &q);

    // Whole-chunk scanning gives the same hits as line-by-line scanning.
    let cut = utf8.as_bytes()[..200_000]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap();
    let chunk = &utf8[..cut];
    let mut whole = Vec::new();
    e.scan_text(chunk, &mut whole);
    let mut by_line = Vec::new();
    let mut off = 0;
    for l in chunk.split('\n') {
        let mut h = Vec::new();
        e.scan_text(l, &mut h);
        by_line.extend(
            h.into_iter()
                .map(|x| (x.start + off, x.end + off, x.category)),
        );
        off += l.len() + 1;
    }
    let whole: Vec<_> = whole
        .into_iter()
        .map(|x| (x.start, x.end, x.category))
        .collect();
    for (a, b) in whole.iter().zip(&by_line) {
        assert_eq!(
            a,
            b,
            "chunk vs line scan differ near `{}`",
            &chunk[a.0.min(b.0)..a.1.max(b.1)]
        );
    }
    assert_eq!(whole.len(), by_line.len());
}

#[test]
fn table_columns_and_rows() {
    let e = engine();
    let mut g = Generator::new(&CorpusOptions::new(7, as_of()));
    let t = g.table(2000);
    let ctx: Vec<_> = t.columns.iter().map(|c| e.column_ctx(c)).collect();
    let mut found = vec![0usize; t.columns.len()];
    let mut wrong = vec![0usize; t.columns.len()];
    let mut child_ok = 0;
    for (ri, row) in t.rows.iter().enumerate() {
        let mut row_hits: Vec<Hit> = Vec::new();
        for (ci, v) in row.iter().enumerate() {
            let mut h = Vec::new();
            e.scan_value(v, &ctx[ci], &mut h);
            match t.column_truth[ci] {
                Some(_) if v.is_empty() => found[ci] += 1,
                Some(c) => {
                    if h.iter().any(|x| x.category == c) {
                        found[ci] += 1;
                    }
                }
                None => {
                    if !h.is_empty() {
                        wrong[ci] += 1;
                    }
                }
            }
            row_hits.extend(h);
        }
        let child = e.infer_child(row_hits.iter().filter_map(|h| h.evidence.as_ref()));
        if child == Some(t.row_child[ri]) {
            child_ok += 1;
        }
    }
    for (ci, c) in t.columns.iter().enumerate() {
        eprintln!(
            "{c:<12} truth={:?} found={} wrong={}",
            t.column_truth[ci], found[ci], wrong[ci]
        );
        match t.column_truth[ci] {
            Some(_) => assert!(
                found[ci] as f64 >= 0.99 * t.rows.len() as f64,
                "column {c}: {} of {}",
                found[ci],
                t.rows.len()
            ),
            None => assert_eq!(wrong[ci], 0, "column {c} is not PI"),
        }
    }
    assert!(
        child_ok as f64 >= 0.995 * t.rows.len() as f64,
        "row child inference {child_ok}/{}",
        t.rows.len()
    );
}

#[test]
fn resident_id_regressions() {
    // python-stdnum (doctest / test_cn_ric) and id-validator style numbers.
    for ok in [
        "360426199101010071",
        "440308199901101512",
        "11010119900307803X",
        "210203197503102721",
        "11010519491231002X",
    ] {
        assert!(validate::resident_id_18(ok).is_some(), "{ok}");
        let mut h = Vec::new();
        engine().scan_text(&format!("身份证:{ok}"), &mut h);
        assert_eq!(h.len(), 1, "{ok}");
        assert_eq!(h[0].category, Category::CnResidentId);
        assert_eq!(h[0].masked.len(), 18);
        assert!(h[0].masked.contains("********"));
    }
    for bad in [
        "110101199003070088",
        "51080219830827001X",
        "445102199001011118",
        "110105194912310021",
    ] {
        let mut h = Vec::new();
        engine().scan_text(&format!("身份证:{bad}"), &mut h);
        assert!(
            h.iter().all(|x| x.category != Category::CnResidentId),
            "{bad}"
        );
    }
    // legacy 15-digit with context
    let mut h = Vec::new();
    engine().scan_text("身份证 130503670401001", &mut h);
    assert_eq!(h.len(), 1);
    assert_eq!(
        h[0].evidence,
        Some(AgeEvidence::BirthDate(
            NaiveDate::from_ymd_opt(1967, 4, 1).unwrap()
        ))
    );
    // lowercase x normalizes to the same fingerprint as uppercase
    let (mut a, mut b) = (Vec::new(), Vec::new());
    engine().scan_text("id 11010119900307803x", &mut a);
    engine().scan_text("id 110101-19900307-803X", &mut b);
    assert_eq!(a[0].fingerprint, b[0].fingerprint);
}

fn id_born(b: NaiveDate) -> String {
    let mut s = format!("110105{}123", b.format("%Y%m%d"));
    s.push(validate::mod11_2_check(s.as_bytes()) as char);
    s
}

#[test]
fn child_edge_at_fourteen() {
    let e = engine();
    let exactly = NaiveDate::from_ymd_opt(2011, 6, 1).unwrap();
    for (birth, child) in [(exactly, false), (exactly.succ_opt().unwrap(), true)] {
        let mut h = Vec::new();
        e.scan_text(&format!("学生 {}", id_born(birth)), &mut h);
        assert_eq!(
            e.infer_child(h.iter().filter_map(|x| x.evidence.as_ref())),
            Some(child),
            "{birth}"
        );
        let mut h = Vec::new();
        e.scan_text(&format!("出生日期：{}", birth.format("%Y-%m-%d")), &mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(
            e.infer_child(h.iter().filter_map(|x| x.evidence.as_ref())),
            Some(child),
            "{birth}"
        );
    }
    // configurable child age (e.g. 18)
    let mut o = EngineOptions::new(as_of());
    o.child_age = 18;
    let e18 = Engine::new(o, Fingerprinter::new(b"k")).unwrap();
    assert_eq!(e18.is_child(&AgeEvidence::Years(16)), Some(true));
}

#[test]
fn hard_negatives_find_nothing() {
    let e = engine();
    for t in [
        "2025-05-31 10:00:01.123 INFO started pid=4242",
        "ts_ms=1717200000123 epoch=1717200000",
        "trace=9110105201503071235 span=1101052015030712357",
        "obj=a13812345678f req=0x13812345678",
        "订单号 110105201503071234 已付款",
        "batch=110105201502301231",
        "商品说明：本品含小零件，3岁以下儿童禁用，保修3年",
        "玩具适用年龄 3-6岁，适合3~6岁儿童",
        "热销：小学数学同步练习册，中学教材全解，小学生课外读物",
        "发票号码 0441234567 金额 120.00元",
        "version=1.13812345678 price=3.5",
        "正月初一放假，价格高一点",
        "GET /api/items?page=7&size=20",
        "uid 12812345678 sku=15412345678",
    ] {
        let mut h = Vec::new();
        e.scan_text(t, &mut h);
        assert!(
            h.is_empty(),
            "{t}: {:?}",
            h.iter()
                .map(|x| (x.category, &t[x.start..x.end]))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn masks_never_reveal_values() {
    let e = engine();
    let t = "姓名：张小明 身份证110105201503071235 手机13812345678 邮箱 xiaoming@example.com 出生日期 2015-03-07 住址：北京市朝阳区建国路88号";
    let mut h = Vec::new();
    e.scan_text(t, &mut h);
    assert!(h.len() >= 6);
    for x in &h {
        let raw = &t[x.start..x.end];
        assert_ne!(x.masked, raw, "{}", x.category);
        assert!(x.masked.contains('*'), "{}", x.category);
        assert_eq!(x.fingerprint.hex().len(), 64);
    }
}

#[test]
fn plain_log_lines_have_no_findings() {
    let e = engine();
    let mut o = CorpusOptions::new(11, as_of());
    o.pi_share = 0.0;
    let mut g = Generator::new(&o);
    for _ in 0..5000 {
        let l = g.next_line();
        let mut h = Vec::new();
        e.scan_text(&l.text, &mut h);
        assert!(
            h.is_empty(),
            "{}: {:?}",
            l.text,
            h.iter().map(|x| x.category).collect::<Vec<_>>()
        );
    }
}
