//! The `lethe.v1.ForgetAdmin` service and its bearer-token check.
use crate::forget::live::{ChangeError, Live, SetSummary};
use crate::forget::store::Mutation;
use crate::forget::{Entry, Kind};
use crate::guard::{Action, SetPolicy, SetStats};
use crate::proto::forget_admin_server::ForgetAdmin;
use crate::proto::{self, *};
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;
use tonic::{Request, Response, Status};

pub struct AdminService {
    live: Arc<Live>,
    served_format: crate::model::ServedFormat,
}

impl AdminService {
    pub fn new(live: Arc<Live>, served_format: crate::model::ServedFormat) -> Self {
        Self { live, served_format }
    }

    async fn mutate(&self, method: &'static str, m: Mutation) -> Result<Response<MutationResponse>, Status> {
        let started = Instant::now();
        let set = m.set().to_string();
        let result = self.live.mutate(m).await.map_err(|e| match e {
            ChangeError::Invalid(msg) => Status::invalid_argument(msg),
            ChangeError::FileManaged(_) => Status::failed_precondition(e.to_string()),
            ChangeError::Failed(msg) => Status::internal(msg),
        });
        crate::metrics::request_done(method, result.as_ref().err(), started.elapsed());
        let (snapshot_version, store_sequence, build_seconds) = result?;
        tracing::info!(method, forget_set = %set, snapshot_version, store_sequence, build_seconds, "forget list changed");
        Ok(Response::new(MutationResponse { snapshot_version, store_sequence, build_seconds }))
    }
}

#[tonic::async_trait]
impl ForgetAdmin for AdminService {
    async fn put_set(&self, request: Request<PutSetRequest>) -> Result<Response<MutationResponse>, Status> {
        let r = request.into_inner();
        let entries = entries(&r.set, r.entries)?;
        let policy = policy(r.policy.unwrap_or_default())?;
        self.mutate("PutSet", Mutation::PutSet { set: r.set, policy, entries }).await
    }

    async fn add_entries(
        &self,
        request: Request<AddEntriesRequest>,
    ) -> Result<Response<MutationResponse>, Status> {
        let r = request.into_inner();
        if r.entries.is_empty() {
            return Err(Status::invalid_argument("no entries to add"));
        }
        let entries = entries(&r.set, r.entries)?;
        self.mutate("AddEntries", Mutation::AddEntries { set: r.set, entries }).await
    }

    async fn remove_entries(
        &self,
        request: Request<RemoveEntriesRequest>,
    ) -> Result<Response<MutationResponse>, Status> {
        let r = request.into_inner();
        if r.ids.is_empty() {
            return Err(Status::invalid_argument("no ids to remove"));
        }
        self.mutate("RemoveEntries", Mutation::RemoveEntries { set: r.set, ids: r.ids }).await
    }

    async fn delete_set(
        &self,
        request: Request<DeleteSetRequest>,
    ) -> Result<Response<MutationResponse>, Status> {
        let r = request.into_inner();
        self.mutate("DeleteSet", Mutation::DeleteSet { set: r.set }).await
    }

    async fn list_sets(&self, _: Request<ListSetsRequest>) -> Result<Response<ListSetsResponse>, Status> {
        let (_, sets) = self.live.sets().await;
        let stats = self.live.current().stats();
        Ok(Response::new(ListSetsResponse { sets: sets.iter().map(|s| set_info(s, &stats)).collect() }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (store_sequence, sets) = self.live.sets().await;
        let guard = self.live.current();
        let stats = guard.stats();
        let layers = guard.layer_bytes();
        let (ngrams, terms, prefixes, vectors) = guard.index_sizes();
        let status = self.live.status();
        let unix_ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
        };
        Ok(Response::new(StatusResponse {
            snapshot_version: guard.version,
            store_sequence,
            sets: sets.iter().map(|s| set_info(s, &stats)).collect(),
            ngram_fingerprints: ngrams as u64,
            term_fingerprints: terms as u64,
            token_prefixes: prefixes as u64,
            semantic_vectors: vectors as u64,
            index_bytes: guard.index_bytes() as u64,
            last_reload_unix_ms: status.at.map_or(0, unix_ms),
            last_reload_seconds: status.seconds,
            last_error: status.error.unwrap_or_default(),
            content_hash: guard.content_hash.clone(),
            ngram_index_bytes: layers.ngram as u64,
            term_index_bytes: layers.term as u64,
            token_index_bytes: layers.token as u64,
            semantic_index_bytes: layers.semantic as u64,
        }))
    }

    async fn reload_model(
        &self,
        request: Request<ReloadModelRequest>,
    ) -> Result<Response<ReloadModelResponse>, Status> {
        let started = Instant::now();
        let path = std::path::PathBuf::from(request.into_inner().path);
        if !path.is_file() {
            return Err(Status::invalid_argument(format!("{} is not a file on the server", path.display())));
        }
        let format = self.served_format;
        let load_path = path.clone();
        let model = tokio::task::spawn_blocking(move || crate::model::Model::load(&load_path, format))
            .await
            .map_err(|_| Status::internal("model loading was aborted"))?
            .map_err(|e| Status::invalid_argument(format!("{} cannot be served: {e:#}", path.display())))?;
        let model = Arc::new(model);
        let version =
            self.live.swap_model(model.clone()).await.map_err(|e| Status::internal(e.to_string()))?;
        let seconds = started.elapsed().as_secs_f64();
        crate::metrics::model_info(&model.info.name, &model.info.served_format);
        tracing::info!(model = %model.info.name, sha256 = %model.info.sha256, snapshot_version = version, seconds, "model swapped in");
        Ok(Response::new(ReloadModelResponse {
            name: model.info.name.clone(),
            sha256: model.info.sha256.clone(),
            served_format: model.info.served_format.clone(),
            snapshot_version: version,
            seconds,
        }))
    }
}

fn entries(set: &str, entries: Vec<ForgetEntry>) -> Result<Vec<Entry>, Status> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let kind = match e.kind() {
                EntryKind::Document => Kind::Document,
                EntryKind::Term => Kind::Term,
                EntryKind::Unspecified => {
                    return Err(Status::invalid_argument(format!(
                        "entries[{i}].kind must be ENTRY_KIND_DOCUMENT or ENTRY_KIND_TERM"
                    )))
                }
            };
            Ok(Entry {
                id: e.id,
                set: set.to_string(),
                kind,
                text: e.text,
                aliases: e.aliases,
                fingerprints: None,
            })
        })
        .collect()
}

fn policy(p: proto::SetPolicy) -> Result<SetPolicy, Status> {
    let action = match p.action() {
        proto::Action::Unspecified | proto::Action::Block => Action::Block,
        proto::Action::Mask => Action::Mask,
        proto::Action::Monitor => Action::Monitor,
    };
    if let Some(t) = p.semantic_threshold {
        if !(-1.0..=1.0).contains(&t) {
            return Err(Status::invalid_argument(format!("semantic_threshold must be in [-1, 1] (got {t})")));
        }
    }
    Ok(SetPolicy {
        action,
        semantic_threshold: p.semantic_threshold,
        hide_details: p.hide_details,
        fail_open: p.fail_open,
    })
}

fn set_info(s: &SetSummary, stats: &std::collections::BTreeMap<String, SetStats>) -> SetInfo {
    let index = stats.get(&s.name).cloned().unwrap_or_default();
    let action = match s.policy.action {
        Action::Block => proto::Action::Block,
        Action::Mask => proto::Action::Mask,
        Action::Monitor => proto::Action::Monitor,
    };
    SetInfo {
        name: s.name.clone(),
        source: s.source.to_string(),
        policy: Some(proto::SetPolicy {
            action: action as i32,
            semantic_threshold: s.policy.semantic_threshold,
            hide_details: s.policy.hide_details,
            fail_open: s.policy.fail_open,
        }),
        entries: s.entries as u32,
        documents: s.documents as u32,
        terms: s.terms as u32,
        ngram_fingerprints: index.ngram_fingerprints as u64,
        term_fingerprints: index.term_fingerprints as u64,
        token_prefixes: index.token_prefixes as u64,
        semantic_vectors: index.semantic_vectors as u64,
        index_bytes: index.index_bytes as u64,
    }
}

/// Checks `authorization: Bearer <token>` in constant time (admin calls, and inference calls
/// when an inference token is set), or, with mTLS, a client certificate that the TLS layer
/// has verified against the client CA. The token is never logged.
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
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.client_certs {
            // rustls has already rejected any certificate the client CA did not sign.
            if request.peer_certs().is_some_and(|certs| !certs.is_empty()) {
                return Ok(request);
            }
            if self.token.is_none() {
                return Err(Status::unauthenticated(
                    "a client certificate signed by the server's client CA is required (mTLS)",
                ));
            }
        }
        let Some(expected) = &self.token else { return Ok(request) };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::as_bytes)
            .unwrap_or_default();
        if bool::from(presented.ct_eq(expected.as_slice())) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(if self.client_certs {
                "a valid bearer token (authorization: Bearer <token>) or client certificate is required"
            } else {
                "a valid bearer token is required (authorization: Bearer <token>)"
            }))
        }
    }
}
