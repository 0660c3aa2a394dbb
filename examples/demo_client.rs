//! The small client `make demo` (scripts/demo.sh) drives a running Lethe with: gRPC health,
//! `Inference/Generate` with the verbatim overlap of the output against a forget-list document,
//! and the guard's Prometheus metrics. Run it as `cargo run --release --example demo_client --
//! COMMAND --help`.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use lethe::proto::inference_client::InferenceClient;
use lethe::proto::{ChatMessage, GenerateRequest};
use lethe::unlearn::report::longest_common_run;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a TCP port on 127.0.0.1 that is free now.
    FreePort,
    /// Print the text of a forget-list entry (`--first-sentence`: up to its first full stop).
    EntryText {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        first_sentence: bool,
    },
    /// Wait until gRPC health says SERVING (fails if the process PID exits first).
    WaitHealthy {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value_t = 180)]
        timeout_secs: u64,
    },
    /// Greedy `Generate` of a raw prompt; prints the reply and its overlap with a document.
    Generate {
        #[arg(long)]
        addr: String,
        /// Raw prompt (sent as is), or with --chat the user message.
        #[arg(long)]
        prompt: String,
        /// Send the prompt as a chat (system + user message) instead of raw text.
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 80)]
        max_new_tokens: u32,
        /// Forget-list file and entry id whose text the output is compared with.
        #[arg(long)]
        reference_file: PathBuf,
        #[arg(long)]
        reference_id: String,
        /// Also write "VERDICT WORDS LONGEST_RUN CHARS" of the reply here (for the script).
        #[arg(long)]
        result_out: Option<PathBuf>,
    },
    /// Print the guard's metrics from /metrics (`--value SERIES`: print one series' value only).
    Metrics {
        #[arg(long)]
        metrics_addr: String,
        /// Wait (up to 60 s) until the exact audit has taken this many outputs.
        #[arg(long)]
        wait_audited: Option<u64>,
        /// A series prefix, e.g. 'lethe_generations_total{outcome="blocked"}'.
        #[arg(long)]
        value: Option<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::FreePort => {
            println!("{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
        }
        Command::EntryText { file, id, first_sentence } => {
            let entries = lethe::forget::load(&file)?;
            let e = entries.iter().find(|e| e.id == id).with_context(|| format!("no entry {id:?}"))?;
            let text = match (first_sentence, e.text.find(". ")) {
                (true, Some(i)) => &e.text[..=i],
                _ => e.text.as_str(),
            };
            println!("{text}");
        }
        Command::WaitHealthy { addr, pid, timeout_secs } => wait_healthy(&addr, pid, timeout_secs).await?,
        Command::Generate {
            addr,
            prompt,
            chat,
            max_new_tokens,
            reference_file,
            reference_id,
            result_out,
        } => {
            let entries = lethe::forget::load(&reference_file)?;
            let reference = &entries
                .iter()
                .find(|e| e.id == reference_id)
                .with_context(|| format!("no entry {reference_id:?}"))?
                .text;
            let message =
                |role: &str, content: &str| ChatMessage { role: role.into(), content: content.into() };
            let mut req = GenerateRequest {
                max_new_tokens: Some(max_new_tokens),
                temperature: Some(0.0),
                ..Default::default()
            };
            if chat {
                req.messages =
                    vec![message("system", "You are a helpful assistant."), message("user", &prompt)];
            } else {
                req.prompt = prompt;
            }
            let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
            let started = Instant::now();
            let r = InferenceClient::new(channel)
                .generate(req)
                .await
                .map_err(|s| anyhow::anyhow!("Generate: {}: {}", s.code(), s.message()))?
                .into_inner();
            let usage = r.usage.unwrap_or_default();
            println!(
                "   verdict {}, finish {}, {} tokens generated in {:.1} s (model {})",
                r.verdict().as_str_name(),
                r.finish_reason().as_str_name().trim_start_matches("FINISH_REASON_"),
                usage.completion_tokens,
                started.elapsed().as_secs_f64(),
                r.model
            );
            println!("   delivered text: {:?}", r.text);
            for m in &r.matches {
                println!(
                    "   guard match: set {}, entry {}, layer {}, score {:.2}, chars {}..{}",
                    m.forget_set,
                    m.entry_id,
                    m.layer().as_str_name(),
                    m.score,
                    m.char_start,
                    m.char_end
                );
            }
            let (words, run) = (r.text.split_whitespace().count(), longest_common_run(&r.text, reference));
            println!("   longest verbatim run shared with the biography: {run} words");
            if let Some(path) = result_out {
                let line = format!("{} {words} {run} {}\n", r.verdict().as_str_name(), r.text.len());
                std::fs::write(path, line)?;
            }
        }
        Command::Metrics { metrics_addr, wait_audited, value } => {
            let mut body = scrape(&metrics_addr)?;
            if let Some(n) = wait_audited {
                let started = Instant::now();
                let audited =
                    |b: &str| series(b, "lethe_audit_outputs_total") + series(b, "lethe_audit_dropped_total");
                while audited(&body) < n as f64 {
                    if started.elapsed() > Duration::from_secs(60) {
                        bail!("the audit took {} of {n} outputs in 60 s", audited(&body));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    body = scrape(&metrics_addr)?;
                }
            }
            match value {
                Some(prefix) => println!("{}", series(&body, &prefix)),
                None => {
                    for name in [
                        "lethe_generations_total",
                        "lethe_guard_matches_total",
                        "lethe_leaks_total",
                        "lethe_prompts_with_forgotten_content_total",
                        "lethe_audit_outputs_total",
                        "lethe_forget_snapshot_version",
                    ] {
                        let mut lines: Vec<&str> = body
                            .lines()
                            .filter(|l| !l.starts_with('#') && l.split(['{', ' ']).next() == Some(name))
                            .collect();
                        lines.sort_unstable();
                        if lines.is_empty() {
                            println!("   {name} (no series yet)");
                        }
                        for l in lines {
                            println!("   {l}");
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

async fn wait_healthy(addr: &str, pid: Option<u32>, timeout_secs: u64) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                bail!("the server (pid {pid}) exited during start-up");
            }
        }
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))?.connect().await {
            let reply = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
            if reply.is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32) {
                println!("   SERVING after {:.1} s", started.elapsed().as_secs_f64());
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(timeout_secs) {
            bail!("{addr} was not SERVING after {timeout_secs} s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Prometheus text exposition at http://ADDR/metrics.
fn scrape(addr: &str) -> Result<String> {
    let mut stream = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// The sum of the sample lines that start with `prefix` (a name, or a name with labels).
fn series(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter(|l| l[prefix.len()..].starts_with([' ', '{', ',', '}']) || prefix.ends_with('}'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
