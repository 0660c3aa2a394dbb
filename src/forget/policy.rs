//! What the guard does when a set matches: its action, threshold and disclosure. Policies come
//! from the TOML config (`[guard.sets.NAME]`) or with a set stored through the admin API.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Stop the generation at a match; deliver only text cleared before it.
    #[default]
    Block,
    /// Decode-time masking of forgotten token n-grams; the output is delivered.
    Mask,
    /// Deliver unchanged; report and count the match as leaked.
    Monitor,
}

impl Action {
    /// The `action` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Mask => "mask",
            Action::Monitor => "monitor",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SetPolicy {
    pub action: Action,
    /// Cosine similarity for the semantic layer; unset: `guard.semantic.threshold`.
    pub semantic_threshold: Option<f32>,
    /// Return matches without the entry id.
    pub hide_details: bool,
    /// On a guard error, deliver instead of blocking (default: fail closed).
    pub fail_open: bool,
    /// Drop semantic matches about as close to public boilerplate (`guard.commons`) as to this
    /// set's documents; unset: on. Turn it off for a set of licenses or other boilerplate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commons_filter: Option<bool>,
    /// Facts of one entry an output window needs (`guard.facts.min_facts`); 0 turns the fact
    /// layer off for this set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fact_min_facts: Option<usize>,
    /// Words those facts must fall within (`guard.facts.window_words`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fact_window_words: Option<usize>,
    /// Weight of the lexical evidence in this set's semantic score
    /// (`guard.semantic.lexical_weight`); 0 scores by the cosine alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lexical_weight: Option<f32>,
    /// Distinctive words an output window must share with one of this set's entries before it
    /// is embedded (`guard.semantic.gate_min_words`); 0 embeds every window for this set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_min_words: Option<usize>,
}
