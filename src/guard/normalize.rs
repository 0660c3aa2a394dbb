//! The one normalization every comparison uses (forget lists, outputs, prompts, `Check`):
//! Unicode NFKC (full-width and compatibility forms), case folding, removal of zero-width and
//! format characters, the UTS #39 confusable skeleton (Cyrillic/Greek look-alikes), and
//! accents folded away, and punctuation and whitespace collapsed into word boundaries.
//!
//! The result is a list of words, each with the byte span of the original text it came from,
//! so a match can be reported (and held back) in terms of the text the client would see.
use std::ops::Range;
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Words {
    pub words: Vec<String>,
    /// Byte span of each word in the original text.
    pub spans: Vec<Range<usize>>,
}

impl Words {
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// Normalized words of `text`.
pub fn words(text: &str) -> Words {
    let mut out = Words::default();
    let mut current = String::new();
    let mut start = 0;
    let mut folded = String::new();
    for (at, c) in text.char_indices() {
        fold_char(c, &mut folded);
        if folded.is_empty() {
            // Zero-width and format characters vanish without splitting a word.
            continue;
        }
        for f in folded.chars() {
            if f.is_alphanumeric() {
                if current.is_empty() {
                    start = at;
                }
                current.push(f);
            } else if !current.is_empty() {
                out.words.push(std::mem::take(&mut current));
                out.spans.push(start..at);
            }
        }
    }
    if !current.is_empty() {
        out.words.push(current);
        out.spans.push(start..text.len());
    }
    out
}

/// Normalized text: the words joined by single spaces.
pub fn normalize(text: &str) -> String {
    words(text).words.join(" ")
}

/// The folded form of one character (empty for characters that carry no text).
fn fold_char(c: char, out: &mut String) {
    out.clear();
    if c.is_ascii() {
        out.push_str(&ASCII[c as usize]);
        return;
    }
    fold_slow(c, out);
}

/// ASCII is most of the text: its folds are computed once.
static ASCII: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0u8..128)
        .map(|b| {
            let mut s = String::new();
            fold_slow(b as char, &mut s);
            s
        })
        .collect()
});

fn fold_slow(c: char, out: &mut String) {
    if is_invisible(c) {
        return;
    }
    for k in std::iter::once(c).nfkc() {
        for l in k.to_lowercase() {
            for s in unicode_security::skeleton(&l.to_string()) {
                // The skeleton is decomposed: dropping combining marks folds accents away.
                if !is_invisible(s) && !unicode_normalization::char::is_combining_mark(s) {
                    out.extend(s.to_lowercase());
                }
            }
        }
    }
}

/// Zero-width, joiner, bidi and other format characters (general category Cf), plus the
/// soft hyphen and variation selectors: invisible, so they must not break or change a word.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E0FFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_example_gives_the_same_words() {
        assert_eq!(normalize("Permission  IS hereby-granted"), normalize("permission is hereby granted"));
        // The confusable skeleton is a comparison key, not display text: "m" folds to "rn".
        assert_eq!(normalize("Permission  IS hereby-granted"), "perrnission is hereby granted");
    }

    #[test]
    fn every_perturbation_family_maps_to_the_original() {
        let original = normalize("Four score and seven years ago our fathers brought forth");
        for variant in [
            "FOUR SCORE AND SEVEN YEARS AGO OUR FATHERS BROUGHT FORTH",
            "fOuR sCoRe AnD sEvEn YeArS aGo OuR fAtHeRs BrOuGhT fOrTh",
            "Four\n\nscore\tand   seven years, ago -- our fathers; brought forth!",
            "Four score and seven years ago our fathers brought forth.",
            // Cyrillic о, е, а and Greek ο look-alikes.
            "F\u{043E}ur sc\u{043E}r\u{0435} \u{0430}nd seven ye\u{0430}rs \u{0430}go \u{03BF}ur fathers brought forth",
            // Accents added to letters.
            "Fóur scöre and sèven years ago our fathers brought forth",
            // Zero-width space, joiner and soft hyphen inside words.
            "Fo\u{200B}ur sco\u{200D}re and se\u{00AD}ven years ago our fa\u{FEFF}thers brought forth",
            // Full-width forms.
            "Ｆｏｕｒ ｓｃｏｒｅ and seven years ago our fathers brought forth",
        ] {
            assert_eq!(normalize(variant), original, "{variant:?}");
        }
    }

    #[test]
    fn spans_point_at_the_original_words() {
        let text = "Hé said: «ＨＥＬＬＯ»,  wo\u{200B}rld!";
        let w = words(text);
        let originals: Vec<&str> = w.spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(originals, ["Hé", "said", "ＨＥＬＬＯ", "wo\u{200B}rld"]);
        assert_eq!(w.words[2], "hello");
    }

    #[test]
    fn empty_and_punctuation_only_text_has_no_words() {
        assert!(words("").is_empty());
        assert!(words(" ,.;-- \n\u{200B}").is_empty());
    }
}
