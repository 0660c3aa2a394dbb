//! Forget lists across replicas: three servers share one forget folder laid out the way
//! Kubernetes mounts a ConfigMap (files are symlinks through `..data`, which is swapped
//! atomically to a new timestamped folder). All three must pick the change up, report the same
//! content hash, block the new content, and not reload again on their own reads.
mod common;

use common::{tiny_model, Server};
use lethe::proto::forget_admin_client::ForgetAdminClient;
use lethe::proto::{CheckRequest, StatusRequest, StatusResponse};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

fn entry(text: &str) -> String {
    format!("{{\"id\": \"e1\", \"set\": \"shared\", \"kind\": \"term\", \"text\": \"{text}\"}}\n")
}

/// Writes a new version the way the kubelet does: a fresh folder, then an atomic `..data` swap.
fn publish(dir: &Path, version: &str, text: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("list.jsonl"), entry(text)).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("list.jsonl").exists() {
        symlink("..data/list.jsonl", dir.join("list.jsonl")).unwrap();
    }
}

async fn status(server: &Server) -> StatusResponse {
    ForgetAdminClient::new(server.channel().await).status(StatusRequest {}).await.unwrap().into_inner()
}

async fn matched(server: &Server, text: &str) -> bool {
    let req = CheckRequest { text: text.into(), ..Default::default() };
    server.client().await.check(req).await.unwrap().into_inner().matched
}

#[tokio::test]
async fn three_replicas_follow_a_configmap_style_swap() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let forget = dir.path().join("forget");
    std::fs::create_dir(&forget).unwrap();
    publish(&forget, "2026_11_27_v1", "Zorvath Quillimane");
    let args = ["--no-semantic", "--forget", forget.to_str().unwrap()];
    let (a, b, c) = tokio::join!(
        Server::start(&model, &args),
        Server::start(&model, &args),
        Server::start(&model, &args)
    );
    let replicas = [a, b, c];
    let first = status(&replicas[0]).await;
    for r in &replicas {
        assert!(matched(r, "ask zorvath QUILLIMANE").await);
        assert_eq!(status(r).await.content_hash, first.content_hash);
    }

    publish(&forget, "2026_11_27_v2", "Quentin Blorbo");
    std::fs::remove_dir_all(forget.join("..2026_11_27_v1")).unwrap();
    let started = Instant::now();
    let mut hashes = Vec::new();
    for r in &replicas {
        loop {
            let s = status(r).await;
            if s.content_hash != first.content_hash && s.last_error.is_empty() {
                hashes.push((s.content_hash, s.snapshot_version));
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "a replica did not pick up the swap: {s:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(matched(r, "quentin blorbo").await);
        assert!(!matched(r, "Zorvath Quillimane").await);
    }
    assert!(hashes.iter().all(|(h, _)| *h == hashes[0].0), "{hashes:?}");

    // Reading the files is not a change: no replica keeps reloading.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (r, (_, version)) in replicas.iter().zip(&hashes) {
        assert_eq!(status(r).await.snapshot_version, *version);
    }
}
