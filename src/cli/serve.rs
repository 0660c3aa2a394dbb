//! `lethe serve`: the configuration, logging and model threads, then the server.
use crate::config::{Config, LogFormat, ServeArgs};
use anyhow::Result;

pub fn run(args: &ServeArgs) -> Result<()> {
    let config = Config::load(args)?;
    init_logging(config.log_format);
    log_panics_without_their_message();
    set_model_threads(&config);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(crate::server::serve(config))
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LETHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hnsw_rs=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A panic's message can quote the text being processed (a slice of a generation, a prompt,
/// a forget entry), which must never reach the logs: log where it happened, not what it said.
fn log_panics_without_their_message() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(%location, %thread, "panic (its message is not logged: it may quote content)");
    }));
}
