//! `eval --mix`: an LSTM and an n-gram model interpolated token by token,
//! `p(w | h) = (1 − λ) p_lstm(w | h) + λ p_ngram(w | h)`.
//!
//! The LSTM reads the evaluation text exactly as `evaluate` does (the stream cut into
//! `eval_batch_size` columns, windows of `bptt`, state carried); each target's position in
//! the stream tells which n-gram probability goes with it (the n-gram reads the same stream
//! line by line from `<s>`). Mixing the two distributions and then taking the target's
//! probability is the same as mixing the two target probabilities, so only those are
//! computed. The component figures are reported on the same tokens.
use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use lstm_lm_ngram::Symbols;
use serde::{Deserialize, Serialize};

use crate::InferError;
use crate::data::{self, Split};
use crate::ngram_lm::LoadedNgramRun;
use crate::session::LoadedRun;
use crate::settings::Recipe;

/// Figures of a mixture evaluation; every figure is over the same tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureResult {
    /// The n-gram model's weight λ.
    pub lambda: f64,
    /// Mean negative natural-log probability of the mixture per token.
    pub loss: f64,
    /// exp(loss).
    pub ppl: f64,
    /// The LSTM alone: loss.
    pub lstm_loss: f64,
    /// The LSTM alone: perplexity.
    pub lstm_ppl: f64,
    /// The n-gram model alone: loss.
    pub ngram_loss: f64,
    /// The n-gram model alone: perplexity.
    pub ngram_ppl: f64,
    /// Tokens predicted (the LSTM evaluation's targets).
    pub tokens: u64,
}

/// Checks that two runs share one tokenizer: same kind and the same token for every id.
pub fn check_same_tokenizer(lstm: &LoadedRun, ngram: &LoadedNgramRun) -> Result<(), InferError> {
    let (a, b) = (&lstm.tokenizer, &ngram.run.tokenizer);
    let differs = if a.kind() != b.kind() {
        Some(format!(
            "the LSTM's tokenizer is {}, the n-gram's {}",
            a.kind().name(),
            b.kind().name()
        ))
    } else if a.vocab_size() != b.vocab_size() {
        Some(format!(
            "the LSTM's tokenizer has {} ids, the n-gram's {}",
            a.vocab_size(),
            b.vocab_size()
        ))
    } else {
        (0..a.vocab_size() as u32)
            .find(|&i| a.id_to_token(i) != b.id_to_token(i))
            .map(|i| {
                format!(
                    "id {i} is {:?} for the LSTM and {:?} for the n-gram",
                    a.id_to_token(i).unwrap_or_default(),
                    b.id_to_token(i).unwrap_or_default()
                )
            })
    };
    match differs {
        Some(why) => Err(InferError::Input(format!(
            "--mix needs both runs to share one tokenizer, but {why}: train the n-gram model on the LSTM's training files with the same --tokenizer"
        ))),
        None => Ok(()),
    }
}

/// Evaluates the mixture with each n-gram weight of `lambdas` (0 to 1) on the text file at
/// `path`, in one pass of the LSTM; one result per weight, in order.
pub fn evaluate_mixture(
    lstm: &LoadedRun,
    ngram: &LoadedNgramRun,
    lambdas: &[f64],
    path: &Path,
) -> Result<Vec<MixtureResult>, InferError> {
    if let Some(bad) = lambdas.iter().find(|l| !(0.0..=1.0).contains(*l)) {
        return Err(InferError::Input(format!(
            "--mix weight {bad} is out of range: give RUN:λ with λ from 0 to 1"
        )));
    }
    check_same_tokenizer(lstm, ngram)?;
    let d = &lstm.config.settings.data;
    if d.recipe != Recipe::Stream || !Symbols::aligns_with_stream(lstm.tokenizer.kind()) {
        return Err(InferError::Input(
            "--mix needs a word-tokenizer LSTM run trained with the stream recipe (its tokens are the n-gram's line by line)".into(),
        ));
    }
    let text = data::read_file(path)?;
    let ngram_logs = ngram.run.text_log_probs(&text)?;
    let split = data::prepare_split(d, &lstm.tokenizer, &text, None)?;
    let Split::Stream { ids } = &split else {
        unreachable!("a stream recipe prepares a stream split");
    };
    if ids.len() != ngram_logs.len() {
        return Err(InferError::Data(format!(
            "the n-gram model read {} tokens from \"{}\" and the LSTM {}: the runs do not tokenize alike",
            ngram_logs.len(),
            path.display(),
            ids.len()
        )));
    }
    let columns = d.eval_batch_size;
    let rows = ids.len() / columns.max(1);
    let mut mix = vec![0.0f64; lambdas.len()];
    let (mut lstm_sum, mut ngram_sum, mut tokens) = (0.0f64, 0.0f64, 0u64);
    let mut state = None;
    let mut start = 0usize;
    for batch in split.batches(columns, d.bptt, None)? {
        let input = data::ids_tensor(&batch.inputs, batch.batch, batch.width, &lstm.device);
        let (hidden, s) = lstm.model.hidden_states(input, state.take());
        state = Some(s);
        let [b, t, h] = hidden.dims();
        let logits = lstm.model.project(hidden.reshape([b * t, h]));
        let targets = data::targets_tensor(&batch.targets, &lstm.device).reshape([b * t, 1]);
        let picked: Tensor<2> = log_softmax(logits, 1).gather(1, targets);
        let lstm_logs = picked.try_into_vec_as::<f32>().map_err(|e| {
            InferError::Device(format!("cannot read the scores back from the device: {e}"))
        })?;
        for column in 0..b {
            for step in 0..t {
                let a = f64::from(lstm_logs[column * t + step]);
                let g = ngram_logs[column * rows + start + step + 1];
                lstm_sum += a;
                ngram_sum += g;
                for (sum, &lambda) in mix.iter_mut().zip(lambdas) {
                    *sum += mix_log(a, g, lambda);
                }
                tokens += 1;
            }
        }
        start += t;
    }
    if tokens == 0 {
        return Err(InferError::Data(
            "the evaluation data is too short to predict a single token".into(),
        ));
    }
    let n = tokens as f64;
    let figures = |sum: f64| (-sum / n, (-sum / n).exp());
    let (lstm_loss, lstm_ppl) = figures(lstm_sum);
    let (ngram_loss, ngram_ppl) = figures(ngram_sum);
    Ok(mix
        .iter()
        .zip(lambdas)
        .map(|(&sum, &lambda)| {
            let (loss, ppl) = figures(sum);
            MixtureResult {
                lambda,
                loss,
                ppl,
                lstm_loss,
                lstm_ppl,
                ngram_loss,
                ngram_ppl,
                tokens,
            }
        })
        .collect())
}

/// ln((1 − λ) eᵃ + λ eᵇ), exact at λ = 0 and 1, without underflow.
fn mix_log(a: f64, b: f64, lambda: f64) -> f64 {
    if lambda == 0.0 {
        return a;
    }
    if lambda == 1.0 {
        return b;
    }
    let (x, y) = (a + (1.0 - lambda).ln(), b + lambda.ln());
    let m = x.max(y);
    m + ((x - m).exp() + (y - m).exp()).ln()
}

#[cfg(test)]
mod tests {
    use super::mix_log;

    #[test]
    fn mix_log_is_the_log_of_the_mixture() {
        let (a, b) = (0.2f64.ln(), 0.6f64.ln());
        let got = mix_log(a, b, 0.25).exp();
        assert!((got - (0.75 * 0.2 + 0.25 * 0.6)).abs() < 1e-12, "{got}");
        assert_eq!(mix_log(a, b, 0.0), a);
        assert_eq!(mix_log(a, b, 1.0), b);
        assert!(mix_log(-800.0, -900.0, 0.5).is_finite());
    }
}
