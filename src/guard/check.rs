//! Where text is checked: every layer of a snapshot over a whole text. The fast check (Bloom
//! filters, HNSW) serves `Check`, prompts and the stream guard's semantic windows; the exact
//! audit runs the same code with `exact` set (exact maps, every forget vector by brute force,
//! denser windows), as qdrant's `SearchParams { exact }` does.
use super::facts::{self, FactRule, Scope, TextFact};
use super::ngram::word_hashes;
use super::{encodings, lexical, normalize, semantic, Finding, Guard, Layer};
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Words between two output windows in the exact audit (the fast path uses
/// `guard.semantic.stride_words`).
const EXACT_STRIDE_WORDS: usize = 3;

/// Windows embedded in one batch.
const EMBED_BATCH: usize = 32;

#[derive(Debug, Clone, Copy, Default)]
pub struct CheckParams<'a> {
    /// Only these sets' matches; empty: every set.
    pub sets: &'a [String],
    /// The exact audit: no Bloom filter, no HNSW, windows every 3 words.
    pub exact: bool,
    /// When a caller's check gives up part way (its deadline, or the caller gone).
    pub stop: Stop<'a>,
    /// What the prompt this text answers puts in scope ([`Guard::scope`]).
    pub scope: Option<&'a Scope>,
}

impl CheckParams<'_> {
    pub const EXACT: CheckParams<'static> =
        CheckParams { sets: &[], exact: true, stop: Stop::NEVER, scope: None };
}

/// Where a long check looks whether to go on (between batches of semantic windows, the
/// expensive part), so its work ends with its caller's interest.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stop<'a> {
    pub deadline: Option<Instant>,
    pub cancelled: Option<&'a AtomicBool>,
}

impl Stop<'_> {
    pub const NEVER: Stop<'static> = Stop { deadline: None, cancelled: None };

    fn reached(&self) -> Result<(), Stopped> {
        if self.cancelled.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Stopped::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Stopped::DeadlineExceeded);
        }
        Ok(())
    }
}

/// A check that stopped early, as [`Stop`] asked; a caller tells it from a failure with
/// `downcast_ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("the check's deadline passed")]
    DeadlineExceeded,
    #[error("the check's caller went away")]
    Cancelled,
}

impl Guard {
    /// Every match in `text` (all layers, whatever the sets' actions). At most one finding per
    /// entry and layer: the strongest.
    pub fn check(&self, text: &str, params: CheckParams) -> Result<Vec<Finding>> {
        params.stop.reached()?;
        let w = normalize::words(text);
        let byte_span = |words: Range<usize>| w.spans[words.start].start..w.spans[words.end - 1].end;
        let mut findings = self.text_findings(text, &w, params.exact);
        let text_facts = facts::text_facts(text, &w);
        let no_scope = Scope::default();
        let scope = params.scope.unwrap_or(&no_scope);
        let mut scoped = self.facts.named(&text_facts);
        scoped.extend(&scope.entries);
        findings.extend(self.fact_findings(
            &text_facts,
            0..text_facts.len(),
            &scoped,
            &scope.given,
            &w.spans,
        ));
        if self.semantic_active() && !w.is_empty() {
            let p = self.params;
            let stride = if params.exact { EXACT_STRIDE_WORDS } else { p.stride_words };
            let windows: Vec<Range<usize>> =
                semantic::windows(w.len(), p.window_words, stride).into_iter().map(byte_span).collect();
            findings.extend(self.semantic_findings(text, &windows, params.exact, params.stop, &scoped)?);
        }
        if !params.sets.is_empty() {
            findings.retain(|f| params.sets.iter().any(|s| s == self.set_name(f.entry)));
        }
        Ok(dedup_best(findings))
    }

    /// N-gram and term findings of `text` (its normalized words `w`) and of what its encoded
    /// spans decode to; `exact`: the exact map alone, without the Bloom filter in front of it.
    pub(super) fn text_findings(&self, text: &str, w: &normalize::Words, exact: bool) -> Vec<Finding> {
        let mut findings = self.word_findings(w, exact);
        for d in encodings::decoded(text) {
            for mut f in self.word_findings(&normalize::words(&d.text), exact) {
                f.span = d.original(f.span);
                findings.push(f);
            }
        }
        findings
    }

    /// N-gram and term findings of normalized words.
    pub(super) fn word_findings(&self, w: &normalize::Words, exact: bool) -> Vec<Finding> {
        let byte_span = |words: Range<usize>| w.spans[words.start].start..w.spans[words.end - 1].end;
        let hashes = word_hashes(&w.words);
        let ngrams = if exact { self.ngrams.scan_exact(&hashes) } else { self.ngrams.scan(&hashes) };
        let mut findings: Vec<Finding> = ngrams
            .into_iter()
            .map(|m| Finding {
                entry: m.entry,
                layer: Layer::Ngram,
                score: m.score,
                span: byte_span(m.words),
            })
            .collect();
        for end in 1..=w.len() {
            for (entry, len) in self.terms.ending_at(&w.words, end) {
                findings.push(Finding {
                    entry,
                    layer: Layer::Term,
                    score: 1.0,
                    span: byte_span(end - len..end),
                });
            }
        }
        findings
    }

    /// What `prompt` puts in scope: the entries it names and the facts it already holds.
    pub fn scope(&self, prompt: &str) -> Scope {
        self.facts.scope(prompt)
    }

    /// Distinctive words a window must share with `entry` to be embedded (the pre-gate).
    fn gate_min(&self, entry: u32) -> usize {
        self.policy(entry).gate_min_words.unwrap_or(self.params.gate_min_words)
    }

    /// The fact rule of `entry`'s set; `None` when the set has the fact layer off.
    pub(super) fn fact_rule(&self, entry: u32) -> Option<FactRule> {
        let policy = self.policy(entry);
        let mut rule = self.fact_rule;
        if let Some(k) = policy.fact_min_facts {
            if k == 0 {
                return None;
            }
            rule.min_facts = k;
        }
        rule.window_words = policy.fact_window_words.unwrap_or(rule.window_words);
        Some(rule)
    }

    /// Fact findings among the windows ending at `facts[ends]` (facts of words at `spans`).
    pub(super) fn fact_findings(
        &self,
        facts: &[TextFact],
        ends: Range<usize>,
        scoped: &HashSet<u32>,
        given: &HashSet<u64>,
        spans: &[Range<usize>],
    ) -> Vec<Finding> {
        self.facts
            .matches(facts, ends, scoped, given, |e| self.fact_rule(e))
            .into_iter()
            .map(|m| Finding {
                entry: m.entry,
                layer: Layer::Fact,
                score: m.facts as f32,
                span: spans[m.words.start].start..spans[m.words.end - 1].end,
            })
            .collect()
    }

    /// Semantic findings for windows (byte spans) of `text`, embedded in batches. A window is
    /// embedded only when some entry holds enough of its distinctive words (the pre-gate); its
    /// score is the cosine plus the lexical evidence, and a match about as close to the commons
    /// is dropped. `exact`: every window, against every forget vector instead of the HNSW
    /// neighbours. `scoped`: entries named by the prompt or the text (a lower threshold).
    pub(super) fn semantic_findings(
        &self,
        text: &str,
        spans: &[Range<usize>],
        exact: bool,
        stop: Stop,
        scoped: &HashSet<u32>,
    ) -> Result<Vec<Finding>> {
        let Some((embedder, index)) = &self.semantic else { return Ok(Vec::new()) };
        let p = self.params;
        let gated = !exact && self.semantic_gated();
        let windows: Vec<(Range<usize>, Vec<u64>)> = spans
            .iter()
            .map(|s| (s.clone(), lexical::distinctive_stems(&normalize::words(&text[s.clone()]).words)))
            .filter(|(_, stems)| !gated || self.facts.gate(stems, |e| self.gate_min(e), scoped))
            .collect();
        let mut out = Vec::new();
        for chunk in windows.chunks(EMBED_BATCH) {
            stop.reached()?;
            let texts: Vec<&str> = chunk.iter().map(|(s, _)| &text[s.clone()]).collect();
            for ((span, stems), emb) in chunk.iter().zip(embedder.embed(&texts)?) {
                let near = if exact {
                    index.brute_force(&emb)
                } else {
                    index.nearest(&emb, 4, self.params.ef_search)
                };
                let commons = embedder.commons_best(&emb);
                for (entry, sim) in near {
                    let policy = self.policy(entry);
                    if commons
                        .is_some_and(|c| policy.commons_filter != Some(false) && sim - c <= p.commons_margin)
                    {
                        continue;
                    }
                    let shared = stems.iter().filter(|&&s| self.facts.holds(s, entry)).count();
                    let evidence = if stems.is_empty() { 0.0 } else { shared as f32 / stems.len() as f32 };
                    let score = sim + policy.lexical_weight.unwrap_or(p.lexical_weight) * evidence;
                    let mut threshold = policy.semantic_threshold.unwrap_or(p.threshold);
                    if scoped.contains(&entry) {
                        threshold = threshold.min(p.scoped_threshold);
                    }
                    if score >= threshold {
                        out.push(Finding { entry, layer: Layer::Semantic, score, span: span.clone() });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Keeps the strongest finding per (entry, layer), in text order.
pub(super) fn dedup_best(findings: Vec<Finding>) -> Vec<Finding> {
    let mut best: HashMap<(u32, Layer), Finding> = HashMap::new();
    for f in findings {
        let slot = best.entry((f.entry, f.layer)).or_insert_with(|| f.clone());
        if f.score > slot.score {
            *slot = f;
        }
    }
    let mut out: Vec<Finding> = best.into_values().collect();
    out.sort_by_key(|f| (f.span.start, f.entry, f.layer));
    out
}
