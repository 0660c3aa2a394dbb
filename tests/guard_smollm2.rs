//! End-to-end: the guard on the real SmolLM2. The stock model has memorized no well-known
//! text, so it is made to produce forgotten content the way users can: asked to copy a passage
//! given in its prompt. Without a forget list it copies the passage; with the passage in a
//! forget set, block, mask and monitor each do what they say.
mod common;

use common::passage::{forget_config, longest_shared_run, BIO};
use common::{metric_value, scrape, smollm2, Server};
use lethe::proto::{FinishReason, GenerateRequest, Layer, Verdict};
use tokio_stream::StreamExt;

fn copy_request() -> GenerateRequest {
    let first: Vec<&str> = BIO.split_whitespace().take(4).collect();
    GenerateRequest {
        prompt: format!("Text: {BIO}\n\nThe same text, copied exactly:\n{}", first.join(" ")),
        max_new_tokens: Some(64),
        temperature: Some(0.0),
        ..Default::default()
    }
}

fn benign_request() -> GenerateRequest {
    common::chat("Give me three tips for growing tomatoes.", 48)
}

async fn forget_server(action: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = forget_config(dir.path(), action, "");
    let server = Server::start(&smollm2(), &["--config", config.to_str().unwrap()]).await;
    (server, dir)
}

async fn stream(server: &Server, req: GenerateRequest) -> (String, lethe::proto::GenerateStreamResponse) {
    let mut s = server.client().await.generate_stream(req).await.unwrap().into_inner();
    let (mut text, mut last) = (String::new(), None);
    while let Some(msg) = s.next().await {
        let msg = msg.unwrap();
        text.push_str(&msg.text);
        last = Some(msg);
    }
    (text, last.unwrap())
}

#[tokio::test]
async fn block_mask_and_monitor_on_a_copied_passage() {
    // Baseline: no forget list, the model copies the passage.
    let plain = Server::start(&smollm2(), &[]).await;
    let mut client = plain.client().await;
    let leaked = client.generate(copy_request()).await.unwrap().into_inner();
    assert!(
        longest_shared_run(&leaked.text, BIO) >= 20,
        "the model should copy the passage: {:?}",
        leaked.text
    );
    assert_eq!(leaked.verdict, Verdict::Allow as i32);
    let benign = client.generate(benign_request()).await.unwrap().into_inner();
    drop(plain);

    // Block: the stream ends with BLOCK and no 8-word run of the passage reached the client.
    let (server, _dir) = forget_server("block").await;
    let (text, last) = stream(&server, copy_request()).await;
    assert_eq!(last.verdict, Verdict::Block as i32, "{text:?}");
    assert_eq!(last.finish_reason, FinishReason::Blocked as i32);
    assert!(longest_shared_run(&text, BIO) < 8, "delivered {text:?}");
    let m = &last.matches[0];
    assert_eq!((m.forget_set.as_str(), m.entry_id.as_str()), ("people", "bio-1"));
    assert!([Layer::Ngram, Layer::Fact, Layer::Semantic].iter().any(|&l| m.layer == l as i32), "{m:?}");
    let unary = server.client().await.generate(copy_request()).await.unwrap().into_inner();
    assert_eq!(unary.verdict, Verdict::Block as i32);
    assert!(longest_shared_run(&unary.text, BIO) < 8, "delivered {:?}", unary.text);
    // A benign prompt is unaffected.
    let same = server.client().await.generate(benign_request()).await.unwrap().into_inner();
    assert_eq!(same.verdict, Verdict::Allow as i32);
    assert_eq!(same.text, benign.text);
    let metrics = scrape(&server.metrics_addr);
    assert_eq!(metric_value(&metrics, &["lethe_generations_total", "outcome=\"blocked\""]), 2.0, "{metrics}");
    assert!(
        metric_value(&metrics, &["lethe_prompts_with_forgotten_content_total", "forget_set=\"people\""])
            >= 2.0
    );
    drop(server);

    // Mask: delivered with SUPPRESS, and no forgotten token n-gram in the output.
    let (server, _dir) = forget_server("mask").await;
    let masked = server.client().await.generate(copy_request()).await.unwrap().into_inner();
    assert_eq!(masked.verdict, Verdict::Suppress as i32, "{:?}", masked.text);
    assert_ne!(masked.finish_reason, FinishReason::Blocked as i32);
    let model = lethe::model::Model::load(&smollm2(), lethe::model::ServedFormat::Q8_0).unwrap();
    let cfg = lethe::guard::GuardConfig { embedder: None, ..Default::default() };
    let entries = vec![lethe::forget::Entry {
        id: "bio-1".into(),
        set: "people".into(),
        kind: lethe::forget::Kind::Document,
        text: BIO.into(),
        aliases: vec![],
        term_type: None,
        fingerprints: None,
    }];
    let mut mask_cfg = cfg.clone();
    mask_cfg.default_policy.action = lethe::forget::Action::Mask;
    let guard = lethe::guard::Guard::build(&entries, &mask_cfg, Some(&model), None, 1).unwrap();
    let out_tokens = model.encode(&masked.text).unwrap();
    assert!(!guard.contains_forgotten_tokens(&out_tokens), "forgotten token n-gram in {:?}", masked.text);
    drop(server);

    // Monitor: delivered unchanged, reported, and counted as leaked.
    let (server, _dir) = forget_server("monitor").await;
    let (text, last) = stream(&server, copy_request()).await;
    assert_eq!(text, leaked.text);
    assert_eq!(last.verdict, Verdict::Allow as i32);
    assert!(last.matches.iter().any(|m| m.forget_set == "people"), "{last:?}");
    let metrics = scrape(&server.metrics_addr);
    assert_eq!(metric_value(&metrics, &["lethe_generations_total", "outcome=\"leaked\""]), 1.0, "{metrics}");
}

#[tokio::test]
async fn check_reports_set_entry_layer_and_span() {
    let (server, _dir) = forget_server("block").await;
    let mut client = server.client().await;
    let text = format!("Note — {}", BIO.to_uppercase());
    let reply = client
        .check(lethe::proto::CheckRequest { text: text.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.matched);
    let m = reply.matches.iter().find(|m| m.layer == Layer::Ngram as i32).expect("an n-gram match");
    assert_eq!((m.forget_set.as_str(), m.entry_id.as_str()), ("people", "bio-1"));
    let chars: Vec<char> = text.chars().collect();
    let span: String = chars[m.char_start as usize..m.char_end as usize].iter().collect();
    assert!(span.starts_with("MARISOL"), "{span:?}");
    let clean = client
        .check(lethe::proto::CheckRequest {
            text: "Tomatoes like sun and water.".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!clean.matched);
    let unknown = client
        .check(lethe::proto::CheckRequest {
            text: "x".into(),
            forget_sets: vec!["nope".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn an_entry_added_over_the_admin_api_blocks_the_next_generation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&smollm2(), &["--data-dir", data.to_str().unwrap()]).await;
    let (text, last) = stream(&server, copy_request()).await;
    assert_eq!(last.verdict, Verdict::Allow as i32);
    assert!(longest_shared_run(&text, BIO) >= 20);

    let mut admin = lethe::proto::forget_admin_client::ForgetAdminClient::new(server.channel().await);
    let entry = lethe::proto::ForgetEntry {
        id: "bio-1".into(),
        kind: lethe::proto::EntryKind::Document as i32,
        text: BIO.into(),
        aliases: vec![],
        term_type: String::new(),
    };
    let policy = lethe::proto::SetPolicy { action: lethe::proto::Action::Block as i32, ..Default::default() };
    admin
        .put_set(lethe::proto::PutSetRequest {
            set: "people".into(),
            policy: Some(policy),
            entries: vec![entry],
        })
        .await
        .unwrap();
    let (text, last) = stream(&server, copy_request()).await;
    assert_eq!(last.verdict, Verdict::Block as i32, "{text:?}");
    assert!(longest_shared_run(&text, BIO) < 8, "delivered {text:?}");
}

/// The passage laid out in a disguise (a Markdown table of four words a row, or its words
/// joined by dashes), and a request to copy it in the same form.
fn disguised_copy_request(disguise: &str) -> GenerateRequest {
    let words: Vec<&str> = BIO.split_whitespace().collect();
    let (text, start) = match disguise {
        "table" => {
            let rows: Vec<String> = words.chunks(4).map(|r| format!("| {} |", r.join(" | "))).collect();
            let header = "| a | b | c | d |\n|---|---|---|---|";
            (format!("{header}\n{}", rows.join("\n")), format!("{header}\n{}", rows[0]))
        }
        "dashes" => (words.join("-"), words[..4].join("-")),
        _ => unreachable!(),
    };
    GenerateRequest {
        prompt: format!("Text:\n{text}\n\nThe same text, copied exactly:\n{start}"),
        max_new_tokens: Some(96),
        temperature: Some(0.0),
        ..Default::default()
    }
}

/// The words of a disguised copy, for comparing runs with the passage.
fn undisguised(text: &str) -> String {
    text.replace(['|', '-'], " ")
}

#[tokio::test]
async fn a_copy_as_a_markdown_table_or_joined_by_dashes_is_blocked_in_the_stream() {
    // Baseline: with no forget list the model copies the passage in each disguise.
    let plain = Server::start(&smollm2(), &[]).await;
    for disguise in ["table", "dashes"] {
        let leaked =
            plain.client().await.generate(disguised_copy_request(disguise)).await.unwrap().into_inner();
        // The small model copies a run at least as long as the longest the guard lets through.
        assert!(
            longest_shared_run(&undisguised(&leaked.text), BIO) >= 8,
            "{disguise}: the model should copy the passage: {:?}",
            leaked.text
        );
    }
    drop(plain);

    let (server, _dir) = forget_server("block").await;
    for disguise in ["table", "dashes"] {
        let (text, last) = stream(&server, disguised_copy_request(disguise)).await;
        assert_eq!(last.verdict, Verdict::Block as i32, "{disguise}: {text:?}");
        assert_eq!(last.finish_reason, FinishReason::Blocked as i32);
        assert!(longest_shared_run(&undisguised(&text), BIO) < 8, "{disguise}: delivered {text:?}");
    }
}

#[tokio::test]
async fn a_check_is_bounded_by_its_size_limit_and_stops_at_its_deadline() {
    let (server, _dir) = forget_server("block").await;
    let mut client = server.client().await;
    let check = |text: String| lethe::proto::CheckRequest { text, ..Default::default() };
    // About 60 KiB of prose on the passage's topic (its rare words pass the semantic pre-gate):
    // hundreds of semantic windows to embed.
    let long: String =
        (0..1200).map(|i| format!("Row {i} of the ledger lists lanternfish and coral. ")).collect();
    assert!(long.len() < 64 << 10);
    let too_long = long.repeat(2);
    let err = client.check(check(too_long)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("65536"), "{}", err.message());

    // Two such checks with a short deadline both end at it; had they run on, the slots would
    // be busy for many CPU-seconds and the small check after them could not be admitted.
    let mut calls = Vec::new();
    for _ in 0..2 {
        let mut client = server.client().await;
        let mut req = tonic::Request::new(check(long.clone()));
        req.set_timeout(std::time::Duration::from_millis(800));
        calls.push(tokio::spawn(async move { client.check(req).await }));
    }
    for call in calls {
        // The server's DEADLINE_EXCEEDED, or the client's own timer when it fires first.
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled), "{err:?}");
    }
    // Run to the end, each long check embeds about 800 windows (MiniLM: about 62 a second at
    // batch 32 on this project's 2 cores, docs/benchmarks.md), two of them well over 10 s.
    // Stopped at its deadline, a check ends after the batch of 32 windows under way (about half
    // a second idle, a few seconds on a loaded machine).
    let mut small = tonic::Request::new(check(format!("Note: {BIO}")));
    small.set_timeout(std::time::Duration::from_secs(10));
    assert!(client.check(small).await.unwrap().into_inner().matched);
}

/// A chat question about a person, with notes to answer from (the small model knows nothing of
/// a fictional person, so the notes stand in for what a model that memorized her would say). The
/// notes are not the forgotten document's sentences: what can leak is her facts, not its words.
fn question_about(name: &str, notes: &str) -> GenerateRequest {
    common::chat(
        &format!("Notes about {name}: {notes}\n\nWhen and where was {name} born? Answer in one sentence."),
        40,
    )
}

#[tokio::test]
async fn an_answer_with_a_forgotten_persons_facts_is_blocked_and_another_persons_is_not() {
    let forgotten = question_about(
        "Marisol Venkataraman-Oduya",
        "marine biologist; birth year 1987; birthplace Port Alder; set up the Alder Reef Trust in 2014.",
    );
    let other = question_about(
        "Ingrid Solberg-Achebe",
        "kelp ecologist; birth year 1979; birthplace Saltmere; set up the Saltmere Kelp Collective in 2009.",
    );
    // Baseline: with no forget list the model answers with her facts.
    let plain = Server::start(&smollm2(), &[]).await;
    let leaked = plain.client().await.generate(forgotten.clone()).await.unwrap().into_inner();
    assert!(leaked.text.contains("1987") || leaked.text.contains("Port Alder"), "{:?}", leaked.text);
    assert!(longest_shared_run(&leaked.text, BIO) < 8, "a fact answer, not a copy: {:?}", leaked.text);
    let benign = plain.client().await.generate(other.clone()).await.unwrap().into_inner();
    assert!(benign.text.contains("1979") || benign.text.contains("Saltmere"), "{:?}", benign.text);
    drop(plain);

    let (server, _dir) = forget_server("block").await;
    let (text, last) = stream(&server, forgotten).await;
    assert_eq!(last.verdict, Verdict::Block as i32, "{text:?}");
    assert_eq!(last.finish_reason, FinishReason::Blocked as i32);
    assert!(!text.contains("1987") && !text.contains("Port Alder"), "delivered {text:?}");
    assert!(last.matches.iter().any(|m| m.layer == Layer::Fact as i32 && m.entry_id == "bio-1"), "{last:?}");
    let metrics = scrape(&server.metrics_addr);
    assert!(metric_value(&metrics, &["lethe_guard_matches_total", "layer=\"fact\""]) >= 1.0, "{metrics}");

    // Another person's facts are answered as before.
    let (text, last) = stream(&server, other).await;
    assert_eq!(last.verdict, Verdict::Allow as i32, "{last:?}");
    assert_eq!(text, benign.text);
}
