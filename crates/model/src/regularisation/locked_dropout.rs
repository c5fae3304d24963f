//! Variational ("locked") dropout: one mask per sequence, shared by every time step.
use burn::tensor::Tensor;

use super::scaled_mask;

/// Drops the same features of each sequence at every step (Gal & Ghahramani 2016, as AWD-LSTM's
/// `LockedDropout`): the mask is `[batch, 1, features]`, broadcast over time.
///
/// # Shapes
/// - x: `[batch, time, features]`
/// - output: the same
pub fn locked_dropout(x: Tensor<3>, p: f64) -> Tensor<3> {
    let [batch, _, features] = x.dims();
    let mask = scaled_mask([batch, 1, features], p, &x.device());
    x * mask
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;
    use crate::regularisation::test_support::values;

    #[test]
    fn one_mask_per_sequence_shared_over_time_and_rescaled() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let (batch, time, features, p) = (6, 9, 40, 0.3);
        let x = Tensor::<3>::ones([batch, time, features], &device);
        let out = values(locked_dropout(x, p));
        let kept = (1.0 / (1.0 - p)) as f32;
        let mut dropped = 0;
        for b in 0..batch {
            let first = &out[b * time * features..b * time * features + features];
            for t in 1..time {
                let row = &out[(b * time + t) * features..(b * time + t + 1) * features];
                assert_eq!(row, first, "sequence {b} step {t} has its own mask");
            }
            for &v in first {
                assert!(v == 0.0 || (v - kept).abs() < 1e-6, "{v}");
                dropped += usize::from(v == 0.0);
            }
        }
        // Sequences differ: masks are drawn per sequence, not once for the batch.
        assert_ne!(
            out[..features],
            out[time * features..time * features + features]
        );
        let share = dropped as f64 / (batch * features) as f64;
        assert!((share - p).abs() < 0.15, "dropped share {share}");
    }
}
