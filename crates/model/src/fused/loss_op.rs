//! Softmax cross-entropy over the vocabulary as one backend operation.
//!
//! Composed, the loss is `log_softmax` (four passes over the `[n, vocab]` logits), a gather, a
//! mean, and a backward pass that rebuilds the softmax; at a vocabulary of 10,000 that is the
//! largest piece of a training step after the matrix products. Fused, one pass per row computes
//! the maximum, the exponentials, the loss, the arg-max (for accuracy) and the gradient
//! `scale · (softmax − onehot)`, which the backward step only hands on (multiplied by the
//! incoming gradient when that is not 1).
// NdArray is deprecated upstream but still a selectable backend of this crate.
#![allow(deprecated)]

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, NdArray, TensorMetadata, backend_extension};
use rayon::prelude::*;

use super::math::softmax_cross_entropy_row;
use super::op::HostTensors;

/// Softmax cross-entropy as one backend operation.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait FusedLossBackend: Backend {
    /// Weighted mean cross-entropy of `logits` against `targets`.
    ///
    /// # Shapes
    /// - `logits`: `[n, vocab]`
    /// - `targets`: `[n]`, the target ids as floats (exact below 2²⁴)
    /// - `weights`: `[n]`, each row's weight (1 counts, 0 ignores padding)
    /// - output: `[2]`: the loss `Σ wᵢ·lossᵢ / max(Σ wᵢ, 1)`, then the weighted number of rows
    ///   whose arg-max is the target (carries no gradient)
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The loss, the correct count, and (when asked) the gradient of the loss for the logits.
fn cross_entropy_host(
    logits: &[f32],
    vocab: usize,
    targets: &[f32],
    weights: &[f32],
    want_grad: bool,
) -> (f32, f32, Option<Vec<f32>>) {
    let n = targets.len();
    assert_eq!(logits.len(), n * vocab, "logits must be [n, vocab]");
    assert_eq!(weights.len(), n, "one weight per row");
    let count = weights.iter().sum::<f32>().max(1.0);
    let row = |r: usize, x: &[f32], grad: &mut [f32]| -> (f64, f64) {
        let target = targets[r] as usize;
        assert!(
            target < vocab,
            "target id {target} is outside the vocabulary of {vocab}"
        );
        let w = weights[r];
        let (loss, arg_max) = softmax_cross_entropy_row(x, target, w / count, grad);
        let hit = if arg_max == target { w } else { 0.0 };
        ((w * loss) as f64, hit as f64)
    };
    let sum = |a: (f64, f64), b: (f64, f64)| (a.0 + b.0, a.1 + b.1);
    let (total, correct, grad) = if want_grad {
        let mut grad = vec![0.0f32; n * vocab];
        let (total, correct) = grad
            .par_chunks_mut(vocab)
            .zip(logits.par_chunks(vocab))
            .enumerate()
            .map(|(r, (g, x))| row(r, x, g))
            .reduce(|| (0.0, 0.0), sum);
        (total, correct, Some(grad))
    } else {
        let (total, correct) = logits
            .par_chunks(vocab)
            .enumerate()
            .map_init(|| vec![0.0f32; vocab], |scratch, (r, x)| row(r, x, scratch))
            .reduce(|| (0.0, 0.0), sum);
        (total, correct, None)
    };
    ((total / count as f64) as f32, correct as f32, grad)
}

fn forward_host<B: HostTensors>(
    logits: &FloatTensor<B>,
    targets: &FloatTensor<B>,
    weights: &FloatTensor<B>,
    want_grad: bool,
) -> (FloatTensor<B>, Option<Vec<f32>>) {
    let shape = logits.shape();
    assert_eq!(
        shape.num_dims(),
        2,
        "fused cross-entropy logits must be [n, vocab]"
    );
    let vocab = shape[1];
    let (loss, correct, grad) = cross_entropy_host(
        &B::host(logits),
        vocab,
        &B::host(targets),
        &B::host(weights),
        want_grad,
    );
    let out = B::from_host(vec![loss, correct], &[2], &logits.device());
    (out, grad)
}

impl FusedLossBackend for Flex {
    fn fused_cross_entropy(
        logits: FlexTensor,
        targets: FlexTensor,
        weights: FlexTensor,
    ) -> FlexTensor {
        forward_host::<Self>(&logits, &targets, &weights, false).0
    }
}

impl FusedLossBackend for NdArray {
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        forward_host::<Self>(&logits, &targets, &weights, false).0
    }
}

/// The backward step of [`FusedLossBackend::fused_cross_entropy`] under autodiff.
#[derive(Debug)]
pub struct FusedCrossEntropyBackward;

/// The gradient computed by the forward pass, and the logits' shape.
#[derive(Clone, Debug)]
pub struct FusedCrossEntropyState {
    grad: Arc<Vec<f32>>,
    shape: [usize; 2],
}

impl<B: HostTensors> Backward<B, 1> for FusedCrossEntropyBackward {
    type State = FusedCrossEntropyState;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let upstream = grads.consume::<B>(&ops.node);
        let [parent] = ops.parents;
        let Some(parent) = parent else { return };
        let device = upstream.device();
        // Only the loss (element 0) carries a gradient; the correct count is a statistic.
        let g = B::host(&upstream)[0];
        let state = ops.state;
        let mut grad = Arc::try_unwrap(state.grad).unwrap_or_else(|shared| (*shared).clone());
        if g != 1.0 {
            grad.par_iter_mut().for_each(|v| *v *= g);
        }
        grads.register::<B>(parent.id, B::from_host(grad, &state.shape, &device));
    }
}

impl<B, C> FusedLossBackend for Autodiff<B, C>
where
    B: FusedLossBackend + HostTensors,
    C: CheckpointStrategy,
{
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match FusedCrossEntropyBackward
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let logits = logits.into_primitive();
                let shape = logits.shape();
                let (out, grad) = forward_host::<B>(
                    &logits,
                    &targets.into_primitive(),
                    &weights.into_primitive(),
                    true,
                );
                let state = FusedCrossEntropyState {
                    grad: Arc::new(grad.expect("the gradient was asked for")),
                    shape: [shape[0], shape[1]],
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_cross_entropy(
                logits.into_primitive(),
                targets.into_primitive(),
                weights.into_primitive(),
            )),
        }
    }
}
