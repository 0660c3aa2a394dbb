//! Upstream mode: Lethe as the guard in front of another engine that speaks the OpenAI HTTP
//! API (vLLM, TGI, llama.cpp, another Lethe). Requests for the models routed to an upstream
//! are forwarded, always streamed, and the engine's text deltas pass through the same stream
//! guard as the served model's tokens (`server::generation::drive`). On a block the guard
//! stops reading and the upstream connection is closed, which stops the engine early.
//!
//! `client.rs` speaks HTTP to the engine and parses its stream; `sse.rs` cuts events;
//! `tls.rs` opens TLS to an `https://` engine.
pub mod client;
pub mod sse;
pub mod tls;

use crate::config::{MaskAs, UpstreamConfig};
use crate::guard::Guard;
use crate::proto::FinishReason;
use crate::server::error::Error;
use crate::server::generation::{Piece, Source};
use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A configured upstream engine.
#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    /// `host:port` of its URL, and the path its routes hang under (`/v1`).
    pub authority: String,
    pub base_path: String,
    /// The key Lethe presents (`authorization: Bearer`), read once at start.
    api_key: Option<String>,
    /// The model ids its `/v1/models` listed at the last probe.
    listed: std::sync::RwLock<Vec<String>>,
    /// Bounds the requests forwarded at once (`max_in_flight`).
    slots: Arc<tokio::sync::Semaphore>,
    /// TLS for an `https://` url, built once at start.
    tls: Option<tls::Tls>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Self> {
        let uri: http::Uri = config.url.parse().with_context(|| format!("upstream url {:?}", config.url))?;
        let authority = uri.authority().context("the upstream url has no host")?;
        let https = uri.scheme_str() == Some("https");
        let tls = match (https, &config.tls_ca_file) {
            (true, Some(ca)) => Some(
                tls::Tls::new(ca, authority.host())
                    .with_context(|| format!("TLS to upstream {:?}", config.name))?,
            ),
            (true, None) => anyhow::bail!("upstream {:?}: an https:// url needs tls_ca_file", config.name),
            (false, _) => None,
        };
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:{}", authority.host(), if https { 443 } else { 80 }),
        };
        let base_path = uri.path().trim_end_matches('/').to_string();
        let api_key = match &config.api_key_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the api key file of upstream {:?}", config.name))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
        Ok(Self { config, authority, base_path, api_key, listed: Default::default(), slots, tls })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// A slot for one forwarded request, held until its stream is guarded to the end; none
    /// when `max_in_flight` are running (the client gets 429).
    pub fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            Error::Upstream(crate::server::error::UpstreamError::Busy {
                upstream: self.name().to_string(),
                retry_after: Some(1),
            })
        })
    }

    /// Records the model ids its `/v1/models` listed (`client::start_probes`).
    pub fn set_listed(&self, ids: Vec<String>) {
        if let Ok(mut slot) = self.listed.write() {
            *slot = ids;
        }
    }

    /// Whether `mask` sets block this upstream's stream (they cannot mask its decoding).
    pub fn masks_block(&self) -> bool {
        self.config.mask_as == MaskAs::Block
    }
}

/// Every configured upstream, and which model ids go where.
#[derive(Debug, Default)]
pub struct Upstreams {
    all: Vec<Arc<Upstream>>,
}

impl Upstreams {
    pub fn new(configs: &[UpstreamConfig]) -> Result<Self> {
        let all = configs.iter().cloned().map(Upstream::new).collect::<Result<Vec<_>>>()?;
        for u in &all {
            crate::metrics::upstream_configured(u.name());
        }
        Ok(Self { all: all.into_iter().map(Arc::new).collect() })
    }

    /// The upstream serving `model`: one that lists it, else the one that takes every model
    /// id (empty `models`). The caller checks the served model's name first.
    pub fn route(&self, model: &str) -> Option<&Arc<Upstream>> {
        self.all
            .iter()
            .find(|u| u.config.models.iter().any(|m| m == model))
            .or_else(|| self.all.iter().find(|u| u.config.models.is_empty()))
    }

    /// (model id, upstream name) for `/v1/models`: the ids routed to each upstream, and for
    /// the one taking every other id, what its own `/v1/models` listed at the last probe.
    pub fn models(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for u in &self.all {
            let ids = if u.config.models.is_empty() {
                u.listed.read().map(|l| l.clone()).unwrap_or_default()
            } else {
                u.config.models.clone()
            };
            out.extend(ids.into_iter().map(|id| (id, u.name().to_string())));
        }
        out
    }

    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.all
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// What the reader of an upstream stream hands the guard thread.
#[derive(Debug)]
pub enum Delta {
    Text(String),
    Usage { prompt: u32, completion: u32 },
    End(FinishReason),
    Failed(Error),
}

/// An upstream stream as a [`Source`] for the guard thread: the reader task (`client::forward`)
/// sends it deltas. Dropping it (after a block, or when the client left) closes the channel,
/// and the reader then drops the connection.
pub struct Remote {
    rx: mpsc::Receiver<Delta>,
    usage: Option<(u32, u32)>,
    name: String,
}

impl Remote {
    pub fn new(upstream: &Upstream, rx: mpsc::Receiver<Delta>) -> Self {
        Self { rx, usage: None, name: upstream.name().to_string() }
    }
}

impl Source for Remote {
    fn next(&mut self, _guard: &Guard) -> Piece {
        loop {
            match self.rx.blocking_recv() {
                Some(Delta::Text(text)) => return Piece::Text { text, masked: false },
                Some(Delta::Usage { prompt, completion }) => self.usage = Some((prompt, completion)),
                Some(Delta::End(finish)) => return Piece::End(finish),
                Some(Delta::Failed(e)) => return Piece::Failed(e),
                // The reader stopped because the client went away.
                None => return Piece::Failed(Error::Cancelled),
            }
        }
    }

    fn usage(&self) -> Option<(u32, u32)> {
        self.usage
    }

    fn label(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_route_to_their_upstream_and_the_rest_to_the_catch_all() {
        let up = |name: &str, models: &[&str]| UpstreamConfig {
            name: name.into(),
            url: "http://127.0.0.1:9/v1".into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        };
        let ups = Upstreams::new(&[up("a", &["m1"]), up("b", &[])]).unwrap();
        assert_eq!(ups.route("m1").unwrap().name(), "a");
        assert_eq!(ups.route("other").unwrap().name(), "b");
        assert_eq!(ups.route("m1").unwrap().authority, "127.0.0.1:9");
        assert_eq!(ups.route("m1").unwrap().base_path, "/v1");
        let only = Upstreams::new(&[up("a", &["m1"])]).unwrap();
        assert!(only.route("other").is_none());
    }

    #[test]
    fn beyond_max_in_flight_is_429_until_a_slot_frees() {
        let config =
            UpstreamConfig { url: "http://127.0.0.1:9/v1".into(), max_in_flight: 1, ..Default::default() };
        let up = Upstream::new(config).unwrap();
        let first = up.slot().unwrap();
        let busy = up.slot().unwrap_err().http();
        assert_eq!((busy.status, busy.retry_after), (429, Some(1)));
        drop(first);
        assert!(up.slot().is_ok());
    }
}
