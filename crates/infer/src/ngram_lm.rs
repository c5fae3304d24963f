//! An n-gram run (`lstm-lm ngram train`, crate `lstm-lm-ngram`) used like an LSTM run:
//! evaluation on the same tokens with the same perplexity definition, scoring and sampling
//! with the same options. (Not the Keras n-gram-prefix *recipe* of [`crate::settings`].)
use std::path::Path;

use lstm_lm_ngram::NgramRun;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::InferError;
use crate::data;
use crate::generate::SamplingConfig;
use crate::session::TextScore;

/// Figures of an n-gram evaluation: the LSTM's [`EvalResult`](crate::EvalResult) without
/// accuracy (an arg max over the vocabulary for every token is not worth its cost here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NgramEvalResult {
    /// Mean negative natural-log probability per predicted token.
    pub loss: f64,
    /// exp(loss).
    pub ppl: f64,
    /// Tokens predicted: every token of every line and each line's end (for the word
    /// tokenizer, every token of the stream an LSTM run is evaluated on).
    pub tokens: u64,
}

/// An n-gram run folder, loaded.
#[derive(Debug, Clone)]
pub struct LoadedNgramRun {
    /// Tokenizer and model.
    pub run: NgramRun,
}

impl LoadedNgramRun {
    /// Loads an n-gram run folder.
    pub fn load(dir: &Path) -> Result<Self, InferError> {
        Ok(LoadedNgramRun {
            run: NgramRun::load(dir)?,
        })
    }

    /// Loss and perplexity on a text file: every line read as `<s> tokens </s>`.
    pub fn evaluate_file(&self, path: &Path) -> Result<NgramEvalResult, InferError> {
        let text = data::read_file(path)?;
        let logs = self.run.text_log_probs(&text)?;
        if logs.is_empty() {
            return Err(InferError::Data(format!(
                "\"{}\" has no line to evaluate",
                path.display()
            )));
        }
        let loss = -logs.iter().sum::<f64>() / logs.len() as f64;
        Ok(NgramEvalResult {
            loss,
            ppl: loss.exp(),
            tokens: logs.len() as u64,
        })
    }

    /// Scores `text` as one line: each token given the ones before it from the start of the
    /// line, then the end of the line (as an LSTM word run scores its `<eos>`).
    pub fn score(&self, text: &str) -> Result<TextScore, InferError> {
        let s = self.run.score_line(text)?;
        let total: f64 = s.tokens.iter().map(|(_, lp)| lp).sum();
        Ok(TextScore {
            ppl: (-total / s.tokens.len() as f64).exp(),
            total_logprob: total,
            tokens: s.tokens,
            ids: s.ids,
        })
    }

    /// Samples up to `max_tokens` tokens after `prompt` (read from the start of a line),
    /// calling `emit` with each piece of text. An end of line is written as a line break and
    /// the next token starts a new line (context `<s>`). Returns the generated ids (`</s>` as
    /// its symbol id).
    pub fn generate(
        &self,
        prompt: &str,
        max_tokens: usize,
        sampling: &SamplingConfig,
        seed: u64,
        mut emit: impl FnMut(&str) -> Result<(), InferError>,
    ) -> Result<Vec<u32>, InferError> {
        sampling.validate()?;
        let tokenizer = &self.run.tokenizer;
        let model = &self.run.model;
        let symbols = model.symbols();
        let prompt_ids = symbols.sentence(tokenizer, prompt)?;
        let unk = tokenizer.unk_id();
        if !prompt.trim().is_empty() && prompt_ids.iter().all(|&i| Some(i) == unk) {
            return Err(InferError::Input(format!(
                "the prompt {prompt:?} has no token this model's tokenizer knows: use words from the training text"
            )));
        }
        let keep = model.order() - 1;
        let mut history = vec![symbols.bos];
        history.extend_from_slice(&prompt_ids);
        let mut decoder = tokenizer.stream_decoder();
        for &id in &prompt_ids {
            decoder.push(id);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::new();
        for _ in 0..max_tokens {
            let from = history.len().saturating_sub(keep);
            let probs = model.distribution(&history[from..]);
            let Some(id) = draw(&probs, sampling, &mut rng) else {
                break;
            };
            out.push(id);
            if id == symbols.eos {
                let mut piece = if symbols.eos_is_token {
                    decoder.push(id)
                } else {
                    std::mem::replace(&mut decoder, tokenizer.stream_decoder()).finish() + "\n"
                };
                if !piece.ends_with('\n') {
                    piece.push('\n');
                }
                emit(&piece)?;
                history.clear();
                history.push(symbols.bos);
                continue;
            }
            let piece = decoder.push(id);
            if !piece.is_empty() {
                emit(&piece)?;
            }
            history.push(id);
            if history.len() > 4 * keep.max(1) {
                history.drain(..history.len() - keep);
            }
        }
        let rest = decoder.finish();
        if !rest.is_empty() {
            emit(&rest)?;
        }
        Ok(out)
    }
}

/// Draws an id from probabilities as [`SamplingConfig`] says: greedy takes the most likely;
/// otherwise probabilities are raised to 1/temperature, cut to the `top_k` most likely and
/// to the smallest set reaching `top_p` of the mass, and one is drawn. `None` when nothing has
/// a positive probability.
pub fn draw(probs: &[f64], sampling: &SamplingConfig, rng: &mut impl Rng) -> Option<u32> {
    let positive = |&(_, p): &(usize, f64)| p > 0.0 && p.is_finite();
    if sampling.greedy {
        return probs
            .iter()
            .copied()
            .enumerate()
            .filter(positive)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i as u32);
    }
    let inv_t = 1.0 / sampling.temperature;
    let mut weights: Vec<(usize, f64)> = probs
        .iter()
        .enumerate()
        .map(|(i, &p)| (i, if p > 0.0 { p.powf(inv_t) } else { 0.0 }))
        .filter(positive)
        .collect();
    if sampling.top_k.is_some() || sampling.top_p.is_some() {
        weights.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = sampling.top_k {
            weights.truncate(k.max(1));
        }
        if let Some(p) = sampling.top_p {
            let total: f64 = weights.iter().map(|w| w.1).sum();
            let mut sum = 0.0;
            let keep = weights
                .iter()
                .position(|w| {
                    sum += w.1;
                    sum >= p * total
                })
                .map_or(weights.len(), |i| i + 1);
            weights.truncate(keep);
        }
    }
    let total: f64 = weights.iter().map(|w| w.1).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut r = rng.random::<f64>() * total;
    for &(i, w) in &weights {
        r -= w;
        if r < 0.0 {
            return Some(i as u32);
        }
    }
    weights.last().map(|&(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws follow the probabilities; greedy, top-k 1 and a tiny top-p take the arg max.
    #[test]
    fn draws_follow_the_distribution_and_its_cuts() {
        let probs = [0.0, 0.1, 0.6, 0.3];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let plain = SamplingConfig::default();
        let mut seen = [0usize; 4];
        for _ in 0..20_000 {
            seen[draw(&probs, &plain, &mut rng).unwrap() as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        for (i, &p) in probs.iter().enumerate().skip(1) {
            let f = seen[i] as f64 / 20_000.0;
            assert!((f - p).abs() < 0.02, "{i}: {f} vs {p}");
        }
        let greedy = SamplingConfig {
            greedy: true,
            ..SamplingConfig::default()
        };
        let top1 = SamplingConfig {
            top_k: Some(1),
            ..SamplingConfig::default()
        };
        let tiny_p = SamplingConfig {
            top_p: Some(0.01),
            ..SamplingConfig::default()
        };
        for s in [greedy, top1, tiny_p] {
            assert_eq!(draw(&probs, &s, &mut rng), Some(2));
        }
        assert_eq!(draw(&[0.0, 0.0], &plain, &mut rng), None);
    }
}
