//! Criterion benchmark of the detector engine: the full rule set on one
//! core over a generated labelled log (all styles mixed), per style, and on
//! table values with column hints. Throughput is reported in bytes/s.
//!
//!     cargo bench --bench engine

use childguard::corpus::{CorpusOptions, Generator, Style};
use childguard::detect::{Engine, EngineOptions};
use childguard::fingerprint::Fingerprinter;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn corpus(style: Option<Style>, bytes: usize) -> String {
    let mut g = Generator::new(&CorpusOptions {
        seed: 9,
        as_of: chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
    });
    let mut s = String::with_capacity(bytes + 1024);
    while s.len() < bytes {
        let l = g.next_line();
        if style.is_none_or(|st| st == l.style) {
            s.push_str(&l.text);
            s.push('\n');
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let e = Engine::new(
        EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()),
        Fingerprinter::new(b"bench"),
    )
    .unwrap();
    let mut grp = c.benchmark_group("scan_text");
    grp.sample_size(10);
    for (name, style) in [
        ("mixed", None),
        ("key_value", Some(Style::KeyValue)),
        ("json", Some(Style::Json)),
        ("free_text", Some(Style::FreeText)),
        ("negative", Some(Style::Negative)),
    ] {
        let text = corpus(style, 4 << 20);
        grp.throughput(Throughput::Bytes(text.len() as u64));
        grp.bench_function(name, |b| {
            let mut hits = Vec::with_capacity(1 << 16);
            b.iter(|| {
                hits.clear();
                e.scan_text(&text, &mut hits);
                hits.len()
            })
        });
    }
    grp.finish();

    let mut g = Generator::new(&CorpusOptions {
        seed: 3,
        as_of: chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
    });
    let t = g.table(5000);
    let ctx: Vec<_> = t.columns.iter().map(|c| e.column_ctx(c)).collect();
    let bytes: usize = t.rows.iter().flatten().map(|v| v.len()).sum();
    let mut grp = c.benchmark_group("scan_value");
    grp.sample_size(10);
    grp.throughput(Throughput::Bytes(bytes as u64));
    grp.bench_function("students_table", |b| {
        let mut hits = Vec::new();
        b.iter(|| {
            hits.clear();
            for row in &t.rows {
                for (i, v) in row.iter().enumerate() {
                    e.scan_value(v, &ctx[i], &mut hits);
                }
            }
            hits.len()
        })
    });
    grp.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
