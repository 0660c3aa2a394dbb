//! Scale of one forget-list size, in a fresh process (so its memory is its own), written as one
//! JSON object: the snapshot build of N documents (PutSet into a fresh store, until durable
//! and live), the time from a change of 10 documents to live (AddEntries, median of
//! `--adds`), `Guard::check` latency (p50/p99) over a fixed set of output-like texts, the
//! guard's own index-memory estimate, and the process's resident memory (VmRSS) before the
//! list and after it, and its peak (VmHWM). The admin RPC path, in-process, like
//! `examples/reload_scale.rs`.
//!
//!     cargo run --release --example scale -- --docs 10000 [--semantic] [--adds 3] [--out F.json]
//!     bench/scale.sh                      # 1k, 10k, 100k; semantic layer on for 1k and 10k
//!
//! Synthetic list (see `benches/synth`): N documents of 40 words drawn from the ~1,250-word
//! vocabulary of `eval/*.jsonl`, plus 300 two-word pseudo-name terms with an e-mail alias.
//! Check texts: 20 texts of about 100 vocabulary words (no copy) and 10 that carry a 20-word
//! verbatim run of one of the first ten documents, each checked `--passes` times.
use lethe::forget::mutation::Mutation;
use lethe::forget::store::Store;
use lethe::forget::SetPolicy;
use lethe::guard::{semantic::Embedder, CheckParams, GuardConfig};
use lethe::live::{Backend, Live};
use lethe::model::{Model, ServedFormat};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../benches/synth/mod.rs"]
mod synth;

fn status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let docs: usize = arg(&args, "--docs").ok_or_else(|| anyhow::anyhow!("--docs N is required"))?;
    let terms: usize = arg(&args, "--terms").unwrap_or(300);
    let adds: usize = arg(&args, "--adds").unwrap_or(3);
    let passes: usize = arg(&args, "--passes").unwrap_or(3);
    let out: Option<String> = arg(&args, "--out");
    let semantic = args.iter().any(|a| a == "--semantic");

    let vocab = synth::vocabulary();
    let model =
        Arc::new(Model::load("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), ServedFormat::Q8_0)?);
    let embedder = if semantic { Some(Arc::new(Embedder::load("models/minilm".as_ref())?)) } else { None };
    let dir = tempfile::tempdir()?;
    let cfg = GuardConfig { embedder: None, ..Default::default() };
    let live = Arc::new(Live::start(
        cfg,
        Some(model),
        embedder,
        Some(Backend::File(Store::open(dir.path(), Default::default())?)),
        Default::default(),
    )?);
    let entries = synth::documents(docs, 0, synth::seed_docs(), &vocab);
    let rss_before = status_mb("VmRSS:");

    let t = Instant::now();
    let policy = SetPolicy::default();
    let put = Mutation::PutSet {
        set: "synthetic-terms".into(),
        policy: policy.clone(),
        entries: synth::terms(terms, 11),
    };
    live.mutate(put).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let put = Mutation::PutSet { set: "synthetic".into(), policy, entries };
    live.mutate(put).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let build = t.elapsed().as_secs_f64();
    eprintln!("{docs} documents: built and live in {build:.2} s");

    let mut add_times = Vec::new();
    for k in 0..adds {
        let new = synth::documents(10, docs + 10 * k, synth::seed_docs(), &vocab);
        let t = Instant::now();
        live.mutate(Mutation::AddEntries { set: "synthetic".into(), entries: new })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        add_times.push(t.elapsed().as_secs_f64());
    }
    add_times.sort_by(f64::total_cmp);
    eprintln!("add 10 -> live: {add_times:?} s");

    let guard = live.current();
    let texts = synth::outputs(20, 10, 500, &vocab);
    let mut lat: Vec<Duration> = Vec::new();
    let mut matched = 0;
    guard.check(&texts[0], CheckParams::default())?; // warm-up
    for _ in 0..passes {
        for text in &texts {
            let t = Instant::now();
            let findings = guard.check(text, CheckParams::default())?;
            lat.push(t.elapsed());
            matched += usize::from(!findings.is_empty());
        }
    }
    lat.sort();
    let q =
        |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1].as_secs_f64() * 1e3;
    let sizes = guard.index_sizes();
    let (ngrams, term_fps, vectors) = (sizes.ngrams, sizes.terms, sizes.vectors);
    let report = json!({
        "documents": docs,
        "terms": terms,
        "semantic": semantic,
        "build_seconds": build,
        "add10_seconds_median": add_times[add_times.len() / 2],
        "add10_seconds": add_times,
        "check_ms_p50": q(0.5),
        "check_ms_p99": q(0.99),
        "check_ms_mean": lat.iter().map(Duration::as_secs_f64).sum::<f64>() / lat.len() as f64 * 1e3,
        "check_texts": texts.len(),
        "check_samples": lat.len(),
        "check_matched_share": matched as f64 / lat.len() as f64,
        "index_bytes_estimate": guard.index_bytes(),
        "ngram_fingerprints": ngrams,
        "term_fingerprints": term_fps,
        "semantic_vectors": vectors,
        "rss_mb_before_list": rss_before,
        "rss_mb": status_mb("VmRSS:"),
        "peak_rss_mb": status_mb("VmHWM:"),
    });
    let line = serde_json::to_string(&report)?;
    println!("{line}");
    if let Some(path) = out {
        std::fs::write(path, line + "\n")?;
    }
    Ok(())
}
