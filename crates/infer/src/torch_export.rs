//! `export --format safetensors`: a run's weights as a PyTorch state dict in a safetensors
//! file, under the names pytorch/examples' word_language_model gives them, so that
//! `nn.Embedding` + `nn.LSTM`/`nn.GRU`/`nn.RNN` + `nn.Linear` load them with `load_state_dict`.
//!
//! ```text
//! encoder.weight            [vocab, embedding]
//! rnn.weight_ih_l{k}        [gates·hidden, input]   gates i,f,g,o (LSTM), r,z,n (GRU), 1 (RNN)
//! rnn.weight_hh_l{k}        [gates·hidden, hidden]
//! rnn.bias_ih_l{k}          [gates·hidden]
//! rnn.bias_hh_l{k}          [gates·hidden]
//! decoder.weight            [vocab, hidden]         absent when tied to encoder.weight
//! decoder.bias              [vocab]
//! ```
//!
//! All tensors are F32, little-endian. The safetensors metadata (string to string) holds
//! `format` = [`TORCH_EXPORT_FORMAT`], `version` = [`TORCH_EXPORT_FORMAT_VERSION`], the model's
//! shape (`cell`, `vocab_size`, `embedding_size`, `hidden_size`, `num_layers`, `tie_weights`),
//! the tokenizer kind (`tokenizer`), `recipe`, `ngram_width` (when the run has one) and the
//! run's whole `settings` as JSON, so `lstm-lm import` rebuilds the same run.
use std::collections::HashMap;
use std::path::Path;

use lstm_lm_model::LanguageModel;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::atomic::write_atomic;
use crate::{InferError, LoadedRun, RunConfig};

/// The format tag in the metadata of an exported safetensors file.
pub const TORCH_EXPORT_FORMAT: &str = "lstm-lm-torch-state-dict";
/// The version of that format this build writes and reads.
pub const TORCH_EXPORT_FORMAT_VERSION: u32 = 1;

/// Writes `run`'s best weights to `out` as safetensors (atomically).
pub fn export_safetensors(run: &LoadedRun, out: &Path) -> Result<(), InferError> {
    let bytes = torch_state_dict_bytes(&run.model, &run.config, run.tokenizer.kind().name())?;
    write_atomic(out, &bytes)
}

/// The safetensors bytes of `model`'s state dict with `config`'s description in the metadata
/// (see the module docs); `tokenizer` is the tokenizer kind's name.
pub fn torch_state_dict_bytes(
    model: &LanguageModel,
    config: &RunConfig,
    tokenizer: &str,
) -> Result<Vec<u8>, InferError> {
    let tensors = model.torch_state_dict();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| TensorView::new(Dtype::F32, t.shape.clone(), b).map(|v| (t.name.as_str(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InferError::RunDir(format!("cannot serialize the weights: {e}")))?;
    let m = &config.model;
    let settings = serde_json::to_string(&config.settings)
        .map_err(|e| InferError::RunDir(format!("cannot serialize the settings: {e}")))?;
    let mut metadata = HashMap::from([
        ("format".to_string(), TORCH_EXPORT_FORMAT.to_string()),
        (
            "version".to_string(),
            TORCH_EXPORT_FORMAT_VERSION.to_string(),
        ),
        ("cell".to_string(), cell_name(m.cell).to_string()),
        ("vocab_size".to_string(), m.vocab_size.to_string()),
        ("embedding_size".to_string(), m.embedding_size.to_string()),
        ("hidden_size".to_string(), m.hidden_size.to_string()),
        ("num_layers".to_string(), m.num_layers.to_string()),
        ("tie_weights".to_string(), m.tie_weights.to_string()),
        ("tokenizer".to_string(), tokenizer.to_string()),
        (
            "recipe".to_string(),
            match config.settings.data.recipe {
                crate::settings::Recipe::Ngram => "ngram",
                crate::settings::Recipe::Stream => "stream",
            }
            .to_string(),
        ),
        ("settings".to_string(), settings),
    ]);
    if let Some(width) = config.ngram_width {
        metadata.insert("ngram_width".to_string(), width.to_string());
    }
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| InferError::RunDir(format!("cannot serialize the weights: {e}")))
}

/// `lstm`, `gru` or `rnn`.
pub(crate) fn cell_name(cell: lstm_lm_model::CellKind) -> &'static str {
    match cell {
        lstm_lm_model::CellKind::Lstm => "lstm",
        lstm_lm_model::CellKind::Gru => "gru",
        lstm_lm_model::CellKind::Rnn => "rnn",
    }
}
