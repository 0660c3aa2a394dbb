//! The OpenAI wire format of the front door: request bodies of `/v1/chat/completions` and
//! `/v1/completions` read into a `GenerateRequest` (lenient about fields clients send by
//! habit, strict about options whose output Lethe could not guard or honour), and the
//! completion, chunk and usage objects written back, exactly in the shape OpenAI clients
//! parse, plus a `lethe` extension object they ignore.
use crate::proto::{ChatMessage, FinishReason, GenerateRequest, Verdict};
use crate::server::error::Error;
use crate::server::generation::Summary;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

#[derive(Debug)]
pub struct Parsed {
    pub request: GenerateRequest,
    pub stream: bool,
    pub include_usage: bool,
}

fn bad(param: &str, message: impl Into<String>) -> Error {
    Error::BadRequest { param: Some(param.to_string()), message: message.into() }
}

/// Reads a request body. Errors name the field (`param`) and never echo its value.
pub fn parse(kind: Kind, body: &[u8]) -> Result<Parsed, Error> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Error::BadRequest {
        param: None,
        message: format!("the body is not valid JSON (line {}, column {})", e.line(), e.column()),
    })?;
    let Value::Object(o) = value else {
        return Err(Error::BadRequest { param: None, message: "the body must be a JSON object".into() });
    };
    refuse_unsupported(&o)?;
    let mut request =
        GenerateRequest { model: opt_str(&o, "model")?.map(String::from), ..Default::default() };
    match kind {
        Kind::Chat => {
            let Some(Value::Array(messages)) = o.get("messages") else {
                return Err(bad("messages", "`messages` must be a list of {role, content} objects"));
            };
            for (i, m) in messages.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                    bad(&format!("messages[{i}].role"), "every message needs a string `role`")
                })?;
                let content = content_text(m.get("content")).ok_or_else(|| {
                    bad(
                        &format!("messages[{i}].content"),
                        "`content` must be a string or a list of text parts",
                    )
                })?;
                request.messages.push(ChatMessage { role: role.to_string(), content });
            }
        }
        Kind::Completion => match o.get("prompt") {
            Some(Value::String(p)) => request.prompt = p.clone(),
            Some(Value::Array(_)) => {
                return Err(bad(
                    "prompt",
                    "list prompts (batches, token ids) are not supported: send one string",
                ))
            }
            _ => return Err(bad("prompt", "`prompt` must be a string")),
        },
    }
    request.max_new_tokens = match opt_u64(&o, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => opt_u64(&o, "max_tokens")?,
    }
    .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    request.temperature = opt_f64(&o, "temperature")?.map(|t| t as f32);
    request.top_p = opt_f64(&o, "top_p")?.map(|p| p as f32);
    request.top_k = opt_u64(&o, "top_k")?.map(|k| u32::try_from(k).unwrap_or(u32::MAX));
    request.seed = opt_u64(&o, "seed")?;
    // vLLM's extensions for a length that does not depend on the model's choices.
    request.ignore_eos = opt_bool(&o, "ignore_eos")?.unwrap_or(false);
    request.min_new_tokens = opt_u64(&o, "min_tokens")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    request.stop = match o.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|s| s.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("stop", "`stop` must be a string or a list of strings"))?,
        Some(_) => return Err(bad("stop", "`stop` must be a string or a list of strings")),
    };
    let stream = opt_bool(&o, "stream")?.unwrap_or(false);
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => opt_bool(so, "include_usage")?.unwrap_or(false),
        Some(_) => return Err(bad("stream_options", "`stream_options` must be an object")),
    };
    Ok(Parsed { request, stream, include_usage })
}

/// Options whose output would bypass the guard (tools, several choices, echo) or that Lethe
/// cannot honour: refused by name rather than silently ignored.
fn refuse_unsupported(o: &Map<String, Value>) -> Result<(), Error> {
    let set = |k: &str| o.get(k).filter(|v| !v.is_null());
    if let Some(n) = set("n") {
        if n.as_u64() != Some(1) {
            return Err(bad("n", "only n = 1 is supported: each choice would need its own guarded stream"));
        }
    }
    if let Some(n) = set("best_of") {
        if n.as_u64() != Some(1) {
            return Err(bad("best_of", "only best_of = 1 is supported"));
        }
    }
    for key in ["tools", "functions"] {
        if set(key).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(bad(
                key,
                "tool and function calls are not supported: their arguments would reach the client unguarded",
            ));
        }
    }
    if set("tool_choice").is_some_and(|v| v != "none") || set("function_call").is_some_and(|v| v != "none") {
        return Err(bad("tool_choice", "tool and function calls are not supported"));
    }
    for key in ["logprobs", "top_logprobs"] {
        if set(key).is_some_and(|v| *v != false && *v != 0) {
            return Err(bad(key, "log probabilities are not supported"));
        }
    }
    if set("echo").is_some_and(|v| *v != false) {
        return Err(bad("echo", "echo is not supported"));
    }
    if set("suffix").is_some() {
        return Err(bad("suffix", "suffix (insertion) is not supported"));
    }
    if let Some(format) = set("response_format") {
        if format.get("type").and_then(Value::as_str).is_some_and(|t| t != "text") {
            return Err(bad("response_format", "only the text response format is supported"));
        }
    }
    for key in ["frequency_penalty", "presence_penalty"] {
        if set(key).is_some_and(|v| v.as_f64() != Some(0.0)) {
            return Err(bad(key, format!("{key} is not supported (only 0)")));
        }
    }
    if set("logit_bias").is_some_and(|v| v.as_object().is_none_or(|m| !m.is_empty())) {
        return Err(bad("logit_bias", "logit_bias is not supported"));
    }
    Ok(())
}

/// A message's text: a string, or the `text` of a list of `{"type": "text"}` parts.
fn content_text(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                (Some("text"), Some(t)) => Some(t),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|t| t.concat()),
        _ => None,
    }
}

fn opt_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Error> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(key, format!("`{key}` must be a string"))),
    }
}

fn opt_u64(o: &Map<String, Value>, key: &str) -> Result<Option<u64>, Error> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().map(Some).ok_or_else(|| bad(key, format!("`{key}` must be a non-negative integer")))
        }
    }
}

fn opt_f64(o: &Map<String, Value>, key: &str) -> Result<Option<f64>, Error> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| bad(key, format!("`{key}` must be a number"))),
    }
}

fn opt_bool(o: &Map<String, Value>, key: &str) -> Result<Option<bool>, Error> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(key, format!("`{key}` must be true or false"))),
    }
}

/// What every object of one response shares.
pub struct Reply {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Reply {
    pub fn new(kind: Kind, request_id: &str, model: &str) -> Self {
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { kind, id: format!("{prefix}-{request_id}"), created, model: model.to_string() }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn with_choices(&self, chunk: bool, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": choices})
    }

    /// The first chunk of a chat stream: the role, as OpenAI's own streams begin.
    pub fn role_chunk(&self) -> Value {
        self.with_choices(true, json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]))
    }

    /// A chunk of cleared text.
    pub fn text_chunk(&self, text: &str) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                json!({"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null})
            }
            Kind::Completion => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null}),
        };
        self.with_choices(true, json!([choice]))
    }

    /// The last chunk with choices: the finish reason and the `lethe` extension.
    pub fn finish_chunk(&self, summary: &Summary, request_id: &str) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason(summary.finish)})
            }
            Kind::Completion => {
                json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish_reason(summary.finish)})
            }
        };
        let mut chunk = self.with_choices(true, json!([choice]));
        chunk["lethe"] = extension(summary, request_id);
        chunk
    }

    /// The usage chunk (`stream_options.include_usage`): no choices, as OpenAI sends it.
    pub fn usage_chunk(&self, summary: &Summary) -> Option<Value> {
        let mut chunk = self.with_choices(true, json!([]));
        chunk["usage"] = usage(summary)?;
        Some(chunk)
    }

    /// A whole (non-streamed) response.
    pub fn complete(&self, text: &str, summary: &Summary, request_id: &str) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish_reason(summary.finish)})
            }
            Kind::Completion => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason(summary.finish)})
            }
        };
        let mut body = self.with_choices(false, json!([choice]));
        if let Some(u) = usage(summary) {
            body["usage"] = u;
        }
        body["lethe"] = extension(summary, request_id);
        body
    }
}

/// OpenAI's finish reasons: a block ends like the API's own filtered output.
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Blocked => "content_filter",
        _ => "stop",
    }
}

/// Usage, only when the source counted it (never made-up zeros).
fn usage(summary: &Summary) -> Option<Value> {
    summary.usage_known.then(|| {
        json!({
            "prompt_tokens": summary.prompt_tokens,
            "completion_tokens": summary.completion_tokens,
            "total_tokens": summary.prompt_tokens + summary.completion_tokens,
        })
    })
}

/// The `lethe` object: verdict and matches, as the gRPC API gives them (entry ids are
/// already empty when a set hides details).
fn extension(summary: &Summary, request_id: &str) -> Value {
    let verdict = match summary.verdict {
        Verdict::Allow => "allow",
        Verdict::Suppress => "suppress",
        Verdict::Block => "block",
        Verdict::Unspecified => "unspecified",
    };
    let matches: Vec<Value> = summary
        .matches
        .iter()
        .map(|m| {
            let mut v = json!({
                "forget_set": m.forget_set,
                "layer": m.layer().as_str_name().to_ascii_lowercase(),
                "score": m.score,
                "char_start": m.char_start,
                "char_end": m.char_end,
            });
            if !m.entry_id.is_empty() {
                v["entry_id"] = json!(m.entry_id);
            }
            v
        })
        .collect();
    json!({"verdict": verdict, "matches": matches, "request_id": request_id})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(kind: Kind, body: &str) -> Option<String> {
        match parse(kind, body.as_bytes()) {
            Err(e) => e.http().param,
            Ok(p) => panic!("accepted {body}: {p:?}"),
        }
    }

    #[test]
    fn a_chat_body_becomes_a_generate_request() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
            "max_completion_tokens":7,"temperature":0,"seed":3,"stop":"END","stream":true,
            "stream_options":{"include_usage":true},"user":"u","n":1,"tools":[]}"#;
        let p = parse(Kind::Chat, body.as_bytes()).unwrap();
        assert!(p.stream && p.include_usage);
        let r = p.request;
        assert_eq!((r.model.as_deref(), r.messages[0].content.as_str()), (Some("m"), "hi"));
        assert_eq!((r.max_new_tokens, r.temperature, r.seed), (Some(7), Some(0.0), Some(3)));
        assert_eq!(r.stop, vec!["END".to_string()]);
    }

    #[test]
    fn unsupported_options_name_their_param() {
        let chat = |extra: &str| format!(r#"{{"messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
        assert_eq!(param(Kind::Chat, &chat(r#","n":2"#)).as_deref(), Some("n"));
        assert_eq!(param(Kind::Chat, &chat(r#","tools":[{"type":"function"}]"#)).as_deref(), Some("tools"));
        assert_eq!(param(Kind::Chat, &chat(r#","logprobs":true"#)).as_deref(), Some("logprobs"));
        assert_eq!(param(Kind::Chat, &chat(r#","max_tokens":-1"#)).as_deref(), Some("max_tokens"));
        assert_eq!(param(Kind::Chat, &chat(r#","stop":[1]"#)).as_deref(), Some("stop"));
        assert_eq!(param(Kind::Chat, r#"{"messages":"hi"}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(Kind::Chat, r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#)
                .as_deref(),
            Some("messages[0].content")
        );
        assert_eq!(param(Kind::Completion, r#"{"prompt":["a","b"]}"#).as_deref(), Some("prompt"));
        assert_eq!(param(Kind::Completion, r#"{"prompt":"a","echo":true}"#).as_deref(), Some("echo"));
        assert_eq!(param(Kind::Completion, "[1]"), None);
        let e = parse(Kind::Completion, b"{\"prompt\": \"secret text").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn a_block_finishes_as_content_filter_with_the_extension() {
        let summary = Summary {
            finish: FinishReason::Blocked,
            verdict: Verdict::Block,
            matches: vec![],
            prompt_tokens: 2,
            completion_tokens: 3,
            usage_known: true,
        };
        let reply = Reply::new(Kind::Chat, "r1", "m");
        let last = reply.finish_chunk(&summary, "r1");
        assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(last["lethe"]["verdict"], "block");
        assert_eq!(reply.usage_chunk(&summary).unwrap()["usage"]["total_tokens"], 5);
        let unknown = Summary { usage_known: false, ..summary };
        assert!(reply.usage_chunk(&unknown).is_none());
        assert!(reply.complete("x", &unknown, "r1").get("usage").is_none());
    }
}
