//! Hot-loading forget lists: the ForgetAdmin API, its token, the durable store across
//! `kill -9`, corrupt stores, bad forget files, and reloads under load. A tiny fixture model
//! keeps these fast; what they check is the forget list, not the model's words.
mod common;

use common::{metric_value, scrape, send_signal, tiny_model, Server};
use lethe::proto::forget_admin_client::ForgetAdminClient;
use lethe::proto::*;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

const TOKEN: &str = "test-admin-token-0123456789";
const TERM: &str = "Zorvath Quillimane";

type Admin = ForgetAdminClient<tonic::service::interceptor::InterceptedService<Channel, Auth>>;

#[derive(Clone)]
struct Auth(Option<&'static str>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = self.0 {
            req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(req)
    }
}

async fn admin_client(server: &Server, token: Option<&'static str>) -> Admin {
    ForgetAdminClient::with_interceptor(server.channel().await, Auth(token))
}

fn term(id: &str, text: &str) -> ForgetEntry {
    ForgetEntry {
        id: id.into(),
        kind: EntryKind::Term as i32,
        text: text.into(),
        aliases: vec![],
        term_type: String::new(),
    }
}

async fn start(model: &std::path::Path, data: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec!["--no-semantic", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start_env(model, &args, &[("LETHE_ADMIN_TOKEN", TOKEN)]).await
}

async fn matched(server: &Server, text: &str) -> bool {
    let req = CheckRequest { text: text.into(), ..Default::default() };
    server.client().await.check(req).await.unwrap().into_inner().matched
}

#[tokio::test]
async fn an_acknowledged_add_is_live_at_once_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data = dir.path().join("data");
    let server = start(&model, &data, &[]).await;
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    let text = format!("Please ask {TERM} about it.");
    assert!(!matched(&server, &text).await);
    let reply = admin
        .add_entries(AddEntriesRequest { set: "people".into(), entries: vec![term("zq", TERM)] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.store_sequence, 1);
    assert!(reply.snapshot_version >= 2);
    assert!(matched(&server, &text).await, "live as soon as the reply arrived");
    send_signal(server.pid(), "KILL");
    drop(server);

    let server = start(&model, &data, &[]).await;
    assert!(matched(&server, &text).await, "the acknowledged entry must survive kill -9");
    let status =
        admin_client(&server, Some(TOKEN)).await.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.store_sequence, 1);
    assert_eq!(status.sets[0].name, "people");
    assert_eq!(status.sets[0].terms, 1);
    assert!(status.last_error.is_empty());
    let logs = server.logs();
    assert!(!logs.contains(TERM) && !logs.contains(TOKEN), "{logs}");

    // Removing works the same way, and unknown ids are refused without changing anything.
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    let missing = admin
        .remove_entries(RemoveEntriesRequest { set: "people".into(), ids: vec!["nope".into()] })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    admin
        .remove_entries(RemoveEntriesRequest { set: "people".into(), ids: vec!["zq".into()] })
        .await
        .unwrap();
    assert!(!matched(&server, &text).await);
}

#[tokio::test]
async fn a_corrupt_store_tail_stops_start_up_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data = dir.path().join("data");
    let server = start(&model, &data, &[]).await;
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    for (id, text) in [("a", "Alpha Bravo Charlie"), ("b", TERM)] {
        admin
            .add_entries(AddEntriesRequest { set: "s".into(), entries: vec![term(id, text)] })
            .await
            .unwrap();
    }
    send_signal(server.pid(), "KILL");
    drop(server);
    let log = data.join("forget.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() - 8;
    bytes[at] ^= 0x20;
    std::fs::write(&log, bytes).unwrap();

    let mut broken = Server::spawn(&model, &["--no-semantic", "--data-dir", data.to_str().unwrap()], &[]);
    let status = broken.wait_exit(Duration::from_secs(60)).expect("start-up must fail");
    assert!(!status.success());
    let logs = broken.logs();
    assert!(logs.contains("record 2") && logs.contains("checksum"), "{logs}");
    assert!(logs.contains("lethe forget store repair"), "the error names the repair: {logs}");
    assert!(!logs.contains("Zorvath"), "{logs}");

    // `verify` reports the damage and fails; `repair` keeps the good record and sets the
    // damaged log aside; the server starts on what was kept.
    let store = |cmd: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
            .args(["forget", "store", cmd, data.to_str().unwrap()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(!stdout.contains("Zorvath"), "{stdout}");
        (out.status.success(), serde_json::from_str::<serde_json::Value>(&stdout).unwrap())
    };
    let (ok, report) = store("verify");
    assert!(!ok);
    assert_eq!((report["good_records"].as_u64(), report["damaged_record"].as_u64()), (Some(1), Some(2)));
    let (ok, report) = store("repair");
    assert!(ok && report["set_aside"].as_str().unwrap().contains("forget.log.damaged-"), "{report}");
    assert!(store("verify").0);
    let server = start(&model, &data, &[]).await;
    assert!(matched(&server, "alpha bravo charlie").await);
    assert!(!matched(&server, TERM).await);
    send_signal(server.pid(), "KILL");
    drop(server);

    // A log restored to fewer records than were acknowledged is refused, unless accepted.
    std::fs::write(&log, "").unwrap();
    let mut rolled_back =
        Server::spawn(&model, &["--no-semantic", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(!rolled_back.wait_exit(Duration::from_secs(60)).expect("start-up must fail").success());
    assert!(rolled_back.logs().contains("holds 0 records but 1 were acknowledged"), "{}", rolled_back.logs());
    let server = start(&model, &data, &["--accept-store-rollback"]).await;
    assert!(!matched(&server, "alpha bravo charlie").await);
    let metrics = scrape(&server.metrics_addr);
    assert_eq!(metric_value(&metrics, &["lethe_store_rollbacks_accepted_total"]), 1.0, "{metrics}");
}

#[tokio::test]
async fn the_fingerprint_only_store_keeps_no_text_and_still_blocks_after_kill_9() {
    const DOC: &str = "Merrow Vantablade kept eleven copper lanterns in the north tower of Esk Hollow \
        and lit them only on the night of the grey harvest moon";
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data = dir.path().join("data");
    let sealed = ["--forget-store", "fingerprints"];
    let server = start(&model, &data, &sealed).await;
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    let doc = ForgetEntry {
        id: "lanterns".into(),
        kind: EntryKind::Document as i32,
        text: DOC.into(),
        aliases: vec![],
        term_type: String::new(),
    };
    admin
        .add_entries(AddEntriesRequest { set: "people".into(), entries: vec![doc, term("zq", TERM)] })
        .await
        .unwrap();
    let copy = format!("As told: {DOC}.");
    assert!(matched(&server, &copy).await && matched(&server, &format!("ask {TERM}")).await);
    let status = admin.status(StatusRequest {}).await.unwrap().into_inner();
    let layers = [status.ngram_index_bytes, status.term_index_bytes, status.token_index_bytes];
    assert!(layers[0] > 0 && layers[1] > 0 && status.semantic_index_bytes == 0, "{status:?}");
    assert_eq!(layers.iter().sum::<u64>(), status.index_bytes);
    let set = &status.sets[0];
    assert_eq!((set.documents, set.terms), (1, 1));
    // The term is a person's name: its variants (initials, "Last, First") are indexed with it.
    assert!(set.ngram_fingerprints >= 20 && set.term_fingerprints > 1 && set.index_bytes > 0, "{set:?}");
    send_signal(server.pid(), "KILL");
    drop(server);

    let log = std::fs::read_to_string(data.join("forget.log")).unwrap().to_lowercase();
    for word in ["merrow", "vantablade", "lanterns in", "zorvath", "quillimane"] {
        assert!(!log.contains(word), "the store must not hold the text ({word:?})");
    }
    let server = start(&model, &data, &sealed).await;
    assert!(matched(&server, &copy).await, "fingerprints survive kill -9");
    assert!(matched(&server, &format!("ask {TERM}")).await);
    drop(server);

    // Fingerprints fit only the parameters they were derived with: another n-gram length is
    // refused at start-up, naming the entry and not its text.
    let config = dir.path().join("n5.toml");
    std::fs::write(&config, "[guard.ngram]\nn = 5\n").unwrap();
    let args = ["--no-semantic", "--data-dir", data.to_str().unwrap(), "--config", config.to_str().unwrap()];
    let mut refused = Server::spawn(&model, &args, &[]);
    let status = refused.wait_exit(Duration::from_secs(60)).expect("start-up must fail");
    assert!(!status.success());
    let logs = refused.logs();
    assert!(logs.contains("\"lanterns\"") && logs.contains("fingerprints"), "{logs}");
    assert!(!logs.to_lowercase().contains("merrow"), "{logs}");
}

#[tokio::test]
async fn admin_calls_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = start(&model, &dir.path().join("data"), &[]).await;
    for token in [None, Some("wrong-token-wrong-token")] {
        let err = admin_client(&server, token).await.list_sets(ListSetsRequest {}).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
    }
    admin_client(&server, Some(TOKEN)).await.list_sets(ListSetsRequest {}).await.unwrap();
    // Inference needs no token.
    assert!(!matched(&server, "hello").await);
    assert!(!server.logs().contains(TOKEN));

    // Without a token, ForgetAdmin refuses a non-loopback address.
    let mut open = Server::spawn(&model, &["--no-semantic", "--admin-listen", "0.0.0.0:1"], &[]);
    assert!(!open.wait_exit(Duration::from_secs(60)).expect("must refuse to start").success());
    assert!(open.logs().contains("without a credential"), "{}", open.logs());
}

#[tokio::test]
async fn a_bad_forget_file_keeps_the_previous_snapshot_serving() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let forget = dir.path().join("forget");
    std::fs::create_dir(&forget).unwrap();
    let line = |id: &str, text: &str| {
        format!("{{\"id\": \"{id}\", \"set\": \"files\", \"kind\": \"term\", \"text\": \"{text}\"}}\n")
    };
    std::fs::write(forget.join("a.jsonl"), line("zq", TERM)).unwrap();
    let server = start(&model, &dir.path().join("data"), &["--forget", forget.to_str().unwrap()]).await;
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    let before = admin.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(matched(&server, TERM).await);

    // A set managed by files cannot be changed through the API.
    let err = admin
        .add_entries(AddEntriesRequest { set: "files".into(), entries: vec![term("x", "Xy Zzy")] })
        .await;
    assert_eq!(err.unwrap_err().code(), Code::FailedPrecondition);

    std::fs::write(forget.join("b.jsonl"), "{\"id\": \"broken\n").unwrap();
    let status = wait_for(&mut admin, |s| !s.last_error.is_empty()).await;
    assert!(status.last_error.contains("b.jsonl:1"), "{}", status.last_error);
    assert_eq!(status.snapshot_version, before.snapshot_version);
    assert!(matched(&server, TERM).await, "the previous snapshot keeps serving");

    std::fs::write(forget.join("b.jsonl"), line("new", "Quentin Blorbo")).unwrap();
    let status =
        wait_for(&mut admin, |s| s.last_error.is_empty() && s.snapshot_version > before.snapshot_version)
            .await;
    assert!(status.snapshot_version > before.snapshot_version);
    assert!(matched(&server, "quentin BLORBO").await);
    assert!(matched(&server, TERM).await);

    // Files truncated in place (a slow writer, a half-synced ConfigMap) are not an empty list.
    std::fs::remove_file(forget.join("b.jsonl")).unwrap();
    let before = status.snapshot_version;
    let status = wait_for(&mut admin, |s| s.last_error.is_empty() && s.snapshot_version > before).await;
    let serving = status.snapshot_version;
    std::fs::write(forget.join("a.jsonl"), "").unwrap();
    let status = wait_for(&mut admin, |s| s.last_error.contains("blank")).await;
    assert_eq!(status.snapshot_version, serving);
    assert!(matched(&server, TERM).await, "the previous snapshot keeps serving");
    // Emptied on purpose, with a comment saying so, the list is applied.
    std::fs::write(forget.join("a.jsonl"), "# emptied on purpose\n").unwrap();
    wait_for(&mut admin, |s| s.last_error.is_empty() && s.snapshot_version > serving).await;
    assert!(!matched(&server, TERM).await);
}

async fn wait_for(admin: &mut Admin, done: impl Fn(&StatusResponse) -> bool) -> StatusResponse {
    let started = Instant::now();
    loop {
        let status = admin.status(StatusRequest {}).await.unwrap().into_inner();
        if done(&status) {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the file change was not picked up: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn twenty_reloads_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = start(&model, &dir.path().join("data"), &[]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..3 {
        let mut client = server.client().await;
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let req = GenerateRequest {
                    prompt: format!("the cat {i}"),
                    max_new_tokens: Some(8),
                    ..Default::default()
                };
                match client.generate(req).await {
                    Ok(_) => ok += 1,
                    Err(s) => failed.push(s.code()),
                }
            }
            (ok, failed)
        }));
    }
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    for n in 0..20 {
        let entry = term(&format!("t{n}"), &format!("Person Number{n} Example"));
        admin.add_entries(AddEntriesRequest { set: "load".into(), entries: vec![entry] }).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 0);
    assert!(matched(&server, "person NUMBER19 example").await);
}

#[tokio::test]
async fn the_forget_cli_adds_lists_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = start(&model, &dir.path().join("data"), &[]).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
            .args(["forget", "--addr", &format!("http://{}", server.addr)])
            .args(args)
            .env("LETHE_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = cli(&["add", "--set", "people", "--id", "zq", "--kind", "term", TERM]);
    assert!(ok && out.contains("live in snapshot"), "{out}{err}");
    let file = dir.path().join("list.jsonl");
    std::fs::write(
        &file,
        "{\"id\": \"d1\", \"set\": \"docs\", \"kind\": \"term\", \"text\": \"Quentin Blorbo\"}\n",
    )
    .unwrap();
    let (ok, out, err) = cli(&["apply", file.to_str().unwrap(), "--action", "monitor"]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = cli(&["list"]);
    assert!(ok);
    let sets: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["name"], "docs");
    assert_eq!(sets[0]["action"], "ACTION_MONITOR");
    let (ok, _, err) = cli(&["remove", "--set", "people", "nope"]);
    assert!(!ok && err.contains("no entry"), "{err}");
    assert!(matched(&server, TERM).await && matched(&server, "Quentin Blorbo").await);
}

#[tokio::test]
async fn reload_model_swaps_the_model_while_requests_finish_on_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let other = dir.path().join("other.gguf");
    lethe::model::fixture::write_tiny_llama(&other, 99).unwrap();
    let server = start(&model, &dir.path().join("data"), &[]).await;
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    // A mask set, so the swap has a token filter to rebuild for the new tokenizer.
    let doc = ForgetEntry {
        id: "d".into(),
        term_type: String::new(),
        kind: EntryKind::Document as i32,
        text: "the cat sat on the mat and looked at the door".into(),
        aliases: vec![],
    };
    let policy = SetPolicy { action: Action::Mask as i32, ..Default::default() };
    admin.put_set(PutSetRequest { set: "m".into(), policy: Some(policy), entries: vec![doc] }).await.unwrap();
    let mut client = server.client().await;
    let before = client.get_model_info(GetModelInfoRequest {}).await.unwrap().into_inner();

    let long = GenerateRequest {
        prompt: "the".into(),
        max_new_tokens: Some(200),
        ignore_eos: true,
        ..Default::default()
    };
    let mut stream = client.generate_stream(long).await.unwrap().into_inner();
    let reply = admin
        .reload_model(ReloadModelRequest { path: other.to_str().unwrap().into() })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(reply.sha256, before.sha256);
    use tokio_stream::StreamExt;
    let mut last = None;
    while let Some(msg) = stream.next().await {
        last = Some(msg.unwrap_or_else(|e| panic!("the in-flight stream fails: {e:?}\n{}", server.logs())));
    }
    let last = last.expect("at least the last message");
    assert_ne!(last.finish_reason, FinishReason::Unspecified as i32, "{last:?}\n{}", server.logs());
    let after = client.get_model_info(GetModelInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(after.sha256, reply.sha256);
    let metrics = scrape(&server.metrics_addr);
    assert_eq!(metric_value(&metrics, &["lethe_model_info{", "model=\"other.gguf\""]), 1.0, "{metrics}");
    assert!(metrics.contains("model=\"tiny.gguf\""), "the swapped-out model's series stays, at 0");
    assert_eq!(metric_value(&metrics, &["lethe_model_info{", "model=\"tiny.gguf\""]), 0.0, "{metrics}");
    let req = GenerateRequest { prompt: "the".into(), max_new_tokens: Some(4), ..Default::default() };
    client.generate(req.clone()).await.unwrap();

    // A file that is not a model is refused and the current model keeps serving.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a model").unwrap();
    for path in [junk.to_str().unwrap(), "/nonexistent/model.gguf"] {
        let err = admin.reload_model(ReloadModelRequest { path: path.into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    assert_eq!(
        client.get_model_info(GetModelInfoRequest {}).await.unwrap().into_inner().sha256,
        reply.sha256
    );
    client.generate(req).await.unwrap();
}

#[tokio::test]
async fn an_inference_token_guards_inference_but_not_health() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    const INFERENCE: &str = "inference-token-0123456789";
    // Start-up waits on the health check, which needs no token.
    let server = Server::start_env(&model, &["--no-semantic"], &[("LETHE_INFERENCE_TOKEN", INFERENCE)]).await;
    let req = CheckRequest { text: "hello".into(), ..Default::default() };
    let err = server.client().await.check(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut authed = lethe::proto::inference_client::InferenceClient::with_interceptor(
        server.channel().await,
        Auth(Some(INFERENCE)),
    );
    assert!(!authed.check(req).await.unwrap().into_inner().matched);
    assert!(!server.logs().contains(INFERENCE));
}

#[tokio::test]
async fn every_rpc_is_counted_by_method_and_code_rejections_and_streams_included() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = start(&model, &dir.path().join("data"), &[]).await;
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    admin_client(&server, None).await.list_sets(ListSetsRequest {}).await.unwrap_err();
    admin.list_sets(ListSetsRequest {}).await.unwrap();
    admin.status(StatusRequest {}).await.unwrap();
    let mut client = server.client().await;
    client.get_model_info(GetModelInfoRequest {}).await.unwrap();
    let invalid = GenerateRequest { prompt: "the".into(), max_new_tokens: Some(0), ..Default::default() };
    client.generate_stream(invalid).await.unwrap_err();
    let req = GenerateRequest {
        prompt: "the".into(),
        max_new_tokens: Some(6),
        ignore_eos: true,
        ..Default::default()
    };
    let mut stream = client.generate_stream(req).await.unwrap().into_inner();
    use tokio_stream::StreamExt;
    while stream.next().await.is_some() {}
    let count = |metrics: &str, method: &str, code: &str| {
        let parts = ["lethe_requests_total{", &format!("method=\"{method}\""), &format!("code=\"{code}\"")];
        metric_value(metrics, &parts)
    };
    // The stream's status is counted at its end, after the client has read it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = scrape(&server.metrics_addr);
    while count(&metrics, "GenerateStream", "OK") < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = scrape(&server.metrics_addr);
    }
    let requests: Vec<&str> = metrics.lines().filter(|l| l.starts_with("lethe_requests_total")).collect();
    for (method, code) in [
        ("ListSets", "UNAUTHENTICATED"),
        ("ListSets", "OK"),
        ("Status", "OK"),
        ("GetModelInfo", "OK"),
        ("GenerateStream", "INVALID_ARGUMENT"),
        ("GenerateStream", "OK"),
    ] {
        assert_eq!(count(&metrics, method, code), 1.0, "{method} {code}: {requests:#?}");
    }
    assert!(count(&metrics, "Health/Check", "OK") >= 1.0, "the harness's start-up probe: {requests:#?}");
    assert_eq!(count(&metrics, "GenerateStream", "CANCELLED"), 0.0, "{requests:#?}");
}

/// The fixture model samples arbitrary bytes (any Unicode, control characters, special
/// tokens), so its output exercises the stream guard, decode-time masking and the audit with
/// what no test author writes; every stream must end with a finish reason, never just stop.
#[tokio::test]
async fn sampled_gibberish_through_mask_and_block_sets_always_ends_with_a_finish_reason() {
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = start(&model, &dir.path().join("data"), &[]).await;
    let mut admin = admin_client(&server, Some(TOKEN)).await;
    let doc = |id: &str, text: &str| ForgetEntry {
        id: id.into(),
        term_type: String::new(),
        kind: EntryKind::Document as i32,
        text: text.into(),
        aliases: vec![],
    };
    for (set, action) in [("m", Action::Mask), ("b", Action::Block)] {
        let policy = SetPolicy { action: action as i32, ..Default::default() };
        let entries =
            vec![doc("d", "the cat sat on the mat and looked at the door"), doc("e", "in the a an the in")];
        admin.put_set(PutSetRequest { set: set.into(), policy: Some(policy), entries }).await.unwrap();
    }
    let mut client = server.client().await;
    for seed in 0..120 {
        let req = GenerateRequest {
            prompt: "the".into(),
            max_new_tokens: Some(120),
            ignore_eos: true,
            temperature: Some(1.5),
            seed: Some(seed),
            ..Default::default()
        };
        let mut stream = client.generate_stream(req).await.unwrap().into_inner();
        let mut last = None;
        while let Some(msg) = stream.next().await {
            last = Some(msg.unwrap_or_else(|e| panic!("seed {seed}: {e:?}\n{}", server.logs())));
        }
        assert_ne!(last.unwrap().finish_reason, FinishReason::Unspecified as i32, "seed {seed}");
    }
}
