//! TLS on the gRPC listener and mTLS for ForgetAdmin: certificates made by rcgen, a real server,
//! tonic clients and the `lethe forget` CLI.
mod common;

use common::{tiny_model, Server};
use lethe::proto::forget_admin_client::ForgetAdminClient;
use lethe::proto::inference_client::InferenceClient;
use lethe::proto::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const TOKEN: &str = "tls-test-admin-token-0123456789";

struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    /// A client certificate from a CA the server does not trust.
    rogue: (PathBuf, PathBuf),
}

fn write_pair(dir: &Path, name: &str, cert: String, key: &KeyPair) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    write_pair(dir, name, cert.pem(), &key)
}

fn pki(dir: &Path) -> Pki {
    let (authority, rogue_authority) = (ca("Lethe test CA"), ca("Rogue CA"));
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, authority.pem()).unwrap();
    Pki {
        ca,
        server: leaf(
            dir,
            "server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &authority,
        ),
        client: leaf(dir, "operator", &[], ExtendedKeyUsagePurpose::ClientAuth, &authority),
        rogue: leaf(dir, "rogue", &[], ExtendedKeyUsagePurpose::ClientAuth, &rogue_authority),
    }
}

async fn tls_channel(
    addr: &str,
    ca: &Path,
    identity: Option<&(PathBuf, PathBuf)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()));
    }
    Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls)?.connect().await
}

async fn serving(channel: Channel) -> bool {
    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.is_ok()
}

fn add_request(id: &str, text: &str) -> AddEntriesRequest {
    let entry = ForgetEntry {
        id: id.into(),
        kind: EntryKind::Term as i32,
        text: text.into(),
        aliases: vec![],
        term_type: String::new(),
    };
    AddEntriesRequest { set: "people".into(), entries: vec![entry] }
}

#[tokio::test]
async fn tls_serves_inference_and_client_certificates_authenticate_admin_calls() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let pki = pki(dir.path());
    let data = dir.path().join("data");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let args = [
        "--no-semantic".to_string(),
        "--data-dir".into(),
        s(&data),
        "--tls-cert-file".into(),
        s(&pki.server.0),
        "--tls-key-file".into(),
        s(&pki.server.1),
        "--tls-client-ca-file".into(),
        s(&pki.ca),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::spawn(&model, &args, &[("LETHE_ADMIN_TOKEN", TOKEN)]);
    let started = Instant::now();
    loop {
        if let Some(status) = server.wait_exit(Duration::ZERO) {
            panic!("lethe exited with {status}:\n{}", server.logs());
        }
        if let Ok(channel) = tls_channel(&server.addr, &pki.ca, None).await {
            if serving(channel).await {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no TLS server:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Plaintext gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await;
    assert!(!match plain {
        Ok(channel) => serving(channel).await,
        Err(_) => false,
    });

    // Inference over TLS needs no certificate; ForgetAdmin without a certificate needs the token.
    let anonymous = tls_channel(&server.addr, &pki.ca, None).await.unwrap();
    let check = CheckRequest { text: "ask Zorvath Quillimane".into(), ..Default::default() };
    assert!(
        !InferenceClient::new(anonymous.clone()).check(check.clone()).await.unwrap().into_inner().matched
    );
    let err = ForgetAdminClient::new(anonymous.clone()).list_sets(ListSetsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A certificate signed by the client CA is a credential of its own.
    let operator = tls_channel(&server.addr, &pki.ca, Some(&pki.client)).await.unwrap();
    ForgetAdminClient::new(operator).add_entries(add_request("zq", "Zorvath Quillimane")).await.unwrap();
    assert!(InferenceClient::new(anonymous.clone()).check(check).await.unwrap().into_inner().matched);

    // One from another CA is refused in the handshake.
    let rogue = match tls_channel(&server.addr, &pki.ca, Some(&pki.rogue)).await {
        Ok(channel) => ForgetAdminClient::new(channel).list_sets(ListSetsRequest {}).await.is_ok(),
        Err(_) => false,
    };
    assert!(!rogue, "a certificate from an untrusted CA must not authenticate");

    // The operator CLI speaks TLS and mTLS too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["forget", "--addr", &format!("https://{}", server.addr), "--ca-cert"])
        .arg(&pki.ca)
        .arg("--client-cert")
        .arg(&pki.client.0)
        .arg("--client-key")
        .arg(&pki.client.1)
        .arg("list")
        .env_remove("LETHE_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"people\""), "{stdout}");
}
