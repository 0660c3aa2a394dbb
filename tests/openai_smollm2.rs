//! End-to-end on the real SmolLM2 through the OpenAI-compatible front door: a copied passage
//! is blocked with `finish_reason: "content_filter"`, and Lethe in front of Lethe (instance A
//! serves the model with no forget list, instance B runs `--upstream` A's `/v1` with the
//! passage forgotten): what leaks through A is blocked through B, and B serves two streams
//! at once and survives a client that leaves mid-stream.
mod common;

use common::http::{get, post, Reply};
use common::passage::{forget_config, longest_shared_run, BIO};
use common::{free_port, metric_value, scrape, smollm2, tiny_model, Server};
use serde_json::{json, Value};

fn copy_body(model: &str, stream: bool) -> Value {
    let first: Vec<&str> = BIO.split_whitespace().take(4).collect();
    json!({
        "model": model,
        "prompt": format!("Text: {BIO}\n\nThe same text, copied exactly:\n{}", first.join(" ")),
        "max_tokens": 64,
        "temperature": 0,
        "stream": stream,
    })
}

/// The text and the last chunk with a finish reason of a completions stream.
fn streamed(reply: &Reply) -> (String, Value) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    let finish = chunks.iter().rev().find(|c| c["choices"][0]["finish_reason"].is_string()).cloned().unwrap();
    (text, finish)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_door_and_lethe_in_front_of_lethe_on_smollm2() {
    // A: the model, no forget list.
    let a_http = format!("127.0.0.1:{}", free_port());
    let a = Server::start(&smollm2(), &["--http-listen", &a_http, "--no-semantic"]).await;
    let addr = a_http.clone();
    let model = blocking(move || {
        get(&addr, "/v1/models", None).json()["data"][0]["id"].as_str().unwrap().to_string()
    })
    .await;
    let (addr, m) = (a_http.clone(), model.clone());
    let leaked = blocking(move || post(&addr, "/v1/completions", None, &copy_body(&m, true))).await;
    let (text, finish) = streamed(&leaked);
    assert!(longest_shared_run(&text, BIO) >= 20, "A should copy the passage: {text:?}");
    assert_eq!(finish["lethe"]["verdict"], "allow");

    // B: another Lethe with the passage forgotten, in front of A.
    let dir = tempfile::tempdir().unwrap();
    let config = forget_config(
        dir.path(),
        "block",
        &format!("[[upstream]]\nname = \"lethe-a\"\nurl = \"http://{a_http}/v1\"\nmodels = [{model:?}]\n\n"),
    );
    let b_http = format!("127.0.0.1:{}", free_port());
    let b = Server::start(
        &tiny_model(dir.path()),
        &["--config", config.to_str().unwrap(), "--http-listen", &b_http, "--no-semantic"],
    )
    .await;
    let (addr, m) = (b_http.clone(), model.clone());
    let guarded = blocking(move || post(&addr, "/v1/completions", None, &copy_body(&m, true))).await;
    let (text, finish) = streamed(&guarded);
    assert!(longest_shared_run(&text, BIO) < 8, "B delivered {text:?}");
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(finish["lethe"]["verdict"], "block");
    let (addr, m) = (b_http.clone(), model.clone());
    let unary = blocking(move || post(&addr, "/v1/completions", None, &copy_body(&m, false))).await;
    assert_eq!(unary.json()["choices"][0]["finish_reason"], "content_filter", "{}", unary.body);

    // Two streams at once through B, and a client that leaves mid-stream.
    let benign = |addr: String, m: String| {
        blocking(move || {
            post(
                &addr,
                "/v1/chat/completions",
                None,
                &json!({"model": m, "stream": true, "max_tokens": 24, "temperature": 0,
                        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                     {"role": "user", "content": "Give me three tips for growing tomatoes."}]}),
            )
        })
    };
    let (one, two) =
        tokio::join!(benign(b_http.clone(), model.clone()), benign(b_http.clone(), model.clone()));
    for reply in [one, two] {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.events().last().map(String::as_str), Some("[DONE]"));
    }
    let addr = b_http.clone();
    let body = json!({"model": model, "stream": true, "max_tokens": 200, "temperature": 0,
                      "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]})
    .to_string();
    blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut first = [0u8; 256];
        assert!(s.read(&mut first).unwrap() > 0);
        // Leaves after the head and the first chunk.
    })
    .await;
    let (addr, m) = (b_http.clone(), model.clone());
    let after = blocking(move || post(&addr, "/v1/completions", None, &copy_body(&m, false))).await;
    assert_eq!(after.status, 200, "B still serves after a client left");

    let metrics = scrape(&b.metrics_addr);
    assert!(
        metric_value(&metrics, &["lethe_generations_total", "upstream=\"lethe-a\"", "outcome=\"blocked\""])
            >= 3.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, &["lethe_generations_total", "upstream=\"local\"", "outcome=\"blocked\""]),
        0.0
    );
    let a_metrics = scrape(&a.metrics_addr);
    assert!(
        metric_value(
            &a_metrics,
            &["lethe_http_requests_total", "route=\"/v1/completions\"", "status=\"200\""]
        ) >= 4.0
    );
}

/// Queue full is 429 with `retry-after`; a client that leaves mid-stream frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_and_a_client_that_leaves_frees_its_slot() {
    let http = format!("127.0.0.1:{}", free_port());
    let _server = Server::start(
        &smollm2(),
        &[
            "--http-listen",
            &http,
            "--no-semantic",
            "--max-concurrent-generations",
            "1",
            "--max-queued-requests",
            "0",
        ],
    )
    .await;
    let addr = http.clone();
    let (busy, freed) = blocking(move || {
        use std::io::{Read, Write};
        // Holds the only slot: 1000 tokens take about a minute here.
        let body = json!({"prompt": "Tell me a long story.", "max_tokens": 1000, "ignore_eos": true, "stream": true,
                          "temperature": 0}).to_string();
        let mut held = std::net::TcpStream::connect(&addr).unwrap();
        write!(held, "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut head = [0u8; 512];
        assert!(held.read(&mut head).unwrap() > 0);
        assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
        let busy = post(&addr, "/v1/completions", None, &json!({"prompt": "Hi", "max_tokens": 2}));
        drop(held);
        // The next request is admitted once the abandoned generation has stopped.
        let freed = (0..200).find_map(|_| {
            let reply = post(&addr, "/v1/completions", None, &json!({"prompt": "Hi", "max_tokens": 2}));
            if reply.status == 429 {
                std::thread::sleep(std::time::Duration::from_millis(50));
                None
            } else {
                Some(reply)
            }
        });
        (busy, freed)
    })
    .await;
    assert_eq!(busy.status, 429, "{}", busy.body);
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(busy.json()["error"]["type"], "rate_limit_error");
    let freed = freed.expect("the abandoned generation kept its slot");
    assert_eq!(freed.status, 200, "{}", freed.body);
}
