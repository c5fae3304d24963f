//! The log-probability of one target per row under the output projection's softmax, on the
//! host: what `score` needs, computed as the fused cross-entropy computes the training loss
//! (one GEMM, then one vectorised pass per row on the pool threads), so scoring many texts
//! runs at `eval` speed.
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::cpu_kernel::{add_into, project};
use super::host_values;
use super::math::softmax_cross_entropy_row;

/// Most logits held at once (rows × vocabulary): 32 MiB of f32; longer inputs go in slices.
const MAX_LOGITS: usize = 1 << 23;

/// `log softmax(hidden · weightᵀ + bias)[r, targets[r]]` for every row `r`, or `None` where the
/// tensors are not host `f32` buffers (other backends compose `log_softmax` and `gather`).
///
/// # Shapes
/// - hidden: `[n, width]`, weight: `[vocab, width]`, bias: `[vocab]`, targets: `n` ids below
///   `vocab`
/// - returns `n` log-probabilities
pub fn projected_target_log_probs(
    hidden: &Tensor<2>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
    targets: &[u32],
) -> Option<Vec<f32>> {
    let [n, width] = hidden.dims();
    let [vocab, weight_width] = weight.dims();
    assert_eq!(
        width, weight_width,
        "hidden [n, width] and weight [vocab, width]"
    );
    assert_eq!(targets.len(), n, "one target per row");
    let (hidden, weight, bias) = (
        host_values(hidden)?,
        host_values(weight)?,
        host_values(bias)?,
    );
    let rows_at_once = (MAX_LOGITS / vocab.max(1)).max(1);
    let mut out = Vec::with_capacity(n);
    for (slice, wanted) in hidden
        .chunks(rows_at_once * width)
        .zip(targets.chunks(rows_at_once))
    {
        let mut logits = project(wanted.len(), width, slice, &weight, None);
        let log_probs: Vec<f32> = logits
            .par_chunks_mut(vocab)
            .zip(wanted.par_iter())
            .map(|(row, &target)| {
                let target = target as usize;
                assert!(
                    target < vocab,
                    "target id {target} is outside the vocabulary of {vocab}"
                );
                add_into(row, &bias);
                // Scale 0: the row's gradient (written in place) is not wanted, only the loss.
                -softmax_cross_entropy_row(row, target, 0.0).0
            })
            .collect();
        out.extend(log_probs);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Device, Distribution, Int, TensorData};

    use super::*;
    use crate::testing::assert_close;

    /// Against `log_softmax` and `gather` on the same tensors, with more rows than one slice of
    /// logits holds (so the slicing is crossed) and a bias that matters.
    #[test]
    fn target_log_probs_match_log_softmax_and_gather() {
        let device = Device::flex();
        device.seed(7);
        let (n, width, vocab) = (MAX_LOGITS / 3000 + 5, 8, 3000);
        let hidden = Tensor::<2>::random([n, width], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<2>::random([vocab, width], Distribution::Normal(0.0, 1.0), &device);
        let bias = Tensor::<1>::random([vocab], Distribution::Normal(0.0, 2.0), &device);
        let targets: Vec<u32> = (0..n).map(|r| ((r * 7919) % vocab) as u32).collect();
        let got = projected_target_log_probs(&hidden, &weight, &bias, &targets)
            .expect("flex tensors are host buffers");
        let logits = hidden.matmul(weight.transpose()) + bias.unsqueeze::<2>();
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(targets.iter().map(|&t| t as i64).collect(), [n]),
            &device,
        );
        let want = log_softmax(logits, 1)
            .gather(1, index.reshape([n, 1]))
            .reshape([n])
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(got.len(), n);
        assert_close("target log-probs", &got, &want, 1e-4f32);
    }
}
