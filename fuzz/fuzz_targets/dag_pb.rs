#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cidfs::fuzzing::dag_pb(data));
