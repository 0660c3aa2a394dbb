//! Authentication of calls, as a tonic interceptor (a tower layer) in front of a service:
//! `authorization: Bearer <token>` checked in constant time (admin calls, and inference calls
//! when an inference token is set), or, with mTLS, a client certificate that the TLS layer has
//! verified against the client CA. The token is never logged. A rejection is counted by the
//! telemetry layer like any other status.
use super::error::Error;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

#[derive(Clone)]
pub struct BearerAuth {
    token: Option<Arc<Vec<u8>>>,
    client_certs: bool,
}

impl BearerAuth {
    /// `None`: no token configured (allowed only on loopback, checked at start-up).
    pub fn new(token: Option<String>) -> Self {
        Self { token: token.map(|t| Arc::new(t.into_bytes())), client_certs: false }
    }

    /// Also accept callers presenting a verified client certificate (mTLS).
    pub fn accepting_client_certs(self, yes: bool) -> Self {
        Self { client_certs: yes, ..self }
    }

    fn check(&self, request: &Request<()>) -> Result<(), Error> {
        if self.client_certs {
            // rustls has already rejected any certificate the client CA did not sign.
            if request.peer_certs().is_some_and(|certs| !certs.is_empty()) {
                return Ok(());
            }
            if self.token.is_none() {
                return Err(Error::Unauthenticated(
                    "a client certificate signed by the server's client CA is required (mTLS)",
                ));
            }
        }
        let Some(expected) = &self.token else { return Ok(()) };
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if bearer_matches(header, expected) {
            Ok(())
        } else {
            Err(Error::Unauthenticated(if self.client_certs {
                "a valid bearer token (authorization: Bearer <token>) or client certificate is required"
            } else {
                "a valid bearer token is required (authorization: Bearer <token>)"
            }))
        }
    }
}

/// Whether an `authorization` header value is `Bearer <expected>`, compared in constant time.
pub fn bearer_matches(header: Option<&str>, expected: &[u8]) -> bool {
    let presented = header.and_then(|v| v.strip_prefix("Bearer ")).map(str::as_bytes).unwrap_or_default();
    bool::from(presented.ct_eq(expected))
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}
