//! The term layer: short entries (names, e-mail addresses, phone numbers, ids) and their
//! aliases and variants (`variants.rs`), matched exactly on normalized words at word
//! boundaries. They are too short for n-grams, and a partial match of a name must not count.
//! Phone numbers and ids are also matched as joined keys: any run of up to `MAX_JOINED_WORDS`
//! words whose concatenation is the key, so "555 0134 477" and "5550134477" both match.
use super::ngram::{fingerprint, word_hash};
use std::collections::{BTreeSet, HashMap};

#[derive(Clone)]
pub struct TermIndex {
    /// Distinct term lengths in words, so a scan only tries lengths that exist.
    lengths: BTreeSet<usize>,
    exact: HashMap<u64, Vec<u32>>,
    /// Joined keys (hash of the concatenated words) and the longest in bytes.
    joined: HashMap<u64, Vec<u32>>,
    joined_max_bytes: usize,
}

/// Words a joined key may be spread over.
const MAX_JOINED_WORDS: usize = 8;

/// What an entry adds to the index: (fingerprint, length in words) of its term, aliases and
/// phrase variants, and (hash, length in bytes) of its joined keys.
pub type TermKeys<'a> = (u32, &'a [(u64, u32)], &'a [(u64, u32)]);

impl TermIndex {
    pub fn build<'a>(terms: impl IntoIterator<Item = TermKeys<'a>>) -> Self {
        Self { lengths: BTreeSet::new(), exact: HashMap::new(), joined: HashMap::new(), joined_max_bytes: 0 }
            .with(terms)
    }

    /// This index plus `terms`. (Terms are few and short: a copy is cheap.)
    pub fn with<'a>(mut self, terms: impl IntoIterator<Item = TermKeys<'a>>) -> Self {
        for (entry, fingerprints, joined) in terms {
            for &(fp, len) in fingerprints {
                self.lengths.insert(len as usize);
                let ids = self.exact.entry(fp).or_default();
                if !ids.contains(&entry) {
                    ids.push(entry);
                }
            }
            for &(key, bytes) in joined {
                self.joined_max_bytes = self.joined_max_bytes.max(bytes as usize);
                let ids = self.joined.entry(key).or_default();
                if !ids.contains(&entry) {
                    ids.push(entry);
                }
            }
        }
        self
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.joined.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.joined.is_empty()
    }

    /// Terms that end exactly at word `end` (exclusive): (entry, length in words).
    pub fn ending_at(&self, words: &[String], end: usize) -> Vec<(u32, usize)> {
        let mut out = Vec::new();
        for &len in self.lengths.iter().take_while(|&&l| l <= end) {
            if let Some(ids) = self.exact.get(&fingerprint(&words[end - len..end])) {
                out.extend(ids.iter().map(|&id| (id, len)));
            }
        }
        if !self.joined.is_empty() {
            let mut key = String::new();
            for len in 1..=MAX_JOINED_WORDS.min(end) {
                key.insert_str(0, &words[end - len]);
                if key.len() > self.joined_max_bytes {
                    break;
                }
                for &id in self.joined.get(&word_hash(&key)).into_iter().flatten() {
                    if !out.contains(&(id, len)) {
                        out.push((id, len));
                    }
                }
            }
        }
        out
    }

    pub fn max_len(&self) -> usize {
        self.lengths.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::normalize::words;

    #[test]
    fn terms_and_aliases_match_whole_words_only() {
        let term = |t: &str| {
            let w = words(t).words;
            (fingerprint(&w), w.len() as u32)
        };
        let fps = [term("Jane Q. Public"), term("jane.public@example.org")];
        let idx = TermIndex::build([(0u32, fps.as_slice(), &[][..])]);
        let find = |text: &str| {
            let w = words(text).words;
            (1..=w.len()).flat_map(|end| idx.ending_at(&w, end)).collect::<Vec<_>>()
        };
        assert_eq!(find("Ask JANE  q public about it"), vec![(0, 3)]);
        assert_eq!(find("mail Jane.Public@Example.org now"), vec![(0, 3)]);
        assert!(find("Janet Q. Publicity").is_empty());
        assert!(find("Jane Public").is_empty());
    }

    #[test]
    fn joined_keys_match_whatever_the_grouping() {
        let key = |t: &str| {
            let k = words(t).words.concat();
            (word_hash(&k), k.len() as u32)
        };
        let joined = [key("5550134477"), key("EMP-40917-KX")];
        let idx = TermIndex::build([(7u32, &[][..], joined.as_slice())]);
        let find = |text: &str| {
            let w = words(text).words;
            (1..=w.len()).flat_map(|end| idx.ending_at(&w, end)).map(|(e, _)| e).collect::<Vec<_>>()
        };
        for text in [
            "call 555-013-4477",
            "call (555) 0134477",
            "call 555.013.44.77",
            "id emp40917kx",
            "id EMP 40917 KX",
        ] {
            assert_eq!(find(text), vec![7], "{text}");
        }
        for text in ["call 555-013-4478", "call 555-013-44", "id EMP-40918-KX"] {
            assert!(find(text).is_empty(), "{text}");
        }
    }
}
