#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    childguard_fuzz::scan_bytes("app.log.gz", data);
});
