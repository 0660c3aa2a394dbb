//! The forget store's record format and its replay. One record per line:
//! `<xxh3-64 hex> <sequence> <previous record's xxh3-64 hex> <JSON mutation>`, the checksum
//! taken over everything after it. Sequence and previous hash make the records a chain, so a
//! record that is missing, repeated or out of place is found, not only a damaged one. (The
//! chain detects accidents — a bad copy, a restored backup, a partial sync — not an attacker
//! who can write the data directory.) Records of the first format, `<xxh3-64 hex> <JSON>`,
//! are still read; their sequence is their position.
use super::mutation::{apply, Mutation, Sets};
use std::fmt;

/// A record as appended: its line (with the line end) and checksum.
pub struct Encoded {
    pub line: String,
    pub sum: u64,
}

pub fn encode(sequence: u64, prev: u64, m: &Mutation) -> serde_json::Result<Encoded> {
    let body = format!("{sequence} {prev:016x} {}", serde_json::to_string(m)?);
    let sum = xxhash_rust::xxh3::xxh3_64(body.as_bytes());
    Ok(Encoded { line: format!("{sum:016x} {body}\n"), sum })
}

/// What is wrong with the first bad record. Messages name the record and never quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The last record has no line end: its write never finished (so it was never acknowledged).
    Torn,
    NotUtf8,
    Malformed,
    Checksum,
    /// The record's sequence or previous hash does not follow the record before it.
    OutOfOrder,
    DoesNotParse,
    DoesNotApply,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Damage::Torn => "is torn (no line end: its write was interrupted before it was acknowledged)",
            Damage::NotUtf8 => "is not UTF-8",
            Damage::Malformed => "is malformed",
            Damage::Checksum => "fails its checksum",
            Damage::OutOfOrder => {
                "is out of order (its sequence or previous hash does not follow the record before it)"
            }
            Damage::DoesNotParse => "does not parse",
            Damage::DoesNotApply => "does not apply to the records before it",
        })
    }
}

/// The log read up to its first bad record.
#[derive(Debug, Default)]
pub struct Replay {
    pub sets: Sets,
    /// Good records, and the checksum of the last one (0 before the first).
    pub sequence: u64,
    pub last_sum: u64,
    /// Bytes of the good prefix.
    pub good_len: u64,
    /// The first bad record (numbered from 1), if any; nothing after it was read.
    pub damage: Option<(u64, Damage)>,
    /// Records (complete lines) at and after the first bad one.
    pub records_after: u64,
    /// The checksum of each good record, in order.
    pub sums: Vec<u64>,
    /// Whether a good record has the chained format (a store that keeps a checkpoint wrote it).
    pub chained: bool,
}

impl Replay {
    /// The checksum of good record `sequence` (numbered from 1).
    pub fn sum_of(&self, sequence: u64) -> Option<u64> {
        sequence.checked_sub(1).and_then(|i| self.sums.get(i as usize)).copied()
    }
}

pub fn replay(bytes: &[u8]) -> Replay {
    let mut r = Replay::default();
    let mut at = 0;
    while at < bytes.len() {
        let n = r.sequence + 1;
        let Some(end) = bytes[at..].iter().position(|&b| b == b'\n').map(|i| at + i + 1) else {
            r.damage = Some((n, Damage::Torn));
            break;
        };
        let record = match read_record(&bytes[at..end - 1], n, r.last_sum) {
            Ok(record) => record,
            Err(damage) => {
                r.damage = Some((n, damage));
                break;
            }
        };
        if apply(&mut r.sets, &record.mutation).is_err() {
            r.damage = Some((n, Damage::DoesNotApply));
            break;
        }
        r.sequence = n;
        r.last_sum = record.sum;
        r.sums.push(record.sum);
        r.chained |= record.chained;
        at = end;
        r.good_len = at as u64;
    }
    if r.damage.is_some() {
        r.records_after =
            bytes[r.good_len as usize..].split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    }
    r
}

/// Reads one record of the chained format (a line without its end) that must be record `n`
/// following the record whose checksum is `prev`: its checksum and mutation.
pub fn decode(line: &[u8], n: u64, prev: u64) -> Result<(u64, Mutation), Damage> {
    let record = read_record(line, n, prev)?;
    if !record.chained {
        return Err(Damage::Malformed);
    }
    Ok((record.sum, record.mutation))
}

struct Record {
    sum: u64,
    mutation: Mutation,
    chained: bool,
}

/// Reads record `n`, which must follow the record whose checksum is `prev`.
fn read_record(line: &[u8], n: u64, prev: u64) -> Result<Record, Damage> {
    let line = std::str::from_utf8(line).map_err(|_| Damage::NotUtf8)?;
    let (sum, body) = line.split_once(' ').ok_or(Damage::Malformed)?;
    let sum = u64::from_str_radix(sum, 16).map_err(|_| Damage::Malformed)?;
    if xxhash_rust::xxh3::xxh3_64(body.as_bytes()) != sum {
        return Err(Damage::Checksum);
    }
    let chained = !body.starts_with('{');
    let json = if !chained {
        body // the first format: no sequence, no chain
    } else {
        let mut parts = body.splitn(3, ' ');
        let (Some(seq), Some(prev_sum), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Damage::Malformed);
        };
        let seq: u64 = seq.parse().map_err(|_| Damage::Malformed)?;
        let prev_sum = u64::from_str_radix(prev_sum, 16).map_err(|_| Damage::Malformed)?;
        if seq != n || prev_sum != prev {
            return Err(Damage::OutOfOrder);
        }
        json
    };
    let mutation = serde_json::from_str(json).map_err(|_| Damage::DoesNotParse)?;
    Ok(Record { sum, mutation, chained })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete(set: &str) -> Mutation {
        Mutation::DeleteSet { set: set.into() }
    }

    fn put(set: &str) -> Mutation {
        Mutation::PutSet { set: set.into(), policy: Default::default(), entries: vec![] }
    }

    fn log(mutations: &[Mutation]) -> (Vec<String>, u64) {
        let mut prev = 0;
        let lines = mutations
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let e = encode(i as u64 + 1, prev, m).unwrap();
                prev = e.sum;
                e.line
            })
            .collect();
        (lines, prev)
    }

    #[test]
    fn a_chained_log_replays_and_every_alteration_is_named() {
        let (lines, last) = log(&[put("a"), put("b"), delete("a"), put("c")]);
        let r = replay(lines.concat().as_bytes());
        assert_eq!((r.sequence, r.last_sum, r.damage), (4, last, None));
        assert_eq!(r.sets.keys().collect::<Vec<_>>(), ["b", "c"]);

        let swapped = [&lines[0], &lines[2], &lines[1], &lines[3]].map(|s| s.as_str()).concat();
        let r = replay(swapped.as_bytes());
        assert_eq!((r.sequence, r.damage.clone(), r.records_after), (1, Some((2, Damage::OutOfOrder)), 3));
        let repeated = [&lines[0], &lines[1], &lines[1]].map(|s| s.as_str()).concat();
        assert_eq!(replay(repeated.as_bytes()).damage, Some((3, Damage::OutOfOrder)));
        let gap = [&lines[0], &lines[2]].map(|s| s.as_str()).concat();
        assert_eq!(replay(gap.as_bytes()).damage, Some((2, Damage::OutOfOrder)));

        let all = lines.concat();
        let torn = &all.as_bytes()[..all.len() - 3];
        let r = replay(torn);
        assert_eq!((r.sequence, r.damage), (3, Some((4, Damage::Torn))));
        assert_eq!(r.good_len as usize, lines[..3].concat().len());
        let mut flipped = all.clone().into_bytes();
        flipped[lines[0].len() + 30] ^= 1;
        assert_eq!(replay(&flipped).damage, Some((2, Damage::Checksum)));
    }

    #[test]
    fn records_of_the_first_format_are_read_and_the_chain_continues_from_them() {
        let json = serde_json::to_string(&put("a")).unwrap();
        let sum = xxhash_rust::xxh3::xxh3_64(json.as_bytes());
        let old = format!("{sum:016x} {json}\n");
        let new = encode(2, sum, &put("b")).unwrap();
        let r = replay(format!("{old}{}", new.line).as_bytes());
        assert_eq!((r.sequence, r.last_sum, r.damage), (2, new.sum, None));
    }
}
