//! One recurrent step for many streams at once: each stream keeps its own state as plain
//! vectors; a step gathers them into one batch, runs the model once, and scatters the new
//! states back. Streams can therefore join and leave between any two steps.
use burn::tensor::{Device, Tensor, TensorData};
use lstm_lm_infer::{InferError, data};
use lstm_lm_model::{LanguageModel, LayerState, RecurrentState};

/// One stream's recurrent state: per layer, bottom first, the hidden vector and (LSTM) the
/// cell vector.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    layers: Vec<(Vec<f32>, Option<Vec<f32>>)>,
}

/// Runs a model's steps for batches of streams.
pub struct BatchStepper<'a> {
    model: &'a LanguageModel,
    device: Device,
}

fn read_back<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>, InferError> {
    t.try_into_vec_as::<f32>().map_err(|e| {
        InferError::Device(format!("cannot read the {what} back from the device: {e}"))
    })
}

impl<'a> BatchStepper<'a> {
    /// A stepper for `model` on `device`.
    pub fn new(model: &'a LanguageModel, device: Device) -> Self {
        BatchStepper { model, device }
    }

    /// Vocabulary size (the length of each logits row).
    pub fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    /// Runs `ids` (at least one) from a zero state: the state after them and the next-token
    /// logits.
    pub fn prefill(&self, ids: &[u32]) -> Result<(StreamState, Vec<f32>), InferError> {
        if ids.is_empty() {
            return Err(InferError::Input("nothing to feed the model".into()));
        }
        let input = data::ids_tensor(ids, 1, ids.len(), &self.device);
        let (logits, state) = self.model.forward_last(input, None);
        let mut states = self.scatter(state, 1)?;
        Ok((
            states.pop().unwrap_or_default(),
            read_back(logits, "logits")?,
        ))
    }

    /// Feeds `inputs[i]` to the stream whose state is `states[i]`, all in one step, updating
    /// every state; returns the logits, one row of [`vocab_size`](Self::vocab_size) per
    /// stream, in order.
    pub fn step(
        &self,
        inputs: &[u32],
        states: &mut [&mut StreamState],
    ) -> Result<Vec<f32>, InferError> {
        let batch = inputs.len();
        debug_assert_eq!(batch, states.len());
        let input = data::ids_tensor(inputs, batch, 1, &self.device);
        let gathered = self.gather(states);
        let (logits, next) = self.model.forward_last(input, Some(gathered));
        for (slot, new) in states.iter_mut().zip(self.scatter(next, batch)?) {
            **slot = new;
        }
        read_back(logits, "logits")
    }

    /// The streams' states stacked into one batch state.
    fn gather(&self, states: &[&mut StreamState]) -> RecurrentState {
        let widths = self.model.layer_hidden_sizes();
        let batch = states.len();
        let layers = (0..self.model.num_layers())
            .map(|k| {
                // Layers may differ in width (AWD-LSTM's shape).
                let hidden = widths[k];
                let stack = |pick: &dyn Fn(&StreamState) -> Option<&Vec<f32>>| {
                    let mut all = Vec::with_capacity(batch * hidden);
                    for s in states {
                        match s.layers.get(k).and_then(|_| pick(s)) {
                            Some(v) => all.extend_from_slice(v),
                            None => all.resize(all.len() + hidden, 0.0),
                        }
                    }
                    Tensor::<2>::from_data(TensorData::new(all, [batch, hidden]), &self.device)
                };
                LayerState {
                    hidden: stack(&|s| s.layers.get(k).map(|l| &l.0)),
                    cell: self
                        .model
                        .cell()
                        .has_cell()
                        .then(|| stack(&|s| s.layers.get(k).and_then(|l| l.1.as_ref()))),
                }
            })
            .collect();
        RecurrentState { layers }
    }

    /// A batch state split back into one state per stream.
    fn scatter(&self, state: RecurrentState, batch: usize) -> Result<Vec<StreamState>, InferError> {
        let widths = self.model.layer_hidden_sizes();
        let mut out = vec![StreamState::default(); batch];
        for (layer, &hidden) in state.layers.into_iter().zip(widths) {
            let h = read_back(layer.hidden, "recurrent state")?;
            let c = layer
                .cell
                .map(|c| read_back(c, "recurrent state"))
                .transpose()?;
            for (b, s) in out.iter_mut().enumerate() {
                let rows = b * hidden..(b + 1) * hidden;
                s.layers.push((
                    h[rows.clone()].to_vec(),
                    c.as_ref().map(|c| c[rows].to_vec()),
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lstm_lm_model::LanguageModelConfig;

    /// Streams stepped together in one batch get the logits each would get alone.
    #[test]
    fn a_batched_step_matches_each_stream_alone() {
        let device = Device::flex();
        device.seed(3);
        let model = LanguageModelConfig::new(30)
            .with_embedding_size(8)
            .with_hidden_size(12)
            .with_num_layers(2)
            .init(&device)
            .unwrap();
        let stepper = BatchStepper::new(&model, device);
        let prompts: [&[u32]; 3] = [&[1, 2, 3], &[4], &[5, 6]];
        let mut states: Vec<StreamState> = prompts
            .iter()
            .map(|p| stepper.prefill(p).unwrap().0)
            .collect();
        let mut refs: Vec<&mut StreamState> = states.iter_mut().collect();
        let batched = stepper.step(&[7, 8, 9], &mut refs).unwrap();
        let v = stepper.vocab_size();
        for (i, p) in prompts.iter().enumerate() {
            let mut alone: Vec<u32> = p.to_vec();
            alone.push([7, 8, 9][i]);
            let (_, want) = stepper.prefill(&alone).unwrap();
            for (a, b) in batched[i * v..(i + 1) * v].iter().zip(&want) {
                assert!(
                    a.is_finite() && (a - b).abs() < 1e-4,
                    "stream {i}: {a} vs {b}"
                );
            }
        }
    }
}
