//! Request validation: every way a request can be wrong is a [`ValidationError`] whose message
//! says what to change (INVALID_ARGUMENT, mapped in `error.rs`). Nothing here logs or echoes
//! prompt text.
use crate::config::Config;
use crate::model::{chat::ROLES, Message, Model, Sampling};
use crate::proto::GenerateRequest;

/// A request that passed validation, ready to generate.
#[derive(Debug, Clone)]
pub struct Job {
    pub request_id: String,
    /// The model the request runs on (the file name).
    pub model_name: String,
    pub prompt_ids: Vec<u32>,
    pub max_new_tokens: usize,
    /// End-of-sequence is masked until this many tokens were generated (`ignore_eos`: all).
    pub min_new_tokens: usize,
    pub sampling: Sampling,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("request is {size} bytes, above the server limit of {limit} bytes")]
    RequestTooLarge { size: usize, limit: usize },
    #[error("set either `prompt` (raw text) or `messages` (a chat); neither was set")]
    NoPrompt,
    #[error("set either `prompt` or `messages`, not both")]
    PromptAndMessages,
    #[error("`prompt` is only whitespace")]
    WhitespacePrompt,
    #[error("messages[{index}].role {role:?} is not one of {roles}", roles = ROLES.join(", "))]
    UnknownRole { index: usize, role: String },
    #[error("messages[{0}].content is empty")]
    EmptyMessage(usize),
    #[error("the model's chat template rejected the messages: {0}")]
    Template(String),
    #[error("max_new_tokens must be between 1 and {limit} (got {got})")]
    MaxNewTokens { limit: u32, got: u32 },
    #[error("set `ignore_eos` or `min_new_tokens`, not both")]
    IgnoreEosAndMinNewTokens,
    #[error("min_new_tokens ({min}) must not exceed max_new_tokens ({max})")]
    MinNewTokens { min: u32, max: u32 },
    #[error("temperature must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE} (got {0})")]
    Temperature(f32),
    #[error("top_p must be in (0, 1] (got {0})")]
    TopP(f32),
    #[error("at most {max} stop strings (got {got})")]
    TooManyStops { max: usize, got: usize },
    #[error("stop strings must not be empty")]
    EmptyStop,
    #[error("prompt is {tokens} tokens; the model's context window is {context} tokens and at least one must be left to generate")]
    PromptTooLong { tokens: usize, context: usize },
    #[error("prompt is {bytes} bytes, more than the model's context window of {context} tokens can hold")]
    PromptTooLarge { bytes: usize, context: usize },
    #[error("{count} messages cannot fit the model's context window of {context} tokens")]
    TooManyMessages { count: usize, context: usize },
    /// The tokenizer failed on the text: the server's fault, not the client's (INTERNAL).
    #[error("{0}")]
    Unencodable(String),
    #[error("text and prompt are {size} bytes, above the server limit of {limit} bytes")]
    TextTooLarge { size: usize, limit: usize },
    #[error("forget set {set:?} does not exist in snapshot {version}")]
    UnknownSet { set: String, version: u64 },
    #[error("no entries to add")]
    NoEntries,
    #[error("no ids to remove")]
    NoIds,
    #[error("entries[{0}].kind must be ENTRY_KIND_DOCUMENT or ENTRY_KIND_TERM")]
    EntryKind(usize),
    #[error("entries[{0}].term_type must be one of person, email, phone, id (or empty)")]
    TermType(usize),
    #[error("semantic_threshold must be in [-1, 2] (a cosine plus the lexical evidence; got {0})")]
    SemanticThreshold(f32),
    #[error("lexical_weight must be in [0, 1] (got {0})")]
    LexicalWeight(f32),
}

const MAX_STOP_STRINGS: usize = 16;

/// Below this a temperature only divides logits into overflow: 0 (greedy) says what is meant.
pub const MIN_TEMPERATURE: f32 = 0.01;

pub fn validate(req: &GenerateRequest, cfg: &Config, model: &Model) -> Result<Job, ValidationError> {
    use ValidationError as V;
    let size = prost::Message::encoded_len(req);
    if size > cfg.max_request_bytes {
        return Err(V::RequestTooLarge { size, limit: cfg.max_request_bytes });
    }
    let prompt = match (req.prompt.is_empty(), req.messages.is_empty()) {
        (true, true) => return Err(V::NoPrompt),
        (false, false) => return Err(V::PromptAndMessages),
        (false, true) => {
            if req.prompt.trim().is_empty() {
                return Err(V::WhitespacePrompt);
            }
            req.prompt.clone()
        }
        (true, false) => {
            // Every message takes at least one token: refuse what cannot fit before rendering.
            let context = model.info.context_length;
            if req.messages.len() > context {
                return Err(V::TooManyMessages { count: req.messages.len(), context });
            }
            let mut messages = Vec::with_capacity(req.messages.len());
            for (index, m) in req.messages.iter().enumerate() {
                if !ROLES.contains(&m.role.as_str()) {
                    return Err(V::UnknownRole { index, role: truncate(&m.role, 32) });
                }
                if m.content.trim().is_empty() {
                    return Err(V::EmptyMessage(index));
                }
                messages.push(Message { role: m.role.clone(), content: m.content.clone() });
            }
            model.chat.render(&messages).map_err(|e| V::Template(format!("{e:#}")))?
        }
    };

    let max_new_tokens = req.max_new_tokens.unwrap_or(cfg.default_max_new_tokens);
    if max_new_tokens == 0 || max_new_tokens > cfg.max_new_tokens_limit {
        return Err(V::MaxNewTokens { limit: cfg.max_new_tokens_limit, got: max_new_tokens });
    }
    let min_new_tokens = match (req.ignore_eos, req.min_new_tokens) {
        (true, Some(n)) if n > 0 => return Err(V::IgnoreEosAndMinNewTokens),
        (true, _) => max_new_tokens,
        (false, n) => n.unwrap_or(0),
    };
    if min_new_tokens > max_new_tokens {
        return Err(V::MinNewTokens { min: min_new_tokens, max: max_new_tokens });
    }
    let temperature = req.temperature.unwrap_or(cfg.default_temperature);
    check_sampling(Some(temperature), req.top_p, &req.stop)?;

    let context = model.info.context_length;
    if prompt.len() > context.saturating_mul(model.info.max_token_bytes) {
        return Err(V::PromptTooLarge { bytes: prompt.len(), context });
    }
    let prompt_ids = model.encode(&prompt).map_err(|e| V::Unencodable(format!("{e:#}")))?;
    if prompt_ids.len() >= context {
        return Err(V::PromptTooLong { tokens: prompt_ids.len(), context });
    }
    let max_new_tokens = (max_new_tokens as usize).min(context - prompt_ids.len());

    Ok(Job {
        model_name: model.info.name.clone(),
        request_id: if req.request_id.is_empty() { new_request_id() } else { truncate(&req.request_id, 128) },
        prompt_ids,
        max_new_tokens,
        min_new_tokens: (min_new_tokens as usize).min(max_new_tokens),
        sampling: Sampling {
            temperature: temperature as f64,
            top_p: req.top_p.filter(|p| *p < 1.0).map(f64::from),
            top_k: req.top_k.filter(|k| *k > 0).map(|k| k as usize),
            seed: req.seed.unwrap_or_else(rand::random),
        },
        stop: req.stop.clone(),
    })
}

/// Validates a request forwarded to an upstream engine: what can be checked without the
/// engine's tokenizer (the engine checks the rest). Returns the request id.
pub fn validate_forwarded(req: &GenerateRequest, cfg: &Config) -> Result<String, ValidationError> {
    use ValidationError as V;
    let size = prost::Message::encoded_len(req);
    if size > cfg.max_request_bytes {
        return Err(V::RequestTooLarge { size, limit: cfg.max_request_bytes });
    }
    match (req.prompt.is_empty(), req.messages.is_empty()) {
        (true, true) => return Err(V::NoPrompt),
        (false, false) => return Err(V::PromptAndMessages),
        (false, true) if req.prompt.trim().is_empty() => return Err(V::WhitespacePrompt),
        _ => {}
    }
    for (index, m) in req.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(V::UnknownRole { index, role: truncate(&m.role, 32) });
        }
        if m.content.trim().is_empty() {
            return Err(V::EmptyMessage(index));
        }
    }
    if let Some(n) = req.max_new_tokens {
        if n == 0 || n > cfg.max_new_tokens_limit {
            return Err(V::MaxNewTokens { limit: cfg.max_new_tokens_limit, got: n });
        }
    }
    check_sampling(req.temperature, req.top_p, &req.stop)?;
    Ok(if req.request_id.is_empty() { new_request_id() } else { truncate(&req.request_id, 128) })
}

/// At most `max_chars` characters of client input, for messages of bounded length.
pub fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The sampling and stop checks local and forwarded requests share.
fn check_sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: &[String],
) -> Result<(), ValidationError> {
    use ValidationError as V;
    if let Some(t) = temperature {
        if !(t == 0.0 || t.is_finite() && t >= MIN_TEMPERATURE) {
            return Err(V::Temperature(t));
        }
    }
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(V::TopP(p));
        }
    }
    if stop.len() > MAX_STOP_STRINGS {
        return Err(V::TooManyStops { max: MAX_STOP_STRINGS, got: stop.len() });
    }
    if stop.iter().any(String::is_empty) {
        return Err(V::EmptyStop);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture;
    use crate::proto::ChatMessage;

    fn tiny() -> (tempfile::TempDir, Model) {
        fixture::served(7)
    }

    fn invalid(req: GenerateRequest, cfg: &Config, model: &Model) -> ValidationError {
        validate(&req, cfg, model).expect_err("a validation error")
    }

    #[test]
    fn each_invalid_field_gets_its_own_error() {
        let (_dir, model) = tiny();
        let cfg = Config { max_request_bytes: 4096, ..Config::default() };
        let ok = GenerateRequest { prompt: "the cat".into(), max_new_tokens: Some(4), ..Default::default() };
        let chat = |role: &str, content: &str| GenerateRequest {
            prompt: String::new(),
            messages: vec![ChatMessage { role: role.into(), content: content.into() }],
            ..ok.clone()
        };
        use ValidationError as V;
        let cases = [
            (GenerateRequest { prompt: String::new(), ..ok.clone() }, V::NoPrompt),
            (GenerateRequest { messages: chat("user", "hi").messages, ..ok.clone() }, V::PromptAndMessages),
            (GenerateRequest { prompt: " \n".into(), ..ok.clone() }, V::WhitespacePrompt),
            (chat(&"w".repeat(100), "hi"), V::UnknownRole { index: 0, role: "w".repeat(32) }),
            (chat("user", " "), V::EmptyMessage(0)),
            (
                GenerateRequest { max_new_tokens: Some(0), ..ok.clone() },
                V::MaxNewTokens { limit: 1024, got: 0 },
            ),
            (GenerateRequest { min_new_tokens: Some(5), ..ok.clone() }, V::MinNewTokens { min: 5, max: 4 }),
            (
                GenerateRequest { ignore_eos: true, min_new_tokens: Some(1), ..ok.clone() },
                V::IgnoreEosAndMinNewTokens,
            ),
            (GenerateRequest { temperature: Some(-1.0), ..ok.clone() }, V::Temperature(-1.0)),
            (GenerateRequest { temperature: Some(1e-30), ..ok.clone() }, V::Temperature(1e-30)),
            (GenerateRequest { top_p: Some(0.0), ..ok.clone() }, V::TopP(0.0)),
            (
                GenerateRequest { stop: vec!["x".into(); 17], ..ok.clone() },
                V::TooManyStops { max: 16, got: 17 },
            ),
            (GenerateRequest { stop: vec![String::new()], ..ok.clone() }, V::EmptyStop),
            (
                GenerateRequest { prompt: "a".repeat(5000), ..ok.clone() },
                V::RequestTooLarge { size: 5005, limit: 4096 },
            ),
        ];
        for (req, expected) in cases {
            assert_eq!(invalid(req, &cfg, &model), expected);
        }
        let long = GenerateRequest { prompt: "cat ".repeat(600), ..ok.clone() };
        assert!(
            matches!(invalid(long, &cfg, &model), V::PromptTooLong { context, .. } if context == fixture::CONTEXT as usize)
        );
        assert!(validate(&ok, &cfg, &model).is_ok());
    }

    #[test]
    fn lengths_and_eos_options_become_the_job() {
        let (_dir, model) = tiny();
        let cfg = Config::default();
        let req = GenerateRequest {
            prompt: "the cat".into(),
            max_new_tokens: Some(10),
            ignore_eos: true,
            ..Default::default()
        };
        let job = validate(&req, &cfg, &model).unwrap();
        assert_eq!((job.max_new_tokens, job.min_new_tokens), (10, 10));
        let req = GenerateRequest { ignore_eos: false, min_new_tokens: Some(3), ..req };
        let job = validate(&req, &cfg, &model).unwrap();
        assert_eq!((job.max_new_tokens, job.min_new_tokens), (10, 3));
        // The context window caps both.
        let req =
            GenerateRequest { max_new_tokens: Some(1000), ignore_eos: true, min_new_tokens: None, ..req };
        let job = validate(&req, &cfg, &model).unwrap();
        assert_eq!(job.max_new_tokens, fixture::CONTEXT as usize - job.prompt_ids.len());
        assert_eq!(job.min_new_tokens, job.max_new_tokens);
        assert!(!job.request_id.is_empty());
    }
}
