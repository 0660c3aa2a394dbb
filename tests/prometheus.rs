//! Monitoring against a real Prometheus (Debian's `prometheus` package, which `make test`
//! installs): Prometheus scrapes a running Lethe while clean, blocked, masked and monitored
//! generations happen; the counts per outcome are read back through its HTTP API, every query
//! of the Grafana dashboard runs, the alert rules load and the leak alert fires, and
//! `promtool check metrics` accepts the exposition.
mod common;

use common::{free_port, scrape, smollm2, Server};
use lethe::proto::GenerateRequest;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIO: &str =
    "Marisol Venkataraman-Oduya was born on 14 March 1987 in Port Alder, a fishing town on the \
    northern coast of Tasveria. Her mother repaired radios and her father ran a ferry between the islands of \
    Kell and Ormsby. She studied marine biology at the University of Lindqvist.";
const NOTE: &str = "Patient Theodore Okonkwo-Lindahl, age 52, presented on 3 June 2023 with intermittent chest \
    pain radiating to the left arm for two weeks. Blood pressure was 158 over 96. An electrocardiogram showed no \
    acute changes.";
const MEMO: &str = "Internal memo, Halvorsen Robotics, 9 January 2024. Project Bluefinch will ship the warehouse \
    picking arm to Dunmore Logistics in the second quarter. The gripper still drops about one parcel in forty \
    during night shifts because the infrared sensors misread shrink wrap.";

fn copy(text: &str) -> GenerateRequest {
    let first: Vec<&str> = text.split_whitespace().take(4).collect();
    GenerateRequest {
        prompt: format!("Text: {text}\n\nThe same text, copied exactly:\n{}", first.join(" ")),
        max_new_tokens: Some(48),
        temperature: Some(0.0),
        ..Default::default()
    }
}

struct Prometheus {
    child: Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &Path, target: &str) -> Prometheus {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: lethe\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("running prometheus: install Debian's `prometheus` package (make test does)");
    Prometheus { child, addr }
}

fn get(addr: &str, path_and_query: &str) -> Option<serde_json::Value> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let body = response.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(prom: &Prometheus, q: &str) -> serde_json::Value {
    get(&prom.addr, &format!("/api/v1/query?query={}", encode(q))).unwrap_or(serde_json::Value::Null)
}

/// `sum by (label)` results as (label value, number).
fn by_label(result: &serde_json::Value, label: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = result["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let name = r["metric"][label].as_str().unwrap_or_default().to_string();
            (name, r["value"][1].as_str().unwrap_or("nan").parse().unwrap_or(f64::NAN))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test]
async fn prometheus_sees_blocked_masked_leaked_and_clean_generations() {
    for tool in ["prometheus", "promtool"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} is not installed: install Debian's `prometheus` package (make test does)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("forget.jsonl");
    let line = |id: &str, set: &str, text: &str| {
        serde_json::json!({"id": id, "set": set, "kind": "document", "text": text}).to_string()
    };
    std::fs::write(
        &list,
        [line("bio", "people", BIO), line("note", "records", NOTE), line("memo", "memos", MEMO)].join("\n"),
    )
    .unwrap();
    let config = dir.path().join("lethe.toml");
    std::fs::write(
        &config,
        format!(
            "[guard]\nforget = {:?}\n[guard.sets.people]\naction = \"block\"\n[guard.sets.records]\naction = \"monitor\"\n\
             [guard.sets.memos]\naction = \"mask\"\nfact_min_facts = 0\n",
            list.display().to_string()
        ),
    )
    .unwrap();
    // Masking removes the memo's verbatim runs, not what it says: the fact and semantic layers
    // still find the masked copy, which then counts as leaked (reason `mask`). They are off for
    // the mask set here, as this test is about each of the four outcomes reaching Prometheus.
    let server = Server::start(&smollm2(), &["--config", config.to_str().unwrap(), "--no-semantic"]).await;
    let prom = start_prometheus(dir.path(), &server.metrics_addr);

    let mut client = server.client().await;
    let verdicts = [
        client
            .generate(common::chat("Give me three tips for growing tomatoes.", 32))
            .await
            .unwrap()
            .into_inner()
            .verdict,
        client.generate(copy(BIO)).await.unwrap().into_inner().verdict,
        client.generate(copy(MEMO)).await.unwrap().into_inner().verdict,
        client.generate(copy(NOTE)).await.unwrap().into_inner().verdict,
    ];
    use lethe::proto::Verdict::*;
    assert_eq!(verdicts, [Allow as i32, Block as i32, Suppress as i32, Allow as i32]);

    let outcomes = wait_until("Prometheus to scrape four generations", Duration::from_secs(90), || {
        let r = by_label(&query(&prom, "sum by (outcome) (lethe_generations_total)"), "outcome");
        (r.iter().map(|(_, v)| v).sum::<f64>() == 4.0).then_some(r)
    });
    let get_outcome = |name: &str| outcomes.iter().find(|(o, _)| o == name).map_or(0.0, |(_, v)| *v);
    assert_eq!(get_outcome("clean"), 1.0, "{outcomes:?}");
    assert_eq!(get_outcome("blocked"), 1.0, "{outcomes:?}");
    assert_eq!(get_outcome("leaked"), 1.0, "{outcomes:?}");
    assert_eq!(get_outcome("suppressed"), 1.0, "{outcomes:?}");
    let leaks = by_label(
        &query(&prom, "sum by (forget_set) (lethe_leaks_total{reason=\"monitor\"}) > 0"),
        "forget_set",
    );
    assert_eq!(leaks, [("records".to_string(), 1.0)]);

    // Every dashboard query runs.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../deploy/grafana/lethe-dashboard.json")).unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m");
            let r = query(&prom, &expr);
            assert_eq!(r["status"], "success", "{expr}: {r}");
            queries += 1;
        }
    }
    assert!(queries >= 14);

    // The alert rules load, and the leak alert fires.
    let rules = get(&prom.addr, "/api/v1/rules").unwrap();
    let loaded: usize = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    let alerts_file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml"))
            .unwrap();
    let defined = alerts_file.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    assert_eq!(loaded, defined, "every rule of alerts.yml is loaded: {rules}");
    wait_until("the leak alert to fire", Duration::from_secs(60), || {
        let alerts = get(&prom.addr, "/api/v1/alerts")?;
        alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == "LetheForgottenContentLeaked"
                    && a["labels"]["forget_set"] == "records"
            })
            .then_some(())
    });

    // promtool accepts the exposition.
    let body = scrape(&server.metrics_addr);
    let exposition = body.split_once("\r\n\r\n").unwrap().1;
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
    // No forgotten text or entry id in any label.
    for secret in ["Marisol", "Okonkwo", "Bluefinch", "bio", "note\"", "memo\""] {
        assert!(!exposition.contains(secret), "{secret} in /metrics");
    }
}
