//! Beam search: the continuation with the highest log-probability per token among those the
//! search keeps, under the same repetition rules and stop conditions as sampling.
use lstm_lm_text_prep::TextTokenizer;

use crate::InferError;
use crate::decoding::{GenerateOptions, StopReason};
use crate::generate::{Generator, GeneratorState};
use crate::logit_rules::{apply_repetition_penalty, no_repeat_ngram_bans};

/// One hypothesis of the search.
pub(crate) struct BeamHypothesis {
    /// Generated ids.
    pub ids: Vec<u32>,
    /// Each id's natural-log probability under the model (before penalties).
    pub logprobs: Vec<f64>,
    /// The sum the search ranks by (log-probabilities after the repetition penalty).
    score: f64,
    /// The generator's state after the last id.
    pub state: GeneratorState,
    /// Why it ended (`Length` while it is still growing).
    pub reason: StopReason,
}

impl BeamHypothesis {
    /// Length-normalised score: the mean log-probability per token.
    fn normalised(&self) -> f64 {
        self.score / self.ids.len().max(1) as f64
    }
}

/// `log_softmax` of `logits` in `f64` (non-finite logits become −∞).
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = logits
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| (f64::from(v) - max).exp())
        .sum();
    let log_total = max + total.ln();
    logits
        .iter()
        .map(|&v| {
            if v.is_finite() {
                f64::from(v) - log_total
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}

/// Runs the search from `generator`'s current state (after `history`, which ends with
/// `prompt_ids`) and returns the best hypothesis by [`BeamHypothesis::normalised`] score among
/// the finished ones and those still growing when `max_tokens` is reached.
pub(crate) fn beam_search(
    generator: &mut Generator,
    tokenizer: &TextTokenizer,
    history: &[u32],
    prompt_ids: &[u32],
    opts: &GenerateOptions,
    interrupted: &dyn Fn() -> bool,
) -> Result<BeamHypothesis, InferError> {
    let width = opts.beams;
    let eos = if opts.stop_at_eos {
        tokenizer.eos_id()
    } else {
        None
    };
    let pad: Vec<u32> = tokenizer.pad_id().into_iter().collect();
    let prompt_text = tokenizer.decode(prompt_ids);
    let mut active = vec![BeamHypothesis {
        ids: Vec::new(),
        logprobs: Vec::new(),
        score: 0.0,
        state: generator.snapshot(),
        reason: StopReason::Length,
    }];
    let mut finished: Vec<BeamHypothesis> = Vec::new();
    for _ in 0..opts.max_tokens {
        if interrupted() {
            for h in &mut active {
                h.reason = StopReason::Interrupted;
            }
            break;
        }
        // (hypothesis, id, model log-prob, ranking log-prob)
        let mut candidates: Vec<(usize, u32, f64, f64)> = Vec::new();
        for (b, h) in active.iter().enumerate() {
            generator.restore(&h.state);
            let Some(logits) = generator.logits() else {
                continue;
            };
            let model_lp = log_softmax(logits);
            let seen: Vec<u32> = history.iter().chain(&h.ids).copied().collect();
            let ranking_lp = if opts.repetition_penalty == 1.0 {
                model_lp.clone()
            } else {
                let mut adjusted = logits.to_vec();
                apply_repetition_penalty(&mut adjusted, &seen, opts.repetition_penalty);
                log_softmax(&adjusted)
            };
            let mut banned = pad.clone();
            banned.extend(no_repeat_ngram_bans(&seen, opts.no_repeat_ngram));
            let mut best: Vec<(u32, f64)> = ranking_lp
                .iter()
                .enumerate()
                .filter(|&(i, lp)| lp.is_finite() && !banned.contains(&(i as u32)))
                .map(|(i, &lp)| (i as u32, lp))
                .collect();
            if best.len() > width {
                best.select_nth_unstable_by(width - 1, |a, b| b.1.total_cmp(&a.1));
                best.truncate(width);
            }
            candidates.extend(
                best.into_iter()
                    .map(|(id, lp)| (b, id, model_lp[id as usize], h.score + lp)),
            );
        }
        if candidates.is_empty() {
            break;
        }
        candidates.sort_by(|a, b| b.3.total_cmp(&a.3));
        candidates.truncate(width);
        let mut next = Vec::with_capacity(width);
        for (b, id, model_lp, score) in candidates {
            let h = &active[b];
            generator.restore(&h.state);
            generator.feed(&[id])?;
            let mut ids = h.ids.clone();
            ids.push(id);
            let mut logprobs = h.logprobs.clone();
            logprobs.push(model_lp);
            let mut grown = BeamHypothesis {
                ids,
                logprobs,
                score,
                state: generator.snapshot(),
                reason: StopReason::Length,
            };
            if Some(id) == eos {
                grown.reason = StopReason::Eos;
                finished.push(grown);
            } else if contains_stop(tokenizer, prompt_ids, &prompt_text, &grown.ids, &opts.stop) {
                grown.reason = StopReason::Stop;
                finished.push(grown);
            } else {
                next.push(grown);
            }
        }
        active = next;
        if active.is_empty() || finished.len() >= width {
            break;
        }
    }
    finished
        .into_iter()
        .chain(active)
        .max_by(|a, b| a.normalised().total_cmp(&b.normalised()))
        .ok_or_else(|| InferError::Input("beam search found no continuation".into()))
}

/// Whether the text of `ids` after the prompt contains one of `stops`.
fn contains_stop(
    tokenizer: &TextTokenizer,
    prompt_ids: &[u32],
    prompt_text: &str,
    ids: &[u32],
    stops: &[String],
) -> bool {
    if stops.is_empty() {
        return false;
    }
    let all: Vec<u32> = prompt_ids.iter().chain(ids).copied().collect();
    let text = tokenizer.decode(&all);
    let generated = text.strip_prefix(prompt_text).unwrap_or(&text);
    stops.iter().any(|s| generated.contains(s.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use lstm_lm_model::LanguageModelConfig;
    use lstm_lm_text_prep::{TokenizerConfig, TokenizerKind};

    /// Two tokens with a beam as wide as the vocabulary keep every first token, so the search
    /// must find the pair with the highest log-probability: checked against every pair, with
    /// its per-token log-probabilities; a banned repeat (`no_repeat_ngram = 1`) is never chosen.
    #[test]
    fn a_full_width_beam_finds_the_best_pair_by_exhaustive_search() {
        let tokenizer = TextTokenizer::fit(
            &TokenizerConfig::new(TokenizerKind::Char),
            &["abcdefgh abc"],
        )
        .unwrap();
        let v = tokenizer.vocab_size();
        let device = Device::flex();
        device.seed(5);
        let model = LanguageModelConfig::new(v)
            .with_embedding_size(8)
            .with_hidden_size(16)
            .init(&device)
            .unwrap();
        let mut generator = Generator::new(model, device);
        let prompt = [1u32, 2];
        generator.feed(&prompt).unwrap();
        let start = generator.snapshot();
        let pad = tokenizer.pad_id();
        let allowed = |i: u32| Some(i) != pad;
        // Exhaustive: log p(a) + log p(b | a) for every allowed pair.
        let first = log_softmax(generator.logits().unwrap());
        let mut best = (f64::NEG_INFINITY, [0u32; 2], [0.0f64; 2]);
        let mut best_distinct = best;
        for a in (0..v as u32).filter(|&a| allowed(a)) {
            generator.restore(&start);
            generator.feed(&[a]).unwrap();
            let second = log_softmax(generator.logits().unwrap());
            for b in (0..v as u32).filter(|&b| allowed(b)) {
                let lps = [first[a as usize], second[b as usize]];
                let total = lps[0] + lps[1];
                if total > best.0 {
                    best = (total, [a, b], lps);
                }
                let repeats = [1, 2, a].contains(&b) || prompt.contains(&a);
                if !repeats && total > best_distinct.0 {
                    best_distinct = (total, [a, b], lps);
                }
            }
        }
        for (no_repeat, want) in [(0, best), (1, best_distinct)] {
            generator.restore(&start);
            let opts = GenerateOptions {
                max_tokens: 2,
                beams: v,
                no_repeat_ngram: no_repeat,
                ..GenerateOptions::default()
            };
            let found = beam_search(&mut generator, &tokenizer, &prompt, &prompt, &opts, &|| {
                false
            })
            .unwrap();
            assert_eq!(found.ids, want.1, "no_repeat_ngram {no_repeat}");
            for (got, want) in found.logprobs.iter().zip(want.2) {
                assert!((got - want).abs() < 1e-9, "{got} vs {want}");
            }
        }
    }
}
