//! The served language model: GGUF loading (with conversion to the served weight format),
//! the tokenizer, the chat template and the token-by-token generator.
pub mod chat;
#[doc(hidden)]
pub mod fixture;
pub mod generate;
pub mod tokenizer;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use candle_transformers::models::quantized_llama::ModelWeights;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use chat::Message;
pub use generate::{Generator, Sampling, Step};

/// candle's quantized llama precomputes rotary tables for this many positions.
const CANDLE_MAX_SEQ_LEN: usize = 4096;

/// The weight format the model is served in.
///
/// On this machine candle decodes SmolLM2-135M about 3x faster from Q8_0 than from the Q4_1
/// it ships in (candle has SIMD kernels for Q8_0 but not Q4_1), so `q8_0` is the default:
/// the GGUF is converted once at load, in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum ServedFormat {
    /// Keep the weights as stored in the file.
    #[value(name = "as_stored")]
    AsStored,
    /// Re-quantize every quantized matrix to Q8_0.
    #[default]
    #[serde(rename = "q8_0")]
    #[value(name = "q8_0")]
    Q8_0,
}

#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub architecture: String,
    pub served_format: String,
    pub file_format: String,
    pub context_length: usize,
    pub vocab_size: usize,
    /// Bytes of the longest vocabulary entry: no token stands for more text, so a text longer
    /// than `context_length` times this cannot fit and is refused without being tokenized.
    pub max_token_bytes: usize,
    pub parameters: u64,
    pub sha256: String,
    /// xxh3-64 of the serialized tokenizer: token fingerprints fit only the same tokenizer
    /// (a fine-tuned or unlearned model keeps its base model's).
    pub tokenizer_id: String,
}

pub struct Model {
    weights: ModelWeights,
    pub tokenizer: tokenizers::Tokenizer,
    pub chat: chat::ChatTemplate,
    pub eos_tokens: Vec<u32>,
    pub info: ModelInfo,
}

impl Model {
    pub fn load(path: &Path, format: ServedFormat) -> Result<Self> {
        let started = Instant::now();
        let bytes = std::fs::read(path).with_context(|| format!("reading model file {}", path.display()))?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let mut reader = Cursor::new(&bytes);
        let content = gguf_file::Content::read(&mut reader)
            .with_context(|| format!("{} is not a readable GGUF file", path.display()))?;
        let architecture = tokenizer::metadata_str(&content, "general.architecture")?.to_string();
        if architecture != "llama" {
            bail!("{}: architecture {architecture:?} is not supported (llama family only)", path.display());
        }
        let tokenizer = tokenizer::from_gguf(&content)?;
        let tokenizer_id = match tokenizer.to_string(false) {
            Ok(json) => format!("{:016x}", xxhash_rust::xxh3::xxh3_64(json.as_bytes())),
            Err(e) => bail!("{}: the tokenizer cannot be serialized: {e}", path.display()),
        };
        let vocab_size = tokenizer.get_vocab_size(true);
        let max_token_bytes = tokenizer.get_vocab(true).keys().map(String::len).max().unwrap_or(1).max(1);
        let token = |key: &str| {
            tokenizer::metadata_u32(&content, key)
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let (bos, eos) = (token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id"));
        let template = tokenizer::metadata_str(&content, "tokenizer.chat_template").ok();
        let chat = chat::ChatTemplate::new(template, bos, eos.clone())?;
        let mut eos_tokens: Vec<u32> =
            tokenizer::metadata_u32(&content, "tokenizer.ggml.eos_token_id").into_iter().collect();
        // Chat models end a turn with their template's end-of-turn token.
        for end in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_to_id(end) {
                if !eos_tokens.contains(&id) {
                    eos_tokens.push(id);
                }
            }
        }
        let context_length = tokenizer::metadata_u32(&content, "llama.context_length")
            .map_or(CANDLE_MAX_SEQ_LEN, |n| (n as usize).min(CANDLE_MAX_SEQ_LEN));
        let file_format = dominant_format(&content);
        let parameters = content.tensor_infos.values().map(|t| t.shape.elem_count() as u64).sum();

        let device = Device::Cpu;
        let (weights, served_format) = match format {
            ServedFormat::AsStored => {
                (ModelWeights::from_gguf(content, &mut reader, &device)?, file_format.clone())
            }
            ServedFormat::Q8_0 => {
                let converted = requantize(&content, &mut reader, GgmlDType::Q8_0)?;
                let mut reader = Cursor::new(converted);
                let content = gguf_file::Content::read(&mut reader)?;
                // An f32 or f16 model stays as it is: report what is actually served.
                let served = dominant_format(&content);
                (ModelWeights::from_gguf(content, &mut reader, &device)?, served)
            }
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        tracing::info!(
            model = %name,
            %served_format,
            %file_format,
            parameters,
            load_seconds = started.elapsed().as_secs_f64(),
            "model loaded"
        );
        Ok(Self {
            weights,
            tokenizer,
            chat,
            eos_tokens,
            info: ModelInfo {
                name,
                path: path.to_path_buf(),
                architecture,
                served_format,
                file_format,
                context_length,
                vocab_size,
                max_token_bytes,
                parameters,
                sha256,
                tokenizer_id,
            },
        })
    }

    /// Token ids of `text`, special tokens (e.g. `<|im_start|>`) recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| anyhow::anyhow!("detokenizing: {e}"))
    }

    /// A fresh copy of the weights with an empty KV cache (the tensors are shared, not copied).
    pub(crate) fn fresh_weights(&self) -> ModelWeights {
        let mut w = self.weights.clone();
        w.clear_kv_cache();
        w
    }
}

/// Rewrites a GGUF in memory with every quantized 2-D matrix converted to `dtype`; norms and
/// other f32 tensors stay as they are.
fn requantize<R: Read + std::io::Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    dtype: GgmlDType,
) -> Result<Vec<u8>> {
    let device = Device::Cpu;
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let t = content.tensor(reader, name, &device)?;
        let convertible = t.dtype() != dtype
            && !matches!(t.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
            && t.shape().dims().last().is_some_and(|d| d % dtype.block_size() == 0);
        let t = if convertible { QTensor::quantize(&t.dequantize(&device)?, dtype)? } else { t };
        tensors.push((name.as_str(), t));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> =
        content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensor_refs)?;
    Ok(out.into_inner())
}

/// The format of most of the file's weights (by element count), lower-case, e.g. "q4_1".
fn dominant_format(content: &gguf_file::Content) -> String {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for t in content.tensor_infos.values() {
        *counts.entry(format!("{:?}", t.ggml_dtype).to_lowercase()).or_default() += t.shape.elem_count();
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(f, _)| f).unwrap_or_default()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
