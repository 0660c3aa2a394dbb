//! The store's second record of how far its log goes: the last sequence and that record's
//! checksum, written after each append. A log that was cut at a record boundary, emptied,
//! deleted or replaced is shorter than (or differs from) its checkpoint, which no replay of
//! the log alone can tell. Two fixed slots, written alternately in place and checksummed, so a
//! write torn by a crash leaves the other slot readable.
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::path::Path;

const SLOT: usize = 32;
const MAGIC: &[u8; 8] = b"lethecp1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: u64,
    pub last_sum: u64,
}

pub struct CheckpointFile {
    file: File,
}

impl CheckpointFile {
    /// Opens (or creates) the file; returns it with the newest readable checkpoint, if any.
    pub fn open(path: &Path) -> Result<(Self, Option<Checkpoint>)> {
        let mut options = OpenOptions::new();
        options.create(true).read(true).write(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).with_context(|| format!("opening {}", path.display()))?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let newest = bytes.chunks_exact(SLOT).filter_map(decode).max_by_key(|c| c.sequence);
        Ok((Self { file }, newest))
    }

    /// Writes `c` durably into its slot (by the parity of its sequence).
    pub fn write(&self, c: Checkpoint) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let slot = (c.sequence % 2) as u64 * SLOT as u64;
        self.file.write_all_at(&encode(c), slot)?;
        self.file.sync_data()
    }

    /// Both slots set to `c` (after a repair or an accepted rollback, so no older, higher
    /// checkpoint remains).
    pub fn reset(&self, c: Checkpoint) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let slot = encode(c);
        self.file.write_all_at(&[slot, slot].concat(), 0)?;
        self.file.set_len(2 * SLOT as u64)?;
        self.file.sync_data()
    }
}

fn encode(c: Checkpoint) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..16].copy_from_slice(&c.sequence.to_le_bytes());
    slot[16..24].copy_from_slice(&c.last_sum.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&slot[..24]);
    slot[24..].copy_from_slice(&sum.to_le_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<Checkpoint> {
    let word = |i: usize| u64::from_le_bytes(slot[i..i + 8].try_into().expect("8 bytes"));
    (&slot[..8] == MAGIC && xxhash_rust::xxh3::xxh3_64(&slot[..24]) == word(24))
        .then(|| Checkpoint { sequence: word(8), last_sum: word(16) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_intact_slot_wins_and_a_torn_slot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let (cp, none) = CheckpointFile::open(&path).unwrap();
        assert_eq!(none, None);
        cp.write(Checkpoint { sequence: 1, last_sum: 11 }).unwrap();
        cp.write(Checkpoint { sequence: 2, last_sum: 22 }).unwrap();
        cp.write(Checkpoint { sequence: 3, last_sum: 33 }).unwrap();
        drop(cp);
        assert_eq!(CheckpointFile::open(&path).unwrap().1, Some(Checkpoint { sequence: 3, last_sum: 33 }));
        // A crash while writing slot 1 (sequence 3) leaves slot 0 (sequence 2).
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SLOT + 12] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (cp, newest) = CheckpointFile::open(&path).unwrap();
        assert_eq!(newest, Some(Checkpoint { sequence: 2, last_sum: 22 }));
        cp.reset(Checkpoint { sequence: 1, last_sum: 11 }).unwrap();
        assert_eq!(CheckpointFile::open(&path).unwrap().1, Some(Checkpoint { sequence: 1, last_sum: 11 }));
    }
}
