fn main() {
    let e = childguard::detect::Engine::new(childguard::detect::EngineOptions::new(chrono::NaiveDate::from_ymd_opt(2025,6,1).unwrap()), childguard::fingerprint::Fingerprinter::new(b"k")).unwrap();
    for t in std::env::args().skip(1) {
        let mut h = Vec::new();
        e.scan_text(&t, &mut h);
        for x in &h { println!("{:?} {:?} {:.2} {:?} {}", x.category, &t[x.start..x.end], x.confidence, x.evidence, x.masked); }
        println!("--");
    }
}
