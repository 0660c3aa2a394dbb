//! The generation loop of one request, run on a blocking thread: decode steps, stop strings,
//! cancellation and deadline, and the events sent back to the RPC handler. What the finished
//! generation amounts to (verdict, outcome, leaks) is `outcome::account`.
use super::error::Error;
use super::outcome::account;
use super::validate::Job;
use crate::guard::audit::Auditor;
use crate::guard::stream::{Release, StreamGuard};
use crate::guard::{Finding, Guard};
use crate::model::{Generator, Model, Step};
use crate::proto::{FinishReason, Match, Verdict};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Debug)]
pub enum Event {
    /// Text cleared for the client.
    Text(String),
    /// The generation is over; nothing follows.
    End(Summary),
    /// The generation failed; nothing follows.
    Failed(Error),
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub finish: FinishReason,
    pub verdict: Verdict,
    pub matches: Vec<Match>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Runs `job` to the end, sending events to `tx`: decode steps with decode-time masking, stop
/// strings, then the stream guard, which releases only cleared text. Stops within one decode
/// step once the receiver is gone (client cancelled or disconnected) or the deadline passed.
pub fn run(
    model: &Model,
    guard: &Arc<Guard>,
    audit: &Auditor,
    job: &Job,
    deadline: Option<Instant>,
    tx: &mpsc::Sender<Event>,
    scope: crate::guard::facts::Scope,
) {
    let started = Instant::now();
    let send = |ev: Event| tx.blocking_send(ev).is_ok();
    let mut generator =
        Generator::new(model, job.prompt_ids.clone(), &job.sampling).with_min_new_tokens(job.min_new_tokens);
    let mut stop = StopFilter::new(&job.stop);
    let mut stream = StreamGuard::new(guard.clone()).with_scope(scope.clone());
    let mut last_token_at = None;
    let mut suppressed = false;
    // When each piece of text was generated, to measure the delay the hold-back adds.
    let pending = std::cell::RefCell::new(std::collections::VecDeque::<(usize, Instant)>::new());
    // Text reaches the client only through the guard.
    let deliver = |stream: &mut StreamGuard, text: &str, at_end: bool| -> Result<Option<Finding>, Error> {
        let t = Instant::now();
        pending.borrow_mut().push_back((stream.text().len() + text.len(), t));
        let release = if at_end {
            stream.push(text).and_then(|r| match r {
                Release::Text(mut cleared) => match stream.finish()? {
                    Release::Text(rest) => {
                        cleared.push_str(&rest);
                        Ok(Release::Text(cleared))
                    }
                    blocked => Ok(blocked),
                },
                blocked => Ok(blocked),
            })
        } else {
            stream.push(text)
        };
        crate::metrics::guard_step(t.elapsed());
        let now = Instant::now();
        let mut pending = pending.borrow_mut();
        while pending.front().is_some_and(|(end, _)| *end <= stream.released()) {
            let (_, generated_at) = pending.pop_front().expect("checked");
            crate::metrics::holdback(now - generated_at);
        }
        match release {
            Ok(Release::Text(cleared)) => {
                if !cleared.is_empty() && !send(Event::Text(cleared)) {
                    return Err(Error::Cancelled);
                }
                Ok(None)
            }
            Ok(Release::Blocked(f)) => Ok(Some(f)),
            Err(e) => {
                crate::metrics::guard_error();
                tracing::error!(request_id = %job.request_id, error = %format!("{e:#}"), "guard error");
                if guard.fails_closed() {
                    Err(Error::GuardFailedClosed)
                } else {
                    Ok(None)
                }
            }
        }
    };
    let mut blocked = None;
    let finish = loop {
        if tx.is_closed() {
            crate::metrics::request_cancelled();
            return;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            send(Event::Failed(Error::DeadlineExceeded(format!(
                "after {} generated tokens",
                generator.generated().len()
            ))));
            return;
        }
        if generator.generated().len() >= job.max_new_tokens {
            break FinishReason::Length;
        }
        let step = match generator.step(|context| guard.forbidden(context).to_vec()) {
            Ok(step) => step,
            Err(e) => {
                tracing::error!(request_id = %job.request_id, error = %format!("{e:#}"), "generation failed");
                send(Event::Failed(Error::Model));
                return;
            }
        };
        let now = Instant::now();
        match last_token_at.replace(now) {
            None => crate::metrics::time_to_first_token(now - started),
            Some(prev) => crate::metrics::inter_token_latency(now - prev),
        }
        match step {
            Step::Eos => break FinishReason::Eos,
            Step::Token { text, masked, .. } => {
                suppressed |= masked;
                let (cleared, hit) = stop.push(&text);
                match deliver(&mut stream, &cleared, hit) {
                    Ok(None) => {}
                    Ok(Some(f)) => {
                        blocked = Some(f);
                        break FinishReason::Blocked;
                    }
                    Err(status) => {
                        send(Event::Failed(status));
                        return;
                    }
                }
                if hit {
                    break FinishReason::Stop;
                }
            }
        }
    };
    if matches!(finish, FinishReason::Eos | FinishReason::Length) {
        let mut tail = generator.flush().unwrap_or_default();
        let (mut cleared, hit) = stop.push(&std::mem::take(&mut tail));
        if !hit {
            cleared.push_str(&stop.finish());
        }
        match deliver(&mut stream, &cleared, true) {
            Ok(None) => {}
            Ok(Some(f)) => blocked = Some(f),
            Err(status) => {
                send(Event::Failed(status));
                return;
            }
        }
    }
    let finish = if blocked.is_some() { FinishReason::Blocked } else { finish };
    let completion_tokens = generator.generated().len() as u32;
    crate::metrics::tokens(job.prompt_ids.len(), completion_tokens as usize);

    let accounting = account(guard, &stream, blocked, suppressed);
    for (set, reason) in &accounting.leaks {
        crate::metrics::leak(set, reason);
    }
    let findings = accounting.findings;
    for f in &findings {
        crate::metrics::guard_match(
            guard.set_name(f.entry),
            f.layer.as_str(),
            guard.policy(f.entry).action.as_str(),
        );
    }
    let (verdict, outcome) = (accounting.verdict, accounting.outcome);
    crate::metrics::generation_outcome(outcome.as_str());
    let released = &stream.text()[..stream.released()];
    if !guard.is_empty() && !released.is_empty() {
        let reported = findings.iter().map(|f| (f.entry, f.layer)).collect();
        audit.submit(guard.clone(), released.to_string(), scope, reported);
    }
    tracing::info!(
        request_id = %job.request_id,
        outcome = outcome.as_str(),
        completion_tokens,
        finish = ?finish,
        "generation finished"
    );
    send(Event::End(Summary {
        finish,
        verdict,
        matches: findings.iter().map(|f| super::convert::to_match(guard, f, stream.text())).collect(),
        prompt_tokens: job.prompt_ids.len() as u32,
        completion_tokens,
    }));
}

/// Holds back text that could be the start of a stop string, and cuts the output at the
/// first stop string (which is not delivered).
pub struct StopFilter {
    stops: Vec<String>,
    pending: String,
}

impl StopFilter {
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.to_vec(), pending: String::new() }
    }

    /// Adds generated text; returns the text that is now safe to release and whether a stop
    /// string was reached (then nothing after it is ever released).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).map(move |k| &s.as_bytes()[..k]))
            .filter(|prefix| self.pending.as_bytes().ends_with(prefix))
            .map(<[u8]>::len)
            .filter(|k| self.pending.is_char_boundary(self.pending.len() - k))
            .max()
            .unwrap_or(0);
        let out: String = self.pending.drain(..self.pending.len() - keep).collect();
        (out, false)
    }

    /// The generation ended without a stop string: release what was held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_filter(stops: &[&str], chunks: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut f = StopFilter::new(&stops);
        let mut out = String::new();
        for c in chunks {
            let (text, hit) = f.push(c);
            out.push_str(&text);
            if hit {
                return (out, true);
            }
        }
        out.push_str(&f.finish());
        (out, false)
    }

    #[test]
    fn stop_string_split_across_chunks_is_cut() {
        assert_eq!(run_filter(&["END"], &["abc E", "N", "D more"]), ("abc ".into(), true));
    }

    #[test]
    fn held_back_prefix_is_released_when_it_is_not_a_stop() {
        assert_eq!(run_filter(&["END"], &["abc E", "x"]), ("abc Ex".into(), false));
        assert_eq!(run_filter(&["END"], &["abc EN"]), ("abc EN".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins_and_multibyte_is_safe() {
        assert_eq!(run_filter(&["ü!", "b"], &["aü", "!b"]), ("a".into(), true));
        assert_eq!(run_filter(&["éé"], &["xé", "y"]), ("xéy".into(), false));
    }

    #[test]
    fn no_stops_releases_everything_at_once() {
        let mut f = StopFilter::new(&[]);
        assert_eq!(f.push("hello"), ("hello".into(), false));
    }
}
