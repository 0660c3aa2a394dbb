//! What the indexes need of an entry's text, without the text: fingerprints of its word
//! n-grams and terms, token n-grams for decode-time masking, window embeddings. The
//! fingerprint-only store (`forget_store = "fingerprints"`) keeps these instead of the text;
//! `guard::derive` computes them. A fingerprint is only valid for the parameters it was derived
//! with: `recipe`, `embedder` and `tokens.tokenizer` name them. Entries sealed before facts
//! existed have none (their fact layer and lexical evidence are empty).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprints {
    /// Normalization version and n-gram length the fingerprints were derived with.
    pub recipe: String,
    /// Distinct word n-gram fingerprints (documents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ngrams: Vec<u64>,
    /// (fingerprint, length in words) of the term and each alias (terms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<(u64, u32)>,
    /// (hash, length in bytes) of the joined keys of phone numbers and ids: any run of words
    /// whose normalized letters and digits, concatenated, are the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<(u64, u32)>,
    /// Embedder and windowing the vectors come from; unset: no vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<String>,
    /// Unit-length window embeddings, little-endian f32, base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "vectors_b64")]
    pub vectors: Vec<Vec<f32>>,
    /// Token n-grams for decode-time masking, for the tokenizer they were derived with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenGrams>,
    /// Distinctive facts of a document (`guard::facts`): hashes, never the words.
    #[serde(default, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
}

/// Hashes of a document's distinctive facts, by kind (see `guard::facts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Facts {
    /// Stems of distinctive words written in lower case.
    pub words: Vec<u64>,
    /// Stems of distinctive words written capitalized: names of people, places, firms.
    pub names: Vec<u64>,
    /// Numbers of two or more digits' worth (13 and up), spelled or in digits, and months.
    pub numbers: Vec<u64>,
}

impl Facts {
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.names.is_empty() && self.numbers.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenGrams {
    pub tokenizer: String,
    /// (fingerprint of the n-1 token prefix, the token that completes the n-gram).
    pub grams: Vec<(u64, u32)>,
}

/// (De)serializes `Option<Arc<Fingerprints>>` (serde's `rc` feature is not enabled).
pub mod shared {
    use super::Fingerprints;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(fp: &Option<Arc<Fingerprints>>, s: S) -> Result<S::Ok, S::Error> {
        fp.as_deref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Fingerprints>>, D::Error> {
        Ok(Option::<Fingerprints>::deserialize(d)?.map(Arc::new))
    }
}

mod vectors_b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(vectors: &[Vec<f32>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            vectors
                .iter()
                .map(|v| STANDARD.encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f32>>, D::Error> {
        let encoded: Vec<String> = Vec::deserialize(d)?;
        encoded
            .iter()
            .map(|b| {
                let bytes = STANDARD.decode(b).map_err(serde::de::Error::custom)?;
                if bytes.len() % 4 != 0 {
                    return Err(serde::de::Error::custom("a vector's length is not a multiple of 4 bytes"));
                }
                Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            })
            .collect()
    }
}
