//! The durable forget store: an append-only, chained log of mutations in the data directory
//! (`log.rs` has the record format), appended and fsynced before a mutation is acknowledged,
//! and a checkpoint of the last acknowledged record (`checkpoint.rs`). On open the log is
//! replayed and checked against the checkpoint: damage or a rollback is an error that names
//! the record and the repair, never a silently shorter list. Files are created 0600 in a 0700
//! directory: the log holds forgotten text.
use super::checkpoint::{Checkpoint, CheckpointFile};
use super::log::{self, Damage};
use super::mutation::{apply, Mutation, Sets};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
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

pub struct Store {
    path: PathBuf,
    log: File,
    checkpoint: CheckpointFile,
    /// Good records, the last one's checksum, and the bytes of the log they fill.
    sequence: u64,
    last_sum: u64,
    len: u64,
    /// A failed write could not be cut back: the next write cuts the log to `len` first.
    dirty: bool,
    sets: Sets,
}

const LOG_NAME: &str = "forget.log";
const CHECKPOINT_NAME: &str = "forget.checkpoint";

/// What `Store::open` does with a log shorter than, or different from, its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rollback {
    /// Refuse to open: the log lost acknowledged records.
    #[default]
    Refuse,
    /// Serve the log as it is (an operator restored a backup on purpose); logged and counted.
    Accept,
}

impl Store {
    /// Opens (or creates) the store in `dir` and replays its log. A torn last record (a write
    /// that never finished, so never acknowledged) is cut off with a warning; any other damage,
    /// or a log that holds less than its checkpoint says was acknowledged, refuses the open.
    pub fn open(dir: &Path, rollback: Rollback) -> Result<Self> {
        create_private_dir(dir)?;
        let path = dir.join(LOG_NAME);
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let log =
            options.open(&path).with_context(|| format!("opening the forget store {}", path.display()))?;
        let (checkpoint, acknowledged) = CheckpointFile::open(&dir.join(CHECKPOINT_NAME))?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let r = log::replay(&bytes);
        if let Some((n, damage)) = &r.damage {
            if *damage != Damage::Torn {
                bail!(
                    "the forget store {} is damaged: record {n} {damage}; {} records from there on were not \
                     read. It was not loaded, to avoid serving a shorter list. `lethe forget store verify {}` \
                     shows the damage; `lethe forget store repair {}` keeps the {} good records and sets the \
                     rest aside",
                    path.display(),
                    r.records_after,
                    dir.display(),
                    dir.display(),
                    r.sequence
                );
            }
        }
        let store_checkpoint = Checkpoint { sequence: r.sequence, last_sum: r.last_sum };
        if let Some(mut what) = rolled_back(&r, acknowledged) {
            if let Some((n, damage)) = &r.damage {
                what.push_str(&format!("; and its record {n} {damage}"));
            }
            if rollback == Rollback::Refuse {
                bail!(
                    "the forget store {} was rolled back: {what}. It was not loaded, to avoid serving a \
                     shorter list; start with --accept-store-rollback to serve it as it is",
                    path.display()
                );
            }
            tracing::warn!(
                records = r.sequence,
                "the forget store was rolled back ({what}); served as it is (--accept-store-rollback)"
            );
            crate::metrics::store_rollback_accepted();
        }
        if let Some((n, _)) = &r.damage {
            tracing::warn!(
                record = n,
                kept = r.sequence,
                "the forget store's last record is torn (its write was interrupted before it was \
                 acknowledged); it was cut off"
            );
            log.set_len(r.good_len).and_then(|_| log.sync_data()).context("cutting off the torn record")?;
        }
        if acknowledged != Some(store_checkpoint) {
            checkpoint.reset(store_checkpoint).context("writing the store's checkpoint")?;
        }
        sync_dir(dir)?;
        Ok(Self {
            path,
            log,
            checkpoint,
            sequence: r.sequence,
            last_sum: r.last_sum,
            len: r.good_len,
            dirty: false,
            sets: r.sets,
        })
    }

    pub fn sets(&self) -> &Sets {
        &self.sets
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Appends `m` durably (fsync) and applies it; returns its sequence number. A failed write
    /// (disk full, I/O error) is cut back to the last good record before the error is returned,
    /// so no half record is left for later records to land behind.
    pub fn commit(&mut self, m: &Mutation) -> Result<u64> {
        let mut next = self.sets.clone();
        apply(&mut next, m)?;
        let record = log::encode(self.sequence + 1, self.last_sum, m)?;
        let context = format!("writing the forget store {}", self.path.display());
        if self.dirty {
            self.cut_back().context(context.clone())?;
        }
        if let Err(e) = self.log.write_all(record.line.as_bytes()).and_then(|_| self.log.sync_data()) {
            self.dirty = self.cut_back().is_err();
            crate::metrics::store_write_failed();
            return Err(e).context(context);
        }
        self.sequence += 1;
        self.last_sum = record.sum;
        self.len += record.line.len() as u64;
        self.sets = next;
        // The record is durable, so the change is acknowledged even if the checkpoint write
        // fails: a checkpoint behind the log is safe (only one ahead of it is a rollback).
        if let Err(e) = self.checkpoint.write(Checkpoint { sequence: self.sequence, last_sum: record.sum }) {
            tracing::warn!(error = %e, "writing the forget store's checkpoint failed; it is retried on the next change");
        }
        Ok(self.sequence)
    }

    fn cut_back(&mut self) -> std::io::Result<()> {
        self.log.set_len(self.len)?;
        self.log.sync_data()?;
        self.dirty = false;
        Ok(())
    }
}

/// What `lethe forget store verify` reports.
#[derive(Debug)]
pub struct Verification {
    pub good_records: u64,
    pub sets: usize,
    pub entries: usize,
    /// The first bad record and what is wrong with it; the records from there on.
    pub damage: Option<(u64, Damage)>,
    pub records_after: u64,
    /// The checkpoint's sequence (None: no checkpoint) and whether the log reaches it intact.
    pub acknowledged: Option<u64>,
    pub rolled_back: bool,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.damage.is_none() && !self.rolled_back
    }
}

/// Reads the store in `dir` without changing it.
pub fn verify(dir: &Path) -> Result<Verification> {
    let path = dir.join(LOG_NAME);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let r = log::replay(&bytes);
    let cp_path = dir.join(CHECKPOINT_NAME);
    let acknowledged = if cp_path.exists() { CheckpointFile::open(&cp_path)?.1 } else { None };
    let rolled_back = rolled_back(&r, acknowledged).is_some();
    Ok(Verification {
        good_records: r.sequence,
        sets: r.sets.len(),
        entries: r.sets.values().map(|s| s.entries.len()).sum(),
        damage: r.damage,
        records_after: r.records_after,
        acknowledged: acknowledged.map(|a| a.sequence),
        rolled_back,
    })
}

/// Keeps the good prefix of the log in `dir`: the whole original is first copied aside (to
/// `forget.log.damaged-<unix seconds>`), then the log is cut after its last good record and
/// the checkpoint set to it. Returns the verification from before the repair and the copy.
pub fn repair(dir: &Path) -> Result<(Verification, Option<PathBuf>)> {
    let before = verify(dir)?;
    if before.ok() {
        return Ok((before, None));
    }
    let path = dir.join(LOG_NAME);
    let seconds =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let aside = dir.join(format!("{LOG_NAME}.damaged-{seconds}"));
    std::fs::copy(&path, &aside).with_context(|| format!("copying the log aside to {}", aside.display()))?;
    File::open(&aside).and_then(|f| f.sync_all()).context("syncing the copy")?;
    let bytes = std::fs::read(&path)?;
    let r = log::replay(&bytes);
    let log = OpenOptions::new().write(true).open(&path)?;
    log.set_len(r.good_len).and_then(|_| log.sync_all()).context("cutting the log")?;
    let (checkpoint, _) = CheckpointFile::open(&dir.join(CHECKPOINT_NAME))?;
    checkpoint
        .reset(Checkpoint { sequence: r.sequence, last_sum: r.last_sum })
        .context("resetting the checkpoint")?;
    sync_dir(dir)?;
    Ok((before, Some(aside)))
}

/// Why the log `r` holds less than was acknowledged, if it does: fewer records or another
/// record than the checkpoint says, or chained records (written by a store that keeps a
/// checkpoint) with the checkpoint gone — the data directory was not copied or restored whole.
/// A log of the first format alone has no checkpoint yet; one is written for it.
fn rolled_back(r: &log::Replay, acknowledged: Option<Checkpoint>) -> Option<String> {
    let Some(ack) = acknowledged else {
        return r.chained.then(|| {
            format!(
                "its checkpoint ({CHECKPOINT_NAME}) is missing, so it cannot tell whether its {} records are \
                 all that was acknowledged (was the data directory copied or restored without it?)",
                r.sequence
            )
        });
    };
    if ack.sequence > r.sequence {
        Some(format!(
            "it holds {} records but {} were acknowledged (the log was cut, emptied, replaced or restored \
             from a backup)",
            r.sequence, ack.sequence
        ))
    } else if r.sum_of(ack.sequence).is_some_and(|sum| sum != ack.last_sum) {
        Some(format!("its record {} differs from the one acknowledged (the log was replaced)", ack.sequence))
    } else {
        None
    }
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
    use crate::forget::{Entry, Kind};

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
        let mut store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        store
            .commit(&Mutation::AddEntries {
                set: "s".into(),
                entries: vec![entry("s", "a"), entry("s", "b")],
            })
            .unwrap();
        store.commit(&Mutation::RemoveEntries { set: "s".into(), ids: vec!["a".into()] }).unwrap();
        drop(store);
        let store = Store::open(dir.path(), Rollback::Refuse).unwrap();
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
        let mut store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        assert!(store.commit(&Mutation::RemoveEntries { set: "s".into(), ids: vec!["x".into()] }).is_err());
        assert!(store
            .commit(&Mutation::AddEntries { set: "s".into(), entries: vec![entry("t", "a")] })
            .is_err());
        assert!(store.commit(&Mutation::DeleteSet { set: "bad name".into() }).is_err());
        assert_eq!(store.sequence(), 0);
        assert_eq!(std::fs::read(dir.path().join(LOG_NAME)).unwrap().len(), 0);
    }

    fn add(store: &mut Store, id: &str) {
        store.commit(&Mutation::AddEntries { set: "s".into(), entries: vec![entry("s", id)] }).unwrap();
    }

    fn open_err(dir: &Path) -> String {
        let err = format!("{:#}", Store::open(dir, Rollback::Refuse).err().expect("the open is refused"));
        assert!(!err.contains("secret"), "{err}");
        err
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_damage_before_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        add(&mut store, "a");
        add(&mut store, "b");
        drop(store);
        let log = dir.path().join(LOG_NAME);
        let good = std::fs::read(&log).unwrap();

        // An append that never finished (a crash mid-write) was never acknowledged: cut off.
        let mut torn = good.clone();
        torn.extend_from_slice(b"0123abcd 3 00");
        std::fs::write(&log, &torn).unwrap();
        let mut store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        assert_eq!(store.sequence(), 2);
        assert_eq!(std::fs::read(&log).unwrap(), good);
        add(&mut store, "c");
        drop(store);
        let after_c = std::fs::read(&log).unwrap();

        let mut flipped = after_c.clone();
        flipped[good.len() - 10] ^= 0x01;
        std::fs::write(&log, &flipped).unwrap();
        let err = open_err(dir.path());
        assert!(err.contains("record 2 fails its checksum") && err.contains("repair"), "{err}");

        // `repair` keeps the good prefix, sets the whole damaged log aside, and the store opens.
        let (before, aside) = repair(dir.path()).unwrap();
        assert_eq!((before.good_records, before.records_after), (1, 2));
        assert_eq!(std::fs::read(aside.unwrap()).unwrap(), flipped);
        let store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        assert_eq!(store.sets()["s"].entries.keys().collect::<Vec<_>>(), ["a"]);
        assert!(verify(dir.path()).unwrap().ok());
    }

    #[test]
    fn a_log_cut_emptied_deleted_or_reordered_is_refused_unless_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        for id in ["a", "b", "c"] {
            add(&mut store, id);
        }
        drop(store);
        let log = dir.path().join(LOG_NAME);
        let good = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = good.split_inclusive('\n').collect();

        let cut = lines[..2].concat();
        for (altered, expect) in [
            (Some(cut.clone()), "holds 2 records but 3 were acknowledged"),
            (Some(String::new()), "holds 0 records but 3 were acknowledged"),
            (None, "holds 0 records but 3 were acknowledged"),
            (Some([lines[0], lines[2], lines[1]].concat()), "record 2 is out of order"),
        ] {
            match &altered {
                Some(text) => std::fs::write(&log, text).unwrap(),
                None => std::fs::remove_file(&log).unwrap(),
            }
            let err = open_err(dir.path());
            assert!(err.contains(expect), "{expect}: {err}");
            assert!(!verify(dir.path()).unwrap().ok());
        }
        // The log whole but its checkpoint gone (a data directory copied without it).
        std::fs::write(&log, &good).unwrap();
        std::fs::remove_file(dir.path().join(CHECKPOINT_NAME)).unwrap();
        assert!(open_err(dir.path()).contains("checkpoint (forget.checkpoint) is missing"));
        drop(Store::open(dir.path(), Rollback::Accept).unwrap());
        // A different third record than the one acknowledged.
        std::fs::write(&log, &cut).unwrap();
        let mut other = Store::open(dir.path(), Rollback::Accept).unwrap();
        assert_eq!(other.sequence(), 2);
        drop(other);
        let restored = Store::open(dir.path(), Rollback::Refuse).unwrap();
        assert_eq!(restored.sets()["s"].entries.len(), 2, "accepted once, the rollback stands");
        drop(restored);
        std::fs::write(&log, &good).unwrap();
        other = Store::open(dir.path(), Rollback::Refuse).unwrap();
        assert_eq!(other.sequence(), 3, "a log longer than its checkpoint is fine");
        drop(other);
        let prev = log::replay(cut.as_bytes()).last_sum;
        let replaced = log::encode(3, prev, &Mutation::DeleteSet { set: "s".into() }).unwrap();
        std::fs::write(&log, format!("{cut}{}", replaced.line)).unwrap();
        assert!(open_err(dir.path()).contains("record 3 differs from the one acknowledged"));
    }

    #[test]
    fn a_log_of_the_first_format_opens_without_a_checkpoint_and_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mutation::AddEntries { set: "s".into(), entries: vec![entry("s", "a")] };
        let json = serde_json::to_string(&m).unwrap();
        let line = format!("{:016x} {json}\n", xxhash_rust::xxh3::xxh3_64(json.as_bytes()));
        std::fs::write(dir.path().join(LOG_NAME), line).unwrap();
        let mut store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        add(&mut store, "b");
        drop(store);
        let store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        assert_eq!(store.sequence(), 2);
        assert!(dir.path().join(CHECKPOINT_NAME).exists());
    }

    #[test]
    fn a_failed_write_is_cut_back_and_the_next_write_lands_after_the_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        add(&mut store, "a");
        let log = dir.path().join(LOG_NAME);
        let writable = std::mem::replace(&mut store.log, File::open(&log).unwrap());
        // Stand-in for a full disk: the write fails, and so does cutting back (read-only).
        let m = Mutation::AddEntries { set: "s".into(), entries: vec![entry("s", "b")] };
        assert!(store.commit(&m).is_err());
        assert!(store.dirty);
        assert_eq!(store.sequence(), 1);
        std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"half a rec").unwrap();
        store.log = writable;
        add(&mut store, "c");
        drop(store);
        let store = Store::open(dir.path(), Rollback::Refuse).unwrap();
        assert_eq!(store.sets()["s"].entries.keys().collect::<Vec<_>>(), ["a", "c"]);
    }
}
