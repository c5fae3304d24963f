//! The lstm-lm language model: token embedding, a stack of recurrent layers (LSTM, GRU or plain
//! RNN) and a projection to the vocabulary, built on burn with the backend chosen at run time.
//!
//! The crate knows nothing about files or tokenizers: ids in, logits and state out.
#![warn(missing_docs)]

mod backend;
mod config;
mod error;
pub mod fused;
mod language_model;
mod recurrent;
mod state;
#[doc(hidden)]
pub mod testing;
mod torch_names;
mod word_vectors;

pub use backend::{BackendKind, device_for, wgpu_adapters};
pub use config::{CellKind, LanguageModelConfig};
pub use error::ModelError;
pub use language_model::LanguageModel;
pub use recurrent::RecurrentLayer;
pub use state::{LayerState, RecurrentState};
pub use torch_names::NamedTensor;
pub use word_vectors::{Neighbor, VectorTable, WordTable, WordVectors};

/// Re-export of the burn version this crate is built on, so callers use the same types.
pub use burn;
