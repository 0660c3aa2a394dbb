//! The forgotten passage of the end-to-end tests (a fictional biography), how much of it an
//! output repeats, and a configuration that forgets it.
use lethe::guard::normalize::normalize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const BIO: &str = "Marisol Venkataraman-Oduya was born on 14 March 1987 in Port Alder, a fishing town on the \
    northern coast of Tasveria. Her mother repaired radios and her father ran a ferry between the islands of \
    Kell and Ormsby. She studied marine biology at the University of Lindqvist, where she wrote a thesis on \
    the migration of the spotted lanternfish. In 2014 she founded the Alder Reef Trust, which restored eleven \
    kilometres of coral along the Tasverian coast.";

/// Longest run of consecutive normalized words of `text` that also occurs in `source`.
pub fn longest_shared_run(text: &str, source: &str) -> usize {
    let src: Vec<String> = normalize(source).split(' ').map(String::from).collect();
    let out: Vec<String> = normalize(text).split(' ').map(String::from).collect();
    (1..=out.len())
        .rev()
        .find(|&n| {
            let grams: HashSet<&[String]> = src.windows(n).collect();
            out.windows(n).any(|w| grams.contains(w))
        })
        .unwrap_or(0)
}

/// Writes into `dir` a forget list holding `BIO` (entry `bio-1` of set `people`) and a config
/// that loads it with the set on `action`, after `before` (top-level keys or other tables);
/// returns the config's path.
pub fn forget_config(dir: &Path, action: &str, before: &str) -> PathBuf {
    forget_config_of(dir, BIO, action, before)
}

/// As [`forget_config`], forgetting `text` instead of `BIO`.
pub fn forget_config_of(dir: &Path, text: &str, action: &str, before: &str) -> PathBuf {
    let list = dir.join("forget.jsonl");
    let entry = serde_json::json!({"id": "bio-1", "set": "people", "kind": "document", "text": text});
    std::fs::write(&list, format!("{entry}\n")).unwrap();
    let config = dir.join("lethe.toml");
    let guard = format!(
        "[guard]\nforget = {:?}\n[guard.sets.people]\naction = \"{action}\"\n",
        list.display().to_string()
    );
    std::fs::write(&config, format!("{before}{guard}")).unwrap();
    config
}
