use burn::module::{Module, Param};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Distribution, Tensor};

use crate::{CellKind, LayerState};

/// One recurrent layer with PyTorch's weight layout, so weights map one to one.
///
/// `weight_ih` is `[gates * hidden, input]`, `weight_hh` is `[gates * hidden, hidden]`, the biases
/// `[gates * hidden]`; gate blocks are stacked in PyTorch's order: i, f, g, o for LSTM and r, z, n
/// for GRU.
///
/// The forward pass projects the inputs of all timesteps with one matrix product, then does one
/// `[batch, hidden] × [hidden, gates·hidden]` product per step followed by the gate arithmetic.
#[derive(Module, Debug)]
pub struct RecurrentLayer {
    /// Input-to-hidden weights, `[gates·hidden, input]` (PyTorch `weight_ih_l{k}`).
    pub weight_ih: Param<Tensor<2>>,
    /// Hidden-to-hidden weights, `[gates·hidden, hidden]` (PyTorch `weight_hh_l{k}`).
    pub weight_hh: Param<Tensor<2>>,
    /// Input bias, `[gates·hidden]` (PyTorch `bias_ih_l{k}`).
    pub bias_ih: Param<Tensor<1>>,
    /// Hidden bias, `[gates·hidden]` (PyTorch `bias_hh_l{k}`).
    pub bias_hh: Param<Tensor<1>>,
    /// The cell kind.
    #[module(skip)]
    pub cell: CellKind,
    /// Hidden width.
    #[module(skip)]
    pub hidden_size: usize,
}

impl RecurrentLayer {
    /// A layer with PyTorch's default initialisation: every weight and bias uniform in ±1/√hidden.
    pub fn new(cell: CellKind, input_size: usize, hidden_size: usize, device: &Device) -> Self {
        let k = 1.0 / (hidden_size as f64).sqrt();
        let g = cell.gates() * hidden_size;
        let uniform = Distribution::Uniform(-k, k);
        RecurrentLayer {
            weight_ih: Param::from_tensor(Tensor::random([g, input_size], uniform, device)),
            weight_hh: Param::from_tensor(Tensor::random([g, hidden_size], uniform, device)),
            bias_ih: Param::from_tensor(Tensor::random([g], uniform, device)),
            bias_hh: Param::from_tensor(Tensor::random([g], uniform, device)),
            cell,
            hidden_size,
        }
    }

    /// Runs the layer over a whole sequence.
    ///
    /// # Shapes
    /// - input: `[batch, time, input]`
    /// - output: `[batch, time, hidden]`, the hidden vector after every step
    ///
    /// LSTM and GRU layers on the CPU backends run as one fused operation ([`crate::fused`]);
    /// elsewhere, and for the plain RNN, as composed tensor operations.
    pub fn forward(&self, input: Tensor<3>, state: LayerState) -> (Tensor<3>, LayerState) {
        self.forward_with(input, state, self.weight_hh.val())
    }

    /// As [`forward`](Self::forward) with `weight_hh` in place of the layer's own
    /// hidden-to-hidden matrix: weight drop hands in the dropped matrix, computed once per
    /// batch, so the fused kernels take it as an ordinary input and the gradient reaches the
    /// parameter through the mask.
    ///
    /// # Shapes
    /// - weight_hh: `[gates·hidden, hidden]`, as the parameter
    pub fn forward_with(
        &self,
        input: Tensor<3>,
        state: LayerState,
        weight_hh: Tensor<2>,
    ) -> (Tensor<3>, LayerState) {
        if self.cell != CellKind::Rnn && crate::fused::applies(&input) {
            return self.forward_fused(input, state, weight_hh);
        }
        self.forward_composed_with(input, state, weight_hh)
    }

    /// The fused path: the whole sequence as one backend operation with its own backward.
    fn forward_fused(
        &self,
        input: Tensor<3>,
        state: LayerState,
        w_hh: Tensor<2>,
    ) -> (Tensor<3>, LayerState) {
        let w_ih = self.weight_ih.val();
        let (b_ih, b_hh) = (self.bias_ih.val(), self.bias_hh.val());
        match self.cell {
            CellKind::Lstm => {
                let (output, hidden, cell) =
                    crate::fused::lstm(input, state.hidden, state.cell, w_ih, w_hh, b_ih, b_hh);
                let state = LayerState {
                    hidden,
                    cell: Some(cell),
                };
                (output, state)
            }
            _ => {
                let (output, hidden) =
                    crate::fused::gru(input, state.hidden, w_ih, w_hh, b_ih, b_hh);
                (output, LayerState { hidden, cell: None })
            }
        }
    }

    /// The composed path: tensor operations step by step (every backend).
    pub fn forward_composed(&self, input: Tensor<3>, state: LayerState) -> (Tensor<3>, LayerState) {
        self.forward_composed_with(input, state, self.weight_hh.val())
    }

    fn forward_composed_with(
        &self,
        input: Tensor<3>,
        state: LayerState,
        weight_hh: Tensor<2>,
    ) -> (Tensor<3>, LayerState) {
        let [batch, time, width] = input.dims();
        let gh = self.cell.gates() * self.hidden_size;
        let projected = input
            .reshape([batch * time, width])
            .matmul(self.weight_ih.val().transpose())
            .add(self.bias_ih.val().unsqueeze::<2>())
            .reshape([batch, time, gh]);
        let w_hh = weight_hh.transpose();
        let b_hh = self.bias_hh.val().unsqueeze::<2>();
        let mut state = state;
        let mut outputs = Vec::with_capacity(time);
        for t in 0..time {
            let x_t = projected.clone().narrow(1, t, 1).reshape([batch, gh]);
            let h_t = state.hidden.clone().matmul(w_hh.clone()).add(b_hh.clone());
            state = self.cell_step(x_t, h_t, state);
            outputs.push(state.hidden.clone().unsqueeze_dim::<3>(1));
        }
        (Tensor::cat(outputs, 1), state)
    }

    /// The gate arithmetic of one step, given the input projection `x` and the recurrent
    /// projection `h` (both `[batch, gates·hidden]`, biases included).
    fn cell_step(&self, x: Tensor<2>, h: Tensor<2>, state: LayerState) -> LayerState {
        match self.cell {
            CellKind::Lstm => {
                let mut gates = (x + h).chunk(4, 1).into_iter();
                let (Some(i), Some(f), Some(g), Some(o)) =
                    (gates.next(), gates.next(), gates.next(), gates.next())
                else {
                    unreachable!("chunk(4) of a 4·hidden tensor yields four parts")
                };
                let c_prev = state
                    .cell
                    .unwrap_or_else(|| Tensor::zeros_like(&state.hidden));
                let c = sigmoid(f) * c_prev + sigmoid(i) * tanh(g);
                let hidden = sigmoid(o) * tanh(c.clone());
                LayerState {
                    hidden,
                    cell: Some(c),
                }
            }
            CellKind::Gru => {
                let mut xs = x.chunk(3, 1).into_iter();
                let mut hs = h.chunk(3, 1).into_iter();
                let (Some(xr), Some(xz), Some(xn)) = (xs.next(), xs.next(), xs.next()) else {
                    unreachable!("chunk(3) of a 3·hidden tensor yields three parts")
                };
                let (Some(hr), Some(hz), Some(hn)) = (hs.next(), hs.next(), hs.next()) else {
                    unreachable!("chunk(3) of a 3·hidden tensor yields three parts")
                };
                let r = sigmoid(xr + hr);
                let z = sigmoid(xz + hz);
                let n = tanh(xn + r * hn);
                // h' = (1 - z) * n + z * h, written with one fewer temporary.
                let hidden = n.clone() + z * (state.hidden - n);
                LayerState { hidden, cell: None }
            }
            CellKind::Rnn => LayerState {
                hidden: tanh(x + h),
                cell: None,
            },
        }
    }
}
