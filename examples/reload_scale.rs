//! Time from a forget-list change to a live snapshot, against the size of the list: loads N
//! synthetic documents into a fresh store (PutSet), then adds 10 more (AddEntries) and times
//! that change until it is durable and swapped in, as the admin RPC does. Also reports the
//! guard's index memory (estimate) and the process's resident memory.
//!
//!     cargo run --release --example reload_scale -- [--semantic] 1000 10000 100000
//!
//! Documents are synthetic: 40 words drawn from a 3,000-word vocabulary with a fixed seed.
use lethe::forget::mutation::Mutation;
use lethe::forget::store::Store;
use lethe::forget::SetPolicy;
use lethe::forget::{Entry, Kind};
use lethe::guard::{semantic::Embedder, GuardConfig};
use lethe::live::{Backend, Live};
use lethe::model::{Model, ServedFormat};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn docs(n: usize, offset: usize, rng: &mut rand::rngs::StdRng, vocab: &[String]) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            id: format!("doc-{}", offset + i),
            set: "synthetic".into(),
            kind: Kind::Document,
            text: (0..40)
                .map(|_| vocab[rng.random_range(0..vocab.len())].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            aliases: vec![],
            term_type: None,
            fingerprints: None,
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let semantic = args.iter().any(|a| a == "--semantic");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let vocab: Vec<String> = (0..3000)
        .map(|_| (0..rng.random_range(3..10)).map(|_| rng.random_range(b'a'..=b'z') as char).collect())
        .collect();
    let model =
        Arc::new(Model::load("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), ServedFormat::Q8_0)?);
    let embedder = if semantic { Some(Arc::new(Embedder::load("models/minilm".as_ref())?)) } else { None };
    println!("semantic layer: {}", if semantic { "on" } else { "off" });
    println!(
        "| documents | initial load (PutSet) | add 10 -> live | index memory (estimate) | process RSS |"
    );
    println!("|---|---|---|---|---|");
    for n in sizes {
        let dir = tempfile::tempdir()?;
        let cfg = GuardConfig { embedder: None, ..Default::default() };
        let live = Arc::new(Live::start(
            cfg,
            Some(model.clone()),
            embedder.clone(),
            Some(Backend::File(Store::open(dir.path(), Default::default())?)),
            Default::default(),
        )?);
        let initial = docs(n, 0, &mut rng, &vocab);
        let t = std::time::Instant::now();
        let put =
            Mutation::PutSet { set: "synthetic".into(), policy: SetPolicy::default(), entries: initial };
        live.mutate(put).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let load = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let add = Mutation::AddEntries { set: "synthetic".into(), entries: docs(10, n, &mut rng, &vocab) };
        live.mutate(add).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let add = t.elapsed().as_secs_f64();
        println!(
            "| {n} | {load:.2} s | {add:.2} s | {:.1} MB | {:.0} MB |",
            live.current().index_bytes() as f64 / 1e6,
            rss_mb()
        );
    }
    Ok(())
}
