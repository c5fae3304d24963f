//! Scoring many texts at `eval` speed: texts of about the same length go through the model
//! together (see `text_batches`), each from a zero state, and every score comes back in input
//! order.
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

use lstm_lm_model::fused;

use crate::InferError;
use crate::data;
use crate::session::{LoadedRun, TextScore};
use crate::settings::Recipe;
use crate::text_batches::{length_batches, padded_ids};

/// Most logits one scoring batch computes at once (rows × width × vocabulary): 32 MiB of f32.
const MAX_SCORE_LOGITS: usize = 1 << 23;
/// Most texts in one scoring batch.
const MAX_SCORE_ROWS: usize = 64;

impl LoadedRun {
    /// The ids a text is scored on (start context, then the text) and the first position
    /// scored.
    fn score_input(&self, text: &str) -> Result<(Vec<u32>, usize), InferError> {
        let body = if self.config.settings.data.recipe == Recipe::Stream {
            self.tokenizer.encode_line(text)?
        } else {
            let mut ids = self.tokenizer.encode_line(text)?;
            if let Some(eos) = self.tokenizer.eos_id()
                && ids.last() == Some(&eos)
            {
                ids.pop();
            }
            ids
        };
        if body.is_empty() {
            return Err(InferError::Input(format!(
                "{text:?} has no token this model's tokenizer knows"
            )));
        }
        let context = self.start_context();
        // With no start context (char, BPE) the first token is context, not scored.
        let from = context.len().max(1);
        let mut ids = context;
        ids.extend_from_slice(&body);
        if ids.len() < 2 {
            return Err(InferError::Input(format!(
                "{text:?} is too short to score: it needs at least one token after the first"
            )));
        }
        Ok((ids, from))
    }

    /// Scores `text`: the log-probability of every token given the ones before it.
    pub fn score(&self, text: &str) -> Result<TextScore, InferError> {
        self.score_many(&[text.to_string()])
            .pop()
            .unwrap_or_else(|| Err(InferError::Input("nothing to score".into())))
    }

    /// The log-probability of each `wanted` id after each position of the padded batch `ids`
    /// (`[rows, width]`), row after row. On the host the projection and the log-softmax run
    /// fused as in `eval` (the logits are never a tensor); elsewhere through `log_softmax`.
    fn target_logprobs(
        &self,
        ids: &[u32],
        wanted: &[u32],
        rows: usize,
        width: usize,
    ) -> Result<Vec<f32>, InferError> {
        let input = data::ids_tensor(ids, rows, width, &self.device);
        let (hidden, _) = self.model.hidden_states(input, None);
        let [_, _, size] = hidden.dims();
        let hidden: Tensor<2> = hidden.reshape([rows * width, size]);
        let (weight, bias) = self.model.output_projection();
        if let Some(values) = fused::projected_target_log_probs(&hidden, &weight, &bias, wanted) {
            return Ok(values);
        }
        let vocab = self.model.vocab_size();
        let logits: Tensor<3> = self.model.project(hidden).reshape([rows, width, vocab]);
        let logp = log_softmax(logits, 2);
        let index = data::targets_tensor(wanted, &self.device).reshape([rows, width, 1]);
        let picked: Tensor<3> = logp.gather(2, index);
        picked.try_into_vec_as::<f32>().map_err(|e| {
            InferError::Device(format!("cannot read the scores back from the device: {e}"))
        })
    }

    /// Scores every text (each from a zero state), batching texts of about the same length;
    /// one result per text, in input order. A text that cannot be scored (no known token) has
    /// its error and does not stop the others.
    pub fn score_many(&self, texts: &[String]) -> Vec<Result<TextScore, InferError>> {
        let prepared: Vec<Result<(Vec<u32>, usize), InferError>> =
            texts.iter().map(|t| self.score_input(t)).collect();
        let inputs: Vec<Vec<u32>> = prepared
            .iter()
            .map(|p| match p {
                Ok((ids, _)) => ids[..ids.len() - 1].to_vec(),
                Err(_) => Vec::new(),
            })
            .collect();
        let targets: Vec<Vec<u32>> = prepared
            .iter()
            .map(|p| match p {
                Ok((ids, _)) => ids[1..].to_vec(),
                Err(_) => Vec::new(),
            })
            .collect();
        let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let vocab = self.model.vocab_size().max(1);
        let mut scored: Vec<Option<Result<Vec<f64>, InferError>>> =
            (0..texts.len()).map(|_| None).collect();
        for batch in length_batches(&lengths, MAX_SCORE_ROWS, (MAX_SCORE_LOGITS / vocab).max(1)) {
            let rows = batch.rows.len();
            let width = batch.width;
            let ids = padded_ids(&inputs, &batch.rows, width, 0);
            let wanted = padded_ids(&targets, &batch.rows, width, 0);
            let result = self.target_logprobs(&ids, &wanted, rows, width);
            for (k, &r) in batch.rows.iter().enumerate() {
                scored[r] = Some(match &result {
                    Ok(values) => Ok(values[k * width..k * width + lengths[r]]
                        .iter()
                        .map(|&x| f64::from(x))
                        .collect()),
                    Err(e) => Err(InferError::Device(e.to_string())),
                });
            }
        }
        prepared
            .into_iter()
            .zip(scored)
            .map(|(p, s)| {
                let (ids, from) = p?;
                let all = s.unwrap_or_else(|| Err(InferError::Input("not scored".into())))?;
                let logps = &all[from - 1..];
                let scored_ids = ids[from..].to_vec();
                let tokens = scored_ids
                    .iter()
                    .zip(logps)
                    .map(|(&id, &lp)| (self.tokenizer.id_to_token(id).unwrap_or_default(), lp))
                    .collect();
                let total: f64 = logps.iter().sum();
                Ok(TextScore {
                    ppl: (-total / logps.len() as f64).exp(),
                    total_logprob: total,
                    tokens,
                    ids: scored_ids,
                })
            })
            .collect()
    }
}
