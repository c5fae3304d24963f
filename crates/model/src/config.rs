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
    /// Hidden width of every recurrent layer.
    #[config(default = 128)]
    pub hidden_size: usize,
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
    /// Share the embedding matrix with the output projection (needs `embedding_size == hidden_size`).
    #[config(default = false)]
    pub tie_weights: bool,
    /// Half-width of the uniform initialisation of embedding and output weights.
    #[config(default = 0.1)]
    pub init_range: f64,
}

impl LanguageModelConfig {
    /// Checks the configuration without building anything.
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
        for (name, p) in [
            ("dropout_embedding", self.dropout_embedding),
            ("dropout_between", self.dropout_between),
            ("dropout_output", self.dropout_output),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} = {p} must be in [0, 1)"));
            }
        }
        if self.tie_weights && self.embedding_size != self.hidden_size {
            return bad(format!(
                "tie_weights needs embedding_size == hidden_size, got {} and {}: set both to the same value or turn tying off",
                self.embedding_size, self.hidden_size
            ));
        }
        if !(self.init_range > 0.0 && self.init_range.is_finite()) {
            return bad(format!("init_range = {} must be positive", self.init_range));
        }
        Ok(())
    }

    /// Builds the model on `device` after [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> Result<LanguageModel, ModelError> {
        self.validate()?;
        Ok(LanguageModel::new(self, device))
    }
}
