//! Encoded copies: runs that look like base64, hex or URL-encoding are decoded, and text that
//! reads as ROT13, backwards or upside down is turned back, so the decoded text can be checked
//! like any other; a match then points at the encoded span. The tests are cheap (character
//! classes, length, the share of common English words) and the work is bounded: runs of at most
//! `MAX_RUN` bytes, `MAX_DECODED` bytes of output per text, two levels of nesting.
use base64::Engine as _;
use std::ops::Range;

/// A decoded view of part of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The encoded span, in bytes of the checked text.
    pub span: Range<usize>,
    pub text: String,
    /// How a byte range of `text` maps back into `span`.
    pub map: SpanMap,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpanMap {
    /// Byte for byte (ROT13 keeps every byte where it was).
    Same,
    /// Mirrored (the text read backwards).
    Mirrored,
    /// Any match points at the whole span (base64, hex, URL-encoding, upside-down).
    Whole,
}

impl Decoded {
    /// The span of `text` that a byte range of the decoded text came from.
    pub fn original(&self, r: Range<usize>) -> Range<usize> {
        match self.map {
            SpanMap::Same => self.span.start + r.start..self.span.start + r.end,
            SpanMap::Mirrored => self.span.end - r.end..self.span.end - r.start,
            SpanMap::Whole => self.span.clone(),
        }
    }
}

/// Shortest run that may be base64 or hex.
const MIN_RUN: usize = 16;
/// Longest run decoded.
const MAX_RUN: usize = 64 << 10;
/// Decoded bytes per text, at most.
const MAX_DECODED: usize = 256 << 10;
/// Levels of encoding undone (base64 of hex, ...).
const MAX_DEPTH: usize = 2;
/// Words a text needs before its English is judged.
const MIN_WORDS: usize = 6;

/// Every decoded view of `text` (none for ordinary text).
pub fn decoded(text: &str) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut budget = MAX_DECODED;
    decode_into(text, 0, 0, &mut budget, &mut out);
    out
}

fn decode_into(text: &str, offset: usize, depth: usize, budget: &mut usize, out: &mut Vec<Decoded>) {
    if depth >= MAX_DEPTH || *budget == 0 {
        return;
    }
    let whole = offset..offset + text.len();
    let mut found = Vec::new();
    for run in runs(text) {
        let s = &text[run.clone()];
        if let Some(plain) = decode_run(s) {
            found.push(Decoded {
                span: offset + run.start..offset + run.end,
                text: plain,
                map: SpanMap::Whole,
            });
        }
    }
    // English has a third or more of its words among the most common ones; text that has few,
    // but many once turned back, was turned.
    let share = english_share(text);
    if share < 0.2 && word_count(text) >= MIN_WORDS {
        let rot = rot13(text);
        if english_share(&rot) >= share + 0.15 {
            found.push(Decoded { span: whole.clone(), text: rot, map: SpanMap::Same });
        }
        let back: String = text.chars().rev().collect();
        if english_share(&back) >= share + 0.15 {
            found.push(Decoded { span: whole.clone(), text: back, map: SpanMap::Mirrored });
        }
    }
    let turned = |c: &char| !c.is_ascii() && UPSIDE_DOWN.iter().any(|(u, _)| u == c);
    if text.chars().filter(turned).count() >= 3 {
        found.push(Decoded { span: whole, text: upside_down(text), map: SpanMap::Whole });
    }
    for d in found {
        if d.text.len() > *budget {
            return;
        }
        *budget -= d.text.len();
        // What was encoded may be encoded again; inner spans point at the outer span.
        let mut inner = Vec::new();
        decode_into(&d.text, 0, depth + 1, budget, &mut inner);
        for i in inner {
            out.push(Decoded { span: d.span.clone(), text: i.text, map: SpanMap::Whole });
        }
        out.push(d);
    }
}

/// Runs of non-space characters (without surrounding quotes and brackets) that may be encoded.
fn runs(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    text.split(char::is_whitespace).filter_map(move |piece| {
        // Where the piece starts in `text` (white space can be several bytes: U+00A0, U+3000).
        let start = piece.as_ptr() as usize - text.as_ptr() as usize;
        let trimmed = piece.trim_matches(|c: char| "\"'`()[]{}<>,;:".contains(c));
        let lead = piece.find(trimmed).unwrap_or(0);
        let len = trimmed.len();
        (len >= MIN_RUN.min(6) && len <= MAX_RUN).then_some(start + lead..start + lead + len)
    })
}

/// The text a run decodes to, if it is base64, hex or URL-encoded text.
fn decode_run(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.iter().filter(|&&c| c == b'%').count() >= 2 && s.contains('%') {
        return percent_decode(s).filter(|t| readable(t));
    }
    if b.len() < MIN_RUN {
        return None;
    }
    if b.iter().all(u8::is_ascii_hexdigit) {
        // An odd length is a run still arriving: its even prefix decodes.
        let b = &b[..b.len() & !1];
        let bytes: Option<Vec<u8>> = (0..b.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(std::str::from_utf8(&b[i..i + 2]).ok()?, 16).ok())
            .collect();
        return String::from_utf8(bytes?).ok().filter(|t| readable(t));
    }
    let base64_chars = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_' | b'=');
    if b.iter().all(base64_chars) && b.iter().any(u8::is_ascii_digit) | b.iter().any(u8::is_ascii_uppercase) {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        // A run still arriving decodes up to its last whole group of four.
        let unpadded = s.trim_end_matches('=');
        let whole = if s.contains('=') { unpadded } else { &unpadded[..unpadded.len() & !3] };
        let bytes = STANDARD_NO_PAD.decode(whole).or_else(|_| URL_SAFE_NO_PAD.decode(whole)).ok()?;
        let bytes = match String::from_utf8(bytes) {
            Ok(text) => return Some(text).filter(|t| readable(t)),
            // The last group may end inside a character.
            Err(e) => e.into_bytes(),
        };
        let valid = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), str::len);
        let bytes = bytes[..valid].to_vec();
        return String::from_utf8(bytes).ok().filter(|t| readable(t));
    }
    None
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 3 <= b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Decoded bytes that read as text (mostly letters and spaces, nothing unprintable), or that
/// are encoded again (hex or base64 of a text).
fn readable(t: &str) -> bool {
    let n = t.chars().count();
    let encoded_again = n >= MIN_RUN
        && t.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'%'));
    if encoded_again {
        return true;
    }
    n >= 4
        && !t.chars().any(|c| c.is_control() && !c.is_whitespace())
        && t.chars().filter(|c| c.is_alphabetic() || *c == ' ').count() * 10 >= n * 7
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Share of the words that are among the most common English words.
fn english_share(text: &str) -> f64 {
    let common_words = common_words();
    let mut words = 0;
    let mut common = 0;
    for w in text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()) {
        words += 1;
        common += packed(w).is_some_and(|p| common_words.binary_search(&p).is_ok()) as usize;
    }
    if words == 0 {
        0.0
    } else {
        common as f64 / words as f64
    }
}

/// An ASCII word of at most 8 letters, lowercased and packed into an integer; longer words
/// are never common. (The stream guard asks for the share every few words: comparing
/// integers, without a lowercased copy per word, made it about a third of the stream's cost
/// cheaper.)
fn packed(word: &str) -> Option<u64> {
    let bytes = word.as_bytes();
    if bytes.len() > 8 {
        return None;
    }
    let mut b = [0u8; 8];
    for (slot, c) in b.iter_mut().zip(bytes) {
        *slot = c.to_ascii_lowercase();
    }
    Some(u64::from_le_bytes(b))
}

/// `COMMON`, packed and sorted.
fn common_words() -> &'static [u64] {
    static WORDS: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        let mut words: Vec<u64> = COMMON.iter().map(|w| packed(w).expect("common words are short")).collect();
        words.sort_unstable();
        words
    })
}

/// Each ASCII letter 13 places on (its own inverse).
pub fn rot13(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='m' | 'A'..='M' => (c as u8 + 13) as char,
            'n'..='z' | 'N'..='Z' => (c as u8 - 13) as char,
            c => c,
        })
        .collect()
}

/// Upside-down text is read backwards, each letter turned: `ɥʇɹoɟ` is `forth`.
fn upside_down(text: &str) -> String {
    text.chars().rev().map(|c| UPSIDE_DOWN.iter().find(|(u, _)| *u == c).map_or(c, |(_, l)| *l)).collect()
}

/// Turned letters and the letters they stand for (letters that read the same both ways, such
/// as o, s, x, z, are left as they are; `q`/`b`, `d`/`p`, `n`/`u` swap).
const UPSIDE_DOWN: [(char, char); 22] = [
    ('ɐ', 'a'),
    ('q', 'b'),
    ('ɔ', 'c'),
    ('p', 'd'),
    ('ǝ', 'e'),
    ('ɟ', 'f'),
    ('ƃ', 'g'),
    ('ɥ', 'h'),
    ('ᴉ', 'i'),
    ('ı', 'i'),
    ('ɾ', 'j'),
    ('ʞ', 'k'),
    ('ɯ', 'm'),
    ('u', 'n'),
    ('d', 'p'),
    ('b', 'q'),
    ('ɹ', 'r'),
    ('ʇ', 't'),
    ('n', 'u'),
    ('ʌ', 'v'),
    ('ʍ', 'w'),
    ('ʎ', 'y'),
];

/// The most common English words, sorted (for `binary_search`).
const COMMON: [&str; 100] = [
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "because", "been",
    "before", "being", "but", "by", "can", "could", "did", "do", "each", "even", "every", "first", "for",
    "from", "had", "has", "have", "he", "her", "him", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "just", "like", "made", "many", "may", "me", "more", "most", "much", "must", "my", "no", "not",
    "now", "of", "on", "one", "only", "or", "other", "our", "out", "over", "said", "she", "should", "so",
    "some", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this",
    "those", "to", "two", "up", "upon", "us", "was", "we", "were", "what", "when", "which", "who", "will",
    "with", "would", "you", "your",
];

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str =
        "Four score and seven years ago our fathers brought forth on this continent a new nation";

    #[test]
    fn the_share_of_common_words_ignores_case_and_never_counts_long_words() {
        assert_eq!(english_share("The AND of Because extraordinarily"), 0.8);
        assert_eq!(english_share("abouts ABOUT"), 0.5);
        assert_eq!(english_share("12 34"), 0.0);
    }

    #[test]
    fn base64_hex_and_url_encoded_runs_decode_and_point_at_the_run() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PLAIN);
        let hex: String = PLAIN.bytes().map(|b| format!("{b:02x}")).collect();
        let url = PLAIN.replace(' ', "%20");
        for encoded in [b64, hex, url] {
            let text = format!("Here it is: {encoded} -- enjoy");
            let d = decoded(&text);
            let hit = d.iter().find(|d| d.text == PLAIN).unwrap_or_else(|| panic!("{encoded}: {d:?}"));
            assert_eq!(&text[hit.span.clone()], encoded);
        }
    }

    #[test]
    fn nested_encodings_decode_two_levels() {
        let hex: String = PLAIN.bytes().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&hex);
        assert!(decoded(&b64).iter().any(|d| d.text == PLAIN));
    }

    #[test]
    fn rot13_backwards_and_upside_down_text_is_turned_back() {
        let rot = rot13(PLAIN);
        let d = decoded(&rot);
        assert!(d.iter().any(|d| d.text == PLAIN && d.map == SpanMap::Same), "{d:?}");
        let back: String = PLAIN.chars().rev().collect();
        let d = decoded(&back);
        let hit = d.iter().find(|d| d.text == PLAIN).expect("read backwards");
        assert_eq!(hit.original(0..4), back.len() - 4..back.len());
        let turn = |c: char| UPSIDE_DOWN.iter().find(|(_, l)| *l == c).map_or(c, |(u, _)| *u);
        let turned: String = PLAIN.to_lowercase().chars().rev().map(turn).collect();
        assert!(decoded(&turned).iter().any(|d| d.text == PLAIN.to_lowercase()), "{turned}");
        // A base64 run still streaming decodes up to where it has arrived.
        let b64 = base64::engine::general_purpose::STANDARD.encode(PLAIN);
        let partial = &b64[..b64.len() * 2 / 3 + 1];
        assert!(decoded(partial).iter().any(|d| PLAIN.starts_with(&d.text) && d.text.len() > 20));
    }

    #[test]
    fn ordinary_text_code_and_numbers_decode_to_nothing() {
        for text in [
            PLAIN,
            "The deploy id is 3f2a9c1b and the build 2024-03-14T10:22:31Z finished in 14.2 s",
            "fn main() { println!(\"{}\", compute_the_answer_quickly(42)); }",
            "Call +1 555 013 4477 or visit https://example.com/a/b?x=1&y=2 today",
            "SHA-256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ] {
            assert!(decoded(text).is_empty(), "{text}: {:?}", decoded(text));
        }
    }
}
