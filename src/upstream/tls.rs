//! TLS to an `https://` upstream: rustls with the ring provider (through tokio-rustls, both
//! already in the tree through tonic's `tls-ring`), verifying the engine's certificate against
//! the CA certificates of the upstream's `tls_ca_file`. No built-in root store: neither
//! webpki-roots nor rustls-native-certs is in the tree, and an engine in a cluster is usually
//! signed by the cluster's own CA; the system bundle file trusts the public CAs.
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// How to open TLS to one upstream: its verifier and the name its certificate must carry.
pub struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the CA certificates of `ca_file` (PEM); `host` is the url's host (a DNS name or
    /// an IP address), which the engine's certificate must name. Any error stops the start.
    pub fn new(ca_file: &Path, host: &str) -> Result<Self> {
        let pem = std::fs::read(ca_file)
            .with_context(|| format!("reading the upstream CA file (tls_ca_file) {}", ca_file.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.with_context(|| format!("the PEM of {}", ca_file.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("a CA certificate in {} is not usable", ca_file.display()))?;
        }
        if roots.is_empty() {
            bail!("{} holds no PEM certificate (tls_ca_file)", ca_file.display());
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // The client speaks HTTP/1.1 (one connection per request; closing it stops the engine).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // An IPv6 host comes bracketed out of a URI; the name to verify has no brackets.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_string())
            .with_context(|| format!("{host:?} is not a name a certificate can carry"))?;
        Ok(Self { connector: TlsConnector::from(Arc::new(config)), server_name })
    }

    /// The TLS handshake over an open connection; fails on a certificate the CAs did not sign
    /// or that does not name the host.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_or_a_missing_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = Tls::new(&empty, "engine").unwrap_err();
        assert!(format!("{err:#}").contains("no PEM certificate"), "{err:#}");
        let err = Tls::new(&dir.path().join("absent.pem"), "engine").unwrap_err();
        assert!(format!("{err:#}").contains("tls_ca_file"), "{err:#}");
    }
}
