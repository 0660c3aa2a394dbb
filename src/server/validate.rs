//! Request validation: every way a request can be wrong becomes INVALID_ARGUMENT with a
//! message that says what to change. Nothing here logs or echoes prompt text.
use crate::config::Config;
use crate::model::{chat::ROLES, Message, Model, Sampling};
use crate::proto::GenerateRequest;
use tonic::Status;

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

const MAX_STOP_STRINGS: usize = 16;

pub fn validate(req: &GenerateRequest, cfg: &Config, model: &Model) -> Result<Job, Status> {
    let size = prost::Message::encoded_len(req);
    if size > cfg.max_request_bytes {
        return Err(invalid(format!(
            "request is {size} bytes, above the server limit of {} bytes",
            cfg.max_request_bytes
        )));
    }
    let prompt = match (req.prompt.is_empty(), req.messages.is_empty()) {
        (true, true) => {
            return Err(invalid("set either `prompt` (raw text) or `messages` (a chat); neither was set"))
        }
        (false, false) => {
            return Err(invalid("set either `prompt` or `messages`, not both"));
        }
        (false, true) => {
            if req.prompt.trim().is_empty() {
                return Err(invalid("`prompt` is only whitespace"));
            }
            req.prompt.clone()
        }
        (true, false) => {
            let mut messages = Vec::with_capacity(req.messages.len());
            for (i, m) in req.messages.iter().enumerate() {
                if !ROLES.contains(&m.role.as_str()) {
                    return Err(invalid(format!(
                        "messages[{i}].role {:?} is not one of {}",
                        truncate(&m.role, 32),
                        ROLES.join(", ")
                    )));
                }
                if m.content.trim().is_empty() {
                    return Err(invalid(format!("messages[{i}].content is empty")));
                }
                messages.push(Message { role: m.role.clone(), content: m.content.clone() });
            }
            model
                .chat
                .render(&messages)
                .map_err(|e| invalid(format!("the model's chat template rejected the messages: {e:#}")))?
        }
    };

    let max_new_tokens = req.max_new_tokens.unwrap_or(cfg.default_max_new_tokens);
    if max_new_tokens == 0 || max_new_tokens > cfg.max_new_tokens_limit {
        return Err(invalid(format!(
            "max_new_tokens must be between 1 and {} (got {max_new_tokens})",
            cfg.max_new_tokens_limit
        )));
    }
    let min_new_tokens = match (req.ignore_eos, req.min_new_tokens) {
        (true, Some(n)) if n > 0 => {
            return Err(invalid("set `ignore_eos` or `min_new_tokens`, not both"));
        }
        (true, _) => max_new_tokens,
        (false, n) => n.unwrap_or(0),
    };
    if min_new_tokens > max_new_tokens {
        return Err(invalid(format!(
            "min_new_tokens ({min_new_tokens}) must not exceed max_new_tokens ({max_new_tokens})"
        )));
    }
    let temperature = req.temperature.unwrap_or(cfg.default_temperature);
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(invalid(format!(
            "temperature must be a finite number >= 0, 0 meaning greedy (got {temperature})"
        )));
    }
    if let Some(p) = req.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(invalid(format!("top_p must be in (0, 1] (got {p})")));
        }
    }
    if req.stop.len() > MAX_STOP_STRINGS {
        return Err(invalid(format!("at most {MAX_STOP_STRINGS} stop strings (got {})", req.stop.len())));
    }
    if req.stop.iter().any(String::is_empty) {
        return Err(invalid("stop strings must not be empty"));
    }

    let prompt_ids = model.encode(&prompt).map_err(|e| Status::internal(format!("{e:#}")))?;
    let context = model.info.context_length;
    if prompt_ids.len() >= context {
        return Err(invalid(format!(
            "prompt is {} tokens; the model's context window is {context} tokens and at least one must be left to generate",
            prompt_ids.len()
        )));
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

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
