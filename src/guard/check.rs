//! Where text is checked: every layer of a snapshot over a whole text. The fast check (Bloom
//! filters, HNSW) serves `Check`, prompts and the stream guard's semantic windows; the exact
//! audit runs the same code with `exact` set (exact maps, every forget vector by brute force,
//! denser windows), as qdrant's `SearchParams { exact }` does.
use super::ngram::word_hashes;
use super::{encodings, normalize, semantic, Finding, Guard, Layer};
use anyhow::Result;
use std::collections::HashMap;
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
}

impl CheckParams<'_> {
    pub const EXACT: CheckParams<'static> = CheckParams { sets: &[], exact: true, stop: Stop::NEVER };
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
        if self.semantic_active() && !w.is_empty() {
            let p = self.params;
            let stride = if params.exact { EXACT_STRIDE_WORDS } else { p.stride_words };
            let windows: Vec<Range<usize>> =
                semantic::windows(w.len(), p.window_words, stride).into_iter().map(byte_span).collect();
            findings.extend(self.semantic_findings(text, &windows, params.exact, params.stop)?);
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

    /// Semantic findings for windows (byte spans) of `text`, embedded in batches; `exact`:
    /// against every forget vector instead of the HNSW neighbours.
    pub(super) fn semantic_findings(
        &self,
        text: &str,
        spans: &[Range<usize>],
        exact: bool,
        stop: Stop,
    ) -> Result<Vec<Finding>> {
        let Some((embedder, index)) = &self.semantic else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for chunk in spans.chunks(EMBED_BATCH) {
            stop.reached()?;
            let texts: Vec<&str> = chunk.iter().map(|s| &text[s.clone()]).collect();
            for (span, emb) in chunk.iter().zip(embedder.embed(&texts)?) {
                let near = if exact {
                    index.brute_force(&emb)
                } else {
                    index.nearest(&emb, 4, self.params.ef_search)
                };
                for (entry, sim) in near {
                    let threshold = self.policy(entry).semantic_threshold.unwrap_or(self.params.threshold);
                    if sim >= threshold {
                        out.push(Finding { entry, layer: Layer::Semantic, score: sim, span: span.clone() });
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
