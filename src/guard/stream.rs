//! Guarded streaming: checks a generation as its text arrives and releases only text the
//! guard has cleared. The newest `hold_back_words` words (and any unfinished word) are held
//! back, so a match is found before its words reach the client, including a match that spans
//! two chunks. After a block nothing more is released.
use super::{normalize, Action, Finding, Guard};
use crate::proto::Layer;
use anyhow::Result;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Newly cleared text (possibly empty).
    Text(String),
    /// A `block` set matched: the stream ends; nothing more is released.
    Blocked(Finding),
}

pub struct StreamGuard {
    guard: Arc<Guard>,
    text: String,
    /// Complete normalized words and their byte spans in `text`.
    words: Vec<String>,
    spans: Vec<Range<usize>>,
    /// Where the text not yet cut into complete words starts.
    tail_from: usize,
    /// Bytes of `text` released to the client.
    released: usize,
    /// Entries hit by each word n-gram so far.
    hits: Vec<Vec<u32>>,
    /// Words covered by the last semantic check.
    semantic_done: usize,
    /// Matches of `mask` and `monitor` sets (delivered, reported).
    findings: Vec<Finding>,
    blocked: Option<Finding>,
}

impl StreamGuard {
    pub fn new(guard: Arc<Guard>) -> Self {
        Self {
            guard,
            text: String::new(),
            words: Vec::new(),
            spans: Vec::new(),
            tail_from: 0,
            released: 0,
            hits: Vec::new(),
            semantic_done: 0,
            findings: Vec::new(),
            blocked: None,
        }
    }

    /// Adds generated text; returns what may now be released, or the block.
    pub fn push(&mut self, delta: &str) -> Result<Release> {
        if let Some(f) = &self.blocked {
            return Ok(Release::Blocked(f.clone()));
        }
        self.text.push_str(delta);
        let new = self.cut_words(false);
        self.scan(new, false)?;
        let hold = self.guard.hold_back_words;
        let until = if hold == 0 {
            self.tail_from
        } else if self.words.len() > hold {
            self.spans[self.words.len() - hold].start
        } else {
            self.released
        };
        Ok(self.release(until))
    }

    /// The generation is over: checks what was held back and releases it if it is clear.
    pub fn finish(&mut self) -> Result<Release> {
        if let Some(f) = &self.blocked {
            return Ok(Release::Blocked(f.clone()));
        }
        let new = self.cut_words(true);
        self.scan(new, true)?;
        Ok(self.release(self.text.len()))
    }

    /// Matches of sets that do not block (mask, monitor), strongest per entry and layer.
    pub fn findings(&self) -> Vec<Finding> {
        super::dedup_best(self.findings.clone())
    }

    /// Bytes of the text released so far.
    pub fn released(&self) -> usize {
        self.released
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn release(&mut self, until: usize) -> Release {
        if let Some(f) = &self.blocked {
            return Release::Blocked(f.clone());
        }
        let until = until.max(self.released);
        let out = self.text[self.released..until].to_string();
        self.released = until;
        Release::Text(out)
    }

    /// Cuts the unprocessed tail into words; the last one is complete only once a separator
    /// follows it (or at the end). Returns the indices of the new complete words.
    fn cut_words(&mut self, at_end: bool) -> Range<usize> {
        let before = self.words.len();
        let tail = &self.text[self.tail_from..];
        let w = normalize::words(tail);
        let complete = match w.spans.last() {
            Some(last) if !at_end && last.end == tail.len() => w.len() - 1,
            _ => w.len(),
        };
        let offset = self.tail_from;
        for (word, span) in w.words.into_iter().zip(w.spans).take(complete) {
            self.tail_from = offset + span.end;
            self.words.push(word);
            self.spans.push(offset + span.start..offset + span.end);
        }
        before..self.words.len()
    }

    fn scan(&mut self, new: Range<usize>, at_end: bool) -> Result<()> {
        let guard = self.guard.clone();
        let (mut ngram_time, mut term_time) = (Duration::ZERO, Duration::ZERO);
        for end in new.start + 1..=new.end {
            let t = Instant::now();
            if end >= guard.ngrams.params.n {
                let hits = guard.ngrams.hits(&self.words, end).to_vec();
                self.hits.push(hits.clone());
                let at = self.hits.len() - 1;
                for entry in hits {
                    if let Some(m) = guard.ngrams.evaluate(&self.hits, at, entry) {
                        let words = guard.ngrams.word_span(&m.positions);
                        let span = self.spans[words.start].start..self.spans[words.end - 1].end;
                        self.on_finding(Finding { entry, layer: Layer::Ngram, score: m.score, span });
                    }
                }
            }
            let t2 = Instant::now();
            ngram_time += t2 - t;
            for (entry, len) in guard.terms.ending_at(&self.words, end) {
                let span = self.spans[end - len].start..self.spans[end - 1].end;
                self.on_finding(Finding { entry, layer: Layer::Term, score: 1.0, span });
            }
            term_time += t2.elapsed();
            if self.blocked.is_some() {
                break;
            }
        }
        if !new.is_empty() {
            crate::metrics::guard_layer("ngram", ngram_time);
            crate::metrics::guard_layer("term", term_time);
        }
        if self.blocked.is_some() {
            return Ok(());
        }
        let p = guard.params;
        let unchecked = self.words.len() - self.semantic_done;
        if guard.semantic_active() && (unchecked >= p.stride_words || (at_end && unchecked > 0)) {
            let len = self.words.len();
            let window = self.spans[len.saturating_sub(p.window_words)].start..self.spans[len - 1].end;
            let t = Instant::now();
            let found = guard.semantic_check(&self.text, &[window])?;
            crate::metrics::guard_layer("semantic", t.elapsed());
            for f in found {
                self.on_finding(f);
            }
            self.semantic_done = len;
        }
        Ok(())
    }

    fn on_finding(&mut self, f: Finding) {
        match self.guard.policy(f.entry).action {
            Action::Block => {
                if self.blocked.is_none() {
                    self.blocked = Some(f);
                }
            }
            Action::Mask | Action::Monitor => self.findings.push(f),
        }
    }
}
