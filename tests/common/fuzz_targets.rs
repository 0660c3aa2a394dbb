//! The bodies of the fuzz targets: `fuzz/fuzz_targets/*.rs` hand them libFuzzer's input, and
//! `tests/fuzz_corpora.rs` replays the committed corpora (`fuzz/corpus/<target>/`) through
//! them in every `make test`. Each one feeds arbitrary bytes to code that takes client,
//! operator or disk input, and asserts what must hold whatever the input: no panic, spans
//! inside the text on character boundaries, a replay that never reads past damage.
#![allow(dead_code)]
use lethe::guard::stream::{Release, StreamGuard};
use lethe::guard::{CheckParams, Guard, GuardConfig};
use std::sync::{Arc, OnceLock};

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn assert_span(text: &str, span: &std::ops::Range<usize>) {
    assert!(span.start <= span.end && span.end <= text.len(), "span {span:?} outside the text");
    assert!(
        text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
        "span {span:?} cuts a character"
    );
}

/// Normalization: the word view and the normalized string of any text.
pub fn normalize(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let w = lethe::guard::normalize::words(s);
    assert_eq!(w.words.len(), w.spans.len());
    for span in &w.spans {
        assert_span(s, span);
    }
    let _ = lethe::guard::normalize::normalize(s);
    assert!(lethe::guard::normalize::unsettled_from(s) <= s.len());
}

/// The forget-list parser: any file either parses into valid entries or is an error.
pub fn forget_list(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(entries) = lethe::forget::parse(s, "fuzz.jsonl") {
        for e in &entries {
            e.validate().expect("parsed entries are valid");
        }
    }
}

/// The store's log replay: whatever the bytes, the good prefix is a prefix, every good record
/// is counted once, and without damage the whole log was read.
pub fn store_log(data: &[u8]) {
    let r = lethe::forget::log::replay(data);
    assert!(r.good_len as usize <= data.len());
    assert_eq!(r.sequence as usize, r.sums.len());
    if r.damage.is_none() {
        assert_eq!(r.good_len as usize, data.len());
    }
}

/// A shared fixture model (a real byte-level tokenizer and ChatML template).
fn model() -> &'static lethe::model::Model {
    static MODEL: OnceLock<lethe::model::Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("lethe-fuzz-tiny-{}.gguf", std::process::id()));
        lethe::model::fixture::write_tiny_llama(&path, 7).expect("writing the fixture model");
        let model =
            lethe::model::Model::load(&path, lethe::model::ServedFormat::AsStored).expect("loading it");
        let _ = std::fs::remove_file(&path);
        model
    })
}

/// Request validation, chat templating and tokenization of any decodable GenerateRequest.
pub fn request(data: &[u8]) {
    let Ok(req) = <lethe::proto::GenerateRequest as prost::Message>::decode(data) else { return };
    let cfg = lethe::config::Config::default();
    if let Ok(job) = lethe::server::validate::validate(&req, &cfg, model()) {
        assert!(job.prompt_ids.len() < model().info.context_length);
        assert!(job.min_new_tokens <= job.max_new_tokens);
    }
}

/// The chat template on any messages (NUL separates them; the first byte of each is its role).
pub fn chat(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let messages: Vec<lethe::model::Message> = s
        .split('\0')
        .map(|m| {
            let role = lethe::model::chat::ROLES[m.len() % lethe::model::chat::ROLES.len()];
            lethe::model::Message { role: role.into(), content: m.into() }
        })
        .collect();
    if let Ok(prompt) = model().chat.render(&messages) {
        let _ = model().encode(&prompt);
    }
}

const DOC: &str =
    "the keeper of the northern lighthouse painted its heavy door a new shade of blue every single spring";

fn guard() -> &'static Arc<Guard> {
    static GUARD: OnceLock<Arc<Guard>> = OnceLock::new();
    GUARD.get_or_init(|| {
        let term = |id: &str, text: &str, t| lethe::forget::Entry {
            id: id.into(),
            set: "s".into(),
            kind: lethe::forget::Kind::Term,
            text: text.into(),
            aliases: vec![],
            term_type: Some(t),
            fingerprints: None,
        };
        use lethe::forget::TermType;
        let entries = [
            lethe::forget::Entry::document("s", "doc", DOC),
            term("person", "Maria Okafor-Lind", TermType::Person),
            term("email", "maria.lind@example.org", TermType::Email),
            term("phone", "+44 20 7946 0958", TermType::Phone),
            term("id", "AB-12-34", TermType::Id),
        ];
        let cfg = GuardConfig { embedder: None, hold_back_words: 6, ..Default::default() };
        Arc::new(Guard::build(&entries, &cfg, None, None, 1).expect("building the guard"))
    })
}

/// The guard's text layers on any text: a whole-text check, and a stream fed in pieces whose
/// sizes come from the text itself.
pub fn guard_text(data: &[u8]) {
    let Some(s) = text(data) else { return };
    for exact in [false, true] {
        for f in guard().check(s, CheckParams { exact, ..Default::default() }).expect("the check runs") {
            assert_span(s, &f.span);
        }
    }
    let mut stream = StreamGuard::new(guard().clone());
    let chars: Vec<char> = s.chars().collect();
    let mut released = String::new();
    let mut at = 0;
    while at < chars.len() {
        let n = (chars[at] as usize % 5 + 1).min(chars.len() - at);
        let piece: String = chars[at..at + n].iter().collect();
        at += n;
        match stream.push(&piece).expect("the stream guard runs") {
            Release::Text(t) => released.push_str(&t),
            Release::Blocked(f) => {
                assert_span(stream.text(), &f.span);
                return;
            }
        }
    }
    if let Release::Text(t) = stream.finish().expect("the stream guard finishes") {
        released.push_str(&t);
        assert_eq!(released, s, "an unblocked stream releases the whole text");
    }
}
