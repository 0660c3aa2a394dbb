//! End-to-end: the real `lethe` binary serving the real SmolLM2-135M, called over gRPC.
mod common;

use common::{chat, exactly, greedy, smollm2, Server};
use lethe::proto::{FinishReason, GenerateRequest, GetModelInfoRequest, Verdict};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

async fn stream_text(
    server: &Server,
    req: GenerateRequest,
) -> (String, lethe::proto::GenerateStreamResponse) {
    let mut stream = server.client().await.generate_stream(req).await.unwrap().into_inner();
    let mut text = String::new();
    let mut last = None;
    while let Some(msg) = stream.next().await {
        let msg = msg.unwrap();
        text.push_str(&msg.text);
        last = Some(msg);
    }
    (text, last.expect("at least one message"))
}

#[tokio::test]
async fn answers_paris_and_stream_equals_unary() {
    let server = Server::start(&smollm2(), &[]).await;
    let mut client = server.client().await;
    let req = chat("What is the capital of France?", 32);
    let reply = client.generate(req.clone()).await.unwrap().into_inner();
    assert!(reply.text.contains("Paris"), "{:?}", reply.text);
    assert_eq!(reply.verdict, Verdict::Allow as i32);
    assert!(!reply.request_id.is_empty());
    let usage = reply.usage.unwrap();
    assert!(usage.prompt_tokens > 10 && usage.completion_tokens > 0);

    let (streamed, last) = stream_text(&server, req).await;
    assert_eq!(streamed, reply.text);
    assert_eq!(last.finish_reason, reply.finish_reason);
    assert_ne!(last.finish_reason, FinishReason::Unspecified as i32);

    // Sampling: the same seed gives the same text, unary or streamed.
    let sampled = GenerateRequest {
        temperature: Some(0.9),
        top_p: Some(0.95),
        top_k: Some(50),
        seed: Some(1234),
        ..chat("Write a short poem about the sea.", 40)
    };
    let a = client.generate(sampled.clone()).await.unwrap().into_inner().text;
    let b = client.generate(sampled.clone()).await.unwrap().into_inner().text;
    let (c, _) = stream_text(&server, sampled).await;
    assert_eq!(a, b);
    assert_eq!(a, c);

    // With no forget list the semantic layer has nothing to find: no output is embedded.
    let metrics = common::scrape(&server.metrics_addr);
    let count = |layer: &str| {
        common::metric_value(&metrics, &["lethe_guard_layer_seconds_count", &format!("layer=\"{layer}\"")])
    };
    assert!(count("ngram") > 0.0, "{metrics}");
    assert_eq!(count("semantic"), 0.0, "{metrics}");
}

#[tokio::test]
async fn stop_strings_and_length_limits_end_the_generation() {
    let server = Server::start(&smollm2(), &[]).await;
    let mut client = server.client().await;
    let base = chat("Count from one to twenty in words, separated by commas.", 60);
    let full = client.generate(base.clone()).await.unwrap().into_inner();
    let cut_at = full.text.find(',').expect("a comma in the counting") + 1;
    let stop = full.text[cut_at..].trim_start().chars().take(3).collect::<String>();
    let stopped = client
        .generate(GenerateRequest { stop: vec![stop.clone()], ..base.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.finish_reason, FinishReason::Stop as i32);
    assert!(!stopped.text.contains(&stop));
    assert!(full.text.starts_with(&stopped.text));

    // `min_new_tokens`: the limit, not the model's end-of-sequence, ends it.
    let short = GenerateRequest { max_new_tokens: Some(3), min_new_tokens: Some(3), ..base };
    let short = client.generate(short).await.unwrap().into_inner();
    assert_eq!(short.finish_reason, FinishReason::Length as i32);
    assert_eq!(short.usage.unwrap().completion_tokens, 3);
}

#[tokio::test]
async fn health_reflection_and_model_info() {
    let server = Server::start(&smollm2(), &[]).await;
    let info = server.client().await.get_model_info(GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.served_format, "q8_0");
    assert_eq!(info.file_format, "q4_1");
    assert!(info.parameters > 100_000_000, "{}", info.parameters);
    assert_eq!(info.sha256, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");

    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies =
        reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"lethe.v1.Inference"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

#[tokio::test]
async fn invalid_requests_get_invalid_argument_with_a_reason() {
    let server =
        Server::start(&smollm2(), &["--max-request-bytes", "65536", "--max-new-tokens-limit", "512"]).await;
    let mut client = server.client().await;
    let ok = chat("Hello", 4);
    let role = |r: &str| GenerateRequest {
        messages: vec![lethe::proto::ChatMessage { role: r.into(), content: "hi".into() }],
        ..ok.clone()
    };
    let cases: Vec<(&str, GenerateRequest)> = vec![
        ("neither", GenerateRequest { messages: vec![], ..ok.clone() }),
        ("both", GenerateRequest { prompt: "x".into(), ..ok.clone() }),
        ("whitespace prompt", greedy("   \n ", 4)),
        (
            "empty message",
            GenerateRequest {
                messages: vec![lethe::proto::ChatMessage { role: "user".into(), content: String::new() }],
                ..ok.clone()
            },
        ),
        ("unknown role", role("wizard")),
        ("max_new_tokens 0", GenerateRequest { max_new_tokens: Some(0), ..ok.clone() }),
        ("max_new_tokens above limit", GenerateRequest { max_new_tokens: Some(513), ..ok.clone() }),
        ("negative temperature", GenerateRequest { temperature: Some(-0.1), ..ok.clone() }),
        ("NaN temperature", GenerateRequest { temperature: Some(f32::NAN), ..ok.clone() }),
        ("infinite temperature", GenerateRequest { temperature: Some(f32::INFINITY), ..ok.clone() }),
        ("top_p 0", GenerateRequest { top_p: Some(0.0), ..ok.clone() }),
        ("top_p above 1", GenerateRequest { top_p: Some(1.5), ..ok.clone() }),
        ("prompt beyond the context window", greedy(&"hello ".repeat(5000), 4)),
        ("request above the message limit", greedy(&"a".repeat(100_000), 4)),
        ("empty stop string", GenerateRequest { stop: vec![String::new()], ..ok.clone() }),
        ("min_new_tokens above max_new_tokens", GenerateRequest { min_new_tokens: Some(5), ..ok.clone() }),
        (
            "ignore_eos and min_new_tokens",
            GenerateRequest { ignore_eos: true, min_new_tokens: Some(2), ..ok.clone() },
        ),
    ];
    for (name, req) in cases {
        let unary = client.generate(req.clone()).await.expect_err(name);
        assert_eq!(unary.code(), Code::InvalidArgument, "{name}: {unary:?}");
        assert!(unary.message().len() > 10, "{name}: message {:?}", unary.message());
        let streamed = client.generate_stream(req).await.expect_err(name);
        assert_eq!(streamed.code(), Code::InvalidArgument, "{name} (stream): {streamed:?}");
    }
    // The server is still healthy after all that.
    assert!(client.generate(ok).await.is_ok());
}

#[tokio::test]
async fn a_full_queue_gets_resource_exhausted() {
    let server =
        Server::start(&smollm2(), &["--max-concurrent-generations", "1", "--max-queued-requests", "1"]).await;
    let mut calls = Vec::new();
    for _ in 0..5 {
        let mut client = server.client().await;
        calls.push(tokio::spawn(async move { client.generate(exactly("Once upon a time", 48)).await }));
    }
    let mut codes = Vec::new();
    for call in calls {
        codes.push(call.await.unwrap().map(|_| Code::Ok).unwrap_or_else(|s| s.code()));
    }
    let exhausted = codes.iter().filter(|c| **c == Code::ResourceExhausted).count();
    let ok = codes.iter().filter(|c| **c == Code::Ok).count();
    assert!(exhausted >= 1 && ok >= 2 && exhausted + ok == codes.len(), "{codes:?}");
}

#[tokio::test]
async fn a_short_deadline_gets_deadline_exceeded() {
    let server = Server::start(&smollm2(), &[]).await;
    let mut client = server.client().await;
    let mut req = tonic::Request::new(exactly("Tell me a long story.", 400));
    req.set_timeout(Duration::from_millis(400));
    let err = client.generate(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");

    let mut req = tonic::Request::new(exactly("Tell me a long story.", 400));
    req.set_timeout(Duration::from_millis(600));
    let mut stream = client.generate_stream(req).await.unwrap().into_inner();
    let mut status = None;
    while let Some(msg) = stream.next().await {
        if let Err(s) = msg {
            status = Some(s);
            break;
        }
    }
    assert_eq!(status.expect("the stream must fail").code(), Code::DeadlineExceeded);
}

#[tokio::test]
async fn a_dropped_stream_stops_its_generation() {
    let server =
        Server::start(&smollm2(), &["--max-concurrent-generations", "1", "--max-queued-requests", "0"]).await;
    let mut client = server.client().await;
    let mut stream =
        client.generate_stream(exactly("Tell me a long story.", 1000)).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    // With one slot and no queue, the next request is only admitted once the dropped
    // generation has stopped; it would take about a minute to finish 1000 tokens.
    let started = std::time::Instant::now();
    loop {
        match client.generate(greedy("Hi", 2)).await {
            Ok(_) => break,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(started.elapsed() < Duration::from_secs(10), "the dropped generation kept running");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let mut server = Server::start(&smollm2(), &["--drain-timeout-secs", "60"]).await;
    let mut client = server.client().await;
    let mut stream = client.generate_stream(exactly("Once upon a time", 40)).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    common::send_signal(server.pid(), "TERM");
    let mut last = None;
    while let Some(msg) = stream.next().await {
        last = Some(msg.expect("in-flight stream must finish cleanly"));
    }
    assert_eq!(last.unwrap().finish_reason, FinishReason::Length as i32);
    let status = server.wait_exit(Duration::from_secs(30)).expect("server must exit after draining");
    assert!(status.success(), "{status}");
    // And it no longer accepts connections.
    assert!(tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .is_err());
}

#[tokio::test]
async fn a_drain_that_cuts_requests_off_exits_non_zero() {
    let mut server = Server::start(&smollm2(), &["--drain-timeout-secs", "0.2"]).await;
    let mut client = server.client().await;
    let mut stream = client.generate_stream(exactly("Once upon a time", 200)).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    common::send_signal(server.pid(), "TERM");
    let status = server.wait_exit(Duration::from_secs(30)).expect("server must exit at the drain timeout");
    assert!(!status.success(), "requests were cut off: {status}");
    assert!(server.logs().contains("drain timeout"), "{}", server.logs());
}
