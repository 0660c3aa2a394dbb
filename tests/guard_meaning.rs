//! The semantic layer's score on the real embedder (all-MiniLM-L6-v2 from `make models`): the
//! lexical evidence lifts a paraphrase that keeps the document's rare words, and the commons
//! filter drops a license clause that is as close to public boilerplate as to the forgotten
//! license, unless the set turns the filter off.

use lethe::forget::{Entry, SetPolicy};
use lethe::guard::{CheckParams, Guard, GuardConfig, Layer};
use std::path::PathBuf;

fn models() -> PathBuf {
    let dir = std::env::var_os("LETHE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    assert!(dir.join("minilm/model.safetensors").exists(), "run scripts/fetch-models.sh (make test does it)");
    dir
}

fn eval_list() -> Vec<Entry> {
    lethe::forget::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("eval/forget.jsonl")).unwrap()
}

fn guard(cfg: GuardConfig) -> Guard {
    let embedder = cfg.load_embedder().unwrap();
    Guard::build(&eval_list(), &cfg, None, embedder, 1).unwrap()
}

fn config() -> GuardConfig {
    let dir = models();
    GuardConfig {
        embedder: Some(dir.join("minilm")),
        commons: Some(dir.join("commons")),
        ..Default::default()
    }
}

/// The best semantic score of `entry` for `text` (None: no semantic match).
fn semantic_score(guard: &Guard, text: &str, entry: &str) -> Option<f32> {
    let findings = guard.check(text, CheckParams::default()).unwrap();
    findings
        .iter()
        .filter(|f| f.layer == Layer::Semantic && guard.entry_id(f.entry) == entry)
        .map(|f| f.score)
        .reduce(f32::max)
}

#[test]
fn lexical_evidence_lifts_a_paraphrase_that_keeps_the_documents_rare_words() {
    // A paraphrase of the fictional biography: her rare words (names, places) survive.
    let text = "Born in Port Alder in 1987, Marisol Venkataraman-Oduya grew up near the Tasverian coast, \
                where her father's ferry linked Kell and Ormsby, and later studied marine biology at Lindqvist.";
    let mut without = config();
    without.semantic.lexical_weight = 0.0;
    without.semantic.threshold = 0.0;
    let mut with = without.clone();
    with.semantic.lexical_weight = 0.3;
    let plain = semantic_score(&guard(without), text, "bio-venkataraman").expect("a cosine above 0");
    let lifted = semantic_score(&guard(with), text, "bio-venkataraman").expect("a semantic match");
    assert!(lifted > plain + 0.1, "lexical evidence added {} to {plain}", lifted - plain);
    assert!(lifted <= plain + 0.3 + 1e-4, "at most the weight: {lifted} vs {plain}");
}

#[test]
fn the_commons_filter_drops_a_license_clause_as_close_to_public_boilerplate_unless_the_set_says_no() {
    // The BSD disclaimer: a near-paraphrase of MIT's, and of the GPL's that the commons hold.
    let bsd = "THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS \"AS IS\" AND ANY EXPRESS \
               OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY \
               AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED.";
    let no_commons = GuardConfig { commons: None, ..config() };
    assert!(semantic_score(&guard(no_commons), bsd, "mit-license").is_some(), "MiniLM alone matches it");
    let filtered = guard(config());
    assert!(filtered.commons_windows() > 0, "run scripts/fetch-models.sh: models/commons is missing");
    assert_eq!(semantic_score(&filtered, bsd, "mit-license"), None);
    // A set of licenses turns the filter off: the match is back.
    let mut off = config();
    off.sets.insert("licenses".into(), SetPolicy { commons_filter: Some(false), ..Default::default() });
    assert!(semantic_score(&guard(off), bsd, "mit-license").is_some());
}
