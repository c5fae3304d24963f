//! AWD-LSTM's regularisers (Merity, Keskar & Socher 2017, "Regularizing and Optimizing LSTM
//! Language Models"), as functions of tensors: each draws its mask from the device's random
//! generator (reseeded per optimizer step by the trainer, so masks repeat on resume).
//!
//! Every function here applies its mask unconditionally; [`LanguageModel`](crate::LanguageModel)
//! calls them only while training ([`is_training`]), so evaluation never drops anything.
//!
//! Mask invariants, each with a unit test:
//! - [`locked_dropout`]: one mask per sequence and feature, shared by every time step;
//! - [`weight_drop`]: one mask over the whole hidden-to-hidden matrix per call (the model calls
//!   it once per layer per batch), so every sequence and step of a batch sees the same weights;
//! - [`embedding_dropout`]: whole rows of the embedding matrix (whole words) per call;
//! - kept values are scaled by `1 / (1 − p)`, so expectations are unchanged.
mod embedding_dropout;
mod locked_dropout;
mod weight_drop;

pub use embedding_dropout::embedding_dropout;
pub use locked_dropout::locked_dropout;
pub use weight_drop::weight_drop;

use burn::tensor::{Device, Distribution, Tensor};

/// The training-time regularisers a [`LanguageModel`](crate::LanguageModel) applies besides
/// its configured dropout probabilities (set with
/// [`with_regularisation`](crate::LanguageModel::with_regularisation); the default is none).
/// They change nothing at evaluation and nothing in the saved weights, so they are training
/// settings, not part of the model's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Regularisation {
    /// Make the three dropouts (embedding output, between layers, last layer's output)
    /// variational: one mask per sequence shared by every step ([`locked_dropout`]) instead
    /// of a new mask per element. Default false.
    pub locked_dropout: bool,
    /// Probability of dropping each entry of every hidden-to-hidden matrix, one mask per batch
    /// ([`weight_drop`]). Default 0.
    pub weight_drop: f64,
    /// Probability of dropping a whole word's embedding, one mask per batch
    /// ([`embedding_dropout`]). Default 0.
    pub embedding_dropout: f64,
}

/// Whether a regulariser with probability `p` acts on a tensor of `device`: only on an
/// autodiff device (training) and for `p > 0`.
pub fn is_training(device: &Device, p: f64) -> bool {
    p > 0.0 && device.is_autodiff()
}

/// A mask of `shape` whose entries are `1 / (1 − p)` with probability `1 − p` and 0 otherwise.
pub(crate) fn scaled_mask<const D: usize>(shape: [usize; D], p: f64, device: &Device) -> Tensor<D> {
    let keep = 1.0 - p;
    Tensor::random(shape, Distribution::Bernoulli(keep), device).mul_scalar(1.0 / keep)
}

#[cfg(test)]
pub(crate) mod test_support {
    use burn::tensor::Tensor;

    /// The values of a tensor, read back to the host.
    pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }
}
