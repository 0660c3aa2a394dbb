//! A tiny llama-family GGUF written on the fly, so tests of the model runtime, the server and
//! unlearning run in milliseconds without downloading anything. Its weights are random; its
//! tokenizer is a real byte-level BPE (every byte is a token, plus a few merges).
use anyhow::Result;
use candle_core::quantized::{gguf_file::Value, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::path::Path;

pub const EMBED: usize = 64;
pub const LAYERS: usize = 2;
pub const CONTEXT: u32 = 256;

/// The GPT-2 byte-to-unicode table: printable stand-ins for all 256 bytes.
pub fn byte_level_alphabet() -> Vec<String> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = printable.into_iter().zip(chars).collect();
    pairs.sort();
    pairs.into_iter().map(|(_, c)| char::from_u32(c).expect("valid scalar").to_string()).collect()
}

/// The fixture model loaded as the server serves it, in a temporary folder that lives as long
/// as the returned guard (for unit tests).
#[cfg(test)]
pub fn served(seed: u64) -> (tempfile::TempDir, super::Model) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, seed).expect("writing the fixture");
    let model = super::Model::load(&path, super::ServedFormat::Q8_0).expect("loading the fixture");
    (dir, model)
}

/// Writes the fixture model to `path`.
pub fn write_tiny_llama(path: &Path, seed: u64) -> Result<()> {
    let mut tokens = byte_level_alphabet();
    let merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let first_special = tokens.len();
    tokens.extend(specials.iter().map(|s| s.to_string()));
    // Pad the vocabulary to a multiple of 32 so every matrix can be block-quantized.
    while tokens.len() % 32 != 0 {
        tokens.push(format!("<|unused{}|>", tokens.len()));
    }
    let vocab = tokens.len();
    let token_type: Vec<Value> = (0..vocab)
        .map(|i| Value::I32(if (first_special..first_special + specials.len()).contains(&i) { 3 } else { 1 }))
        .collect();

    let u32v = |v: u32| Value::U32(v);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("lethe-tiny-fixture".into())),
        ("llama.context_length", u32v(CONTEXT)),
        ("llama.embedding_length", u32v(EMBED as u32)),
        ("llama.feed_forward_length", u32v(128)),
        ("llama.block_count", u32v(LAYERS as u32)),
        ("llama.attention.head_count", u32v(4)),
        ("llama.attention.head_count_kv", u32v(2)),
        ("llama.rope.dimension_count", u32v(16)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens.iter().cloned().map(Value::String).collect())),
        (
            "tokenizer.ggml.merges",
            Value::Array(merges.iter().map(|m| Value::String(m.to_string())).collect()),
        ),
        ("tokenizer.ggml.token_type", Value::Array(token_type)),
        ("tokenizer.ggml.bos_token_id", u32v(first_special as u32)),
        ("tokenizer.ggml.eos_token_id", u32v(first_special as u32)),
    ];

    let dev = Device::Cpu;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut random = |shape: (usize, usize), dtype: GgmlDType| -> Result<QTensor> {
        // Uniform with the variance of a unit normal, scaled like a standard initialisation.
        let scale = 3f32.sqrt() / (shape.1 as f32).sqrt();
        let values: Vec<f32> = (0..shape.0 * shape.1).map(|_| rng.random_range(-scale..scale)).collect();
        Ok(QTensor::quantize(&Tensor::from_vec(values, shape, &dev)?, dtype)?)
    };
    let ones = |n: usize| -> Result<QTensor> {
        Ok(QTensor::quantize(&Tensor::ones(n, candle_core::DType::F32, &dev)?, GgmlDType::F32)?)
    };
    let q = GgmlDType::Q4_1;
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), random((vocab, EMBED), q)?),
        ("output_norm.weight".into(), ones(EMBED)?),
    ];
    for l in 0..LAYERS {
        let kv = EMBED / 2;
        tensors.extend([
            (format!("blk.{l}.attn_norm.weight"), ones(EMBED)?),
            (format!("blk.{l}.ffn_norm.weight"), ones(EMBED)?),
            (format!("blk.{l}.attn_q.weight"), random((EMBED, EMBED), q)?),
            (format!("blk.{l}.attn_k.weight"), random((kv, EMBED), q)?),
            (format!("blk.{l}.attn_v.weight"), random((kv, EMBED), q)?),
            (format!("blk.{l}.attn_output.weight"), random((EMBED, EMBED), q)?),
            (format!("blk.{l}.ffn_gate.weight"), random((128, EMBED), q)?),
            (format!("blk.{l}.ffn_up.weight"), random((128, EMBED), q)?),
            (format!("blk.{l}.ffn_down.weight"), random((EMBED, 128), q)?),
        ]);
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut file = std::fs::File::create(path)?;
    candle_core::quantized::gguf_file::write(&mut file, &md, &ts)?;
    Ok(())
}
