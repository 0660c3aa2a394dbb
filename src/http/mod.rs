//! The OpenAI-compatible HTTP front door (`http_listen`): `POST /v1/chat/completions`,
//! `POST /v1/completions` (whole, or `stream: true` as server-sent events), `GET /v1/models`,
//! `GET /health`. It runs the same generations as the gRPC API (`InferenceService::start`:
//! the served model, or an upstream engine) and delivers only text the stream guard cleared.
//! axum serves it (already in the tree through tonic), on its own port so the gRPC listener
//! keeps its transport settings. Errors are shaped in `server/error.rs`.
pub mod openai;

use crate::server::error::{Error, HttpError};
use crate::server::generation::Event;
use crate::server::inference::InferenceService;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use openai::{Kind, Reply};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

pub struct Http {
    service: InferenceService,
    /// The inference token, when set, is the bearer token of `/v1`.
    token: Option<Vec<u8>>,
    /// Cancelled on SIGTERM: new generations get 503 while those in flight finish.
    shutdown: tokio_util::sync::CancellationToken,
}

impl Http {
    pub fn new(
        service: InferenceService,
        token: Option<String>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self { service, token: token.map(String::into_bytes), shutdown }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Error> {
        let Some(expected) = &self.token else { return Ok(()) };
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if crate::server::auth::bearer_matches(header, expected) {
            Ok(())
        } else {
            Err(Error::Unauthenticated(
                "a valid API key is required (authorization: Bearer <the inference token>)",
            ))
        }
    }
}

/// The routes, sharing `http`.
pub fn router(http: Arc<Http>) -> Router {
    // Validation answers precisely up to max_request_bytes; the body cap above it stops abuse.
    let limit = http.service.state().config.max_request_bytes.saturating_mul(2).max(64 << 10);
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(http)
}

/// Serves the front door on `addr` until its shutdown token is cancelled; in-flight
/// responses finish.
pub async fn serve(addr: SocketAddr, http: Arc<Http>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let shutdown = http.shutdown.clone();
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP listener to {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving the OpenAI-compatible HTTP API");
    let app = router(http);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    }))
}

/// Longest wait for the first cleared text before a stream's status goes out anyway.
const HEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Counts a request when dropped: at the end of the body for streams.
struct Recorder {
    route: &'static str,
    status: u16,
    started: Instant,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        crate::metrics::http_request(self.route, self.status, self.started.elapsed());
    }
}

/// A JSON response (axum's `Json` would need its `json` feature and one more crate).
fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(e: &Error) -> Response {
    let http @ HttpError { status, retry_after, .. } = &e.http();
    let mut response = json_response(
        StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &http.body(),
    );
    if let Some(secs) = retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(*secs));
    }
    if matches!(e, Error::GuardFailedClosed) {
        // Retrying would fail the same way; OpenAI's client honours this header.
        response.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
    }
    response
}

fn finished(route: &'static str, started: Instant, result: Result<Response, Error>) -> Response {
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            if e.http().status >= 500 {
                tracing::warn!(route, error = %e, "HTTP request failed");
            }
            error_response(&e)
        }
    };
    drop(Recorder { route, status: response.status().as_u16(), started });
    response
}

async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn no_route(uri: axum::http::Uri) -> Response {
    let path = crate::server::validate::truncate(uri.path(), 64);
    error_response(&Error::NoRoute(path))
}

async fn models(State(http): State<Arc<Http>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let result = http.authorize(&headers).map(|()| {
        let state = http.service.state();
        // No local model on a server that only guards upstreams: their models only.
        let local = state.live.model().map(|m| m.info.name.clone());
        let mut data: Vec<Value> = local
            .iter()
            .map(|name| json!({"id": name, "object": "model", "created": 0, "owned_by": "lethe"}))
            .collect();
        for (id, upstream) in state.upstreams.models() {
            if local.as_ref() == Some(&id) {
                continue;
            }
            data.push(json!({"id": id, "object": "model", "created": 0, "owned_by": upstream}));
        }
        json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
    });
    finished("/v1/models", started, result)
}

async fn chat(State(http): State<Arc<Http>>, headers: HeaderMap, body: Bytes) -> Response {
    generate(http, Kind::Chat, headers, body).await
}

async fn completions(State(http): State<Arc<Http>>, headers: HeaderMap, body: Bytes) -> Response {
    generate(http, Kind::Completion, headers, body).await
}

async fn generate(http: Arc<Http>, kind: Kind, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let route = match kind {
        Kind::Chat => "/v1/chat/completions",
        Kind::Completion => "/v1/completions",
    };
    let result = async {
        if http.shutdown.is_cancelled() {
            return Err(Error::Draining);
        }
        http.authorize(&headers)?;
        let parsed = openai::parse(kind, &body)?;
        let mut request = parsed.request;
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            request.request_id = id.to_string();
        }
        let (job, mut rx) = http.service.start(&request, None).await?;
        let model = match request.model.as_deref() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => job.model_name.clone(),
        };
        let reply = Reply::new(kind, &job.request_id, &model);
        // The status waits for the first cleared text (or the end), so a failure inside the
        // hold-back still gets a real status instead of an error event after a 200. A stream
        // waits at most HEAD_WAIT, then starts with keep-alive comments (clients and proxies
        // drop connections that stay silent).
        let first = if parsed.stream {
            tokio::time::timeout(HEAD_WAIT, rx.recv()).await.ok()
        } else {
            Some(rx.recv().await)
        };
        let first = match first {
            None => None,
            Some(None) => return Err(Error::Internal("the generation ended without a result".into())),
            Some(Some(Event::Failed(e))) => return Err(e),
            Some(Some(event)) => Some(event),
        };
        let mut response = if parsed.stream {
            stream(
                reply,
                job.request_id.clone(),
                parsed.include_usage,
                first,
                rx,
                Recorder { route, status: 200, started },
            )
        } else {
            whole(reply, &job.request_id, first, rx).await?
        };
        if let Ok(id) = HeaderValue::from_str(&job.request_id) {
            response.headers_mut().insert("x-request-id", id);
        }
        Ok(response)
    }
    .await;
    match result {
        // A stream counts itself when it ends.
        Ok(r)
            if r.headers()
                .get(axum::http::header::CONTENT_TYPE)
                .is_some_and(|v| v == "text/event-stream") =>
        {
            r
        }
        other => finished(route, started, other),
    }
}

async fn whole(
    reply: Reply,
    request_id: &str,
    first: Option<Event>,
    mut rx: mpsc::Receiver<Event>,
) -> Result<Response, Error> {
    let mut text = String::new();
    let mut event = first;
    loop {
        let next = match event.take() {
            Some(e) => Some(e),
            None => rx.recv().await,
        };
        match next {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::End(summary)) => {
                return Ok(json_response(StatusCode::OK, &reply.complete(&text, &summary, request_id)))
            }
            Some(Event::Failed(e)) => return Err(e),
            None => return Err(Error::Internal("the generation ended without a result".into())),
        }
    }
}

/// The SSE response: chunks of cleared text, then the finish chunk, the usage chunk when
/// asked, and `[DONE]`; a failure after the status is an error event, then `[DONE]`. A task
/// turns events into chunks and stops (dropping the generation's receiver, which stops the
/// generation or the upstream) as soon as the client is gone.
fn stream(
    reply: Reply,
    request_id: String,
    include_usage: bool,
    first: Option<Event>,
    mut rx: mpsc::Receiver<Event>,
    recorder: Recorder,
) -> Response {
    type SseEvent = axum::response::sse::Event;
    let (out, out_rx) = mpsc::channel::<Result<SseEvent, Infallible>>(16);
    tokio::spawn(async move {
        let _recorder = recorder;
        let data = |v: serde_json::Value| Ok(SseEvent::default().data(v.to_string()));
        let mut queue = Vec::new();
        if reply.kind == Kind::Chat {
            queue.push(data(reply.role_chunk()));
        }
        let mut event = first;
        loop {
            let next = match event.take() {
                Some(e) => Some(e),
                None => tokio::select! {
                    e = rx.recv() => e,
                    _ = out.closed() => return,
                },
            };
            let end = match next {
                Some(Event::Text(t)) => {
                    queue.push(data(reply.text_chunk(&t)));
                    false
                }
                Some(Event::End(summary)) => {
                    queue.push(data(reply.finish_chunk(&summary, &request_id)));
                    if include_usage {
                        queue.extend(reply.usage_chunk(&summary).map(data));
                    }
                    true
                }
                Some(Event::Failed(e)) => {
                    queue.push(data(e.http().body()));
                    true
                }
                None => {
                    queue.push(data(
                        Error::Internal("the generation ended without a result".into()).http().body(),
                    ));
                    true
                }
            };
            for item in queue.drain(..) {
                if out.send(item).await.is_err() {
                    return;
                }
            }
            if end {
                let _ = out.send(Ok(SseEvent::default().data("[DONE]"))).await;
                return;
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(out_rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
