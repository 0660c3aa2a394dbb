//! Synthetic forget lists, outputs and vectors shared by the benchmarks (`benches/*.rs`) and the
//! benchmark examples (`examples/scale.rs`, `examples/synth_forget.rs`), which include this file
//! with `#[path]`. Everything is seeded, so every run measures the same data.
//!
//! - Vocabulary: the distinct lower-case words of the committed evaluation texts (`eval/*.jsonl`,
//!   about 1,250 real English words), so the embedder sees ordinary word pieces.
//! - Documents: 40 words drawn uniformly from the vocabulary, no punctuation.
//! - Terms: two-word pseudo-names of random syllables with an e-mail alias.
//! - Vectors (HNSW benchmarks): near-duplicate structure, not uniform noise: unit vectors in
//!   clusters around a few thousand random centres, each a centre plus Gaussian noise of norm
//!   about 0.5 (cosine to its centre about 0.9, between two members about 0.8).
#![allow(dead_code)]
use lethe::forget::{Entry, Kind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::PathBuf;

pub const DOC_WORDS: usize = 40;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The distinct lower-case ASCII words of `eval/*.jsonl`, sorted.
pub fn vocabulary() -> Vec<String> {
    let mut words = BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("eval"))
        .expect("reading eval/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(&f).expect("reading an eval file").lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(text) = v.get("text").and_then(|t| t.as_str()) else { continue };
            for w in text.split(|c: char| !c.is_ascii_alphabetic()) {
                if w.len() >= 2 {
                    words.insert(w.to_ascii_lowercase());
                }
            }
        }
    }
    words.into_iter().collect()
}

/// `n` documents of 40 vocabulary words, ids `doc-{offset + i}`; the same seed and offset give
/// the same documents whatever `n` is (document i depends only on the seed and i).
pub fn documents(n: usize, offset: usize, seed: u64, vocab: &[String]) -> Vec<Entry> {
    (offset..offset + n)
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            Entry {
                id: format!("doc-{i}"),
                set: "synthetic".into(),
                kind: Kind::Document,
                text: (0..DOC_WORDS)
                    .map(|_| vocab[rng.random_range(0..vocab.len())].as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                aliases: vec![],
                term_type: None,
                fingerprints: None,
            }
        })
        .collect()
}

fn pseudo_word(rng: &mut StdRng) -> String {
    const C: &[u8] = b"bdfgklmnprstvz";
    const V: &[u8] = b"aeiou";
    let syllables = rng.random_range(2..4);
    let mut s = String::new();
    for _ in 0..syllables {
        s.push(C[rng.random_range(0..C.len())] as char);
        s.push(V[rng.random_range(0..V.len())] as char);
    }
    s
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

/// `n` term entries: "Given Family" pseudo-names with an e-mail alias, ids `term-i`.
pub fn terms(n: usize, seed: u64) -> Vec<Entry> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let (given, family) = (pseudo_word(&mut rng), pseudo_word(&mut rng));
            Entry {
                id: format!("term-{i}"),
                set: "synthetic-terms".into(),
                kind: Kind::Term,
                text: format!("{} {}", capitalize(&given), capitalize(&family)),
                aliases: vec![format!("{given}.{family}{i}@example.org")],
                term_type: None,
                fingerprints: None,
            }
        })
        .collect()
}

/// About `bytes` bytes of vocabulary words (the same distribution as the documents, none of
/// them copied), with a full stop every 12 words.
pub fn filler(bytes: usize, seed: u64, vocab: &[String]) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = String::new();
    let mut k = 0;
    while s.len() < bytes {
        if !s.is_empty() {
            s.push_str(if k % 12 == 0 { ". " } else { " " });
        }
        s.push_str(&vocab[rng.random_range(0..vocab.len())]);
        k += 1;
    }
    s
}

/// Generated-output-like texts of about 100 words for Check and audit: `clean` texts of
/// vocabulary words (no copy), and `copies` texts that carry a 20-word verbatim run of one of
/// the first ten documents (present at every list size) in the middle of such text.
pub fn outputs(clean: usize, copies: usize, seed: u64, vocab: &[String]) -> Vec<String> {
    let docs = documents(10, 0, seed_docs(), vocab);
    let mut out = Vec::new();
    for i in 0..clean {
        out.push(filler(600, seed + i as u64, vocab));
    }
    for i in 0..copies {
        let words: Vec<&str> = docs[i % docs.len()].text.split(' ').collect();
        let run = words[10..30].join(" ");
        out.push(format!(
            "{} {run} {}",
            filler(240, seed + 1000 + i as u64, vocab),
            filler(240, seed + 2000 + i as u64, vocab)
        ));
    }
    out
}

/// The seed every benchmark uses for documents, so `outputs` can copy from them.
pub fn seed_docs() -> u64 {
    7
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

pub fn random_unit(dim: usize, rng: &mut StdRng) -> Vec<f32> {
    unit((0..dim).map(|_| gaussian(rng)).collect())
}

/// A unit vector near `center`: the centre plus Gaussian noise of norm about `noise`.
pub fn near(center: &[f32], noise: f32, rng: &mut StdRng) -> Vec<f32> {
    let scale = noise / (center.len() as f32).sqrt();
    unit(center.iter().map(|c| c + scale * gaussian(rng)).collect())
}

/// `n` unit vectors of `dim` dimensions in clusters around `centers` random centres (noise 0.5),
/// returned with the centres.
pub fn clustered(n: usize, centers: usize, dim: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let cs: Vec<Vec<f32>> = (0..centers).map(|_| random_unit(dim, &mut rng)).collect();
    let vs = (0..n).map(|i| near(&cs[i % centers], 0.5, &mut rng)).collect();
    (vs, cs)
}
