//! The one normalization every comparison uses (forget lists, outputs, prompts, `Check`): a
//! comparison key that the usual disguises of a text do not change.
//!
//! - Markup is masked first (`markup.rs`): tags, entities, link targets, list numbers.
//! - Each letter or digit is folded: Unicode NFKC (full-width, mathematical, circled forms),
//!   case, small capitals, the UTS #39 confusable skeleton (Cyrillic/Greek look-alikes; the
//!   skeleton also folds `0` to `o` and `1` to `l`), accents dropped. Punctuation and symbols
//!   are never folded into letters: they separate words (`|` in a table border is not an `l`).
//! - Character tricks are undone: a symbol inside a word stands for the letter it looks like
//!   (`h@ve`, `$ell`, `th!s`, `he||o`); in a word that mixes letters and digits the digits do
//!   too (`p3rm1ss10n`; a number alone stays a number: prices, dates, versions); letters spaced
//!   out or dotted (`F o u r  s c o r e`, `F.o.u.r`) are joined; camelCase and PascalCase are
//!   split; a word hyphenated at a line break is joined; and `i`/`l` (which `1`, `!` and `|`
//!   stand for alike) are one letter of the key.
//! - Zero-width and format characters vanish without splitting a word.
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
    let masked = super::markup::mask(text);
    let source = masked.as_deref().unwrap_or(text);
    let tokens = tokens(source);
    let mut out = Words { words: Vec::with_capacity(tokens.len()), spans: Vec::with_capacity(tokens.len()) };
    for group in join_groups(source, &tokens) {
        let first = &tokens[group.start];
        let last = &tokens[group.end - 1];
        let mut word = String::with_capacity(first.word.len() * group.len());
        for t in &tokens[group.clone()] {
            word.push_str(&t.word);
        }
        let leet_digits = tokens[group.clone()].iter().any(|t| t.leet_digits);
        out.words.push(finish_word(word, leet_digits));
        out.spans.push(first.span.start..last.span.end);
    }
    out
}

/// Normalized text: the words joined by single spaces.
pub fn normalize(text: &str) -> String {
    words(text).words.join(" ")
}

/// Where the words of `text` can still change when more text is appended (a streamed
/// generation): the start of the last word when nothing after it ends it for sure (it may go
/// on, be a run of spaced-out letters, or be hyphenated at a line break), or of a markup
/// construct still open at the end. Words that end at or before this offset are final.
pub fn unsettled_from(text: &str) -> usize {
    let masked = super::markup::mask(text);
    let source = masked.as_deref().unwrap_or(text);
    let tokens = tokens(source);
    let mut from = text.len();
    if let Some(last) = tokens.last() {
        let after = &source[last.span.end..];
        let ends_for_sure = !after.is_empty()
            && !after.chars().all(|c| LEET_SYMBOLS.contains(&c) || is_invisible(c))
            && !hyphen_pending(after)
            && !last.single_letter;
        if !ends_for_sure {
            let gap = |i: usize| &source[tokens[i - 1].span.end..tokens[i].span.start];
            let mut i = tokens.len() - 1;
            while i > 0 && tokens[i].single_letter && tokens[i - 1].single_letter && thin(gap(i)) {
                i -= 1;
            }
            from = tokens[i].span.start;
        }
    }
    match super::markup::open_construct(text) {
        Some(open) => from.min(open),
        None => from,
    }
}

/// A hyphen, and only white space after it: the next word may join the last one.
fn hyphen_pending(after: &str) -> bool {
    let rest = after.trim_start_matches([' ', '\t']);
    rest.starts_with('-') && rest[1..].trim().is_empty()
}

/// A token before joining: its folded text and span, and whether it is one letter.
struct Token {
    word: String,
    span: Range<usize>,
    single_letter: bool,
    /// Its digits stand for letters: it has letters too, and no run of three digits (an id).
    leet_digits: bool,
}

/// What the characters of the token being cut were, before folding.
#[derive(Default)]
struct Seen {
    letters: usize,
    digits: usize,
    digit_run: usize,
    longest_digit_run: usize,
}

/// Symbols that stand for a letter inside a word (never at its edge).
const LEET_SYMBOLS: [char; 5] = ['@', '$', '!', '|', '+'];

fn leet_symbol(c: char) -> Option<char> {
    Some(match c {
        '@' => 'a',
        '$' => 's',
        '!' | '|' => 'i',
        '+' => 't',
        _ => return None,
    })
}

/// Separators that may join spaced-out letters (`F.o.u.r`, `F-o-u-r`).
fn is_join_mark(c: char) -> bool {
    matches!(c, '.' | '-' | '_' | '·' | '*')
}

/// Cuts `text` into folded tokens: runs of letters and digits (and symbols standing for
/// letters inside them), split at camelCase humps.
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut start, mut end) = (0, 0);
    let mut prev_lower = false;
    let mut seen = Seen::default();
    let mut folded = String::new();
    let split_humps = !random_case(text);
    let push = |current: &mut String, start: usize, end: usize, seen: &mut Seen, out: &mut Vec<Token>| {
        if !current.is_empty() {
            let single_letter = seen.letters == 1 && current.chars().count() == 1;
            let leet_digits = seen.letters > 0 && seen.digits > 0 && seen.longest_digit_run < 3;
            out.push(Token { word: std::mem::take(current), span: start..end, single_letter, leet_digits });
        }
        *seen = Seen::default();
    };
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if is_invisible(c) {
            continue;
        }
        if c.is_alphanumeric() {
            if c.is_uppercase()
                && prev_lower
                && split_humps
                && chars.peek().is_some_and(|(_, n)| n.is_lowercase())
            {
                push(&mut current, start, end, &mut seen, &mut out);
            }
            fold_char(c, &mut folded);
            if folded.is_empty() {
                continue;
            }
            if current.is_empty() {
                start = at;
            }
            current.push_str(&folded);
            if c.is_ascii_digit() {
                seen.digits += 1;
                seen.digit_run += 1;
                seen.longest_digit_run = seen.longest_digit_run.max(seen.digit_run);
            } else {
                seen.letters += 1;
                seen.digit_run = 0;
            }
            end = at + c.len_utf8();
            prev_lower = c.is_lowercase();
            continue;
        }
        let next_letter = chars.peek().is_some_and(|(_, n)| n.is_alphanumeric());
        let stands_for_letter = match c {
            // `@nd`, `$ell`, `h@ve`, `year$`; `@home` and `$5` are not words.
            '@' => next_letter,
            '$' => next_letter && chars.peek().is_some_and(|(_, n)| n.is_alphabetic()) || !current.is_empty(),
            _ => !current.is_empty() && next_letter,
        };
        match leet_symbol(c).filter(|_| stands_for_letter) {
            Some(letter) => {
                if current.is_empty() {
                    start = at;
                }
                current.push(letter);
                seen.letters += 1;
                seen.digit_run = 0;
                end = at + c.len_utf8();
                prev_lower = false;
            }
            None => {
                push(&mut current, start, end, &mut seen, &mut out);
                prev_lower = false;
            }
        }
    }
    push(&mut current, start, end, &mut seen, &mut out);
    out
}

/// Whether `text` is written in random case (`fOuR sCoRe`): then an upper-case letter inside a
/// word is no camelCase hump. Its mark, which camelCase does not make: a lower-case letter
/// followed by two upper-case ones, or by one that ends the word.
fn random_case(text: &str) -> bool {
    let mut marked = 0;
    for w in text.split(|c: char| !c.is_alphabetic()) {
        let chars: Vec<char> = w.chars().collect();
        let irregular = (1..chars.len()).any(|i| {
            chars[i].is_uppercase()
                && chars[i - 1].is_lowercase()
                && chars.get(i + 1).is_none_or(|c| c.is_uppercase())
        });
        marked += irregular as usize;
        if marked >= 2 {
            return true;
        }
    }
    false
}

/// Groups of consecutive tokens that form one word: letters spaced out by one repeated
/// separator (`F o u r  s c o r e`: single spaces join, the double space separates), and a
/// word hyphenated at a line break.
fn join_groups(text: &str, tokens: &[Token]) -> Vec<Range<usize>> {
    let gap = |i: usize| &text[tokens[i - 1].span.end..tokens[i].span.start];
    let mut groups: Vec<Range<usize>> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        // A run of at least three single letters with thin gaps.
        let mut j = i + 1;
        while j < tokens.len() && tokens[j - 1].single_letter && tokens[j].single_letter && thin(gap(j)) {
            j += 1;
        }
        if j - i >= 3 {
            // The joiner is the run's most frequent gap; any other gap ends a word.
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for k in i + 1..j {
                match counts.iter_mut().find(|(g, _)| *g == gap(k)) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((gap(k), 1)),
                }
            }
            let joiner = counts.iter().max_by_key(|(_, n)| *n).map(|(g, _)| *g).unwrap_or(" ");
            let mut from = i;
            for k in i + 1..j {
                if gap(k) != joiner {
                    groups.push(from..k);
                    from = k;
                }
            }
            groups.push(from..j);
            i = j;
            continue;
        }
        // A word hyphenated at a line break: `gran-\nted`.
        if i + 1 < tokens.len() && hyphenated_break(gap(i + 1)) {
            groups.push(i..i + 2);
            i += 2;
            continue;
        }
        groups.push(i..i + 1);
        i += 1;
    }
    groups
}

/// A gap that may separate spaced-out letters (or, wider, the words they spell): up to four
/// spaces or join marks, no line break.
fn thin(gap: &str) -> bool {
    let n = gap.chars().count();
    (1..=4).contains(&n) && gap.chars().all(|c| c == ' ' || is_join_mark(c))
}

fn hyphenated_break(gap: &str) -> bool {
    let rest = gap.trim_start_matches([' ', '\t']);
    rest.starts_with('-') && {
        let after = rest[1..].trim_start_matches([' ', '\t']);
        (after.starts_with('\n') || after.starts_with("\r\n")) && after.trim().is_empty()
    }
}

/// The last steps of a word's key: in a word whose digits stand for letters (`p3rm1ss10n`),
/// they become those letters; and `l` is `i`.
fn finish_word(word: String, leet_digits: bool) -> String {
    if !word.contains('l') && !leet_digits {
        return word;
    }
    word.chars()
        .map(|c| match c {
            'l' => 'i',
            '0' if leet_digits => 'o',
            '1' if leet_digits => 'i',
            '3' if leet_digits => 'e',
            '4' if leet_digits => 'a',
            '5' if leet_digits => 's',
            '7' if leet_digits => 't',
            '8' if leet_digits => 'b',
            '9' if leet_digits => 'g',
            c => c,
        })
        .collect()
}

/// The folded form of one letter or digit (empty for characters that carry no text).
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
    let c = small_capital(c).unwrap_or(c);
    for k in std::iter::once(c).nfkc() {
        // A digit stays a digit (the skeleton would make `0` an `o` and `1` an `l`): numbers
        // stay numbers; in a word whose digits stand for letters, `finish_word` folds them.
        if k.is_ascii_digit() {
            out.push(k);
            continue;
        }
        for l in k.to_lowercase() {
            for s in unicode_security::skeleton(&l.to_string()) {
                // The skeleton is decomposed: dropping combining marks folds accents away.
                if !is_invisible(s) && !unicode_normalization::char::is_combining_mark(s) {
                    out.extend(s.to_lowercase().filter(|c| c.is_alphanumeric()));
                }
            }
        }
    }
}

/// Small capitals (NFKC leaves them alone) as the letters they are.
fn small_capital(c: char) -> Option<char> {
    Some(match c {
        'ᴀ' => 'a',
        'ʙ' => 'b',
        'ᴄ' => 'c',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ꜰ' => 'f',
        'ɢ' => 'g',
        'ʜ' => 'h',
        'ɪ' => 'i',
        'ᴊ' => 'j',
        'ᴋ' => 'k',
        'ʟ' => 'l',
        'ᴍ' => 'm',
        'ɴ' => 'n',
        'ᴏ' => 'o',
        'ᴘ' => 'p',
        'ǫ' => 'q',
        'ʀ' => 'r',
        'ꜱ' => 's',
        'ᴛ' => 't',
        'ᴜ' => 'u',
        'ᴠ' => 'v',
        'ᴡ' => 'w',
        'ʏ' => 'y',
        'ᴢ' => 'z',
        _ => return None,
    })
}

/// Zero-width, joiner, bidi and other format characters (general category Cf), the soft
/// hyphen, variation selectors, and NUL (markup hidden by `markup::mask`): invisible, so they
/// must not break or change a word.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\0' | '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
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
    fn each_disguise_gives_the_words_of_the_original() {
        let original = normalize("Four score and seven years ago our fathers brought forth");
        for variant in [
            // Leetspeak: digits and symbols for letters.
            "F0ur sc0r3 @nd s3v3n y3@r$ @g0 0ur f@th3r$ br0ught f0rth",
            "f0ur 5c0r3 4nd 53v3n y34r5 4g0 0ur f47h3r5 br0u9h7 f0r7h",
            // Letters spaced out, dotted, dashed.
            "F o u r  s c o r e  a n d  s e v e n  y e a r s  a g o  o u r  f a t h e r s  b r o u g h t  f o r t h",
            "F.o.u.r s.c.o.r.e a.n.d s.e.v.e.n y.e.a.r.s a.g.o o.u.r f.a.t.h.e.r.s b.r.o.u.g.h.t f.o.r.t.h",
            // camelCase, PascalCase, words joined by - _ . /
            "fourScoreAndSeven YearsAgoOurFathers broughtForth",
            "four-score-and-seven years_ago_our fathers.brought/forth",
            // Hyphenation at line breaks.
            "Four score and se-\nven years ago our fa-\r\nthers brought forth",
            // Mathematical bold, circled, small capitals.
            "𝐅𝐨𝐮𝐫 𝐬𝐜𝐨𝐫𝐞 and seven years ago our fathers brought forth",
            "Ⓕⓞⓤⓡ ⓢⓒⓞⓡⓔ and seven years ago our fathers brought forth",
            "ꜰᴏᴜʀ ꜱᴄᴏʀᴇ ᴀɴᴅ ꜱᴇᴠᴇɴ years ago our fathers brought forth",
            // Markup: a table, HTML, emphasis, a link.
            "| Four score | and seven |\n|---|---|\n| years ago | our fathers |\n| brought | forth |",
            "<p>Four <b>sco</b>re&nbsp;and <i>seven</i> years</p> ago <em>our</em> fathers brought&#32;forth",
            "**Four score** and _seven years_ ago [our fathers](https://example.com/x) brought `forth`",
        ] {
            assert_eq!(normalize(variant), original, "{variant:?}");
        }
    }

    #[test]
    fn punctuation_and_symbols_never_become_letters() {
        // A table border is not a word; `¦`, `!`, `$`, `@` at a word's edge separate words.
        assert_eq!(normalize("| a | b |"), "a b");
        assert_eq!(normalize("||| ¦¦ !! $$ @@"), "");
        assert_eq!(normalize("wow! $5 for you"), "wow 5 for you");
        // Numbers alone stay numbers; `0` and `O` meet in the key inside words.
        assert_eq!(
            normalize("version 2.0.13 costs $19.99 on 2014-03-14"),
            "version 2 0 13 costs 19 99 on 2014 03 14"
        );
        assert_eq!(normalize("BOOK"), normalize("B00K"));
        assert_eq!(normalize("h3ll0"), normalize("hello"));
    }

    #[test]
    fn ordinary_text_keeps_its_words() {
        assert_eq!(normalize("I am a teacher, and a b test."), "i arn a teacher and a b test");
        assert_eq!(normalize("iPhone 15 and COVID-19"), "i phone 15 and covid 19");
    }

    #[test]
    fn spans_point_at_the_original_words() {
        let text = "Hé said: «ＨＥＬＬＯ»,  wo\u{200B}rld!";
        let w = words(text);
        let originals: Vec<&str> = w.spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(originals, ["Hé", "said", "ＨＥＬＬＯ", "wo\u{200B}rld"]);
        assert_eq!(w.words[2], "heiio");
        let text = "<b>F o u r</b> | sco-\nre | fourScore";
        let w = words(text);
        let originals: Vec<&str> = w.spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(originals, ["F o u r", "sco-\nre", "four", "Score"]);
    }

    #[test]
    fn empty_and_punctuation_only_text_has_no_words() {
        assert!(words("").is_empty());
        assert!(words(" ,.;-- \n\u{200B}").is_empty());
    }

    #[test]
    fn words_that_may_still_change_are_unsettled() {
        fn settled(text: &str) -> &str {
            &text[..unsettled_from(text)]
        }
        assert_eq!(settled("four score and"), "four score ");
        assert_eq!(settled("four score and "), "four score and ");
        assert_eq!(settled("four score a"), "four score ");
        assert_eq!(settled("four F o u"), "four ");
        assert_eq!(settled("four h@"), "four ");
        assert_eq!(settled("four se-\n"), "four ");
        assert_eq!(settled("four <span cla"), "four ");
    }
}
