//! The generation loop of one request, run on a blocking thread: a text source (the served
//! model's decode steps, or an upstream engine's stream), stop strings, the stream guard,
//! cancellation and deadline, and the events sent back to the handler. What the finished
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
    /// False when the source did not report token counts (an upstream without usage):
    /// the counts above are then 0 and must not be shown as real.
    pub usage_known: bool,
}

/// One step of a text source.
pub enum Piece {
    /// New text; `masked` when decode-time masking changed it.
    Text { text: String, masked: bool },
    /// The source ended by itself.
    End(FinishReason),
    /// The source failed; what the guard still held is not delivered.
    Failed(Error),
}

/// Where a generation's text comes from: the served model, or an upstream engine's stream
/// (`upstream/`). Stop strings, the stream guard and the accounting are the same for both.
pub trait Source {
    /// The next piece; `guard` gives decode-time masking to a source that can use it.
    fn next(&mut self, guard: &Guard) -> Piece;
    /// Text the source still held when it ended (a partial character of the model).
    fn flush(&mut self) -> String {
        String::new()
    }
    /// (prompt, completion) tokens, when the source knows them.
    fn usage(&self) -> Option<(u32, u32)>;
    /// The `upstream` metric label: `local`, or an upstream's configured name.
    fn label(&self) -> &str;
}

/// The served model as a [`Source`]: decode steps with decode-time masking, up to the job's
/// `max_new_tokens` and the deadline.
struct Local<'a> {
    generator: Generator<'a>,
    max_new_tokens: usize,
    prompt_tokens: usize,
    deadline: Option<Instant>,
    started: Instant,
    last_token_at: Option<Instant>,
    request_id: &'a str,
}

impl Source for Local<'_> {
    fn next(&mut self, guard: &Guard) -> Piece {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Piece::Failed(Error::DeadlineExceeded(format!(
                "after {} generated tokens",
                self.generator.generated().len()
            )));
        }
        if self.generator.generated().len() >= self.max_new_tokens {
            return Piece::End(FinishReason::Length);
        }
        let step = match self.generator.step(|context| guard.forbidden(context).to_vec()) {
            Ok(step) => step,
            Err(e) => {
                tracing::error!(request_id = %self.request_id, error = %format!("{e:#}"), "generation failed");
                return Piece::Failed(Error::Model);
            }
        };
        let now = Instant::now();
        match self.last_token_at.replace(now) {
            None => crate::metrics::time_to_first_token(now - self.started),
            Some(prev) => crate::metrics::inter_token_latency(now - prev),
        }
        match step {
            Step::Eos => Piece::End(FinishReason::Eos),
            Step::Token { text, masked, .. } => Piece::Text { text, masked },
        }
    }

    fn flush(&mut self) -> String {
        self.generator.flush().unwrap_or_default()
    }

    fn usage(&self) -> Option<(u32, u32)> {
        Some((self.prompt_tokens as u32, self.generator.generated().len() as u32))
    }

    fn label(&self) -> &str {
        "local"
    }
}

/// Runs `job` on the served model to the end, sending events to `tx`: decode steps with
/// decode-time masking, stop strings, then the stream guard, which releases only cleared
/// text. Stops within one decode step once the receiver is gone (client cancelled or
/// disconnected) or the deadline passed.
pub fn run(
    model: &Model,
    guard: &Arc<Guard>,
    audit: &Auditor,
    job: &Job,
    deadline: Option<Instant>,
    tx: &mpsc::Sender<Event>,
    scope: crate::guard::facts::Scope,
) {
    let mut source = Local {
        generator: Generator::new(model, job.prompt_ids.clone(), &job.sampling)
            .with_min_new_tokens(job.min_new_tokens),
        max_new_tokens: job.max_new_tokens,
        prompt_tokens: job.prompt_ids.len(),
        deadline,
        started: Instant::now(),
        last_token_at: None,
        request_id: &job.request_id,
    };
    let stream = StreamGuard::new(guard.clone()).with_scope(scope.clone());
    drive(&mut source, stream, scope, guard, audit, &job.request_id, &job.stop, tx);
}

/// Drives `source` to its end through stop strings and the stream guard `stream`, sending
/// the cleared text, then the summary (or the failure), to `tx`. Returns early, without a
/// summary, once the receiver is gone.
pub fn drive(
    source: &mut dyn Source,
    mut stream: StreamGuard,
    scope: crate::guard::facts::Scope,
    guard: &Arc<Guard>,
    audit: &Auditor,
    request_id: &str,
    stops: &[String],
    tx: &mpsc::Sender<Event>,
) {
    let send = |ev: Event| tx.blocking_send(ev).is_ok();
    let label = source.label().to_string();
    let mut stop = StopFilter::new(stops);
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
            crate::metrics::holdback(&label, now - generated_at);
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
                tracing::error!(request_id, error = %format!("{e:#}"), "guard error");
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
        match source.next(guard) {
            Piece::End(finish) => break finish,
            Piece::Failed(e) => {
                send(Event::Failed(e));
                return;
            }
            Piece::Text { text, masked } => {
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
        let (mut cleared, hit) = stop.push(&source.flush());
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
    let usage = source.usage();
    let (prompt_tokens, completion_tokens) = usage.unwrap_or_default();
    crate::metrics::tokens(prompt_tokens as usize, completion_tokens as usize);

    let accounting = account(guard, &stream, blocked, suppressed);
    for (set, reason) in &accounting.leaks {
        crate::metrics::leak(&label, set, reason);
    }
    let findings = accounting.findings;
    for f in &findings {
        crate::metrics::guard_match(
            &label,
            guard.set_name(f.entry),
            f.layer.as_str(),
            guard.policy(f.entry).action.as_str(),
        );
    }
    let (verdict, outcome) = (accounting.verdict, accounting.outcome);
    crate::metrics::generation_outcome(&label, outcome.as_str());
    let released = &stream.text()[..stream.released()];
    if !guard.is_empty() && !released.is_empty() {
        let reported = findings.iter().map(|f| (f.entry, f.layer)).collect();
        audit.submit(guard.clone(), released.to_string(), scope, reported, &label);
    }
    tracing::info!(
        request_id,
        upstream = %label,
        outcome = outcome.as_str(),
        completion_tokens,
        finish = ?finish,
        "generation finished"
    );
    send(Event::End(Summary {
        finish,
        verdict,
        matches: findings.iter().map(|f| super::convert::to_match(guard, f, stream.text())).collect(),
        prompt_tokens,
        completion_tokens,
        usage_known: usage.is_some(),
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
