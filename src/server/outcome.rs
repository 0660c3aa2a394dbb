//! The end of a generation, accounted: its verdict, its outcome (the `outcome` metric label),
//! which sets' content reached the client and why (`lethe_leaks_total`), and the findings
//! reported to the client. A pure function of the stream guard's state, so it is tested
//! without a model.
use crate::forget::Action;
use crate::guard::stream::StreamGuard;
use crate::guard::{Finding, Guard};
use crate::proto::Verdict;
use std::collections::BTreeSet;

/// What happened to forgotten content in one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    Suppressed,
    Blocked,
    Leaked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Suppressed => "suppressed",
            Outcome::Blocked => "blocked",
            Outcome::Leaked => "leaked",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Accounting {
    pub verdict: Verdict,
    pub outcome: Outcome,
    /// (forget set, reason) of content that reached the client: `monitor`, `mask` (still
    /// matched after masking), `late_block` (matched after part of it was released).
    pub leaks: BTreeSet<(String, &'static str)>,
    /// The block (if any) first, then the matches of sets that deliver.
    pub findings: Vec<Finding>,
}

/// Accounts for a generation that ended with `stream` in this state: `blocked` is the block
/// that stopped it, `suppressed` whether decode-time masking changed a token.
pub fn account(
    guard: &Guard,
    stream: &StreamGuard,
    blocked: Option<Finding>,
    suppressed: bool,
) -> Accounting {
    let delivered = stream.findings();
    let verdict = match (&blocked, suppressed) {
        (Some(_), _) => Verdict::Block,
        (None, true) => Verdict::Suppress,
        (None, false) => Verdict::Allow,
    };
    let mut leaks = BTreeSet::new();
    for f in &delivered {
        let reason = match guard.policy(f.entry).action {
            Action::Mask => "mask",
            _ => "monitor",
        };
        leaks.insert((guard.set_name(f.entry).to_string(), reason));
    }
    let late_block = blocked.as_ref().filter(|f| f.span.start < stream.released());
    if let Some(f) = late_block {
        leaks.insert((guard.set_name(f.entry).to_string(), "late_block"));
    }
    let outcome = match verdict {
        _ if !leaks.is_empty() => Outcome::Leaked,
        Verdict::Block => Outcome::Blocked,
        Verdict::Suppress => Outcome::Suppressed,
        _ => Outcome::Clean,
    };
    Accounting { verdict, outcome, leaks, findings: blocked.into_iter().chain(delivered).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forget::{Entry, SetPolicy};
    use crate::guard::stream::Release;
    use crate::guard::GuardConfig;
    use std::sync::Arc;

    const BLOCKED: &str = "the keeper of the northern lighthouse painted its heavy door a new shade of blue";
    const WATCHED: &str = "a quiet baker in the valley sold seven loaves of rye bread before dawn each day";

    fn guard(hold_back_words: usize) -> Arc<Guard> {
        let mut cfg = GuardConfig { embedder: None, hold_back_words, ..Default::default() };
        cfg.sets.insert("watched".into(), SetPolicy { action: Action::Monitor, ..Default::default() });
        let entries = [Entry::document("blocked", "b", BLOCKED), Entry::document("watched", "w", WATCHED)];
        Arc::new(Guard::build(&entries, &cfg, None, None, 1).unwrap())
    }

    /// Streams `text` word by word as a generation does, then accounts for it.
    fn generate(guard: &Arc<Guard>, text: &str, suppressed: bool) -> Accounting {
        let mut stream = StreamGuard::new(guard.clone());
        let mut blocked = None;
        for word in text.split_inclusive(' ') {
            if let Release::Blocked(f) = stream.push(word).unwrap() {
                blocked = Some(f);
                break;
            }
        }
        if blocked.is_none() {
            if let Release::Blocked(f) = stream.finish().unwrap() {
                blocked = Some(f);
            }
        }
        account(guard, &stream, blocked, suppressed)
    }

    #[test]
    fn clean_suppressed_blocked_and_leaked() {
        let g = guard(12);
        let clean = generate(&g, "tomatoes like sun and water and a little patience", false);
        assert_eq!((clean.verdict, clean.outcome), (Verdict::Allow, Outcome::Clean));
        assert!(clean.leaks.is_empty() && clean.findings.is_empty());

        let masked = generate(&g, "tomatoes like sun", true);
        assert_eq!((masked.verdict, masked.outcome), (Verdict::Suppress, Outcome::Suppressed));

        let blocked = generate(&g, &format!("well: {BLOCKED}"), false);
        assert_eq!((blocked.verdict, blocked.outcome), (Verdict::Block, Outcome::Blocked));
        assert!(blocked.leaks.is_empty());
        assert_eq!(g.set_name(blocked.findings[0].entry), "blocked");

        let watched = generate(&g, WATCHED, false);
        assert_eq!((watched.verdict, watched.outcome), (Verdict::Allow, Outcome::Leaked));
        assert_eq!(watched.leaks, BTreeSet::from([("watched".to_string(), "monitor")]));
        assert_eq!(watched.findings.len(), 1);
    }

    #[test]
    fn a_block_found_after_part_of_its_match_was_released_is_a_leak() {
        let g = guard(0);
        let late = generate(&g, BLOCKED, false);
        assert_eq!((late.verdict, late.outcome), (Verdict::Block, Outcome::Leaked));
        assert_eq!(late.leaks, BTreeSet::from([("blocked".to_string(), "late_block")]));
    }
}
