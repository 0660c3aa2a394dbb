//! Conversions between the wire types of `lethe.v1` and the domain's (forget entries and
//! policies, guard findings), in one place, so the guard and the forget lists never see the
//! generated types (as qdrant's `lib/api/src/grpc/conversions.rs`).
use super::validate::ValidationError;
use crate::forget::{Action, Entry, Kind, SetPolicy, TermType};
use crate::guard::{Finding, Guard, Layer, SetStats};
use crate::live::SetSummary;
use crate::proto;
use std::collections::BTreeMap;

pub fn layer(l: Layer) -> proto::Layer {
    match l {
        Layer::Ngram => proto::Layer::Ngram,
        Layer::Term => proto::Layer::Term,
        Layer::Semantic => proto::Layer::Semantic,
        Layer::Fact => proto::Layer::Fact,
    }
}

/// The API form of a finding; spans become character offsets of `text`, and the entry id is
/// left out when the set's policy hides details.
pub fn to_match(guard: &Guard, f: &Finding, text: &str) -> proto::Match {
    let chars = |byte: usize| text[..byte.min(text.len())].chars().count() as u32;
    let policy = guard.policy(f.entry);
    proto::Match {
        forget_set: guard.set_name(f.entry).to_string(),
        entry_id: if policy.hide_details { String::new() } else { guard.entry_id(f.entry).to_string() },
        layer: layer(f.layer) as i32,
        score: f.score,
        char_start: chars(f.span.start),
        char_end: chars(f.span.end),
    }
}

/// Entries of an admin request, for `set`.
pub fn entries(set: &str, entries: Vec<proto::ForgetEntry>) -> Result<Vec<Entry>, ValidationError> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let kind = match e.kind() {
                proto::EntryKind::Document => Kind::Document,
                proto::EntryKind::Term => Kind::Term,
                proto::EntryKind::Unspecified => return Err(ValidationError::EntryKind(i)),
            };
            let term_type = match e.term_type.as_str() {
                "" => None,
                t => Some(
                    <TermType as clap::ValueEnum>::from_str(t, true)
                        .map_err(|_| ValidationError::TermType(i))?,
                ),
            };
            Ok(Entry {
                id: e.id,
                set: set.to_string(),
                kind,
                text: e.text,
                aliases: e.aliases,
                term_type,
                fingerprints: None,
            })
        })
        .collect()
}

use crate::guard::semantic::SEMANTIC_THRESHOLDS;

pub fn policy(p: proto::SetPolicy) -> Result<SetPolicy, ValidationError> {
    let action = match p.action() {
        proto::Action::Unspecified | proto::Action::Block => Action::Block,
        proto::Action::Mask => Action::Mask,
        proto::Action::Monitor => Action::Monitor,
    };
    if let Some(t) = p.semantic_threshold {
        if !SEMANTIC_THRESHOLDS.contains(&t) {
            return Err(ValidationError::SemanticThreshold(t));
        }
    }
    if let Some(w) = p.lexical_weight {
        if !(0.0..=1.0).contains(&w) {
            return Err(ValidationError::LexicalWeight(w));
        }
    }
    Ok(SetPolicy {
        action,
        semantic_threshold: p.semantic_threshold,
        hide_details: p.hide_details,
        fail_open: p.fail_open,
        commons_filter: p.commons_filter,
        fact_min_facts: p.fact_min_facts.map(|k| k as usize),
        fact_window_words: p.fact_window_words.map(|n| (n as usize).max(1)),
        lexical_weight: p.lexical_weight,
        gate_min_words: p.gate_min_words.map(|n| n as usize),
    })
}

pub fn action(a: Action) -> proto::Action {
    match a {
        Action::Block => proto::Action::Block,
        Action::Mask => proto::Action::Mask,
        Action::Monitor => proto::Action::Monitor,
    }
}

pub fn set_info(s: &SetSummary, stats: &BTreeMap<String, SetStats>) -> proto::SetInfo {
    let index = stats.get(&s.name).cloned().unwrap_or_default();
    proto::SetInfo {
        name: s.name.clone(),
        source: s.source.to_string(),
        policy: Some(proto::SetPolicy {
            action: action(s.policy.action) as i32,
            semantic_threshold: s.policy.semantic_threshold,
            hide_details: s.policy.hide_details,
            fail_open: s.policy.fail_open,
            commons_filter: s.policy.commons_filter,
            fact_min_facts: s.policy.fact_min_facts.map(|k| k as u32),
            fact_window_words: s.policy.fact_window_words.map(|n| n as u32),
            lexical_weight: s.policy.lexical_weight,
            gate_min_words: s.policy.gate_min_words.map(|n| n as u32),
        }),
        entries: s.entries as u32,
        documents: s.documents as u32,
        terms: s.terms as u32,
        ngram_fingerprints: index.ngram_fingerprints as u64,
        term_fingerprints: index.term_fingerprints as u64,
        token_prefixes: index.token_prefixes as u64,
        semantic_vectors: index.semantic_vectors as u64,
        index_bytes: index.index_bytes as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_keeps_its_meaning_level_settings_and_refuses_values_out_of_range() {
        let wire = proto::SetPolicy {
            semantic_threshold: Some(1.1),
            lexical_weight: Some(0.5),
            gate_min_words: Some(0),
            fact_min_facts: Some(4),
            commons_filter: Some(false),
            ..Default::default()
        };
        let p = policy(wire.clone()).unwrap();
        assert_eq!(
            (p.semantic_threshold, p.lexical_weight, p.gate_min_words, p.fact_min_facts, p.commons_filter),
            (Some(1.1), Some(0.5), Some(0), Some(4), Some(false))
        );
        let too_high = proto::SetPolicy { semantic_threshold: Some(2.5), ..wire.clone() };
        assert!(matches!(policy(too_high), Err(ValidationError::SemanticThreshold(_))));
        let negative = proto::SetPolicy { lexical_weight: Some(-0.1), ..wire };
        assert!(matches!(policy(negative), Err(ValidationError::LexicalWeight(_))));
    }
}
