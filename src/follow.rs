//! Follows the shared forget store: a task per replica that tails the global change log and
//! applies what other replicas wrote. A notification only wakes it; it reads by sequence after
//! what it applied, and also looks once a second, so a lost notification or a reconnect loses
//! nothing. While the database is unreachable (or a change cannot be applied) the serving
//! snapshot stays, the error is reported (status, `lethe_forget_store_up 0`) and the task
//! retries with backoff until the database answers again.
use crate::forget::pg::{Connector, Tail};
use crate::live::Live;
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Changes read per query: a replica far behind catches up in batches, each one snapshot.
const BATCH: i64 = 1000;
/// How long to wait for a notification before looking anyway.
const POLL: Duration = Duration::from_secs(1);
/// Retries back off to this, so a replica catches up within seconds of the database's return.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub fn start(live: Arc<Live>, connector: Connector, stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut at_head = Instant::now();
        let mut backoff = Duration::from_secs(1);
        while !stop.is_cancelled() {
            let e = tokio::select! {
                e = follow(&live, &connector, &mut at_head, &mut backoff) => e,
                _ = stop.cancelled() => break,
            };
            let msg = format!("{e:#}");
            tracing::warn!(error = %msg, retry_in_seconds = backoff.as_secs(), "the shared forget store cannot be followed; serving the last applied snapshot");
            live.store_failed(msg);
            let until = Instant::now() + backoff;
            while Instant::now() < until && !stop.is_cancelled() {
                crate::metrics::store_lag(at_head.elapsed().as_secs_f64());
                tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// Tails until an error, which it returns.
async fn follow(
    live: &Arc<Live>,
    connector: &Connector,
    at_head: &mut Instant,
    backoff: &mut Duration,
) -> anyhow::Error {
    let run = async {
        let mut tail = Tail::connect(connector).await?;
        loop {
            loop {
                let (sequence, last_sum) = live.shared_position().await;
                let changes = tail.changes_after(sequence, last_sum, BATCH).await?;
                let full = changes.len() as i64 == BATCH;
                if !changes.is_empty() {
                    live.apply_shared(changes).await?;
                }
                if !full {
                    break;
                }
            }
            live.store_reachable();
            *at_head = Instant::now();
            *backoff = Duration::from_secs(1);
            crate::metrics::store_lag(0.0);
            tail.wait(POLL).await?;
        }
    };
    let result: Result<std::convert::Infallible> = run.await;
    match result {
        Ok(never) => match never {},
        Err(e) => e,
    }
}
