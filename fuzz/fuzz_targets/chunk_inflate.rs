#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cidfs::fuzzing::chunk_inflate(data));
