//! The immutable index of one forget-list snapshot, and how it is built: derive each entry's
//! fingerprints (cached), then index them — word n-grams (Bloom + exact), terms, token
//! n-grams for decode-time masking, and HNSW segments of window embeddings. A snapshot grown
//! by additions shares the index segments of the one before it.
use super::derive::Deriver;
use super::digest::{content_hash, entry_digest};
use super::facts::{FactIndex, FactRule};
use super::footprint::{self, bloom_bits_per_key, estimate_bytes, IndexSizes, LayerBytes, SetStats};
use super::ngram::NgramIndex;
use super::semantic::{Embedder, SemanticIndex, SemanticParams};
use super::terms::TermIndex;
use super::tokens::TokenIndex;
use super::GuardConfig;
use crate::forget::{Action, Entry, Kind, SetPolicy};
use crate::model::Model;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    /// Order-independent digest of the entries (see `digest.rs`).
    digest: u128,
    sets: Vec<SetMeta>,
    entries: Vec<EntryMeta>,
    pub(super) ngrams: NgramIndex,
    pub(super) terms: TermIndex,
    pub(super) tokens: Option<Arc<TokenIndex>>,
    pub(super) semantic: Option<(Arc<Embedder>, SemanticIndex)>,
    pub(super) facts: FactIndex,
    pub(super) fact_rule: FactRule,
    pub(super) hold_back_words: usize,
    pub(super) params: SemanticParams,
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
            facts: FactIndex::default(),
            fact_rule: cfg.facts,
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
            facts: self.facts.clone(),
            fact_rule: self.fact_rule,
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
        self.terms = self
            .terms
            .with(derived.iter().enumerate().map(|(i, f)| (number(i), &f.terms[..], &f.joined[..])));
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
        self.facts = self.facts.with(derived.iter().enumerate().map(|(i, f)| (number(i), &f.facts)));
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
            s.term_fingerprints += f.terms.len() + f.joined.len();
            s.token_prefixes += if masked[i] { f.tokens.as_ref().map_or(0, |t| t.grams.len()) } else { 0 };
            s.semantic_vectors += if has_semantic { f.vectors.len() } else { 0 };
        }
        let dim = self.embedding_dim();
        let bloom_bits_per_key = bloom_bits_per_key(cfg.ngram.bloom_fp_rate);
        for s in &mut self.sets {
            s.stats.index_bytes = estimate_bytes(&s.stats, dim, bloom_bits_per_key);
        }
        self.version = version;
        self.content_hash = content_hash(self.digest, self.sets.iter().map(|s| (s.name.as_str(), &s.policy)));
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

    /// Windows of public boilerplate the commons filter compares with (0: no filter).
    pub fn commons_windows(&self) -> usize {
        self.semantic.as_ref().map_or(0, |(e, _)| e.commons_windows())
    }

    /// Dimension of the window embeddings (0 without the semantic layer).
    pub fn embedding_dim(&self) -> usize {
        self.semantic.as_ref().map_or(0, |(e, _)| e.dim)
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

    /// Whether the semantic pre-gate is on: off when it is 0 for the server or for some set.
    pub(super) fn semantic_gated(&self) -> bool {
        self.params.gate_min_words > 0 && self.sets.iter().all(|s| s.policy.gate_min_words != Some(0))
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

    /// Index sizes per set name.
    pub fn stats(&self) -> BTreeMap<String, SetStats> {
        self.sets.iter().map(|s| (s.name.clone(), s.stats.clone())).collect()
    }

    /// Fingerprint counts of each index (a fingerprint in two segments counts twice).
    pub fn index_sizes(&self) -> IndexSizes {
        IndexSizes {
            ngrams: self.ngrams.len(),
            terms: self.terms.len(),
            token_prefixes: self.tokens.as_deref().map_or(0, TokenIndex::len),
            vectors: self.semantic.as_ref().map_or(0, |(_, s)| s.len()),
        }
    }

    /// Approximate memory of each index, in bytes.
    pub fn layer_bytes(&self) -> LayerBytes {
        let token_bloom = self.tokens.as_deref().map_or(0, TokenIndex::bloom_bytes);
        footprint::layer_bytes(
            self.index_sizes(),
            self.ngrams.bloom_bytes(),
            token_bloom,
            self.embedding_dim(),
        )
    }

    /// Approximate memory of the indexes, in bytes.
    pub fn index_bytes(&self) -> usize {
        let b = self.layer_bytes();
        b.ngram + b.term + b.token + b.semantic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::CheckParams;

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
            .map(|(i, t)| Entry::document(if i % 2 == 0 { "a" } else { "b" }, &format!("d{i}"), t))
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
                let mut ids: Vec<String> = g
                    .check(t, CheckParams::default())
                    .unwrap()
                    .iter()
                    .map(|f| g.entry_id(f.entry).to_string())
                    .collect();
                ids.sort();
                ids
            };
            assert_eq!(ids(&grown), ids(&whole), "{t}");
        }
    }
}
