//! The gRPC server: inference, health and reflection on one listener (ForgetAdmin there too,
//! or on its own), TLS, graceful shutdown. Each listener's services sit behind the telemetry
//! layer (`telemetry.rs`), and the authenticated ones behind `auth.rs`. With `http_listen`,
//! the OpenAI-compatible front door (`crate::http`) serves the same state on its own port.
pub mod admin;
pub mod admission;
pub mod auth;
pub mod connections;
pub mod convert;
pub mod error;
pub mod generation;
pub mod inference;
pub mod outcome;
pub mod telemetry;
pub mod validate;

use crate::config::Config;
use crate::forget::pg::{Connector, Db};
use crate::forget::store::{Rollback, Store};
use crate::live::{Backend, Live};
use crate::model::Model;
use crate::proto::forget_admin_server::ForgetAdminServer;
use crate::proto::inference_server::InferenceServer;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

pub async fn serve(config: Config) -> Result<()> {
    crate::metrics::install(config.metrics_listen)?;
    let model = match config.model_path() {
        Some(path) => {
            let format = config.served_format;
            let shown = path.display().to_string();
            let model = tokio::task::spawn_blocking(move || Model::load(&path, format))
                .await?
                .with_context(|| format!("loading the model {shown}"))?;
            Some(Arc::new(model))
        }
        None => {
            let upstreams: Vec<&str> = config.upstream.iter().map(|u| u.name.as_str()).collect();
            tracing::info!(?upstreams, "no local model: `model` is unset and upstreams are configured, so this server only guards them");
            None
        }
    };
    let tls = tls_config(&config)?;
    let admin_auth = auth::BearerAuth::new(admin_token(&config)?)
        .accepting_client_certs(config.tls_client_ca_file.is_some());
    let (store, shared) = open_store(&config, tls.clone()).await?;
    let live = {
        let (config, model) = (config.clone(), model.clone());
        tokio::task::spawn_blocking(move || start_live(&config, model, store)).await??
    };
    let live = Arc::new(live);
    let stop_following = tokio_util::sync::CancellationToken::new();
    let _stop_following = stop_following.clone().drop_guard();
    if let Some(connector) = shared {
        crate::follow::start(live.clone(), connector, stop_following);
    }
    let state = Arc::new(inference::State {
        admission: admission::Admission::new(config.max_concurrent_generations, config.max_queued_requests),
        live: live.clone(),
        audit: crate::guard::audit::Auditor::start(config.guard.audit_sample_rate),
        config: config.clone(),
        validating: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        upstreams: crate::upstream::Upstreams::new(&config.upstream)?,
    });
    if let Some(model) = live.model() {
        crate::metrics::model_info(&model.info.name, &model.info.served_format);
    }
    crate::upstream::client::start_probes(&state.upstreams);
    watch_forget_files(&config, &live)?;

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
    // Inference needs a token only when one is configured; health and reflection never do.
    let inference_token =
        read_token("LETHE_INFERENCE_TOKEN", config.inference_token_file.as_deref(), "inference")?;
    let inference = tonic::service::interceptor::InterceptedService::new(
        InferenceServer::new(inference::InferenceService::new(state.clone()))
            .max_decoding_message_size(transport_limit),
        auth::BearerAuth::new(inference_token.clone()),
    );
    // Forget sets can be large: allow 64 MiB per admin call.
    let admin = tonic::service::interceptor::InterceptedService::new(
        ForgetAdminServer::new(admin::AdminService::new(live.clone(), config.served_format))
            .max_decoding_message_size(64 << 20),
        admin_auth,
    );

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the gRPC listener to {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, tls = config.tls_cert_file.is_some(), mtls = config.tls_client_ca_file.is_some(), "serving gRPC");

    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let limits = connections::Limits::new(
        config.max_connections,
        Duration::from_secs_f64(config.first_byte_timeout_secs),
    );
    tracing::info!(max_connections = limits.max_connections, "connection limits");
    {
        let (shutdown, mut health) = (shutdown.clone(), health);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: refusing new connections, draining in-flight requests");
            health.set_not_serving::<InferenceServer<inference::InferenceService>>().await;
            health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            let _ = stop_tx.send(true);
            shutdown.cancel();
            // Health Watch streams have seen NOT_SERVING; dropping the statuses ends them, so
            // they do not hold the drain open.
            tokio::time::sleep(Duration::from_millis(100)).await;
            health
                .clear_service_status(
                    <InferenceServer<inference::InferenceService> as tonic::server::NamedService>::NAME,
                )
                .await;
            health.clear_service_status("").await;
        });
    }
    if let Some(addr) = config.http_listen {
        let service = inference::InferenceService::new(state.clone());
        let http = Arc::new(crate::http::Http::new(service, inference_token, shutdown.clone()));
        crate::http::serve(addr, http).await?;
    }
    // ForgetAdmin shares the inference listener unless it has an address of its own.
    let (admin_here, admin_apart) = match config.admin_listen {
        Some(addr) => (None, Some((addr, admin))),
        None => (Some(admin), None),
    };
    if let Some((addr, admin)) = admin_apart {
        let listener =
            TcpListener::bind(addr).await.with_context(|| format!("binding the admin listener to {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving ForgetAdmin");
        let stop = stopped(stop_rx.clone());
        let shutdown = shutdown.clone();
        let builder = transport(tls.clone())?;
        tokio::spawn(async move {
            let served = builder
                .layer(telemetry::TelemetryLayer)
                .add_service(admin)
                .serve_with_incoming_shutdown(connections::incoming(listener, limits, shutdown), stop)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    let server = transport(tls)?
        .layer(telemetry::TelemetryLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(inference)
        .add_optional_service(admin_here)
        .serve_with_incoming_shutdown(
            connections::incoming(listener, limits, shutdown),
            stopped(stop_rx.clone()),
        );
    let drain = Duration::from_secs_f64(config.drain_timeout_secs);
    tokio::select! {
        result = server => result.context("gRPC server failed")?,
        _ = async { stopped(stop_rx).await; tokio::time::sleep(drain).await } => {
            // Requests were cut off: say so in the exit code too, so an orchestrator sees it.
            anyhow::bail!("drain timeout ({} s) reached; exiting with requests still in flight", config.drain_timeout_secs);
        }
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Opens the forget store: the file log in `data_dir`, or the shared one in `database_url`
/// (with its connector, for the tail). A database that cannot be reached is retried for a
/// minute, each failure logged and health answering NOT_SERVING, then the start fails: there
/// is no local copy to serve.
async fn open_store(
    config: &Config,
    tls: Option<ServerTlsConfig>,
) -> Result<(Option<Backend>, Option<Connector>)> {
    if let Some(dir) = config.data_dir.clone() {
        let rollback = if config.accept_store_rollback { Rollback::Accept } else { Rollback::Refuse };
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, rollback)).await??;
        return Ok((Some(Backend::File(store)), None));
    }
    let Some(url) = &config.database_url else { return Ok((None, None)) };
    let password = match &config.database_password_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the database password file {}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        None => None,
    };
    let connector = Connector::new(url, password.as_deref(), config.database_ca_file.as_deref())?;
    let mut db = match Db::connect(connector.clone()).await {
        Ok(db) => db,
        Err(e) => {
            connect_failed(&e);
            not_serving_while(config.listen, tls, connect_with_retries(&connector)).await?
        }
    };
    let log = db.load().await.context("loading the shared forget store (database_url)")?;
    tracing::info!(sequence = log.sequence, sets = log.sets.len(), "shared forget store loaded");
    crate::metrics::store_up(true);
    Ok((Some(Backend::Shared { db, log }), Some(connector)))
}

fn connect_failed(e: &anyhow::Error) {
    tracing::error!(error = %format!("{e:#}"), "connecting to the shared forget store (database_url) failed; not serving yet, retrying");
}

/// Retries connecting to the shared store for `DATABASE_START_TIMEOUT`, each failure logged.
async fn connect_with_retries(connector: &Connector) -> Result<Db> {
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        match Db::connect(connector.clone()).await {
            Ok(db) => return Ok(db),
            Err(e) if started.elapsed() < DATABASE_START_TIMEOUT => connect_failed(&e),
            Err(e) => {
                return Err(e.context(format!(
                    "the shared forget store (database_url) could not be reached for {} s",
                    DATABASE_START_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

const DATABASE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `wait` with the gRPC listener answering health checks NOT_SERVING (and nothing else),
/// so probes and clients see a replica waiting for its forget store, not a missing listener.
async fn not_serving_while<T>(
    listen: std::net::SocketAddr,
    tls: Option<ServerTlsConfig>,
    wait: impl std::future::Future<Output = T>,
) -> T {
    let (listener, mut builder) = match (TcpListener::bind(listen).await, transport(tls)) {
        (Ok(listener), Ok(builder)) => (listener, builder),
        _ => return wait.await, // the real bind reports the error
    };
    let (mut health, service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(builder.add_service(service).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        async {
            let _ = stop_rx.await;
        },
    ));
    let out = wait.await;
    // Ends Health/Watch streams, which would otherwise hold the shutdown open.
    health.clear_service_status("").await;
    let _ = stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(5), server).await.is_err() {
        tracing::warn!("the interim health listener did not stop in 5 s");
    }
    out
}

/// Loads the embedder, the forget file and the durable store, and builds the first snapshot.
fn start_live(config: &Config, model: Option<Arc<Model>>, store: Option<Backend>) -> Result<Live> {
    let started = std::time::Instant::now();
    let cfg = &config.guard;
    let embedder = cfg.load_embedder().with_context(|| {
        format!(
            "loading the sentence embedder from {} (run scripts/fetch-models.sh, or pass --no-semantic to turn the semantic layer off)",
            cfg.embedder.as_deref().unwrap_or(std::path::Path::new("")).display()
        )
    })?;
    let live = Live::start(cfg.clone(), model, embedder, store, config.forget_store)?;
    let guard = live.current();
    let sizes = guard.index_sizes();
    tracing::info!(
        entries = guard.entry_count(),
        ngrams = sizes.ngrams,
        terms = sizes.terms,
        token_prefixes = sizes.token_prefixes,
        semantic_windows = sizes.vectors,
        semantic = guard.has_semantic(),
        build_seconds = started.elapsed().as_secs_f64(),
        "guard ready"
    );
    Ok(live)
}

/// A transport with TLS when configured.
/// The HTTP/2 side of the connection limits: keepalive pings find dead peers (half-open
/// connections, a vanished NAT entry) and a cap on concurrent streams per connection.
fn transport(tls: Option<ServerTlsConfig>) -> Result<tonic::transport::Server> {
    let builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION));
    Ok(match tls {
        Some(tls) => builder.tls_config(tls).context("the TLS configuration is not usable")?,
        None => builder,
    })
}

/// TLS for the gRPC listeners from PEM files; with a client CA, client certificates it signed
/// are verified (mTLS) and authenticate admin calls. Clients without one may still connect.
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else { return Ok(None) };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("reading the TLS {what} {}", path.display()))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read(cert, "certificate (tls_cert_file)")?,
        read(key, "key (tls_key_file)")?,
    ));
    if let Some(ca) = &config.tls_client_ca_file {
        let ca = read(ca, "client CA (tls_client_ca_file)")?;
        tls = tls.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(true);
    }
    Ok(Some(tls))
}

/// The admin token from LETHE_ADMIN_TOKEN or `admin_token_file`. Without a token or mTLS,
/// ForgetAdmin is only served on a loopback address.
fn admin_token(config: &Config) -> Result<Option<String>> {
    let token = read_token("LETHE_ADMIN_TOKEN", config.admin_token_file.as_deref(), "admin")?;
    let addr = config.admin_listen.unwrap_or(config.listen);
    if token.is_none() && config.tls_client_ca_file.is_none() {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "refusing to serve ForgetAdmin on {addr} without a credential: set LETHE_ADMIN_TOKEN or admin_token_file, or tls_client_ca_file for client certificates"
        );
        tracing::warn!(%addr, "ForgetAdmin has no token: any local process can change forget lists");
    }
    Ok(token)
}

/// A bearer token from an environment variable (the token itself) or a file; at least 16
/// characters.
fn read_token(env: &str, file: Option<&std::path::Path>, what: &str) -> Result<Option<String>> {
    let token = match (std::env::var(env).ok(), file) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the {what} token file {}", path.display()))?,
        ),
        (None, None) => None,
    };
    let token = token.map(|t| t.trim().to_string());
    if token.as_ref().is_some_and(|t| t.len() < 16) {
        anyhow::bail!("the {what} token must be at least 16 characters");
    }
    Ok(token)
}

/// Reloads the forget file or folder on SIGHUP and, with `watch_forget`, when it changes.
fn watch_forget_files(config: &Config, live: &Arc<Live>) -> Result<()> {
    let Some(path) = config.guard.forget.clone() else { return Ok(()) };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = tx.send(());
            }
        });
    }
    let watcher = if config.watch_forget {
        use notify::Watcher;
        // Watch the folder (or the file's folder): editors and Kubernetes replace files by
        // renaming, which a watch on the file itself would lose. Reads are not changes.
        let dir = if path.is_dir() {
            path.clone()
        } else {
            path.parent().map(|p| p.to_path_buf()).unwrap_or_default()
        };
        let tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                let _ = tx.send(());
            }
        })?;
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        Some(watcher)
    } else {
        None
    };
    let live = live.clone();
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // Let a burst of file events settle into one reload.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let _ = live.reload_files().await;
        }
    });
    Ok(())
}

const MAX_STREAMS_PER_CONNECTION: u32 = 128;

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
