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

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, NdArray, TensorMetadata, backend_extension};
use rayon::prelude::*;

use super::cpu_kernel::{add_into, project, project_backward};
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

    /// The output projection and the cross-entropy together: logits `hidden · weightᵀ + bias`
    /// are computed, turned into their gradient in place and never leave the operation.
    ///
    /// # Shapes
    /// - `hidden`: `[n, width]`, `weight`: `[vocab, width]`, `bias`: `[vocab]`
    /// - `targets`, `weights`, output: as [`fused_cross_entropy`](Self::fused_cross_entropy)
    fn fused_projected_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Projection and cross-entropy on host buffers: the `[2]` output and the logits' gradient.
fn projected_host<B: HostTensors>(
    hidden: &FloatTensor<B>,
    weight: &FloatTensor<B>,
    bias: &FloatTensor<B>,
    targets: &FloatTensor<B>,
    weights: &FloatTensor<B>,
) -> (FloatTensor<B>, Vec<f32>) {
    let (hs, ws) = (hidden.shape(), weight.shape());
    assert!(
        hs.num_dims() == 2 && ws.num_dims() == 2 && hs[1] == ws[1],
        "projected cross-entropy: hidden [n, width] and weight [vocab, width]"
    );
    let (n, width, vocab) = (hs[0], hs[1], ws[0]);
    let mut rows = project(n, width, &B::host(hidden), &B::host(weight), None);
    let bias = B::host(bias);
    assert_eq!(bias.len(), vocab, "projected cross-entropy: bias [vocab]");
    let (loss, correct) = cross_entropy_in_place(
        &mut rows,
        vocab,
        Some(&bias),
        &B::host(targets),
        &B::host(weights),
    );
    let out = B::from_host(vec![loss, correct], &[2], &hidden.device());
    (out, rows)
}

/// Cross-entropy over `rows` (`[n, vocab]` logits, `bias` still to be added to every row when
/// given), replacing them in place by the gradient of the loss; returns the loss and the correct
/// count.
fn cross_entropy_in_place(
    rows: &mut [f32],
    vocab: usize,
    bias: Option<&[f32]>,
    targets: &[f32],
    weights: &[f32],
) -> (f32, f32) {
    let n = targets.len();
    assert_eq!(rows.len(), n * vocab, "logits must be [n, vocab]");
    assert_eq!(weights.len(), n, "one weight per row");
    let count = weights.iter().sum::<f32>().max(1.0);
    let (total, correct) = rows
        .par_chunks_mut(vocab)
        .enumerate()
        .map(|(r, row)| {
            let target = targets[r] as usize;
            assert!(
                target < vocab,
                "target id {target} is outside the vocabulary of {vocab}"
            );
            if let Some(bias) = bias {
                add_into(row, bias);
            }
            let w = weights[r];
            let (loss, arg_max) = softmax_cross_entropy_row(row, target, w / count);
            let hit = if arg_max == target { w } else { 0.0 };
            ((w * loss) as f64, hit as f64)
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    ((total / count as f64) as f32, correct as f32)
}

/// The loss, the correct count, and the gradient of the loss for the logits.
fn cross_entropy_host(
    logits: &[f32],
    vocab: usize,
    targets: &[f32],
    weights: &[f32],
) -> (f32, f32, Vec<f32>) {
    let mut grad = logits.to_vec();
    let (loss, correct) = cross_entropy_in_place(&mut grad, vocab, None, targets, weights);
    (loss, correct, grad)
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
    );
    let out = B::from_host(vec![loss, correct], &[2], &logits.device());
    (out, want_grad.then_some(grad))
}

impl FusedLossBackend for Flex {
    fn fused_cross_entropy(
        logits: FlexTensor,
        targets: FlexTensor,
        weights: FlexTensor,
    ) -> FlexTensor {
        forward_host::<Self>(&logits, &targets, &weights, false).0
    }

    fn fused_projected_cross_entropy(
        hidden: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        targets: FlexTensor,
        weights: FlexTensor,
    ) -> FlexTensor {
        projected_host::<Self>(&hidden, &weight, &bias, &targets, &weights).0
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

    fn fused_projected_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        projected_host::<Self>(&hidden, &weight, &bias, &targets, &weights).0
    }
}

/// The backward step of [`FusedLossBackend::fused_projected_cross_entropy`] under autodiff.
#[derive(Debug)]
pub struct FusedProjectedBackward;

/// What [`FusedProjectedBackward`] keeps: the inputs of the projection and the logits' gradient.
pub struct FusedProjectedState<B: Backend> {
    hidden: FloatTensor<B>,
    weight: FloatTensor<B>,
    d_logits: Arc<Vec<f32>>,
}

impl<B: Backend> Clone for FusedProjectedState<B> {
    fn clone(&self) -> Self {
        FusedProjectedState {
            hidden: self.hidden.clone(),
            weight: self.weight.clone(),
            d_logits: self.d_logits.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for FusedProjectedState<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedProjectedState")
            .finish_non_exhaustive()
    }
}

impl<B: HostTensors> Backward<B, 3> for FusedProjectedBackward {
    type State = FusedProjectedState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let upstream = grads.consume::<B>(&ops.node);
        let [n_hidden, n_weight, n_bias] = ops.parents.map(|node| node.map(|node| node.id));
        let device = upstream.device();
        let g = B::host(&upstream)[0];
        let s = ops.state;
        let mut d_logits = Arc::try_unwrap(s.d_logits).unwrap_or_else(|shared| (*shared).clone());
        if g != 1.0 {
            d_logits.par_iter_mut().for_each(|v| *v *= g);
        }
        let (hs, ws) = (s.hidden.shape(), s.weight.shape());
        let (n, width, vocab) = (hs[0], hs[1], ws[0]);
        let d = project_backward(
            n,
            width,
            &B::host(&s.hidden),
            &B::host(&s.weight),
            &d_logits,
            [n_hidden.is_some(), n_weight.is_some(), n_bias.is_some()],
        );
        let mut register = |node: Option<NodeId>, values: Option<Vec<f32>>, shape: &[usize]| {
            if let (Some(node), Some(values)) = (node, values) {
                grads.register::<B>(node, B::from_host(values, shape, &device));
            }
        };
        register(n_hidden, d.hidden, &[n, width]);
        register(n_weight, d.weight, &[vocab, width]);
        register(n_bias, d.bias, &[vocab]);
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

    fn fused_projected_cross_entropy(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match FusedProjectedBackward
            .prepare::<C>([hidden.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (hidden, weight) = (hidden.into_primitive(), weight.into_primitive());
                let (out, d_logits) = projected_host::<B>(
                    &hidden,
                    &weight,
                    &bias.into_primitive(),
                    &targets.into_primitive(),
                    &weights.into_primitive(),
                );
                let state = FusedProjectedState {
                    hidden,
                    weight,
                    d_logits: Arc::new(d_logits),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_projected_cross_entropy(
                hidden.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                targets.into_primitive(),
                weights.into_primitive(),
            )),
        }
    }
}
