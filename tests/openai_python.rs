//! The official `openai` Python client (pinned in examples/python/requirements.txt, installed
//! into .venv by `make test`) against /v1 on the real model: examples/python/openai_check.py.
mod common;

use common::passage::{forget_config, BIO};
use common::{free_port, smollm2, Server};
use std::process::Command;

const TOKEN: &str = "openai-client-token-0123456789";

#[tokio::test]
async fn the_openai_python_client_works_against_v1() {
    let dir = tempfile::tempdir().unwrap();
    let config = forget_config(dir.path(), "block", "");
    let http = format!("127.0.0.1:{}", free_port());
    let server = Server::start_env(
        &smollm2(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--http-listen",
            &http,
            "--no-semantic",
            "--max-concurrent-generations",
            "1",
            "--max-queued-requests",
            "0",
        ],
        &[("LETHE_INFERENCE_TOKEN", TOKEN)],
    )
    .await;
    let model = common::http::get(&http, "/v1/models", Some(TOKEN)).json()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first: Vec<&str> = BIO.split_whitespace().take(4).collect();
    let forgotten = format!("Text: {BIO}\n\nThe same text, copied exactly:\n{}", first.join(" "));
    let python = std::env::var("LETHE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/openai_check.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, &format!("http://{http}/v1"), TOKEN, &model, &forgotten])
            .output()
            .expect("running python (make test installs the openai client into .venv)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("{e}: {stdout}\nstderr:\n{}\nserver:\n{}", String::from_utf8_lossy(&out.stderr), server.logs())
    });

    assert!(seen["chat"]["content"].as_str().unwrap().contains("Paris"), "{seen}");
    assert!(seen["chat"]["usage"].as_u64().unwrap() > 0);
    assert_eq!(seen["chat_stream"]["content"], seen["chat"]["content"], "greedy: stream equals unary");
    assert_eq!(seen["chat_stream"]["finish_reason"], seen["chat"]["finish_reason"]);
    assert_eq!(seen["chat_stream"]["usage_chunk"], true);
    assert_eq!(seen["chat_stream"]["usage"], seen["chat"]["usage"]);
    assert_eq!(seen["completion_stream"]["text"], seen["completion"]["text"]);
    assert_eq!(seen["blocked"]["finish_reason"], "content_filter", "{seen}");
    let errors = &seen["errors"];
    for (case, class, status) in [
        ("n", "BadRequestError", 400),
        ("model", "NotFoundError", 404),
        ("key", "AuthenticationError", 401),
        ("busy", "RateLimitError", 429),
    ] {
        assert_eq!(errors[case]["class"], class, "{case}: {seen}");
        assert_eq!(errors[case]["status"], status, "{case}");
    }
    assert_eq!(errors["n"]["body"]["param"], "n");
    assert_eq!(errors["model"]["body"]["code"], "model_not_found");
}
