#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (_cfg, diags) = childguard::config::check_str(text, std::path::Path::new("fuzz.toml"));
    let lines = text.lines().count().max(1) + 1;
    for d in diags {
        assert!(d.line >= 1 && d.line <= lines, "{d}");
    }
});
