//! Guard cost per generated token, in-process: the same greedy generations with an empty
//! forget list and with the evaluation forget list (all layers on, block mode, stream guard
//! with hold-back), reporting decode throughput and the guard's time per token.
//!
//!     cargo run --release --example guard_overhead [FORGET.jsonl] [TOKENS]
use lethe::guard::{stream::StreamGuard, Guard, GuardConfig};
use lethe::model::{Generator, Model, Sampling, ServedFormat, Step};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let forget = args.next().unwrap_or_else(|| "eval/forget.jsonl".into());
    let tokens: usize = args.next().map_or(Ok(200), |t| t.parse())?;
    let model = Model::load("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), ServedFormat::Q8_0)?;
    let cfg = GuardConfig::default();
    let embedder = Arc::new(lethe::guard::semantic::Embedder::load("models/minilm".as_ref())?);
    let entries = lethe::forget::load(forget.as_ref())?;
    let empty = Arc::new(Guard::build(&[], &cfg, Some(&model), None, 0)?);
    let full = Arc::new(Guard::build(&entries, &cfg, Some(&model), Some(embedder), 1)?);
    let prompts = [
        "Write a long story about a lighthouse keeper and a storm.",
        "Explain how a bicycle works, in detail.",
        "Describe a walk through a busy market in the morning.",
    ];
    println!("{} entries, {tokens} tokens per generation, greedy, {} prompts", entries.len(), prompts.len());
    println!("| forget list | decode tok/s (with guard) | guard per token: median | p99 | mean | share of decode time |");
    println!("|---|---|---|---|---|---|");
    for (name, guard) in [("empty", &empty), ("eval list, all layers", &full)] {
        let mut per_token: Vec<Duration> = Vec::new();
        let (mut generated, mut total) = (0usize, Duration::ZERO);
        for p in prompts {
            let text = format!("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n");
            let ids = model.encode(&text)?;
            let mut g = Generator::new(
                &model,
                ids,
                &Sampling { temperature: 0.0, top_p: None, top_k: None, seed: 0 },
            );
            let mut stream = StreamGuard::new(guard.clone());
            g.step(|c| guard.forbidden(c).to_vec())?; // prompt processing is not decode
            let started = Instant::now();
            for _ in 0..tokens {
                let mut guard_time = Duration::ZERO;
                let step = g.step(|c| {
                    let t = Instant::now();
                    let f = guard.forbidden(c).to_vec();
                    guard_time += t.elapsed();
                    f
                })?;
                let Step::Token { text, .. } = step else { break };
                let t = Instant::now();
                stream.push(&text)?;
                per_token.push(guard_time + t.elapsed());
                generated += 1;
            }
            let t = Instant::now();
            stream.finish()?;
            per_token.last_mut().map(|d| *d += t.elapsed());
            total += started.elapsed();
        }
        per_token.sort();
        let pct = |q: f64| per_token[((per_token.len() - 1) as f64 * q) as usize];
        let sum: Duration = per_token.iter().sum();
        println!(
            "| {name} | {:.1} | {:.3} ms | {:.3} ms | {:.3} ms | {:.1}% |",
            generated as f64 / total.as_secs_f64(),
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            sum.as_secs_f64() * 1e3 / per_token.len() as f64,
            100.0 * sum.as_secs_f64() / total.as_secs_f64()
        );
    }
    Ok(())
}
