#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cidfs::fuzzing::bitswap_message(data));
