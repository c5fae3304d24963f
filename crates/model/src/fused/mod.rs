//! Fused recurrent layers for the CPU backends.
//!
//! The composed [`RecurrentLayer`](crate::RecurrentLayer) builds one autodiff node per tensor
//! operation and step (a few hundred per layer and batch). On the CPU backends (Flex and NdArray,
//! with or without autodiff) an LSTM layer can instead run as **one** backend operation with a
//! hand-written backward pass:
//!
//! - forward: one `[batch·time, input] × [input, 4·hidden]` GEMM for the input projection of all
//!   steps, then per step one `[batch, hidden] × [hidden, 4·hidden]` GEMM written in place into
//!   that step's pre-activations, and the gate arithmetic in one vectorised pass per `4·hidden`
//!   row ([`cpu_kernel`]);
//! - backward: backpropagation through time with one `[batch, 4·hidden] × [4·hidden, hidden]` GEMM
//!   per step, then the weight gradients as two large GEMMs and the input gradient as a third.
//!
//! The GRU is the same with `3·hidden` gate rows and the recurrent projection kept apart from the
//! input projection (PyTorch's candidate gate multiplies `r` into `W_hn·h + b_hn` only).
//!
//! The operation is registered with burn through its backend-extension mechanism
//! ([`op::FusedLstmBackend`]); other backends (wgpu) keep the composed version.
//!
//! The fused path is on by default; `LSTM_LM_FUSED=0` in the environment or
//! [`set_enabled(false)`](set_enabled) turns it off (for comparisons and benchmarks).

pub mod cpu_kernel;
mod host_lm;
pub mod loss_op;
mod math;
pub mod op;
mod proposal;
mod target_log_probs;

use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::{DType, Device, Int, Tensor};

pub use host_lm::{HostLanguageModel, HostState};
use loss_op::FusedLossBackend;
pub use math::exp_weights;
#[cfg(target_arch = "x86_64")]
pub(crate) use math::has_avx2_fma;
use op::FusedLstmBackend;
pub use proposal::proposal_is_fast;
pub use target_log_probs::projected_target_log_probs;

/// 0: not decided yet (read `LSTM_LM_FUSED` on first use), 1: on, 2: off.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Whether the fused kernels are used where they apply.
///
/// On unless `LSTM_LM_FUSED` is `0`, `false` or `off`, or [`set_enabled`] said otherwise.
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let off = std::env::var("LSTM_LM_FUSED")
                .map(|v| matches!(v.trim(), "0" | "false" | "off"))
                .unwrap_or(false);
            // Keep an explicit `set_enabled` that raced with this first read.
            let _ = ENABLED.compare_exchange(
                0,
                if off { 2 } else { 1 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            ENABLED.load(Ordering::Relaxed) == 1
        }
    }
}

/// Turns the fused kernels on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether `device` runs on a backend the fused kernels support (Flex or NdArray, with or without
/// autodiff).
#[allow(deprecated)]
pub fn supports(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_) | DispatchDevice::NdArray(_)
    )
}

/// Whether [`lstm`] should run for this input: the fused path is [`enabled`], the input is an
/// `f32` tensor on a [supported](supports) device, and the sequence has at least one step.
pub fn applies(input: &Tensor<3>) -> bool {
    let [_, time, _] = input.dims();
    time > 0 && input.dtype() == DType::F32 && enabled() && supports(&input.device())
}

/// Runs an LSTM layer over a whole sequence as one operation.
///
/// Same contract as the composed LSTM of [`RecurrentLayer`](crate::RecurrentLayer): PyTorch's
/// weight layout (gates i, f, g, o), `cell` `None` meaning zeros. Call it only where
/// [`applies`] is true; on other backends the extension panics.
///
/// # Shapes
/// - input: `[batch, time, input]`, `hidden`, `cell`: `[batch, hidden]`
/// - `w_ih`: `[4·hidden, input]`, `w_hh`: `[4·hidden, hidden]`, `b_ih`, `b_hh`: `[4·hidden]`
/// - returns the hidden vector after every step `[batch, time, hidden]`, and the final hidden
///   and cell states `[batch, hidden]`
pub fn lstm(
    input: Tensor<3>,
    hidden: Tensor<2>,
    cell: Option<Tensor<2>>,
    w_ih: Tensor<2>,
    w_hh: Tensor<2>,
    b_ih: Tensor<1>,
    b_hh: Tensor<1>,
) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
    let [batch, time, _] = input.dims();
    let [_, width] = w_hh.dims();
    let cell = cell.unwrap_or_else(|| Tensor::zeros_like(&hidden));
    let packed = Tensor::<3>::from_dispatch(<Dispatch as FusedLstmBackend>::fused_lstm(
        input.into_dispatch(),
        hidden.into_dispatch(),
        cell.into_dispatch(),
        w_ih.into_dispatch(),
        w_hh.into_dispatch(),
        b_ih.into_dispatch(),
        b_hh.into_dispatch(),
    ));
    // `packed` is `[batch, time + 1, hidden]`: h_1..h_T, then c_T.
    let output = packed.clone().narrow(1, 0, time);
    let last_hidden = packed
        .clone()
        .narrow(1, time - 1, 1)
        .reshape([batch, width]);
    let last_cell = packed.narrow(1, time, 1).reshape([batch, width]);
    (output, last_hidden, last_cell)
}

/// Runs a GRU layer over a whole sequence as one operation.
///
/// Same contract as the composed GRU of [`RecurrentLayer`](crate::RecurrentLayer): PyTorch's
/// weight layout (gates r, z, n). Call it only where [`applies`] is true.
///
/// # Shapes
/// - input: `[batch, time, input]`, `hidden`: `[batch, hidden]`
/// - `w_ih`: `[3·hidden, input]`, `w_hh`: `[3·hidden, hidden]`, `b_ih`, `b_hh`: `[3·hidden]`
/// - returns the hidden vector after every step `[batch, time, hidden]` and the final hidden state
///   `[batch, hidden]`
pub fn gru(
    input: Tensor<3>,
    hidden: Tensor<2>,
    w_ih: Tensor<2>,
    w_hh: Tensor<2>,
    b_ih: Tensor<1>,
    b_hh: Tensor<1>,
) -> (Tensor<3>, Tensor<2>) {
    let [batch, time, _] = input.dims();
    let [_, width] = w_hh.dims();
    let output = Tensor::<3>::from_dispatch(<Dispatch as FusedLstmBackend>::fused_gru(
        input.into_dispatch(),
        hidden.into_dispatch(),
        w_ih.into_dispatch(),
        w_hh.into_dispatch(),
        b_ih.into_dispatch(),
        b_hh.into_dispatch(),
    ));
    let last_hidden = output
        .clone()
        .narrow(1, time - 1, 1)
        .reshape([batch, width]);
    (output, last_hidden)
}

/// Whether [`cross_entropy`] should run for these logits: the fused path is [`enabled`] and the
/// logits are `f32` on a [supported](supports) device.
pub fn cross_entropy_applies(logits: &Tensor<2>) -> bool {
    logits.dtype() == DType::F32 && enabled() && supports(&logits.device())
}

/// Mean softmax cross-entropy of `logits` against sparse `targets` as one operation, rows whose
/// target is `ignore` left out; also returns how many counted rows have their target as arg-max.
///
/// Same value and gradient as `-log_softmax(logits).gather(targets).mean()` over the counted
/// rows. Call it only where [`cross_entropy_applies`] is true.
///
/// # Shapes
/// - logits: `[n, vocab]`, targets: `[n]`
/// - returns the loss `[1]` and the correct count `[1]` (no gradient)
pub fn cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    ignore: Option<u32>,
) -> (Tensor<1>, Tensor<1>) {
    let weights = row_weights(&targets, ignore);
    let packed = Tensor::<1>::from_dispatch(<Dispatch as FusedLossBackend>::fused_cross_entropy(
        logits.into_dispatch(),
        targets.float().into_dispatch(),
        weights.into_dispatch(),
    ));
    split_loss(packed)
}

/// The output projection `hidden · weightᵀ + bias` and [`cross_entropy`] as one operation: the
/// `[n, vocab]` logits exist only inside it (one buffer, turned into their own gradient), and the
/// backward pass is two GEMMs and a column sum. Call it only where [`cross_entropy_applies`] is
/// true for `hidden`.
///
/// # Shapes
/// - hidden: `[n, width]`, weight: `[vocab, width]`, bias: `[vocab]`, targets: `[n]`
/// - returns the loss `[1]` and the correct count `[1]` (no gradient)
pub fn projected_cross_entropy(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    targets: Tensor<1, Int>,
    ignore: Option<u32>,
) -> (Tensor<1>, Tensor<1>) {
    let weights = row_weights(&targets, ignore);
    let packed = Tensor::<1>::from_dispatch(
        <Dispatch as FusedLossBackend>::fused_projected_cross_entropy(
            hidden.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            targets.float().into_dispatch(),
            weights.into_dispatch(),
        ),
    );
    split_loss(packed)
}

/// The values of an `f32` tensor on the Flex backend, borrowed from its buffer (no copy).
///
/// Made by [`host_values`]; keeps the buffer alive while it is read.
pub struct HostValues {
    tensor: burn::backend::flex::FlexTensor,
}

impl std::ops::Deref for HostValues {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        self.tensor
            .as_slice::<f32>()
            .expect("checked contiguous f32 when made")
    }
}

/// Borrows the values of `tensor` when it is a contiguous `f32` tensor on the Flex backend (with
/// or without autodiff); `None` elsewhere, where callers use tensor operations instead.
pub fn host_values<const D: usize>(tensor: &Tensor<D>) -> Option<HostValues> {
    use burn::backend::{BackendTensor, DispatchTensorKind};
    let mut kind = tensor.clone().into_dispatch().kind;
    while let DispatchTensorKind::Autodiff(inner) = kind {
        kind = *inner;
    }
    match kind {
        DispatchTensorKind::Flex(BackendTensor::Float(t)) if t.as_slice::<f32>().is_some() => {
            Some(HostValues { tensor: t })
        }
        _ => None,
    }
}

/// The values of a contiguous `f32` Flex tensor (without autodiff) taken by value and writable in
/// place: nothing else shares its buffer. See [`owned_host_values`].
pub struct OwnedHostValues {
    tensor: burn::backend::flex::FlexTensor,
    autodiff: burn::backend::DispatchAutodiffContext,
}

impl OwnedHostValues {
    /// The values, writable.
    pub fn values_mut(&mut self) -> &mut [f32] {
        let (start, end) = self
            .tensor
            .layout()
            .contiguous_offsets()
            .expect("checked contiguous when made");
        &mut self
            .tensor
            .try_storage_mut::<f32>()
            .expect("checked unique f32 when made")[start..end]
    }

    /// The tensor again, holding what was written.
    pub fn into_tensor<const D: usize>(self) -> Tensor<D> {
        use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
        Tensor::from_dispatch(DispatchTensor {
            kind: DispatchTensorKind::Flex(BackendTensor::Float(self.tensor)),
            autodiff: self.autodiff,
        })
    }
}

/// Takes `tensor` for writing in place when it is a contiguous `f32` tensor on the Flex backend
/// (without autodiff) whose buffer nothing else shares; gives it back untouched otherwise.
/// Optimizers use it to update parameters and their state without fresh buffers.
// The error gives the caller's own tensor back, as large as the tensor type is.
#[allow(clippy::result_large_err)]
pub fn owned_host_values<const D: usize>(tensor: Tensor<D>) -> Result<OwnedHostValues, Tensor<D>> {
    use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
    let DispatchTensor { kind, autodiff } = tensor.into_dispatch();
    match kind {
        DispatchTensorKind::Flex(BackendTensor::Float(mut t)) if t.as_slice::<f32>().is_some() => {
            // `try_storage_mut` answers for the buffer's every owner, weak ones included.
            if t.try_storage_mut::<f32>().is_some() {
                Ok(OwnedHostValues {
                    tensor: t,
                    autodiff,
                })
            } else {
                let kind = DispatchTensorKind::Flex(BackendTensor::Float(t));
                Err(Tensor::from_dispatch(DispatchTensor { kind, autodiff }))
            }
        }
        kind => Err(Tensor::from_dispatch(DispatchTensor { kind, autodiff })),
    }
}

/// 1 for every row that counts, 0 for rows whose target is `ignore`.
fn row_weights(targets: &Tensor<1, Int>, ignore: Option<u32>) -> Tensor<1> {
    match ignore {
        Some(pad) => targets.clone().not_equal_elem(pad as i64).float(),
        None => Tensor::ones(targets.dims(), &targets.device()),
    }
}

/// The loss operations' `[2]` output as the loss (with its gradient) and the detached count.
fn split_loss(packed: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
    let loss = packed.clone().narrow(0, 0, 1);
    let correct = packed.narrow(0, 1, 1).detach();
    (loss, correct)
}
