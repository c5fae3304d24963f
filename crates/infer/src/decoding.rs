//! Generation with its controls: stop strings, end of text, repetition penalty, the n-gram
//! repetition ban, token probabilities, beam search, and a conversation that carries the model
//! state from one prompt to the next (`generate --interactive`).
use lstm_lm_text_prep::StreamDecoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::InferError;
use crate::beam::{BeamHypothesis, beam_search};
use crate::generate::{Generator, SamplingConfig};
use crate::logit_rules::{apply_repetition_penalty, log_prob_of, no_repeat_ngram_bans};
use crate::session::LoadedRun;
use crate::stop_text::StopText;

/// Most hypotheses beam search keeps.
pub const MAX_BEAMS: usize = 64;
/// Most stop strings one generation watches for.
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest n-gram `no_repeat_ngram` looks at.
pub const MAX_NO_REPEAT_NGRAM: usize = 64;

/// Most ids a generation reserves room for before generating; more grow the vector.
const MAX_RESERVED_TOKENS: usize = 4096;

/// How a continuation is generated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Tokens to generate at most. Default 50.
    pub max_tokens: usize,
    /// How each token is picked when not searching beams. Default: the whole softmax at
    /// temperature 1.
    pub sampling: SamplingConfig,
    /// Seed of the sampler. Default 0.
    pub seed: u64,
    /// Stop as soon as the text contains one of these (not shown). Default none.
    pub stop: Vec<String>,
    /// Stop at the tokenizer's end-of-text token (not shown). Default false.
    pub stop_at_eos: bool,
    /// CTRL's repetition penalty on tokens already in the prompt or the continuation
    /// (1: off; 1.2 is a common choice). Default 1.
    pub repetition_penalty: f32,
    /// Never repeat an n-gram of this size (0: off). Default 0.
    pub no_repeat_ngram: usize,
    /// Beam search with this many hypotheses, ranked by log-probability per token (1: sample
    /// instead). Default 1.
    pub beams: usize,
    /// Compute each generated token's probability under the model (slower: the full softmax
    /// every step). Default false.
    pub probabilities: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 50,
            sampling: SamplingConfig::default(),
            seed: 0,
            stop: Vec::new(),
            stop_at_eos: false,
            repetition_penalty: 1.0,
            no_repeat_ngram: 0,
            beams: 1,
            probabilities: false,
        }
    }
}

impl GenerateOptions {
    /// Checks ranges, naming the flag of each.
    pub fn validate(&self) -> Result<(), InferError> {
        self.sampling.validate()?;
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(InferError::Input(format!(
                "--repetition-penalty {} must be a positive number (1 turns it off)",
                self.repetition_penalty
            )));
        }
        if self.beams == 0 || self.beams > MAX_BEAMS {
            return Err(InferError::Input(format!(
                "--beams {} must be between 1 and {MAX_BEAMS}",
                self.beams
            )));
        }
        if self.no_repeat_ngram > MAX_NO_REPEAT_NGRAM {
            return Err(InferError::Input(format!(
                "--no-repeat-ngram {} is above the limit of {MAX_NO_REPEAT_NGRAM}",
                self.no_repeat_ngram
            )));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(InferError::Input(format!(
                "{} --stop strings are more than the limit of {MAX_STOP_STRINGS}",
                self.stop.len()
            )));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(InferError::Input(
                "--stop takes a non-empty string (e.g. --stop '\\n\\n')".into(),
            ));
        }
        Ok(())
    }

    /// Whether picking a token needs the exact logits of every token.
    fn needs_exact_logits(&self) -> bool {
        self.probabilities || self.repetition_penalty != 1.0
    }
}

/// Why a continuation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// `max_tokens` were generated.
    Length,
    /// The end-of-text token came (with `stop_at_eos`).
    Eos,
    /// A stop string came.
    Stop,
    /// The caller asked to stop (Ctrl-C in `generate --interactive`).
    Interrupted,
}

impl StopReason {
    /// `length`, `eos`, `stop` or `interrupted`, as JSON output names it.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Length => "length",
            StopReason::Eos => "eos",
            StopReason::Stop => "stop",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// One generated token, as it is handed to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    /// Its id; `None` for a last piece of text that was held back until the end.
    pub id: Option<u32>,
    /// Its entry in the vocabulary.
    pub token: String,
    /// Text that can be shown now (may be empty: the decoder or a possible stop string holds
    /// it back; may include text held back for earlier tokens).
    pub text: String,
    /// Its probability under the model (before temperature and penalties), when
    /// [`GenerateOptions::probabilities`] asked for it.
    pub prob: Option<f64>,
}

/// A finished continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated ids (with the end-of-text or stop-string token that ended it, if any).
    pub ids: Vec<u32>,
    /// The text shown (without a stop string or end-of-text token).
    pub text: String,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Each generated token's natural-log probability under the model, when asked for (always
    /// with beam search).
    pub logprobs: Option<Vec<f64>>,
}

/// A model state carried from one prompt to the next: each [`turn`](Self::turn) continues
/// the text so far, until [`reset`](Self::reset).
pub struct Conversation<'a> {
    run: &'a LoadedRun,
    generator: Generator,
    /// Ids fed since the last reset (the repetition rules look at them).
    history: Vec<u32>,
}

impl<'a> Conversation<'a> {
    /// A conversation with `run`'s model, from its start context.
    pub fn new(run: &'a LoadedRun) -> Result<Self, InferError> {
        let mut c = Conversation {
            run,
            generator: Generator::new(run.model.clone(), run.device.clone()),
            history: Vec::new(),
        };
        c.reset()?;
        Ok(c)
    }

    /// Forgets everything fed so far.
    pub fn reset(&mut self) -> Result<(), InferError> {
        self.generator.reset();
        self.history = self.run.start_context();
        self.generator.feed(&self.history)
    }

    /// Feeds `prompt` and generates its continuation, handing each token to `emit` as it
    /// comes. `interrupted` is asked before every token; when it says true the continuation
    /// ends there ([`StopReason::Interrupted`]). The model state keeps everything fed and
    /// generated for the next turn.
    pub fn turn(
        &mut self,
        prompt: &str,
        opts: &GenerateOptions,
        interrupted: &dyn Fn() -> bool,
        mut emit: impl FnMut(&GeneratedToken) -> Result<(), InferError>,
    ) -> Result<Generation, InferError> {
        opts.validate()?;
        let prompt_ids = self.run.prompt_ids(prompt)?;
        if self.history.is_empty() && prompt_ids.is_empty() {
            return Err(InferError::Input(
                "this model continues a prompt (its recipe has no start-of-text token): pass --prompt with at least one known word"
                    .into(),
            ));
        }
        let eos = self.run.tokenizer.eos_id();
        if opts.stop_at_eos && eos.is_none() {
            return Err(InferError::Input(format!(
                "--stop-at-eos: this model's {} tokenizer has no end-of-text token; stop at a string instead (e.g. --stop '\\n')",
                self.run.tokenizer.kind().name()
            )));
        }
        self.generator.feed(&prompt_ids)?;
        self.history.extend_from_slice(&prompt_ids);
        if opts.beams > 1 {
            return self.beam_turn(&prompt_ids, opts, interrupted, emit);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let mut decoder = self.run.tokenizer.stream_decoder();
        for &id in &prompt_ids {
            decoder.push(id);
        }
        let mut stops = StopText::new(&opts.stop);
        let pad: Vec<u32> = self.run.tokenizer.pad_id().into_iter().collect();
        let mut ids = Vec::with_capacity(opts.max_tokens.min(MAX_RESERVED_TOKENS));
        let mut logprobs = opts.probabilities.then(Vec::new);
        let mut text = String::new();
        let mut reason = StopReason::Length;
        let mut banned = Vec::with_capacity(pad.len());
        for _ in 0..opts.max_tokens {
            if interrupted() {
                reason = StopReason::Interrupted;
                break;
            }
            // Reused from token to token: nothing is allocated here without the n-gram ban.
            banned.clear();
            banned.extend_from_slice(&pad);
            if opts.no_repeat_ngram > 0 {
                banned.extend(no_repeat_ngram_bans(&self.history, opts.no_repeat_ngram));
            }
            let Some((id, logprob)) = self.pick(opts, &banned, &mut rng)? else {
                break;
            };
            ids.push(id);
            self.history.push(id);
            self.generator.feed(&[id])?;
            if let (Some(all), Some(lp)) = (&mut logprobs, logprob) {
                all.push(lp);
            }
            let token = self.run.tokenizer.id_to_token(id).unwrap_or_default();
            if opts.stop_at_eos && Some(id) == eos {
                reason = StopReason::Eos;
                break;
            }
            let (shown, stopped) = stops.push(&decoder.push(id));
            text.push_str(&shown);
            emit(&GeneratedToken {
                id: Some(id),
                token,
                text: shown,
                prob: logprob.map(f64::exp),
            })?;
            if stopped {
                reason = StopReason::Stop;
                break;
            }
        }
        if reason != StopReason::Stop && finish_text(&mut stops, decoder, &mut text, &mut emit)? {
            reason = StopReason::Stop;
        }
        Ok(Generation {
            ids,
            text,
            stop_reason: reason,
            logprobs,
        })
    }

    /// The next token and, when asked for, its log-probability under the model.
    fn pick(
        &mut self,
        opts: &GenerateOptions,
        banned: &[u32],
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<(u32, Option<f64>)>, InferError> {
        if !opts.needs_exact_logits() {
            return Ok(self
                .generator
                .sample(&opts.sampling, banned, rng)
                .map(|id| (id, None)));
        }
        let Some(logits) = self.generator.logits() else {
            return Ok(None);
        };
        let mut adjusted = logits.to_vec();
        apply_repetition_penalty(&mut adjusted, &self.history, opts.repetition_penalty);
        let id = opts.sampling.sample(&adjusted, banned, rng);
        let logprob = opts.probabilities.then(|| log_prob_of(logits, id));
        Ok(Some((id, logprob)))
    }

    /// Beam search from the state after the prompt; the best hypothesis is then shown token by
    /// token as a sampled one would be, and its state carried on.
    fn beam_turn(
        &mut self,
        prompt_ids: &[u32],
        opts: &GenerateOptions,
        interrupted: &dyn Fn() -> bool,
        mut emit: impl FnMut(&GeneratedToken) -> Result<(), InferError>,
    ) -> Result<Generation, InferError> {
        let best: BeamHypothesis = beam_search(
            &mut self.generator,
            &self.run.tokenizer,
            &self.history,
            prompt_ids,
            opts,
            interrupted,
        )?;
        self.generator.restore(&best.state);
        self.history.extend_from_slice(&best.ids);
        let mut decoder = self.run.tokenizer.stream_decoder();
        for &id in prompt_ids {
            decoder.push(id);
        }
        let mut stops = StopText::new(&opts.stop);
        let mut text = String::new();
        let eos = self.run.tokenizer.eos_id();
        for (&id, &lp) in best.ids.iter().zip(&best.logprobs) {
            if opts.stop_at_eos && Some(id) == eos {
                break;
            }
            let (shown, stopped) = stops.push(&decoder.push(id));
            text.push_str(&shown);
            emit(&GeneratedToken {
                id: Some(id),
                token: self.run.tokenizer.id_to_token(id).unwrap_or_default(),
                text: shown,
                prob: Some(lp.exp()),
            })?;
            if stopped {
                break;
            }
        }
        if !stops.stopped() {
            finish_text(&mut stops, decoder, &mut text, &mut emit)?;
        }
        Ok(Generation {
            ids: best.ids,
            text,
            stop_reason: best.reason,
            logprobs: Some(best.logprobs),
        })
    }
}

/// The end of a continuation: the text the decoder and the stop-string watch still hold, shown
/// up to a stop string if one completes there (then `true`), handed to `emit` as a last piece
/// without a token.
fn finish_text(
    stops: &mut StopText,
    mut decoder: StreamDecoder<'_>,
    text: &mut String,
    emit: &mut impl FnMut(&GeneratedToken) -> Result<(), InferError>,
) -> Result<bool, InferError> {
    let (shown, stopped) = stops.push(&decoder.finish());
    let rest = if stopped {
        shown
    } else {
        shown + &stops.finish()
    };
    if !rest.is_empty() {
        text.push_str(&rest);
        emit(&GeneratedToken {
            id: None,
            token: String::new(),
            text: rest,
            prob: None,
        })?;
    }
    Ok(stopped)
}

impl LoadedRun {
    /// Generates a continuation of each of `prompts` (each from a fresh state, with the same
    /// options), on the threads of the CPU thread pool, one model state per thread; the
    /// results come in input order. One prompt's error does not stop the others.
    pub fn generate_many(
        &self,
        prompts: &[String],
        opts: &GenerateOptions,
    ) -> Vec<Result<Generation, InferError>> {
        use rayon::prelude::*;
        prompts
            .par_iter()
            .map_init(
                || Conversation::new(self),
                |conversation, prompt| match conversation {
                    Ok(c) => {
                        c.reset()?;
                        c.turn(prompt, opts, &|| false, |_| Ok(()))
                    }
                    Err(e) => Err(InferError::Input(e.to_string())),
                },
            )
            .collect()
    }
}
