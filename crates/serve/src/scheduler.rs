//! Continuous batching: one thread per model owns the model and runs one recurrent step for
//! every active stream at once. New streams join between steps (their prompt runs first, on
//! its own); finished streams, and streams whose client went away, leave between steps, so a
//! disconnect frees its place at the next step. A stream whose client has not taken what it
//! was sent ([`crate::events`]) sits out the steps until the client catches up.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lstm_lm_infer::{InferError, LoadedRun, SamplingConfig, StopText};
use lstm_lm_text_prep::StreamDecoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::admission::StreamSlot;
use crate::batch_step::{BatchStepper, StreamState};
use crate::events::EventSender;
use crate::metrics::{GaugePart, Metrics};

/// Most alternatives `logprobs` may ask for per position (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 5;

/// How long the scheduler waits before it looks again when every stream in the batch is
/// paused for its reader.
const PAUSED_POLL: Duration = Duration::from_millis(2);

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
    pub events: EventSender,
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
    /// Starts the thread for `run`, stepping up to `max_batch` streams together and ending a
    /// stream whose client has lagged for `stall_timeout`.
    pub fn start(
        run: Arc<LoadedRun>,
        max_batch: usize,
        stall_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (jobs, incoming) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("lstm-lm-scheduler".into())
            // Model code may recurse deeply (a main thread's stack, as the pool threads have).
            .stack_size(8 << 20)
            .spawn(move || {
                run_loop(&run, max_batch.max(1), stall_timeout, &incoming, &metrics);
            })?;
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
    /// Since when the client has lagged [`MAX_UNREAD_EVENTS`](crate::events::MAX_UNREAD_EVENTS)
    /// behind (the stream sits out the steps); `None` while it keeps up.
    paused_since: Option<Instant>,
}

fn run_loop(
    run: &LoadedRun,
    max_batch: usize,
    stall_timeout: Duration,
    incoming: &std::sync::mpsc::Receiver<GenerationJob>,
    metrics: &Metrics,
) {
    let stepper = BatchStepper::new(&run.model, run.device.clone());
    let banned: Vec<u32> = run.tokenizer.pad_id().into_iter().collect();
    let mut waiting: VecDeque<GenerationJob> = VecDeque::new();
    let mut active: Vec<Active<'_>> = Vec::new();
    let (mut queued, mut running, mut paused) = <(GaugePart, GaugePart, GaugePart)>::default();
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
        let now = Instant::now();
        for a in &mut active {
            a.watch_reader(now, stall_timeout, metrics);
        }
        active.retain(|a| !a.finished && !a.job.events.is_closed());
        // A paused stream keeps its state and its admission place, not its batch place.
        let mut stepping = active.iter().filter(|a| a.paused_since.is_none()).count();
        while stepping < max_batch
            && let Some(job) = waiting.pop_front()
        {
            if job.events.is_closed() {
                continue;
            }
            if let Some(a) = start(run, &stepper, &banned, job, metrics) {
                active.push(a);
                stepping += 1;
            }
        }
        queued.set(&metrics.queued, waiting.len());
        running.set(&metrics.running, active.len());
        paused.set(&metrics.paused, active.len() - stepping);
        if active.is_empty() {
            continue;
        }
        if stepping == 0 {
            std::thread::sleep(PAUSED_POLL);
            continue;
        }
        // Streams that resumed together may outnumber the places: the rest wait a step.
        let mut batch: Vec<&mut Active<'_>> = active
            .iter_mut()
            .filter(|a| a.paused_since.is_none())
            .take(max_batch)
            .collect();
        let inputs: Vec<u32> = batch.iter().map(|a| a.pending).collect();
        let mut states: Vec<&mut StreamState> = batch.iter_mut().map(|a| &mut a.state).collect();
        match stepper.step(&inputs, &mut states) {
            Ok(logits) => {
                let v = stepper.vocab_size();
                for (a, row) in batch.iter_mut().zip(logits.chunks_exact(v)) {
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
        paused_since: None,
    };
    a.next_token(run, &logits, banned, metrics);
    (!a.finished).then_some(a)
}

impl Active<'_> {
    /// Pauses the stream while its client lags, resumes it when the client catches up, and
    /// ends it when the client has read nothing for `stall_timeout`, so a client that stops
    /// reading cannot hold its admission place for ever.
    fn watch_reader(&mut self, now: Instant, stall_timeout: Duration, metrics: &Metrics) {
        if !self.job.events.lagging() {
            self.paused_since = None;
            return;
        }
        let since = *self.paused_since.get_or_insert(now);
        if now.duration_since(since) >= stall_timeout {
            let _ = self.job.events.send(StreamEvent::Failed {
                index: self.job.index,
                message: format!(
                    "the client read nothing for {} s while {} events waited: the stream was ended",
                    stall_timeout.as_secs_f64(),
                    self.job.events.unread()
                ),
            });
            metrics.stream_done(self.job.admitted.elapsed());
            self.finished = true;
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::admit;
    use crate::events::{EventReceiver, MAX_UNREAD_EVENTS, event_channel};
    use burn::tensor::Device;
    use lstm_lm_infer::{DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, TrainSettings};
    use lstm_lm_model::LanguageModelConfig;
    use lstm_lm_text_prep::{TextTokenizer, TokenizerConfig, TokenizerKind};
    use std::sync::atomic::Ordering;

    /// An untrained word model, enough to generate.
    fn tiny_run() -> LoadedRun {
        let device = Device::flex();
        device.seed(5);
        let tokenizer = TextTokenizer::fit(
            &TokenizerConfig::new(TokenizerKind::Word),
            &["the keeper climbed the tower at dusk and lit the lamp"],
        )
        .unwrap();
        let model = LanguageModelConfig::new(tokenizer.vocab_size())
            .with_embedding_size(8)
            .with_hidden_size(12);
        LoadedRun {
            config: RunConfig {
                format: RUN_FORMAT.into(),
                version: RUN_FORMAT_VERSION,
                settings: TrainSettings::default(),
                model: model.clone(),
                ngram_width: None,
                data: DataFiles::train_only("corpus.txt"),
                data_digests: Vec::new(),
                backend: "flex".into(),
            },
            model: model.init(&device).unwrap(),
            tokenizer,
            device,
        }
    }

    /// A job of `max_tokens` for `events`, admitted under `metrics`.
    fn job(events: EventSender, max_tokens: usize, metrics: &Arc<Metrics>) -> GenerationJob {
        GenerationJob {
            index: 0,
            feed: vec![1],
            prompt: vec![1],
            max_tokens,
            sampling: SamplingConfig::default(),
            seed: 7,
            stop: Vec::new(),
            stop_at_eos: false,
            logprobs: None,
            events,
            slot: admit(metrics, 1, 8).unwrap().pop().unwrap(),
            admitted: Instant::now(),
        }
    }

    /// Reads `reader` to its end (within a minute): the pieces and how the stream ended.
    fn read_all(reader: &mut EventReceiver) -> (usize, Option<Result<usize, String>>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let next = |reader: &mut EventReceiver| {
            runtime
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(60), reader.recv()).await
                })
                .expect("the stream ends within a minute")
        };
        let (mut pieces, mut end) = (0, None);
        while let Some(event) = next(reader) {
            match event {
                StreamEvent::Piece { .. } => pieces += 1,
                StreamEvent::Done { tokens, .. } => end = Some(Ok(tokens)),
                StreamEvent::Failed { message, .. } => end = Some(Err(message)),
            }
        }
        (pieces, end)
    }

    /// A scheduler over [`tiny_run`] with these settings, and its metrics.
    fn scheduler(
        max_batch: usize,
        stall_timeout: Duration,
    ) -> (Scheduler, std::thread::JoinHandle<()>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let run = Arc::new(tiny_run());
        let (scheduler, thread) =
            Scheduler::start(run, max_batch, stall_timeout, Arc::clone(&metrics)).unwrap();
        (scheduler, thread, metrics)
    }

    /// Waits (up to a minute) until `ok` holds.
    fn eventually(what: &str, ok: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A client that does not read its stream gets no more than [`MAX_UNREAD_EVENTS`] (and a
    /// step's worth) generated ahead, and its paused stream leaves its batch place to others;
    /// once it reads, the stream runs to its end.
    #[test]
    fn a_stream_waits_for_a_reader_that_lags() {
        let (scheduler, thread, metrics) = scheduler(1, Duration::from_secs(3600));
        let (events, mut reader) = event_channel();
        let probe = events.clone();
        let max_tokens = 4 * MAX_UNREAD_EVENTS;
        assert!(scheduler.submit(job(events, max_tokens, &metrics)));
        eventually("the stream pauses", || {
            metrics.paused.load(Ordering::Relaxed) == 1
        });
        // The one batch place is free for another stream meanwhile.
        let (other, mut other_reader) = event_channel();
        assert!(scheduler.submit(job(other, 5, &metrics)));
        assert_eq!(read_all(&mut other_reader).1, Some(Ok(5)));
        // Paused all along, it generated nothing more.
        let unread = probe.unread();
        assert!(
            (MAX_UNREAD_EVENTS..=MAX_UNREAD_EVENTS + 3).contains(&unread),
            "{unread} events unread"
        );
        drop(probe);
        let (pieces, end) = read_all(&mut reader);
        assert_eq!(end, Some(Ok(max_tokens)));
        assert!(pieces >= max_tokens, "{pieces} pieces");
        eventually("the pause gauge falls", || {
            metrics.paused.load(Ordering::Relaxed) == 0
        });
        drop(scheduler);
        thread.join().unwrap();
    }

    /// A client that reads nothing for the stall timeout has its stream ended, with an error
    /// that says why, and its admission place back.
    #[test]
    fn a_stream_whose_reader_stalls_is_ended() {
        let (scheduler, thread, metrics) = scheduler(4, Duration::from_millis(50));
        let (events, mut reader) = event_channel();
        assert!(scheduler.submit(job(events, 4 * MAX_UNREAD_EVENTS, &metrics)));
        eventually("the stream ends and gives its place back", || {
            metrics.admitted.load(Ordering::Relaxed) == 0
        });
        let (pieces, end) = read_all(&mut reader);
        assert!(
            (MAX_UNREAD_EVENTS - 3..=MAX_UNREAD_EVENTS + 3).contains(&pieces),
            "{pieces} pieces"
        );
        let message = end.unwrap().unwrap_err();
        assert!(message.contains("read nothing for 0.05 s"), "{message}");
        drop(scheduler);
        thread.join().unwrap();
    }
}
