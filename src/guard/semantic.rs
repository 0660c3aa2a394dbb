//! The semantic layer: paraphrases of forget documents. Documents are cut into overlapping
//! word windows, embedded with a sentence embedder (all-MiniLM-L6-v2 on candle's BERT, mean
//! pooled and L2-normalized) and put in an HNSW index (hnsw_rs); an output window is embedded
//! and its nearest forget windows are found by cosine similarity.
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use hnsw_rs::prelude::{DistDot, Hnsw};
use serde::Deserialize;
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SemanticParams {
    /// Words per embedded window, for forget documents and outputs alike.
    pub window_words: usize,
    /// Words between two output windows (and between forget-document windows).
    pub stride_words: usize,
    /// Cosine similarity at or above which a window matches (per-set policies may override).
    pub threshold: f32,
    /// HNSW search breadth.
    pub ef_search: usize,
    /// Added to the similarity, times the share of the output window's distinctive words
    /// (`lexical.rs`) that the forget document holds too.
    pub lexical_weight: f32,
    /// A match is dropped when the output window is within this of its best commons window
    /// (sets with `commons_filter`; `commons.rs`).
    pub commons_margin: f32,
    /// Embed an output window only when some entry holds this many of its distinctive words
    /// (the pre-gate; 0 embeds every window). The exact audit embeds every window. 1, not 2:
    /// famous texts are paraphrased in common words (docs/guard-eval.md).
    pub gate_min_words: usize,
    /// Threshold for an entry the prompt or the output names (`facts.rs`).
    pub scoped_threshold: f32,
}

impl Default for SemanticParams {
    fn default() -> Self {
        Self {
            window_words: 24,
            stride_words: 12,
            threshold: 0.80,
            ef_search: 64,
            lexical_weight: 0.3,
            commons_margin: 0.15,
            gate_min_words: 1,
            scoped_threshold: 0.65,
        }
    }
}

/// Thresholds a semantic score can meet: a cosine in [-1, 1] plus lexical evidence up to 1.
pub const SEMANTIC_THRESHOLDS: std::ops::RangeInclusive<f32> = -1.0..=2.0;

impl SemanticParams {
    /// The invariants windowing and scoring rely on (`[guard.semantic]`).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.window_words >= 1 && self.stride_words >= 1,
            "guard.semantic.window_words and stride_words must be at least 1"
        );
        anyhow::ensure!(
            SEMANTIC_THRESHOLDS.contains(&self.threshold)
                && SEMANTIC_THRESHOLDS.contains(&self.scoped_threshold),
            "guard.semantic.threshold and scoped_threshold must be in [-1, 2]"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.lexical_weight),
            "guard.semantic.lexical_weight must be in [0, 1]"
        );
        Ok(())
    }
}

/// Sentence embedder: BERT-family safetensors + tokenizer.json + config.json in one folder.
pub struct Embedder {
    model: BertModel,
    /// Windows of public boilerplate embedded by this embedder (`commons.rs`); empty: no
    /// commons filter.
    commons: Vec<Vec<f32>>,
    tokenizer: Tokenizer,
    pub dim: usize,
    /// Identity of the weights and tokenizer (xxh3-64 of the files): embeddings made by
    /// another embedder are not comparable.
    pub id: String,
}

/// MiniLM was trained on sequences up to 256 tokens; longer input is truncated.
const MAX_TOKENS: usize = 256;

impl Embedder {
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
        };
        let (config_bytes, tokenizer_bytes) = (read("config.json")?, read("tokenizer.json")?);
        let config: BertConfig = serde_json::from_slice(&config_bytes).context("embedder config.json")?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| anyhow::anyhow!("embedder tokenizer.json: {e}"))?;
        // The shipped tokenizer pads every input to 128 tokens; pad to the longest in a batch.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| anyhow::anyhow!("embedder truncation: {e}"))?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is mapped read-only and not modified while the embedder lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
        let model = BertModel::load(vb, &config).context("loading the embedder weights")?;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for bytes in [config_bytes, tokenizer_bytes, read("model.safetensors")?] {
            h.update(&bytes);
        }
        let id = format!("{}-{:016x}", dir.file_name().unwrap_or_default().to_string_lossy(), h.digest());
        Ok(Self { model, tokenizer, commons: Vec::new(), dim: config.hidden_size, id })
    }

    /// This embedder with `commons`, windows of public boilerplate it embedded (`commons.rs`).
    pub fn with_commons(mut self, commons: Vec<Vec<f32>>) -> Self {
        self.commons = commons;
        self
    }

    /// Windows of boilerplate the commons filter compares with.
    pub fn commons_windows(&self) -> usize {
        self.commons.len()
    }

    /// The highest cosine similarity of `embedding` to a commons window; `None` without commons.
    pub fn commons_best(&self, embedding: &[f32]) -> Option<f32> {
        self.commons.iter().map(|v| dot(v, embedding)).reduce(f32::max)
    }

    /// Unit-length embeddings of `texts`, computed in one batch.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("embedder tokenization: {e}"))?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor> {
            let data: Vec<Tensor> = encodings
                .iter()
                .map(|e| Tensor::new(f(e), &Device::Cpu))
                .collect::<candle_core::Result<_>>()?;
            Ok(Tensor::stack(&data, 0)?)
        };
        let ids = rows(&|e| e.get_ids())?;
        let type_ids = rows(&|e| e.get_type_ids())?;
        let mask = rows(&|e| e.get_attention_mask())?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        // Mean over real tokens, then L2 normalization (sentence-transformers' pooling).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(mean.broadcast_div(&norm)?.to_vec2()?)
    }
}

/// Word windows of a document: `window` words every `stride` words, the last one ending at
/// the document's end (so its tail is covered), or the whole document if it is shorter.
pub fn windows(len: usize, window: usize, stride: usize) -> Vec<std::ops::Range<usize>> {
    if len <= window {
        return vec![0..len];
    }
    let mut out: Vec<_> = (0..=len - window).step_by(stride.max(1)).map(|s| s..s + window).collect();
    if out.last().is_some_and(|w| w.end < len) {
        out.push(len - window..len);
    }
    out
}

/// Sentence spans (bytes) of a text, short sentences merged with the next until they have at
/// least `min_words` words. Paraphrases tend to follow the original sentence by sentence, so
/// sentences are indexed besides the fixed windows.
pub fn sentences(text: &str, min_words: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut words = 0;
    let mut in_word = false;
    for (at, c) in text.char_indices() {
        if c.is_alphanumeric() {
            if !in_word {
                words += 1;
                start.get_or_insert(at);
            }
            in_word = true;
        } else {
            in_word = false;
        }
        let end_of_sentence = matches!(c, '.' | '!' | '?' | ';' | ':')
            && text[at + c.len_utf8()..].chars().next().is_none_or(char::is_whitespace);
        if end_of_sentence && words >= min_words {
            if let Some(s) = start.take() {
                out.push(s..at + c.len_utf8());
            }
            words = 0;
        }
    }
    if let Some(s) = start {
        if words >= min_words || out.is_empty() {
            out.push(s..text.len());
        } else if let Some(last) = out.last_mut() {
            last.end = text.len();
        }
    }
    out
}

/// One HNSW graph over some of the forget windows, with the vectors it holds.
struct Segment {
    hnsw: Hnsw<'static, f32, DistDot>,
    /// The indexed vectors, for the exact audit's brute-force search (and for merging).
    vectors: Vec<Vec<f32>>,
    /// Entry of each indexed window (the HNSW data id is the position here).
    window_entry: Vec<u32>,
}

impl Segment {
    fn new(embeddings: Vec<(u32, Vec<f32>)>) -> Self {
        let n = embeddings.len().max(1);
        let layers = 16.min((n as f32).ln().ceil().max(1.0) as usize);
        let hnsw = Hnsw::new(16, n, layers, 200, DistDot);
        let data: Vec<(&[f32], usize)> =
            embeddings.iter().enumerate().map(|(i, (_, v))| (v.as_slice(), i)).collect();
        if data.len() > 64 {
            hnsw.parallel_insert_slice(&data);
        } else {
            for d in &data {
                hnsw.insert_slice(*d);
            }
        }
        let window_entry = embeddings.iter().map(|(e, _)| *e).collect();
        let vectors = embeddings.into_iter().map(|(_, v)| v).collect();
        Self { hnsw, vectors, window_entry }
    }
}

/// The semantic index of a snapshot: HNSW segments shared by the snapshots after it, merged
/// as the n-gram segments are (see [`super::ngram::NgramIndex`]), so adding entries inserts
/// only their windows plus, now and then, a merge of the smaller segments.
pub struct SemanticIndex {
    segments: Vec<std::sync::Arc<Segment>>,
}

impl SemanticIndex {
    /// `embeddings`: (entry, unit-length embedding) of every forget window.
    pub fn build(embeddings: Vec<(u32, Vec<f32>)>) -> Self {
        Self { segments: vec![std::sync::Arc::new(Segment::new(embeddings))] }
    }

    /// This index plus `embeddings` of new entries.
    pub fn appended(&self, mut embeddings: Vec<(u32, Vec<f32>)>) -> Self {
        let mut segments = self.segments.clone();
        if embeddings.is_empty() {
            return Self { segments };
        }
        while let Some(last) = segments.last() {
            if last.window_entry.len() > 2 * embeddings.len() {
                break;
            }
            let older = last.window_entry.iter().copied().zip(last.vectors.iter().cloned());
            embeddings = older.chain(embeddings).collect();
            segments.pop();
        }
        segments.push(std::sync::Arc::new(Segment::new(embeddings)));
        Self { segments }
    }

    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.window_entry.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The best cosine similarity per entry over every indexed window (exact, no HNSW).
    pub fn brute_force(&self, embedding: &[f32]) -> Vec<(u32, f32)> {
        let mut best: std::collections::HashMap<u32, f32> = std::collections::HashMap::new();
        let mut keep = |entry, sim: f32| {
            let slot = best.entry(entry).or_insert(sim);
            *slot = slot.max(sim);
        };
        for s in &self.segments {
            // An entry's windows are consecutive in a segment: one map update per run of them.
            let mut run: Option<(u32, f32)> = None;
            for (v, &entry) in s.vectors.iter().zip(&s.window_entry) {
                let sim = dot(v, embedding);
                match &mut run {
                    Some((e, run_best)) if *e == entry => *run_best = run_best.max(sim),
                    _ => {
                        if let Some((e, sim)) = run.replace((entry, sim)) {
                            keep(e, sim);
                        }
                    }
                }
            }
            if let Some((e, sim)) = run {
                keep(e, sim);
            }
        }
        best.into_iter().collect()
    }

    /// The `k` nearest forget windows: (entry, cosine similarity), most similar first.
    pub fn nearest(&self, embedding: &[f32], k: usize, ef: usize) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = Vec::new();
        for s in self.segments.iter().filter(|s| !s.window_entry.is_empty()) {
            let found = s.hnsw.search(embedding, k, ef.max(k));
            out.extend(found.into_iter().map(|n| (s.window_entry[n.d_id], 1.0 - n.distance)));
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(k);
        out
    }
}

/// Dot product over eight independent sums, which the compiler keeps in SIMD lanes (one running
/// sum is a serial chain of additions it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut lanes = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_whole_document() {
        assert_eq!(windows(5, 24, 12), vec![0..5]);
        assert_eq!(windows(24, 24, 12), vec![0..24]);
        assert_eq!(windows(40, 24, 12), vec![0..24, 12..36, 16..40]);
        assert_eq!(windows(48, 24, 12), vec![0..24, 12..36, 24..48]);
    }

    #[test]
    fn sentences_are_cut_and_short_ones_merged() {
        let text = "One two three four. Five six. Seven eight nine ten eleven. Twelve";
        let got: Vec<&str> = sentences(text, 4).into_iter().map(|r| &text[r]).collect();
        assert_eq!(got, ["One two three four.", "Five six. Seven eight nine ten eleven. Twelve"]);
        assert_eq!(sentences("a.b c", 3).len(), 1);
    }

    #[test]
    fn nearest_finds_the_closest_window() {
        let unit = |v: [f32; 4]| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let idx = SemanticIndex::build(vec![
            (7, unit([1.0, 0.0, 0.0, 0.0])),
            (8, unit([0.0, 1.0, 0.0, 0.0])),
            (9, unit([0.0, 0.0, 1.0, 1.0])),
        ]);
        let hits = idx.nearest(&unit([0.1, 1.0, 0.0, 0.0]), 1, 16);
        assert_eq!(hits[0].0, 8);
        assert!(hits[0].1 > 0.99);
        let grown = idx.appended(vec![(10, unit([0.0, 0.1, 1.0, 0.0]))]);
        assert_eq!(grown.nearest(&unit([0.0, 0.1, 1.0, 0.0]), 1, 16)[0].0, 10);
        assert_eq!(grown.nearest(&unit([1.0, 0.0, 0.0, 0.1]), 1, 16)[0].0, 7);
        assert_eq!(grown.len(), 4);
    }

    #[test]
    fn brute_force_keeps_each_entrys_best_window() {
        // 13 dimensions: the SIMD lanes and the remainder both count.
        let v = |seed: u32| -> Vec<f32> {
            let v: Vec<f32> = (0..13).map(|i| ((seed * 31 + i * 7) % 11) as f32 - 5.0).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect()
        };
        let windows = vec![(1, v(1)), (1, v(2)), (2, v(3)), (1, v(4)), (3, v(5)), (3, v(6))];
        let query = v(9);
        let idx = SemanticIndex::build(windows.clone());
        let mut got = idx.brute_force(&query);
        got.sort_by_key(|&(e, _)| e);
        let naive = |entry: u32| {
            windows
                .iter()
                .filter(|(e, _)| *e == entry)
                .map(|(_, w)| w.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>())
                .fold(f32::MIN, f32::max)
        };
        assert_eq!(got.iter().map(|&(e, _)| e).collect::<Vec<_>>(), [1, 2, 3]);
        for (entry, sim) in got {
            assert!((sim - naive(entry)).abs() < 1e-5, "entry {entry}: {sim} vs {}", naive(entry));
        }
    }
}
