//! A trained run loaded for use: generation, scoring and evaluation with the run's own
//! tokenizer and recipe conventions.
use std::path::Path;

use burn::tensor::Device;
use lstm_lm_model::LanguageModel;
use lstm_lm_text_prep::{TextTokenizer, TokenizerKind};

use crate::InferError;
use crate::data;
use crate::decoding::{Conversation, GenerateOptions, GeneratedToken, Generation};
use crate::evaluate::{EvalResult, evaluate};
use crate::generate::SamplingConfig;
use crate::run_dir::{RunConfig, RunDir};
use crate::settings::Recipe;

/// Per-token scores of a text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TextScore {
    /// Each scored token as text, with its natural-log probability.
    pub tokens: Vec<(String, f64)>,
    /// The ids of the scored tokens (the same order as `tokens`).
    pub ids: Vec<u32>,
    /// Sum of the log-probabilities.
    pub total_logprob: f64,
    /// exp(−mean log-probability).
    pub ppl: f64,
}

/// A run folder's tokenizer and best model, on one device.
pub struct LoadedRun {
    /// The run's `config.json`.
    pub config: RunConfig,
    /// The run's tokenizer.
    pub tokenizer: TextTokenizer,
    /// The best model, for inference.
    pub model: LanguageModel,
    /// The device the model lives on.
    pub device: Device,
}

impl LoadedRun {
    /// Loads `dir` onto `device` (no autodiff), checking that the pieces belong together.
    pub fn load(dir: &Path, device: Device) -> Result<Self, InferError> {
        let run = RunDir::new(dir);
        let config = run.load_config()?;
        let tokenizer = run.load_tokenizer(&config)?;
        let model = run.load_model(&config, &device)?;
        Ok(LoadedRun {
            config,
            tokenizer,
            model,
            device,
        })
    }

    fn recipe(&self) -> Recipe {
        self.config.settings.data.recipe
    }

    /// The ids a fresh state is primed with before any text: `<eos>` for word-level streams
    /// (text starts after a line break), nothing otherwise. N-gram models were trained on
    /// prefixes read from a zero state (padding never reaches the prediction), so they start
    /// from the zero state too.
    pub fn start_context(&self) -> Vec<u32> {
        match (self.recipe(), self.tokenizer.eos_id()) {
            (Recipe::Stream, Some(eos)) => vec![eos],
            _ => Vec::new(),
        }
    }

    /// The ids of a prompt (or text to score) without the trailing `<eos>` a line gets.
    pub fn text_ids(&self, text: &str) -> Result<Vec<u32>, InferError> {
        let mut ids = self.tokenizer.encode_line(text)?;
        if let Some(eos) = self.tokenizer.eos_id()
            && ids.last() == Some(&eos)
        {
            ids.pop();
        }
        Ok(ids)
    }

    /// Ids of `prompt`, rejecting a prompt of which the tokenizer knows nothing.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>, InferError> {
        let ids = self.text_ids(prompt)?;
        if prompt.trim().is_empty() {
            return Ok(ids);
        }
        let unk = self.tokenizer.unk_id();
        if ids.is_empty() || ids.iter().all(|&i| Some(i) == unk) {
            return Err(InferError::Input(format!(
                "the prompt {prompt:?} has no token this model's tokenizer knows: use words from the training text"
            )));
        }
        Ok(ids)
    }

    /// Streams a continuation of `prompt`: every piece of text goes to `emit` as soon as it is
    /// decoded (plain sampling; [`generate_with`](Self::generate_with) takes every control).
    /// Returns the generated ids.
    pub fn generate(
        &self,
        prompt: &str,
        max_tokens: usize,
        sampling: &SamplingConfig,
        seed: u64,
        mut emit: impl FnMut(&str) -> Result<(), InferError>,
    ) -> Result<Vec<u32>, InferError> {
        let opts = GenerateOptions {
            max_tokens,
            sampling: sampling.clone(),
            seed,
            ..GenerateOptions::default()
        };
        let generation = self.generate_with(prompt, &opts, |t| {
            if t.text.is_empty() {
                Ok(())
            } else {
                emit(&t.text)
            }
        })?;
        Ok(generation.ids)
    }

    /// Generates a continuation of `prompt` with every control of [`GenerateOptions`] (stop
    /// strings, repetition rules, beam search, probabilities), handing each token to `emit` as
    /// it comes.
    pub fn generate_with(
        &self,
        prompt: &str,
        opts: &GenerateOptions,
        emit: impl FnMut(&GeneratedToken) -> Result<(), InferError>,
    ) -> Result<Generation, InferError> {
        Conversation::new(self)?.turn(prompt, opts, &|| false, emit)
    }

    /// Loss, perplexity and accuracy on a text file, prepared the way the run's training data
    /// was.
    pub fn evaluate_file(&self, path: &Path) -> Result<EvalResult, InferError> {
        let text = data::read_file(path)?;
        let d = &self.config.settings.data;
        let split = data::prepare_split(d, &self.tokenizer, &text, self.config.ngram_width)?;
        let width = self.config.ngram_width.unwrap_or(d.bptt);
        evaluate(
            &self.model,
            &split,
            d,
            width,
            self.tokenizer.pad_id(),
            &self.device,
        )
    }

    /// The tokenizer's kind.
    pub fn tokenizer_kind(&self) -> TokenizerKind {
        self.tokenizer.kind()
    }
}
