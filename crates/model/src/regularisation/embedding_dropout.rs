//! Embedding dropout: whole words dropped (AWD-LSTM's `embedded_dropout`).
use burn::tensor::Tensor;

use super::scaled_mask;

/// The embedding matrix with whole rows (words) zeroed with probability `p` and the rest scaled
/// by `1 / (1 − p)`: a dropped word's vector is zero wherever it occurs in the batch. One mask
/// per call (the model calls it once per batch). Only the lookup uses the dropped matrix; a
/// tied output projection keeps the full one.
///
/// # Shapes
/// - embedding: `[vocab, embedding]`
/// - output: the same
pub fn embedding_dropout(embedding: Tensor<2>, p: f64) -> Tensor<2> {
    let [vocab, _] = embedding.dims();
    let mask = scaled_mask([vocab, 1], p, &embedding.device());
    embedding * mask
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;
    use crate::regularisation::test_support::values;

    #[test]
    fn whole_rows_are_dropped_and_the_rest_rescaled() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let (vocab, width, p) = (200, 5, 0.25);
        let e = Tensor::<2>::ones([vocab, width], &device);
        let out = values(embedding_dropout(e, p));
        let mut dropped = 0;
        for row in out.chunks(width) {
            let first = row[0];
            assert!(
                row.iter().all(|&v| v == first),
                "a row is dropped whole: {row:?}"
            );
            assert!(first == 0.0 || (first - 1.0 / 0.75).abs() < 1e-6, "{first}");
            dropped += usize::from(first == 0.0);
        }
        assert!((dropped as f64 / vocab as f64 - p).abs() < 0.1, "{dropped}");
    }
}
