#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rdpdiag_fuzz::mcs(data));
