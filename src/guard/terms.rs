//! The term layer: short entries (names, e-mail addresses, phone numbers, ids) and their
//! aliases, matched exactly on normalized words at word boundaries. They are too short for
//! n-grams, and a partial match of a name must not count.
use super::ngram::fingerprint;
use std::collections::{BTreeSet, HashMap};

#[derive(Clone)]
pub struct TermIndex {
    /// Distinct term lengths in words, so a scan only tries lengths that exist.
    lengths: BTreeSet<usize>,
    exact: HashMap<u64, Vec<u32>>,
}

impl TermIndex {
    /// `terms`: (entry index, (fingerprint, length in words) of its text and of each alias).
    pub fn build<'a>(terms: impl IntoIterator<Item = (u32, &'a [(u64, u32)])>) -> Self {
        Self { lengths: BTreeSet::new(), exact: HashMap::new() }.with(terms)
    }

    /// This index plus `terms`. (Terms are few and short: a copy is cheap.)
    pub fn with<'a>(mut self, terms: impl IntoIterator<Item = (u32, &'a [(u64, u32)])>) -> Self {
        for (entry, fingerprints) in terms {
            for &(fp, len) in fingerprints {
                self.lengths.insert(len as usize);
                let ids = self.exact.entry(fp).or_default();
                if !ids.contains(&entry) {
                    ids.push(entry);
                }
            }
        }
        self
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Terms that end exactly at word `end` (exclusive): (entry, length in words).
    pub fn ending_at(&self, words: &[String], end: usize) -> Vec<(u32, usize)> {
        let mut out = Vec::new();
        for &len in self.lengths.iter().take_while(|&&l| l <= end) {
            if let Some(ids) = self.exact.get(&fingerprint(&words[end - len..end])) {
                out.extend(ids.iter().map(|&id| (id, len)));
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
        let idx = TermIndex::build([(0u32, fps.as_slice())]);
        let find = |text: &str| {
            let w = words(text).words;
            (1..=w.len()).flat_map(|end| idx.ending_at(&w, end)).collect::<Vec<_>>()
        };
        assert_eq!(find("Ask JANE  q public about it"), vec![(0, 3)]);
        assert_eq!(find("mail Jane.Public@Example.org now"), vec![(0, 4)]);
        assert!(find("Janet Q. Publicity").is_empty());
        assert!(find("Jane Public").is_empty());
    }
}
