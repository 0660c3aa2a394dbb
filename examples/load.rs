//! A bounded load generator for a running Lethe server (a tonic client over `lethe::proto`).
//!
//!     cargo run --release --example load -- --addr 127.0.0.1:50051 --concurrency 2 \
//!         --requests 20 --mode stream --max-tokens 64 [--duration 60] [--json] [--out FILE]
//!
//! Workers send requests until `--requests` have been started or `--duration` seconds have
//! passed (whichever comes first; at least one of them bounds every run, 4 x concurrency by
//! default), then wait for the requests in flight (each with a gRPC deadline of `--timeout`).
//!
//! Reports, measured at the client:
//! - generated tokens per second: completion tokens of the successful requests (from `usage`)
//!   over the wall time of the run;
//! - `stream`: time to first token (request sent to first message carrying text; it includes
//!   queueing, the prompt, and the guard's hold-back) and inter-token latency (gaps between
//!   consecutive messages carrying text: the server sends one per released piece of text,
//!   usually a word), p50 and p99;
//! - `unary`: request latency p50 and p99;
//! - errors by gRPC code, verdicts and finish reasons.
//!
//! Prompts: a built-in set of eight chat questions, or `--prompts FILE` with one prompt a line:
//! plain text (sent as the user message of a chat with a short system message), or JSON
//! `{"prompt": "..."}` (raw prompt) or `{"messages": [{"role": ..., "content": ...}]}`.
use clap::{Parser, ValueEnum};
use lethe::proto::inference_client::InferenceClient;
use lethe::proto::{ChatMessage, FinishReason, GenerateRequest, Verdict};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Unary,
    Stream,
}

#[derive(Debug, Parser)]
#[command(about = "Bounded load generator for a Lethe server")]
struct Args {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Stop starting requests after this many (default: 4 x concurrency when no duration).
    #[arg(long)]
    requests: Option<usize>,
    /// Stop starting requests after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    mode: Mode,
    /// One prompt a line (plain text, or JSON with `prompt` or `messages`).
    #[arg(long)]
    prompts: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// 0 = greedy (the same prompt gives the same output on every run).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Seed of sampled requests (request i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// gRPC deadline of each request, in seconds.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Requests sent one by one before the measured run (not counted).
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Bearer token for a server with an inference token.
    #[arg(long, env = "LETHE_INFERENCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A label copied into the report (e.g. the configuration under test).
    #[arg(long, default_value = "")]
    label: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

const BUILT_IN: &[&str] = &[
    "Write a long story about a lighthouse keeper and a storm.",
    "Explain how a bicycle works, in detail.",
    "Describe a walk through a busy market in the morning.",
    "What are the main causes of the seasons on Earth?",
    "Give step-by-step instructions for baking bread at home.",
    "Explain why the sky is blue to a ten-year-old.",
    "Write a letter to a friend about a trip to the mountains.",
    "Describe how a city's water supply reaches people's homes.",
];

fn chat(user: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage { role: "system".into(), content: "You are a helpful assistant.".into() },
        ChatMessage { role: "user".into(), content: user.into() },
    ]
}

fn load_prompts(args: &Args) -> anyhow::Result<Vec<GenerateRequest>> {
    let lines: Vec<String> = match &args.prompts {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        None => BUILT_IN.iter().map(|s| s.to_string()).collect(),
    };
    anyhow::ensure!(!lines.is_empty(), "no prompts");
    lines
        .iter()
        .map(|line| {
            let mut req = GenerateRequest {
                max_new_tokens: Some(args.max_tokens),
                temperature: Some(args.temperature),
                ..Default::default()
            };
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) if v.is_object() => {
                    if let Some(p) = v.get("prompt").and_then(|p| p.as_str()) {
                        req.prompt = p.to_string();
                    } else if let Some(ms) = v.get("messages").and_then(|m| m.as_array()) {
                        req.messages = ms
                            .iter()
                            .map(|m| ChatMessage {
                                role: m["role"].as_str().unwrap_or_default().into(),
                                content: m["content"].as_str().unwrap_or_default().into(),
                            })
                            .collect();
                    } else {
                        anyhow::bail!("a JSON prompt line needs `prompt` or `messages`");
                    }
                }
                _ => req.messages = chat(line),
            }
            Ok(req)
        })
        .collect()
}

/// What one request gave.
#[derive(Debug, Default)]
struct Outcome {
    error: Option<tonic::Code>,
    tokens: u32,
    latency: Duration,
    ttft: Option<Duration>,
    gaps: Vec<Duration>,
    verdict: i32,
    finish: i32,
}

fn request(
    args: &Args,
    template: &GenerateRequest,
    i: usize,
    token: &Option<String>,
) -> tonic::Request<GenerateRequest> {
    let mut body = template.clone();
    if args.temperature > 0.0 {
        body.seed = Some(args.seed + i as u64);
    }
    let mut req = tonic::Request::new(body);
    req.set_timeout(Duration::from_secs_f64(args.timeout));
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("token is ASCII"));
    }
    req
}

async fn one(
    client: &mut InferenceClient<Channel>,
    args: &Args,
    req: tonic::Request<GenerateRequest>,
) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::default();
    match args.mode {
        Mode::Unary => match client.generate(req).await {
            Ok(r) => {
                let r = r.into_inner();
                out.tokens = r.usage.map_or(0, |u| u.completion_tokens);
                out.verdict = r.verdict;
                out.finish = r.finish_reason;
            }
            Err(s) => out.error = Some(s.code()),
        },
        Mode::Stream => match client.generate_stream(req).await {
            Ok(r) => {
                let mut stream = r.into_inner();
                let mut last: Option<Instant> = None;
                loop {
                    match stream.message().await {
                        Ok(Some(m)) => {
                            let now = Instant::now();
                            if !m.text.is_empty() {
                                match last {
                                    None => out.ttft = Some(now - started),
                                    Some(prev) => out.gaps.push(now - prev),
                                }
                                last = Some(now);
                            }
                            if let Some(u) = m.usage {
                                out.tokens = u.completion_tokens;
                                out.verdict = m.verdict;
                                out.finish = m.finish_reason;
                            }
                        }
                        Ok(None) => break,
                        Err(s) => {
                            out.error = Some(s.code());
                            break;
                        }
                    }
                }
            }
            Err(s) => out.error = Some(s.code()),
        },
    }
    out.latency = started.elapsed();
    out
}

fn percentiles(mut v: Vec<Duration>) -> serde_json::Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1e3;
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1e3;
    json!({ "p50": at(0.50), "p99": at(0.99), "mean": mean, "count": v.len() })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let limit = match (args.requests, args.duration) {
        (Some(n), _) => n,
        (None, Some(_)) => usize::MAX,
        (None, None) => 4 * args.concurrency,
    };
    let prompts = Arc::new(load_prompts(&args)?);
    let channel = Channel::from_shared(format!("http://{}", args.addr))?.connect().await?;
    let client = InferenceClient::new(channel).max_decoding_message_size(64 << 20);
    let token = args.token.clone();

    for i in 0..args.warmup {
        let mut c = client.clone();
        let o = one(&mut c, &args, request(&args, &prompts[i % prompts.len()], i, &token)).await;
        if let Some(code) = o.error {
            eprintln!("warm-up request {i} failed: {code:?}");
        }
    }

    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let started = Instant::now();
    let stop_at = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (args, prompts, next, outcomes, token) =
            (args.clone(), prompts.clone(), next.clone(), outcomes.clone(), token.clone());
        let mut client = client.clone();
        workers.push(tokio::spawn(async move {
            loop {
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= limit {
                    break;
                }
                let o = one(&mut client, &args, request(&args, &prompts[i % prompts.len()], i, &token)).await;
                outcomes.lock().expect("outcomes").push(o);
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let wall = started.elapsed().as_secs_f64();
    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes"));

    let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        if let Some(c) = o.error {
            *errors.entry(format!("{c:?}")).or_default() += 1;
        }
    }
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut finishes: BTreeMap<String, usize> = BTreeMap::new();
    for o in &ok {
        let v = Verdict::try_from(o.verdict).map_or("unknown".into(), |v| v.as_str_name().to_string());
        *verdicts.entry(v).or_default() += 1;
        let f = FinishReason::try_from(o.finish).map_or("unknown".into(), |f| f.as_str_name().to_string());
        *finishes.entry(f).or_default() += 1;
    }
    let tokens: u64 = ok.iter().map(|o| o.tokens as u64).sum();
    let report = json!({
        "label": args.label,
        "addr": args.addr,
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "prompts": prompts.len(),
        "requests": outcomes.len(),
        "ok": ok.len(),
        "errors": errors,
        "wall_seconds": wall,
        "generated_tokens": tokens,
        "tokens_per_second": tokens as f64 / wall,
        "requests_per_second": ok.len() as f64 / wall,
        "latency_ms": percentiles(ok.iter().map(|o| o.latency).collect()),
        "ttft_ms": percentiles(ok.iter().filter_map(|o| o.ttft).collect()),
        "itl_ms": percentiles(ok.iter().flat_map(|o| o.gaps.iter().copied()).collect()),
        "verdicts": verdicts,
        "finish_reasons": finishes,
    });
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let ms = |k: &str, q: &str| report[k][q].as_f64().map_or("-".into(), |v| format!("{v:.1} ms"));
        println!(
            "{} requests ({} ok) in {wall:.1} s, concurrency {}, {} mode, max {} tokens",
            outcomes.len(),
            ok.len(),
            args.concurrency,
            report["mode"].as_str().unwrap_or_default(),
            args.max_tokens
        );
        println!("generated tokens/s: {:.1} ({tokens} tokens)", tokens as f64 / wall);
        println!("request latency:    p50 {}  p99 {}", ms("latency_ms", "p50"), ms("latency_ms", "p99"));
        if args.mode == Mode::Stream {
            println!("time to first token: p50 {}  p99 {}", ms("ttft_ms", "p50"), ms("ttft_ms", "p99"));
            println!("inter-token latency: p50 {}  p99 {}", ms("itl_ms", "p50"), ms("itl_ms", "p99"));
        }
        println!("errors: {errors:?}  verdicts: {verdicts:?}  finish: {finishes:?}");
    }
    Ok(())
}
