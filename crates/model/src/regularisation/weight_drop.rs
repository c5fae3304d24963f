//! DropConnect on the hidden-to-hidden weights (AWD-LSTM's `WeightDrop`).
use burn::tensor::Tensor;

use super::scaled_mask;

/// The hidden-to-hidden matrix with each entry dropped with probability `p` and the rest
/// scaled by `1 / (1 − p)`: one mask for the whole matrix per call. The model computes this
/// once per layer per batch and hands the result to the recurrent kernel as its weight input,
/// so the fused kernels run unchanged and the gradient reaches `w` through the multiply.
///
/// # Shapes
/// - w: `[gates·hidden, hidden]`
/// - output: the same
pub fn weight_drop(w: Tensor<2>, p: f64) -> Tensor<2> {
    let mask = scaled_mask(w.dims(), p, &w.device());
    w * mask
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;
    use crate::regularisation::test_support::values;

    #[test]
    fn entries_are_dropped_or_rescaled_once_per_call() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let p = 0.5;
        let w = Tensor::<2>::ones([32, 8], &device);
        let a = values(weight_drop(w.clone(), p));
        let b = values(weight_drop(w, p));
        assert!(a.iter().all(|&v| v == 0.0 || v == 2.0), "{a:?}");
        let zeros = a.iter().filter(|&&v| v == 0.0).count();
        assert!((zeros as f64 / a.len() as f64 - p).abs() < 0.15, "{zeros}");
        // Individual entries, not whole rows or columns, and a new mask on every call.
        assert!((0..32).any(|r| {
            let row = &a[r * 8..(r + 1) * 8];
            row.contains(&0.0) && row.iter().any(|&v| v != 0.0)
        }));
        assert_ne!(a, b);
    }
}
