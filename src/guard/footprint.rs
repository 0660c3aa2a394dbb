//! How big a snapshot is: fingerprint and vector counts per set and per index, and their
//! approximate memory, for `Status`, `ListSets` and sizing (docs/operations.md).

/// Approximate memory of each index, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LayerBytes {
    pub ngram: usize,
    pub term: usize,
    pub token: usize,
    pub semantic: usize,
}

/// Sizes of one set's part of the indexes. Fingerprints are counted per entry (one shared by
/// two entries counts twice); the snapshot totals count distinct ones.
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

/// Bytes per key of a fingerprint map: key, entry list and hash-table overhead.
const MAP_BYTES_PER_KEY: usize = 48;

/// Bytes per indexed vector: the embedding, 16 HNSW links and bookkeeping.
fn vector_bytes(dim: usize) -> usize {
    dim * 4 + 16 * 8 + 64
}

/// Bits per key of a Bloom filter sized for `fp_rate`.
pub(super) fn bloom_bits_per_key(fp_rate: f64) -> f64 {
    -fp_rate.ln() / std::f64::consts::LN_2.powi(2)
}

/// Approximate memory of one set's share of the indexes.
pub(super) fn estimate_bytes(s: &SetStats, dim: usize, bloom_bits_per_key: f64) -> usize {
    let keys = s.ngram_fingerprints + s.token_prefixes;
    (keys as f64 * bloom_bits_per_key / 8.0) as usize
        + (keys + s.term_fingerprints) * MAP_BYTES_PER_KEY
        + s.semantic_vectors * vector_bytes(dim)
}

/// Approximate memory of each index from its counts: Bloom filters (their actual bytes),
/// fingerprint maps (key, entry list and hash-table overhead), embeddings and the HNSW graph
/// (16 links per vector).
pub(super) fn layer_bytes(
    counts: IndexSizes,
    ngram_bloom_bytes: usize,
    token_bloom_bytes: usize,
    dim: usize,
) -> LayerBytes {
    LayerBytes {
        ngram: ngram_bloom_bytes + counts.ngrams * MAP_BYTES_PER_KEY,
        term: counts.terms * MAP_BYTES_PER_KEY,
        token: token_bloom_bytes + counts.token_prefixes * MAP_BYTES_PER_KEY,
        semantic: counts.vectors * vector_bytes(dim),
    }
}

/// Fingerprint counts of a snapshot: word n-grams, terms (with aliases), token prefixes,
/// semantic windows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IndexSizes {
    pub ngrams: usize,
    pub terms: usize,
    pub token_prefixes: usize,
    pub vectors: usize,
}
