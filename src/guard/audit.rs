//! The asynchronous exact audit: delivered outputs are re-checked off the request path with
//! the exact n-gram map (no Bloom filter), the exact terms, and brute-force similarity of every
//! output window (stride 3 words) against every forget vector (no HNSW). What it finds that the
//! fast path did not report reached a client: it is counted as leaked (reason `audit`), and as
//! a disagreement of the layer that missed it. It checks with the scope of the output's prompt,
//! as the stream did.
use super::facts::Scope;
use super::{CheckParams, Finding, Guard, Layer};
use std::collections::HashSet;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

struct Job {
    guard: Arc<Guard>,
    text: String,
    scope: Scope,
    reported: HashSet<(u32, Layer)>,
    /// The `upstream` label of its leaks: `local` or an upstream's configured name.
    source: String,
}

pub struct Auditor {
    tx: Option<SyncSender<Job>>,
    sample_rate: f64,
}

/// Outputs waiting for the audit; beyond this they are dropped (and counted), never waited for.
const QUEUE: usize = 64;

impl Auditor {
    /// Starts the audit thread; `sample_rate` in [0, 1] is the share of outputs audited.
    pub fn start(sample_rate: f64) -> Self {
        if sample_rate <= 0.0 {
            return Self { tx: None, sample_rate };
        }
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("lethe-audit".into())
            .spawn(move || {
                for job in rx {
                    audit(&job);
                }
            })
            .expect("spawning the audit thread");
        Self { tx: Some(tx), sample_rate }
    }

    /// Queues a delivered output answering a prompt of `scope` (`reported`: the fast path's
    /// (entry, layer) findings).
    /// `source` is where the text came from (`local` or an upstream's name), for the leak label.
    pub fn submit(
        &self,
        guard: Arc<Guard>,
        text: String,
        scope: Scope,
        reported: HashSet<(u32, Layer)>,
        source: &str,
    ) {
        let Some(tx) = &self.tx else { return };
        if self.sample_rate < 1.0 && rand::random::<f64>() >= self.sample_rate {
            return;
        }
        if let Err(TrySendError::Full(_)) =
            tx.try_send(Job { guard, text, scope, reported, source: source.to_string() })
        {
            crate::metrics::audit_dropped();
        }
    }
}

fn audit(job: &Job) {
    crate::metrics::audited();
    let params = CheckParams { scope: Some(&job.scope), ..CheckParams::EXACT };
    let findings = match job.guard.check(&job.text, params) {
        Ok(f) => f,
        Err(e) => {
            crate::metrics::guard_error();
            tracing::error!(error = %format!("{e:#}"), "exact audit failed");
            return;
        }
    };
    let missed: Vec<&Finding> =
        findings.iter().filter(|f| !job.reported.contains(&(f.entry, f.layer))).collect();
    let mut leaked_sets = HashSet::new();
    for f in &missed {
        crate::metrics::audit_disagreement(f.layer.as_str());
        if !job.reported.iter().any(|(entry, _)| *entry == f.entry) {
            leaked_sets.insert(job.guard.set_name(f.entry).to_string());
        }
    }
    for set in &leaked_sets {
        crate::metrics::leak(&job.source, set, "audit");
        tracing::warn!(forget_set = %set, upstream = %job.source, "the exact audit found forgotten content the fast path missed");
    }
}
