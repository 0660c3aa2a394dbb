//! The `lethe.v1.Inference` service: validate, admit, generate on a blocking thread, reply.
//! Handlers return typed errors; `error.rs` turns them into statuses, and the telemetry layer
//! counts every call.
use super::admission::Admission;
use super::error::Error;
use super::generation::{self, Event, Summary};
use super::validate::{validate, validate_forwarded, Job, ValidationError};
use crate::config::Config;
use crate::guard::audit::Auditor;
use crate::guard::check::{Stop, Stopped};
use crate::guard::CheckParams;
use crate::live::Live;
use crate::proto::inference_server::Inference;
use crate::proto::{
    CheckRequest, CheckResponse, GenerateRequest, GenerateResponse, GenerateStreamResponse,
    GetModelInfoRequest, ModelInfo, Usage,
};
use crate::upstream::{Remote, Upstream, Upstreams};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status};

/// What the inference handlers share.
pub struct State {
    pub config: Config,
    pub audit: Auditor,
    pub live: Arc<Live>,
    pub admission: Admission,
    /// Requests validated at once (templating and tokenizing a large request takes memory as
    /// well as CPU): one per core, the rest wait.
    pub validating: tokio::sync::Semaphore,
    /// Engines whose streams this server guards, by model id.
    pub upstreams: Upstreams,
}

pub struct InferenceService {
    state: Arc<State>,
}

impl InferenceService {
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// The shared state (the HTTP front door serves from it too).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Validates and admits a request, then starts its generation (on the served model, or
    /// forwarded to the upstream its `model` routes to); events arrive on the returned
    /// channel. The generation slot is released when the generation ends.
    pub async fn start(
        &self,
        req: &GenerateRequest,
        deadline: Option<Instant>,
    ) -> Result<(Job, mpsc::Receiver<Event>), Error> {
        let snapshot = self.state.live.snapshot();
        if let Some(model) = req.model.as_deref().filter(|m| !m.is_empty()) {
            if snapshot.model.as_ref().is_none_or(|local| model != local.info.name) {
                let upstream = self
                    .state
                    .upstreams
                    .route(model)
                    .ok_or_else(|| Error::UnknownModel(super::validate::truncate(model, 64)))?;
                return self.forward(upstream.clone(), req, deadline);
            }
        }
        let model = snapshot.model.clone().ok_or(Error::NoLocalModel)?;
        let guard = snapshot.guard.clone();
        // Chat templating and tokenization of up to max_request_bytes take CPU time: off the
        // async workers, which must keep answering health checks and other calls.
        let validating =
            self.state.validating.acquire().await.map_err(|_| Error::Internal("shutting down".into()))?;
        let (state, request, on) = (self.state.clone(), req.clone(), model.clone());
        let job = tokio::task::spawn_blocking(move || {
            let job = validate(&request, &state.config, &on);
            if prost::Message::encoded_len(&request) >= LARGE_REQUEST_BYTES {
                return_freed_memory();
            }
            job
        })
        .await
        .map_err(|_| Error::Internal("validation was aborted".into()))??;
        drop(validating);
        let permit = self.admit(deadline, "while queued for a generation slot").await?;
        if self.state.config.log_content {
            tracing::debug!(request_id = %job.request_id, prompt = ?req.prompt, messages = ?req.messages, "request content");
        }
        tracing::info!(
            request_id = %job.request_id,
            prompt_tokens = job.prompt_ids.len(),
            max_new_tokens = job.max_new_tokens,
            "generation started"
        );
        let (tx, rx) = mpsc::channel(64);
        let worker_job = job.clone();
        let prompt = prompt_text(req);
        let check_prompt = self.state.config.guard.check_prompts;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let _running = crate::metrics::running_generation();
            if check_prompt {
                report_forgotten_prompt(&guard, &prompt, &worker_job.request_id);
            }
            // Entries the prompt names are checked more closely in the answer.
            let scope = guard.scope(&prompt);
            // A panic is a bug; it must end the request with an error the client sees, not
            // with a stream that simply stops (which reads as a complete reply).
            let run = || generation::run(&model, &guard, &state.audit, &worker_job, deadline, &tx, scope);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
                tracing::error!(request_id = %worker_job.request_id, "generation panicked");
                let failed = Error::Internal("the generation failed on the server".into());
                let _ = tx.blocking_send(Event::Failed(failed));
            }
            drop(permit);
        });
        Ok((job, rx))
    }

    /// Forwards a request to `upstream` and guards its stream on a blocking thread. No
    /// generation slot is taken (the engine does the generating, and its own queue answers
    /// 429 when full); the upstream's `max_in_flight` bounds the threads and connections.
    fn forward(
        &self,
        upstream: Arc<Upstream>,
        req: &GenerateRequest,
        deadline: Option<Instant>,
    ) -> Result<(Job, mpsc::Receiver<Event>), Error> {
        let request_id = validate_forwarded(req, &self.state.config)?;
        let slot = upstream.slot()?;
        let guard = self.state.live.current();
        tracing::info!(request_id = %request_id, upstream = upstream.name(), "forwarding to upstream");
        let (tx, rx) = mpsc::channel(64);
        let (deltas_tx, deltas_rx) = mpsc::channel(64);
        tokio::spawn(crate::upstream::client::forward(
            upstream.clone(),
            req.clone(),
            deadline,
            deltas_tx,
            tx.clone(),
        ));
        let job = Job {
            request_id: request_id.clone(),
            model_name: req.model.clone().unwrap_or_default(),
            prompt_ids: Vec::new(),
            max_new_tokens: req.max_new_tokens.unwrap_or(0) as usize,
            min_new_tokens: 0,
            sampling: crate::model::Sampling {
                temperature: req.temperature.unwrap_or(0.0) as f64,
                top_p: None,
                top_k: None,
                seed: 0,
            },
            stop: req.stop.clone(),
        };
        let (prompt, stops) = (prompt_text(req), req.stop.clone());
        let check_prompt = self.state.config.guard.check_prompts;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            if check_prompt {
                report_forgotten_prompt(&guard, &prompt, &request_id);
            }
            let scope = guard.scope(&prompt);
            let stream = crate::guard::stream::StreamGuard::new(guard.clone())
                .with_scope(scope.clone())
                .masks_block(upstream.masks_block());
            let mut source = Remote::new(&upstream, deltas_rx);
            let run = || {
                generation::drive(&mut source, stream, scope, &guard, &state.audit, &request_id, &stops, &tx)
            };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
                tracing::error!(request_id = %request_id, "guarding the upstream stream panicked");
                let failed = Error::Internal("guarding the upstream stream failed on the server".into());
                let _ = tx.blocking_send(Event::Failed(failed));
            }
            drop(slot);
        });
        Ok((job, rx))
    }

    /// A slot of the admission queue, waiting at most until `deadline` (`waiting` says where
    /// in the deadline's message).
    async fn admit(&self, deadline: Option<Instant>, waiting: &str) -> Result<OwnedSemaphorePermit, Error> {
        let queued_at = Instant::now();
        let admitted = self.state.admission.admit();
        let permit = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), admitted)
                .await
                .map_err(|_| Error::DeadlineExceeded(waiting.to_string()))?,
            None => admitted.await,
        }
        .map_err(|_| Error::QueueFull {
            running: self.state.config.max_concurrent_generations,
            queued: self.state.config.max_queued_requests,
        })?;
        crate::metrics::queue_time(queued_at.elapsed());
        Ok(permit)
    }
}

/// Requests from this size on hand the memory their validation freed back to the system.
const LARGE_REQUEST_BYTES: usize = 256 << 10;

/// glibc keeps freed memory in its per-thread arenas; after a large request (a megabyte of
/// prompt is tens of megabytes of tokenizer state) that would stay in the process's RSS.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        let deadline = deadline_of(&request);
        let (job, mut rx) = self.start(request.get_ref(), deadline).await?;
        let mut text = String::new();
        let collect = async {
            while let Some(event) = rx.recv().await {
                match event {
                    Event::Text(t) => text.push_str(&t),
                    Event::End(summary) => return Ok(summary),
                    Event::Failed(e) => return Err(e),
                }
            }
            Err(Error::Internal("generation ended without a result".into()))
        };
        let summary = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), collect)
                .await
                .map_err(|_| Error::DeadlineExceeded("during generation".into()))??,
            None => collect.await?,
        };
        Ok(Response::new(GenerateResponse {
            text,
            verdict: summary.verdict as i32,
            matches: summary.matches.clone(),
            finish_reason: summary.finish as i32,
            usage: Some(usage(&summary)),
            request_id: job.request_id,
            model: job.model_name.clone(),
        }))
    }

    type GenerateStreamStream = GenerateStream;

    async fn generate_stream(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStreamStream>, Status> {
        let deadline = deadline_of(&request);
        let (job, rx) = self.start(request.get_ref(), deadline).await?;
        let request_id = job.request_id;
        let stream = ReceiverStream::new(rx).map(move |event| match event {
            Event::Text(text) => Ok(GenerateStreamResponse { text, ..Default::default() }),
            Event::End(summary) => Ok(GenerateStreamResponse {
                text: String::new(),
                verdict: summary.verdict as i32,
                matches: summary.matches.clone(),
                finish_reason: summary.finish as i32,
                usage: Some(usage(&summary)),
                request_id: request_id.clone(),
            }),
            Event::Failed(e) => Err(e.into()),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// A check is bounded work: its own size limit, a generation slot (it competes with
    /// generations for the same cores), and it stops at the caller's deadline or cancel.
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let deadline = deadline_of(&request);
        let req = request.into_inner();
        let limit = self.state.config.max_check_bytes;
        let size = req.text.len() + req.prompt.len();
        if size > limit {
            return Err(Error::from(ValidationError::TextTooLarge { size, limit }).into());
        }
        let guard = self.state.live.current();
        if let Some(unknown) = req.forget_sets.iter().find(|s| !guard.has_set(s)) {
            let set = super::validate::truncate(unknown, 64);
            return Err(Error::from(ValidationError::UnknownSet { set, version: guard.version }).into());
        }
        let permit = self.admit(deadline, "while queued for a slot to check in").await?;
        // Set when this handler is dropped (the client cancelled or went away).
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _on_drop = SetOnDrop(cancelled.clone());
        let check = tokio::task::spawn_blocking(move || {
            let stop = Stop { deadline, cancelled: Some(&cancelled) };
            let scope = (!req.prompt.is_empty()).then(|| guard.scope(&req.prompt));
            let params = CheckParams { sets: &req.forget_sets, exact: false, stop, scope: scope.as_ref() };
            let findings = guard.check(&req.text, params);
            drop(permit);
            let matches: Vec<_> =
                findings?.iter().map(|f| super::convert::to_match(&guard, f, &req.text)).collect();
            anyhow::Ok(CheckResponse {
                matched: !matches.is_empty(),
                matches,
                snapshot_version: guard.version,
            })
        });
        let reply =
            check.await.map_err(|_| Error::Internal("the check was aborted".into()))?.map_err(|e| {
                match e.downcast_ref::<Stopped>() {
                    Some(Stopped::DeadlineExceeded) => Error::DeadlineExceeded("during the check".into()),
                    Some(Stopped::Cancelled) => Error::Cancelled,
                    None => {
                        tracing::error!(error = %format!("{e:#}"), "check failed");
                        Error::CheckFailed
                    }
                }
            })?;
        Ok(Response::new(reply))
    }

    async fn get_model_info(
        &self,
        _request: Request<GetModelInfoRequest>,
    ) -> Result<Response<ModelInfo>, Status> {
        let model = self.state.live.model().ok_or(Error::NoLocalModel)?;
        let info = &model.info;
        Ok(Response::new(ModelInfo {
            name: info.name.clone(),
            architecture: info.architecture.clone(),
            served_format: info.served_format.clone(),
            file_format: info.file_format.clone(),
            context_length: info.context_length as u32,
            vocab_size: info.vocab_size as u32,
            parameters: info.parameters,
            max_new_tokens_limit: self.state.config.max_new_tokens_limit,
            sha256: info.sha256.clone(),
        }))
    }
}

/// The user-supplied text of a request (prompt or message contents).
fn prompt_text(req: &GenerateRequest) -> String {
    if req.messages.is_empty() {
        req.prompt.clone()
    } else {
        req.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n")
    }
}

/// Prompts that carry forgotten content are reported (an extraction attempt, or a user
/// pasting the content), never blocked: the output guard decides what reaches the client.
fn report_forgotten_prompt(guard: &crate::guard::Guard, prompt: &str, request_id: &str) {
    if guard.is_empty() {
        return;
    }
    match guard.check(prompt, CheckParams::default()) {
        Ok(findings) => {
            let mut sets: Vec<&str> = findings.iter().map(|f| guard.set_name(f.entry)).collect();
            sets.dedup();
            for set in &sets {
                crate::metrics::prompt_with_forgotten_content(set);
            }
            if !sets.is_empty() {
                tracing::warn!(request_id, forget_sets = ?sets, "prompt contains forgotten content");
            }
        }
        Err(e) => tracing::error!(request_id, error = %format!("{e:#}"), "checking the prompt failed"),
    }
}

fn usage(summary: &Summary) -> Usage {
    Usage { prompt_tokens: summary.prompt_tokens, completion_tokens: summary.completion_tokens }
}

/// The client's deadline, taken a little early (5%, at least 50 ms): tonic's server answers
/// CANCELLED at the exact deadline, counted from before this handler runs, so ending first
/// lets the client see DEADLINE_EXCEEDED and our message.
fn deadline_of<T>(request: &Request<T>) -> Option<Instant> {
    let timeout = parse_grpc_timeout(request.metadata().get("grpc-timeout")?.to_str().ok()?)?;
    let margin = (timeout / 20).max(Duration::from_millis(50));
    Some(Instant::now() + timeout.saturating_sub(margin))
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n), per the gRPC HTTP/2 spec.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_parses_every_unit_and_rejects_junk() {
        assert_eq!(parse_grpc_timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }
}
