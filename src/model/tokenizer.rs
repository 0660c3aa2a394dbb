//! Byte-level BPE tokenizer built from GGUF metadata (`tokenizer.ggml.*`).
//!
//! candle's generic GGUF tokenizer adds a prefix space and splits digits differently from
//! SmolLM2's own tokenizer, which breaks its ChatML prompts. SmolLM2 (and the GPT-2 family)
//! use: split each digit, then byte-level with no prefix space.
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::{
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::bpe::{Vocab, BPE},
    pre_tokenizers::{byte_level::ByteLevel, digits::Digits, sequence::Sequence},
    AddedToken, Tokenizer,
};

/// GGUF token types (llama.cpp `llama_token_type`) that are whole special tokens.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

pub fn from_gguf(ct: &Content) -> Result<Tokenizer> {
    let kind = metadata_str(ct, "tokenizer.ggml.model")?;
    if kind != "gpt2" {
        bail!("unsupported tokenizer model {kind:?} (only byte-level BPE, \"gpt2\", is supported)");
    }
    let tokens = string_array(ct, "tokenizer.ggml.tokens")?;
    let merges = string_array(ct, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| format!("malformed BPE merge {m:?} in GGUF metadata"))
        })
        .collect::<Result<Vec<_>>>()?;
    let vocab: Vocab = tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| anyhow::anyhow!("building the BPE model: {e}"))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    if let Some(Value::Array(types)) = ct.metadata.get("tokenizer.ggml.token_type") {
        let specials: Vec<AddedToken> = types
            .iter()
            .zip(&tokens)
            .filter(|(ty, _)| matches!(as_i64(ty), Some(TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED)))
            .map(|(_, t)| AddedToken::from(t.clone(), true))
            .collect();
        tokenizer.add_special_tokens(specials).map_err(|e| anyhow::anyhow!("adding special tokens: {e}"))?;
    }
    Ok(tokenizer)
}

pub(crate) fn metadata_str<'a>(ct: &'a Content, key: &str) -> Result<&'a str> {
    match ct.metadata.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => bail!("GGUF metadata {key} is not a string"),
        None => bail!("GGUF metadata {key} is missing"),
    }
}

pub(crate) fn metadata_u32(ct: &Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(as_i64).and_then(|v| u32::try_from(v).ok())
}

fn string_array(ct: &Content, key: &str) -> Result<Vec<String>> {
    let Some(Value::Array(values)) = ct.metadata.get(key) else {
        bail!("GGUF metadata {key} is missing or not an array");
    };
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            _ => bail!("GGUF metadata {key} holds a non-string"),
        })
        .collect()
}

fn as_i64(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(v) => *v as i64,
        Value::I8(v) => *v as i64,
        Value::U16(v) => *v as i64,
        Value::I16(v) => *v as i64,
        Value::U32(v) => *v as i64,
        Value::I32(v) => *v as i64,
        Value::U64(v) => *v as i64,
        Value::I64(v) => *v,
        _ => return None,
    })
}
