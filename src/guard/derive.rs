//! Derivation: from a forget entry's text to what the indexes need of it — fingerprints of
//! its normalized word n-grams and terms, token n-grams for decode-time masking, embeddings of
//! its windows, its distinctive facts. Indexes are built from these alone, so
//! - a rebuild after a small change derives only the new entries (the rest come from a cache),
//! - the durable store can keep these instead of the text (`forget_store = "fingerprints"`).
//!
//! A fingerprint is only valid for the parameters it was derived with; `recipe` and `embedder`
//! name them, and an entry derived with other parameters is refused rather than silently
//! matched with the wrong ones.
use super::facts;
use super::ngram::{document_fingerprints, fingerprint, fingerprint_tokens, word_hash};
use super::semantic::{self, Embedder};
use super::variants;
use super::{normalize, GuardConfig};
use crate::forget::{Entry, Fingerprints, Kind, TokenGrams};
use crate::model::Model;
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Bump when normalization changes: fingerprints derived before no longer match.
const NORMALIZATION_VERSION: u32 = 2;

/// Derives fingerprints for one configuration, embedder and model, with a cache of those
/// already derived (keyed by the entry's content), so unchanged entries cost nothing.
pub struct Deriver {
    recipe: String,
    n: usize,
    token_ngram: usize,
    window_words: usize,
    stride_words: usize,
    embedder: Option<(Arc<Embedder>, String)>,
    cache: Mutex<HashMap<u64, Arc<Fingerprints>>>,
}

impl Deriver {
    pub fn new(cfg: &GuardConfig, embedder: Option<Arc<Embedder>>) -> Self {
        let p = cfg.semantic;
        let embedder = embedder.map(|e| {
            let name = format!("{};w{}s{}", e.id, p.window_words, p.stride_words);
            (e, name)
        });
        Self {
            recipe: format!("norm{NORMALIZATION_VERSION};n{}", cfg.ngram.n),
            n: cfg.ngram.n,
            token_ngram: cfg.token_ngram,
            window_words: p.window_words,
            stride_words: p.stride_words,
            embedder,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn embedder(&self) -> Option<&Arc<Embedder>> {
        self.embedder.as_ref().map(|(e, _)| e)
    }

    /// Fingerprints of `entries`; `tokens_for(i)`: derive token n-grams for entry i (documents
    /// of `mask` sets). Entries stored as fingerprints are checked against this deriver's
    /// parameters. `whole_list`: these are all the entries served, and the cache keeps exactly
    /// these afterwards (otherwise it keeps what it had too).
    pub fn derive_all(
        &self,
        entries: &[&Entry],
        model: Option<&Model>,
        tokens_for: impl Fn(usize) -> bool,
        whole_list: bool,
    ) -> Result<Vec<Arc<Fingerprints>>> {
        let mut cache = self.cache.lock().expect("derivation cache lock");
        let mut out: Vec<Option<Arc<Fingerprints>>> = vec![None; entries.len()];
        let mut keys: Vec<Option<u64>> = vec![None; entries.len()];
        // Derive what is neither stored as fingerprints nor cached; embed the windows of all
        // new documents in batches.
        let mut derived: Vec<(usize, Fingerprints, Vec<String>)> = Vec::new();
        let (mut stored_used, mut cached) = (0u64, 0u64);
        // Text entries whose stored fingerprints do not fit (counted, and the first reason).
        let mut misfits: (u64, Option<String>) = (0, None);
        for (i, e) in entries.iter().enumerate() {
            let model = model.filter(|_| tokens_for(i));
            if let Some(stored) = &e.fingerprints {
                match self.misfit(e, stored, model) {
                    None => {
                        out[i] = Some(match &self.embedder {
                            Some(_) => stored.clone(),
                            None => Arc::new(Fingerprints { vectors: Vec::new(), ..(**stored).clone() }),
                        });
                        stored_used += 1;
                        continue;
                    }
                    Some(misfit) if e.is_sealed() => return Err(misfit.refusal(e)),
                    // The text is there: derive from it, as if nothing were stored.
                    Some(misfit) => {
                        misfits.0 += 1;
                        misfits.1.get_or_insert_with(|| misfit.to_string());
                    }
                }
            }
            let key = cache_key(e, model.map(|m| self.tokenizer_key(m)).as_deref());
            keys[i] = Some(key);
            match cache.get(&key) {
                Some(fp) => {
                    out[i] = Some(fp.clone());
                    cached += 1;
                }
                None => {
                    let (fp, windows) = self.derive_text(e, model)?;
                    derived.push((i, fp, windows));
                }
            }
        }
        if let Some((embedder, _)) = &self.embedder {
            let texts: Vec<&str> =
                derived.iter().flat_map(|(_, _, w)| w.iter().map(String::as_str)).collect();
            let mut vectors = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(32) {
                vectors.extend(embedder.embed(chunk)?);
            }
            let mut vectors = vectors.into_iter();
            for (_, fp, windows) in &mut derived {
                fp.vectors = vectors.by_ref().take(windows.len()).collect();
            }
        }
        crate::metrics::derivations(stored_used, cached, derived.len() as u64);
        for (i, fp, _) in derived {
            let fp = Arc::new(fp);
            cache.insert(keys[i].expect("derived entries have keys"), fp.clone());
            out[i] = Some(fp);
        }
        if let (n @ 1.., Some(reason)) = misfits {
            tracing::warn!(
                entries = n,
                first = %reason,
                "stored fingerprints do not fit this server's parameters; derived them again from the entries' text"
            );
        }
        if whole_list {
            let used: HashSet<u64> = keys.into_iter().flatten().collect();
            cache.retain(|k, _| used.contains(k));
        }
        Ok(out.into_iter().map(|f| f.expect("every entry derived")).collect())
    }

    /// The entry as the fingerprint-only store keeps it: no text, no aliases, fingerprints
    /// (token n-grams of documents included, so a set can later be switched to `mask`; on a
    /// server without a local model there are none, and a model loaded later refuses them).
    pub fn seal(&self, entry: &Entry, model: Option<&Model>) -> Result<Entry> {
        if entry.is_sealed() {
            return Ok(entry.clone());
        }
        let attached = self.attach(entry, model)?;
        Ok(Entry { text: String::new(), aliases: Vec::new(), ..attached })
    }

    /// The entry with its text and its fingerprints (as `seal` derives them): what the shared
    /// store keeps in the text mode, so the other replicas load the fingerprints and
    /// embeddings instead of deriving them again, and can still derive from the text when
    /// their parameters differ.
    pub fn attach(&self, entry: &Entry, model: Option<&Model>) -> Result<Entry> {
        if entry.fingerprints.is_some() {
            return Ok(entry.clone());
        }
        let mask = entry.kind == Kind::Document;
        let fp = self.derive_all(&[entry], model, |_| mask, false)?.remove(0);
        Ok(Entry { fingerprints: Some(fp), ..entry.clone() })
    }

    /// Fingerprints of one entry's text without its vectors, and the window texts to embed.
    fn derive_text(&self, e: &Entry, model: Option<&Model>) -> Result<(Fingerprints, Vec<String>)> {
        let mut fp = Fingerprints {
            recipe: self.recipe.clone(),
            ngrams: Vec::new(),
            terms: Vec::new(),
            joined: Vec::new(),
            embedder: None,
            vectors: Vec::new(),
            tokens: None,
            facts: Default::default(),
        };
        let mut windows = Vec::new();
        match e.kind {
            Kind::Document => {
                let words = normalize::words(&e.text);
                let mut seen = HashSet::new();
                fp.ngrams = document_fingerprints(&words.words, self.n)
                    .into_iter()
                    .filter(|f| seen.insert(*f))
                    .collect();
                fp.facts = facts::document_facts(&e.text, &words);
                if let Some((_, name)) = &self.embedder {
                    fp.embedder = Some(name.clone());
                    let spans = &words.spans;
                    for w in semantic::windows(words.len(), self.window_words, self.stride_words) {
                        windows.push(e.text[spans[w.start].start..spans[w.end - 1].end].to_string());
                    }
                    if words.len() > self.window_words {
                        for r in semantic::sentences(&e.text, self.stride_words / 2) {
                            windows.push(e.text[r].to_string());
                        }
                    }
                }
                if let Some(model) = model {
                    let ids = model.encode(&e.text)?;
                    let n = self.token_ngram;
                    let mut seen = HashSet::new();
                    let grams = ids
                        .windows(n)
                        .map(|g| (fingerprint_tokens(&g[..n - 1]), g[n - 1]))
                        .filter(|g| seen.insert(*g))
                        .collect();
                    fp.tokens = Some(TokenGrams { tokenizer: self.tokenizer_key(model), grams });
                }
            }
            Kind::Term => {
                let ty = e.term_type.or_else(|| variants::detect(&e.text));
                let v = variants::of(&e.text, ty);
                let phrases = std::iter::once(&e.text).chain(&e.aliases).chain(&v.phrases);
                for t in phrases {
                    let w = normalize::words(t).words;
                    let term = (fingerprint(&w), w.len() as u32);
                    if !w.is_empty() && !fp.terms.contains(&term) {
                        fp.terms.push(term);
                    }
                }
                for t in &v.joined {
                    let key = normalize::words(t).words.concat();
                    let joined = (word_hash(&key), key.len() as u32);
                    if !key.is_empty() && !fp.joined.contains(&joined) {
                        fp.joined.push(joined);
                    }
                }
            }
        }
        Ok((fp, windows))
    }

    /// Why `fp`, stored with `e`, does not fit this deriver's parameters (`None`: it fits).
    fn misfit(&self, e: &Entry, fp: &Fingerprints, model: Option<&Model>) -> Option<Misfit> {
        let misfit =
            |what, stored: &str, now: &str| Some(Misfit { what, stored: stored.into(), now: now.into() });
        if fp.recipe != self.recipe {
            return misfit("n-gram recipe", &fp.recipe, &self.recipe);
        }
        if let Some((_, name)) = &self.embedder {
            if e.kind == Kind::Document && fp.embedder.as_deref() != Some(name) {
                return misfit("embedder", fp.embedder.as_deref().unwrap_or("none"), name);
            }
        }
        if let Some(model) = model {
            let stored = fp.tokens.as_ref().map_or("none", |t| t.tokenizer.as_str());
            let now = self.tokenizer_key(model);
            if e.kind == Kind::Document && stored != now {
                return misfit("tokenizer", stored, &now);
            }
        }
        None
    }
}

/// A parameter stored fingerprints were derived with that this server does not use.
struct Misfit {
    what: &'static str,
    stored: String,
    now: String,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "derived with {} {:?}, but this server derives with {:?}", self.what, self.stored, self.now)
    }
}

impl Misfit {
    /// An entry stored as fingerprints only cannot be derived again: refuse it, naming the
    /// entry (never its content) and the way out.
    fn refusal(&self, e: &Entry) -> anyhow::Error {
        anyhow::anyhow!(
            "entry {:?} of set {:?} is stored as fingerprints {self}; fingerprints cannot be derived again: \
             restore the previous configuration or add the entry again from its text",
            e.id,
            e.set
        )
    }
}

impl Deriver {
    /// The model's tokenizer and the token n-gram length: token fingerprints fit only these.
    fn tokenizer_key(&self, model: &Model) -> String {
        format!("{};n{}", model.info.tokenizer_id, self.token_ngram)
    }
}

/// What the fingerprints of a text entry depend on: kind, text, aliases, tokenizer.
fn cache_key(e: &Entry, tokenizer: Option<&str>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&[e.kind as u8]);
    for part in std::iter::once(&e.text).chain(&e.aliases).map(String::as_str).chain(tokenizer) {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_through_json_and_hold_no_text() {
        let entry = Entry {
            id: "d".into(),
            set: "s".into(),
            kind: Kind::Document,
            text: "Orlan Vesk painted the lighthouse door crimson every spring".into(),
            aliases: vec![],
            term_type: None,
            fingerprints: None,
        };
        let deriver = Deriver::new(&GuardConfig { embedder: None, ..Default::default() }, None);
        let mut fp = (*deriver.derive_all(&[&entry], None, |_| false, true).unwrap()[0]).clone();
        assert_eq!(fp.ngrams.len(), 9 - 4 + 1);
        fp.vectors = vec![vec![0.25, -1.5e-7, f32::MIN_POSITIVE], vec![1.0; 5]];
        let json = serde_json::to_string(&fp).unwrap();
        assert!(!json.to_lowercase().contains("lighthouse"), "{json}");
        assert_eq!(serde_json::from_str::<Fingerprints>(&json).unwrap(), fp);
    }

    #[test]
    fn entries_derived_with_other_parameters_are_refused() {
        let text = Entry {
            id: "d".into(),
            set: "s".into(),
            kind: Kind::Document,
            text: "one two three four five six".into(),
            aliases: vec![],
            term_type: None,
            fingerprints: None,
        };
        let cfg = GuardConfig { embedder: None, ..Default::default() };
        let fp = Deriver::new(&cfg, None).derive_all(&[&text], None, |_| false, true).unwrap().remove(0);
        let sealed = Entry { text: String::new(), fingerprints: Some(fp), ..text };
        let mut other = cfg.clone();
        other.ngram.n = 5;
        let err = Deriver::new(&other, None).derive_all(&[&sealed], None, |_| false, true).unwrap_err();
        assert!(format!("{err}").contains("\"d\""), "{err}");
        assert!(Deriver::new(&cfg, None).derive_all(&[&sealed], None, |_| false, true).is_ok());
    }

    #[test]
    fn text_entries_use_fitting_stored_fingerprints_and_derive_again_from_the_text_otherwise() {
        let text = Entry::document("s", "d", "one two three four five six");
        let cfg = GuardConfig { embedder: None, ..Default::default() };
        let attached = Deriver::new(&cfg, None).attach(&text, None).unwrap();
        assert_eq!(attached.text, text.text, "the text is kept");
        attached.validate().unwrap();
        // Marked, to tell stored fingerprints from derived ones.
        let mut marked = (**attached.fingerprints.as_ref().unwrap()).clone();
        marked.ngrams = vec![42];
        let stored = Entry { fingerprints: Some(Arc::new(marked)), ..attached };
        let used = Deriver::new(&cfg, None).derive_all(&[&stored], None, |_| false, true).unwrap();
        assert_eq!(used[0].ngrams, [42], "fitting fingerprints are loaded, not derived");

        let mut other = cfg.clone();
        other.ngram.n = 5;
        let deriver = Deriver::new(&other, None);
        let again = deriver.derive_all(&[&stored], None, |_| false, true).unwrap().remove(0);
        let fresh = deriver.derive_all(&[&text], None, |_| false, true).unwrap().remove(0);
        assert_eq!(again, fresh, "another n-gram length: derived from the text, not refused");
        assert_eq!(again.ngrams.len(), 6 - 5 + 1);
    }
}
