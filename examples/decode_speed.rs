//! Measures prompt processing, time to first token and decode speed of a GGUF model in each
//! served format, in-process (no gRPC), to choose `served_format` by measurement.
//!
//!     cargo run --release --example decode_speed [MODEL.gguf] [RUNS]
//!         [--format as_stored|q8_0]... [--new-tokens N] [--ban-eos] [--json]
//!
//! The first token comes from the prompt pass (time to first token); then `--new-tokens`
//! (default 128) greedy decode steps are timed (decode tok/s). `--ban-eos` masks the
//! end-of-sequence tokens through the generator's decode-time mask, so every run decodes exactly
//! N tokens (bench/peers.sh does the same on llama.cpp). `--json` prints one JSON object per
//! format instead of the Markdown table, with every run's figures and the generated token ids.
use lethe::model::{Generator, Model, Sampling, ServedFormat, Step};
use std::time::Instant;

const PROMPT: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
                      Write a long story about a lighthouse keeper and a storm.<|im_end|>\n<|im_start|>assistant\n";

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (mut positional, mut formats) = (Vec::new(), Vec::new());
    let (mut new_tokens, mut ban_eos, mut json) = (128usize, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--format" => formats.push(match args.next().as_deref() {
                Some("as_stored") => ServedFormat::AsStored,
                Some("q8_0") => ServedFormat::Q8_0,
                other => anyhow::bail!("--format as_stored|q8_0, not {other:?}"),
            }),
            "--new-tokens" => new_tokens = args.next().unwrap_or_default().parse()?,
            "--ban-eos" => ban_eos = true,
            "--json" => json = true,
            _ => positional.push(a),
        }
    }
    let mut positional = positional.into_iter();
    let path = positional.next().unwrap_or_else(|| "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let runs: usize = positional.next().map_or(Ok(3), |r| r.parse())?;
    if formats.is_empty() {
        formats = vec![ServedFormat::AsStored, ServedFormat::Q8_0];
    }
    let threads = std::thread::available_parallelism()?;
    if !json {
        println!("model {path}, {threads} threads, {runs} runs, median of each");
        println!("| served format | prompt tokens | time to first token | prompt tok/s | decode tok/s |");
        println!("|---|---|---|---|---|");
    }
    for format in formats {
        let load = Instant::now();
        let model = Model::load(path.as_ref(), format)?;
        let load_s = load.elapsed().as_secs_f64();
        let ids = model.encode(PROMPT)?;
        let eos = model.eos_tokens.clone();
        let (mut ttft, mut decode, mut decoded) = (Vec::new(), Vec::new(), Vec::new());
        let (mut generated, mut eos_masked) = (Vec::new(), 0);
        for _ in 0..runs {
            let sampling = Sampling { temperature: 0.0, top_p: None, top_k: None, seed: 0 };
            let mut g = Generator::new(&model, ids.clone(), &sampling);
            let ban = |_: &[u32]| if ban_eos { eos.clone() } else { Vec::new() };
            let start = Instant::now();
            let mut ended = g.step(ban)? == Step::Eos;
            let first = start.elapsed();
            let mut n = 0;
            let start = Instant::now();
            while n < new_tokens && !ended {
                match g.step(ban)? {
                    Step::Eos => ended = true,
                    Step::Token { masked, .. } => {
                        eos_masked += masked as usize;
                        n += 1;
                    }
                }
            }
            ttft.push(first.as_secs_f64());
            decode.push(n as f64 / start.elapsed().as_secs_f64());
            decoded.push(n);
            generated = g.generated().to_vec();
        }
        let t = median(&ttft);
        if json {
            let out = serde_json::json!({
                "side": "lethe",
                "model": path,
                "file_format": model.info.file_format,
                "served_format": model.info.served_format,
                "load_s": load_s,
                "threads": threads.get(),
                "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
                "prompt_tokens": ids.len(),
                "prompt_ids": ids,
                "new_tokens": new_tokens,
                "ban_eos": ban_eos,
                "eos_masked_steps": eos_masked,
                "runs": runs,
                "decoded": decoded,
                "ttft_s": ttft,
                "decode_tok_s": decode,
                "ttft_s_median": t,
                "decode_tok_s_median": median(&decode),
                "generated_ids": generated,
            });
            println!("{out}");
        } else {
            println!(
                "| {} | {} | {:.0} ms | {:.0} | {:.1} |",
                model.info.served_format,
                ids.len(),
                t * 1e3,
                ids.len() as f64 / t,
                median(&decode)
            );
        }
    }
    Ok(())
}
