//! Guarded streaming: checks a generation as its text arrives and releases only text the
//! guard has cleared. The newest `hold_back_words` words (and any unfinished word) are held
//! back, so a match is found before its words reach the client, including a match that spans
//! two chunks. After a block nothing more is released.
use super::facts::{self, Scope, TextFact};
use super::ngram::{word_hash, Hit};
use super::{encodings, normalize, Finding, Guard, Layer};
use crate::forget::Action;
use anyhow::Result;
use std::collections::HashSet;
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

/// Words between two looks for encoded copies (fewer when the hold-back is shorter), and the
/// words each look covers.
const ENCODED_STRIDE_WORDS: usize = 8;
const ENCODED_WINDOW_WORDS: usize = 24;

pub struct StreamGuard {
    guard: Arc<Guard>,
    text: String,
    /// Complete normalized words, their hashes (for n-gram fingerprints) and their byte spans
    /// in `text`.
    words: Vec<String>,
    hashes: Vec<u64>,
    spans: Vec<Range<usize>>,
    /// Where the text not yet cut into complete words starts.
    tail_from: usize,
    /// Bytes of `text` released to the client.
    released: usize,
    /// Entries hit by each word n-gram so far.
    hits: Vec<Vec<Hit>>,
    /// Words covered by the last semantic check, and by the last look for encoded copies.
    semantic_done: usize,
    decoded_done: usize,
    /// Facts of the words decided so far (`facts_done`), the entries in scope (named by the
    /// prompt or the text) and the names the prompt holds.
    facts: Vec<TextFact>,
    facts_done: usize,
    scoped: HashSet<u32>,
    given: HashSet<u64>,
    /// Matches of `mask` and `monitor` sets (delivered, reported).
    findings: Vec<Finding>,
    blocked: Option<Finding>,
    /// `mask` sets block this stream: its source cannot mask (an upstream engine).
    masks_block: bool,
}

impl StreamGuard {
    pub fn new(guard: Arc<Guard>) -> Self {
        Self {
            guard,
            text: String::new(),
            words: Vec::new(),
            hashes: Vec::new(),
            spans: Vec::new(),
            tail_from: 0,
            released: 0,
            hits: Vec::new(),
            semantic_done: 0,
            decoded_done: 0,
            facts: Vec::new(),
            facts_done: 0,
            scoped: HashSet::new(),
            given: HashSet::new(),
            findings: Vec::new(),
            blocked: None,
            masks_block: false,
        }
    }

    /// Matches of `mask` sets block this stream (`yes`), as a source without decode-time
    /// masking needs: an upstream engine's text was never masked.
    pub fn masks_block(mut self, yes: bool) -> Self {
        self.masks_block = yes;
        self
    }

    /// This stream answering a prompt with `scope` ([`Guard::scope`]).
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scoped = scope.entries;
        self.given = scope.given;
        self
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
        super::check::dedup_best(self.findings.clone())
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

    /// Cuts the unprocessed tail into words; a word is complete once nothing appended can change
    /// it (`normalize::unsettled_from`), or at the end. Returns the indices of the new complete
    /// words.
    fn cut_words(&mut self, at_end: bool) -> Range<usize> {
        let before = self.words.len();
        let tail = &self.text[self.tail_from..];
        let w = normalize::words(tail);
        let settled = if at_end { tail.len() } else { normalize::unsettled_from(tail) };
        let complete = w.spans.iter().take_while(|s| s.end <= settled).count();
        let offset = self.tail_from;
        for (word, span) in w.words.into_iter().zip(w.spans).take(complete) {
            self.tail_from = offset + span.end;
            self.hashes.push(word_hash(&word));
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
                let hits = guard.ngrams.hits(&self.hashes, end);
                let entries: Vec<u32> = hits.iter().map(|h| h.entry).collect();
                self.hits.push(hits);
                let at = self.hits.len() - 1;
                for entry in entries {
                    if let Some(m) = guard.ngrams.evaluate(&self.hits, at, entry) {
                        let span = self.spans[m.words.start].start..self.spans[m.words.end - 1].end;
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
        self.scan_encoded(at_end);
        if self.blocked.is_some() {
            return Ok(());
        }
        self.scan_facts(at_end);
        if self.blocked.is_some() {
            return Ok(());
        }
        let p = guard.params;
        let unchecked = self.words.len() - self.semantic_done;
        if guard.semantic_active() && (unchecked >= p.stride_words || (at_end && unchecked > 0)) {
            let len = self.words.len();
            let window = self.spans[len.saturating_sub(p.window_words)].start..self.spans[len - 1].end;
            let t = Instant::now();
            let found = guard.semantic_findings(
                &self.text,
                &[window],
                false,
                super::check::Stop::NEVER,
                &self.scoped,
            )?;
            crate::metrics::guard_layer("semantic", t.elapsed());
            for f in found {
                self.on_finding(f);
            }
            self.semantic_done = len;
        }
        Ok(())
    }

    /// Facts of the words now decided (a word's fact can depend on the words after it), the
    /// entries they name, and the fact windows ending at them.
    fn scan_facts(&mut self, at_end: bool) {
        if self.guard.facts.is_empty() {
            return;
        }
        let t = Instant::now();
        let decided =
            if at_end { self.words.len() } else { self.words.len().saturating_sub(facts::LOOKAHEAD_WORDS) };
        let first = self.facts.len();
        for i in self.facts_done..decided {
            self.facts.extend(facts::fact_at(&self.text, &self.words, &self.spans, i));
        }
        self.facts_done = self.facts_done.max(decided);
        if self.facts.len() > first {
            let guard = self.guard.clone();
            self.scoped.extend(guard.facts.named(&self.facts[first.saturating_sub(1)..]));
            let found = guard.fact_findings(
                &self.facts,
                first..self.facts.len(),
                &self.scoped,
                &self.given,
                &self.spans,
            );
            for f in found {
                self.on_finding(f);
            }
        }
        crate::metrics::guard_layer("fact", t.elapsed());
    }

    /// Encoded copies (base64, hex, URL-encoding; ROT13, backwards, upside down): the recent
    /// text, back to the start of the run it is in and with the tail still arriving, is
    /// decoded every few words and at the end, while its words are still held back.
    fn scan_encoded(&mut self, at_end: bool) {
        let stride = (self.guard.hold_back_words / 2).clamp(1, ENCODED_STRIDE_WORDS);
        let fresh = self.words.len() - self.decoded_done;
        if !(fresh >= stride || (at_end && (fresh > 0 || self.tail_from < self.text.len()))) {
            return;
        }
        self.decoded_done = self.words.len();
        let first = self.words.len().saturating_sub(ENCODED_WINDOW_WORDS);
        let from = self.spans.get(first).map_or(self.tail_from, |s| s.start);
        let before = self.text[..from].char_indices().rev().find(|(_, c)| c.is_whitespace());
        let from = before.map_or(0, |(i, c)| i + c.len_utf8());
        let t = Instant::now();
        let guard = self.guard.clone();
        for d in encodings::decoded(&self.text[from..]) {
            for f in guard.word_findings(&normalize::words(&d.text), false) {
                let span = d.original(f.span.clone());
                self.on_finding(Finding { span: from + span.start..from + span.end, ..f });
            }
        }
        crate::metrics::guard_layer("encoded", t.elapsed());
    }

    fn on_finding(&mut self, f: Finding) {
        match self.guard.policy(f.entry).action {
            Action::Mask if self.masks_block => {
                if self.blocked.is_none() {
                    self.blocked = Some(f);
                }
            }
            Action::Block => {
                if self.blocked.is_none() {
                    self.blocked = Some(f);
                }
            }
            Action::Mask | Action::Monitor => self.findings.push(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forget::{Entry, SetPolicy};
    use crate::guard::GuardConfig;

    const DOC: &str = "the keeper of the northern lighthouse painted its heavy door a new shade of blue every single spring";

    fn guard(action: Action, hold_back_words: usize) -> Arc<Guard> {
        let entry = Entry::document("s", "d", DOC);
        let cfg = GuardConfig {
            embedder: None,
            hold_back_words,
            default_policy: SetPolicy { action, ..Default::default() },
            ..Default::default()
        };
        Arc::new(Guard::build(&[entry], &cfg, None, None, 1).unwrap())
    }

    /// Pushes `text` in chunks of `size` bytes (cut inside words), then finishes; returns what
    /// was released and how the stream ended.
    fn run(stream: &mut StreamGuard, text: &str, size: usize) -> (String, Release) {
        let mut out = String::new();
        let bytes: Vec<char> = text.chars().collect();
        for chunk in bytes.chunks(size) {
            match stream.push(&chunk.iter().collect::<String>()).unwrap() {
                Release::Text(t) => out.push_str(&t),
                blocked => return (out, blocked),
            }
        }
        match stream.finish().unwrap() {
            Release::Text(t) => {
                out.push_str(&t);
                (out, Release::Text(String::new()))
            }
            blocked => (out, blocked),
        }
    }

    #[test]
    fn a_match_split_across_pushes_is_never_released() {
        let preamble = "Sure, here it is in full: ";
        let text = format!("{preamble}{DOC} and that is all");
        for size in [1, 3, 7, 40] {
            let mut stream = StreamGuard::new(guard(Action::Block, 12));
            let (released, end) = run(&mut stream, &text, size);
            let Release::Blocked(f) = end else { panic!("chunks of {size}: not blocked") };
            assert_eq!(f.layer, Layer::Ngram);
            assert!(preamble.starts_with(&released), "chunks of {size}: released {released:?}");
            assert!(stream.released() <= preamble.len());
            assert!(f.span.start >= preamble.len());
        }
    }

    #[test]
    fn nothing_is_released_after_a_block() {
        let mut stream = StreamGuard::new(guard(Action::Block, 12));
        let (released, end) = run(&mut stream, DOC, 5);
        assert!(matches!(end, Release::Blocked(_)));
        let before = stream.released();
        assert!(matches!(stream.push(" more words that are perfectly clean").unwrap(), Release::Blocked(_)));
        assert!(matches!(stream.finish().unwrap(), Release::Blocked(_)));
        assert_eq!(stream.released(), before);
        assert_eq!(released.len(), before);
    }

    #[test]
    fn hold_back_zero_releases_each_complete_word() {
        let mut stream = StreamGuard::new(guard(Action::Block, 0));
        assert_eq!(stream.push("hello wor").unwrap(), Release::Text("hello".into()));
        assert_eq!(stream.push("ld and").unwrap(), Release::Text(" world".into()));
        assert_eq!(stream.finish().unwrap(), Release::Text(" and".into()));
    }

    #[test]
    fn finish_releases_a_clean_tail_held_back() {
        let mut stream = StreamGuard::new(guard(Action::Block, 12));
        assert_eq!(stream.push("tomatoes like sun and ").unwrap(), Release::Text(String::new()));
        assert_eq!(stream.push("water").unwrap(), Release::Text(String::new()));
        assert_eq!(stream.finish().unwrap(), Release::Text("tomatoes like sun and water".into()));
        assert!(stream.findings().is_empty());
    }

    #[test]
    fn monitor_matches_are_delivered_and_reported() {
        let mut stream = StreamGuard::new(guard(Action::Monitor, 12));
        let (released, end) = run(&mut stream, DOC, 9);
        assert_eq!(end, Release::Text(String::new()));
        assert_eq!(released, DOC);
        let findings = stream.findings();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].layer, Layer::Ngram);
    }

    #[test]
    fn without_hold_back_a_block_comes_after_part_of_the_match_was_released() {
        let mut stream = StreamGuard::new(guard(Action::Block, 0));
        let (released, end) = run(&mut stream, DOC, 4);
        let Release::Blocked(f) = end else { panic!("not blocked") };
        assert!(!released.is_empty());
        assert!(f.span.start < stream.released(), "the late block is visible to the accounting");
    }
}
