//! `lethe check`: text from stdin against a forget list, offline; JSON out.
use super::offline::GuardArgs;
use crate::guard::CheckParams;
use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    guard: GuardArgs,
    /// Read one JSON object with a "text" field (and an optional "prompt") per line; print one
    /// result per line.
    #[arg(long)]
    jsonl: bool,
    /// The prompt the text answers: the entries it names are checked with the scoped rules.
    #[arg(long)]
    prompt: Option<String>,
}

pub fn run(args: &CheckArgs) -> Result<()> {
    let (_, _, guard) = args.guard.load()?;
    let result = |text: &str, prompt: Option<&str>| -> Result<serde_json::Value> {
        let scope = prompt.map(|p| guard.scope(p));
        let matches: Vec<serde_json::Value> = guard
            .check(text, CheckParams { scope: scope.as_ref(), ..Default::default() })?
            .iter()
            .map(|f| {
                let m = crate::server::convert::to_match(&guard, f, text);
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
            let prompt = value["prompt"].as_str().or(args.prompt.as_deref());
            println!("{}", result(text, prompt)?);
        }
    } else {
        println!("{}", result(&stdin, args.prompt.as_deref())?);
    }
    Ok(())
}
