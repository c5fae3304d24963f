//! The fused LSTM and GRU as a burn backend extension with hand-written autodiff steps.
//!
//! - [`FusedLstmBackend`] is the extension trait. `#[backend_extension(Flex, NdArray, Autodiff)]`
//!   generates its implementation for burn's run-time [`Dispatch`](burn::backend::Dispatch)
//!   backend: the call is routed by the backend of the input tensors, to the concrete `Flex` or
//!   `NdArray` implementation, or to the `Autodiff<B, C>` implementation when the tensors carry an
//!   autodiff context.
//! - The concrete implementations copy nothing on Flex (its tensors are reference-counted host
//!   buffers that are borrowed as `&[f32]`) and run [`lstm_forward`] / [`gru_forward`].
//! - The `Autodiff<B, C>` implementation registers one graph node with seven parents (input,
//!   initial hidden and cell state, both weights, both biases) and a [`Backward`] step,
//!   [`FusedLstmBackward`], that keeps the forward's work buffers as host vectors and runs
//!   [`lstm_backward`] on them; the GRU likewise with six parents and [`FusedGruBackward`].
// NdArray is deprecated upstream but still a selectable backend of this crate.
#![allow(deprecated)]

use std::borrow::Cow;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, DType, Flex, NdArray, TensorData, TensorMetadata, backend_extension,
};

use super::cpu_kernel::{
    GruSaved, GruWanted, LstmParams, LstmSaved, LstmWanted, SeqDims, gru_backward, gru_forward,
    lstm_backward, lstm_forward,
};

/// A whole recurrent layer over a whole sequence as one backend operation.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait FusedLstmBackend: Backend {
    /// Runs an LSTM layer (PyTorch layout, gates i, f, g, o) over every step.
    ///
    /// # Shapes
    /// - `x`: `[batch, time, input]`; `h0`, `c0`: `[batch, hidden]`
    /// - `w_ih`: `[4·hidden, input]`, `w_hh`: `[4·hidden, hidden]`, `b_ih`, `b_hh`: `[4·hidden]`
    /// - output: `[batch, time + 1, hidden]`, the hidden vectors `h_1..h_T` followed by `c_T`
    fn fused_lstm(
        x: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Runs a GRU layer (PyTorch layout, gates r, z, n) over every step.
    ///
    /// # Shapes
    /// - `x`: `[batch, time, input]`; `h0`: `[batch, hidden]`
    /// - `w_ih`: `[3·hidden, input]`, `w_hh`: `[3·hidden, hidden]`, `b_ih`, `b_hh`: `[3·hidden]`
    /// - output: `[batch, time, hidden]`, the hidden vectors `h_1..h_T`
    fn fused_gru(
        x: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Backends whose float tensors live in host memory and can be read and built as `f32` slices.
pub trait HostTensors: Backend {
    /// The tensor's values in row-major order, borrowed when no copy is needed.
    fn host(tensor: &FloatTensor<Self>) -> Cow<'_, [f32]>;

    /// A tensor owning `values`, with the given shape.
    fn from_host(values: Vec<f32>, shape: &[usize], device: &Self::Device) -> FloatTensor<Self>;
}

impl HostTensors for Flex {
    fn host(tensor: &FlexTensor) -> Cow<'_, [f32]> {
        if tensor.dtype() == DType::F32
            && let Some(values) = tensor.as_slice::<f32>()
        {
            return Cow::Borrowed(values);
        }
        Cow::Owned(values_of(tensor.clone().into_data()))
    }

    fn from_host(values: Vec<f32>, shape: &[usize], _device: &Self::Device) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
    }
}

impl HostTensors for NdArray {
    fn host(tensor: &FloatTensor<Self>) -> Cow<'_, [f32]> {
        let data = burn::tensor::read_sync(Self::float_into_data(tensor.clone()))
            .expect("an NdArray tensor is always readable");
        Cow::Owned(values_of(data))
    }

    fn from_host(values: Vec<f32>, shape: &[usize], device: &Self::Device) -> FloatTensor<Self> {
        Self::float_from_data(TensorData::new(values, shape.to_vec()), device)
    }
}

fn values_of(data: TensorData) -> Vec<f32> {
    data.try_into_vec_as::<f32>()
        .expect("float tensor data converts to f32")
}

fn dims_of<B: Backend>(x: &FloatTensor<B>, w_hh: &FloatTensor<B>) -> SeqDims {
    let (xs, ws) = (x.shape(), w_hh.shape());
    assert_eq!(
        xs.num_dims(),
        3,
        "fused LSTM input must be [batch, time, input]"
    );
    assert_eq!(
        ws.num_dims(),
        2,
        "fused LSTM w_hh must be [4·hidden, hidden]"
    );
    SeqDims {
        batch: xs[0],
        time: xs[1],
        input: xs[2],
        hidden: ws[1],
    }
}

/// Forward on host buffers; returns the packed output and the buffers for the backward pass.
#[allow(clippy::too_many_arguments)]
fn forward_host<B: HostTensors>(
    x: &FloatTensor<B>,
    h0: &FloatTensor<B>,
    c0: &FloatTensor<B>,
    w_ih: &FloatTensor<B>,
    w_hh: &FloatTensor<B>,
    b_ih: &FloatTensor<B>,
    b_hh: &FloatTensor<B>,
) -> (FloatTensor<B>, SeqDims, LstmSaved) {
    let dims = dims_of::<B>(x, w_hh);
    let (w_ih_v, w_hh_v, b_ih_v, b_hh_v) =
        (B::host(w_ih), B::host(w_hh), B::host(b_ih), B::host(b_hh));
    let params = LstmParams {
        w_ih: &w_ih_v,
        w_hh: &w_hh_v,
        b_ih: &b_ih_v,
        b_hh: &b_hh_v,
    };
    let out = lstm_forward(dims, &B::host(x), &B::host(h0), &B::host(c0), params);
    let shape = [dims.batch, dims.time + 1, dims.hidden];
    let packed = B::from_host(out.packed, &shape, &x.device());
    (packed, dims, out.saved)
}

/// GRU forward on host buffers; returns the output and the buffers for the backward pass.
fn gru_forward_host<B: HostTensors>(
    x: &FloatTensor<B>,
    h0: &FloatTensor<B>,
    w_ih: &FloatTensor<B>,
    w_hh: &FloatTensor<B>,
    b_ih: &FloatTensor<B>,
    b_hh: &FloatTensor<B>,
) -> (FloatTensor<B>, SeqDims, GruSaved) {
    let dims = dims_of::<B>(x, w_hh);
    let (w_ih_v, w_hh_v) = (B::host(w_ih), B::host(w_hh));
    let (b_ih_v, b_hh_v) = (B::host(b_ih), B::host(b_hh));
    let params = LstmParams {
        w_ih: &w_ih_v,
        w_hh: &w_hh_v,
        b_ih: &b_ih_v,
        b_hh: &b_hh_v,
    };
    let out = gru_forward(dims, &B::host(x), &B::host(h0), params);
    let shape = [dims.batch, dims.time, dims.hidden];
    let output = B::from_host(out.output, &shape, &x.device());
    (output, dims, out.saved)
}

impl FusedLstmBackend for Flex {
    fn fused_lstm(
        x: FlexTensor,
        h0: FlexTensor,
        c0: FlexTensor,
        w_ih: FlexTensor,
        w_hh: FlexTensor,
        b_ih: FlexTensor,
        b_hh: FlexTensor,
    ) -> FlexTensor {
        forward_host::<Self>(&x, &h0, &c0, &w_ih, &w_hh, &b_ih, &b_hh).0
    }

    fn fused_gru(
        x: FlexTensor,
        h0: FlexTensor,
        w_ih: FlexTensor,
        w_hh: FlexTensor,
        b_ih: FlexTensor,
        b_hh: FlexTensor,
    ) -> FlexTensor {
        gru_forward_host::<Self>(&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh).0
    }
}

impl FusedLstmBackend for NdArray {
    fn fused_lstm(
        x: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        forward_host::<Self>(&x, &h0, &c0, &w_ih, &w_hh, &b_ih, &b_hh).0
    }

    fn fused_gru(
        x: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        gru_forward_host::<Self>(&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh).0
    }
}

/// The backward step of [`FusedLstmBackend::fused_lstm`] under autodiff.
#[derive(Debug)]
pub struct FusedLstmBackward;

/// What [`FusedLstmBackward`] keeps from the forward pass.
///
/// The tensors are the forward's own inputs and output (reference-counted on Flex, so keeping them
/// costs no copy); the biases are not needed.
pub struct FusedLstmState<B: Backend> {
    dims: SeqDims,
    x: FloatTensor<B>,
    h0: FloatTensor<B>,
    c0: FloatTensor<B>,
    w_ih: FloatTensor<B>,
    w_hh: FloatTensor<B>,
    packed: FloatTensor<B>,
    saved: LstmSaved,
}

impl<B: Backend> Clone for FusedLstmState<B> {
    fn clone(&self) -> Self {
        FusedLstmState {
            dims: self.dims,
            x: self.x.clone(),
            h0: self.h0.clone(),
            c0: self.c0.clone(),
            w_ih: self.w_ih.clone(),
            w_hh: self.w_hh.clone(),
            packed: self.packed.clone(),
            saved: self.saved.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for FusedLstmState<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedLstmState")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl<B: HostTensors> Backward<B, 7> for FusedLstmBackward {
    type State = FusedLstmState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 7>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let [n_x, n_h0, n_c0, n_w_ih, n_w_hh, n_b_ih, n_b_hh] =
            ops.parents.map(|node| node.map(|node| node.id));
        let wanted = LstmWanted {
            x: n_x.is_some(),
            h0: n_h0.is_some(),
            c0: n_c0.is_some(),
            w_ih: n_w_ih.is_some(),
            w_hh: n_w_hh.is_some(),
            bias: n_b_ih.is_some() || n_b_hh.is_some(),
        };
        let s = ops.state;
        let d = s.dims;
        let device = grad.device();
        let out = lstm_backward(
            d,
            &B::host(&s.x),
            &B::host(&s.h0),
            &B::host(&s.c0),
            &B::host(&s.w_ih),
            &B::host(&s.w_hh),
            &B::host(&s.packed),
            s.saved,
            &B::host(&grad),
            wanted,
        );
        let (h, g4) = (d.hidden, 4 * d.hidden);
        let mut register = |node: Option<NodeId>, values: Option<Vec<f32>>, shape: &[usize]| {
            if let (Some(node), Some(values)) = (node, values) {
                grads.register::<B>(node, B::from_host(values, shape, &device));
            }
        };
        register(n_x, out.x, &[d.batch, d.time, d.input]);
        register(n_h0, out.h0, &[d.batch, h]);
        register(n_c0, out.c0, &[d.batch, h]);
        register(n_w_ih, out.w_ih, &[g4, d.input]);
        register(n_w_hh, out.w_hh, &[g4, h]);
        // Both biases are added to the same pre-activations: they share one gradient.
        let (db_ih, db_hh) = match n_b_hh {
            Some(_) => (out.bias.clone(), out.bias),
            None => (out.bias, None),
        };
        register(n_b_ih, db_ih, &[g4]);
        register(n_b_hh, db_hh, &[g4]);
    }
}

/// The backward step of [`FusedLstmBackend::fused_gru`] under autodiff.
#[derive(Debug)]
pub struct FusedGruBackward;

/// What [`FusedGruBackward`] keeps from the forward pass.
pub struct FusedGruState<B: Backend> {
    dims: SeqDims,
    x: FloatTensor<B>,
    h0: FloatTensor<B>,
    w_ih: FloatTensor<B>,
    w_hh: FloatTensor<B>,
    output: FloatTensor<B>,
    saved: GruSaved,
}

impl<B: Backend> Clone for FusedGruState<B> {
    fn clone(&self) -> Self {
        FusedGruState {
            dims: self.dims,
            x: self.x.clone(),
            h0: self.h0.clone(),
            w_ih: self.w_ih.clone(),
            w_hh: self.w_hh.clone(),
            output: self.output.clone(),
            saved: self.saved.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for FusedGruState<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedGruState")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl<B: HostTensors> Backward<B, 6> for FusedGruBackward {
    type State = FusedGruState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 6>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let [n_x, n_h0, n_w_ih, n_w_hh, n_b_ih, n_b_hh] =
            ops.parents.map(|node| node.map(|node| node.id));
        let wanted = GruWanted {
            x: n_x.is_some(),
            h0: n_h0.is_some(),
            w_ih: n_w_ih.is_some(),
            w_hh: n_w_hh.is_some(),
            b_ih: n_b_ih.is_some(),
            b_hh: n_b_hh.is_some(),
        };
        let s = ops.state;
        let d = s.dims;
        let device = grad.device();
        let out = gru_backward(
            d,
            &B::host(&s.x),
            &B::host(&s.h0),
            &B::host(&s.w_ih),
            &B::host(&s.w_hh),
            &B::host(&s.output),
            s.saved,
            &B::host(&grad),
            wanted,
        );
        let (h, g3) = (d.hidden, 3 * d.hidden);
        let mut register = |node: Option<NodeId>, values: Option<Vec<f32>>, shape: &[usize]| {
            if let (Some(node), Some(values)) = (node, values) {
                grads.register::<B>(node, B::from_host(values, shape, &device));
            }
        };
        register(n_x, out.x, &[d.batch, d.time, d.input]);
        register(n_h0, out.h0, &[d.batch, h]);
        register(n_w_ih, out.w_ih, &[g3, d.input]);
        register(n_w_hh, out.w_hh, &[g3, h]);
        register(n_b_ih, out.b_ih, &[g3]);
        register(n_b_hh, out.b_hh, &[g3]);
    }
}

impl<B, C> FusedLstmBackend for Autodiff<B, C>
where
    B: FusedLstmBackend + HostTensors,
    C: CheckpointStrategy,
{
    fn fused_lstm(
        x: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            x.node(),
            h0.node(),
            c0.node(),
            w_ih.node(),
            w_hh.node(),
            b_ih.node(),
            b_hh.node(),
        ];
        // Compute bound: the output and the work buffers are kept, never recomputed.
        match FusedLstmBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, h0, c0) = (x.into_primitive(), h0.into_primitive(), c0.into_primitive());
                let (w_ih, w_hh) = (w_ih.into_primitive(), w_hh.into_primitive());
                let (b_ih, b_hh) = (b_ih.into_primitive(), b_hh.into_primitive());
                let (packed, dims, saved) =
                    forward_host::<B>(&x, &h0, &c0, &w_ih, &w_hh, &b_ih, &b_hh);
                let state = FusedLstmState {
                    dims,
                    x,
                    h0,
                    c0,
                    w_ih,
                    w_hh,
                    packed: packed.clone(),
                    saved,
                };
                prep.finish(state, packed)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_lstm(
                x.into_primitive(),
                h0.into_primitive(),
                c0.into_primitive(),
                w_ih.into_primitive(),
                w_hh.into_primitive(),
                b_ih.into_primitive(),
                b_hh.into_primitive(),
            )),
        }
    }

    fn fused_gru(
        x: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            x.node(),
            h0.node(),
            w_ih.node(),
            w_hh.node(),
            b_ih.node(),
            b_hh.node(),
        ];
        match FusedGruBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, h0) = (x.into_primitive(), h0.into_primitive());
                let (w_ih, w_hh) = (w_ih.into_primitive(), w_hh.into_primitive());
                let (b_ih, b_hh) = (b_ih.into_primitive(), b_hh.into_primitive());
                let (output, dims, saved) =
                    gru_forward_host::<B>(&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh);
                let state = FusedGruState {
                    dims,
                    x,
                    h0,
                    w_ih,
                    w_hh,
                    output: output.clone(),
                    saved,
                };
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gru(
                x.into_primitive(),
                h0.into_primitive(),
                w_ih.into_primitive(),
                w_hh.into_primitive(),
                b_ih.into_primitive(),
                b_hh.into_primitive(),
            )),
        }
    }
}
