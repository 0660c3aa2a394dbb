//! Measures prompt processing, time to first token and decode speed of a GGUF model in each
//! served format, in-process (no gRPC), to choose `served_format` by measurement.
//!
//!     cargo run --release --example decode_speed [MODEL.gguf] [RUNS]
use lethe::model::{Generator, Model, Sampling, ServedFormat, Step};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let runs: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
                  Write a long story about a lighthouse keeper and a storm.<|im_end|>\n<|im_start|>assistant\n";
    let new_tokens = 128;
    println!("model {path}, {} threads, {runs} runs, median of each", std::thread::available_parallelism()?);
    println!("| served format | prompt tokens | time to first token | prompt tok/s | decode tok/s |");
    println!("|---|---|---|---|---|");
    for format in [ServedFormat::AsStored, ServedFormat::Q8_0] {
        let model = Model::load(path.as_ref(), format)?;
        let ids = model.encode(prompt)?;
        let (mut ttft, mut decode) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let sampling = Sampling { temperature: 0.0, top_p: None, top_k: None, seed: 0 };
            let mut g = Generator::new(&model, ids.clone(), &sampling);
            let start = Instant::now();
            g.step(|_| Vec::new())?;
            let first = start.elapsed();
            let mut n = 0;
            let start = Instant::now();
            while n < new_tokens {
                if g.step(|_| Vec::new())? == Step::Eos {
                    break;
                }
                n += 1;
            }
            ttft.push(first.as_secs_f64());
            decode.push(n as f64 / start.elapsed().as_secs_f64());
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let t = median(&mut ttft);
        println!(
            "| {} | {} | {:.0} ms | {:.0} | {:.1} |",
            model.info.served_format,
            ids.len(),
            t * 1e3,
            ids.len() as f64 / t,
            median(&mut decode)
        );
    }
    Ok(())
}
