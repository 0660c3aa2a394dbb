//! Connections cannot stall the server: a flood of silent TCP connections beyond the
//! descriptor limit leaves health answered once they time out, and on SIGTERM idle
//! connections and health Watch streams do not hold the drain open.
mod common;

use common::{metric_value, scrape, tiny_model, Server};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn health_answers(addr: &str) -> bool {
    let endpoint = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(1));
    let connect = endpoint.connect();
    let Ok(Ok(channel)) = tokio::time::timeout(Duration::from_secs(2), connect).await else { return false };
    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.is_ok()
}

#[tokio::test]
async fn a_flood_of_silent_connections_beyond_the_descriptor_limit_leaves_health_answered() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    // 256 descriptors: the default cap is 192 connections; the flood is 400.
    let mut server = Server::spawn_with_descriptors(
        &model,
        &["--no-semantic", "--first-byte-timeout-secs", "60"],
        &[],
        Some(256),
    );
    server.wait_serving().await;
    let mut flood = Vec::new();
    for _ in 0..400 {
        // Connected and silent; some are closed by the server at once (over the cap).
        if let Ok(s) = tokio::net::TcpStream::connect(&server.addr).await {
            flood.push(s);
        }
    }
    // While the flood is still held open by its client, and long before the 60 s first-byte
    // timeout could close any of it, health answers: the oldest silent connections make room.
    let started = Instant::now();
    while !health_answers(&server.addr).await {
        assert!(started.elapsed() < Duration::from_secs(20), "health stayed unanswered:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = scrape(&server.metrics_addr);
    assert!(metric_value(&metrics, &["lethe_connections_refused_total"]) > 0.0, "{metrics}");
    assert!(server.logs().contains("connection limit reached"), "{}", server.logs());
    assert!(server.child_alive());
    drop(flood);
}

#[tokio::test]
async fn sigterm_closes_idle_connections_and_ends_health_watches_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let mut server = Server::start(&model, &["--no-semantic", "--drain-timeout-secs", "60"]).await;
    // An idle HTTP/2 connection, a silent TCP connection, and a health Watch.
    let idle = server.channel().await;
    let _silent = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let mut watch = HealthClient::new(server.channel().await)
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.next().await.unwrap().is_ok());
    common::send_signal(server.pid(), "TERM");
    let mut statuses = Vec::new();
    while let Some(Ok(msg)) = watch.next().await {
        statuses.push(msg.status);
    }
    assert_eq!(
        statuses.last(),
        Some(&(tonic_health::pb::health_check_response::ServingStatus::NotServing as i32))
    );
    // Nothing was in flight, so the drain (up to 60 s) has nothing to wait for.
    let status = server.wait_exit(Duration::from_secs(30)).expect("the exit was held by idle peers");
    assert!(status.success(), "{status}\n{}", server.logs());
    drop(idle);
}
