#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cidfs::fuzzing::snapshotter_filters(data));
