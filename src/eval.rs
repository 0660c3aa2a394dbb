//! `lethe eval`: measures the guard on an evaluation set. Positive cases are generated from the
//! forget list (verbatim excerpts and their perturbations, written paraphrases, term mentions);
//! negative cases are benign near-misses (similar licenses, speeches, poems, biographies, other
//! people's names) that are not in the list. Prints recall per category, the false-positive
//! rate, and the semantic layer's precision/recall at a sweep of thresholds.
use crate::forget::{Entry, Kind};
use crate::guard::{CheckParams, Guard, GuardConfig, Layer};
use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

pub struct Case {
    pub category: &'static str,
    /// The entry a positive case must be attributed to; None for a benign text.
    pub expect: Option<String>,
    pub text: String,
    /// The question the text answers, if it is an answer.
    pub prompt: Option<String>,
}

#[derive(Deserialize)]
struct Paraphrase {
    entry: String,
    text: String,
}

#[derive(Deserialize)]
struct Benign {
    #[allow(dead_code)]
    id: String,
    text: String,
    #[serde(default)]
    prompt: String,
}

/// A short answer about a forgotten document; `named`: the prompt names its subject.
#[derive(Deserialize)]
struct FactAnswer {
    entry: String,
    prompt: String,
    named: bool,
    text: String,
}

#[derive(Deserialize)]
struct Translation {
    entry: String,
    #[allow(dead_code)]
    lang: String,
    text: String,
}

const EXCERPT_WORDS: usize = 24;
const FILLER: &[&str] =
    &["very", "truly", "also", "then", "indeed", "quite", "still", "just", "again", "often"];
const UNRELATED_BEFORE: &str =
    "I was reading some old papers last night and found this passage, which I copy here:";
const UNRELATED_AFTER: &str =
    "Anyway, the weather is getting colder and I should probably fix the heating before winter.";

/// Builds every case from the forget list and the folder's paraphrases.jsonl and benign.jsonl.
pub fn cases(entries: &[Entry], dir: &Path, seed: u64) -> Result<Vec<Case>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut push = |category, expect: &str, text: String| {
        out.push(Case { category, expect: Some(expect.to_string()), text, prompt: None })
    };
    for e in entries {
        match e.kind {
            Kind::Document => {
                let words: Vec<&str> = e.text.split_whitespace().collect();
                for excerpt in excerpts(&words, EXCERPT_WORDS) {
                    let text = excerpt.join(" ");
                    push("verbatim", &e.id, text.clone());
                    push("case", &e.id, text.to_uppercase());
                    push("case", &e.id, random_case(&text, &mut rng));
                    push("spacing+punct", &e.id, respace(&excerpt, &mut rng));
                    push("unicode", &e.id, confusables(&text, &mut rng));
                    push("edit-10%", &e.id, edit(&excerpt, 0.10, &mut rng));
                    push("edit-20%", &e.id, edit(&excerpt, 0.20, &mut rng));
                    push("embedded", &e.id, format!("{UNRELATED_BEFORE} {text} {UNRELATED_AFTER}"));
                }
                for excerpt in excerpts(&words, 12) {
                    push("verbatim-12-words", &e.id, excerpt.join(" "));
                }
                for excerpt in excerpts(&words, EXCERPT_WORDS) {
                    for (category, text) in disguises(&excerpt, &mut rng) {
                        push(category, &e.id, text);
                    }
                }
            }
            Kind::Term => {
                push("term", &e.id, format!("Yesterday I spoke with {} about the plan.", e.text));
                push("term-case", &e.id, format!("PLEASE FORWARD THIS TO {}.", e.text.to_uppercase()));
                push("term-case", &e.id, format!("ask {} later", e.text.to_lowercase()));
                for a in &e.aliases {
                    push("term-alias", &e.id, format!("The file mentions {a} twice."));
                }
                let ty = e.term_type.or_else(|| crate::guard::variants::detect(&e.text));
                for (category, form) in personal_data_forms(&e.text, ty) {
                    push(category, &e.id, format!("For the record: {form}, as noted."));
                }
            }
        }
    }
    for p in read_jsonl::<Paraphrase>(&dir.join("paraphrases.jsonl"))? {
        push("paraphrase", &p.entry, p.text);
    }
    // Meaning-level leaks: optional files (an evaluation set may have none).
    let optional = |name: &str| dir.join(name).exists().then(|| dir.join(name));
    if let Some(path) = optional("summaries.jsonl") {
        for p in read_jsonl::<Paraphrase>(&path)? {
            push("summary", &p.entry, p.text);
        }
    }
    if let Some(path) = optional("translations.jsonl") {
        for t in read_jsonl::<Translation>(&path)? {
            push("translation", &t.entry, t.text);
        }
    }
    if let Some(path) = optional("facts.jsonl") {
        for f in read_jsonl::<FactAnswer>(&path)? {
            let category = if f.named { "facts-named" } else { "facts" };
            out.push(Case { category, expect: Some(f.entry), text: f.text, prompt: Some(f.prompt) });
        }
    }
    if let Some(path) = optional("benign_meaning.jsonl") {
        for b in read_jsonl::<Benign>(&path)? {
            let prompt = (!b.prompt.is_empty()).then_some(b.prompt);
            out.push(Case { category: "benign", expect: None, text: b.text, prompt });
        }
    }
    for b in read_jsonl::<Benign>(&dir.join("benign.jsonl"))? {
        let words: Vec<&str> = b.text.split_whitespace().collect();
        let pieces = if words.len() <= EXCERPT_WORDS {
            vec![words.join(" ")]
        } else {
            (0..=words.len() - EXCERPT_WORDS)
                .step_by(EXCERPT_WORDS / 2)
                .map(|s| words[s..s + EXCERPT_WORDS].join(" "))
                .collect()
        };
        for text in pieces {
            out.push(Case { category: "benign", expect: None, text, prompt: None });
        }
    }
    Ok(out)
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

/// Three excerpts of `len` words: the start, the middle and the end of a document.
fn excerpts<'a>(words: &[&'a str], len: usize) -> Vec<Vec<&'a str>> {
    if words.len() <= len {
        return vec![words.to_vec()];
    }
    let last = words.len() - len;
    let mut starts = vec![0, last / 2, last];
    starts.dedup();
    starts.into_iter().map(|s| words[s..s + len].to_vec()).collect()
}

/// Filler words a copy may be padded with (other than the edits' fillers).
const PADDING: &[&str] = &["um", "like", "uh", "basically", "right", "okay", "er", "literally"];

/// The disguise families of an excerpt: markup, character tricks, inserted words, encodings.
fn disguises(words: &[&str], rng: &mut StdRng) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    let text = words.join(" ");
    let mut out = Vec::new();
    // Markup: a Markdown table of the words, four to a row, and HTML.
    let rows: Vec<String> = words
        .chunks(4)
        .map(|c| format!("| {} | {} |", c[..c.len() / 2].join(" "), c[c.len() / 2..].join(" ")))
        .collect();
    out.push(("markdown-table", format!("| col | col |\n|---|---|\n{}", rows.join("\n"))));
    let html: Vec<String> = words
        .iter()
        .map(|w| match rng.random_range(0..4) {
            0 => format!("<b>{w}</b>"),
            1 => format!("<span class=\"x\">{w}</span>"),
            _ => w.to_string(),
        })
        .collect();
    out.push(("html", format!("<p>{}</p>", html.join("&nbsp;"))));
    out.push((
        "markdown-emphasis",
        words
            .iter()
            .map(|w| if rng.random_bool(0.3) { format!("**{w}**") } else { format!("_{w}_") })
            .collect::<Vec<_>>()
            .join(" "),
    ));
    // Character tricks.
    let leet: String = text
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            'a' if rng.random_bool(0.6) => {
                if rng.random_bool(0.5) {
                    '4'
                } else {
                    '@'
                }
            }
            'e' if rng.random_bool(0.6) => '3',
            'i' if rng.random_bool(0.6) => {
                if rng.random_bool(0.5) {
                    '1'
                } else {
                    '!'
                }
            }
            'o' if rng.random_bool(0.6) => '0',
            's' if rng.random_bool(0.6) => {
                if rng.random_bool(0.5) {
                    '5'
                } else {
                    '$'
                }
            }
            't' if rng.random_bool(0.6) => '7',
            _ => c,
        })
        .collect();
    out.push(("leetspeak", leet));
    let spaced = |sep: &str, between: &str| {
        words
            .iter()
            .map(|w| {
                w.chars().filter(|c| c.is_alphanumeric()).map(String::from).collect::<Vec<_>>().join(sep)
            })
            .collect::<Vec<_>>()
            .join(between)
    };
    out.push(("spaced-letters", spaced(" ", "   ")));
    out.push(("spaced-letters", spaced(".", " ")));
    let camel: Vec<String> = words
        .chunks(3)
        .map(|c| {
            c.iter()
                .enumerate()
                .map(|(i, w)| {
                    let w: String =
                        w.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
                    if i == 0 {
                        w
                    } else {
                        w[..1].to_uppercase() + &w[1..]
                    }
                })
                .collect::<String>()
        })
        .collect();
    out.push(("camelcase", camel.join(" ")));
    let joined: Vec<String> =
        words.chunks(3).map(|c| c.join(["-", "_", ".", "/"][rng.random_range(0..4)])).collect();
    out.push(("joined-words", joined.join(" ")));
    let hyphenated: Vec<String> = words
        .iter()
        .map(|w| {
            if w.len() >= 6 && rng.random_bool(0.5) {
                format!("{}-\n{}", &w[..3], &w[3..])
            } else {
                w.to_string()
            }
        })
        .collect();
    out.push(("hyphenated", hyphenated.join(" ")));
    let forms: Vec<String> = words.iter().map(|w| letter_form(w, rng.random_range(0..4))).collect();
    out.push(("letterforms", forms.join(" ")));
    // Inserted words: a filler every two or three words.
    let mut padded = Vec::new();
    let mut next = rng.random_range(2..=3);
    for (i, w) in words.iter().enumerate() {
        padded.push(w.to_string());
        if i + 1 == next {
            padded.push(format!("{},", PADDING[rng.random_range(0..PADDING.len())]));
            next += rng.random_range(2..=3);
        }
    }
    out.push(("fillers", padded.join(" ")));
    // Encodings.
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    out.push(("base64", format!("Decode this: {}", base64::engine::general_purpose::STANDARD.encode(&text))));
    out.push(("hex", format!("Decode this: {hex}")));
    out.push(("url-encoded", format!("Link: https://example.com/q?text={}", url_encode(&text))));
    out.push(("rot13", crate::guard::encodings::rot13(&text)));
    out.push(("reversed", text.chars().rev().collect()));
    out
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A word in mathematical bold (0), circled (1), full-width (2) or small-capital (3) letters.
fn letter_form(word: &str, form: usize) -> String {
    const SMALL: &str = "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘǫʀꜱᴛᴜᴠᴡxʏᴢ";
    word.chars()
        .map(|c| {
            let l = c.to_ascii_lowercase();
            if !l.is_ascii_lowercase() {
                return c;
            }
            let i = l as u32 - 'a' as u32;
            match form {
                0 => char::from_u32(0x1D41A + i),
                1 => char::from_u32(0x24D0 + i),
                2 => char::from_u32(0xFF41 + i),
                _ => SMALL.chars().nth(i as usize),
            }
            .unwrap_or(c)
        })
        .collect()
}

/// Other ways of writing a term of a type: names reordered or with initials, e-mail addresses
/// spelled out, phone numbers and ids with other separators.
fn personal_data_forms(text: &str, ty: Option<crate::forget::TermType>) -> Vec<(&'static str, String)> {
    use crate::forget::TermType;
    let words: Vec<&str> = text.split_whitespace().collect();
    match ty {
        Some(TermType::Person) if words.len() >= 2 => {
            let (first, last) = (words[0], words[words.len() - 1]);
            let initial = &first[..first.chars().next().map_or(0, char::len_utf8)];
            let mut out = vec![
                ("pii-person", format!("{last}, {first}")),
                ("pii-person", format!("{initial}. {last}")),
            ];
            if let Some((a, b)) = last.split_once('-') {
                out.push(("pii-person", format!("{first} {a} {b}")));
                out.push(("pii-person", format!("{initial}. {b}")));
            }
            if words.len() > 2 {
                out.push(("pii-person", format!("{first} {last}")));
            }
            out
        }
        Some(TermType::Email) => match text.split_once('@') {
            Some((local, domain)) => vec![
                ("pii-email", format!("{} at {}", local.replace('.', " dot "), domain.replace('.', " dot "))),
                ("pii-email", format!("{local} [at] {}", domain.replace('.', " (dot) "))),
                ("pii-email", text.to_uppercase()),
            ],
            None => Vec::new(),
        },
        Some(TermType::Phone) => {
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            let national = if text.trim_start().starts_with('+') && digits.len() > 10 {
                &digits[digits.len() - 10..]
            } else {
                &digits[..]
            };
            let dotted: Vec<String> =
                national.as_bytes().chunks(3).map(|c| String::from_utf8_lossy(c).to_string()).collect();
            vec![
                ("pii-phone", digits.clone()),
                ("pii-phone", national.to_string()),
                ("pii-phone", dotted.join(".")),
                ("pii-phone", format!("+{digits}")),
            ]
        }
        Some(TermType::Id) => {
            let bare: String = text.chars().filter(|c| c.is_alphanumeric()).collect();
            vec![
                ("pii-id", bare.clone()),
                ("pii-id", bare.to_lowercase()),
                ("pii-id", text.replace('-', " ")),
            ]
        }
        _ => Vec::new(),
    }
}

fn random_case(text: &str, rng: &mut StdRng) -> String {
    text.chars()
        .map(|c| if rng.random_bool(0.5) { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect()
}

fn respace(words: &[&str], rng: &mut StdRng) -> String {
    let mut out = String::new();
    for w in words {
        let w: String = w.chars().filter(|c| c.is_alphanumeric() || rng.random_bool(0.5)).collect();
        out.push_str(&w);
        out.push_str(["  ", "\n", " \t ", " - ", "; ", ", ", "\n\n"][rng.random_range(0..7)]);
    }
    out
}

/// Look-alike letters from other scripts, zero-width characters and full-width forms.
fn confusables(text: &str, rng: &mut StdRng) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let swapped = match c {
            'a' => Some('\u{0430}'),
            'e' => Some('\u{0435}'),
            'o' => Some(if rng.random_bool(0.5) { '\u{043E}' } else { '\u{03BF}' }),
            'p' => Some('\u{0440}'),
            'c' => Some('\u{0441}'),
            'x' => Some('\u{0445}'),
            'i' => Some('\u{0456}'),
            _ => None,
        };
        match swapped {
            Some(s) if rng.random_bool(0.5) => out.push(s),
            _ if c.is_ascii_alphabetic() && rng.random_bool(0.1) => {
                out.push(char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c))
            }
            _ => out.push(c),
        }
        if c.is_alphabetic() && rng.random_bool(0.08) {
            out.push(['\u{200B}', '\u{200D}', '\u{00AD}', '\u{FEFF}'][rng.random_range(0..4)]);
        }
    }
    out
}

/// Changes `share` of the words: each edit replaces, drops or inserts a word.
fn edit(words: &[&str], share: f64, rng: &mut StdRng) -> String {
    let mut out: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let edits = ((words.len() as f64 * share).round() as usize).max(1);
    for _ in 0..edits {
        let at = rng.random_range(0..out.len());
        let filler = FILLER[rng.random_range(0..FILLER.len())].to_string();
        match rng.random_range(0..3) {
            0 => out[at] = filler,
            1 if out.len() > 1 => {
                out.remove(at);
            }
            _ => out.insert(at, filler),
        }
    }
    out.join(" ")
}

#[derive(Default)]
struct Tally {
    cases: usize,
    caught: usize,
    by_layer: BTreeMap<&'static str, usize>,
}

/// Runs every case through `Guard::check`; returns the printed report.
pub fn run(entries: &[Entry], dir: &Path, cfg: &GuardConfig, guard: &Guard, verbose: bool) -> Result<String> {
    let cases = cases(entries, dir, 7)?;
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut semantic_scores: Vec<(bool, f32)> = Vec::new();
    let mut sweep_guard_cfg = cfg.clone();
    sweep_guard_cfg.semantic.threshold = -1.0;
    for s in sweep_guard_cfg.sets.values_mut() {
        s.semantic_threshold = None;
    }
    let sweep_guard =
        guard.has_semantic().then(|| guard.rebuild_with(entries, &sweep_guard_cfg)).transpose()?;
    for case in &cases {
        let scope = case.prompt.as_deref().map(|p| guard.scope(p));
        let findings =
            guard.check(&case.text, CheckParams { scope: scope.as_ref(), ..Default::default() })?;
        let t = tallies.entry(case.category).or_default();
        t.cases += 1;
        let relevant: Vec<_> = findings
            .iter()
            .filter(|f| case.expect.as_ref().is_none_or(|id| guard.entry_id(f.entry) == id))
            .collect();
        if verbose && (relevant.is_empty() == case.expect.is_some()) {
            let what: Vec<String> = findings
                .iter()
                .map(|f| format!("{}:{}:{:.3}", guard.entry_id(f.entry), f.layer.as_str(), f.score))
                .collect();
            eprintln!(
                "{} {:?} [{}] {:?} (prompt {:?})",
                case.category,
                case.expect,
                what.join(" "),
                case.text,
                case.prompt
            );
        }
        if !relevant.is_empty() {
            t.caught += 1;
            for f in relevant {
                *t.by_layer.entry(f.layer.as_str()).or_default() += 1;
            }
        }
        if let Some(sg) = &sweep_guard {
            if case.category == "paraphrase" || case.category == "benign" {
                let best = sg
                    .check(&case.text, CheckParams::default())?
                    .iter()
                    .filter(|f| f.layer == Layer::Semantic)
                    .filter(|f| case.expect.as_ref().is_none_or(|id| sg.entry_id(f.entry) == id))
                    .map(|f| f.score)
                    .fold(-1.0f32, f32::max);
                semantic_scores.push((case.expect.is_some(), best));
            }
        }
    }

    let mut report = String::new();
    if guard.has_semantic() {
        report.push_str(&format!("Commons filter: {} windows of boilerplate.\n\n", guard.commons_windows()));
    }
    report.push_str("| category | cases | caught | recall | caught by layer |\n|---|---|---|---|---|\n");
    for (category, t) in tallies.iter().filter(|(c, _)| **c != "benign") {
        let layers: Vec<String> = t.by_layer.iter().map(|(l, n)| format!("{l} {n}")).collect();
        report.push_str(&format!(
            "| {category} | {} | {} | {:.1}% | {} |\n",
            t.cases,
            t.caught,
            100.0 * t.caught as f64 / t.cases as f64,
            layers.join(", ")
        ));
    }
    if let Some(b) = tallies.get("benign") {
        let layers: Vec<String> = b.by_layer.iter().map(|(l, n)| format!("{l} {n}")).collect();
        report.push_str(&format!(
            "\n| benign texts | false positives | false-positive rate | by layer |\n|---|---|---|---|\n| {} | {} | {:.1}% | {} |\n",
            b.cases,
            b.caught,
            100.0 * b.caught as f64 / b.cases as f64,
            layers.join(", ")
        ));
    }
    if !semantic_scores.is_empty() {
        report.push_str("\nSemantic layer alone (paraphrases vs benign texts), by threshold:\n\n| threshold | paraphrase recall | benign false positives | precision |\n|---|---|---|---|\n");
        let positives = semantic_scores.iter().filter(|(p, _)| *p).count();
        let negatives = semantic_scores.len() - positives;
        for step in 0..=10 {
            let th = 0.50 + 0.04 * step as f32;
            let tp = semantic_scores.iter().filter(|(p, s)| *p && *s >= th).count();
            let fp = semantic_scores.iter().filter(|(p, s)| !*p && *s >= th).count();
            let precision = if tp + fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
            report.push_str(&format!(
                "| {th:.2} | {tp}/{positives} ({:.0}%) | {fp}/{negatives} | {:.2} |\n",
                100.0 * tp as f64 / positives as f64,
                precision
            ));
        }
    }
    Ok(report)
}
