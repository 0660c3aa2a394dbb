//! The fuzzers' corpora, replayed: every input the fuzz targets kept (`fuzz/corpus/<target>/`,
//! from the runs docs/operations.md reports) goes through the same target body on stable Rust,
//! so `make test` runs a short smoke of each target and any crash the fuzzer found stays fixed.
#[path = "common/fuzz_targets.rs"]
mod fuzz_targets;

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{target}: no corpus in {}", dir.display());
    for input in inputs {
        let data = std::fs::read(&input).unwrap();
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            panic!("{target}: {} fails", input.display());
        }
    }
}

#[test]
fn normalize_corpus() {
    replay("normalize", fuzz_targets::normalize);
}

#[test]
fn forget_list_corpus() {
    replay("forget_list", fuzz_targets::forget_list);
}

#[test]
fn store_log_corpus() {
    replay("store_log", fuzz_targets::store_log);
}

#[test]
fn request_corpus() {
    replay("request", fuzz_targets::request);
}

#[test]
fn chat_corpus() {
    replay("chat", fuzz_targets::chat);
}

#[test]
fn guard_text_corpus() {
    replay("guard_text", fuzz_targets::guard_text);
}
