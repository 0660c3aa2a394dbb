//! The `lethe` command line: one module per command group, each owning its arguments.
//! `serve` runs the server; `check` and `eval` run the guard offline; `forget` and `health`
//! are clients of a running server; `train`, `unlearn` and `audit` are the batch jobs of
//! parameter-level unlearning.
pub mod check;
pub mod eval;
pub mod forget;
pub mod health;
pub mod offline;
pub mod serve;
pub mod unlearn;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Lethe: serve a language model behind a guard that makes forgetting real.
#[derive(Parser)]
#[command(name = "lethe", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of `serve`'s arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the gRPC inference server.
    Serve(crate::config::ServeArgs),
    /// Check text from stdin against a forget list, offline; prints the result as JSON.
    Check(check::CheckArgs),
    /// Measure the guard on an evaluation set: recall per category and false-positive rate.
    Eval(eval::EvalArgs),
    /// Manage the forget lists of a running server (ForgetAdmin API).
    Forget(forget::ForgetArgs),
    /// Fine-tune a model on texts (plants content, to make a target model for unlearning).
    Train(unlearn::TrainArgs),
    /// Unlearn a forget set from a model's weights (GradAscent, GradDiff, NPO) and report.
    Unlearn(unlearn::UnlearnArgs),
    /// Probe a model for forgotten documents (prefix extraction, greedy and sampled).
    Audit(unlearn::ProbeArgs),
    /// Ask a running server's gRPC health service (grpc.health.v1); exit 0 when SERVING.
    Health(health::HealthArgs),
}

/// Parses the command line and runs the command; errors are printed as `lethe: ...`.
pub fn main() -> std::process::ExitCode {
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
    let client_runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build();
    match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Train(args) => unlearn::run_train(&args),
        Command::Unlearn(args) => unlearn::run_unlearn(&args),
        Command::Audit(args) => unlearn::run_probe(&args),
        Command::Forget(args) => client_runtime()?.block_on(forget::run(args)),
        Command::Health(args) => client_runtime()?.block_on(health::run(&args)),
    }
}
