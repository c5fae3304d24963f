use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::module::embedding;
use burn::tensor::{Device, Distribution, Int, Tensor};

use crate::{CellKind, LanguageModelConfig, RecurrentLayer, RecurrentState};

/// Embedding → stacked recurrent layers → Linear to the vocabulary.
///
/// Built by [`LanguageModelConfig::init`]. Ids are `[batch, time]`, batch first everywhere.
#[derive(Module, Debug)]
pub struct LanguageModel {
    /// Embedding matrix, `[vocab, embedding]`.
    pub embedding: Param<Tensor<2>>,
    /// Recurrent layers, bottom first.
    pub layers: Vec<RecurrentLayer>,
    /// Output weights `[vocab, hidden]`; `None` when tied to the embedding.
    pub output_weight: Option<Param<Tensor<2>>>,
    /// Output bias, `[vocab]`.
    pub output_bias: Param<Tensor<1>>,
    dropout_embedding: Dropout,
    dropout_between: Dropout,
    dropout_output: Dropout,
    #[module(skip)]
    cell: CellKind,
    #[module(skip)]
    hidden_size: usize,
    #[module(skip)]
    vocab_size: usize,
}

impl LanguageModel {
    pub(crate) fn new(config: &LanguageModelConfig, device: &Device) -> Self {
        let r = config.init_range;
        let uniform = Distribution::Uniform(-r, r);
        let embedding = Param::from_tensor(Tensor::random(
            [config.vocab_size, config.embedding_size],
            uniform,
            device,
        ));
        let layers = (0..config.num_layers)
            .map(|k| {
                let input = if k == 0 {
                    config.embedding_size
                } else {
                    config.hidden_size
                };
                RecurrentLayer::new(config.cell, input, config.hidden_size, device)
            })
            .collect();
        let output_weight = (!config.tie_weights).then(|| {
            Param::from_tensor(Tensor::random(
                [config.vocab_size, config.hidden_size],
                uniform,
                device,
            ))
        });
        LanguageModel {
            embedding,
            layers,
            output_weight,
            output_bias: Param::from_tensor(Tensor::zeros([config.vocab_size], device)),
            dropout_embedding: DropoutConfig::new(config.dropout_embedding).init(),
            dropout_between: DropoutConfig::new(config.dropout_between).init(),
            dropout_output: DropoutConfig::new(config.dropout_output).init(),
            cell: config.cell,
            hidden_size: config.hidden_size,
            vocab_size: config.vocab_size,
        }
    }

    /// Number of output classes.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Hidden width of every layer.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// The recurrent cell.
    pub fn cell(&self) -> CellKind {
        self.cell
    }

    /// Whether the output projection shares the embedding matrix.
    pub fn is_tied(&self) -> bool {
        self.output_weight.is_none()
    }

    /// A zero state for `batch` sequences on `device`.
    pub fn zero_state(&self, batch: usize, device: &Device) -> RecurrentState {
        RecurrentState::zeros(
            self.cell,
            self.layers.len(),
            self.hidden_size,
            batch,
            device,
        )
    }

    /// Logits for every position.
    ///
    /// # Shapes
    /// - ids: `[batch, time]`
    /// - output: `[batch, time, vocab]`
    ///
    /// `state` `None` starts from zeros; the returned state follows the last step.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        state: Option<RecurrentState>,
    ) -> (Tensor<3>, RecurrentState) {
        let (hidden, state) = self.hidden_states(ids, state);
        let [batch, time, width] = hidden.dims();
        let logits = self.project(hidden.reshape([batch * time, width]));
        (logits.reshape([batch, time, self.vocab_size]), state)
    }

    /// Logits for the last position only (the n-gram recipe predicts one next token).
    ///
    /// # Shapes
    /// - ids: `[batch, time]`
    /// - output: `[batch, vocab]`
    pub fn forward_last(
        &self,
        ids: Tensor<2, Int>,
        state: Option<RecurrentState>,
    ) -> (Tensor<2>, RecurrentState) {
        let (hidden, state) = self.hidden_states(ids, state);
        let [batch, time, width] = hidden.dims();
        let last = hidden.narrow(1, time - 1, 1).reshape([batch, width]);
        (self.project(last), state)
    }

    /// Logits at one position per row: `positions[b]` picks the step of row `b` (the n-gram
    /// recipe reads left-aligned rows and predicts after each row's last real token, so
    /// padding after it has no influence).
    ///
    /// # Shapes
    /// - ids: `[batch, time]`
    /// - positions: `[batch]`, each in `0..time`
    /// - output: `[batch, vocab]`
    pub fn forward_at(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<1, Int>,
        state: Option<RecurrentState>,
    ) -> (Tensor<2>, RecurrentState) {
        let (picked, state) = self.hidden_at(ids, positions, state);
        (self.project(picked), state)
    }

    /// The top layer's hidden vector at one position per row (see [`forward_at`]), before the
    /// projection.
    ///
    /// # Shapes
    /// - ids: `[batch, time]`, positions: `[batch]`
    /// - output: `[batch, hidden]`
    ///
    /// [`forward_at`]: Self::forward_at
    pub fn hidden_at(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<1, Int>,
        state: Option<RecurrentState>,
    ) -> (Tensor<2>, RecurrentState) {
        let (hidden, state) = self.hidden_states(ids, state);
        let [batch, _, width] = hidden.dims();
        let index = positions.reshape([batch, 1, 1]).repeat_dim(2, width);
        (hidden.gather(1, index).reshape([batch, width]), state)
    }

    /// The output projection's weight `[vocab, hidden]` (the embedding matrix when tied) and
    /// bias `[vocab]`: [`project`](Self::project) computes `hidden · weightᵀ + bias`.
    pub fn output_projection(&self) -> (Tensor<2>, Tensor<1>) {
        let weight = match &self.output_weight {
            Some(w) => w.val(),
            None => self.embedding.val(),
        };
        (weight, self.output_bias.val())
    }

    /// The top layer's hidden vectors after dropout, before the projection.
    ///
    /// # Shapes
    /// - ids: `[batch, time]`
    /// - output: `[batch, time, hidden]`
    pub fn hidden_states(
        &self,
        ids: Tensor<2, Int>,
        state: Option<RecurrentState>,
    ) -> (Tensor<3>, RecurrentState) {
        let [batch, _] = ids.dims();
        let device = ids.device();
        let state = state.unwrap_or_else(|| self.zero_state(batch, &device));
        let mut x = self
            .dropout_embedding
            .forward(embedding(self.embedding.val(), ids));
        let mut next = Vec::with_capacity(self.layers.len());
        let last = self.layers.len() - 1;
        for (k, (layer, layer_state)) in self.layers.iter().zip(state.layers).enumerate() {
            let (out, s) = layer.forward(x, layer_state);
            next.push(s);
            x = if k < last {
                self.dropout_between.forward(out)
            } else {
                self.dropout_output.forward(out)
            };
        }
        (x, RecurrentState { layers: next })
    }

    /// Every layer's output at every position (for inference: dropout is not applied), bottom
    /// layer first; sentence vectors pool them.
    ///
    /// # Shapes
    /// - ids: `[batch, time]`
    /// - output: one `[batch, time, hidden]` per layer
    pub fn layer_outputs(
        &self,
        ids: Tensor<2, Int>,
        state: Option<RecurrentState>,
    ) -> (Vec<Tensor<3>>, RecurrentState) {
        let [batch, _] = ids.dims();
        let device = ids.device();
        let state = state.unwrap_or_else(|| self.zero_state(batch, &device));
        let mut x = embedding(self.embedding.val(), ids);
        let mut outputs = Vec::with_capacity(self.layers.len());
        let mut next = Vec::with_capacity(self.layers.len());
        for (layer, layer_state) in self.layers.iter().zip(state.layers) {
            let (out, s) = layer.forward(x, layer_state);
            next.push(s);
            outputs.push(out.clone());
            x = out;
        }
        (outputs, RecurrentState { layers: next })
    }

    /// Number of recurrent layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Projects hidden vectors to logits with one matrix product.
    ///
    /// # Shapes
    /// - hidden: `[n, hidden]`
    /// - output: `[n, vocab]`
    pub fn project(&self, hidden: Tensor<2>) -> Tensor<2> {
        let weight = match &self.output_weight {
            Some(w) => w.val(),
            None => self.embedding.val(),
        };
        hidden
            .matmul(weight.transpose())
            .add(self.output_bias.val().unsqueeze::<2>())
    }
}
