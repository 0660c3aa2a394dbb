//! `lethe eval`: the guard on an evaluation set (`eval/`), recall per category and false
//! positives (the evaluation itself is `crate::eval`).
use super::offline::GuardArgs;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    guard: GuardArgs,
    /// Folder with paraphrases.jsonl and benign.jsonl.
    #[arg(long, default_value = "eval")]
    data: PathBuf,
    /// Print every missed case and every false positive to stderr.
    #[arg(long)]
    verbose: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let (entries, cfg, guard) = args.guard.load()?;
    print!("{}", crate::eval::run(&entries, &args.data, &cfg, &guard, args.verbose)?);
    Ok(())
}
