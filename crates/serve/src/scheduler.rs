//! Continuous batching: one thread per model owns the model and runs one recurrent step for
//! every active stream at once. New streams join between steps (their prompt runs first, on
//! its own); finished streams, and streams whose client went away, leave between steps, so a
//! disconnect frees its place at the next step.
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use lstm_lm_infer::{InferError, LoadedRun, SamplingConfig, StopText};
use lstm_lm_text_prep::StreamDecoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;

use crate::admission::StreamSlot;
use crate::batch_step::{BatchStepper, StreamState};
use crate::metrics::Metrics;

/// Most alternatives `logprobs` may ask for per position (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 5;

/// A generated token's details, when `logprobs` asked for them.
#[derive(Debug, Clone)]
pub struct TokenDetail {
    /// The token's vocabulary entry.
    pub token: String,
    /// Its natural-log probability under the model (before temperature and truncation).
    pub logprob: f64,
    /// The most likely tokens there, with their log-probabilities, most likely first.
    pub top: Vec<(String, f64)>,
}

/// What a stream sends back to its request.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// A piece of text (possibly empty) and, for a generated token, its details.
    Piece {
        /// The choice it belongs to.
        index: usize,
        /// Text that can be shown now.
        text: String,
        /// The token's details, when asked for; `None` for held-back text flushed at the end.
        detail: Option<TokenDetail>,
    },
    /// The stream ended.
    Done {
        /// The choice.
        index: usize,
        /// `length` or `stop`.
        finish_reason: &'static str,
        /// Tokens generated.
        tokens: usize,
    },
    /// The model failed.
    Failed {
        /// The choice.
        index: usize,
        /// What went wrong.
        message: String,
    },
}

/// A stream to generate, as a request hands it to the scheduler.
pub struct GenerationJob {
    /// The choice's index in the response.
    pub index: usize,
    /// The ids fed before generating: the start context and the prompt.
    pub feed: Vec<u32>,
    /// The prompt's ids (the decoder reads them first, so the first piece joins them right).
    pub prompt: Vec<u32>,
    /// Tokens to generate at most (at least 1).
    pub max_tokens: usize,
    /// How tokens are picked.
    pub sampling: SamplingConfig,
    /// The sampler's seed.
    pub seed: u64,
    /// Stop strings.
    pub stop: Vec<String>,
    /// End at the end-of-text token.
    pub stop_at_eos: bool,
    /// Alternatives per position for `logprobs` (`None`: no details).
    pub logprobs: Option<usize>,
    /// Where the events go; when the receiver is gone the stream ends.
    pub events: mpsc::UnboundedSender<StreamEvent>,
    /// The stream's admitted place.
    pub slot: StreamSlot,
    /// When it was admitted.
    pub admitted: Instant,
}

/// A handle to a model's scheduler thread.
#[derive(Clone)]
pub struct Scheduler {
    jobs: std::sync::mpsc::Sender<GenerationJob>,
}

impl Scheduler {
    /// Starts the thread for `run`, stepping up to `max_batch` streams together.
    pub fn start(
        run: Arc<LoadedRun>,
        max_batch: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (jobs, incoming) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("lstm-lm-scheduler".into())
            // Model code may recurse deeply (a main thread's stack, as the pool threads have).
            .stack_size(8 << 20)
            .spawn(move || run_loop(&run, max_batch.max(1), &incoming, &metrics))?;
        Ok((Scheduler { jobs }, handle))
    }

    /// Queues a stream; `false` when the scheduler has stopped.
    pub fn submit(&self, job: GenerationJob) -> bool {
        self.jobs.send(job).is_ok()
    }
}

/// A stream in the batch.
struct Active<'a> {
    job: GenerationJob,
    state: StreamState,
    decoder: StreamDecoder<'a>,
    stops: StopText,
    rng: ChaCha8Rng,
    /// The token to feed at the next step.
    pending: u32,
    generated: usize,
    finished: bool,
}

fn run_loop(
    run: &LoadedRun,
    max_batch: usize,
    incoming: &std::sync::mpsc::Receiver<GenerationJob>,
    metrics: &Metrics,
) {
    let stepper = BatchStepper::new(&run.model, run.device.clone());
    let banned: Vec<u32> = run.tokenizer.pad_id().into_iter().collect();
    let mut waiting: VecDeque<GenerationJob> = VecDeque::new();
    let mut active: Vec<Active<'_>> = Vec::new();
    loop {
        if active.is_empty() && waiting.is_empty() {
            match incoming.recv() {
                Ok(job) => waiting.push_back(job),
                // Every request handle is gone: the server has stopped.
                Err(_) => return,
            }
        }
        while let Ok(job) = incoming.try_recv() {
            waiting.push_back(job);
        }
        while active.len() < max_batch
            && let Some(job) = waiting.pop_front()
        {
            if job.events.is_closed() {
                continue;
            }
            if let Some(a) = start(run, &stepper, &banned, job, metrics) {
                active.push(a);
            }
        }
        active.retain(|a| !a.finished && !a.job.events.is_closed());
        metrics.queued.store(waiting.len(), Ordering::Relaxed);
        metrics.running.store(active.len(), Ordering::Relaxed);
        if active.is_empty() {
            continue;
        }
        let inputs: Vec<u32> = active.iter().map(|a| a.pending).collect();
        let mut states: Vec<&mut StreamState> = active.iter_mut().map(|a| &mut a.state).collect();
        match stepper.step(&inputs, &mut states) {
            Ok(logits) => {
                let v = stepper.vocab_size();
                for (a, row) in active.iter_mut().zip(logits.chunks_exact(v)) {
                    a.next_token(run, row, &banned, metrics);
                }
            }
            Err(e) => {
                for a in active.drain(..) {
                    a.fail(&e);
                }
            }
        }
    }
}

/// Runs a new stream's prompt and picks its first token; `None` when it already ended.
fn start<'a>(
    run: &'a LoadedRun,
    stepper: &BatchStepper<'_>,
    banned: &[u32],
    job: GenerationJob,
    metrics: &Metrics,
) -> Option<Active<'a>> {
    let (state, logits) = match stepper.prefill(&job.feed) {
        Ok(x) => x,
        Err(e) => {
            let _ = job.events.send(StreamEvent::Failed {
                index: job.index,
                message: e.to_string(),
            });
            return None;
        }
    };
    let mut decoder = run.tokenizer.stream_decoder();
    for &id in &job.prompt {
        decoder.push(id);
    }
    let mut a = Active {
        stops: StopText::new(&job.stop),
        rng: ChaCha8Rng::seed_from_u64(job.seed),
        job,
        state,
        decoder,
        pending: 0,
        generated: 0,
        finished: false,
    };
    a.next_token(run, &logits, banned, metrics);
    (!a.finished).then_some(a)
}

impl Active<'_> {
    /// Picks the next token from `logits`, sends its text, and ends the stream when it is
    /// done.
    fn next_token(&mut self, run: &LoadedRun, logits: &[f32], banned: &[u32], metrics: &Metrics) {
        let id = self.job.sampling.sample(logits, banned, &mut self.rng);
        self.generated += 1;
        metrics.tokens(1);
        if self.job.stop_at_eos && Some(id) == run.tokenizer.eos_id() {
            return self.finish("stop", metrics);
        }
        let detail = self
            .job
            .logprobs
            .map(|top| token_detail(run, logits, id, top));
        let (text, stopped) = self.stops.push(&self.decoder.push(id));
        let sent = self.job.events.send(StreamEvent::Piece {
            index: self.job.index,
            text,
            detail,
        });
        if sent.is_err() {
            self.finished = true;
        } else if stopped {
            self.finish("stop", metrics);
        } else if self.generated >= self.job.max_tokens {
            self.finish("length", metrics);
        } else {
            self.pending = id;
        }
    }

    /// Sends what the decoder and the stop-string watch still hold, then the end.
    fn finish(&mut self, mut reason: &'static str, metrics: &Metrics) {
        if !self.stops.stopped() {
            let (shown, stopped) = self.stops.push(&self.decoder.finish());
            let rest = if stopped {
                reason = "stop";
                shown
            } else {
                shown + &self.stops.finish()
            };
            if !rest.is_empty() {
                let _ = self.job.events.send(StreamEvent::Piece {
                    index: self.job.index,
                    text: rest,
                    detail: None,
                });
            }
        }
        let _ = self.job.events.send(StreamEvent::Done {
            index: self.job.index,
            finish_reason: reason,
            tokens: self.generated,
        });
        metrics.stream_done(self.job.admitted.elapsed());
        self.finished = true;
    }

    fn fail(self, e: &InferError) {
        let _ = self.job.events.send(StreamEvent::Failed {
            index: self.job.index,
            message: e.to_string(),
        });
    }
}

/// The log-probability of `id` and the `top` most likely tokens under `logits`.
fn token_detail(run: &LoadedRun, logits: &[f32], id: u32, top: usize) -> TokenDetail {
    let max = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .max_by(f32::total_cmp)
        .unwrap_or(0.0);
    let lse = f64::from(max)
        + logits
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v - max).exp())
            .sum::<f64>()
            .ln();
    let lp = |i: usize| f64::from(logits[i]) - lse;
    let name = |i: u32| run.tokenizer.id_to_token(i).unwrap_or_default();
    let mut best: Vec<usize> = (0..logits.len()).collect();
    let top = top.min(MAX_TOP_LOGPROBS).min(best.len());
    if top > 0 {
        best.select_nth_unstable_by(top - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
        best.truncate(top);
        best.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    } else {
        best.clear();
    }
    TokenDetail {
        token: name(id),
        logprob: lp(id as usize),
        top: best.into_iter().map(|i| (name(i as u32), lp(i))).collect(),
    }
}
