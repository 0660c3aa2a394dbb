//! Every metric Lethe exports, by name, in one place. A leaf: callers pass plain labels and
//! numbers. Labels are of bounded cardinality: never request ids, prompt text or forgotten
//! content.
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
pub const LEAKS: &str = "lethe_leaks_total";
pub const GUARD_LAYER: &str = "lethe_guard_layer_seconds";
pub const HOLDBACK: &str = "lethe_stream_holdback_seconds";
pub const AUDIT_OUTPUTS: &str = "lethe_audit_outputs_total";
pub const AUDIT_DISAGREEMENTS: &str = "lethe_audit_disagreements_total";
pub const AUDIT_DROPPED: &str = "lethe_audit_dropped_total";
pub const MODEL_INFO: &str = "lethe_model_info";
pub const RELOADS: &str = "lethe_forget_reloads_total";
pub const RELOAD_DURATION: &str = "lethe_forget_reload_duration_seconds";
pub const SNAPSHOT_VERSION: &str = "lethe_forget_snapshot_version";
pub const LAST_RELOAD: &str = "lethe_forget_last_reload_timestamp_seconds";
pub const FORGET_ENTRIES: &str = "lethe_forget_entries";
pub const CONTENT_FINGERPRINT: &str = "lethe_forget_content_fingerprint";
pub const CONNECTIONS_OPEN: &str = "lethe_connections_open";
pub const CONNECTIONS_REFUSED: &str = "lethe_connections_refused_total";
pub const STORE_WRITE_FAILURES: &str = "lethe_store_write_failures_total";
pub const STORE_ROLLBACKS_ACCEPTED: &str = "lethe_store_rollbacks_accepted_total";
pub const STORE_SEQUENCE: &str = "lethe_forget_store_sequence";
pub const STORE_UP: &str = "lethe_forget_store_up";
pub const STORE_LAG: &str = "lethe_forget_store_lag_seconds";
pub const DERIVATIONS: &str = "lethe_forget_derivations_total";
pub const HTTP_REQUESTS: &str = "lethe_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "lethe_http_request_duration_seconds";
pub const UPSTREAM_REQUESTS: &str = "lethe_upstream_requests_total";
pub const UPSTREAM_FIRST_BYTE: &str = "lethe_upstream_first_byte_seconds";
pub const UPSTREAM_STREAM_ERRORS: &str = "lethe_upstream_stream_errors_total";
pub const UPSTREAM_IN_FLIGHT: &str = "lethe_upstream_in_flight";
pub const UPSTREAM_UP: &str = "lethe_upstream_up";

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
    // Outcome counters exist at 0 from the start, so rates and increases see the first event.
    for outcome in OUTCOMES {
        counter!(GENERATIONS, "upstream" => "local", "outcome" => outcome).increment(0);
    }
    counter!(GUARD_ERRORS).increment(0);
    counter!(STORE_WRITE_FAILURES).increment(0);
    counter!(CONNECTIONS_REFUSED).increment(0);
    for result in ["success", "failure"] {
        counter!(RELOADS, "result" => result).increment(0);
    }
    for source in DERIVATION_SOURCES {
        counter!(DERIVATIONS, "source" => source).increment(0);
    }
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "End-to-end RPC latency by method.");
    describe_counter!(HTTP_REQUESTS, "Finished HTTP (/v1) requests by route and HTTP status.");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP (/v1) latency by route, to the end of the body (the whole stream)."
    );
    describe_counter!(
        UPSTREAM_REQUESTS,
        "Requests forwarded to upstream engines by upstream and result: 2xx, 4xx, 5xx, connect_error, timeout."
    );
    describe_histogram!(
        UPSTREAM_FIRST_BYTE,
        Unit::Seconds,
        "Time from sending a request to an upstream to its response head."
    );
    describe_counter!(
        UPSTREAM_STREAM_ERRORS,
        "Upstream streams that broke after they began, by kind: truncated, error_event, malformed, too_large, idle_timeout."
    );
    describe_gauge!(UPSTREAM_IN_FLIGHT, "Requests to each upstream engine in flight.");
    describe_gauge!(
        UPSTREAM_UP,
        "1 when the upstream's /v1/models answered the last probe (every 15 s), else 0."
    );
    describe_gauge!(REQUESTS_RUNNING, "Generations running now.");
    describe_gauge!(REQUESTS_QUEUED, "Requests waiting for a generation slot.");
    describe_histogram!(QUEUE_TIME, Unit::Seconds, "Time a request waited for a generation slot.");
    describe_histogram!(TIME_TO_FIRST_TOKEN, Unit::Seconds, "Time from generation start to the first token.");
    describe_histogram!(INTER_TOKEN_LATENCY, Unit::Seconds, "Time between consecutive generated tokens.");
    describe_counter!(PROMPT_TOKENS, "Prompt tokens processed.");
    describe_counter!(GENERATION_TOKENS, "Tokens generated.");
    describe_counter!(CANCELLED, "Generations stopped because the client went away.");
    describe_counter!(
        GENERATIONS,
        "Finished generations by outcome: clean, suppressed (masking changed the output), blocked, leaked (forgotten content reached the client)."
    );
    describe_counter!(
        GUARD_MATCHES,
        "Guard matches in generations by forget set, layer and the set's action."
    );
    describe_histogram!(
        GUARD_STEP,
        Unit::Seconds,
        "Guard time per generated token (all layers of the stream guard)."
    );
    describe_histogram!(GUARD_LAYER, Unit::Seconds, "Guard time per call by layer (ngram, term, semantic).");
    describe_counter!(
        GUARD_ERRORS,
        "Guard failures during generations (they fail closed unless a set says otherwise)."
    );
    describe_counter!(
        PROMPTS_WITH_FORGOTTEN,
        "Prompts containing forgotten content, by forget set (reported, not blocked)."
    );
    describe_counter!(
        LEAKS,
        "Forgotten content that reached a client, by source (upstream: local or an upstream's name), forget set and reason: monitor, mask (text still matched after masking), late_block (matched after part was streamed), audit (found only by the exact audit)."
    );
    describe_histogram!(
        HOLDBACK,
        Unit::Seconds,
        "Delay the stream hold-back added between generating text and sending it."
    );
    describe_counter!(AUDIT_OUTPUTS, "Delivered outputs re-checked by the exact audit.");
    describe_counter!(
        AUDIT_DISAGREEMENTS,
        "Matches the exact audit found that the fast path (Bloom, HNSW) missed, by layer."
    );
    describe_counter!(AUDIT_DROPPED, "Outputs not audited because the audit queue was full.");
    describe_gauge!(MODEL_INFO, "The served model (always 1), labelled with its name and served format.");
    describe_counter!(
        RELOADS,
        "Forget-list snapshot builds (admin changes, file changes, SIGHUP) by result."
    );
    describe_histogram!(RELOAD_DURATION, Unit::Seconds, "Time to build and swap in a forget-list snapshot.");
    describe_gauge!(SNAPSHOT_VERSION, "Version of the serving forget-list snapshot.");
    describe_gauge!(LAST_RELOAD, Unit::Seconds, "Unix time of the last successful snapshot swap.");
    describe_gauge!(FORGET_ENTRIES, "Entries per forget set in the serving snapshot.");
    describe_gauge!(
        CONTENT_FINGERPRINT,
        "First 48 bits of the serving list's content hash: replicas serving the same list report the same value."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Open gRPC connections (both listeners).");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed because max_connections were open: the oldest that had sent nothing, or else the new one."
    );
    describe_counter!(
        STORE_WRITE_FAILURES,
        "Forget-store appends that failed (disk full, I/O error); the change was refused and the log cut back."
    );
    describe_counter!(
        STORE_ROLLBACKS_ACCEPTED,
        "Starts that served a forget store shorter than its checkpoint, as --accept-store-rollback allowed."
    );
    describe_gauge!(
        STORE_SEQUENCE,
        "Sequence of the last forget-store change applied here; with a shared store, comparable across replicas."
    );
    describe_gauge!(
        STORE_UP,
        "Whether the shared forget store (database) answered the last read or write (1) or not (0)."
    );
    describe_gauge!(
        STORE_LAG,
        Unit::Seconds,
        "Seconds since this replica last found itself at the head of the shared change log (0 while it follows it)."
    );
    describe_counter!(
        DERIVATIONS,
        "Forget entries indexed, by where their fingerprints and embeddings came from: stored (with the entry, by the shared store's writer or the fingerprint-only store), cached (an earlier build here), derived (from the text here, embedding included)."
    );
    Ok(())
}

const DERIVATION_SOURCES: [&str; 3] = ["stored", "cached", "derived"];

/// Entries whose fingerprints one derivation pass took from the entry, the cache, or derived.
pub fn derivations(stored: u64, cached: u64, derived: u64) {
    for (source, n) in DERIVATION_SOURCES.into_iter().zip([stored, cached, derived]) {
        if n > 0 {
            counter!(DERIVATIONS, "source" => source).increment(n);
        }
    }
}

pub fn connection_opened() {
    gauge!(CONNECTIONS_OPEN).increment(1.0);
}

pub fn connection_closed() {
    gauge!(CONNECTIONS_OPEN).decrement(1.0);
}

pub fn connection_refused() {
    counter!(CONNECTIONS_REFUSED).increment(1);
}

pub fn store_write_failed() {
    counter!(STORE_WRITE_FAILURES).increment(1);
}

pub fn store_sequence(sequence: u64) {
    gauge!(STORE_SEQUENCE).set(sequence as f64);
}

pub fn store_up(up: bool) {
    gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
}

pub fn store_lag(seconds: f64) {
    gauge!(STORE_LAG).set(seconds);
}

pub fn store_rollback_accepted() {
    counter!(STORE_ROLLBACKS_ACCEPTED).increment(1);
}

/// A finished RPC: `method` and `code` (the gRPC status name) come from the telemetry layer.
pub fn request_done(method: &'static str, code: &'static str, elapsed: Duration) {
    counter!(REQUESTS, "method" => method, "code" => code).increment(1);
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

/// Counts a running generation until the returned value is dropped.
pub fn running_generation() -> impl Drop {
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

pub const OUTCOMES: [&str; 4] = ["clean", "suppressed", "blocked", "leaked"];

/// A finished generation by source (`local` or a configured upstream name, never a
/// client-supplied string) and outcome: clean, suppressed, blocked or leaked.
pub fn generation_outcome(upstream: &str, outcome: &'static str) {
    counter!(GENERATIONS, "upstream" => upstream.to_string(), "outcome" => outcome).increment(1);
}

pub fn guard_match(upstream: &str, set: &str, layer: &'static str, action: &'static str) {
    counter!(
        GUARD_MATCHES,
        "upstream" => upstream.to_string(),
        "forget_set" => set.to_string(),
        "layer" => layer,
        "action" => action
    )
    .increment(1);
}

/// A finished HTTP request: `route` is the matched route (a fixed string), `status` its code.
pub fn http_request(route: &'static str, status: u16, elapsed: Duration) {
    counter!(HTTP_REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
    histogram!(HTTP_REQUEST_DURATION, "route" => route).record(elapsed.as_secs_f64());
}

/// An upstream's series exist at 0 from the start (its name comes from the config).
pub fn upstream_configured(upstream: &str) {
    leak_source(upstream);
    for outcome in OUTCOMES {
        counter!(GENERATIONS, "upstream" => upstream.to_string(), "outcome" => outcome).increment(0);
    }
    for result in ["2xx", "4xx", "5xx", "connect_error", "timeout"] {
        counter!(UPSTREAM_REQUESTS, "upstream" => upstream.to_string(), "result" => result).increment(0);
    }
    gauge!(UPSTREAM_IN_FLIGHT, "upstream" => upstream.to_string()).set(0.0);
}

/// A request to an upstream got its answer head (`result` 2xx/4xx/5xx) or none
/// (`connect_error`, `timeout`).
pub fn upstream_request(upstream: &str, result: &'static str) {
    counter!(UPSTREAM_REQUESTS, "upstream" => upstream.to_string(), "result" => result).increment(1);
}

pub fn upstream_up(upstream: &str, up: bool) {
    gauge!(UPSTREAM_UP, "upstream" => upstream.to_string()).set(if up { 1.0 } else { 0.0 });
}

pub fn upstream_first_byte(upstream: &str, d: Duration) {
    histogram!(UPSTREAM_FIRST_BYTE, "upstream" => upstream.to_string()).record(d.as_secs_f64());
}

pub fn upstream_stream_error(upstream: &str, kind: &'static str) {
    counter!(UPSTREAM_STREAM_ERRORS, "upstream" => upstream.to_string(), "kind" => kind).increment(1);
}

/// Counts a request in flight to `upstream` until the returned value is dropped.
pub fn upstream_in_flight(upstream: &str) -> impl Drop {
    struct InFlight(String);
    impl Drop for InFlight {
        fn drop(&mut self) {
            gauge!(UPSTREAM_IN_FLIGHT, "upstream" => std::mem::take(&mut self.0)).decrement(1.0);
        }
    }
    gauge!(UPSTREAM_IN_FLIGHT, "upstream" => upstream.to_string()).increment(1.0);
    InFlight(upstream.to_string())
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

/// A snapshot was swapped in: its version, content hash (hex) and entries per set.
pub fn reloaded<'a>(
    seconds: f64,
    version: u64,
    content_hash: &str,
    entries: impl Iterator<Item = (&'a str, usize)>,
) {
    counter!(RELOADS, "result" => "success").increment(1);
    histogram!(RELOAD_DURATION).record(seconds);
    gauge!(SNAPSHOT_VERSION).set(version as f64);
    // 48 bits fit a float exactly.
    let fingerprint = content_hash.get(..12).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0);
    gauge!(CONTENT_FINGERPRINT).set(fingerprint as f64);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    gauge!(LAST_RELOAD).set(now.as_secs_f64());
    let mut sets = Vec::new();
    for (set, count) in entries {
        sets.push(set.to_string());
        gauge!(FORGET_ENTRIES, "forget_set" => set.to_string()).set(count as f64);
    }
    with_leak_series(|series| series.sets.extend(sets));
}

pub const LEAK_REASONS: [&str; 4] = ["monitor", "mask", "late_block", "audit"];

/// Forgotten content of `set` reached a client of `upstream` (`local` for the served model, or
/// a configured upstream's name).
pub fn leak(upstream: &str, set: &str, reason: &'static str) {
    counter!(LEAKS, "upstream" => upstream.to_string(), "forget_set" => set.to_string(), "reason" => reason)
        .increment(1);
}

/// The sources (`local`, upstream names) and forget sets known so far. Leak counters exist at
/// 0 for every pair before the first leak, so `increase()` sees that leak; sources and sets
/// become known at different times of the start (and sets on every reload).
struct LeakSeries {
    sources: std::collections::BTreeSet<String>,
    sets: std::collections::BTreeSet<String>,
}

static LEAK_SERIES: std::sync::Mutex<LeakSeries> = std::sync::Mutex::new(LeakSeries {
    sources: std::collections::BTreeSet::new(),
    sets: std::collections::BTreeSet::new(),
});

/// Registers a source or sets, then makes sure every known pair has its zero counters.
fn with_leak_series(change: impl FnOnce(&mut LeakSeries)) {
    let mut series = LEAK_SERIES.lock().unwrap_or_else(|e| e.into_inner());
    change(&mut series);
    for source in &series.sources {
        for set in &series.sets {
            for reason in LEAK_REASONS {
                counter!(LEAKS, "upstream" => source.clone(), "forget_set" => set.clone(), "reason" => reason)
                    .increment(0);
            }
        }
    }
}

/// A source of generations (`local` when a model is served, or an upstream): its leak
/// counters exist at 0 from now on.
fn leak_source(source: &str) {
    with_leak_series(|series| {
        series.sources.insert(source.to_string());
    });
}

pub fn guard_layer(layer: &'static str, d: Duration) {
    histogram!(GUARD_LAYER, "layer" => layer).record(d.as_secs_f64());
}

pub fn holdback(upstream: &str, d: Duration) {
    histogram!(HOLDBACK, "upstream" => upstream.to_string()).record(d.as_secs_f64());
}

pub fn audited() {
    counter!(AUDIT_OUTPUTS).increment(1);
}

pub fn audit_disagreement(layer: &'static str) {
    counter!(AUDIT_DISAGREEMENTS, "layer" => layer).increment(1);
}

pub fn audit_dropped() {
    counter!(AUDIT_DROPPED).increment(1);
}

/// Marks the served model; after a swap the previous model's series drops to 0, so `== 1`
/// selects exactly the model being served.
pub fn model_info(name: &str, served_format: &str) {
    leak_source("local");
    static SERVED: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);
    let mut served = SERVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((name, format)) = served.take() {
        gauge!(MODEL_INFO, "model" => name, "served_format" => format).set(0.0);
    }
    gauge!(MODEL_INFO, "model" => name.to_string(), "served_format" => served_format.to_string()).set(1.0);
    *served = Some((name.to_string(), served_format.to_string()));
}

pub fn reload_failed() {
    counter!(RELOADS, "result" => "failure").increment(1);
}
