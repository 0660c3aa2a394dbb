//! How much was forgotten and how much utility was kept, per model: forget-set verbatim
//! memorization (MUSE VerbMem: ROUGE-L F1 of the greedy continuation of a prefix), the longest
//! verbatim run and NLL; the same on the retain set; perplexity on held-out text; and the
//! Min-K% probability membership signal (k = 0.4) as an AUC between forget and held-out texts.
use super::{greedy, rouge_l, TrainableLlama};
use crate::model::Model;
use anyhow::Result;
use candle_core::{Device, Tensor, D};
use serde::Serialize;

/// Tokens of prefix given to the model, and the most continuation tokens compared.
const PREFIX_TOKENS: usize = 32;
const CONTINUATION_TOKENS: usize = 64;
const MIN_K: f64 = 0.4;

#[derive(Debug, Clone, Serialize)]
pub struct SetScores {
    pub verbmem: f64,
    pub longest_run_words: usize,
    pub nll: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelScores {
    pub forget: SetScores,
    pub retain: SetScores,
    pub holdout_perplexity: f64,
    pub min_k_auc: f64,
}

/// Per-token log-probabilities of `tokens[1..]`.
fn token_logprobs(model: &TrainableLlama, tokens: &[u32]) -> Result<Vec<f32>> {
    let input = Tensor::new(&tokens[..tokens.len() - 1], &Device::Cpu)?.unsqueeze(0)?;
    let logp = candle_nn::ops::log_softmax(&model.forward(&input)?.squeeze(0)?, D::Minus1)?;
    let targets = Tensor::new(&tokens[1..], &Device::Cpu)?.unsqueeze(1)?;
    Ok(logp.gather(&targets, 1)?.squeeze(1)?.to_vec1()?)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// VerbMem and the longest verbatim run (in words) of one text.
pub fn memorization(model: &TrainableLlama, tok: &Model, tokens: &[u32]) -> Result<(f64, usize)> {
    let prefix = PREFIX_TOKENS.min(tokens.len() / 2);
    let truth = &tokens[prefix..tokens.len().min(prefix + CONTINUATION_TOKENS)];
    let generated = greedy(model, &tokens[..prefix], truth.len())?;
    let (g, t) = (tok.decode(&generated)?, tok.decode(truth)?);
    Ok((rouge_l(&g, &t), longest_common_run(&g, &t)))
}

fn set_scores(model: &TrainableLlama, tok: &Model, texts: &[Vec<u32>]) -> Result<SetScores> {
    let (mut verbmem, mut runs, mut nlls) = (Vec::new(), Vec::new(), Vec::new());
    for t in texts {
        let (v, r) = memorization(model, tok, t)?;
        verbmem.push(v);
        runs.push(r);
        let lp = token_logprobs(model, t)?;
        nlls.push(-lp.iter().map(|x| *x as f64).sum::<f64>() / lp.len() as f64);
    }
    Ok(SetScores {
        verbmem: mean(&verbmem),
        longest_run_words: runs.into_iter().max().unwrap_or(0),
        nll: mean(&nlls),
    })
}

/// Mean VerbMem of `texts` (for early stopping).
pub fn score_verbmem(model: &TrainableLlama, tok: &Model, texts: &[Vec<u32>]) -> Result<f64> {
    let v: Vec<f64> = texts.iter().map(|t| Ok(memorization(model, tok, t)?.0)).collect::<Result<_>>()?;
    Ok(mean(&v))
}

/// Min-K% probability: the mean of the lowest k share of token log-probabilities.
fn min_k(logprobs: &[f32]) -> f64 {
    let mut v: Vec<f64> = logprobs.iter().map(|x| *x as f64).collect();
    v.sort_by(f64::total_cmp);
    let k = ((v.len() as f64 * MIN_K).ceil() as usize).max(1);
    mean(&v[..k])
}

/// Area under the ROC curve of `members` scored above `others` (ties count half).
pub fn auc(members: &[f64], others: &[f64]) -> f64 {
    if members.is_empty() || others.is_empty() {
        return 0.5;
    }
    let mut wins = 0.0;
    for m in members {
        for o in others {
            wins += if m > o {
                1.0
            } else if m == o {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (members.len() * others.len()) as f64
}

pub fn score(
    model: &TrainableLlama,
    tok: &Model,
    forget: &[Vec<u32>],
    retain: &[Vec<u32>],
    holdout: &[Vec<u32>],
) -> Result<ModelScores> {
    let mut holdout_nll = Vec::new();
    let mut holdout_mink = Vec::new();
    for t in holdout {
        let lp = token_logprobs(model, t)?;
        holdout_nll.push(-lp.iter().map(|x| *x as f64).sum::<f64>() / lp.len() as f64);
        holdout_mink.push(min_k(&lp));
    }
    let forget_mink: Vec<f64> =
        forget.iter().map(|t| Ok(min_k(&token_logprobs(model, t)?))).collect::<Result<_>>()?;
    Ok(ModelScores {
        forget: set_scores(model, tok, forget)?,
        retain: set_scores(model, tok, retain)?,
        holdout_perplexity: mean(&holdout_nll).exp(),
        min_k_auc: auc(&forget_mink, &holdout_mink),
    })
}

/// Longest run of consecutive equal words (lower-cased) shared by two texts.
pub fn longest_common_run(a: &str, b: &str) -> usize {
    let a: Vec<String> = a.split_whitespace().map(str::to_lowercase).collect();
    let b: Vec<String> = b.split_whitespace().map(str::to_lowercase).collect();
    let mut best = 0;
    let mut prev = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        let mut row = vec![0usize; b.len() + 1];
        for j in 1..=b.len() {
            if a[i - 1] == b[j - 1] {
                row[j] = prev[j - 1] + 1;
                best = best.max(row[j]);
            }
        }
        prev = row;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_runs() {
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc(&[1.0], &[1.0]), 0.5);
        assert_eq!(longest_common_run("a b c d e", "x b c d y"), 3);
        assert_eq!(min_k(&[-1.0, -5.0, -3.0, -2.0, -4.0]), -4.5);
    }
}
