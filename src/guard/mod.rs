//! The runtime suppression layer. A [`Guard`] is the immutable index of one forget-list
//! snapshot (`snapshot.rs`): word n-grams (Bloom + exact), exact terms, token n-grams for
//! decode-time masking, and an HNSW index of document-window embeddings. [`Guard::check`]
//! checks a whole text (`check.rs`); [`stream::StreamGuard`] checks a generation as it is
//! produced and decides what may be released to the client; [`audit::Auditor`] re-checks
//! delivered outputs exactly, off the request path.
pub mod audit;
pub mod check;
pub mod commons;
pub mod config;
pub mod derive;
mod digest;
pub mod encodings;
pub mod facts;
pub mod footprint;
pub mod lexical;
pub mod markup;
pub mod ngram;
pub mod normalize;
pub mod semantic;
pub mod snapshot;
pub mod stream;
pub mod terms;
pub mod tokens;
pub mod variants;

pub use check::CheckParams;
pub use config::GuardConfig;
pub use footprint::{IndexSizes, LayerBytes, SetStats};
pub use snapshot::Guard;

use std::ops::Range;

/// The layer of the guard that found a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// Word n-grams of forget documents (Bloom filter, exact confirm).
    Ngram,
    /// Exact match of a short term or one of its aliases.
    Term,
    /// Embedding similarity to a forget document window (paraphrases).
    Semantic,
    /// Distinctive facts of a forget document (short answers, summaries, translations).
    Fact,
}

impl Layer {
    /// The `layer` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Ngram => "ngram",
            Layer::Term => "term",
            Layer::Semantic => "semantic",
            Layer::Fact => "fact",
        }
    }
}

/// One match of forgotten content in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub entry: u32,
    pub layer: Layer,
    /// NGRAM: share of the window's n-grams that hit; TERM: 1; SEMANTIC: cosine similarity plus
    /// lexical evidence; FACT: the number of the entry's facts in the window.
    pub score: f32,
    /// Byte span in the checked text.
    pub span: Range<usize>,
}
