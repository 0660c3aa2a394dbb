//! Token-by-token generation: one prompt forward, then one decode step per call, with an
//! optional logits mask (decode-time masking) and UTF-8-safe streaming detokenization.
use super::Model;
use anyhow::Result;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as CandleSampling};
use candle_transformers::models::quantized_llama::ModelWeights;

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
}

impl Sampling {
    fn to_candle(&self) -> CandleSampling {
        let temperature = self.temperature;
        if temperature <= 0.0 {
            return CandleSampling::ArgMax;
        }
        match (self.top_k, self.top_p) {
            (None, None) => CandleSampling::All { temperature },
            (Some(k), None) => CandleSampling::TopK { k, temperature },
            (None, Some(p)) => CandleSampling::TopP { p, temperature },
            (Some(k), Some(p)) => CandleSampling::TopKThenTopP { k, p, temperature },
        }
    }
}

/// One decode step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A token was produced; `text` is the newly decodable text (may be empty while a
    /// multi-byte character is incomplete).
    Token { id: u32, text: String, masked: bool },
    /// The model produced an end-of-sequence token.
    Eos,
}

pub struct Generator<'m> {
    model: &'m Model,
    weights: ModelWeights,
    sampler: LogitsProcessor,
    /// Prompt and generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens already in the KV cache.
    cached: usize,
    /// End-of-sequence is masked until this many tokens were generated.
    min_new_tokens: usize,
    decoder: TextDecoder,
}

impl<'m> Generator<'m> {
    pub fn new(model: &'m Model, prompt: Vec<u32>, sampling: &Sampling) -> Self {
        let prompt_len = prompt.len();
        Self {
            model,
            weights: model.fresh_weights(),
            sampler: LogitsProcessor::from_sampling(sampling.seed, sampling.to_candle()),
            tokens: prompt,
            prompt_len,
            cached: 0,
            min_new_tokens: 0,
            decoder: TextDecoder::new(prompt_len),
        }
    }

    /// Masks end-of-sequence until `n` tokens were generated (`usize::MAX`: never end), so the
    /// output's length does not depend on the model's choices.
    pub fn with_min_new_tokens(self, n: usize) -> Self {
        Self { min_new_tokens: n, ..self }
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompt_len
    }

    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Runs the model on the tokens not yet cached (the whole prompt the first time) and samples
    /// the next token. `forbidden` gives the tokens that must not follow the context (prompt
    /// and generated tokens): if the sampled token is one of them, they are all masked and a
    /// token is sampled again (MemFree's decode-time masking), and the step reports `masked`.
    pub fn step(&mut self, forbidden: impl FnOnce(&[u32]) -> Vec<u32>) -> Result<Step> {
        let input = Tensor::new(&self.tokens[self.cached..], &Device::Cpu)?.unsqueeze(0)?;
        let mut logits = self.weights.forward(&input, self.cached)?.squeeze(0)?;
        self.cached = self.tokens.len();
        if self.generated().len() < self.min_new_tokens {
            logits = without(&logits, &self.model.eos_tokens)?;
        }
        let mut id = self.sampler.sample(&logits)?;
        let banned = forbidden(&self.tokens);
        let masked = banned.contains(&id);
        if masked {
            id = self.sampler.sample(&without(&logits, &banned)?)?;
        }
        if self.model.eos_tokens.contains(&id) {
            return Ok(Step::Eos);
        }
        self.tokens.push(id);
        let text = self.decoder.next(self.model, &self.tokens)?;
        Ok(Step::Token { id, text, masked })
    }

    /// Text still held by the decoder (an incomplete character at the very end).
    pub fn flush(&mut self) -> Result<String> {
        self.decoder.flush(self.model, &self.tokens)
    }
}

/// `logits` with the `ids` set to minus infinity, so they cannot be sampled.
fn without(logits: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let mut values: Vec<f32> = logits.to_vec1()?;
    for &id in ids {
        if let Some(v) = values.get_mut(id as usize) {
            *v = f32::NEG_INFINITY;
        }
    }
    if values.iter().all(|v| *v == f32::NEG_INFINITY) {
        anyhow::bail!("every token was masked");
    }
    Ok(Tensor::new(values, &Device::Cpu)?)
}

/// Streaming detokenizer: byte-level BPE tokens can end inside a multi-byte character, and
/// decoding tokens one by one loses the spaces some decoders add between tokens, so text is
/// decoded over a sliding range and only complete characters are released.
struct TextDecoder {
    prev: usize,
    current: usize,
}

impl TextDecoder {
    fn new(start: usize) -> Self {
        Self { prev: start, current: start }
    }

    fn next(&mut self, model: &Model, tokens: &[u32]) -> Result<String> {
        let before = model.decode(&tokens[self.prev..self.current])?;
        let now = model.decode(&tokens[self.prev..])?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let delta = now.strip_prefix(before.as_str()).unwrap_or(&now).to_string();
        self.prev = self.current;
        self.current = tokens.len();
        Ok(delta)
    }

    fn flush(&mut self, model: &Model, tokens: &[u32]) -> Result<String> {
        let before = model.decode(&tokens[self.prev..self.current])?;
        let now = model.decode(&tokens[self.prev..])?;
        self.prev = tokens.len();
        self.current = tokens.len();
        Ok(now.strip_prefix(before.as_str()).unwrap_or(&now).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture;

    fn tiny() -> (tempfile::TempDir, Model) {
        fixture::served(7)
    }

    fn sample(model: &Model, seed: u64, temperature: f64, n: usize) -> (Vec<u32>, String) {
        let prompt = model.encode("the cat sat on the mat").unwrap();
        let sampling = Sampling { temperature, top_p: None, top_k: None, seed };
        let mut g = Generator::new(model, prompt, &sampling);
        let mut text = String::new();
        for _ in 0..n {
            match g.step(|_| Vec::new()).unwrap() {
                Step::Token { text: t, .. } => text.push_str(&t),
                Step::Eos => break,
            }
        }
        text.push_str(&g.flush().unwrap());
        (g.generated().to_vec(), text)
    }

    #[test]
    fn streaming_decoder_never_splits_a_character_and_loses_nothing() {
        let (_dir, model) = tiny();
        let text = "héllo wörld, 日本語 🎉 and 1234 the end";
        let ids = model.encode(text).unwrap();
        assert!(ids.len() > text.chars().count(), "multi-byte chars span several tokens");
        let mut dec = TextDecoder::new(0);
        let mut out = String::new();
        for i in 1..=ids.len() {
            let delta = dec.next(&model, &ids[..i]).unwrap();
            assert!(!delta.contains('\u{FFFD}'), "split character in {delta:?}");
            out.push_str(&delta);
        }
        out.push_str(&dec.flush(&model, &ids).unwrap());
        assert_eq!(out, text);
    }

    #[test]
    fn same_seed_same_output_other_seed_other_output() {
        let (_dir, model) = tiny();
        let a = sample(&model, 42, 1.0, 24);
        assert_eq!(a, sample(&model, 42, 1.0, 24));
        assert_ne!(a.0, sample(&model, 43, 1.0, 24).0);
        assert_eq!(sample(&model, 1, 0.0, 24), sample(&model, 2, 0.0, 24), "greedy ignores the seed");
    }

    #[test]
    fn streamed_text_equals_decoding_all_tokens() {
        let (_dir, model) = tiny();
        let (ids, text) = sample(&model, 5, 0.0, 30);
        assert_eq!(text, model.decode(&ids).unwrap());
    }

    #[test]
    fn mask_forbids_tokens_and_reports_it() {
        let (_dir, model) = tiny();
        let prompt = model.encode("the").unwrap();
        let greedy = Sampling { temperature: 0.0, top_p: None, top_k: None, seed: 0 };
        let mut g = Generator::new(&model, prompt.clone(), &greedy);
        let Step::Token { id: first, masked, .. } = g.step(|_| Vec::new()).unwrap() else { panic!() };
        assert!(!masked);
        let mut g = Generator::new(&model, prompt.clone(), &greedy);
        let step = g.step(|context| {
            assert_eq!(context, prompt.as_slice(), "the context is the prompt before the first token");
            vec![first]
        });
        let Step::Token { id, masked, .. } = step.unwrap() else { panic!("EOS") };
        assert!(masked);
        assert_ne!(id, first);
        // Forbidding a token that would not have been sampled changes nothing.
        let mut g = Generator::new(&model, prompt, &greedy);
        let Step::Token { id, masked, .. } = g.step(|_| vec![first + 1]).unwrap() else { panic!("EOS") };
        assert!(!masked);
        assert_eq!(id, first);
    }

    #[test]
    fn min_new_tokens_masks_end_of_sequence_without_reporting_a_mask() {
        let (_dir, model) = tiny();
        let prompt = model.encode("the cat").unwrap();
        let greedy = Sampling { temperature: 0.0, top_p: None, top_k: None, seed: 0 };
        let eos = &model.eos_tokens;
        // Leave end-of-sequence and one other token `k` to choose from; find a `k` the model
        // ranks below end-of-sequence, so that without a minimum it ends.
        let all_but = |k: u32| -> Vec<u32> {
            (0..model.info.vocab_size as u32).filter(|t| *t != k && !eos.contains(t)).collect()
        };
        let k = (0..model.info.vocab_size as u32)
            .filter(|t| !eos.contains(t))
            .find(|&k| {
                let mut g = Generator::new(&model, prompt.clone(), &greedy);
                g.step(|_| all_but(k)).unwrap() == Step::Eos
            })
            .expect("some token ranks below end-of-sequence");
        let mut g = Generator::new(&model, prompt.clone(), &greedy).with_min_new_tokens(1);
        let Step::Token { id, .. } = g.step(|_| all_but(k)).unwrap() else {
            panic!("end-of-sequence before min_new_tokens")
        };
        assert_eq!(id, k);
        // Masking end-of-sequence is not decode-time masking of forgotten content.
        let mut long = Generator::new(&model, prompt, &greedy).with_min_new_tokens(usize::MAX);
        for _ in 0..20 {
            match long.step(|_| Vec::new()).unwrap() {
                Step::Token { masked, .. } => assert!(!masked),
                Step::Eos => panic!("end-of-sequence despite min_new_tokens"),
            }
        }
        assert_eq!(long.generated().len(), 20);
    }

    #[test]
    fn fixture_is_converted_to_the_served_format() {
        let (_dir, model) = tiny();
        assert_eq!(model.info.file_format, "q4_1");
        assert_eq!(model.info.served_format, "q8_0");
        assert_eq!(model.info.context_length, fixture::CONTEXT as usize);
    }
}
