//! The lstm-lm language model: token embedding, a stack of recurrent layers (LSTM, GRU or plain
//! RNN) and a projection to the vocabulary, built on burn with the backend chosen at run time.
//!
//! The crate knows nothing about files or tokenizers: ids in, logits and state out.
//!
//! Build a model, run a batch, carry the state, and move its weights out and back in under
//! PyTorch's names (the way `lstm-lm export` and `import` do):
//!
//! ```
//! use lstm_lm_model::burn::tensor::{Device, Int, Tensor, TensorData};
//! use lstm_lm_model::{CellKind, LanguageModelConfig};
//!
//! let device = Device::flex();
//! let model = LanguageModelConfig::new(50)
//!     .with_embedding_size(8)
//!     .with_hidden_size(16)
//!     .with_num_layers(2)
//!     .with_cell(CellKind::Lstm)
//!     .init(&device)
//!     .unwrap();
//! // Two sequences of three ids: logits for every position, and the state after the last.
//! let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5, 6], [2, 3]), &device);
//! let (logits, state) = model.forward(ids.clone(), None);
//! assert_eq!(logits.dims(), [2, 3, 50]);
//! // The state carries on to the next window, as truncated backpropagation through time does.
//! let (next, _) = model.forward(ids, Some(state));
//! assert_eq!(next.dims(), [2, 3, 50]);
//!
//! let weights = model.torch_state_dict();
//! assert_eq!(weights[0].name, "encoder.weight");
//! let fresh = LanguageModelConfig::new(50)
//!     .with_embedding_size(8)
//!     .with_hidden_size(16)
//!     .with_num_layers(2)
//!     .init(&device)
//!     .unwrap();
//! let restored = fresh.load_torch_state_dict(&weights, &device).unwrap();
//! assert_eq!(restored.torch_state_dict(), weights);
//! ```
#![warn(missing_docs)]

mod backend;
mod coarse_search;
mod config;
mod error;
pub mod fused;
mod language_model;
mod recurrent;
pub mod regularisation;
mod state;
#[doc(hidden)]
pub mod testing;
mod torch_names;
mod word_vectors;

pub use backend::{BackendKind, device_for, wgpu_adapters};
pub use config::{CellKind, LanguageModelConfig};
pub use error::ModelError;
pub use language_model::{LanguageModel, TopOutputs};
pub use recurrent::RecurrentLayer;
pub use state::{LayerState, RecurrentState};
pub use torch_names::NamedTensor;
pub use word_vectors::{Neighbor, VectorTable, WordTable, WordVectors};

/// Re-export of the burn version this crate is built on, so callers use the same types.
pub use burn;
