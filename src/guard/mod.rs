//! The runtime suppression layer. A [`Guard`] is the immutable index of one forget-list
//! snapshot: word n-grams (Bloom + exact), exact terms, token n-grams for decode-time masking,
//! and an HNSW index of document-window embeddings. [`Guard::check`] checks a whole text;
//! [`stream::StreamGuard`] checks a generation as it is produced and decides what may be
//! released to the client.
pub mod audit;
pub mod derive;
pub mod ngram;
pub mod normalize;
pub mod semantic;
pub mod stream;
pub mod terms;
pub mod tokens;

use crate::forget::{Entry, Kind};
use crate::model::Model;
use crate::proto;
use anyhow::Result;
use derive::Deriver;
use ngram::{NgramIndex, NgramParams};
use semantic::{Embedder, SemanticIndex, SemanticParams};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use terms::TermIndex;
use tokens::TokenIndex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Stop the generation at a match; deliver only text cleared before it.
    #[default]
    Block,
    /// Decode-time masking of forgotten token n-grams; the output is delivered.
    Mask,
    /// Deliver unchanged; report and count the match as leaked.
    Monitor,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SetPolicy {
    pub action: Action,
    /// Cosine similarity for the semantic layer; unset: `guard.semantic.threshold`.
    pub semantic_threshold: Option<f32>,
    /// Return matches without the entry id.
    pub hide_details: bool,
    /// On a guard error, deliver instead of blocking (default: fail closed).
    pub fail_open: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Forget list: a `.jsonl` file or a folder of them. Unset: nothing is forgotten.
    pub forget: Option<PathBuf>,
    /// Sentence-embedder folder (safetensors + tokenizer.json + config.json) for the semantic
    /// layer. Unset: the semantic layer is off.
    pub embedder: Option<PathBuf>,
    /// Newest words of a stream held back until the guard has cleared them.
    pub hold_back_words: usize,
    /// Tokens per n-gram for decode-time masking.
    pub token_ngram: usize,
    /// Check prompts and report (never block) those containing forgotten content.
    pub check_prompts: bool,
    /// Share of delivered outputs re-checked by the exact audit (0 turns it off).
    pub audit_sample_rate: f64,
    pub ngram: NgramParams,
    pub semantic: SemanticParams,
    /// Policy of every set not named in `sets`.
    pub default_policy: SetPolicy,
    pub sets: BTreeMap<String, SetPolicy>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            forget: None,
            embedder: Some(PathBuf::from("models/minilm")),
            hold_back_words: 12,
            token_ngram: 6,
            check_prompts: true,
            audit_sample_rate: 1.0,
            ngram: NgramParams::default(),
            semantic: SemanticParams::default(),
            default_policy: SetPolicy::default(),
            sets: BTreeMap::new(),
        }
    }
}

/// One match of forgotten content in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub entry: u32,
    pub layer: proto::Layer,
    pub score: f32,
    /// Byte span in the checked text.
    pub span: Range<usize>,
}

#[derive(Clone)]
struct EntryMeta {
    id: String,
    set: u32,
}

#[derive(Clone)]
struct SetMeta {
    name: String,
    policy: SetPolicy,
    stats: SetStats,
}

pub struct Guard {
    pub version: u64,
    /// Fingerprint of the content and policies (same list = same hash, on every replica).
    pub content_hash: String,
    /// Order-independent digest of the entries (wrapping sum of per-entry hashes), so a
    /// snapshot grown by additions hashes as one built at once.
    digest: u128,
    sets: Vec<SetMeta>,
    entries: Vec<EntryMeta>,
    ngrams: NgramIndex,
    terms: TermIndex,
    tokens: Option<Arc<TokenIndex>>,
    semantic: Option<(Arc<Embedder>, SemanticIndex)>,
    hold_back_words: usize,
    params: SemanticParams,
}

/// Approximate memory of each index, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LayerBytes {
    pub ngram: usize,
    pub term: usize,
    pub token: usize,
    pub semantic: usize,
}

/// Sizes of one set's part of the indexes, for status and metrics. Fingerprints are counted
/// per entry (one shared by two entries counts twice); the snapshot totals count distinct ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetStats {
    pub entries: usize,
    pub documents: usize,
    pub terms: usize,
    pub ngram_fingerprints: usize,
    pub term_fingerprints: usize,
    pub token_prefixes: usize,
    pub semantic_vectors: usize,
    /// Approximate memory of this set's share of the indexes.
    pub index_bytes: usize,
}

impl Guard {
    /// A guard with an empty forget list.
    pub fn empty(cfg: &GuardConfig) -> Self {
        Self::build(&[], cfg, None, None, 0).expect("an empty guard always builds")
    }

    /// Builds every index of a snapshot. `model` supplies the tokenizer for decode-time
    /// masking; `embedder` enables the semantic layer.
    pub fn build(
        entries: &[Entry],
        cfg: &GuardConfig,
        model: Option<&Model>,
        embedder: Option<Arc<Embedder>>,
        version: u64,
    ) -> Result<Self> {
        Self::build_with(entries, cfg, model, &Deriver::new(cfg, embedder), version)
    }

    /// As [`Guard::build`], deriving fingerprints with `deriver` (whose cache makes a rebuild
    /// after a small change derive and embed only the new entries).
    pub fn build_with(
        entries: &[Entry],
        cfg: &GuardConfig,
        model: Option<&Model>,
        deriver: &Deriver,
        version: u64,
    ) -> Result<Self> {
        let empty = Self {
            version,
            content_hash: String::new(),
            digest: 0,
            sets: Vec::new(),
            entries: Vec::new(),
            ngrams: NgramIndex::build(cfg.ngram, []),
            terms: TermIndex::build([]),
            tokens: None,
            semantic: deriver.embedder().map(|e| (e.clone(), SemanticIndex::build(Vec::new()))),
            hold_back_words: cfg.hold_back_words,
            params: cfg.semantic,
        };
        Ok(empty.grow(entries, cfg, model, deriver, version, true)?.expect("a full build always completes"))
    }

    /// This snapshot plus `added` (entries it does not hold): shares the index segments of this
    /// one and indexes only the new entries (see [`NgramIndex::appended`]). `None` when a new
    /// entry belongs to a `mask` set, whose token index is rebuilt whole: build in full then.
    pub fn with_added(
        &self,
        added: &[Entry],
        cfg: &GuardConfig,
        model: Option<&Model>,
        deriver: &Deriver,
        version: u64,
    ) -> Result<Option<Self>> {
        let copy = Self {
            version,
            content_hash: String::new(),
            digest: self.digest,
            sets: self.sets.clone(),
            entries: self.entries.clone(),
            ngrams: self.ngrams.appended([]),
            terms: self.terms.clone(),
            tokens: self.tokens.clone(),
            semantic: self.semantic.as_ref().map(|(e, s)| (e.clone(), s.appended(Vec::new()))),
            hold_back_words: self.hold_back_words,
            params: self.params,
        };
        copy.grow(added, cfg, model, deriver, version, false)
    }

    /// Adds `entries` to this guard's indexes. `full`: this guard is empty and `entries` is the
    /// whole list (the derivation cache then keeps exactly these entries, and the token index
    /// is built); otherwise `None` if a new entry would need the token index.
    fn grow(
        mut self,
        entries: &[Entry],
        cfg: &GuardConfig,
        model: Option<&Model>,
        deriver: &Deriver,
        version: u64,
        full: bool,
    ) -> Result<Option<Self>> {
        let first = self.entries.len();
        let mut set_ids: HashMap<String, u32> =
            self.sets.iter().enumerate().map(|(i, s)| (s.name.clone(), i as u32)).collect();
        for e in entries {
            let set = *set_ids.entry(e.set.clone()).or_insert_with(|| {
                self.sets.push(SetMeta {
                    name: e.set.clone(),
                    policy: cfg.sets.get(&e.set).cloned().unwrap_or_else(|| cfg.default_policy.clone()),
                    stats: SetStats::default(),
                });
                (self.sets.len() - 1) as u32
            });
            self.entries.push(EntryMeta { id: e.id.clone(), set });
        }
        let masked: Vec<bool> = entries
            .iter()
            .zip(&self.entries[first..])
            .map(|(e, m)| e.kind == Kind::Document && self.sets[m.set as usize].policy.action == Action::Mask)
            .collect();
        if !full && model.is_some() && masked.iter().any(|&m| m) {
            return Ok(None);
        }
        let refs: Vec<&Entry> = entries.iter().collect();
        let derived = deriver.derive_all(&refs, model, |i| masked[i], full)?;
        let number = |i: usize| (first + i) as u32;

        self.ngrams =
            self.ngrams.appended(derived.iter().enumerate().map(|(i, f)| (number(i), &f.ngrams[..])));
        self.terms = self.terms.with(derived.iter().enumerate().map(|(i, f)| (number(i), &f.terms[..])));
        if full {
            let grams: Vec<&[(u64, u32)]> = (0..entries.len())
                .filter(|&i| model.is_some() && masked[i])
                .filter_map(|i| derived[i].tokens.as_ref().map(|t| t.grams.as_slice()))
                .collect();
            self.tokens = (!grams.is_empty()).then(|| {
                Arc::new(TokenIndex::build(
                    cfg.token_ngram,
                    cfg.ngram.bloom_fp_rate,
                    grams.into_iter().flatten(),
                ))
            });
        }
        if let Some((_, index)) = &mut self.semantic {
            let embeddings = derived
                .iter()
                .enumerate()
                .flat_map(|(i, f)| f.vectors.iter().map(move |v| (number(i), v.clone())))
                .collect();
            *index = index.appended(embeddings);
        }

        let has_semantic = self.semantic.is_some();
        for (i, (e, f)) in entries.iter().zip(&derived).enumerate() {
            self.digest = self.digest.wrapping_add(entry_digest(e));
            let s = &mut self.sets[self.entries[first + i].set as usize].stats;
            s.entries += 1;
            match e.kind {
                Kind::Document => s.documents += 1,
                Kind::Term => s.terms += 1,
            }
            s.ngram_fingerprints += f.ngrams.len();
            s.term_fingerprints += f.terms.len();
            s.token_prefixes += if masked[i] { f.tokens.as_ref().map_or(0, |t| t.grams.len()) } else { 0 };
            s.semantic_vectors += if has_semantic { f.vectors.len() } else { 0 };
        }
        let dim = self.semantic.as_ref().map_or(0, |(e, _)| e.dim);
        let bloom_bits_per_key = bloom_bits_per_key(cfg.ngram.bloom_fp_rate);
        for s in &mut self.sets {
            s.stats.index_bytes = estimate_bytes(&s.stats, dim, bloom_bits_per_key);
        }
        self.version = version;
        self.content_hash = content_hash(self.digest, &self.sets);
        Ok(Some(self))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn has_semantic(&self) -> bool {
        self.semantic.is_some()
    }

    /// Whether the semantic layer has anything to find: with no forget vectors, embedding an
    /// output's windows would cost milliseconds per window for nothing.
    pub fn semantic_active(&self) -> bool {
        self.semantic.as_ref().is_some_and(|(_, index)| !index.is_empty())
    }

    pub fn entry_id(&self, entry: u32) -> &str {
        &self.entries[entry as usize].id
    }

    /// A guard over `entries` with another configuration, sharing this one's embedder (for
    /// evaluation sweeps; no decode-time masking).
    pub fn rebuild_with(&self, entries: &[Entry], cfg: &GuardConfig) -> Result<Guard> {
        Guard::build(entries, cfg, None, self.semantic.as_ref().map(|(e, _)| e.clone()), self.version)
    }

    pub fn has_set(&self, name: &str) -> bool {
        self.sets.iter().any(|s| s.name == name)
    }

    pub fn set_name(&self, entry: u32) -> &str {
        &self.sets[self.entries[entry as usize].set as usize].name
    }

    pub fn policy(&self, entry: u32) -> &SetPolicy {
        &self.sets[self.entries[entry as usize].set as usize].policy
    }

    /// Whether a guard error should block: some set that is not monitor-only fails closed.
    pub fn fails_closed(&self) -> bool {
        self.sets.iter().any(|s| s.policy.action != Action::Monitor && !s.policy.fail_open)
    }

    /// Tokens that must not follow `context` (decode-time masking of `mask` sets).
    pub fn forbidden(&self, context: &[u32]) -> &[u32] {
        self.tokens.as_deref().map_or(&[], |t| t.forbidden(context))
    }

    /// Whether `tokens` contain a forgotten token n-gram of a `mask` set.
    pub fn contains_forgotten_tokens(&self, tokens: &[u32]) -> bool {
        self.tokens.as_ref().is_some_and(|t| t.contains_forgotten(tokens))
    }

    /// Every match in `text` (all layers, whatever the sets' actions), optionally only for
    /// the named sets. At most one finding per entry and layer: the strongest.
    pub fn check(&self, text: &str, only_sets: &[String]) -> Result<Vec<Finding>> {
        let w = normalize::words(text);
        let byte_span = |words: Range<usize>| w.spans[words.start].start..w.spans[words.end - 1].end;
        let mut findings = self.text_findings(&w, true);
        if self.semantic_active() && !w.is_empty() {
            let p = self.params;
            let windows: Vec<Range<usize>> = semantic::windows(w.len(), p.window_words, p.stride_words)
                .into_iter()
                .map(byte_span)
                .collect();
            findings.extend(self.semantic_check(text, &windows)?);
        }
        if !only_sets.is_empty() {
            findings.retain(|f| only_sets.iter().any(|s| s == self.set_name(f.entry)));
        }
        Ok(dedup_best(findings))
    }

    /// N-gram and term findings of normalized words; `bloom`: the fast path (Bloom filter
    /// first) or the exact map alone (the audit).
    fn text_findings(&self, w: &normalize::Words, bloom: bool) -> Vec<Finding> {
        let byte_span = |words: Range<usize>| w.spans[words.start].start..w.spans[words.end - 1].end;
        let ngrams = if bloom { self.ngrams.scan(&w.words) } else { self.ngrams.scan_exact(&w.words) };
        let mut findings: Vec<Finding> = ngrams
            .into_iter()
            .map(|m| Finding {
                entry: m.entry,
                layer: proto::Layer::Ngram,
                score: m.score,
                span: byte_span(self.ngrams.word_span(&m.positions)),
            })
            .collect();
        for end in 1..=w.len() {
            for (entry, len) in self.terms.ending_at(&w.words, end) {
                findings.push(Finding {
                    entry,
                    layer: proto::Layer::Term,
                    score: 1.0,
                    span: byte_span(end - len..end),
                });
            }
        }
        findings
    }

    /// The exact audit of a delivered text: n-grams against the exact map (no Bloom filter),
    /// terms, and every window (stride 3 words) against every forget vector (no HNSW).
    pub fn audit(&self, text: &str) -> Result<Vec<Finding>> {
        let w = normalize::words(text);
        if w.is_empty() {
            return Ok(Vec::new());
        }
        let byte_span = |words: Range<usize>| w.spans[words.start].start..w.spans[words.end - 1].end;
        let mut findings = self.text_findings(&w, false);
        if let Some((embedder, index)) = self.semantic.as_ref().filter(|(_, index)| !index.is_empty()) {
            let p = self.params;
            let spans: Vec<Range<usize>> =
                semantic::windows(w.len(), p.window_words, 3).into_iter().map(byte_span).collect();
            for chunk in spans.chunks(32) {
                let texts: Vec<&str> = chunk.iter().map(|s| &text[s.clone()]).collect();
                for (span, emb) in chunk.iter().zip(embedder.embed(&texts)?) {
                    for (entry, sim) in index.brute_force(&emb) {
                        let threshold = self.policy(entry).semantic_threshold.unwrap_or(p.threshold);
                        if sim >= threshold {
                            findings.push(Finding {
                                entry,
                                layer: proto::Layer::Semantic,
                                score: sim,
                                span: span.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(dedup_best(findings))
    }

    /// Semantic findings for windows (byte spans) of `text`, embedded in one batch.
    fn semantic_check(&self, text: &str, spans: &[Range<usize>]) -> Result<Vec<Finding>> {
        let Some((embedder, index)) = &self.semantic else { return Ok(Vec::new()) };
        let texts: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        let mut out = Vec::new();
        for (span, emb) in spans.iter().zip(embedder.embed(&texts)?) {
            for (entry, sim) in index.nearest(&emb, 4, self.params.ef_search) {
                let threshold = self.policy(entry).semantic_threshold.unwrap_or(self.params.threshold);
                if sim >= threshold {
                    out.push(Finding {
                        entry,
                        layer: proto::Layer::Semantic,
                        score: sim,
                        span: span.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The API form of a finding; spans become character offsets of `text`.
    pub fn to_proto(&self, f: &Finding, text: &str) -> proto::Match {
        let chars = |byte: usize| text[..byte.min(text.len())].chars().count() as u32;
        let policy = self.policy(f.entry);
        proto::Match {
            forget_set: self.set_name(f.entry).to_string(),
            entry_id: if policy.hide_details {
                String::new()
            } else {
                self.entries[f.entry as usize].id.clone()
            },
            layer: f.layer as i32,
            score: f.score,
            char_start: chars(f.span.start),
            char_end: chars(f.span.end),
        }
    }

    /// Index sizes per set name.
    pub fn stats(&self) -> BTreeMap<String, SetStats> {
        self.sets.iter().map(|s| (s.name.clone(), s.stats.clone())).collect()
    }

    /// Approximate memory of the indexes in bytes.
    pub fn index_bytes(&self) -> usize {
        let b = self.layer_bytes();
        b.ngram + b.term + b.token + b.semantic
    }

    /// Approximate memory of each index: Bloom filters, fingerprint maps (key, entry list and
    /// hash-table overhead), embeddings and the HNSW graph (16 links per vector).
    pub fn layer_bytes(&self) -> LayerBytes {
        let (ngrams, terms, prefixes, vectors) = self.index_sizes();
        let dim = self.semantic.as_ref().map_or(0, |(e, _)| e.dim);
        LayerBytes {
            ngram: self.ngrams.bloom_bytes() + ngrams * MAP_BYTES_PER_KEY,
            term: terms * MAP_BYTES_PER_KEY,
            token: self.tokens.as_deref().map_or(0, TokenIndex::bloom_bytes) + prefixes * MAP_BYTES_PER_KEY,
            semantic: vectors * vector_bytes(dim),
        }
    }

    /// Fingerprint counts: word n-grams, terms (with aliases), token prefixes, semantic windows.
    pub fn index_sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.ngrams.len(),
            self.terms.len(),
            self.tokens.as_deref().map_or(0, TokenIndex::len),
            self.semantic.as_ref().map_or(0, |(_, s)| s.len()),
        )
    }
}

/// Bytes per key of a fingerprint map: key, entry list and hash-table overhead.
const MAP_BYTES_PER_KEY: usize = 48;

/// Bytes per indexed vector: the embedding, 16 HNSW links and bookkeeping.
fn vector_bytes(dim: usize) -> usize {
    dim * 4 + 16 * 8 + 64
}

/// Bits per key of a Bloom filter sized for `fp_rate`.
fn bloom_bits_per_key(fp_rate: f64) -> f64 {
    -fp_rate.ln() / std::f64::consts::LN_2.powi(2)
}

fn estimate_bytes(s: &SetStats, dim: usize, bloom_bits_per_key: f64) -> usize {
    let keys = s.ngram_fingerprints + s.token_prefixes;
    (keys as f64 * bloom_bits_per_key / 8.0) as usize
        + (keys + s.term_fingerprints) * MAP_BYTES_PER_KEY
        + s.semantic_vectors * vector_bytes(dim)
}

/// A hash of the entries' digest and the policies of their sets, so replicas serving the same
/// list report the same hash whatever order it was loaded in.
fn content_hash(digest: u128, sets: &[SetMeta]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&digest.to_le_bytes());
    let mut policies: Vec<(&str, String)> = sets
        .iter()
        .map(|s| (s.name.as_str(), serde_json::to_string(&s.policy).unwrap_or_default()))
        .collect();
    policies.sort();
    for (name, policy) in policies {
        h.update(name.as_bytes());
        h.update(policy.as_bytes());
    }
    format!("{:032x}", h.digest128())
}

/// xxh3-128 of everything an entry holds, fields length-prefixed.
fn entry_digest(e: &Entry) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(e.id.as_bytes());
    field(e.set.as_bytes());
    field(&[e.kind as u8]);
    field(e.text.as_bytes());
    for a in &e.aliases {
        field(a.as_bytes());
    }
    if let Some(fp) = &e.fingerprints {
        field(fp.recipe.as_bytes());
        field(&fp.ngrams.iter().flat_map(|n| n.to_le_bytes()).collect::<Vec<u8>>());
        field(
            &fp.terms
                .iter()
                .flat_map(|(f, l)| [f.to_le_bytes().as_slice(), &l.to_le_bytes()].concat())
                .collect::<Vec<u8>>(),
        );
        field(fp.embedder.as_deref().unwrap_or("").as_bytes());
        for v in &fp.vectors {
            field(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        }
        if let Some(t) = &fp.tokens {
            field(t.tokenizer.as_bytes());
            field(
                &t.grams
                    .iter()
                    .flat_map(|(f, n)| [f.to_le_bytes().as_slice(), &n.to_le_bytes()].concat())
                    .collect::<Vec<u8>>(),
            );
        }
    }
    h.digest128()
}

/// Keeps the strongest finding per (entry, layer), in text order.
fn dedup_best(findings: Vec<Finding>) -> Vec<Finding> {
    let mut best: HashMap<(u32, i32), Finding> = HashMap::new();
    for f in findings {
        let slot = best.entry((f.entry, f.layer as i32)).or_insert_with(|| f.clone());
        if f.score > slot.score {
            *slot = f;
        }
    }
    let mut out: Vec<Finding> = best.into_values().collect();
    out.sort_by_key(|f| (f.span.start, f.entry, f.layer as i32));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(set: &str, id: &str, text: &str) -> Entry {
        Entry {
            id: id.into(),
            set: set.into(),
            kind: Kind::Document,
            text: text.into(),
            aliases: vec![],
            fingerprints: None,
        }
    }

    #[test]
    fn a_guard_grown_by_additions_equals_one_built_at_once() {
        let cfg = GuardConfig { embedder: None, ..Default::default() };
        let texts: Vec<String> = (0..12)
            .map(|i| {
                format!("the keeper of lighthouse {i} painted its door a new colour every spring for years")
            })
            .collect();
        let entries: Vec<Entry> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| doc(if i % 2 == 0 { "a" } else { "b" }, &format!("d{i}"), t))
            .collect();
        let whole = Guard::build(&entries, &cfg, None, None, 1).unwrap();
        let deriver = Deriver::new(&cfg, None);
        let mut grown = Guard::build_with(&entries[..3], &cfg, None, &deriver, 1).unwrap();
        for chunk in entries[3..].chunks(2) {
            grown = grown.with_added(chunk, &cfg, None, &deriver, 1).unwrap().expect("no mask sets");
        }
        assert_eq!(grown.content_hash, whole.content_hash);
        assert_eq!(grown.stats(), whole.stats());
        assert!(grown.ngrams.segment_count() > 1);
        for t in &texts {
            let ids = |g: &Guard| {
                let mut ids: Vec<String> =
                    g.check(t, &[]).unwrap().iter().map(|f| g.entry_id(f.entry).to_string()).collect();
                ids.sort();
                ids
            };
            assert_eq!(ids(&grown), ids(&whole), "{t}");
        }
    }
}
