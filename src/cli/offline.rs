//! What the offline guard commands (`check`, `eval`) share: the forget list, the config's
//! `[guard]` section and the embedder, built into a guard without a server.
use anyhow::{Context, Result};
use std::path::PathBuf;

/// The forget list, config and embedder of an offline guard command (`check`, `eval`).
#[derive(clap::Args)]
pub struct GuardArgs {
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

impl GuardArgs {
    /// The forget list's entries, the guard configuration and the guard built from them.
    pub fn load(
        &self,
    ) -> Result<(Vec<crate::forget::Entry>, crate::guard::GuardConfig, crate::guard::Guard)> {
        let mut config = match &self.config {
            Some(path) => crate::config::Config::from_file(path)?,
            None => crate::config::Config::default(),
        };
        if let Some(dir) = &self.embedder {
            config.guard.embedder = Some(dir.clone());
        }
        if self.no_semantic {
            config.guard.embedder = None;
        }
        let cfg = config.guard;
        let embedder = cfg.load_embedder().with_context(|| {
            format!("loading the embedder from {}", cfg.embedder.as_deref().unwrap_or("".as_ref()).display())
        })?;
        let entries = crate::forget::load(&self.forget)?;
        let guard = crate::guard::Guard::build(&entries, &cfg, None, embedder, 1)?;
        Ok((entries, cfg, guard))
    }
}
