//! The guard's configuration (`[guard]` in the TOML file): the forget file, the embedder, the
//! layers' parameters and the sets' policies; its defaults, and the invariants it must hold.
use super::facts::FactRule;
use super::ngram::NgramParams;
use super::semantic::{Embedder, SemanticParams};
use crate::forget::SetPolicy;
use anyhow::{ensure, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Forget list: a `.jsonl` file or a folder of them. Unset: nothing is forgotten.
    pub forget: Option<PathBuf>,
    /// Sentence-embedder folder (safetensors + tokenizer.json + config.json) for the semantic
    /// layer. Unset: the semantic layer is off.
    pub embedder: Option<PathBuf>,
    /// Folder of public boilerplate (`.txt` files) for the semantic layer's commons filter;
    /// unset: no filter. `make models` copies Debian's common licenses to the default.
    pub commons: Option<PathBuf>,
    /// Newest words of a stream held back until the guard has cleared them.
    pub hold_back_words: usize,
    /// Tokens per n-gram for decode-time masking.
    pub token_ngram: usize,
    /// Check prompts and report (never block) those containing forgotten content.
    pub check_prompts: bool,
    /// Share of delivered outputs re-checked by the exact audit (0 turns it off).
    pub audit_sample_rate: f64,
    pub ngram: NgramParams,
    pub semantic: SemanticParams,
    pub facts: FactRule,
    /// Policy of every set not named in `sets`.
    pub default_policy: SetPolicy,
    pub sets: BTreeMap<String, SetPolicy>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            forget: None,
            embedder: Some(PathBuf::from("models/minilm")),
            commons: Some(PathBuf::from("models/commons")),
            hold_back_words: 12,
            token_ngram: 6,
            check_prompts: true,
            audit_sample_rate: 1.0,
            ngram: NgramParams::default(),
            semantic: SemanticParams::default(),
            facts: FactRule::default(),
            default_policy: SetPolicy::default(),
            sets: BTreeMap::new(),
        }
    }
}

impl GuardConfig {
    /// The invariants the guard relies on; the message names the key to change.
    pub fn validate(&self) -> Result<()> {
        self.ngram.validate()?;
        self.semantic.validate()?;
        self.facts.validate("guard.facts")?;
        ensure!(self.token_ngram >= 2, "guard.token_ngram must be at least 2");
        ensure!(
            (0.0..=1.0).contains(&self.audit_sample_rate),
            "guard.audit_sample_rate must be between 0 and 1"
        );
        for (name, policy) in std::iter::once(("default_policy", &self.default_policy))
            .chain(self.sets.iter().map(|(n, p)| (n.as_str(), p)))
        {
            if let Some(t) = policy.semantic_threshold {
                ensure!(
                    super::semantic::SEMANTIC_THRESHOLDS.contains(&t),
                    "guard.sets.{name}.semantic_threshold must be in [-1, 2]"
                );
            }
            if let Some(w) = policy.lexical_weight {
                ensure!((0.0..=1.0).contains(&w), "guard.sets.{name}.lexical_weight must be in [0, 1]");
            }
        }
        for name in self.sets.keys() {
            crate::forget::valid_set_name(name).context("guard.sets")?;
        }
        Ok(())
    }

    /// The embedder `embedder` names, with the commons of `commons` embedded; `None` when the
    /// semantic layer is off. A missing commons folder turns only the commons filter off.
    pub fn load_embedder(&self) -> Result<Option<Arc<Embedder>>> {
        let Some(dir) = &self.embedder else { return Ok(None) };
        let mut embedder = Embedder::load(dir)?;
        match &self.commons {
            Some(folder) if folder.is_dir() => {
                let started = std::time::Instant::now();
                let c = super::commons::load(folder, &embedder, self.semantic.window_words)?;
                tracing::info!(
                    texts = c.texts,
                    windows = c.vectors.len(),
                    seconds = started.elapsed().as_secs_f32(),
                    "commons loaded"
                );
                embedder = embedder.with_commons(c.vectors);
            }
            Some(folder) => tracing::warn!(
                path = %folder.display(),
                "guard.commons is not a folder (run `make models`): the commons filter is off"
            ),
            None => {}
        }
        Ok(Some(Arc::new(embedder)))
    }
}
