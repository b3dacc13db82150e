#![no_main]
use childguard::scan::text::{scan_chunk, TextOrigin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    let origin = TextOrigin {
        target: "fuzz",
        path: "fuzz.log",
    };
    scan_chunk(childguard_fuzz::engine(), &origin, &text, 1, 0, &mut out);
    for f in &out {
        let off = f.location.byte_offset.unwrap_or(0) as usize;
        assert!(off <= text.len(), "offset {off} past {}", text.len());
        assert!(text.is_char_boundary(off));
    }
});
