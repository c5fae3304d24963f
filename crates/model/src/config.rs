use burn::config::Config;
use burn::tensor::Device;

use crate::{LanguageModel, ModelError};

/// The recurrent cell of every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Long short-term memory (gates i, f, g, o as in PyTorch's `nn.LSTM`).
    #[default]
    Lstm,
    /// Gated recurrent unit (gates r, z, n as in PyTorch's `nn.GRU`).
    Gru,
    /// Elman RNN with tanh (PyTorch's `nn.RNN`).
    Rnn,
}

impl CellKind {
    /// Gate blocks stacked in the weight matrices: 4 for LSTM, 3 for GRU, 1 for RNN.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
            CellKind::Rnn => 1,
        }
    }

    /// Whether the layer state has a cell vector besides the hidden vector.
    pub fn has_cell(self) -> bool {
        matches!(self, CellKind::Lstm)
    }
}

/// Configuration of a [`LanguageModel`]: Embedding → stacked recurrent layers → Linear.
///
/// Initialisation follows pytorch/examples' word_language_model: embedding and output weights
/// uniform in ±`init_range`, output bias zero, recurrent weights and biases uniform in
/// ±1/√hidden (PyTorch's `nn.LSTM` default). Keras initialises differently (Glorot uniform,
/// orthogonal recurrent weights, forget-gate bias 1); we use one scheme for every preset.
#[derive(Config, Debug)]
pub struct LanguageModelConfig {
    /// Number of token ids (embedding rows and output classes).
    pub vocab_size: usize,
    /// Embedding width.
    #[config(default = 128)]
    pub embedding_size: usize,
    /// Hidden width of every recurrent layer (of every layer but those `hidden_sizes` sets).
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Hidden width of each layer, bottom first, when they differ (AWD-LSTM: 1150, 1150, 400);
    /// `None` (the default, and every config written before this field) gives every layer
    /// `hidden_size`. Its length must be `num_layers`.
    pub hidden_sizes: Option<Vec<usize>>,
    /// Number of stacked recurrent layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Recurrent cell.
    #[config(default = "CellKind::Lstm")]
    pub cell: CellKind,
    /// Dropout on the embedding output.
    #[config(default = 0.0)]
    pub dropout_embedding: f64,
    /// Dropout between stacked recurrent layers (as `nn.LSTM(dropout=…)`).
    #[config(default = 0.0)]
    pub dropout_between: f64,
    /// Dropout on the last recurrent layer's output, before the projection.
    #[config(default = 0.0)]
    pub dropout_output: f64,
    /// Share the embedding matrix with the output projection (needs the top layer's hidden
    /// width to equal `embedding_size`).
    #[config(default = false)]
    pub tie_weights: bool,
    /// Half-width of the uniform initialisation of embedding and output weights.
    #[config(default = 0.1)]
    pub init_range: f64,
}

impl LanguageModelConfig {
    /// Largest `vocab_size`: 2^24 ids. Ids are `u32`; far larger vocabularies are mistakes (a
    /// file claiming one, a corpus read with the wrong tokenizer) that would otherwise abort on
    /// allocation.
    pub const MAX_VOCAB_SIZE: usize = 1 << 24;
    /// Largest `embedding_size` and `hidden_size`: 65536.
    pub const MAX_WIDTH: usize = 1 << 16;
    /// Largest `num_layers`: 64.
    pub const MAX_LAYERS: usize = 64;
    /// Largest number of parameters (weights and biases, 4 bytes each): 2^31, 8 GiB of weights
    /// before gradients and optimizer state.
    pub const MAX_PARAMETERS: u64 = 1 << 31;

    /// The hidden width of layer `k` (bottom layer 0).
    pub fn layer_hidden_size(&self, k: usize) -> usize {
        match &self.hidden_sizes {
            Some(sizes) => sizes.get(k).copied().unwrap_or(self.hidden_size),
            None => self.hidden_size,
        }
    }

    /// The top layer's hidden width: the width of the vectors the output projection reads.
    pub fn top_hidden_size(&self) -> usize {
        self.layer_hidden_size(self.num_layers.saturating_sub(1))
    }

    /// The number of parameters (weights and biases) the model would have, as
    /// `LanguageModel::num_params` counts them after [`init`](Self::init); computed without
    /// overflow for any sizes.
    pub fn num_parameters(&self) -> u128 {
        let (vocab, embedding, hidden) = (
            self.vocab_size as u128,
            self.embedding_size as u128,
            self.hidden_size as u128,
        );
        let gates = self.cell.gates() as u128;
        // Per layer: weight_ih [gates·hidden, input], weight_hh [gates·hidden, hidden], two biases.
        let layer = |input: u128, hidden: u128| gates * hidden * (input + hidden + 2);
        let layers = match (&self.hidden_sizes, self.num_layers) {
            (Some(sizes), _) => {
                let mut input = embedding;
                let mut total = 0;
                for &h in sizes {
                    total += layer(input, h as u128);
                    input = h as u128;
                }
                total
            }
            (None, 0) => 0,
            (None, n) => layer(embedding, hidden) + (n as u128 - 1) * layer(hidden, hidden),
        };
        let top = self.top_hidden_size() as u128;
        let output_weight = if self.tie_weights { 0 } else { vocab * top };
        vocab * embedding + layers + output_weight + vocab
    }

    /// Checks the configuration without building anything: sizes within the limits above
    /// ([`MAX_VOCAB_SIZE`](Self::MAX_VOCAB_SIZE) and the rest) before anything is allocated.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::InvalidConfig(msg));
        if self.vocab_size == 0 {
            return bad("vocab_size must be at least 1".into());
        }
        if self.embedding_size == 0 || self.hidden_size == 0 {
            return bad("embedding_size and hidden_size must be at least 1".into());
        }
        if self.num_layers == 0 {
            return bad("num_layers must be at least 1".into());
        }
        for (name, value, limit) in [
            ("vocab_size", self.vocab_size, Self::MAX_VOCAB_SIZE),
            ("embedding_size", self.embedding_size, Self::MAX_WIDTH),
            ("hidden_size", self.hidden_size, Self::MAX_WIDTH),
            ("num_layers", self.num_layers, Self::MAX_LAYERS),
        ] {
            if value > limit {
                return bad(format!("{name} = {value} is above the limit of {limit}"));
            }
        }
        if let Some(sizes) = &self.hidden_sizes {
            if sizes.len() != self.num_layers {
                return bad(format!(
                    "hidden_sizes has {} entries but num_layers is {}: give one width per layer",
                    sizes.len(),
                    self.num_layers
                ));
            }
            for &h in sizes {
                if h == 0 || h > Self::MAX_WIDTH {
                    return bad(format!(
                        "hidden_sizes entry {h} must be between 1 and {}",
                        Self::MAX_WIDTH
                    ));
                }
            }
        }
        let parameters = self.num_parameters();
        if parameters > u128::from(Self::MAX_PARAMETERS) {
            return bad(format!(
                "the model would have {parameters} parameters, above the limit of {}: use a smaller vocabulary, embedding_size, hidden_size or num_layers",
                Self::MAX_PARAMETERS
            ));
        }
        for (name, p) in [
            ("dropout_embedding", self.dropout_embedding),
            ("dropout_between", self.dropout_between),
            ("dropout_output", self.dropout_output),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} = {p} must be in [0, 1)"));
            }
        }
        if self.tie_weights && self.embedding_size != self.top_hidden_size() {
            return bad(format!(
                "tie_weights needs embedding_size == hidden_size of the top layer, got {} and {}: set both to the same value or turn tying off",
                self.embedding_size,
                self.top_hidden_size()
            ));
        }
        // Far outside any useful value on both sides, and inside what the f32 uniform draw
        // can use: its width must neither overflow nor round to an empty range.
        const INIT_RANGE: (f64, f64) = (1e-30, 1e6);
        if !(INIT_RANGE.0..=INIT_RANGE.1).contains(&self.init_range) {
            return bad(format!(
                "init_range = {} must be between {:e} and {:e}",
                self.init_range, INIT_RANGE.0, INIT_RANGE.1
            ));
        }
        Ok(())
    }

    /// Builds the model on `device` after [`validate`](Self::validate), so sizes past the
    /// limits are an error, never an allocation failure.
    pub fn init(&self, device: &Device) -> Result<LanguageModel, ModelError> {
        self.validate()?;
        Ok(LanguageModel::new(self, device))
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;

    use super::*;

    #[test]
    fn the_parameter_count_is_that_of_the_built_model() {
        let device = Device::flex();
        for (cell, layers, tied) in [
            (CellKind::Lstm, 1, false),
            (CellKind::Lstm, 3, true),
            (CellKind::Gru, 2, false),
            (CellKind::Rnn, 2, true),
        ] {
            let config = LanguageModelConfig::new(11)
                .with_embedding_size(6)
                .with_hidden_size(6)
                .with_num_layers(layers)
                .with_cell(cell)
                .with_tie_weights(tied);
            let model = config.init(&device).unwrap();
            assert_eq!(
                config.num_parameters(),
                model.num_params() as u128,
                "{cell:?} {layers} layers tied={tied}"
            );
        }
    }

    /// Each size past its limit is refused by `init` before anything is allocated (without the
    /// check, these sizes abort on allocation or overflow computing a shape).
    #[test]
    fn sizes_past_the_limits_are_refused_before_allocating() {
        let device = Device::flex();
        let base = || LanguageModelConfig::new(100);
        let cases = [
            (
                base().with_hidden_size(usize::MAX),
                "hidden_size = 18446744073709551615 is above the limit of 65536",
            ),
            (
                base().with_embedding_size(LanguageModelConfig::MAX_WIDTH + 1),
                "embedding_size = 65537 is above the limit of 65536",
            ),
            (
                base().with_num_layers(65),
                "num_layers = 65 is above the limit of 64",
            ),
            (
                LanguageModelConfig::new(usize::MAX),
                "vocab_size = 18446744073709551615 is above the limit of 16777216",
            ),
            (
                // Each size within its limit, the whole far past the parameter limit.
                base().with_hidden_size(65_536).with_num_layers(64),
                "parameters, above the limit of 2147483648",
            ),
        ];
        for (config, needle) in cases {
            let err = match config.init(&device) {
                Ok(_) => panic!("built a model that should be refused: {needle}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        // At the limits' edge a small model still builds.
        let edge = LanguageModelConfig::new(2)
            .with_embedding_size(1)
            .with_hidden_size(1)
            .with_num_layers(LanguageModelConfig::MAX_LAYERS);
        assert!(edge.init(&device).is_ok());
    }
}
