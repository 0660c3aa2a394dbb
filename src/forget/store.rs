//! The durable forget store: an append-only log of mutations in the data directory. Every
//! record is one line, `<xxh3-64 of the payload, hex> <JSON mutation>`, appended and fsynced
//! before the mutation is acknowledged. On open the log is replayed and every checksum
//! verified; a torn or corrupt record is an error that names its line, never a silently
//! shorter list. Files are created 0600 in a 0700 directory: the log holds forgotten text.
use super::Entry;
use super::SetPolicy;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the durable store keeps of an entry (`forget_store` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreMode {
    /// Entries as given (text, aliases): indexes can be rebuilt with any parameters.
    #[default]
    Text,
    /// Only derived fingerprints (n-gram and term hashes, token n-grams, embeddings): the
    /// store holds no forgotten text, but its entries only fit the parameters they were
    /// derived with (n-gram length, normalization, embedder, windows, tokenizer).
    Fingerprints,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Mutation {
    PutSet { set: String, policy: SetPolicy, entries: Vec<Entry> },
    AddEntries { set: String, entries: Vec<Entry> },
    RemoveEntries { set: String, ids: Vec<String> },
    DeleteSet { set: String },
}

impl Mutation {
    /// The mutation with each of its entries replaced by `seal(entry)` (the fingerprint-only
    /// store's form).
    pub fn seal(self, seal: impl Fn(&Entry) -> Result<Entry>) -> Result<Self> {
        let all = |entries: Vec<Entry>| entries.iter().map(&seal).collect::<Result<Vec<_>>>();
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
                bail!("entry {:?} names set {:?}, not {set:?}", e.id, e.set);
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
                bail!("set {set:?} has no entry {missing:?}");
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

pub struct Store {
    path: PathBuf,
    log: File,
    sequence: u64,
    sets: Sets,
}

const LOG_NAME: &str = "forget.log";

impl Store {
    /// Opens (or creates) the store in `dir` and replays its log.
    pub fn open(dir: &Path) -> Result<Self> {
        create_private_dir(dir)?;
        let path = dir.join(LOG_NAME);
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let log =
            options.open(&path).with_context(|| format!("opening the forget store {}", path.display()))?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (sets, sequence) = replay(&bytes).with_context(|| {
            format!(
                "the forget store {} is damaged; it was not loaded, to avoid serving a shorter list",
                path.display()
            )
        })?;
        sync_dir(dir)?;
        Ok(Self { path, log, sequence, sets })
    }

    pub fn sets(&self) -> &Sets {
        &self.sets
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Appends `m` durably (fsync) and applies it; returns its sequence number.
    pub fn commit(&mut self, m: &Mutation) -> Result<u64> {
        let mut next = self.sets.clone();
        apply(&mut next, m)?;
        let payload = serde_json::to_string(m)?;
        let line = format!("{:016x} {payload}\n", xxhash_rust::xxh3::xxh3_64(payload.as_bytes()));
        self.log
            .write_all(line.as_bytes())
            .and_then(|_| self.log.sync_data())
            .with_context(|| format!("writing the forget store {}", self.path.display()))?;
        self.sets = next;
        self.sequence += 1;
        Ok(self.sequence)
    }
}

fn replay(bytes: &[u8]) -> Result<(Sets, u64)> {
    let mut sets = Sets::new();
    let mut sequence = 0;
    let text = std::str::from_utf8(bytes).context("the log is not UTF-8")?;
    let complete = text.ends_with('\n') || text.is_empty();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        if i + 1 == lines.len() && !complete {
            bail!("record {n} (the last) is torn: it has no line end; the write was interrupted");
        }
        let (sum, payload) = line.split_once(' ').with_context(|| format!("record {n} is malformed"))?;
        let expected = u64::from_str_radix(sum, 16).with_context(|| format!("record {n} has no checksum"))?;
        if xxhash_rust::xxh3::xxh3_64(payload.as_bytes()) != expected {
            bail!("record {n} fails its checksum");
        }
        let m: Mutation =
            serde_json::from_str(payload).with_context(|| format!("record {n} does not parse"))?;
        apply(&mut sets, &m).with_context(|| format!("record {n} does not apply"))?;
        sequence += 1;
    }
    Ok((sets, sequence))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Makes a new file's directory entry durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forget::Kind;

    fn entry(set: &str, id: &str) -> Entry {
        Entry {
            id: id.into(),
            set: set.into(),
            kind: Kind::Term,
            text: format!("secret term {id}"),
            aliases: vec![],
            term_type: None,
            fingerprints: None,
        }
    }

    #[test]
    fn mutations_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .commit(&Mutation::AddEntries {
                set: "s".into(),
                entries: vec![entry("s", "a"), entry("s", "b")],
            })
            .unwrap();
        store.commit(&Mutation::RemoveEntries { set: "s".into(), ids: vec!["a".into()] }).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.sequence(), 2);
        assert_eq!(store.sets()["s"].entries.keys().collect::<Vec<_>>(), ["b"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(LOG_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn invalid_mutations_are_rejected_and_not_logged() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.commit(&Mutation::RemoveEntries { set: "s".into(), ids: vec!["x".into()] }).is_err());
        assert!(store
            .commit(&Mutation::AddEntries { set: "s".into(), entries: vec![entry("t", "a")] })
            .is_err());
        assert!(store.commit(&Mutation::DeleteSet { set: "bad name".into() }).is_err());
        assert_eq!(store.sequence(), 0);
        assert_eq!(std::fs::read(dir.path().join(LOG_NAME)).unwrap().len(), 0);
    }

    #[test]
    fn torn_and_corrupt_tails_are_reported_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.commit(&Mutation::AddEntries { set: "s".into(), entries: vec![entry("s", "a")] }).unwrap();
        store.commit(&Mutation::AddEntries { set: "s".into(), entries: vec![entry("s", "b")] }).unwrap();
        drop(store);
        let log = dir.path().join(LOG_NAME);
        let good = std::fs::read(&log).unwrap();

        std::fs::write(&log, &good[..good.len() - 5]).unwrap();
        let err = format!("{:#}", Store::open(dir.path()).err().unwrap());
        assert!(err.contains("record 2") && err.contains("torn"), "{err}");
        assert!(!err.contains("secret"), "{err}");

        let mut flipped = good.clone();
        let at = flipped.len() - 10;
        flipped[at] ^= 0x01;
        std::fs::write(&log, &flipped).unwrap();
        let err = format!("{:#}", Store::open(dir.path()).err().unwrap());
        assert!(err.contains("record 2") && err.contains("checksum"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
