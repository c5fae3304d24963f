use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::module::embedding;
use burn::tensor::{Device, Distribution, Int, Tensor};

use crate::regularisation::{self, Regularisation};
use crate::{CellKind, LanguageModelConfig, LayerState, RecurrentLayer, RecurrentState};

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
    /// Each layer's hidden width, bottom first.
    #[module(skip)]
    hidden_sizes: Vec<usize>,
    /// Training-time regularisers besides the dropout probabilities (none by default).
    #[module(skip)]
    regularisation: Regularisation,
}

/// The top layer's outputs of [`LanguageModel::regularised_hidden_states`].
pub struct TopOutputs {
    /// After the output dropout: what the projection reads (AWD-LSTM's activation
    /// regularisation penalises these), `[batch, time, hidden]`.
    pub dropped: Tensor<3>,
    /// Before the output dropout (temporal activation regularisation penalises their change
    /// from step to step), `[batch, time, hidden]`.
    pub raw: Tensor<3>,
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
        let hidden_sizes: Vec<usize> = (0..config.num_layers)
            .map(|k| config.layer_hidden_size(k))
            .collect();
        let layers = (0..config.num_layers)
            .map(|k| {
                let input = if k == 0 {
                    config.embedding_size
                } else {
                    hidden_sizes[k - 1]
                };
                RecurrentLayer::new(config.cell, input, hidden_sizes[k], device)
            })
            .collect();
        let output_weight = (!config.tie_weights).then(|| {
            Param::from_tensor(Tensor::random(
                [config.vocab_size, config.top_hidden_size()],
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
            hidden_size: config.top_hidden_size(),
            vocab_size: config.vocab_size,
            hidden_sizes,
            regularisation: Regularisation::default(),
        }
    }

    /// The model with `regularisation` applied while training (the trainer sets it from the
    /// run's settings after building or loading the model; evaluation ignores it).
    pub fn with_regularisation(mut self, regularisation: Regularisation) -> Self {
        self.regularisation = regularisation;
        self
    }

    /// The training-time regularisers in effect.
    pub fn regularisation(&self) -> Regularisation {
        self.regularisation
    }

    /// Each layer's hidden width, bottom layer first.
    pub fn layer_hidden_sizes(&self) -> &[usize] {
        &self.hidden_sizes
    }

    /// Number of output classes.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Hidden width of the top layer (of every layer unless the config set `hidden_sizes`):
    /// the width the output projection reads.
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
        let layers = self
            .hidden_sizes
            .iter()
            .map(|&h| LayerState {
                hidden: Tensor::zeros([batch, h], device),
                cell: self
                    .cell
                    .has_cell()
                    .then(|| Tensor::zeros([batch, h], device)),
            })
            .collect();
        RecurrentState { layers }
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
        let (top, state) = self.regularised_hidden_states(ids, state);
        (top.dropped, state)
    }

    /// As [`hidden_states`](Self::hidden_states), also returning the top layer's outputs
    /// before the output dropout (for temporal activation regularisation).
    ///
    /// While training (an autodiff device) the dropouts and the [`Regularisation`] act:
    /// embedding dropout on the matrix the lookup reads, plain or locked dropout on the
    /// embedding output, between layers and on the top output, weight drop on each layer's
    /// hidden-to-hidden matrix (one mask per call, handed to the recurrent kernel as its
    /// weight). Elsewhere the outputs are those of the plain model.
    pub fn regularised_hidden_states(
        &self,
        ids: Tensor<2, Int>,
        state: Option<RecurrentState>,
    ) -> (TopOutputs, RecurrentState) {
        let [batch, _] = ids.dims();
        let device = ids.device();
        let reg = self.regularisation;
        let state = state.unwrap_or_else(|| self.zero_state(batch, &device));
        let table = if regularisation::is_training(&device, reg.embedding_dropout) {
            regularisation::embedding_dropout(self.embedding.val(), reg.embedding_dropout)
        } else {
            self.embedding.val()
        };
        let mut x = self.drop(&self.dropout_embedding, embedding(table, ids));
        let mut next = Vec::with_capacity(self.layers.len());
        let last = self.layers.len() - 1;
        let mut raw = None;
        for (k, (layer, layer_state)) in self.layers.iter().zip(state.layers).enumerate() {
            let weight_hh = if regularisation::is_training(&device, reg.weight_drop) {
                regularisation::weight_drop(layer.weight_hh.val(), reg.weight_drop)
            } else {
                layer.weight_hh.val()
            };
            let (out, s) = layer.forward_with(x, layer_state, weight_hh);
            next.push(s);
            x = if k < last {
                self.drop(&self.dropout_between, out)
            } else {
                raw = Some(out.clone());
                self.drop(&self.dropout_output, out)
            };
        }
        let raw = raw.unwrap_or_else(|| x.clone());
        (
            TopOutputs { dropped: x, raw },
            RecurrentState { layers: next },
        )
    }

    /// `dropout` as configured: locked (one mask per sequence) when the regularisation asks
    /// for it, otherwise burn's element-wise dropout.
    fn drop(&self, dropout: &Dropout, x: Tensor<3>) -> Tensor<3> {
        if !self.regularisation.locked_dropout {
            return dropout.forward(x);
        }
        if dropout.training.is_enabled() && regularisation::is_training(&x.device(), dropout.prob) {
            regularisation::locked_dropout(x, dropout.prob)
        } else {
            x
        }
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
