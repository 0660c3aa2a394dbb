use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lethe::config::{Config, LogFormat, ServeArgs};
use lethe::guard::{semantic::Embedder, Guard, GuardConfig};
use std::path::PathBuf;

/// Lethe: serve a language model behind a guard that makes forgetting real.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC inference server.
    Serve(ServeArgs),
    /// Check text from stdin against a forget list, offline; prints the result as JSON.
    Check(CheckArgs),
    /// Measure the guard on an evaluation set: recall per category and false-positive rate.
    Eval(EvalArgs),
    /// Manage the forget lists of a running server (ForgetAdmin API).
    Forget(lethe::admin_cli::ForgetArgs),
    /// Fine-tune a model on texts (plants content, to make a target model for unlearning).
    Train(lethe::unlearn::cli::TrainArgs),
    /// Unlearn a forget set from a model's weights (GradAscent, GradDiff, NPO) and report.
    Unlearn(lethe::unlearn::cli::UnlearnArgs),
    /// Probe a model for forgotten documents (prefix extraction, greedy and sampled).
    Audit(lethe::unlearn::cli::AuditArgs),
    /// Ask a running server's gRPC health service (grpc.health.v1); exit 0 when SERVING.
    Health(lethe::health_cli::HealthArgs),
}

#[derive(clap::Args)]
struct GuardArgs {
    /// Forget list: a .jsonl file or a folder of them.
    #[arg(long)]
    forget: PathBuf,
    /// TOML config file (its [guard] section: policies and layer parameters).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sentence-embedder folder [default: from the config, else models/minilm].
    #[arg(long)]
    embedder: Option<PathBuf>,
    /// Turn the semantic layer off (no embedder is loaded).
    #[arg(long)]
    no_semantic: bool,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    guard: GuardArgs,
    /// Read one JSON object with a "text" field per line; print one result per line.
    #[arg(long)]
    jsonl: bool,
}

#[derive(clap::Args)]
struct EvalArgs {
    #[command(flatten)]
    guard: GuardArgs,
    /// Folder with paraphrases.jsonl and benign.jsonl.
    #[arg(long, default_value = "eval")]
    data: PathBuf,
    /// Print every missed case and every false positive to stderr.
    #[arg(long)]
    verbose: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // The offline commands print to stdout: a reader that stops early (`| head`) should end
        // them as it ends any Unix tool, not make println! panic. Rust ignores SIGPIPE by default;
        // the server keeps that (its sockets report EPIPE as an error).
        #[cfg(unix)]
        // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lethe: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = Config::load(&args)?;
            init_logging(config.log_format);
            set_model_threads(&config);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(lethe::server::serve(config))
        }
        Command::Check(args) => check(&args),
        Command::Eval(args) => eval(&args),
        Command::Train(args) => lethe::unlearn::cli::run_train(&args),
        Command::Unlearn(args) => lethe::unlearn::cli::run_unlearn(&args),
        Command::Audit(args) => lethe::unlearn::cli::run_audit(&args),
        Command::Forget(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(lethe::admin_cli::run(args)),
        Command::Health(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(lethe::health_cli::run(&args)),
    }
}

/// Sets candle's thread counts before any other thread exists: `CANDLE_NUM_THREADS` (read once,
/// at candle's first quantized op) from `threads_per_generation`, unless set explicitly, and
/// `RAYON_NUM_THREADS`, unless set, to candle's own count of the cores. Without the latter,
/// candle counts the cores anew from /proc/cpuinfo on every f32 matrix product (about 3% of
/// the server's CPU with the semantic layer on, docs/benchmarks.md).
fn set_model_threads(config: &Config) {
    let cores = candle_core::utils::get_num_threads();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    }
    if let Ok(explicit) = std::env::var("CANDLE_NUM_THREADS") {
        tracing::info!(threads = %explicit, cores, "model threads per generation from CANDLE_NUM_THREADS");
        return;
    }
    let threads = config.threads_per_generation(cores);
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    tracing::info!(threads, cores, slots = config.max_concurrent_generations, "model threads per generation");
}

/// The guard of an offline command: config file, forget list, embedder.
fn offline_guard(args: &GuardArgs) -> Result<(Vec<lethe::forget::Entry>, GuardConfig, Guard)> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &args.embedder {
        config.guard.embedder = Some(dir.clone());
    }
    if args.no_semantic {
        config.guard.embedder = None;
    }
    let cfg = config.guard;
    let embedder = match &cfg.embedder {
        Some(dir) => Some(std::sync::Arc::new(
            Embedder::load(dir).with_context(|| format!("loading the embedder from {}", dir.display()))?,
        )),
        None => None,
    };
    let entries = lethe::forget::load(&args.forget)?;
    let guard = Guard::build(&entries, &cfg, None, embedder, 1)?;
    Ok((entries, cfg, guard))
}

fn check(args: &CheckArgs) -> Result<()> {
    let (_, _, guard) = offline_guard(&args.guard)?;
    let result = |text: &str| -> Result<serde_json::Value> {
        let matches: Vec<serde_json::Value> = guard
            .check(text, &[])?
            .iter()
            .map(|f| {
                let m = guard.to_proto(f, text);
                serde_json::json!({
                    "forget_set": m.forget_set,
                    "entry_id": m.entry_id,
                    "layer": m.layer().as_str_name(),
                    "score": m.score,
                    "char_start": m.char_start,
                    "char_end": m.char_end,
                })
            })
            .collect();
        Ok(serde_json::json!({ "matched": !matches.is_empty(), "matches": matches }))
    };
    let stdin = std::io::read_to_string(std::io::stdin()).context("reading stdin")?;
    if args.jsonl {
        for (i, line) in stdin.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let value: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("stdin line {}: not JSON", i + 1))?;
            let text = value["text"]
                .as_str()
                .with_context(|| format!("stdin line {}: no string field \"text\"", i + 1))?;
            println!("{}", result(text)?);
        }
    } else {
        println!("{}", result(&stdin)?);
    }
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let (entries, cfg, guard) = offline_guard(&args.guard)?;
    print!("{}", lethe::eval::run(&entries, &args.data, &cfg, &guard, args.verbose)?);
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LETHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hnsw_rs=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
