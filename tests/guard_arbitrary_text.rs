//! Arbitrary text, as a model sampling random tokens or an adversary produces it, never panics
//! the guard, and every span it reports is a character range of the text it was given. A
//! seeded generator mixes the forget entries' words with markup, encodings' alphabets,
//! confusables, combining marks, wide and right-to-left letters, so the disguise views
//! (markup, folding, spaced letters, encodings, term variants) all see hostile input.
use lethe::forget::{Entry, Kind, SetPolicy, TermType};
use lethe::guard::stream::{Release, StreamGuard};
use lethe::guard::{CheckParams, Guard, GuardConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const DOC: &str =
    "the keeper of the northern lighthouse painted its heavy door a new shade of blue every single spring";

const PIECES: &[&str] = &[
    " ",
    " ",
    " ",
    "\n",
    "\t",
    "\u{a0}",
    "\u{3000}",
    "\u{2028}",
    "\u{85}",
    "|",
    "¦",
    "-",
    "_",
    ".",
    "/",
    "*",
    "**",
    "#",
    "`",
    "```",
    "<b>",
    "</b>",
    "<",
    ">",
    "&",
    "&amp;",
    "&#",
    "&#x",
    ";",
    "&nbsp;",
    "[",
    "](",
    ")",
    "%",
    "%2",
    "%20",
    "=",
    "==",
    "+",
    "0",
    "1",
    "3",
    "4",
    "5",
    "7",
    "@",
    "$",
    "!",
    "é",
    "e\u{301}",
    "\u{300}",
    "\u{200b}",
    "\u{fe0f}",
    "ß",
    "İ",
    "ı",
    "ﬁ",
    "Ⅻ",
    "ᴛʜᴇ",
    "ǝɥʇ",
    "ｋｅｅｐｅｒ",
    "𝐝𝐨𝐨𝐫",
    "Ⓐ",
    "שלום",
    "مرحبا",
    "日本語",
    "😀",
    "👩\u{200d}💻",
    "\u{feff}",
    "\u{0}",
    "\r\n",
    "k e e p e r",
    "n.o.r.t.h.e.r.n",
    "KeeperOfThe",
    "dGhl",
    "a2VlcGVy",
    "6b6565706572",
    "uvtu",
    "repeek",
    "M. Okafor-Lind",
    "Okafor-Lind, Maria",
    "maria",
    "at",
    "dot",
    "[at]",
    "(dot)",
    "+44",
    "(0)",
    "20 7946 0958",
    "AB-12-34",
    "ab1234",
];

fn random_text(rng: &mut StdRng) -> String {
    let words: Vec<&str> = DOC.split(' ').collect();
    let mut text = String::new();
    for _ in 0..rng.random_range(0..120) {
        match rng.random_range(0..4) {
            0 => text.push_str(words[rng.random_range(0..words.len())]),
            1 => text.push(char::from_u32(rng.random_range(0..0x3_0000)).unwrap_or('\u{fffd}')),
            _ => text.push_str(PIECES[rng.random_range(0..PIECES.len())]),
        }
        if rng.random_bool(0.5) {
            text.push(' ');
        }
    }
    text
}

fn term(id: &str, text: &str, term_type: Option<TermType>) -> Entry {
    Entry {
        id: id.into(),
        set: "s".into(),
        kind: Kind::Term,
        text: text.into(),
        aliases: vec![],
        term_type,
        fingerprints: None,
    }
}

fn guard(hold_back_words: usize) -> Arc<Guard> {
    let entries = [
        Entry::document("s", "doc", DOC),
        term("person", "Maria Okafor-Lind", Some(TermType::Person)),
        term("email", "maria.lind@example.org", Some(TermType::Email)),
        term("phone", "+44 20 7946 0958", Some(TermType::Phone)),
        term("id", "AB-12-34", Some(TermType::Id)),
    ];
    let cfg = GuardConfig {
        embedder: None,
        hold_back_words,
        default_policy: SetPolicy::default(),
        ..Default::default()
    };
    Arc::new(Guard::build(&entries, &cfg, None, None, 1).unwrap())
}

fn assert_span(text: &str, span: &std::ops::Range<usize>) {
    assert!(
        span.start <= span.end
            && span.end <= text.len()
            && text.is_char_boundary(span.start)
            && text.is_char_boundary(span.end),
        "span {span:?} is not a character range of {text:?}"
    );
}

#[test]
fn arbitrary_text_never_panics_the_guard_and_spans_are_character_ranges() {
    let guards = [guard(0), guard(8)];
    let mut rng = StdRng::seed_from_u64(0x1e7e);
    for case in 0..1500 {
        let text = random_text(&mut rng);
        let g = &guards[case % 2];
        for exact in [false, true] {
            for f in g.check(&text, CheckParams { sets: &[], exact, ..Default::default() }).unwrap() {
                assert_span(&text, &f.span);
            }
        }
        // Streamed in random character-aligned pieces, as a decoder's tokens arrive.
        let mut stream = StreamGuard::new(g.clone());
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        let mut released = String::new();
        let mut blocked = false;
        while at < chars.len() && !blocked {
            let n = rng.random_range(1..=6).min(chars.len() - at);
            let piece: String = chars[at..at + n].iter().collect();
            at += n;
            match stream.push(&piece).unwrap() {
                Release::Text(t) => released.push_str(&t),
                Release::Blocked(f) => {
                    assert_span(stream.text(), &f.span);
                    blocked = true;
                }
            }
        }
        if !blocked {
            match stream.finish().unwrap() {
                Release::Text(t) => released.push_str(&t),
                Release::Blocked(f) => assert_span(stream.text(), &f.span),
            }
        }
        assert!(text.starts_with(&released), "released text is a prefix of the generation");
        for f in stream.findings() {
            assert_span(stream.text(), &f.span);
        }
    }
}
