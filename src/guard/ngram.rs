//! The n-gram layer: fingerprints of normalized word n-grams of forget documents in a Bloom
//! filter (a compact first gate that answers "surely not" for almost every output n-gram),
//! backed by an exact map from fingerprint to entries. A Bloom hit only counts once the exact
//! map confirms it, so Bloom false positives never block, and a confirmed hit names its entry.
//!
//! Detection scores runs of hits per entry, so that both verbatim copies and near-verbatim
//! ones (a tenth of the words changed, dropped or inserted) are caught: a match is either
//! `run` consecutive hit n-grams, or at least `min_hits` hits within a window of `window`
//! n-gram positions. An output n-gram may skip one word between any two of its words (a
//! skip-gram), so a copy with a filler word every two or three words ("four, um, score and,
//! like, seven years") still hits the document's n-grams; the document side indexes only its
//! contiguous n-grams.
//!
//! A fingerprint is the xxh3 of the n words' own xxh3 hashes, so each output word is hashed
//! once however many n-grams it is part of.
use bloomfilter::Bloom;
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NgramParams {
    /// Words per n-gram.
    pub n: usize,
    /// Consecutive hit n-grams that make a match (verbatim runs of n + run - 1 words).
    pub run: usize,
    /// Window, in n-gram positions, for near-verbatim copies.
    pub window: usize,
    /// Hits of one entry within a window that make a match.
    pub min_hits: usize,
    /// Target false-positive rate of the Bloom filter.
    pub bloom_fp_rate: f64,
}

impl Default for NgramParams {
    fn default() -> Self {
        Self { n: 4, run: 4, window: 16, min_hits: 6, bloom_fp_rate: 1e-4 }
    }
}

impl NgramParams {
    /// The invariants matching relies on (`[guard.ngram]`).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.n >= 1 && self.run >= 1, "guard.ngram.n and guard.ngram.run must be at least 1");
        anyhow::ensure!(self.n <= MAX_N, "guard.ngram.n must be at most {MAX_N}");
        anyhow::ensure!(
            self.window >= self.min_hits && self.min_hits >= 1,
            "guard.ngram.min_hits must be between 1 and guard.ngram.window"
        );
        anyhow::ensure!(
            self.bloom_fp_rate > 0.0 && self.bloom_fp_rate < 1.0,
            "guard.ngram.bloom_fp_rate must be in (0, 1)"
        );
        Ok(())
    }
}

/// The fingerprint of a word sequence taken whole (a term and its aliases).
pub fn fingerprint<S: AsRef<str>>(words: &[S]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for w in words {
        h.update(w.as_ref().as_bytes());
        h.update(&[0x1f]);
    }
    h.digest()
}

/// The hash of one normalized word, from which n-gram fingerprints are made.
pub fn word_hash(word: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(word.as_bytes())
}

pub fn word_hashes<S: AsRef<str>>(words: &[S]) -> Vec<u64> {
    words.iter().map(|w| word_hash(w.as_ref())).collect()
}

/// The fingerprint of an n-gram from its words' hashes.
pub fn gram_fingerprint(hashes: &[u64]) -> u64 {
    let mut bytes = [0u8; 8 * MAX_N];
    for (i, h) in hashes.iter().enumerate() {
        bytes[8 * i..8 * i + 8].copy_from_slice(&h.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes[..8 * hashes.len()])
}

/// The fingerprints of a document's contiguous n-grams.
pub fn document_fingerprints<S: AsRef<str>>(words: &[S], n: usize) -> Vec<u64> {
    word_hashes(words).windows(n).map(gram_fingerprint).collect()
}

/// Longest n-gram (`guard.ngram.n`).
pub const MAX_N: usize = 8;

pub fn fingerprint_tokens(tokens: &[u32]) -> u64 {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// A Bloom filter holding `keys`, sized for `fp_rate`.
pub fn bloom_over<'a>(
    keys: impl Iterator<Item = &'a u64>,
    count: usize,
    fp_rate: f64,
    seed: &[u8; 32],
) -> Bloom<u64> {
    let mut bloom =
        Bloom::new_for_fp_rate_with_seed(count.max(1), fp_rate, seed).expect("bloom parameters are valid");
    for k in keys {
        bloom.set(k);
    }
    bloom
}

/// Two different halves: bloomfilter derives its two hash keys from them.
const BLOOM_SEED: [u8; 32] = *b"lethe-ngram-bloom-k1lethe-n-k2!!";

fn exact_map<'a>(docs: impl IntoIterator<Item = (u32, &'a [u64])>) -> FingerprintMap<Vec<u32>> {
    let mut exact = FingerprintMap::<Vec<u32>>::default();
    for (entry, fingerprints) in docs {
        for &fp in fingerprints {
            let ids = exact.entry(fp).or_default();
            if ids.last() != Some(&entry) {
                ids.push(entry);
            }
        }
    }
    exact
}

/// Keys are xxh3 fingerprints already: hashing them again (SipHash) would only cost time.
#[derive(Default, Clone, Copy)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type FingerprintMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<PassThrough>>;

/// One immutable part of the index: a Bloom filter over its fingerprints and the exact map.
struct Segment {
    bloom: Bloom<u64>,
    exact: FingerprintMap<Vec<u32>>,
}

impl Segment {
    fn new(exact: FingerprintMap<Vec<u32>>, fp_rate: f64) -> Self {
        let bloom = bloom_over(exact.keys(), exact.len(), fp_rate, &BLOOM_SEED);
        Self { bloom, exact }
    }
}

/// The n-gram index of a snapshot: segments, each built once and shared by the snapshots
/// after it. Adding entries adds a small segment instead of rebuilding the whole index;
/// segments are merged as in a binary counter (a segment absorbs the next while that one is
/// at least half its size), so there are O(log n) of them and each fingerprint is copied
/// O(log n) times in all.
pub struct NgramIndex {
    pub params: NgramParams,
    segments: Vec<std::sync::Arc<Segment>>,
}

/// A detected copy of one entry: its score and the words it spans.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramMatch {
    pub entry: u32,
    pub score: f32,
    pub words: Range<usize>,
}

/// An entry whose document holds the n-gram ending at a position, and the first word of the
/// (skip-)gram that hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub entry: u32,
    pub start: u32,
}

impl NgramIndex {
    /// `docs`: (entry index, distinct n-gram fingerprints) of every document, entries in
    /// increasing order.
    pub fn build<'a>(params: NgramParams, docs: impl IntoIterator<Item = (u32, &'a [u64])>) -> Self {
        Self {
            params,
            segments: vec![std::sync::Arc::new(Segment::new(exact_map(docs), params.bloom_fp_rate))],
        }
    }

    /// This index plus `docs` (entries numbered after every entry already in it); shares
    /// this index's segments except those merged with the new one.
    pub fn appended<'a>(&self, docs: impl IntoIterator<Item = (u32, &'a [u64])>) -> Self {
        let mut segments = self.segments.clone();
        let mut exact = exact_map(docs);
        if exact.is_empty() {
            return Self { params: self.params, segments };
        }
        while let Some(last) = segments.last() {
            if last.exact.is_empty() {
                segments.pop();
                continue;
            }
            if last.exact.len() > 2 * exact.len() {
                break;
            }
            // Older entries first, so each list stays in increasing entry order.
            let mut merged = last.exact.clone();
            for (fp, ids) in exact {
                merged.entry(fp).or_default().extend(ids);
            }
            exact = merged;
            segments.pop();
        }
        segments.push(std::sync::Arc::new(Segment::new(exact, self.params.bloom_fp_rate)));
        Self { params: self.params, segments }
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Fingerprints indexed (one in two segments counts twice).
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.exact.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bloom_bytes(&self) -> usize {
        self.segments.iter().map(|s| s.bloom.as_slice().len()).sum()
    }

    /// Entries whose documents contain an n-gram ending at word `end` (exclusive) of the words
    /// with these hashes, contiguous or skipping one word between any two of its words.
    pub fn hits(&self, hashes: &[u64], end: usize) -> Vec<Hit> {
        self.lookup(hashes, end, true)
    }

    /// `bloom`: ask the Bloom filters first (the fast path); without them, the exact maps
    /// alone (the audit).
    fn lookup(&self, hashes: &[u64], end: usize, bloom: bool) -> Vec<Hit> {
        let n = self.params.n;
        let mut out: Vec<Hit> = Vec::new();
        if end < n {
            return out;
        }
        let mut gram = [0u64; MAX_N];
        // Each of the n - 1 gaps is 1 (contiguous) or 2 (a skipped word): bit i of `skips`.
        for skips in 0u32..(1 << (n - 1)) {
            let width = n + skips.count_ones() as usize;
            if width > end {
                continue;
            }
            let mut at = end - 1;
            gram[n - 1] = hashes[at];
            for i in (0..n - 1).rev() {
                at -= 1 + ((skips >> i) & 1) as usize;
                gram[i] = hashes[at];
            }
            let fp = gram_fingerprint(&gram[..n]);
            for s in &self.segments {
                if bloom && !s.bloom.check(&fp) {
                    continue;
                }
                for &entry in s.exact.get(&fp).into_iter().flatten() {
                    match out.iter_mut().find(|h| h.entry == entry) {
                        Some(h) => h.start = h.start.max(at as u32),
                        None => out.push(Hit { entry, start: at as u32 }),
                    }
                }
            }
        }
        out
    }

    /// Whether the hits up to position `at` (inclusive) make a match for `entry`. Position `i`
    /// holds the hits of the n-grams ending at word `i + n - 1`.
    pub fn evaluate(&self, hits: &[Vec<Hit>], at: usize, entry: u32) -> Option<NgramMatch> {
        let p = &self.params;
        let start_of = |i: usize| hits[i].iter().find(|h| h.entry == entry).map(|h| h.start as usize);
        let run = (0..=at).rev().take_while(|&i| start_of(i).is_some()).count();
        let start = (at + 1).saturating_sub(p.window);
        let in_window: Vec<usize> = (start..=at).filter(|&i| start_of(i).is_some()).collect();
        if run >= p.run || in_window.len() >= p.min_hits {
            let first = if run >= p.run && run > in_window.len() { at + 1 - run } else { in_window[0] };
            let score = (in_window.len().max(run) as f32 / p.window as f32).min(1.0);
            let first_word = start_of(first).unwrap_or(first);
            return Some(NgramMatch { entry, score, words: first_word..at + p.n });
        }
        None
    }

    /// All matches in a whole text (its words' hashes): per entry, the strongest.
    pub fn scan(&self, hashes: &[u64]) -> Vec<NgramMatch> {
        self.scan_with(hashes, true)
    }

    /// As `scan`, without the Bloom filter.
    pub fn scan_exact(&self, hashes: &[u64]) -> Vec<NgramMatch> {
        self.scan_with(hashes, false)
    }

    fn scan_with(&self, hashes: &[u64], bloom: bool) -> Vec<NgramMatch> {
        let n = self.params.n;
        let hits: Vec<Vec<Hit>> = (n..=hashes.len()).map(|end| self.lookup(hashes, end, bloom)).collect();
        let mut best: HashMap<u32, NgramMatch> = HashMap::new();
        for at in 0..hits.len() {
            for h in &hits[at] {
                if let Some(m) = self.evaluate(&hits, at, h.entry) {
                    let slot = best.entry(h.entry).or_insert_with(|| m.clone());
                    if m.words.start <= slot.words.end {
                        // The same copy, seen further: it spans from where it was first seen.
                        slot.words = slot.words.start.min(m.words.start)..m.words.end.max(slot.words.end);
                        slot.score = slot.score.max(m.score);
                    } else if m.score > slot.score {
                        *slot = m;
                    }
                }
            }
        }
        let mut out: Vec<NgramMatch> = best.into_values().collect();
        out.sort_by_key(|m| (m.words.start, m.entry));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::normalize::words;

    const DOC: &str = "Permission is hereby granted, free of charge, to any person obtaining a copy of \
        this software and associated documentation files, to deal in the Software without restriction, \
        including without limitation the rights to use, copy, modify, merge, publish, distribute";

    fn index() -> NgramIndex {
        let p = NgramParams::default();
        let fps = document_fingerprints(&words(DOC).words, p.n);
        NgramIndex::build(p, [(0u32, fps.as_slice())])
    }

    #[test]
    fn verbatim_runs_match_and_unrelated_text_does_not() {
        let idx = index();
        let copy =
            words("He wrote: permission is hereby granted, free of charge, to any person. Then left.").words;
        let m = idx.scan(&word_hashes(&copy));
        assert_eq!(m.len(), 1);
        let span = &m[0].words;
        assert_eq!(copy[span.start], "perrnission");
        assert_eq!(copy[span.end - 1], "person");
        let unrelated =
            words("The weather today is sunny with a light breeze from the west and no rain").words;
        assert!(idx.scan(&word_hashes(&unrelated)).is_empty());
    }

    #[test]
    fn near_verbatim_copy_with_a_tenth_of_words_changed_matches() {
        let idx = index();
        let edited = words(
            "Permission is hereby given, free of charge, to any individual obtaining a copy of this \
             software and related documentation files, to deal in the Software without any restriction",
        )
        .words;
        assert_eq!(idx.scan(&word_hashes(&edited)).len(), 1);
    }

    #[test]
    fn a_copy_with_a_filler_every_two_or_three_words_matches_where_it_starts() {
        let idx = index();
        let text = "As I said, permission is, um, hereby granted, like, free of, uh, charge, \
             to any, um, person obtaining, like, a copy of, er, this software";
        let w = words(text);
        let m = idx.scan(&word_hashes(&w.words));
        assert_eq!(m.len(), 1, "{:?}", w.words);
        assert_eq!(w.words[m[0].words.start], "perrnission", "{:?} {:?}", m, w.words);
        // Fillers, not a document: no match without the copy.
        let fillers = words("um, like, you know, er, so, well, um, like, you know, er, so, well").words;
        assert!(idx.scan(&word_hashes(&fillers)).is_empty());
    }

    #[test]
    fn appended_segments_match_like_one_index_and_stay_few() {
        let p = NgramParams::default();
        let doc = |text: &str| document_fingerprints(&words(text).words, p.n);
        let first = doc(DOC);
        let mut idx = NgramIndex::build(p, [(0u32, first.as_slice())]);
        let other = "Lanterns of copper hung above the door of the old mill by the river every winter night";
        for entry in 1..=40u32 {
            let fps = doc(&format!("{other} number {entry}"));
            idx = idx.appended([(entry, fps.as_slice())]);
        }
        assert!(idx.segment_count() <= 7, "{} segments", idx.segment_count());
        let copy = word_hashes(&words(&format!("quote: {DOC}")).words);
        assert_eq!(idx.scan(&copy).iter().map(|m| m.entry).collect::<Vec<_>>(), [0]);
        let late = word_hashes(&words(&format!("{other} number 40")).words);
        let found: Vec<u32> = idx.scan(&late).iter().map(|m| m.entry).collect();
        assert!(found.contains(&40) && found.contains(&1) && !found.contains(&0), "{found:?}");
        let hits: Vec<u32> = idx.hits(&late, p.n).iter().map(|h| h.entry).collect();
        assert_eq!(hits, (1..=40).collect::<Vec<u32>>(), "every entry once, in order");
    }

    #[test]
    fn a_short_common_phrase_is_not_a_match() {
        let idx = index();
        let text = words("You may copy of this book as you like, to deal with it freely.").words;
        assert!(idx.scan(&word_hashes(&text)).is_empty());
    }
}
