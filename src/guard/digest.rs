//! The content hash of a snapshot: the same list and policies give the same hash on every
//! replica, whatever order they were loaded in (the digest of the entries is a wrapping sum
//! of per-entry hashes, so a snapshot grown by additions hashes as one built at once).
use crate::forget::{Entry, SetPolicy};

/// A hash of the entries' digest and the policies of their sets.
pub(super) fn content_hash<'a>(digest: u128, sets: impl Iterator<Item = (&'a str, &'a SetPolicy)>) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&digest.to_le_bytes());
    let mut policies: Vec<(&str, String)> =
        sets.map(|(name, policy)| (name, serde_json::to_string(policy).unwrap_or_default())).collect();
    policies.sort();
    for (name, policy) in policies {
        h.update(name.as_bytes());
        h.update(policy.as_bytes());
    }
    format!("{:032x}", h.digest128())
}

/// xxh3-128 of everything an entry holds, fields length-prefixed.
pub(super) fn entry_digest(e: &Entry) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(e.id.as_bytes());
    field(e.set.as_bytes());
    field(&[e.kind as u8]);
    field(e.text.as_bytes());
    for a in &e.aliases {
        field(a.as_bytes());
    }
    // Absent for entries without a type, so their digests are what they were.
    if let Some(t) = e.term_type {
        field(format!("type:{t:?}").as_bytes());
    }
    if let Some(fp) = &e.fingerprints {
        field(fp.recipe.as_bytes());
        field(&fp.ngrams.iter().flat_map(|n| n.to_le_bytes()).collect::<Vec<u8>>());
        field(
            &fp.terms
                .iter()
                .flat_map(|(f, l)| [f.to_le_bytes().as_slice(), &l.to_le_bytes()].concat())
                .collect::<Vec<u8>>(),
        );
        field(
            &fp.joined
                .iter()
                .flat_map(|(k, l)| [k.to_le_bytes().as_slice(), &l.to_le_bytes()].concat())
                .collect::<Vec<u8>>(),
        );
        field(fp.embedder.as_deref().unwrap_or("").as_bytes());
        for v in &fp.vectors {
            field(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        }
        if let Some(t) = &fp.tokens {
            field(t.tokenizer.as_bytes());
            field(
                &t.grams
                    .iter()
                    .flat_map(|(f, n)| [f.to_le_bytes().as_slice(), &n.to_le_bytes()].concat())
                    .collect::<Vec<u8>>(),
            );
        }
    }
    h.digest128()
}
