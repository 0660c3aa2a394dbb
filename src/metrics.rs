//! Every metric Lethe exports, by name, in one place. Labels are of bounded cardinality:
//! never request ids, prompt text or forgotten content.
use anyhow::{Context, Result};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::time::Duration;

pub const REQUESTS: &str = "lethe_requests_total";
pub const REQUEST_DURATION: &str = "lethe_request_duration_seconds";
pub const REQUESTS_RUNNING: &str = "lethe_requests_running";
pub const REQUESTS_QUEUED: &str = "lethe_requests_queued";
pub const QUEUE_TIME: &str = "lethe_queue_time_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "lethe_time_to_first_token_seconds";
pub const INTER_TOKEN_LATENCY: &str = "lethe_inter_token_latency_seconds";
pub const PROMPT_TOKENS: &str = "lethe_prompt_tokens_total";
pub const GENERATION_TOKENS: &str = "lethe_generation_tokens_total";
pub const CANCELLED: &str = "lethe_generations_cancelled_total";
pub const GENERATIONS: &str = "lethe_generations_total";
pub const GUARD_MATCHES: &str = "lethe_guard_matches_total";
pub const GUARD_STEP: &str = "lethe_guard_step_seconds";
pub const GUARD_ERRORS: &str = "lethe_guard_errors_total";
pub const PROMPTS_WITH_FORGOTTEN: &str = "lethe_prompts_with_forgotten_content_total";
pub const RELOADS: &str = "lethe_forget_reloads_total";
pub const RELOAD_DURATION: &str = "lethe_forget_reload_duration_seconds";
pub const SNAPSHOT_VERSION: &str = "lethe_forget_snapshot_version";
pub const LAST_RELOAD: &str = "lethe_forget_last_reload_timestamp_seconds";
pub const FORGET_ENTRIES: &str = "lethe_forget_entries";

const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Starts the `/metrics` HTTP endpoint and registers every metric's description.
pub fn install(listen: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        // Histograms, not summaries, so they aggregate across replicas.
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install()
        .with_context(|| format!("starting the metrics endpoint on {listen}"))?;
    describe_counter!(REQUESTS, "Finished RPCs by method and gRPC status code.");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "End-to-end RPC latency by method.");
    describe_gauge!(REQUESTS_RUNNING, "Generations running now.");
    describe_gauge!(REQUESTS_QUEUED, "Requests waiting for a generation slot.");
    describe_histogram!(QUEUE_TIME, Unit::Seconds, "Time a request waited for a generation slot.");
    describe_histogram!(TIME_TO_FIRST_TOKEN, Unit::Seconds, "Time from generation start to the first token.");
    describe_histogram!(INTER_TOKEN_LATENCY, Unit::Seconds, "Time between consecutive generated tokens.");
    describe_counter!(PROMPT_TOKENS, "Prompt tokens processed.");
    describe_counter!(GENERATION_TOKENS, "Tokens generated.");
    describe_counter!(CANCELLED, "Generations stopped because the client went away.");
    Ok(())
}

pub fn request_done(method: &'static str, error: Option<&tonic::Status>, elapsed: Duration) {
    let code = error.map_or(tonic::Code::Ok, tonic::Status::code);
    counter!(REQUESTS, "method" => method, "code" => code_name(code)).increment(1);
    histogram!(REQUEST_DURATION, "method" => method).record(elapsed.as_secs_f64());
}

pub fn queue_entered() {
    gauge!(REQUESTS_QUEUED).increment(1.0);
}

pub fn queue_left() {
    gauge!(REQUESTS_QUEUED).decrement(1.0);
}

pub fn queue_time(d: Duration) {
    histogram!(QUEUE_TIME).record(d.as_secs_f64());
}

/// Counts a running generation until the returned guard is dropped.
pub fn running_guard() -> impl Drop {
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            gauge!(REQUESTS_RUNNING).decrement(1.0);
        }
    }
    gauge!(REQUESTS_RUNNING).increment(1.0);
    Running
}

pub fn time_to_first_token(d: Duration) {
    histogram!(TIME_TO_FIRST_TOKEN).record(d.as_secs_f64());
}

pub fn inter_token_latency(d: Duration) {
    histogram!(INTER_TOKEN_LATENCY).record(d.as_secs_f64());
}

pub fn tokens(prompt: usize, generated: usize) {
    counter!(PROMPT_TOKENS).increment(prompt as u64);
    counter!(GENERATION_TOKENS).increment(generated as u64);
}

pub fn request_cancelled() {
    counter!(CANCELLED).increment(1);
}

pub fn generation_outcome(outcome: crate::server::generation::Outcome) {
    counter!(GENERATIONS, "outcome" => outcome.as_str()).increment(1);
}

pub fn guard_match(set: &str, layer: crate::proto::Layer, action: crate::guard::Action) {
    let layer = match layer {
        crate::proto::Layer::Ngram => "ngram",
        crate::proto::Layer::Term => "term",
        crate::proto::Layer::Semantic => "semantic",
        crate::proto::Layer::Unspecified => "unspecified",
    };
    let action = match action {
        crate::guard::Action::Block => "block",
        crate::guard::Action::Mask => "mask",
        crate::guard::Action::Monitor => "monitor",
    };
    counter!(GUARD_MATCHES, "forget_set" => set.to_string(), "layer" => layer, "action" => action)
        .increment(1);
}

pub fn guard_step(d: Duration) {
    histogram!(GUARD_STEP).record(d.as_secs_f64());
}

pub fn guard_error() {
    counter!(GUARD_ERRORS).increment(1);
}

pub fn prompt_with_forgotten_content(set: &str) {
    counter!(PROMPTS_WITH_FORGOTTEN, "forget_set" => set.to_string()).increment(1);
}

pub fn reloaded(seconds: f64, guard: &crate::guard::Guard) {
    counter!(RELOADS, "result" => "success").increment(1);
    histogram!(RELOAD_DURATION).record(seconds);
    gauge!(SNAPSHOT_VERSION).set(guard.version as f64);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    gauge!(LAST_RELOAD).set(now.as_secs_f64());
    for (set, stats) in guard.stats() {
        gauge!(FORGET_ENTRIES, "forget_set" => set).set(stats.entries as f64);
    }
}

pub fn reload_failed() {
    counter!(RELOADS, "result" => "failure").increment(1);
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
