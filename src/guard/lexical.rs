//! Lexical evidence: which normalized words are distinctive. A word is distinctive when it is not
//! among the commonest words of English, French, German, Italian or Spanish (the list in
//! `common_words.txt`, from wordfreq; it comes from a general corpus, not from any evaluation
//! set), and words are compared by a crude stem, so "restored"/"restoring" and, across
//! languages, "liberty"/"liberté" agree. Paraphrases, summaries and translations keep these
//! words (names, places, content words) where near-misses on the same topic do not.
use super::ngram::word_hash;
use super::normalize;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Letters a stem keeps: enough to tell words apart, few enough that inflections and many
/// cognates agree.
const STEM_CHARS: usize = 6;
/// Shorter words are never distinctive (the list cannot hold every short word of five languages).
const MIN_CHARS: usize = 4;

/// The stem of a normalized word: lower-case letters (normalization made them so) without a
/// common English or Romance inflection, cut to [`STEM_CHARS`].
pub fn stem(word: &str) -> &str {
    let mut w = word;
    for suffix in ["ings", "ing", "edly", "ed", "es", "s", "e"] {
        if let Some(rest) = w.strip_suffix(suffix) {
            if rest.len() >= MIN_CHARS - 1 {
                w = rest;
                break;
            }
        }
    }
    match w.char_indices().nth(STEM_CHARS) {
        Some((at, _)) => &w[..at],
        None => w,
    }
}

/// The hash of a normalized word's stem.
pub fn stem_hash(word: &str) -> u64 {
    word_hash(stem(word))
}

/// Stems of the common words, normalized as outputs are.
fn common() -> &'static HashSet<u64> {
    static COMMON: OnceLock<HashSet<u64>> = OnceLock::new();
    COMMON.get_or_init(|| {
        include_str!("common_words.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| normalize::words(l).words)
            .map(|w| stem_hash(&w))
            .collect()
    })
}

/// Whether a normalized word is distinctive: a word of letters, long enough, whose stem is not
/// a common word's.
pub fn is_distinctive(word: &str) -> bool {
    word.chars().count() >= MIN_CHARS
        && word.chars().all(char::is_alphabetic)
        && !common().contains(&stem_hash(word))
}

/// Distinct stem hashes of the distinctive words among `words`.
pub fn distinctive_stems<S: AsRef<str>>(words: &[S]) -> Vec<u64> {
    let mut seen = HashSet::new();
    words
        .iter()
        .map(AsRef::as_ref)
        .filter(|w| is_distinctive(w))
        .map(stem_hash)
        .filter(|h| seen.insert(*h))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinctive(text: &str) -> Vec<String> {
        normalize::words(text).words.into_iter().filter(|w| is_distinctive(w)).collect()
    }

    #[test]
    fn common_words_of_five_languages_are_not_distinctive() {
        assert!(distinctive("The people of this nation have always been there").is_empty());
        assert!(distinctive("Nous avons toujours été ici avec les autres").is_empty());
        assert!(distinctive("Wir haben immer hier mit den anderen").is_empty());
        assert_eq!(distinctive("She restored the coral near Ormsby"), ["restored", "corai", "orrnsby"]);
    }

    #[test]
    fn inflections_and_cognates_share_a_stem() {
        let s = |w: &str| stem(&normalize::normalize(w)).to_string();
        assert_eq!(s("restored"), s("restoring"));
        assert_eq!(s("liberty"), s("liberté"));
        assert_eq!(s("proposition"), s("propositions"));
    }
}
