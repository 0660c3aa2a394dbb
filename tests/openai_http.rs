//! End-to-end: the OpenAI-compatible front door (`--http-listen`) on the fixture model, and
//! upstream mode against a scripted fake engine that replays the stream quirks of real ones
//! (comments, `\r\n`, usage in its own chunk, no `[DONE]`, string errors, early `[DONE]`,
//! refused statuses) and a forgotten passage sent one token per chunk, split mid-word.
mod common;

use common::http::{get, post, Reply};
use common::passage::{forget_config_of, longest_shared_run};
use common::{free_port, metric_value, scrape, tiny_model, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "front-door-token-0123456789";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test]
async fn front_door_on_the_fixture_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let http = format!("127.0.0.1:{}", free_port());
    let server = Server::start_env(
        &model,
        &["--http-listen", &http, "--no-semantic"],
        &[("LETHE_INFERENCE_TOKEN", TOKEN)],
    )
    .await;
    let addr = http.clone();
    let t = Some(TOKEN);

    let (health, models, unauth, wrong) = blocking(move || {
        (
            get(&addr, "/health", None),
            get(&addr, "/v1/models", t),
            post(&addr, "/v1/completions", None, &json!({"prompt": "the cat"})),
            post(&addr, "/v1/completions", Some("not-the-token-at-all"), &json!({"prompt": "the cat"})),
        )
    })
    .await;
    assert_eq!(health.status, 200);
    assert_eq!(models.status, 200, "{}", models.body);
    let local = models.json()["data"][0]["id"].as_str().unwrap().to_string();
    for reply in [&unauth, &wrong] {
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.json()["error"]["type"], "authentication_error");
    }

    let addr = http.clone();
    let local2 = local.clone();
    let (unary, streamed, completion, usage_off) = blocking(move || {
        let chat = |extra: Value| {
            let mut body = json!({"model": local2, "messages": [{"role": "user", "content": "the cat"}], "max_tokens": 6, "temperature": 0});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        };
        (
            post(&addr, "/v1/chat/completions", t, &chat(json!({}))),
            post(&addr, "/v1/chat/completions", t, &chat(json!({"stream": true, "stream_options": {"include_usage": true}}))),
            post(&addr, "/v1/completions", t, &json!({"prompt": "the cat", "max_tokens": 5, "temperature": 0, "stream": true})),
            post(&addr, "/v1/chat/completions", t, &chat(json!({"stream": true}))),
        )
    })
    .await;
    assert_eq!(unary.status, 200, "{}", unary.body);
    let body = unary.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], local.as_str());
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(["stop", "length"].contains(&body["choices"][0]["finish_reason"].as_str().unwrap()));
    assert_eq!(body["lethe"]["verdict"], "allow");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 6);
    assert!(unary.header("x-request-id").is_some());

    // Streamed: role first, text chunks, the finish chunk, usage (choices: []), [DONE].
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header("content-type"), Some("text/event-stream"));
    let events = streamed.events();
    assert_eq!(events.last().unwrap(), "[DONE]", "{events:?}");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let finish = &chunks[chunks.len() - 2];
    assert!(finish["choices"][0]["finish_reason"].is_string());
    assert_eq!(finish["lethe"]["verdict"], "allow");
    let streamed_text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(
        streamed_text,
        body["choices"][0]["message"]["content"].as_str().unwrap(),
        "greedy: same text"
    );
    // No usage chunk unless asked: every chunk then has a choice.
    let plain = usage_off.events();
    assert!(plain[..plain.len() - 1]
        .iter()
        .all(|e| serde_json::from_str::<Value>(e).unwrap()["choices"][0].is_object()));

    let events = completion.events();
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(events.last().unwrap(), "[DONE]");

    // Errors: OpenAI's shape, the right status, `param` named, nothing echoed.
    let addr = http.clone();
    let errors = blocking(move || {
        let chat = |extra: Value| {
            let mut body = json!({"messages": [{"role": "user", "content": "hello"}]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            post(&addr, "/v1/chat/completions", t, &body)
        };
        vec![
            (chat(json!({"n": 2})), 400, Some("n")),
            (chat(json!({"tools": [{"type": "function", "function": {"name": "f"}}]})), 400, Some("tools")),
            (chat(json!({"temperature": -3})), 400, Some("temperature")),
            (chat(json!({"max_tokens": 0})), 400, Some("max_tokens")),
            (chat(json!({"model": "gpt-4o"})), 404, Some("model")),
            (post(&addr, "/v1/completions", t, &json!({"prompt": ["a", "b"]})), 400, Some("prompt")),
            (request_raw(&addr, "{\"prompt\": \"secret words"), 400, None),
            (get(&addr, "/v1/nothing", t), 404, None),
        ]
    })
    .await;
    for (reply, status, param) in errors {
        assert_eq!(reply.status, status, "{}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["param"].as_str(), param, "{}", reply.body);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty() && !m.contains("secret")));
        assert!(error["type"].is_string());
    }

    let metrics = scrape(&server.metrics_addr);
    let count = |route: &str, status: &str| {
        metric_value(
            &metrics,
            &["lethe_http_requests_total", &format!("route=\"{route}\""), &format!("status=\"{status}\"")],
        )
    };
    assert!(count("/v1/chat/completions", "200") >= 3.0, "{metrics}");
    assert!(count("/v1/completions", "401") >= 2.0, "{metrics}");
    assert!(
        metric_value(&metrics, &["lethe_generations_total", "upstream=\"local\"", "outcome=\"clean\""])
            >= 4.0
    );
}

fn request_raw(addr: &str, body: &str) -> Reply {
    common::http::request(addr, "POST", "/v1/completions", Some(TOKEN), Some(body))
}

const PASSAGE: &str =
    "Marisol Venkataraman-Oduya was born on 14 March 1987 in Port Alder, a fishing town on the \
    northern coast of Tasveria. Her mother repaired radios and her father ran a ferry between the islands of \
    Kell and Ormsby. She studied marine biology at the University of Lindqvist, where she wrote a thesis on \
    the migration of the spotted lanternfish.";

/// The passage as an engine streams it: one token per chunk, words split mid-way.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split_inclusive(' ') {
        let cut = word.char_indices().nth(word.chars().count() / 2).map_or(word.len(), |(i, _)| i);
        if cut > 0 && cut < word.len() {
            out.push(word[..cut].to_string());
            out.push(word[cut..].to_string());
        } else {
            out.push(word.to_string());
        }
    }
    out
}

fn chat_chunk(content: &str) -> String {
    json!({"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
        .to_string()
}

const FINISH: &str = r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;

/// What the fake engine saw of one scripted exchange.
#[derive(Debug, Default)]
struct Seen {
    /// When Lethe closed the connection while the script was still sending, and how many
    /// chunks of it were left.
    closed_at: Option<Instant>,
    unsent: usize,
    request: Value,
}

/// The scripted engine on a free loopback port: its address, and what it saw.
async fn start_fake_engine() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    let engine = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = engine.local_addr().unwrap();
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(fake_engine(engine, seen_tx));
    (addr, seen)
}

/// Serves one scripted exchange per connection: the script is picked by the last word of the
/// request's last message. Sends each event in two writes split mid-event, with pauses, and
/// watches for Lethe closing the socket.
async fn fake_engine(listener: tokio::net::TcpListener, seen: tokio::sync::mpsc::UnboundedSender<Seen>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { return };
        let seen = seen.clone();
        tokio::spawn(async move {
            let (method, request) = read_request(&mut sock).await;
            if method == "GET" {
                let list = r#"{"object":"list","data":[{"id":"big-model","object":"model"}]}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{list}",
                    list.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                return;
            }
            let last =
                request["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str());
            let script = last.unwrap_or("").rsplit(' ').next().unwrap_or("").to_string();
            let ok = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
            let (head, events): (String, Vec<String>) = match script.as_str() {
                "quirks" => (
                    ok.into(),
                    vec![
                        ": ping - 2026-12-07\r\n\r\n".into(),
                        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\r\n\r\n".into(),
                        format!("data: {}\r\n\r\n", chat_chunk("Tomatoes like ")),
                        format!("data: {}\n\n", chat_chunk("sun, water and patience.")),
                        format!("data: {FINISH}\n\n"),
                        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":7,\"total_tokens\":16}}\n\n".into(),
                        // No [DONE]: the connection just closes.
                    ],
                ),
                "passage" => {
                    let mut events: Vec<String> =
                        tokens(PASSAGE).iter().map(|t| format!("data: {}\n\n", chat_chunk(t))).collect();
                    // Filler after the passage: a long tail the engine would keep generating.
                    events.extend((0..400).map(|_| format!("data: {}\n\n", chat_chunk("and so on "))));
                    events.push(format!("data: {FINISH}\n\ndata: [DONE]\n\n"));
                    (ok.into(), events)
                }
                "stringerror" => (
                    ok.into(),
                    vec![format!("data: {}\n\n", chat_chunk("Partial answer ")), "data: {\"error\":\"engine fell over\"}\n\n".into()],
                ),
                "latebreak" => {
                    let words = "Tomatoes need sun and water and a little patience, and good soil helps them grow tall and sweet every single summer";
                    let mut events: Vec<String> =
                        words.split_inclusive(' ').map(|w| format!("data: {}\n\n", chat_chunk(w))).collect();
                    events.push("data: {\"error\":{\"message\":\"engine fell over\",\"code\":500}}\n\n".into());
                    (ok.into(), events)
                }
                // One chunk, then silence until Lethe closes the connection (below).
                "stall" => (ok.into(), vec![format!("data: {}\n\n", chat_chunk("Thinking "))]),
                "earlydone" => (ok.into(), vec![format!("data: {}\n\n", chat_chunk("Cut short ")), "data: [DONE]\n\n".into()]),
                "busy" => ("HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".into(), vec![]),
                "badkey" => ("HTTP/1.1 401 Unauthorized\r\ncontent-length: 31\r\nconnection: close\r\n\r\n{\"detail\":\"Invalid API key\"}   ".into(), vec![]),
                _ => ("HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 40\r\nconnection: close\r\n\r\n{\"error\":{\"message\":\"messages invalid\"}}".into(), vec![]),
            };
            let mut report = Seen { request, ..Default::default() };
            let (mut rd, mut wr) = sock.split();
            if wr.write_all(head.as_bytes()).await.is_err() {
                let _ = seen.send(report);
                return;
            }
            let mut buf = [0u8; 64];
            for (i, event) in events.iter().enumerate() {
                let (a, b) = event.as_bytes().split_at(event.len() / 2);
                let wrote = async {
                    wr.write_all(a).await?;
                    wr.flush().await?;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    wr.write_all(b).await?;
                    wr.flush().await
                };
                // Lethe never sends after its request: a read returning means it closed.
                let closed = tokio::select! {
                    w = wrote => w.is_err(),
                    _ = rd.read(&mut buf) => true,
                };
                let closed = closed
                    || tokio::select! {
                        _ = rd.read(&mut buf) => true,
                        _ = tokio::time::sleep(Duration::from_millis(4)) => false,
                    };
                if closed {
                    report.closed_at = Some(Instant::now());
                    report.unsent = events.len() - i;
                    break;
                }
            }
            if script == "stall" && report.closed_at.is_none() {
                tokio::select! {
                    _ = rd.read(&mut buf) => report.closed_at = Some(Instant::now()),
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
            let _ = seen.send(report);
        });
    }
}

/// The method and the JSON body (null when there is none) of one request.
async fn read_request(sock: &mut tokio::net::TcpStream) -> (String, Value) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request ended early");
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if raw.len() >= at + 4 + length {
                let method = head.split(' ').next().unwrap_or("").to_ascii_uppercase();
                let body = serde_json::from_slice(&raw[at + 4..at + 4 + length]).unwrap_or(Value::Null);
                return (method, body);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mode_guards_a_scripted_engine() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (engine_addr, mut seen) = start_fake_engine().await;

    let upstream = format!(
        "[[upstream]]\nname = \"fake\"\nurl = \"http://{engine_addr}/v1\"\nmodels = [\"big-model\"]\n\n"
    );
    let config = forget_config_of(dir.path(), PASSAGE, "block", &upstream);
    let http = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        &model,
        &["--config", config.to_str().unwrap(), "--http-listen", &http, "--no-semantic"],
    )
    .await;

    let ask = |script: &'static str, stream: bool| {
        let addr = http.clone();
        blocking(move || {
            post(
                &addr,
                "/v1/chat/completions",
                None,
                &json!({"model": "big-model", "stream": stream, "stream_options": {"include_usage": true},
                        "max_tokens": 500, "messages": [{"role": "user", "content": format!("please {script}")}]}),
            )
        })
    };

    let addr = http.clone();
    let models = blocking(move || get(&addr, "/v1/models", None)).await.json();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"big-model"), "{models}");

    // Quirks: comments, \r\n, a null first delta, usage in its own chunk, no [DONE].
    let quirks = ask("quirks", true).await;
    assert_eq!(quirks.status, 200, "{}", quirks.body);
    let events = quirks.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Tomatoes like sun, water and patience.");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 16);
    assert!(chunks.iter().all(|c| c["model"] == "big-model"));
    let request = seen.recv().await.unwrap().request;
    assert_eq!((request["stream"].as_bool(), request["model"].as_str()), (Some(true), Some("big-model")));
    assert_eq!(request["stream_options"]["include_usage"], true);
    let unary = ask("quirks", false).await;
    assert_eq!(unary.json()["choices"][0]["message"]["content"], "Tomatoes like sun, water and patience.");
    assert_eq!(unary.json()["usage"]["prompt_tokens"], 9);
    seen.recv().await.unwrap();

    // The forgotten passage, one token per chunk: blocked, nothing of it delivered, and the
    // engine's connection closed long before its script ends.
    let blocked = ask("passage", true).await;
    let client_done = Instant::now();
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    let events = blocked.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(longest_shared_run(&text, PASSAGE) < 8, "delivered {text:?}");
    let finish = chunks.iter().find(|c| c["choices"][0]["finish_reason"].is_string()).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(finish["lethe"]["verdict"], "block");
    assert_eq!(finish["lethe"]["matches"][0]["forget_set"], "people");
    let report = seen.recv().await.unwrap();
    let closed_at = report.closed_at.expect("Lethe should close the engine's connection after the block");
    assert!(report.unsent > 300, "the engine sent most of its script: {} chunks left", report.unsent);
    eprintln!(
        "engine saw the close {:?} after the client's stream ended ({} chunks unsent)",
        closed_at.saturating_duration_since(client_done),
        report.unsent
    );
    let unary = ask("passage", false).await;
    let body = unary.json();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter", "{body}");
    assert!(longest_shared_run(body["choices"][0]["message"]["content"].as_str().unwrap(), PASSAGE) < 8);
    assert!(seen.recv().await.unwrap().closed_at.is_some());

    // Failures before any text was cleared get real statuses.
    for (script, status, code) in [
        ("stringerror", 502, "upstream_truncated"),
        ("earlydone", 502, "upstream_truncated"),
        ("busy", 429, "upstream_busy"),
        ("badkey", 502, "upstream_auth_failed"),
    ] {
        let reply = ask(script, true).await;
        assert_eq!(reply.status, status, "{script}: {}", reply.body);
        assert_eq!(reply.json()["error"]["code"], code, "{script}");
        if script == "busy" {
            assert_eq!(reply.header("retry-after"), Some("7"));
        }
        seen.recv().await.unwrap();
    }
    // A failure after cleared text was sent: an error event, then [DONE]; what the guard still
    // held back is not delivered.
    let late = ask("latebreak", true).await;
    assert_eq!(late.status, 200, "{}", late.body);
    let events = late.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let error: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(error["error"]["code"], "upstream_truncated", "{events:?}");
    assert!(!late.body.contains("fell over"), "the engine's message reached the client");
    let text: String = events[..events.len() - 2]
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(String::from))
        .collect();
    assert!(text.starts_with("Tomatoes need sun") && !text.contains("summer"), "{text:?}");
    seen.recv().await.unwrap();

    let rejected = ask("other", false).await;
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    assert!(rejected.json()["error"]["message"].as_str().unwrap().contains("messages invalid"));
    seen.recv().await.unwrap();

    // gRPC reaches the upstream too, through `model`.
    let mut client = server.client().await;
    let reply = client
        .generate(lethe::proto::GenerateRequest {
            messages: vec![lethe::proto::ChatMessage {
                role: "user".into(),
                content: "please quirks".into(),
            }],
            model: Some("big-model".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, "Tomatoes like sun, water and patience.");
    seen.recv().await.unwrap();
    let unknown = client
        .generate(lethe::proto::GenerateRequest {
            prompt: "x".into(),
            model: Some("nope".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let metrics = scrape(&server.metrics_addr);
    let value = |parts: &[&str]| metric_value(&metrics, parts);
    assert_eq!(
        value(&["lethe_generations_total", "upstream=\"fake\"", "outcome=\"blocked\""]),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        value(&["lethe_generations_total", "upstream=\"fake\"", "outcome=\"clean\""]),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        value(&["lethe_upstream_requests_total", "upstream=\"fake\"", "result=\"2xx\""]),
        8.0,
        "{metrics}"
    );
    assert_eq!(
        value(&["lethe_upstream_requests_total", "upstream=\"fake\"", "result=\"4xx\""]),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        value(&["lethe_upstream_stream_errors_total", "upstream=\"fake\"", "kind=\"error_event\""]),
        2.0
    );
    assert_eq!(
        value(&["lethe_upstream_stream_errors_total", "upstream=\"fake\"", "kind=\"truncated\""]),
        1.0
    );
    assert!(value(&["lethe_guard_matches_total", "upstream=\"fake\"", "forget_set=\"people\""]) >= 2.0);
    assert!(!metrics.contains("big-model"), "a client-supplied model id became a label");
    assert_eq!(value(&["lethe_upstream_up", "upstream=\"fake\""]), 1.0, "{metrics}");
    assert!(!server.logs().contains("Venkataraman"), "forgotten text in the logs");
}

/// A server started with only `--upstream` (no `--model`, no `model` key) loads no generator,
/// though the default model file is present: it serves `/v1` through the upstream and guards
/// it, refuses requests for a local model with an actionable error, and can be given a model
/// later by ReloadModel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_only_an_upstream_loads_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let (engine_addr, mut seen) = start_fake_engine().await;

    // A `mask` set: without a local model nothing can be masked, so it blocks the upstream.
    let config = forget_config_of(dir.path(), PASSAGE, "mask", "");
    let http = format!("127.0.0.1:{}", free_port());
    let upstream = format!("http://{engine_addr}/v1");
    let server = Server::start_without_model(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--http-listen",
        &http,
        "--no-semantic",
    ])
    .await;
    assert!(server.logs().contains("no local model"), "{}", server.logs());

    // No local model: GetModelInfo says so, and so does a request that names no model.
    let mut client = server.client().await;
    let info = client.get_model_info(lethe::proto::GetModelInfoRequest {}).await.unwrap_err();
    assert_eq!(info.code(), tonic::Code::FailedPrecondition, "{info:?}");
    assert!(info.message().contains("no local model"), "{}", info.message());
    let local = client.generate(common::greedy("Hello", 4)).await.unwrap_err();
    assert_eq!(local.code(), tonic::Code::FailedPrecondition, "{local:?}");
    assert!(local.message().contains("--model"), "{}", local.message());
    let metrics = scrape(&server.metrics_addr);
    assert!(!metrics.contains("lethe_model_info"), "a model was announced:\n{metrics}");
    // Check needs no model: the guard is all there.
    let check = client
        .check(lethe::proto::CheckRequest { text: PASSAGE.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(check.matched && check.matches[0].forget_set == "people", "{check:?}");

    // /v1/models lists only what the upstream lists (after its first probe).
    let listed = {
        let mut tries = 0;
        loop {
            let addr = http.clone();
            let models = blocking(move || get(&addr, "/v1/models", None)).await.json();
            let ids: Vec<String> = models["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            tries += 1;
            if !ids.is_empty() || tries == 100 {
                break ids;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(listed, ["big-model"]);

    let ask = |script: &'static str, model: Option<&'static str>| {
        let addr = http.clone();
        blocking(move || {
            let mut body = json!({"stream": true, "max_tokens": 500,
                                  "messages": [{"role": "user", "content": format!("please {script}")}]});
            if let Some(model) = model {
                body["model"] = json!(model);
            }
            post(&addr, "/v1/chat/completions", None, &body)
        })
    };
    let served = ask("quirks", Some("big-model")).await;
    assert_eq!(served.status, 200, "{}", served.body);
    let text: String = served
        .events()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(String::from))
        .collect();
    assert_eq!(text, "Tomatoes like sun, water and patience.");
    seen.recv().await.unwrap();

    // The guard works without a model's tokenizer; the mask set blocks.
    let blocked = ask("passage", Some("big-model")).await;
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    let chunks: Vec<Value> = blocked.events().iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(longest_shared_run(&text, PASSAGE) < 8, "delivered {text:?}");
    let finish = chunks.iter().find(|c| c["choices"][0]["finish_reason"].is_string()).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert!(seen.recv().await.unwrap().closed_at.is_some());

    // A request without a model has nowhere to go: a 400 naming the field.
    let no_model = ask("quirks", None).await;
    let error = no_model.json();
    assert_eq!(no_model.status, 400, "{error}");
    assert_eq!(
        (error["error"]["code"].as_str(), error["error"]["param"].as_str()),
        (Some("no_local_model"), Some("model"))
    );

    // ReloadModel still works: it gives the server its first local model.
    let model = tiny_model(dir.path());
    let mut admin = lethe::proto::forget_admin_client::ForgetAdminClient::new(server.channel().await);
    let reloaded = admin
        .reload_model(lethe::proto::ReloadModelRequest { path: model.to_str().unwrap().into() })
        .await
        .unwrap()
        .into_inner();
    let info = client.get_model_info(lethe::proto::GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.name, reloaded.name);
    client.generate(common::greedy("Hello", 4)).await.unwrap();
    assert!(!server.logs().contains("Venkataraman"), "forgotten text in the logs");
}

/// A CA certificate (PEM) and its issuer, made by rcgen as tests/tls.rs does.
fn test_ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Terminates TLS (a certificate for 127.0.0.1 that `ca` signed) on `listener` and relays each
/// connection to the plaintext fake engine at `engine`: an HTTPS engine with the same scripts.
async fn tls_front(
    listener: tokio::net::TcpListener,
    engine: std::net::SocketAddr,
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
) {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends here.
                let Ok(mut tls) = acceptor.accept(sock).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(engine).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
}

/// `https://` upstreams: verified against their `tls_ca_file`, guarded as plaintext ones are,
/// and one whose certificate the CA file does not vouch for is unreachable (502), never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_their_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (engine_addr, mut seen) = start_fake_engine().await;
    let (authority, rogue) = (test_ca("Engine CA"), test_ca("Rogue CA"));
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    tls_front(front, engine_addr, &authority).await;
    let (ca, rogue_ca) = (dir.path().join("ca.pem"), dir.path().join("rogue.pem"));
    std::fs::write(&ca, authority.pem()).unwrap();
    std::fs::write(&rogue_ca, rogue.pem()).unwrap();

    let list = dir.path().join("forget.jsonl");
    let entry = json!({"id": "bio-1", "set": "people", "kind": "document", "text": PASSAGE});
    // A watched term the quirks script says: a leak, counted by the upstream it came from.
    let term = json!({"id": "t-1", "set": "watched", "kind": "term", "text": "patience"});
    std::fs::write(&list, format!("{entry}\n{term}\n")).unwrap();
    let config = dir.path().join("lethe.toml");
    std::fs::write(
        &config,
        format!(
            "[guard]\nforget = {list:?}\n[guard.sets.watched]\naction = \"monitor\"\n\n[[upstream]]\nname = \"secure\"\nurl = \"https://{front_addr}/v1\"\nmodels = [\"big-model\"]\ntls_ca_file = {ca:?}\n\n[[upstream]]\nname = \"mistrusted\"\nurl = \"https://{front_addr}/v1\"\nmodels = [\"other-model\"]\ntls_ca_file = {rogue_ca:?}\n",
            list = list.display().to_string(),
            ca = ca.display().to_string(),
            rogue_ca = rogue_ca.display().to_string(),
        ),
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let server = Server::start_without_model(&[
        "--config",
        config.to_str().unwrap(),
        "--http-listen",
        &http,
        "--no-semantic",
    ])
    .await;

    let ask = |script: &'static str, model: &'static str| {
        let addr = http.clone();
        blocking(move || {
            post(
                &addr,
                "/v1/chat/completions",
                None,
                &json!({"model": model, "stream": true, "max_tokens": 500,
                        "messages": [{"role": "user", "content": format!("please {script}")}]}),
            )
        })
    };
    let served = ask("quirks", "big-model").await;
    assert_eq!(served.status, 200, "{}", served.body);
    let text: String = served
        .events()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(String::from))
        .collect();
    assert_eq!(text, "Tomatoes like sun, water and patience.");
    assert_eq!(seen.recv().await.unwrap().request["model"], "big-model");

    // Over TLS too the block closes the engine's connection early.
    let blocked = ask("passage", "big-model").await;
    let chunks: Vec<Value> = blocked.events().iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(longest_shared_run(&text, PASSAGE) < 8, "delivered {text:?}");
    let finish = chunks.iter().find(|c| c["choices"][0]["finish_reason"].is_string()).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    let report = seen.recv().await.unwrap();
    assert!(report.closed_at.is_some() && report.unsent > 300, "{report:?}");

    // A certificate the CA file did not sign: unreachable, and nothing reached the engine.
    let refused = ask("quirks", "other-model").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "upstream_unavailable");
    assert!(seen.try_recv().is_err(), "a request went to an engine whose certificate is not trusted");

    // The probes see the same: up over TLS, down where the certificate is not trusted.
    let mut metrics = scrape(&server.metrics_addr);
    for _ in 0..100 {
        if metric_value(&metrics, &["lethe_upstream_up", "upstream=\"secure\""]) == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = scrape(&server.metrics_addr);
    }
    assert_eq!(metric_value(&metrics, &["lethe_upstream_up", "upstream=\"secure\""]), 1.0, "{metrics}");
    let mistrusted = |l: &&str| l.starts_with("lethe_upstream_up") && l.contains("upstream=\"mistrusted\"");
    assert!(metrics.lines().any(|l| mistrusted(&l)), "{metrics}");
    assert_eq!(metric_value(&metrics, &["lethe_upstream_up", "upstream=\"mistrusted\""]), 0.0, "{metrics}");
    assert!(server.logs().contains("TLS handshake"), "{}", server.logs());
    let leaks = |upstream: &str, set: &str| {
        let (upstream, set) = (format!("upstream=\"{upstream}\""), format!("forget_set=\"{set}\""));
        metric_value(&metrics, &["lethe_leaks_total", &upstream, &set, "reason=\"monitor\""])
    };
    assert_eq!(leaks("secure", "watched"), 1.0, "{metrics}");
    assert_eq!(leaks("mistrusted", "watched"), 0.0, "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("lethe_leaks_total")
            && l.contains("upstream=\"mistrusted\"")
            && l.contains("forget_set=\"people\"")),
        "leak counters exist at 0 before the first leak:\n{metrics}"
    );
    assert!(
        !metrics.lines().any(|l| l.starts_with("lethe_leaks_total") && l.contains("upstream=\"local\"")),
        "no local model, no local leak series:\n{metrics}"
    );
}

/// A gRPC deadline reaches forwarded requests: a stalled engine's stream ends with
/// DEADLINE_EXCEEDED (not CANCELLED, not an idle timeout a minute later), unary and streamed,
/// and the engine's connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_deadlines_end_forwarded_requests() {
    let (engine_addr, mut seen) = start_fake_engine().await;
    let upstream = format!("http://{engine_addr}/v1");
    let server = Server::start_without_model(&["--upstream", &upstream, "--no-semantic"]).await;
    let mut client = server.client().await;
    let stalled = || {
        let mut request = tonic::Request::new(lethe::proto::GenerateRequest {
            messages: vec![lethe::proto::ChatMessage { role: "user".into(), content: "please stall".into() }],
            model: Some("big-model".into()),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(1));
        request
    };

    let unary = client.generate(stalled()).await.unwrap_err();
    assert_eq!(unary.code(), tonic::Code::DeadlineExceeded, "{unary:?}");
    assert!(seen.recv().await.unwrap().closed_at.is_some(), "the engine's connection stayed open");

    let mut stream = client.generate_stream(stalled()).await.unwrap().into_inner();
    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::DeadlineExceeded, "{ended:?}");
    assert!(ended.message().contains("upstream"), "{}", ended.message());
    assert!(seen.recv().await.unwrap().closed_at.is_some(), "the engine's connection stayed open");
}
