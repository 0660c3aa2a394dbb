//! Micro-benchmarks of the guard's text layers (no model files needed):
//! normalization and n-gram hashing per KB, the Bloom check, the exact confirm, term matching,
//! the stream guard per generated token, `Guard::check` and the exact audit per output, and the
//! snapshot build per 1,000 entries.
//!
//!     cargo bench --bench guard                # everything here
//!     cargo bench --bench guard -- ngram/      # one group (criterion's name filter)
//!
//! Forget list: 10,000 synthetic documents of 40 words plus 300 terms (see `benches/synth`).
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use lethe::forget::Entry;
use lethe::guard::ngram::{self, NgramIndex, NgramParams};
use lethe::guard::stream::StreamGuard;
use lethe::guard::terms::TermIndex;
use lethe::guard::{normalize, CheckParams, Guard, GuardConfig};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

#[path = "synth/mod.rs"]
mod synth;

struct Data {
    vocab: Vec<String>,
    entries: Vec<Entry>,
    doc_words: Vec<Vec<String>>,
    /// Distinct word 4-gram fingerprints of each document (what the index is built from).
    doc_grams: Vec<Vec<u64>>,
    /// (entry, [(fingerprint, length in words)]) of each term with its alias.
    term_grams: Vec<(u32, Vec<(u64, u32)>)>,
    /// 1 KB of plain ASCII output-like text, and the same with accents, Cyrillic look-alikes,
    /// full-width letters and zero-width characters (the slow path of normalization).
    ascii_kb: String,
    mixed_kb: String,
}

fn data() -> Data {
    let vocab = synth::vocabulary();
    let mut entries = synth::documents(10_000, 0, synth::seed_docs(), &vocab);
    let doc_words: Vec<Vec<String>> = entries.iter().map(|e| normalize::words(&e.text).words).collect();
    let doc_grams = doc_words
        .iter()
        .map(|w| {
            let mut g: Vec<u64> = ngram::document_fingerprints(w, 4);
            g.sort_unstable();
            g.dedup();
            g
        })
        .collect();
    let terms = synth::terms(300, 11);
    let term_grams = terms
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let grams = std::iter::once(&e.text)
                .chain(&e.aliases)
                .map(|t| {
                    let w = normalize::words(t).words;
                    (ngram::fingerprint(&w), w.len() as u32)
                })
                .collect();
            ((10_000 + i) as u32, grams)
        })
        .collect();
    entries.extend(terms);
    let ascii_kb = synth::filler(1024, 99, &vocab);
    let mixed_kb: String = ascii_kb
        .split(' ')
        .enumerate()
        .map(|(i, w)| match i % 8 {
            1 => w.replacen('e', "é", 1),
            3 => w.replacen('o', "\u{043E}", 1), // Cyrillic o
            5 => w.chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)).collect(), // full width
            7 => w.replacen('a', "a\u{200B}", 1), // zero-width space
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    Data { vocab, entries, doc_words, doc_grams, term_grams, ascii_kb, mixed_kb }
}

fn ngram_index(d: &Data) -> NgramIndex {
    NgramIndex::build(
        NgramParams::default(),
        d.doc_grams.iter().enumerate().map(|(i, g)| (i as u32, g.as_slice())),
    )
}

fn normalization(c: &mut Criterion, d: &Data) {
    let mut g = c.benchmark_group("normalize");
    for (name, text) in [("ascii", &d.ascii_kb), ("mixed_unicode", &d.mixed_kb)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("words/{name}"), |b| b.iter(|| normalize::words(black_box(text))));
        g.bench_function(format!("words_and_4gram_fingerprints/{name}"), |b| {
            b.iter(|| {
                let w = normalize::words(black_box(text));
                ngram::document_fingerprints(&w.words, 4).into_iter().fold(0u64, |a, f| a ^ f)
            })
        });
    }
    g.finish();
}

fn ngram_layer(c: &mut Criterion, d: &Data) {
    let index = ngram_index(d);
    // A replica of the index's exact map (fingerprint -> entries) and its Bloom filter, to time
    // the two steps apart; `hits` below is the real index doing both.
    let mut exact: HashMap<u64, Vec<u32>> = HashMap::new();
    for (i, g) in d.doc_grams.iter().enumerate() {
        for fp in g {
            exact.entry(*fp).or_default().push(i as u32);
        }
    }
    let bloom = ngram::bloom_over(exact.keys(), exact.len(), 1e-4, b"bench-ngram-bloom-k1bench-n-k2!!");
    let present: Vec<u64> = exact.keys().copied().take(1024).collect();
    let words = normalize::words(&d.ascii_kb).words;
    let absent: Vec<u64> = ngram::document_fingerprints(&words, 4);
    let hashes = ngram::word_hashes(&words);
    println!(
        "ngram index: {} distinct 4-grams of 10,000 documents, Bloom filter {} bytes",
        index.len(),
        index.bloom_bytes()
    );

    let mut g = c.benchmark_group("ngram");
    g.throughput(Throughput::Elements(1));
    let gram = &hashes[..4];
    g.bench_function("fingerprint_4gram", |b| b.iter(|| ngram::gram_fingerprint(black_box(gram))));
    g.throughput(Throughput::Elements(absent.len() as u64));
    g.bench_function("bloom_check/absent", |b| {
        b.iter(|| absent.iter().filter(|fp| bloom.check(black_box(*fp))).count())
    });
    g.throughput(Throughput::Elements(present.len() as u64));
    g.bench_function("bloom_check/present", |b| {
        b.iter(|| present.iter().filter(|fp| bloom.check(black_box(*fp))).count())
    });
    g.bench_function("exact_confirm/present", |b| {
        b.iter(|| present.iter().filter_map(|fp| exact.get(black_box(fp))).map(Vec::len).sum::<usize>())
    });
    // The real index, per output word: the skip-gram fingerprints + Bloom (+ exact map on a
    // Bloom hit).
    g.throughput(Throughput::Elements(words.len() as u64 - 3));
    g.bench_function("index_hits_per_word/clean_text", |b| {
        b.iter(|| (4..=hashes.len()).map(|end| index.hits(black_box(&hashes), end).len()).sum::<usize>())
    });
    let copy = ngram::word_hashes(&d.doc_words[0]);
    g.throughput(Throughput::Elements(copy.len() as u64 - 3));
    g.bench_function("index_hits_per_word/verbatim_copy", |b| {
        b.iter(|| (4..=copy.len()).map(|end| index.hits(black_box(&copy), end).len()).sum::<usize>())
    });
    g.throughput(Throughput::Bytes(d.ascii_kb.len() as u64));
    g.bench_function("scan_per_kb_after_normalization", |b| b.iter(|| index.scan(black_box(&hashes))));
    g.finish();
}

fn term_layer(c: &mut Criterion, d: &Data) {
    let index = TermIndex::build(d.term_grams.iter().map(|(i, g)| (*i, g.as_slice(), &[][..])));
    let words = normalize::words(&d.ascii_kb).words;
    let mut g = c.benchmark_group("terms");
    g.throughput(Throughput::Bytes(d.ascii_kb.len() as u64));
    g.bench_function("ending_at_every_word_per_kb/300_terms", |b| {
        b.iter(|| (1..=words.len()).map(|end| index.ending_at(black_box(&words), end).len()).sum::<usize>())
    });
    g.finish();
}

/// Splits text into token-sized pieces (about 4 bytes, as a BPE tokenizer would).
fn token_pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if (c == ' ' && !cur.is_empty()) || cur.len() >= 4 {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn whole_guard(c: &mut Criterion, d: &Data) {
    let cfg = GuardConfig { embedder: None, ..Default::default() };
    let guard = Arc::new(Guard::build(&d.entries, &cfg, None, None, 1).expect("guard build"));
    let outputs = synth::outputs(10, 10, 500, &d.vocab);
    let mut g = c.benchmark_group("guard_text_layers_10k_docs_300_terms");
    // The serving path: one StreamGuard push per generated token (n-grams, terms, hold-back).
    let pieces = token_pieces(&outputs[0]);
    g.throughput(Throughput::Elements(pieces.len() as u64));
    g.bench_function("stream_push_per_token", |b| {
        b.iter_batched(
            || StreamGuard::new(guard.clone()),
            |mut s| {
                for p in &pieces {
                    black_box(s.push(p).expect("push"));
                }
                s.finish().expect("finish")
            },
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(outputs.len() as u64));
    g.bench_function("check_per_output", |b| {
        b.iter(|| {
            outputs
                .iter()
                .map(|o| guard.check(black_box(o), CheckParams::default()).expect("check").len())
                .sum::<usize>()
        })
    });
    g.bench_function("exact_audit_per_output", |b| {
        b.iter(|| {
            outputs
                .iter()
                .map(|o| guard.check(black_box(o), CheckParams::EXACT).expect("audit").len())
                .sum::<usize>()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("snapshot_build_text_layers");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    for n in [1_000usize, 10_000] {
        let mut entries: Vec<Entry> = d.entries[..n].to_vec();
        entries.extend(d.entries[10_000..10_030].iter().cloned()); // 30 terms
        g.throughput(Throughput::Elements(entries.len() as u64));
        g.bench_function(format!("{n}_docs_30_terms"), |b| {
            b.iter(|| Guard::build(black_box(&entries), &cfg, None, None, 1).expect("build"))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let d = data();
    normalization(c, &d);
    ngram_layer(c, &d);
    term_layer(c, &d);
    whole_guard(c, &d);
}

criterion_group! {
    name = guard;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = benches
}
criterion_main!(guard);
