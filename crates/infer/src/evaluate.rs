//! Loss, perplexity and accuracy of a model on a prepared split, without gradients.
use burn::tensor::{Device, Tensor};
use lstm_lm_model::LanguageModel;
use serde::{Deserialize, Serialize};

use crate::InferError;
use crate::data::{self, Split};
use crate::loss::projected_cross_entropy;
use crate::settings::DataSettings;

/// Figures of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Mean cross-entropy, nats per predicted token.
    pub loss: f64,
    /// exp(loss).
    pub ppl: f64,
    /// Share of tokens whose arg-max prediction is right.
    pub accuracy: f64,
    /// Tokens predicted.
    pub tokens: u64,
}

/// Evaluates `model` (an inference model, e.g. from `Module::valid`) on `split`.
///
/// Stream splits are cut into `data.eval_batch_size` columns and windows of `width` steps with
/// the state carried across windows, as pytorch/examples evaluates; n-gram splits use
/// `data.batch_size` rows.
pub fn evaluate(
    model: &LanguageModel,
    split: &Split,
    data: &DataSettings,
    width: usize,
    pad: Option<u32>,
    device: &Device,
) -> Result<EvalResult, InferError> {
    let batch_size = match split {
        Split::Stream { .. } => data.eval_batch_size,
        Split::Ngram { .. } => data.batch_size,
    };
    let mut loss_sum = 0.0f64;
    let mut correct = 0.0f64;
    let mut tokens = 0u64;
    let mut state = None;
    for batch in split.batches(batch_size, width, None)? {
        let ids = data::ids_tensor(&batch.inputs, batch.batch, batch.width, device);
        let targets = data::targets_tensor(&batch.targets, device);
        let hidden = match split {
            Split::Ngram { .. } => {
                let positions = data::targets_tensor(&batch.positions, device);
                model.hidden_at(ids, positions, None).0
            }
            Split::Stream { .. } => {
                let (hidden, s) = model.hidden_states(ids, state.take());
                state = Some(s);
                let [b, t, h] = hidden.dims();
                hidden.reshape([b * t, h])
            }
        };
        let n = batch.targets.len() as u64;
        let (loss, c) = projected_cross_entropy(model, hidden, targets, pad);
        let figures = Tensor::cat(vec![loss, c], 0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| InferError::Data(format!("cannot read evaluation figures: {e:?}")))?;
        loss_sum += figures[0] as f64 * n as f64;
        correct += figures[1] as f64;
        tokens += n;
    }
    if tokens == 0 {
        return Err(InferError::Data(
            "the evaluation data is too short to predict a single token".into(),
        ));
    }
    let loss = loss_sum / tokens as f64;
    Ok(EvalResult {
        loss,
        ppl: loss.exp(),
        accuracy: correct / tokens as f64,
        tokens,
    })
}
