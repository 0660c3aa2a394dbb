#![no_main]
//! `cargo +nightly fuzz run guard_text` (docs/operations.md, "Fuzzing").
#[path = "../../tests/common/fuzz_targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::guard_text(data));
