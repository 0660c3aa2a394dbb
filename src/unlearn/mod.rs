//! Parameter-level unlearning: fine-tuning (to plant content, as TOFU and MUSE do before they
//! unlearn) and unlearning with the losses open-unlearning defines — GradAscent (−NLL on the
//! forget set), GradDiff (−NLL on forget + NLL on retain) and NPO (β = 0.1, reference
//! log-probabilities computed once up front, + retain NLL) — plus the measures of how much was
//! forgotten (VerbMem: ROUGE-L F1 of the greedy continuation of a prefix).
pub mod model;
pub mod report;

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
pub use model::{Trainable, TrainableLlama};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Plain language-model loss (memorize).
    Learn,
    GradAscent,
    GradDiff,
    Npo,
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub objective: Objective,
    pub lr: f64,
    pub steps: usize,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// NPO's inverse temperature.
    pub beta: f64,
}

/// Mean next-token negative log-likelihood of one token sequence (a scalar tensor).
pub fn nll(model: &TrainableLlama, tokens: &[u32]) -> Result<Tensor> {
    anyhow::ensure!(tokens.len() >= 2, "a training text needs at least two tokens");
    let input = Tensor::new(&tokens[..tokens.len() - 1], &Device::Cpu)?.unsqueeze(0)?;
    let targets = Tensor::new(&tokens[1..], &Device::Cpu)?;
    let logits = model.forward(&input)?.squeeze(0)?;
    Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
}

/// Runs `config.steps` optimizer steps; `forget` are the texts to learn or unlearn, `retain`
/// the texts whose likelihood GradDiff and NPO keep. `on_step(step, loss)` reports progress.
pub fn train(
    model: &TrainableLlama,
    forget: &[Vec<u32>],
    retain: &[Vec<u32>],
    config: &TrainConfig,
    on_step: impl FnMut(usize, f32),
) -> Result<()> {
    Trainer::new(model, forget, retain, config)?.run(config.steps, on_step)
}

/// A training run that can be advanced in parts (e.g. between early-stop evaluations) with
/// the same optimizer state, text order and NPO reference throughout.
pub struct Trainer<'a> {
    model: &'a TrainableLlama,
    forget: &'a [Vec<u32>],
    retain: &'a [Vec<u32>],
    config: TrainConfig,
    /// NPO's reference: the sequence log-likelihoods before any update, computed once.
    reference: Vec<f64>,
    vars: Vec<Var>,
    opt: AdamW,
    step: usize,
}

impl<'a> Trainer<'a> {
    pub fn new(
        model: &'a TrainableLlama,
        forget: &'a [Vec<u32>],
        retain: &'a [Vec<u32>],
        config: &TrainConfig,
    ) -> Result<Self> {
        anyhow::ensure!(!forget.is_empty(), "the forget set is empty");
        let needs_retain = matches!(config.objective, Objective::GradDiff | Objective::Npo);
        anyhow::ensure!(!needs_retain || !retain.is_empty(), "GradDiff and NPO need a retain set");
        let reference: Vec<f64> = if config.objective == Objective::Npo {
            forget
                .iter()
                .map(|t| Ok(nll(model, t)?.to_scalar::<f32>()? as f64 * (t.len() - 1) as f64))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let vars = model.trainable_vars();
        let params = ParamsAdamW { lr: config.lr, weight_decay: 0.0, ..Default::default() };
        let opt = AdamW::new(vars.clone(), params)?;
        Ok(Self { model, forget, retain, config: config.clone(), reference, vars, opt, step: 0 })
    }

    /// Runs `steps` more optimizer steps; `on_step(step, loss)` counts from the run's start.
    pub fn run(&mut self, steps: usize, mut on_step: impl FnMut(usize, f32)) -> Result<()> {
        let (model, forget, retain, config) = (self.model, self.forget, self.retain, &self.config);
        for _ in 0..steps {
            let step = self.step;
            let i = step % forget.len();
            let f = nll(model, &forget[i])?;
            let loss = match config.objective {
                Objective::Learn => f,
                Objective::GradAscent => f.neg()?,
                Objective::GradDiff => (f.neg()? + nll(model, &retain[step % retain.len()])?)?,
                Objective::Npo => {
                    // -(2/β) log σ(β (NLL_θ − NLL_ref)), on sequence sums.
                    let tokens = (forget[i].len() - 1) as f64;
                    let diff = ((f * tokens)? - self.reference[i])?;
                    let z = (diff * config.beta)?;
                    let log_sigmoid = ((z.neg()?.exp()? + 1.0)?.log()?).neg()?;
                    ((log_sigmoid * (-2.0 / config.beta))? + nll(model, &retain[step % retain.len()])?)?
                }
            };
            let mut grads = loss.backward()?;
            clip(&mut grads, &self.vars, config.max_grad_norm)?;
            self.opt.step(&grads)?;
            self.step += 1;
            on_step(step, loss.to_scalar::<f32>()?);
        }
        Ok(())
    }
}

fn clip(grads: &mut candle_core::backprop::GradStore, vars: &[Var], max_norm: f64) -> Result<()> {
    let mut total = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = total.sqrt();
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(())
}

/// Greedy continuation of `prefix` by the trainable model, with a key/value cache (the prefix
/// is run once, then one token per step). For evaluation only: no gradient is recorded.
pub fn greedy(model: &TrainableLlama, prefix: &[u32], new_tokens: usize) -> Result<Vec<u32>> {
    anyhow::ensure!(!prefix.is_empty(), "a greedy continuation needs a prefix");
    let mut cache = model.new_cache();
    let mut out = Vec::with_capacity(new_tokens);
    let mut input = prefix.to_vec();
    for _ in 0..new_tokens {
        let next = model.forward_cached(&input, &mut cache)?.argmax(0)?.to_scalar::<u32>()?;
        out.push(next);
        input = vec![next];
    }
    Ok(out)
}

/// ROUGE-L F1 between two texts, on lower-cased whitespace words.
pub fn rouge_l(candidate: &str, reference: &str) -> f64 {
    let c: Vec<String> = candidate.split_whitespace().map(str::to_lowercase).collect();
    let r: Vec<String> = reference.split_whitespace().map(str::to_lowercase).collect();
    if c.is_empty() || r.is_empty() {
        return 0.0;
    }
    let mut dp = vec![vec![0usize; r.len() + 1]; c.len() + 1];
    for i in 1..=c.len() {
        for j in 1..=r.len() {
            dp[i][j] =
                if c[i - 1] == r[j - 1] { dp[i - 1][j - 1] + 1 } else { dp[i - 1][j].max(dp[i][j - 1]) };
        }
    }
    let lcs = dp[c.len()][r.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let (p, rc) = (lcs / c.len() as f64, lcs / r.len() as f64);
    2.0 * p * rc / (p + rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached greedy continuation agrees with re-running the whole sequence each step.
    #[test]
    fn cached_greedy_matches_the_full_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::model::fixture::write_tiny_llama(&path, 11).unwrap();
        let model = TrainableLlama::load(&path, Trainable::All).unwrap();
        let prefix = [5u32, 17, 3, 42, 8];
        let mut full = prefix.to_vec();
        for _ in 0..12 {
            let input = Tensor::new(full.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let logits = model.forward(&input).unwrap().squeeze(0).unwrap();
            full.push(logits.get(full.len() - 1).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap());
        }
        let mut cache = model.new_cache();
        let cached_logits = model.forward_cached(&prefix, &mut cache).unwrap();
        assert_eq!(cache.len(), prefix.len());
        let input = Tensor::new(&prefix[..], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let full_logits = model.forward(&input).unwrap().squeeze(0).unwrap().get(prefix.len() - 1).unwrap();
        let diff = (cached_logits - full_logits).unwrap().abs().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
        assert_eq!(greedy(&model, &prefix, 12).unwrap(), full[prefix.len()..]);
    }

    /// A run advanced in parts (as between early-stop evaluations) trains exactly as one run:
    /// same optimizer state and NPO reference throughout.
    #[test]
    fn a_run_in_parts_equals_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::model::fixture::write_tiny_llama(&path, 5).unwrap();
        let forget = vec![vec![3u32, 9, 4, 7, 1, 8], vec![2, 6, 5, 3]];
        let retain = vec![vec![1u32, 2, 3, 4, 5]];
        let config =
            TrainConfig { objective: Objective::Npo, lr: 1e-3, steps: 5, max_grad_norm: 1.0, beta: 0.1 };
        let whole = TrainableLlama::load(&path, Trainable::Mlp).unwrap();
        train(&whole, &forget, &retain, &config, |_, _| {}).unwrap();
        let parts = TrainableLlama::load(&path, Trainable::Mlp).unwrap();
        let mut trainer = Trainer::new(&parts, &forget, &retain, &config).unwrap();
        trainer.run(2, |_, _| {}).unwrap();
        trainer.run(3, |_, _| {}).unwrap();
        assert!(whole.same_weights(&parts).unwrap());
        let untouched = TrainableLlama::load(&path, Trainable::Mlp).unwrap();
        assert!(!whole.same_weights(&untouched).unwrap());
    }

    /// A model written in f32 reloads bit for bit; written in Q8_0 it does not.
    #[test]
    fn same_weights_tells_an_exact_copy_from_a_rounded_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::model::fixture::write_tiny_llama(&path, 11).unwrap();
        let model = TrainableLlama::load(&path, Trainable::Mlp).unwrap();
        let (f32_path, q8_path) = (dir.path().join("f32.gguf"), dir.path().join("q8.gguf"));
        model.write_gguf(&f32_path, candle_core::quantized::GgmlDType::F32, &[]).unwrap();
        model.write_gguf(&q8_path, candle_core::quantized::GgmlDType::Q8_0, &[]).unwrap();
        assert!(model.same_weights(&TrainableLlama::load(&f32_path, Trainable::All).unwrap()).unwrap());
        assert!(!model.same_weights(&TrainableLlama::load(&q8_path, Trainable::All).unwrap()).unwrap());
    }

    #[test]
    fn rouge_l_scores_common_subsequences() {
        assert_eq!(rouge_l("a b c d", "a b c d"), 1.0);
        assert_eq!(rouge_l("x y", "a b"), 0.0);
        let f = rouge_l("a b x d", "a b c d");
        assert!((f - 0.75).abs() < 1e-9, "{f}");
    }
}
