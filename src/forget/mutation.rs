//! Changes to the forget sets the admin API makes, as the store logs them, and how each one
//! applies to the sets: one definition for the store's replay and the live writer's checks.
use super::{shown, Entry, SetPolicy};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Mutation {
    PutSet { set: String, policy: SetPolicy, entries: Vec<Entry> },
    AddEntries { set: String, entries: Vec<Entry> },
    RemoveEntries { set: String, ids: Vec<String> },
    DeleteSet { set: String },
}

impl Mutation {
    /// The mutation with each of its entries replaced by `f(entry)` (the form the store keeps:
    /// sealed, or with fingerprints attached).
    pub fn map_entries(self, f: impl Fn(&Entry) -> Result<Entry>) -> Result<Self> {
        let all = |entries: Vec<Entry>| entries.iter().map(&f).collect::<Result<Vec<_>>>();
        Ok(match self {
            Mutation::PutSet { set, policy, entries } => {
                Mutation::PutSet { set, policy, entries: all(entries)? }
            }
            Mutation::AddEntries { set, entries } => Mutation::AddEntries { set, entries: all(entries)? },
            other => other,
        })
    }

    pub fn set(&self) -> &str {
        match self {
            Mutation::PutSet { set, .. }
            | Mutation::AddEntries { set, .. }
            | Mutation::RemoveEntries { set, .. }
            | Mutation::DeleteSet { set } => set,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSet {
    pub policy: Option<SetPolicy>,
    pub entries: BTreeMap<String, Entry>,
}

/// The sets the store holds, by name.
pub type Sets = BTreeMap<String, StoredSet>;

/// Applies a mutation to `sets`; errors leave `sets` unchanged.
pub fn apply(sets: &mut Sets, m: &Mutation) -> Result<()> {
    super::valid_set_name(m.set())?;
    let check = |set: &str, entries: &[Entry]| -> Result<()> {
        for e in entries {
            if e.set != set {
                bail!("entry {:?} names set {:?}, not {set:?}", shown(&e.id), shown(&e.set));
            }
            e.validate()?;
        }
        Ok(())
    };
    match m {
        Mutation::PutSet { set, policy, entries } => {
            check(set, entries)?;
            let entries = entries.iter().map(|e| (e.id.clone(), e.clone())).collect();
            sets.insert(set.clone(), StoredSet { policy: Some(policy.clone()), entries });
        }
        Mutation::AddEntries { set, entries } => {
            check(set, entries)?;
            let target = sets.entry(set.clone()).or_default();
            for e in entries {
                target.entries.insert(e.id.clone(), e.clone());
            }
        }
        Mutation::RemoveEntries { set, ids } => {
            let Some(target) = sets.get_mut(set) else { bail!("set {set:?} does not exist") };
            if let Some(missing) = ids.iter().find(|id| !target.entries.contains_key(*id)) {
                bail!("set {set:?} has no entry {:?}", shown(missing));
            }
            for id in ids {
                target.entries.remove(id);
            }
        }
        Mutation::DeleteSet { set } => {
            if sets.remove(set).is_none() {
                bail!("set {set:?} does not exist");
            }
        }
    }
    Ok(())
}
