//! Throughput of the guard's sentence embedder (all-MiniLM-L6-v2 on candle, mean-pooled and
//! normalized, as the semantic layer runs it) at several batch sizes.
//!
//!     cargo run --release --example embed_speed -- [--model models/minilm] [--texts FILE.json]
//!         [--batch 1,8,32] [--runs 1] [--out-npy FILE.npy] [--json]
//!
//! `--texts` is a JSON array of strings (default: 256 24-word windows of eval/*.jsonl). For each batch size: one warm-up batch, then every text embedded in batches of that
//! size, timed; `--runs` repeats that and reports the median. `--out-npy` writes the
//! embeddings (float32, one row per text) so that another implementation can be compared.
use lethe::guard::semantic::Embedder;
use std::io::Write;
use std::time::Instant;

/// `n` 24-word windows, evenly spaced among the windows at a stride of 8 words of every text in
/// eval/*.jsonl, files in name order (what bench/peers.py makes too).
fn eval_windows(n: usize) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<_> = std::fs::read_dir("eval")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f)?.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let words: Vec<&str> = v["text"].as_str().unwrap_or_default().split_whitespace().collect();
            for s in (0..(words.len() + 1).saturating_sub(24)).step_by(8) {
                out.push(words[s..s + 24].join(" "));
            }
        }
    }
    let all = out.len();
    Ok((0..n.min(all)).map(|i| std::mem::take(&mut out[i * all / n.min(all)])).collect())
}

fn write_npy(path: &str, rows: &[Vec<f32>]) -> anyhow::Result<()> {
    let (n, d) = (rows.len(), rows.first().map_or(0, Vec::len));
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for v in rows.iter().flatten() {
        f.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let (mut model, mut texts_file, mut out_npy) = ("models/minilm".to_string(), None, None);
    let (mut batches, mut runs, mut json) = (vec![1usize, 8, 32], 1usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = value()?,
            "--texts" => texts_file = Some(value()?),
            "--out-npy" => out_npy = Some(value()?),
            "--batch" => batches = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--runs" => runs = value()?.parse()?,
            "--json" => json = true,
            _ => anyhow::bail!("unknown argument {a}"),
        }
    }
    let texts: Vec<String> = match &texts_file {
        Some(f) => serde_json::from_str(&std::fs::read_to_string(f)?)?,
        None => eval_windows(256)?,
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let load = Instant::now();
    let embedder = Embedder::load(model.as_ref())?;
    let load_s = load.elapsed().as_secs_f64();
    if !json {
        println!("{} texts, embedder {model} (dim {}), {runs} run(s), median", texts.len(), embedder.dim);
        println!("| batch size | texts/s |");
        println!("|---|---|");
    }
    let mut results = Vec::new();
    let mut last = Vec::new();
    for &b in &batches {
        embedder.embed(&refs[..b.min(refs.len())])?; // warm-up
        let mut rates = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let mut out = Vec::with_capacity(refs.len());
            for chunk in refs.chunks(b) {
                out.extend(embedder.embed(chunk)?);
            }
            rates.push(refs.len() as f64 / start.elapsed().as_secs_f64());
            last = out;
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        if !json {
            println!("| {b} | {median:.1} |");
        }
        results.push(serde_json::json!({ "batch": b, "texts_per_s": rates, "texts_per_s_median": median }));
    }
    if let Some(path) = &out_npy {
        write_npy(path, &last)?;
    }
    if json {
        let out = serde_json::json!({
            "side": "lethe",
            "model": model,
            "texts": texts.len(),
            "dim": embedder.dim,
            "load_s": load_s,
            "threads": std::thread::available_parallelism()?.get(),
            "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
            "runs": runs,
            "results": results,
        });
        println!("{out}");
    }
    Ok(())
}
