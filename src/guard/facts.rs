//! The fact layer: short answers about a forgotten document ("she was born in 1987 in Port
//! Alder") share few words with it and little meaning with any of its windows, but they carry
//! its distinctive facts — numbers and dates, names, rare words — and those survive rewording
//! and translation. Each document yields its facts at build time (hashes only); an output window
//! holding enough facts of one entry matches.
//!
//! Two rules decide "enough" ([`FactRule`]):
//! - unscoped: at least `min_facts` facts within `window_words` words, `min_strong` of them
//!   numbers or names (rare words alone are topic, not facts);
//! - scoped — the prompt or the output names the entry (two name words of it in a row, as in a
//!   full name): `scoped_min_facts` facts, or one number. Names the prompt itself holds are not
//!   counted (naming the subject of a question is no leak), but its numbers and words are: an
//!   answer that repeats a fact the prompt offers confirms it, and a prompt may carry documents
//!   (retrieved, pasted) that the reader of the answer never saw.
use super::lexical;
use super::ngram::word_hash;
use super::normalize::Words;
use crate::forget::Facts;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactKind {
    Word,
    Name,
    Number,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FactRule {
    /// Words a match's facts must fall within.
    pub window_words: usize,
    /// Facts of one entry an unscoped window needs...
    pub min_facts: usize,
    /// ...of which numbers or names.
    pub min_strong: usize,
    /// Facts a window needs when the entry is in scope (one number is always enough then).
    pub scoped_min_facts: usize,
}

impl Default for FactRule {
    fn default() -> Self {
        Self { window_words: 32, min_facts: 3, min_strong: 2, scoped_min_facts: 2 }
    }
}

impl FactRule {
    pub fn validate(&self, key: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.window_words >= 1 && self.min_facts >= 1 && self.scoped_min_facts >= 1,
            "{key}: window_words, min_facts and scoped_min_facts must be at least 1"
        );
        Ok(())
    }
}

/// One fact of a text: the word it ends at, its hash, and how it was written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextFact {
    pub word: usize,
    pub hash: u64,
    pub kind: FactKind,
}

/// Words after a word that decide whether it is a fact (a spelled number may go on, a month
/// needs a number next to it).
pub const LOOKAHEAD_WORDS: usize = 2;

/// The fact word `i` ends, if any. Needs the [`LOOKAHEAD_WORDS`] words after it, unless the
/// text ends before.
pub fn fact_at(text: &str, words: &[String], spans: &[Range<usize>], i: usize) -> Option<TextFact> {
    let word = words[i].as_str();
    let fact = |hash, kind| Some(TextFact { word: i, hash, kind });
    if word.bytes().all(|b| b.is_ascii_digit()) {
        let digits = word.trim_start_matches('0');
        return match digits.parse::<u64>() {
            Ok(v) if v < 13 => None,
            _ if digits.is_empty() => None,
            _ => fact(number_hash(digits), FactKind::Number),
        };
    }
    if spelled(word).is_some() {
        if words.get(i + 1).is_some_and(|next| spelled(next).is_some()) {
            return None;
        }
        let run = words[..=i].iter().rev().take_while(|p| spelled(p).is_some()).count();
        let (mut total, mut current) = (0u64, 0u64);
        for v in words[i + 1 - run..=i].iter().filter_map(|p| spelled(p)) {
            match v {
                100 => current = current.max(1) * 100,
                1000 => (total, current) = (total + current.max(1) * 1000, 0),
                _ => current += v,
            }
        }
        let value = total + current;
        return if value >= 13 { fact(number_hash(&value.to_string()), FactKind::Number) } else { None };
    }
    if let Some(m) = month(word) {
        let near = i.saturating_sub(2)..(i + 3).min(words.len());
        let dated = near.into_iter().any(|j| j != i && words[j].bytes().all(|b| b.is_ascii_digit()));
        return if dated { fact(word_hash(&format!("month {m}")), FactKind::Number) } else { None };
    }
    if !lexical::is_distinctive(word) {
        return None;
    }
    // Title case: an upper-case word is emphasis (a license's disclaimer), not a name.
    let mut letters = text[spans[i].clone()].chars().filter(|c| c.is_alphabetic());
    let capitalized = letters.next().is_some_and(char::is_uppercase) && letters.any(char::is_lowercase);
    // A capital at a sentence's start says nothing (measured: counting those as names doubled
    // the benign matches of eval/).
    let start = spans[i].start;
    let sentence_start = text[..start].trim_end().chars().next_back().is_none_or(|c| ".!?:;\"\n".contains(c));
    let kind = if capitalized && !sentence_start { FactKind::Name } else { FactKind::Word };
    fact(lexical::stem_hash(word), kind)
}

/// Every fact of a whole text.
pub fn text_facts(text: &str, w: &Words) -> Vec<TextFact> {
    (0..w.len()).filter_map(|i| fact_at(text, &w.words, &w.spans, i)).collect()
}

/// The facts a document entry keeps. A stem written capitalized anywhere is a name.
pub fn document_facts(text: &str, w: &Words) -> Facts {
    let facts = text_facts(text, w);
    let names: HashSet<u64> = facts.iter().filter(|f| f.kind == FactKind::Name).map(|f| f.hash).collect();
    let mut seen = HashSet::new();
    let mut out = Facts::default();
    for f in facts.iter().filter(|f| seen.insert(f.hash)) {
        match f.kind {
            FactKind::Number => out.numbers.push(f.hash),
            _ if names.contains(&f.hash) => out.names.push(f.hash),
            _ => out.words.push(f.hash),
        }
    }
    out
}

fn number_hash(digits: &str) -> u64 {
    word_hash(&format!("number {digits}"))
}

/// The value of an English number word (normalized: `l` reads `i`).
fn spelled(word: &str) -> Option<u64> {
    static WORDS: OnceLock<HashMap<String, u64>> = OnceLock::new();
    let words = WORDS.get_or_init(|| {
        let units = "zero one two three four five six seven eight nine ten eleven twelve thirteen \
                     fourteen fifteen sixteen seventeen eighteen nineteen";
        let tens = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
        let mut m: HashMap<String, u64> =
            units.split_whitespace().enumerate().map(|(v, w)| (fold(w), v as u64)).collect();
        m.extend(tens.iter().enumerate().map(|(i, w)| (fold(w), 20 + 10 * i as u64)));
        m.insert(fold("hundred"), 100);
        m.insert(fold("thousand"), 1000);
        m
    });
    words.get(word).copied()
}

/// The month (1-12) a normalized word names in English, French, German, Italian or Spanish.
fn month(word: &str) -> Option<u32> {
    static MONTHS: OnceLock<HashMap<String, u32>> = OnceLock::new();
    let months = MONTHS.get_or_init(|| {
        [
            "january janvier januar gennaio enero jan",
            "february fevrier februar febbraio febrero feb",
            "march mars marz marzo mar",
            "april avril aprile abril apr",
            "may mai maggio mayo",
            "june juin juni giugno junio jun",
            "july juillet juli luglio julio jul",
            "august aout agosto aug",
            "september septembre settembre septiembre setiembre sep sept",
            "october octobre oktober ottobre octubre oct",
            "november novembre noviembre nov",
            "december decembre dezember dicembre diciembre dec",
        ]
        .iter()
        .enumerate()
        .flat_map(|(m, names)| names.split_whitespace().map(move |n| (fold(n), m as u32 + 1)))
        .collect()
    });
    months.get(word).copied()
}

fn fold(word: &str) -> String {
    super::normalize::normalize(word)
}

/// Facts of every document entry: which entries hold a fact, and as what.
#[derive(Clone, Default)]
pub struct FactIndex {
    by_fact: HashMap<u64, Vec<(u32, FactKind)>>,
}

/// What a prompt puts in scope: the entries it names, and the names it already holds.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub entries: HashSet<u32>,
    pub given: HashSet<u64>,
}

/// A window of an output holding enough facts of one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FactMatch {
    pub entry: u32,
    pub facts: usize,
    /// Words from the first to the last of its facts.
    pub words: Range<usize>,
}

impl FactIndex {
    /// This index plus the facts of `entries`.
    pub fn with<'a>(&self, entries: impl IntoIterator<Item = (u32, &'a Facts)>) -> Self {
        let mut by_fact = self.by_fact.clone();
        for (entry, f) in entries {
            let kinds =
                [(&f.words, FactKind::Word), (&f.names, FactKind::Name), (&f.numbers, FactKind::Number)];
            for (hashes, kind) in kinds {
                for &h in hashes {
                    by_fact.entry(h).or_default().push((entry, kind));
                }
            }
        }
        Self { by_fact }
    }

    pub fn is_empty(&self) -> bool {
        self.by_fact.is_empty()
    }

    /// Distinct facts indexed.
    pub fn len(&self) -> usize {
        self.by_fact.len()
    }

    fn entries_of(&self, hash: u64) -> &[(u32, FactKind)] {
        self.by_fact.get(&hash).map_or(&[], Vec::as_slice)
    }

    /// Whether `entry` holds the word or name stem `hash`.
    pub fn holds(&self, hash: u64, entry: u32) -> bool {
        self.entries_of(hash).iter().any(|&(e, k)| e == entry && k != FactKind::Number)
    }

    /// Whether some entry holds at least `min(entry)` of the distinct `stems`, or a scoped
    /// entry one.
    pub fn gate(&self, stems: &[u64], min: impl Fn(u32) -> usize, scoped: &HashSet<u32>) -> bool {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for &s in stems {
            for &(e, kind) in self.entries_of(s) {
                if kind == FactKind::Number {
                    continue;
                }
                let n = counts.entry(e).or_default();
                *n += 1;
                if *n >= min(e) || scoped.contains(&e) {
                    return true;
                }
            }
        }
        false
    }

    /// Entries named by `facts`: two of an entry's name stems on consecutive words.
    pub fn named(&self, facts: &[TextFact]) -> HashSet<u32> {
        let mut out = HashSet::new();
        for pair in facts.windows(2).filter(|p| p[1].word == p[0].word + 1) {
            for &(e, k) in self.entries_of(pair[1].hash) {
                if k == FactKind::Name && pair[0].hash != pair[1].hash && self.is_name_of(pair[0].hash, e) {
                    out.insert(e);
                }
            }
        }
        out
    }

    fn is_name_of(&self, hash: u64, entry: u32) -> bool {
        self.entries_of(hash).iter().any(|&(e, k)| e == entry && k == FactKind::Name)
    }

    /// What `prompt` puts in scope.
    pub fn scope(&self, prompt: &str) -> Scope {
        let w = super::normalize::words(prompt);
        let facts = text_facts(prompt, &w);
        let given = facts.iter().filter(|f| f.kind == FactKind::Name).map(|f| f.hash).collect();
        Scope { entries: self.named(&facts), given }
    }

    /// Matches among the windows ending at the facts `ends` (indices into `facts`, which are in
    /// word order). `scoped`: entries in scope; `given`: names the prompt holds; `rule`: an
    /// entry's rule, `None` when its set has the layer off.
    pub fn matches(
        &self,
        facts: &[TextFact],
        ends: Range<usize>,
        scoped: &HashSet<u32>,
        given: &HashSet<u64>,
        rule: impl Fn(u32) -> Option<FactRule>,
    ) -> Vec<FactMatch> {
        let mut out = Vec::new();
        for j in ends {
            let last = facts[j];
            if given.contains(&last.hash) {
                continue;
            }
            for &(entry, _) in self.entries_of(last.hash) {
                let Some(r) = rule(entry) else { continue };
                let from = (last.word + 1).saturating_sub(r.window_words);
                let mut seen: HashSet<u64> = HashSet::new();
                let (mut words, mut names, mut numbers) = (0, 0, 0);
                let mut first = last.word;
                let mut next_word = usize::MAX;
                for f in facts[..=j].iter().rev().take_while(|f| f.word >= from) {
                    let kind = self.entries_of(f.hash).iter().find(|(e, _)| *e == entry).map(|&(_, k)| k);
                    let Some(kind) = kind else { continue };
                    // A name right before another name of the entry is one name ("Jonas Friedrichsen").
                    let joins_next = kind == FactKind::Name && next_word == f.word + 1;
                    next_word = if kind == FactKind::Name { f.word } else { usize::MAX };
                    if given.contains(&f.hash) || !seen.insert(f.hash) {
                        continue;
                    }
                    first = f.word;
                    match kind {
                        FactKind::Number => numbers += 1,
                        FactKind::Name if joins_next => {}
                        FactKind::Name => names += 1,
                        FactKind::Word => words += 1,
                    }
                }
                let strong = names + numbers;
                let total = strong + words;
                let hit = if scoped.contains(&entry) {
                    total >= r.scoped_min_facts || numbers >= 1
                } else {
                    total >= r.min_facts && strong >= r.min_strong
                };
                if hit {
                    out.push(FactMatch { entry, facts: total, words: first..last.word + 1 });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::normalize;

    const BIO: &str = "Dr Marisol Venkataraman-Oduya was born on 14 March 1987 in Port Alder, a fishing \
                       town. She studied marine biology and founded the Alder Reef Trust in 2014; she \
                       lives with the cellist Jonas Friedrichsen.";

    fn facts(text: &str) -> Vec<TextFact> {
        text_facts(text, &normalize::words(text))
    }

    fn index() -> FactIndex {
        FactIndex::default().with([(0, &document_facts(BIO, &normalize::words(BIO)))])
    }

    fn matches(text: &str, scope: &Scope) -> Vec<FactMatch> {
        let f = facts(text);
        let mut scoped = scope.entries.clone();
        scoped.extend(index().named(&f));
        index().matches(&f, 0..f.len(), &scoped, &scope.given, |_| Some(FactRule::default()))
    }

    #[test]
    fn the_pre_gate_passes_a_window_sharing_enough_distinctive_words_with_one_entry() {
        let stems = |t: &str| lexical::distinctive_stems(&normalize::words(t).words);
        let none = HashSet::new();
        let on_topic = stems("Friedrichsen plays with the cellist");
        assert!(index().gate(&on_topic, |_| 1, &none));
        assert!(index().gate(&on_topic, |_| 2, &none));
        assert!(!index().gate(&on_topic, |_| 3, &none));
        let off_topic = stems("Water tomatoes at the roots and stake them early");
        assert!(!index().gate(&off_topic, |_| 1, &none));
        // An entry in scope needs one shared word, whatever its set's minimum.
        let one = stems("a cellist");
        assert!(!index().gate(&one, |_| 2, &none));
        assert!(index().gate(&one, |_| 2, &HashSet::from([0])));
    }

    #[test]
    fn numbers_dates_and_names_are_facts_in_any_spelling() {
        let kinds = |t: &str| facts(t).iter().map(|f| f.kind).collect::<Vec<_>>();
        use FactKind::*;
        assert_eq!(kinds("born 14 March 1987"), [Number, Number, Number]);
        assert_eq!(facts("born 14 March 1987")[1].hash, facts("el 14 de marzo")[1].hash);
        assert_eq!(facts("aged fifty-two")[0].hash, facts("aged 52")[0].hash);
        assert_eq!(facts("two hundred and five")[0].hash, facts("200")[0].hash);
        assert!(facts("three dogs march on, or 12 of them").is_empty());
        assert_eq!(kinds("she met Jonas Friedrichsen"), [Name, Name]);
        assert_eq!(kinds("the FRIEDRICHSEN"), [Word]);
    }

    #[test]
    fn an_answer_with_her_facts_matches_without_her_name() {
        assert!(
            !matches("She was born in 1987 and set up a reef trust in 2014.", &Scope::default()).is_empty()
        );
        assert!(matches("He was born in 1990 in Seabrook and studied marine biology.", &Scope::default())
            .is_empty());
    }

    #[test]
    fn in_scope_one_number_or_two_facts_are_enough_and_the_prompts_names_are_not_counted() {
        let scope = index().scope("When was Marisol Venkataraman-Oduya born?");
        assert_eq!(scope.entries, HashSet::from([0]));
        assert!(!matches("She was born in 1987.", &scope).is_empty());
        assert!(matches("I have no information about Marisol Venkataraman-Oduya.", &scope).is_empty());
        // A fact the prompt offers counts when the answer repeats it: that confirms it.
        let offered = index().scope("Was Marisol Venkataraman-Oduya born in 1987 in Port Alder?");
        assert!(!matches("Yes, she was born in 1987.", &offered).is_empty());
        assert!(
            matches("I cannot say where Marisol Venkataraman-Oduya or Port Alder are.", &offered).is_empty()
        );
        assert!(matches("I do not know Marisol Venkataraman-Oduya.", &Scope::default()).is_empty());
        assert!(!matches("Marisol Venkataraman-Oduya lives with Jonas Friedrichsen.", &Scope::default())
            .is_empty());
        assert!(index().scope("Tell me about Marisol Vega").entries.is_empty());
    }
}
