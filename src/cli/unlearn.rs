//! `lethe train`, `lethe unlearn` and `lethe audit` (the extraction probe of a model's
//! weights): the batch jobs of parameter-level unlearning, with a progress bar, a report
//! (JSON + table) and GGUF output that the server loads (written to a temporary file and
//! renamed, so an interrupted run leaves no output).
use crate::model::{Generator, Model, Sampling, ServedFormat, Step};
use crate::unlearn::report::{self, ModelScores};
use crate::unlearn::{nll, rouge_l, train, Objective, TrainConfig, Trainable, TrainableLlama, Trainer};
use anyhow::{Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Clone)]
pub struct CommonArgs {
    /// GGUF model to start from.
    #[arg(long)]
    model: PathBuf,
    /// Output GGUF.
    #[arg(long)]
    out: PathBuf,
    /// Optimizer steps (the upper bound when an early stop is set).
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// What to train: all, mlp, or last:K (the last K blocks).
    #[arg(long, default_value = "mlp", value_parser = parse_trainable)]
    train: Trainable,
    /// Format of the written matrices (q8_0 is what the server serves).
    #[arg(long, value_enum, default_value_t = WrittenFormat::Q8_0)]
    format: WrittenFormat,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Seed of the order the texts are visited in.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// JSON Lines with a "text" field per line (a forget list works).
    #[arg(long)]
    data: PathBuf,
}

#[derive(Args)]
pub struct UnlearnArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The forget set: a forget-list file (its documents' texts).
    #[arg(long)]
    forget: PathBuf,
    /// Retain texts (JSON Lines with "text").
    #[arg(long, default_value = "eval/retain.jsonl")]
    retain: PathBuf,
    /// Held-out general texts for perplexity and the membership signal.
    #[arg(long, default_value = "eval/holdout.jsonl")]
    holdout: PathBuf,
    /// The unlearning objective.
    #[arg(long, value_enum, default_value_t = Method::Npo)]
    method: Method,
    /// NPO's beta.
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// Stop once forget VerbMem is at most this (and retain NLL within the tolerance).
    #[arg(long)]
    target_verbmem: Option<f64>,
    /// Allowed relative rise of retain NLL for the early stop.
    #[arg(long, default_value_t = 0.1)]
    retain_tolerance: f64,
    /// Steps between early-stop evaluations.
    #[arg(long, default_value_t = 5)]
    eval_every: usize,
    /// Write the report (JSON) here.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn texts(path: &Path) -> Result<Vec<String>> {
    let body = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    body.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: serde_json::Value =
                serde_json::from_str(l).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
            if v.get("kind").and_then(|k| k.as_str()) == Some("term") {
                return Ok(None);
            }
            v["text"]
                .as_str()
                .map(|t| Some(t.to_string()))
                .with_context(|| format!("{}:{}: no \"text\"", path.display(), i + 1))
        })
        .filter_map(Result::transpose)
        .collect()
}

/// The matrix format `lethe train` and `lethe unlearn` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WrittenFormat {
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_1")]
    Q4_1,
    F32,
}

impl WrittenFormat {
    fn dtype(self) -> GgmlDType {
        match self {
            WrittenFormat::Q8_0 => GgmlDType::Q8_0,
            WrittenFormat::Q4_1 => GgmlDType::Q4_1,
            WrittenFormat::F32 => GgmlDType::F32,
        }
    }

    fn name(self) -> &'static str {
        match self {
            WrittenFormat::Q8_0 => "q8_0",
            WrittenFormat::Q4_1 => "q4_1",
            WrittenFormat::F32 => "f32",
        }
    }
}

/// The objective of `lethe unlearn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// GradAscent on the forget set.
    Ga,
    /// GradDiff: ascent on the forget set, descent on the retain set.
    Gd,
    /// Negative Preference Optimization.
    Npo,
}

impl Method {
    fn objective(self) -> Objective {
        match self {
            Method::Ga => Objective::GradAscent,
            Method::Gd => Objective::GradDiff,
            Method::Npo => Objective::Npo,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Method::Ga => "ga",
            Method::Gd => "gd",
            Method::Npo => "npo",
        }
    }
}

fn parse_trainable(s: &str) -> Result<Trainable, String> {
    Ok(match s {
        "all" => Trainable::All,
        "mlp" => Trainable::Mlp,
        _ => match s.strip_prefix("last:").and_then(|k| k.parse().ok()) {
            Some(k) => Trainable::LastBlocks(k),
            None => return Err("use all, mlp or last:K".into()),
        },
    })
}

fn progress(steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} loss {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::model::hex(&Sha256::digest(bytes))
}

struct Setup {
    tok: Model,
    model: TrainableLlama,
    format: GgmlDType,
    base_sha256: String,
}

fn setup(c: &CommonArgs) -> Result<Setup> {
    let format = c.format.dtype();
    let tok = Model::load(&c.model, ServedFormat::AsStored)?;
    let model = TrainableLlama::load(&c.model, c.train)?;
    let base_sha256 = tok.info.sha256.clone();
    // A stale temporary file of an interrupted run is not an output: remove it.
    let _ = std::fs::remove_file(c.out.with_extension("gguf.partial"));
    Ok(Setup { tok, model, format, base_sha256 })
}

fn encode_all(tok: &Model, texts: &[String]) -> Result<Vec<Vec<u32>>> {
    texts.iter().map(|t| tok.encode(t)).collect()
}

fn shuffled(mut v: Vec<Vec<u32>>, seed: u64) -> Vec<Vec<u32>> {
    v.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    v
}

pub fn run_train(args: &TrainArgs) -> Result<()> {
    let c = &args.common;
    let s = setup(c)?;
    let data = texts(&args.data)?;
    anyhow::ensure!(!data.is_empty(), "{} has no texts", args.data.display());
    let tokens = shuffled(encode_all(&s.tok, &data)?, c.seed);
    let bar = progress(c.steps);
    let started = Instant::now();
    let cfg = TrainConfig {
        objective: Objective::Learn,
        lr: c.lr,
        steps: c.steps,
        max_grad_norm: c.max_grad_norm,
        beta: 0.1,
    };
    train(&s.model, &tokens, &[], &cfg, |_, loss| {
        bar.set_message(format!("{loss:.4}"));
        bar.inc(1);
    })?;
    bar.finish();
    let provenance = [
        ("lethe.train.steps", Value::U32(c.steps as u32)),
        ("lethe.train.data_sha256", Value::String(sha256_hex(data.join("\n").as_bytes()))),
        ("lethe.base_model_sha256", Value::String(s.base_sha256.clone())),
    ];
    s.model.write_gguf(&c.out, s.format, &provenance)?;
    println!(
        "trained {} steps in {:.1} s ({:.2} s/step); wrote {}",
        c.steps,
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() / c.steps.max(1) as f64,
        c.out.display()
    );
    Ok(())
}

#[derive(Serialize)]
struct Report {
    method: String,
    steps: usize,
    seconds_per_step: f64,
    total_seconds: f64,
    peak_rss_mb: f64,
    served_format: String,
    base: ModelScores,
    unlearned_f32: ModelScores,
    unlearned_served: ModelScores,
    /// Writing in the served format brought forget memorization back (VerbMem up by > 0.05).
    quantization_regression: bool,
}

pub fn run_unlearn(args: &UnlearnArgs) -> Result<()> {
    let c = &args.common;
    let objective = args.method.objective();
    let s = setup(c)?;
    let forget_texts = texts(&args.forget)?;
    anyhow::ensure!(!forget_texts.is_empty(), "{} has no documents", args.forget.display());
    let forget = encode_all(&s.tok, &forget_texts)?;
    let retain = encode_all(&s.tok, &texts(&args.retain)?)?;
    let holdout = encode_all(&s.tok, &texts(&args.holdout)?)?;

    let t = Instant::now();
    eprintln!("scoring the base model ...");
    let base = report::score(&s.model, &s.tok, &forget, &retain, &holdout)?;
    eprintln!("  scored in {:.1} s", t.elapsed().as_secs_f64());
    let retain_base = base.retain.nll;

    let bar = progress(c.steps);
    let started = Instant::now();
    let (order_f, order_r) = (shuffled(forget.clone(), c.seed), shuffled(retain.clone(), c.seed + 1));
    let cfg =
        TrainConfig { objective, lr: c.lr, steps: c.steps, max_grad_norm: c.max_grad_norm, beta: args.beta };
    // One run advanced between early-stop evaluations: the optimizer state, the text order and
    // NPO's reference (the target model's likelihoods) carry over from part to part.
    let mut trainer = Trainer::new(&s.model, &order_f, &order_r, &cfg)?;
    let mut done = 0;
    while done < c.steps {
        let chunk =
            if args.target_verbmem.is_some() { args.eval_every.min(c.steps - done) } else { c.steps - done };
        trainer.run(chunk, |_, loss| {
            bar.set_message(format!("{loss:.4}"));
            bar.inc(1);
        })?;
        done += chunk;
        if let Some(target) = args.target_verbmem {
            let t = Instant::now();
            let verbmem = report::score_verbmem(&s.model, &s.tok, &forget)?;
            let retain_nll = retain
                .iter()
                .map(|t| Ok(nll(&s.model, t)?.to_scalar::<f32>()? as f64))
                .sum::<Result<f64>>()?
                / retain.len() as f64;
            // Printed whether or not the bar is drawn (it is hidden when stderr is not a terminal).
            let secs = t.elapsed().as_secs_f64();
            bar.suspend(|| {
                eprintln!("step {done}: forget VerbMem {verbmem:.3}, retain NLL {retain_nll:.3} (evaluated in {secs:.1} s)")
            });
            if verbmem <= target && retain_nll <= retain_base * (1.0 + args.retain_tolerance) {
                break;
            }
        }
    }
    bar.finish();
    let total = started.elapsed().as_secs_f64();

    let t = Instant::now();
    eprintln!("scoring the unlearned model (f32) ...");
    let unlearned_f32 = report::score(&s.model, &s.tok, &forget, &retain, &holdout)?;
    eprintln!("  scored in {:.1} s", t.elapsed().as_secs_f64());
    let provenance = [
        ("lethe.unlearn.method", Value::String(args.method.name().into())),
        ("lethe.unlearn.steps", Value::U32(done as u32)),
        ("lethe.unlearn.forget_sha256", Value::String(sha256_hex(forget_texts.join("\n").as_bytes()))),
        ("lethe.base_model_sha256", Value::String(s.base_sha256.clone())),
    ];
    s.model.write_gguf(&c.out, s.format, &provenance)?;
    let written = TrainableLlama::load(&c.out, Trainable::Mlp)?;
    let unlearned_served = if s.model.same_weights(&written)? {
        // Bit-identical weights score identically: scoring them again would only repeat it.
        eprintln!(
            "the weights as written ({}) are bit for bit the f32 weights (compared tensor by tensor): same scores",
            c.format.name()
        );
        unlearned_f32.clone()
    } else {
        let t = Instant::now();
        eprintln!("scoring the unlearned model as written ({}) ...", c.format.name());
        let scores = report::score(&written, &s.tok, &forget, &retain, &holdout)?;
        eprintln!("  scored in {:.1} s", t.elapsed().as_secs_f64());
        scores
    };
    let report = Report {
        method: args.method.name().into(),
        steps: done,
        seconds_per_step: total / done.max(1) as f64,
        total_seconds: total,
        peak_rss_mb: peak_rss_mb(),
        served_format: c.format.name().into(),
        quantization_regression: unlearned_served.forget.verbmem > unlearned_f32.forget.verbmem + 0.05,
        base,
        unlearned_f32,
        unlearned_served,
    };
    print_table(&report);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    println!("wrote {}", c.out.display());
    Ok(())
}

fn print_table(r: &Report) {
    println!("| model | forget VerbMem | forget longest run (words) | forget NLL | retain VerbMem | retain NLL | held-out perplexity | Min-K% AUC |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, m) in [
        ("base", &r.base),
        ("unlearned (f32) in memory", &r.unlearned_f32),
        (&*format!("unlearned ({}) as written", r.served_format), &r.unlearned_served),
    ] {
        println!(
            "| {name} | {:.3} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.3} |",
            m.forget.verbmem,
            m.forget.longest_run_words,
            m.forget.nll,
            m.retain.verbmem,
            m.retain.nll,
            m.holdout_perplexity,
            m.min_k_auc
        );
    }
    println!(
        "{} steps of {}, {:.2} s/step, {:.1} s in all, peak RSS {:.0} MB",
        r.steps, r.method, r.seconds_per_step, r.total_seconds, r.peak_rss_mb
    );
    if r.quantization_regression {
        println!(
            "WARNING: writing in {} brought forget memorization back (VerbMem rose by more than 0.05)",
            r.served_format
        );
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Args)]
pub struct ProbeArgs {
    /// GGUF model to probe (as the server would serve it).
    #[arg(long)]
    model: PathBuf,
    /// Forget list whose documents are probed.
    #[arg(long)]
    forget: PathBuf,
    /// Sampled probes per entry besides the greedy one.
    #[arg(long, default_value_t = 3)]
    samples: u64,
}

/// Extraction probes: the prefix of each forget document, continued greedily and sampled
/// (temperature 0.8), scored by ROUGE-L against the true continuation.
pub fn run_probe(args: &ProbeArgs) -> Result<()> {
    let model = Model::load(&args.model, ServedFormat::Q8_0)?;
    let entries = crate::forget::load(&args.forget)?;
    println!("| entry | greedy VerbMem | best sampled VerbMem | longest run (words) |");
    println!("|---|---|---|---|");
    let mut all = Vec::new();
    for e in entries.iter().filter(|e| e.kind == crate::forget::Kind::Document) {
        let ids = model.encode(&e.text)?;
        let prefix = 32.min(ids.len() / 2);
        let truth = model.decode(&ids[prefix..ids.len().min(prefix + 64)])?;
        let n = ids.len().min(prefix + 64) - prefix;
        let probe = |sampling: Sampling| -> Result<String> {
            let mut g = Generator::new(&model, ids[..prefix].to_vec(), &sampling);
            let mut out = String::new();
            for _ in 0..n {
                match g.step(|_| Vec::new())? {
                    Step::Token { text, .. } => out.push_str(&text),
                    Step::Eos => break,
                }
            }
            out.push_str(&g.flush()?);
            Ok(out)
        };
        let greedy = probe(Sampling { temperature: 0.0, top_p: None, top_k: None, seed: 0 })?;
        let mut best = 0.0f64;
        let mut run = report::longest_common_run(&greedy, &truth);
        for seed in 0..args.samples {
            let s = probe(Sampling { temperature: 0.8, top_p: Some(0.95), top_k: None, seed })?;
            best = best.max(rouge_l(&s, &truth));
            run = run.max(report::longest_common_run(&s, &truth));
        }
        let g = rouge_l(&greedy, &truth);
        all.push(g);
        println!("| {} | {g:.3} | {best:.3} | {run} |", e.id);
    }
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    println!("mean greedy VerbMem over {} documents: {mean:.3}", all.len());
    Ok(())
}
