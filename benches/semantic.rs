//! Micro-benchmarks of the semantic layer: the MiniLM embedder per window at batch 1, 8 and 32
//! (`models/minilm`, fetched by `./scripts/fetch-models.sh`), HNSW queries at 10k and 100k
//! vectors, the HNSW build, the exact audit's brute force, and `Guard::check`, the stream guard
//! (with and without the semantic pre-gate) and the exact audit with every layer on, on an
//! output off the forget list's topics and on one on them.
//!
//!     cargo bench --bench semantic
//!     LETHE_BENCH_HNSW_SIZES=10000 cargo bench --bench semantic    # skip the 100k index
//!
//! HNSW vectors are synthetic with near-duplicate structure (unit vectors in clusters around
//! 2,500 random centres, noise norm 0.5; see `benches/synth`), not embeddings: embedding 100k
//! windows takes far longer than the index on 2 cores. The index is built once per size (its
//! time is printed, not sampled); queries are half near a centre, half random directions.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use lethe::guard::semantic::{Embedder, SemanticIndex};
use lethe::guard::stream::StreamGuard;
use lethe::guard::{CheckParams, Guard, GuardConfig};
use rand::SeedableRng;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "synth/mod.rs"]
mod synth;

const DIM: usize = 384;

fn embedder_dir() -> PathBuf {
    std::env::var_os("LETHE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
        .join("minilm")
}

fn embedder(c: &mut Criterion, e: &Embedder, vocab: &[String]) {
    // 24-word windows of vocabulary words, as the guard embeds (about 30 word pieces each).
    let text = synth::filler(8_000, 21, vocab);
    let words: Vec<&str> = text.split(' ').collect();
    let windows: Vec<String> = words.chunks(24).take(32).map(|w| w.join(" ")).collect();
    let mut g = c.benchmark_group("embedder_minilm_24_word_windows");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(5));
    for batch in [1usize, 8, 32] {
        let texts: Vec<&str> = windows[..batch].iter().map(String::as_str).collect();
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch_{batch}"), |b| b.iter(|| e.embed(black_box(&texts)).expect("embed")));
    }
    g.finish();
}

fn hnsw(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("LETHE_BENCH_HNSW_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for n in sizes {
        let (vectors, centers) = synth::clustered(n, 2_500, DIM, 17);
        let queries: Vec<Vec<f32>> = (0..256)
            .map(|i| {
                if i % 2 == 0 {
                    synth::near(&centers[(i * 7) % centers.len()], 0.5, &mut rng)
                } else {
                    synth::random_unit(DIM, &mut rng)
                }
            })
            .collect();
        let t = Instant::now();
        let index =
            SemanticIndex::build(vectors.into_iter().enumerate().map(|(i, v)| (i as u32, v)).collect());
        let built = t.elapsed().as_secs_f64();
        println!(
            "hnsw: built {n} x {DIM} clustered vectors in {built:.1} s ({:.2} s per 1,000), M 16, ef_construction 200",
            built / n as f64 * 1e3
        );
        let mut g = c.benchmark_group(format!("hnsw_{}k_vectors", n / 1000));
        g.throughput(Throughput::Elements(1));
        let mut at = 0;
        g.bench_function("query_k4_ef64", |b| {
            b.iter(|| {
                at = (at + 1) % queries.len();
                index.nearest(black_box(&queries[at]), 4, 64)
            })
        });
        if n <= 10_000 {
            // The exact audit compares each output window with every vector.
            g.bench_function("brute_force_per_window", |b| {
                b.iter(|| {
                    at = (at + 1) % queries.len();
                    index.brute_force(black_box(&queries[at]))
                })
            });
        }
        g.finish();
    }
    // Build time of the index a 1,000-document snapshot needs (4 windows per 40-word document).
    let (vectors, _) = synth::clustered(4_000, 1_000, DIM, 23);
    let embeddings: Vec<(u32, Vec<f32>)> =
        vectors.into_iter().enumerate().map(|(i, v)| (i as u32 / 4, v)).collect();
    let mut g = c.benchmark_group("hnsw_build");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("4000_vectors_of_1000_docs", |b| {
        b.iter_batched(|| embeddings.clone(), SemanticIndex::build, BatchSize::LargeInput)
    });
    g.finish();
}

fn all_layers(c: &mut Criterion, e: Arc<Embedder>, vocab: &[String]) {
    // The committed evaluation list (documents and terms of several sets) with every layer on:
    // the semantic work per output depends on the output's length, not on the list's size.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("eval/forget.jsonl");
    let entries = lethe::forget::load(&path).expect("eval/forget.jsonl");
    let guard =
        Arc::new(Guard::build(&entries, &GuardConfig::default(), None, Some(e.clone()), 1).expect("build"));
    // The same with the pre-gate off (every window embedded, as before the gate existed), and
    // with a stricter gate (2 distinctive words).
    let with_gate = |min_words: usize| {
        let mut cfg = GuardConfig::default();
        cfg.semantic.gate_min_words = min_words;
        Arc::new(Guard::build(&entries, &cfg, None, Some(e.clone()), 1).expect("build"))
    };
    let (ungated, gate2) = (with_gate(0), with_gate(2));
    // About 100 words, the length of a 128-token answer: an answer on another topic, random
    // words of the evaluation files' vocabulary (the forget list's words among them), and the
    // evaluation's paraphrases of forget documents (which the gate must let through).
    let off_topic = "To grow tomatoes well, start the seeds indoors six weeks before the last frost, \
        then move the seedlings outside once the nights stay warm. Plant them deep, up to the first \
        leaves, so the buried stem grows extra roots. Give each plant a stake or a cage, water the \
        soil rather than the leaves, and add a layer of mulch to keep the moisture in. Pinch out \
        the side shoots of vining kinds, feed them every two weeks once the first fruit sets, and \
        pick the fruit as soon as it colours evenly; it ripens well on a sunny windowsill."
        .to_string();
    let eval_words = synth::filler(600, 77, vocab);
    let on_topic: String = std::fs::read_to_string(path.with_file_name("paraphrases.jsonl"))
        .expect("eval/paraphrases.jsonl")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["text"].as_str().unwrap().to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
        .split(' ')
        .take(100)
        .collect::<Vec<_>>()
        .join(" ");
    for (topic, output) in
        [("off_topic", off_topic), ("eval_vocabulary", eval_words), ("paraphrase", on_topic)]
    {
        let words = output.split(' ').count();
        let mut g = c.benchmark_group(format!("guard_all_layers_eval_list_{words}_word_{topic}_output"));
        g.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(5));
        g.throughput(Throughput::Elements(1));
        g.bench_function("check_per_output", |b| {
            b.iter(|| guard.check(black_box(&output), CheckParams::default()).expect("check"))
        });
        g.bench_function("exact_audit_per_output", |b| {
            b.iter(|| guard.check(black_box(&output), CheckParams::EXACT).expect("audit"))
        });
        let pieces: Vec<String> = output.split_inclusive(' ').map(str::to_string).collect();
        g.throughput(Throughput::Elements(pieces.len() as u64));
        let streams = [
            ("stream_push_per_word", &guard),
            ("stream_push_per_word_ungated", &ungated),
            ("stream_push_per_word_gate_2_words", &gate2),
        ];
        for (name, guard) in streams {
            g.bench_function(name, |b| {
                b.iter_batched(
                    || StreamGuard::new(guard.clone()),
                    |mut s| {
                        for p in &pieces {
                            black_box(s.push(p).expect("push"));
                        }
                        s.finish().expect("finish")
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}

fn benches(c: &mut Criterion) {
    let vocab = synth::vocabulary();
    let dir = embedder_dir();
    if dir.join("model.safetensors").exists() {
        // As the server loads it: with the commons (Debian's licenses, `make models`) embedded.
        let cfg = GuardConfig {
            embedder: Some(dir.clone()),
            commons: Some(dir.with_file_name("commons")),
            ..Default::default()
        };
        let e = cfg.load_embedder().expect("loading MiniLM").expect("an embedder");
        embedder(c, &e, &vocab);
        all_layers(c, e, &vocab);
    } else {
        println!("{} is missing (run ./scripts/fetch-models.sh): embedder benchmarks skipped", dir.display());
    }
    hnsw(c);
}

criterion_group! {
    name = semantic;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = benches
}
criterion_main!(semantic);
