//! Decode-time masking (MemFree, Ippolito et al. 2022): token n-grams of forget documents in
//! `mask` sets. At each decoding step the last n-1 tokens form a prefix; if a forget document
//! continues that prefix with token t, sampling t would complete a forgotten token n-gram, so
//! t is masked and another token is sampled. A Bloom filter over prefixes gates the exact map,
//! so the common case (no forgotten prefix) costs one hash and one filter probe per step.
use super::ngram::{bloom_over, fingerprint_tokens};
use bloomfilter::Bloom;
use std::collections::HashMap;

const BLOOM_SEED: [u8; 32] = *b"lethe-token-bloom-k1lethe-t-k2!!";

pub struct TokenIndex {
    pub n: usize,
    bloom: Bloom<u64>,
    /// Prefix fingerprint -> tokens that would complete a forgotten n-gram.
    next: HashMap<u64, Vec<u32>>,
}

impl TokenIndex {
    /// `grams`: (fingerprint of the n-1 token prefix, completing token) of every token
    /// n-gram of the forget documents of `mask` sets.
    pub fn build<'a>(n: usize, fp_rate: f64, grams: impl IntoIterator<Item = &'a (u64, u32)>) -> Self {
        assert!(n >= 2, "a token n-gram needs a prefix");
        let mut next: HashMap<u64, Vec<u32>> = HashMap::new();
        for &(prefix, token) in grams {
            let list = next.entry(prefix).or_default();
            if !list.contains(&token) {
                list.push(token);
            }
        }
        let bloom = bloom_over(next.keys(), next.len(), fp_rate, &BLOOM_SEED);
        Self { n, bloom, next }
    }

    pub fn len(&self) -> usize {
        self.next.len()
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    pub fn bloom_bytes(&self) -> usize {
        self.bloom.as_slice().len()
    }

    /// Tokens that must not follow `context` (the prompt and the tokens generated so far).
    pub fn forbidden(&self, context: &[u32]) -> &[u32] {
        if context.len() < self.n - 1 {
            return &[];
        }
        let fp = fingerprint_tokens(&context[context.len() + 1 - self.n..]);
        if !self.bloom.check(&fp) {
            return &[];
        }
        self.next.get(&fp).map_or(&[], Vec::as_slice)
    }

    /// Whether `tokens` contain any forgotten n-gram (for tests and audits).
    pub fn contains_forgotten(&self, tokens: &[u32]) -> bool {
        (self.n - 1..tokens.len()).any(|i| self.forbidden(&tokens[..i]).contains(&tokens[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_completing_token_is_forbidden() {
        let grams: Vec<(u64, u32)> =
            [1u32, 2, 3, 4, 5].windows(3).map(|g| (fingerprint_tokens(&g[..2]), g[2])).collect();
        let idx = TokenIndex::build(3, 1e-4, &grams);
        assert_eq!(idx.forbidden(&[9, 1, 2]), &[3]);
        assert_eq!(idx.forbidden(&[2, 3]), &[4]);
        assert!(idx.forbidden(&[2, 1]).is_empty());
        assert!(idx.forbidden(&[5]).is_empty());
        assert!(idx.contains_forgotten(&[7, 3, 4, 5]));
        assert!(!idx.contains_forgotten(&[1, 2, 7, 3, 4, 8]));
    }
}
