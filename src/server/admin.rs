//! The `lethe.v1.ForgetAdmin` service: forget-list changes (acknowledged once durable and
//! live), status, and model swaps. Authentication is `auth.rs`, counting `telemetry.rs`.
use super::convert::{entries, policy, set_info};
use super::error::{Error, ReloadError};
use super::validate::ValidationError;
use crate::forget::mutation::Mutation;
use crate::live::Live;
use crate::proto::forget_admin_server::ForgetAdmin;
use crate::proto::*;
use std::sync::Arc;
use std::time::Instant;
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
        let set = m.set().to_string();
        let (snapshot_version, store_sequence, build_seconds) =
            self.live.mutate(m).await.map_err(Error::from)?;
        tracing::info!(method, forget_set = %set, snapshot_version, store_sequence, build_seconds, "forget list changed");
        Ok(Response::new(MutationResponse { snapshot_version, store_sequence, build_seconds }))
    }
}

#[tonic::async_trait]
impl ForgetAdmin for AdminService {
    async fn put_set(&self, request: Request<PutSetRequest>) -> Result<Response<MutationResponse>, Status> {
        let r = request.into_inner();
        let entries = entries(&r.set, r.entries).map_err(Error::from)?;
        let policy = policy(r.policy.unwrap_or_default()).map_err(Error::from)?;
        self.mutate("PutSet", Mutation::PutSet { set: r.set, policy, entries }).await
    }

    async fn add_entries(
        &self,
        request: Request<AddEntriesRequest>,
    ) -> Result<Response<MutationResponse>, Status> {
        let r = request.into_inner();
        if r.entries.is_empty() {
            return Err(Error::from(ValidationError::NoEntries).into());
        }
        let entries = entries(&r.set, r.entries).map_err(Error::from)?;
        self.mutate("AddEntries", Mutation::AddEntries { set: r.set, entries }).await
    }

    async fn remove_entries(
        &self,
        request: Request<RemoveEntriesRequest>,
    ) -> Result<Response<MutationResponse>, Status> {
        let r = request.into_inner();
        if r.ids.is_empty() {
            return Err(Error::from(ValidationError::NoIds).into());
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
        let sizes = guard.index_sizes();
        let status = self.live.status();
        let unix_ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
        };
        Ok(Response::new(StatusResponse {
            snapshot_version: guard.version,
            store_sequence,
            sets: sets.iter().map(|s| set_info(s, &stats)).collect(),
            ngram_fingerprints: sizes.ngrams as u64,
            term_fingerprints: sizes.terms as u64,
            token_prefixes: sizes.token_prefixes as u64,
            semantic_vectors: sizes.vectors as u64,
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
        let shown = super::validate::truncate(&path.display().to_string(), 256);
        if !path.is_file() {
            return Err(Error::from(ReloadError::NotAFile(shown)).into());
        }
        let format = self.served_format;
        let model = tokio::task::spawn_blocking(move || crate::model::Model::load(&path, format))
            .await
            .map_err(|_| Error::Internal("model loading was aborted".into()))?
            .map_err(|e| {
                // The outermost message only: the causes under it can quote the file's bytes
                // (a bad magic number, a name read from its header) or carry a backtrace.
                let reason = super::validate::truncate(&e.to_string(), 300);
                tracing::warn!(error = %format!("{e:#}"), "a model to reload was refused");
                Error::from(ReloadError::Unservable { path: shown, reason })
            })?;
        let model = Arc::new(model);
        let version = self.live.swap_model(model.clone()).await.map_err(Error::from)?;
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
