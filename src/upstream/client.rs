//! One request to an upstream engine: a fresh HTTP/1.1 connection (hyper's client, already in
//! the tree through tonic; no connection pool, so dropping the request closes the socket and
//! the engine sees the client go; TLS for `https://`, `tls.rs`), `stream: true` always, and a
//! lenient reading of the stream, since engines differ: usage in the finish chunk, in a chunk
//! of its own or absent; `[DONE]` present or not; errors as objects or strings; `content:
//! null` deltas.
use super::sse::Parser;
use super::{Delta, Upstream};
use crate::proto::{FinishReason, GenerateRequest};
use crate::server::error::{Error, UpstreamError};
use crate::server::generation::Event;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Forwards `req` to `upstream` and sends the text of its stream to `deltas`, until the stream
/// ends, the guard thread drops its end of `deltas` (a block), the client leaves (`client`
/// closed) or its `deadline` (gRPC's, taken a little early) passes. Returning drops the
/// connection.
pub async fn forward(
    upstream: Arc<Upstream>,
    req: GenerateRequest,
    deadline: Option<Instant>,
    deltas: mpsc::Sender<Delta>,
    client: mpsc::Sender<Event>,
) {
    let _in_flight = crate::metrics::upstream_in_flight(upstream.name());
    // The client's deadline ends the exchange with DEADLINE_EXCEEDED before tonic would cut
    // the call off as CANCELLED (and a stream's body, which tonic's timeout does not cover).
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = exchange(&upstream, &req, &deltas) => r,
        _ = deltas.closed() => Ok(()),
        _ = client.closed() => Ok(()),
        _ = expired => Err(Error::DeadlineExceeded(format!("while forwarded to upstream {}", upstream.name()))),
    };
    if let Err(e) = result {
        let _ = deltas.send(Delta::Failed(e)).await;
    }
}

/// Aborts the connection task when dropped: the socket closes with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange(up: &Upstream, req: &GenerateRequest, deltas: &mpsc::Sender<Delta>) -> Result<(), Error> {
    let name = up.name().to_string();
    let cfg = &up.config;
    let secs = Duration::from_secs_f64;
    let unreachable = |what: &str| {
        tracing::warn!(upstream = %name, error = what, "upstream unreachable");
        crate::metrics::upstream_request(&name, "connect_error");
        Error::Upstream(UpstreamError::Unreachable(name.clone()))
    };
    let timed_out = |limit: f64| {
        crate::metrics::upstream_request(&name, "timeout");
        Error::Upstream(UpstreamError::Timeout { upstream: name.clone(), secs: limit })
    };
    let (mut sender, _conn) = tokio::time::timeout(secs(cfg.connect_timeout_secs), open(up))
        .await
        .map_err(|_| timed_out(cfg.connect_timeout_secs))?
        .map_err(|e| unreachable(&e))?;

    let (path, body) = request_body(req);
    let mut request = http::Request::post(format!("{}{path}", up.base_path))
        .header(http::header::HOST, up.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "text/event-stream");
    if let Some(key) = &up.api_key {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| Error::Internal(format!("building the upstream request: {e}")))?;
    let sent = Instant::now();
    let response = tokio::time::timeout(secs(cfg.first_byte_timeout_secs), sender.send_request(request))
        .await
        .map_err(|_| timed_out(cfg.first_byte_timeout_secs))?
        .map_err(|e| unreachable(&e.to_string()))?;
    crate::metrics::upstream_first_byte(&name, sent.elapsed());
    let status = response.status().as_u16();
    crate::metrics::upstream_request(
        &name,
        match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
    );
    if !response.status().is_success() {
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limited = http_body_util::Limited::new(response.into_body(), 64 << 10);
        let body = tokio::time::timeout(secs(cfg.idle_timeout_secs), limited.collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(Error::Upstream(status_error(&name, status, retry_after, &body)));
    }

    let broke = |kind: &'static str| {
        crate::metrics::upstream_stream_error(&name, kind);
        Error::Upstream(UpstreamError::Stream { upstream: name.clone(), kind })
    };
    let mut body = response.into_body();
    let mut parser = Parser::new(cfg.max_event_bytes);
    let mut finish = None;
    let mut done = false;
    while !done {
        let frame = tokio::time::timeout(secs(cfg.idle_timeout_secs), body.frame())
            .await
            .map_err(|_| broke("idle_timeout"))?;
        let events = match frame {
            None => {
                done = true;
                parser.finish().into_iter().collect()
            }
            Some(Err(_)) => return Err(broke("truncated")),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => parser.push(&data).map_err(|_| broke("too_large"))?,
                Err(_) => continue,
            },
        };
        for data in events {
            match parse_event(&data) {
                Parsed::Done => {
                    done = true;
                    break;
                }
                Parsed::Malformed => return Err(broke("malformed")),
                Parsed::Error(message) => {
                    // Its text is not logged: an engine's message (a traceback) may quote the
                    // text it generated. The client gets a fixed message too.
                    tracing::warn!(upstream = %name, message_chars = message.chars().count(), "upstream error event");
                    return Err(broke("error_event"));
                }
                Parsed::Chunk { text, usage, finish: f } => {
                    if let Some((prompt, completion)) = usage {
                        let _ = deltas.send(Delta::Usage { prompt, completion }).await;
                    }
                    if !text.is_empty() && deltas.send(Delta::Text(text)).await.is_err() {
                        return Ok(());
                    }
                    finish = finish.or(f);
                }
            }
        }
    }
    // An end without a finish reason is a cut stream (llama-cpp-python's interrupted
    // requests end with `[DONE]` and no finish reason): not a complete answer.
    let finish = finish.ok_or_else(|| broke("truncated"))?;
    let _ = deltas.send(Delta::End(finish)).await;
    Ok(())
}

/// A connection to `up` (TCP, then TLS for `https://`) with an HTTP/1.1 client on it; the
/// connection lives as long as the returned guard. The error says which step failed (an
/// address or a certificate problem: no request text).
async fn open(
    up: &Upstream,
) -> Result<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, AbortOnDrop), String> {
    let tcp = tokio::net::TcpStream::connect(up.authority.as_str()).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match &up.tls {
        Some(tls) => {
            let stream = tls.connect(tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
            handshake(stream).await
        }
        None => handshake(tcp).await,
    }
}

async fn handshake<T>(
    io: T,
) -> Result<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, AbortOnDrop), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok((sender, conn))
}

/// Probes every upstream's `/v1/models` now and every 15 s after: `lethe_upstream_up`, and
/// the ids a catch-all upstream serves (shown on Lethe's `/v1/models`).
pub fn start_probes(upstreams: &super::Upstreams) {
    for u in upstreams.all() {
        let u = u.clone();
        tokio::spawn(async move {
            loop {
                let listed = probe(&u).await;
                crate::metrics::upstream_up(u.name(), listed.is_some());
                if let Some(ids) = listed {
                    u.set_listed(ids);
                }
                tokio::time::sleep(Duration::from_secs(15)).await;
            }
        });
    }
}

/// `GET {base}/models`: the model ids the engine lists, or `None` when it does not answer
/// with a list in time (the `lethe_upstream_up` probe).
pub async fn probe(up: &Upstream) -> Option<Vec<String>> {
    let limit = Duration::from_secs_f64(up.config.connect_timeout_secs + 10.0);
    let listed = async {
        let (mut sender, _conn) = match open(up).await {
            Ok(opened) => opened,
            Err(e) => {
                tracing::debug!(upstream = %up.name(), error = %e, "upstream probe could not connect");
                return None;
            }
        };
        let mut request = http::Request::get(format!("{}/models", up.base_path))
            .header(http::header::HOST, up.authority.as_str());
        if let Some(key) = &up.api_key {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = sender.send_request(request.body(Full::new(Bytes::new())).ok()?).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body =
            http_body_util::Limited::new(response.into_body(), 1 << 20).collect().await.ok()?.to_bytes();
        let list: Value = serde_json::from_slice(&body).ok()?;
        let ids = list.get("data")?.as_array()?.iter().filter_map(|m| m.get("id")?.as_str());
        // Bounded: the ids are shown on /v1/models, never used as metric labels.
        Some(ids.take(256).map(|id| crate::server::validate::truncate(id, 256)).collect())
    };
    tokio::time::timeout(limit, listed).await.ok().flatten()
}

/// The upstream route and JSON body for `req`: chat when it has messages, else completions.
fn request_body(req: &GenerateRequest) -> (&'static str, Value) {
    let mut body = json!({
        "model": req.model.clone().unwrap_or_default(),
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let path = if req.messages.is_empty() {
        body["prompt"] = json!(req.prompt);
        "/completions"
    } else {
        let messages: Vec<Value> =
            req.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
        body["messages"] = json!(messages);
        "/chat/completions"
    };
    if let Some(n) = req.max_new_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = req.top_p {
        body["top_p"] = json!(p);
    }
    if let Some(s) = req.seed {
        body["seed"] = json!(s);
    }
    if !req.stop.is_empty() {
        body["stop"] = json!(req.stop);
    }
    // Extensions (vLLM's names), sent only when set: engines without them ignore or refuse.
    if let Some(k) = req.top_k.filter(|k| *k > 0) {
        body["top_k"] = json!(k);
    }
    if req.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    if let Some(n) = req.min_new_tokens.filter(|n| *n > 0) {
        body["min_tokens"] = json!(n);
    }
    (path, body)
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Done,
    Malformed,
    Error(String),
    Chunk { text: String, usage: Option<(u32, u32)>, finish: Option<FinishReason> },
}

/// One event's `data`: `[DONE]`, an error (object or string), or a chunk of the chat or
/// completions shape. Only the first choice is read: Lethe never asks for `n > 1`.
fn parse_event(data: &str) -> Parsed {
    if data.trim() == "[DONE]" {
        return Parsed::Done;
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else { return Parsed::Malformed };
    if let Some(e) = v.get("error").filter(|e| !e.is_null() && *e != false) {
        let message = e.get("message").and_then(Value::as_str).or(e.as_str()).unwrap_or("(no message)");
        return Parsed::Error(message.to_string());
    }
    let usage = v.get("usage").filter(|u| u.is_object()).map(|u| {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        (n("prompt_tokens"), n("completion_tokens"))
    });
    let choice = v.get("choices").and_then(|c| c.get(0));
    let mut text = String::new();
    if let Some(c) = choice {
        for field in [
            c.get("delta").and_then(|d| d.get("content")),
            c.get("delta").and_then(|d| d.get("refusal")),
            c.get("text"),
        ] {
            if let Some(t) = field.and_then(Value::as_str) {
                text.push_str(t);
            }
        }
    }
    let finish = choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str).map(|f| match f {
        "length" => FinishReason::Length,
        _ => FinishReason::Eos,
    });
    Parsed::Chunk { text, usage, finish }
}

/// The error for a non-2xx answer: the request's own faults pass through (cut short), the
/// rest are the upstream's.
fn status_error(name: &str, status: u16, retry_after: Option<u64>, body: &[u8]) -> UpstreamError {
    let upstream = name.to_string();
    match status {
        401 | 403 => UpstreamError::Auth(upstream),
        429 => UpstreamError::Busy { upstream, retry_after },
        400..=499 => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let message = v
                .get("error")
                .and_then(|e| e.get("message").and_then(Value::as_str).or(e.as_str()))
                .or(v.get("detail").and_then(Value::as_str))
                .or(v.get("message").and_then(Value::as_str))
                .unwrap_or("(no message)");
            let message = crate::server::validate::truncate(message, 300);
            UpstreamError::Rejected { upstream, status, message }
        }
        _ => UpstreamError::Failed { upstream, status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_of_every_engine_shape_are_read() {
        let chat =
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(parse_event(chat), Parsed::Chunk { text: "Hi".into(), usage: None, finish: None });
        let null_content = r#"{"choices":[{"delta":{"role":"assistant","content":null}}]}"#;
        assert_eq!(parse_event(null_content), Parsed::Chunk { text: "".into(), usage: None, finish: None });
        let finish_usage = r#"{"choices":[{"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#;
        assert_eq!(
            parse_event(finish_usage),
            Parsed::Chunk { text: "".into(), usage: Some((3, 5)), finish: Some(FinishReason::Length) }
        );
        let usage_only = r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert_eq!(
            parse_event(usage_only),
            Parsed::Chunk { text: "".into(), usage: Some((1, 2)), finish: None }
        );
        let completion = r#"{"choices":[{"text":" cat","finish_reason":"eos_token"}]}"#;
        assert_eq!(
            parse_event(completion),
            Parsed::Chunk { text: " cat".into(), usage: None, finish: Some(FinishReason::Eos) }
        );
        assert_eq!(parse_event(" [DONE]"), Parsed::Done);
        assert_eq!(parse_event("{not json"), Parsed::Malformed);
        assert_eq!(parse_event(r#"{"error":{"message":"boom","code":500}}"#), Parsed::Error("boom".into()));
        assert_eq!(parse_event(r#"{"error":"flat","error_type":"x"}"#), Parsed::Error("flat".into()));
    }

    #[test]
    fn statuses_become_errors_and_messages_are_cut_short() {
        assert!(matches!(status_error("u", 401, None, b""), UpstreamError::Auth(_)));
        assert!(matches!(
            status_error("u", 429, Some(7), b""),
            UpstreamError::Busy { retry_after: Some(7), .. }
        ));
        assert!(matches!(status_error("u", 503, None, b""), UpstreamError::Failed { status: 503, .. }));
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(1000));
        match status_error("u", 422, None, long.as_bytes()) {
            UpstreamError::Rejected { status: 422, message, .. } => assert_eq!(message.len(), 300),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_body_always_streams_and_maps_the_fields() {
        let req = GenerateRequest {
            prompt: "p".into(),
            max_new_tokens: Some(5),
            stop: vec!["x".into()],
            model: Some("m".into()),
            ..Default::default()
        };
        let (path, body) = request_body(&req);
        assert_eq!(path, "/completions");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!((body["max_tokens"].as_u64(), body["model"].as_str()), (Some(5), Some("m")));
    }
}
