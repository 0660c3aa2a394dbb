//! The generation loop of one request, run on a blocking thread: decode steps, stop strings,
//! cancellation and deadline, and the events sent back to the RPC handler.
use super::validate::Job;
use crate::model::{Generator, Model, Step};
use crate::proto::{FinishReason, Match, Verdict};
use std::time::Instant;
use tokio::sync::mpsc;
use tonic::Status;

#[derive(Debug)]
pub enum Event {
    /// Text cleared for the client.
    Text(String),
    /// The generation is over; nothing follows.
    End(Summary),
    /// The generation failed; nothing follows.
    Failed(Status),
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub finish: FinishReason,
    pub verdict: Verdict,
    pub matches: Vec<Match>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Runs `job` to the end, sending events to `tx`. Stops within one decode step once the
/// receiver is gone (client cancelled or disconnected) or the deadline has passed.
pub fn run(model: &Model, job: &Job, deadline: Option<Instant>, tx: &mpsc::Sender<Event>) {
    let started = Instant::now();
    let send = |ev: Event| tx.blocking_send(ev).is_ok();
    let mut generator = Generator::new(model, job.prompt_ids.clone(), &job.sampling);
    let mut stop = StopFilter::new(&job.stop);
    let mut last_token_at = None;
    let finish = loop {
        if tx.is_closed() {
            crate::metrics::request_cancelled();
            return;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            send(Event::Failed(Status::deadline_exceeded(format!(
                "deadline exceeded after {} generated tokens",
                generator.generated().len()
            ))));
            return;
        }
        if generator.generated().len() >= job.max_new_tokens {
            break FinishReason::Length;
        }
        let step = match generator.step(|_, _| false) {
            Ok(step) => step,
            Err(e) => {
                tracing::error!(request_id = %job.request_id, error = %format!("{e:#}"), "generation failed");
                send(Event::Failed(Status::internal(
                    "generation failed inside the model runtime",
                )));
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
            Step::Token { text, .. } => {
                let (cleared, hit) = stop.push(&text);
                if !cleared.is_empty() && !send(Event::Text(cleared)) {
                    return;
                }
                if hit {
                    break FinishReason::Stop;
                }
            }
        }
    };
    if finish != FinishReason::Stop {
        let tail = generator.flush().unwrap_or_default();
        let (mut cleared, hit) = stop.push(&tail);
        if !hit {
            cleared.push_str(&stop.finish());
        }
        if !cleared.is_empty() && !send(Event::Text(cleared)) {
            return;
        }
    }
    let completion_tokens = generator.generated().len() as u32;
    crate::metrics::tokens(job.prompt_ids.len(), completion_tokens as usize);
    send(Event::End(Summary {
        finish,
        verdict: Verdict::Allow,
        matches: Vec::new(),
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
        Self {
            stops: stops.to_vec(),
            pending: String::new(),
        }
    }

    /// Adds generated text; returns the text that is now safe to release and whether a stop
    /// string was reached (then nothing after it is ever released).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
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
        assert_eq!(
            run_filter(&["END"], &["abc E", "N", "D more"]),
            ("abc ".into(), true)
        );
    }

    #[test]
    fn held_back_prefix_is_released_when_it_is_not_a_stop() {
        assert_eq!(
            run_filter(&["END"], &["abc E", "x"]),
            ("abc Ex".into(), false)
        );
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
