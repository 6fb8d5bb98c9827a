#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cidfs::fuzzing::elf_loads(data));
