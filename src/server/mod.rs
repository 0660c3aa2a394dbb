//! The gRPC server: inference, health and reflection on one listener, graceful shutdown.
pub mod admission;
pub mod generation;
pub mod inference;
pub mod validate;

use crate::config::Config;
use crate::guard::{semantic::Embedder, Guard};
use crate::model::Model;
use crate::proto::inference_server::InferenceServer;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

/// What every RPC handler shares.
pub struct State {
    pub config: Config,
    pub model: Arc<Model>,
    pub guard: Arc<Guard>,
    pub admission: admission::Admission,
}

pub async fn serve(config: Config) -> Result<()> {
    crate::metrics::install(config.metrics_listen)?;
    let model_path = config.model.clone();
    let format = config.served_format;
    let model = tokio::task::spawn_blocking(move || Model::load(&model_path, format))
        .await?
        .with_context(|| format!("loading the model {}", config.model.display()))?;
    let guard_config = config.guard.clone();
    let (model, guard) = tokio::task::spawn_blocking(move || -> Result<_> {
        let guard = build_guard(&guard_config, &model)?;
        Ok((model, guard))
    })
    .await??;
    let state = Arc::new(State {
        admission: admission::Admission::new(config.max_concurrent_generations, config.max_queued_requests),
        model: Arc::new(model),
        guard: Arc::new(guard),
        config: config.clone(),
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<InferenceServer<inference::InferenceService>>().await;
    // grpcurl speaks reflection v1alpha, newer clients v1: serve both.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    // Requests up to the configured limit get a precise INVALID_ARGUMENT from validation;
    // the transport cap above it only stops abuse.
    let transport_limit = config.max_request_bytes.saturating_mul(4).max(64 << 10);
    let inference = InferenceServer::new(inference::InferenceService::new(state.clone()))
        .max_decoding_message_size(transport_limit);

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the gRPC listener to {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving gRPC");

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: refusing new connections, draining in-flight requests");
        health.set_not_serving::<InferenceServer<inference::InferenceService>>().await;
        let _ = stop_tx.send(true);
    });
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(inference)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped(stop_rx.clone()));
    let drain = Duration::from_secs_f64(config.drain_timeout_secs);
    tokio::select! {
        result = server => result.context("gRPC server failed")?,
        _ = async { stopped(stop_rx).await; tokio::time::sleep(drain).await } => {
            tracing::warn!(drain_timeout_secs = config.drain_timeout_secs, "drain timeout reached; exiting with requests still in flight");
        }
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Loads the embedder and the forget list and builds the guard's indexes.
fn build_guard(cfg: &crate::guard::GuardConfig, model: &Model) -> Result<Guard> {
    let started = std::time::Instant::now();
    let embedder = match &cfg.embedder {
        Some(dir) => Some(Arc::new(Embedder::load(dir).with_context(|| {
            format!(
                "loading the sentence embedder from {} (run scripts/fetch-models.sh, or pass --no-semantic to turn the semantic layer off)",
                dir.display()
            )
        })?)),
        None => None,
    };
    let entries = match &cfg.forget {
        Some(path) => crate::forget::load(path)?,
        None => Vec::new(),
    };
    let guard = Guard::build(&entries, cfg, Some(model), embedder, 1)?;
    let (ngrams, terms, token_prefixes, windows) = guard.index_sizes();
    tracing::info!(
        entries = guard.entry_count(),
        ngrams,
        terms,
        token_prefixes,
        semantic_windows = windows,
        semantic = guard.has_semantic(),
        build_seconds = started.elapsed().as_secs_f64(),
        "guard ready"
    );
    Ok(guard)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
