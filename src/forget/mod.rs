//! Forget lists: the entries operators ask Lethe to forget, in JSON Lines, one entry a line:
//! `{"id": "...", "set": "...", "kind": "document"|"term", "text": "...", "aliases": [...]}`.
//!
//! A malformed line is an error naming the file and line; nothing is skipped silently, since a
//! skipped entry would be forgotten content that Lethe quietly lets through. Error messages
//! never quote the entry's text.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub mod checkpoint;
pub mod fingerprints;
pub mod log;
pub mod mutation;
pub mod pg;
pub mod pg_tls;
pub mod policy;
pub mod store;

pub use fingerprints::{Facts, Fingerprints, TokenGrams};
pub use policy::{Action, SetPolicy};
pub use store::StoreMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Text to forget verbatim, near-verbatim and paraphrased (n-gram and semantic layers).
    Document,
    /// A short entity (name, e-mail, id) matched exactly, with its aliases.
    Term,
}

/// What a `term` is, which decides the variants it is also matched in (`guard::variants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TermType {
    /// A person's name: initials, "Last, First", surname parts.
    Person,
    /// An e-mail address: spelled out or obfuscated.
    Email,
    /// A phone number: its digits, however separated, with or without the country code.
    Phone,
    /// An id or account number: its letters and digits, without separators.
    Id,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub set: String,
    pub kind: Kind,
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// For terms: what the term is; unset, it is detected from the text.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub term_type: Option<TermType>,
    /// What the indexes need of the text: without the text (`text` empty) when the
    /// fingerprint-only store keeps the entry; with it in the shared store's text mode, where
    /// the replica that took the change derived them once for all (`guard::derive`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "fingerprints::shared")]
    pub fingerprints: Option<std::sync::Arc<Fingerprints>>,
}

const MAX_ID_LEN: usize = 256;

impl Entry {
    /// A `document` entry with its text (no aliases, no fingerprints).
    pub fn document(set: &str, id: &str, text: &str) -> Entry {
        Entry {
            id: id.into(),
            set: set.into(),
            kind: Kind::Document,
            text: text.into(),
            aliases: vec![],
            term_type: None,
            fingerprints: None,
        }
    }

    /// Whether the entry is kept as fingerprints only (no text to derive them again from).
    pub fn is_sealed(&self) -> bool {
        self.fingerprints.is_some() && self.text.is_empty()
    }

    /// Checks what serde cannot: non-empty fields and names usable as metric labels.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() || self.id.len() > MAX_ID_LEN {
            bail!("`id` must be 1 to {MAX_ID_LEN} bytes");
        }
        valid_set_name(&self.set)?;
        if self.is_sealed() {
            if !self.aliases.is_empty() {
                bail!("entry {:?}: an entry with `fingerprints` and no `text` has no `aliases`", self.id);
            }
            return Ok(());
        }
        if crate::guard::normalize::words(&self.text).is_empty() {
            bail!("entry {:?}: `text` has no words", self.id);
        }
        if self.kind == Kind::Document && !self.aliases.is_empty() {
            bail!("entry {:?}: `aliases` are for terms only", self.id);
        }
        if self.kind == Kind::Document && self.term_type.is_some() {
            bail!("entry {:?}: `type` is for terms only", self.id);
        }
        if self.aliases.iter().any(|a| crate::guard::normalize::words(a).is_empty()) {
            bail!("entry {:?}: an alias has no words", self.id);
        }
        Ok(())
    }
}

/// Set names become metric labels and config keys: short, ASCII, no spaces.
pub fn valid_set_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        bail!("set name {:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.'", shown(name));
    }
    Ok(())
}

/// A name or id from client input as an error message may quote it: at most 64 characters,
/// so a huge value cannot turn an INVALID_ARGUMENT into an oversized reply.
pub fn shown(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// Parses JSON Lines; blank lines and `#` comment lines are skipped, ids must be unique within
/// a set.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{origin}:{}", i + 1);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let entry: Entry = serde_json::from_str(line).map_err(|e| {
            // serde's message can quote the offending value; keep only its category and column.
            anyhow::anyhow!(
                "{}: not a valid forget entry ({:?} error at column {})",
                at(),
                e.classify(),
                e.column()
            )
        })?;
        entry.validate().with_context(at)?;
        if !seen.insert((entry.set.clone(), entry.id.clone())) {
            bail!("{}: duplicate id {:?} in set {:?}", at(), entry.id, entry.set);
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Loads a `.jsonl` file, or every `*.jsonl` file of a folder (sorted by name; hidden files
/// and Kubernetes' `..data` indirections skipped).
pub fn load(path: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for file in list_files(path)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading forget list {}", file.display()))?;
        for entry in parse(&text, &file.display().to_string())? {
            if !seen.insert((entry.set.clone(), entry.id.clone())) {
                bail!("{}: id {:?} of set {:?} is also in another file", file.display(), entry.id, entry.set);
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Whether the forget file (or every file of the folder) holds nothing but white space: what
/// a file truncated in place or half synced looks like, unlike a list emptied on purpose,
/// which says so in a `#` comment line.
pub fn is_blank(path: &Path) -> Result<bool> {
    for file in list_files(path)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading forget list {}", file.display()))?;
        if !text.trim().is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The forget file, or the `.jsonl` files of a folder in name order (hidden files skipped).
fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    Ok(if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading forget folder {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "jsonl")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documents_and_terms() {
        let text = r#"{"id": "mit", "set": "licenses", "kind": "document", "text": "Permission is hereby granted"}

{"id": "jd", "set": "people", "kind": "term", "text": "John Doe", "aliases": ["J. Doe", "jdoe@example.com"]}"#;
        let entries = parse(text, "f.jsonl").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].aliases.len(), 2);
        assert_eq!(entries[1].kind, Kind::Term);
    }

    #[test]
    fn bad_lines_name_file_and_line_and_never_quote_the_text() {
        let secret = "SECRET-CONTENT-123";
        let cases = [
            format!("{{\"id\": \"a\", \"set\": \"s\", \"kind\": \"document\", \"text\": \"{secret}\"}}\nnot json {secret}"),
            format!("{{\"id\": \"a\", \"set\": \"s\", \"kind\": \"paragraph\", \"text\": \"{secret}\"}}"),
            format!("{{\"id\": \"a\", \"set\": \"s\", \"kind\": \"document\", \"text\": \"{secret}\", \"extra\": 1}}"),
            format!("{{\"id\": \"\", \"set\": \"s\", \"kind\": \"document\", \"text\": \"{secret}\"}}"),
            "{\"id\": \"a\", \"set\": \"s\", \"kind\": \"document\", \"text\": \" ,. \"}".to_string(),
            format!("{{\"id\": \"a\", \"set\": \"bad set\", \"kind\": \"term\", \"text\": \"{secret}\"}}"),
            format!("{{\"id\": \"a\", \"set\": \"s\", \"kind\": \"term\", \"text\": \"x\"}}\n{{\"id\": \"a\", \"set\": \"s\", \"kind\": \"term\", \"text\": \"{secret}\"}}"),
        ];
        for case in cases {
            let err = format!("{:#}", parse(&case, "list.jsonl").unwrap_err());
            assert!(err.contains("list.jsonl:"), "{err}");
            assert!(!err.contains(secret), "{err}");
        }
    }

    #[test]
    fn a_folder_loads_its_jsonl_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let line = |id: &str| {
            format!("{{\"id\": \"{id}\", \"set\": \"s\", \"kind\": \"term\", \"text\": \"{id} x\"}}\n")
        };
        std::fs::write(dir.path().join("b.jsonl"), line("b")).unwrap();
        std::fs::write(dir.path().join("a.jsonl"), line("a")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::write(dir.path().join(".hidden.jsonl"), "garbage").unwrap();
        let ids: Vec<_> = load(dir.path()).unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["a", "b"]);
        std::fs::write(dir.path().join("c.jsonl"), line("a")).unwrap();
        assert!(load(dir.path()).is_err(), "duplicate id across files");
    }
}
