//! The fused LSTM and GRU on host buffers: plain `f32` slices in, plain `f32` vectors out.
//!
//! Nothing here knows about burn. Every buffer is row-major and contiguous:
//!
//! - `x`: `[batch, time, input]`
//! - `h0`, `c0`: `[batch, hidden]`
//! - `w_ih`: `[4·hidden, input]`, `w_hh`: `[4·hidden, hidden]`, `b_ih`, `b_hh`: `[4·hidden]`
//!   (PyTorch's layout, gate blocks i, f, g, o)
//! - `packed` (the output): `[batch, time + 1, hidden]`; slots `0..time` hold `h_1..h_T`, slot
//!   `time` holds `c_T`. One output tensor lets the whole layer be one autodiff node; the caller
//!   slices the output sequence, the final hidden state (slot `time - 1`) and the final cell out of
//!   it, and autodiff sums the gradients of those slices back into one `[batch, time + 1, hidden]`
//!   gradient for [`lstm_backward`].
//!
//! The per-step work buffers are indexed like `x`: row `b·time + t` of `gates` (`[batch·time,
//! 4·hidden]`) and `cells` (`[batch·time, hidden]`) belongs to sequence `b`, step `t`. With that
//! layout the input projection of every step is one GEMM over the contiguous `x`, and the
//! recurrent GEMM of step `t` writes straight into the rows of step `t` (row stride
//! `time·4·hidden`), so nothing is copied between the two.
//!
//! The GRU ([`gru_forward`], [`gru_backward`]) uses the same layouts with `3·hidden` gate rows and
//! an unpacked `[batch, time, hidden]` output.

use super::math;

/// Sizes of one fused LSTM or GRU call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqDims {
    /// Sequences in the batch.
    pub batch: usize,
    /// Time steps.
    pub time: usize,
    /// Input width.
    pub input: usize,
    /// Hidden width.
    pub hidden: usize,
}

impl SeqDims {
    fn rows(&self) -> usize {
        self.batch * self.time
    }

    fn gates(&self) -> usize {
        4 * self.hidden
    }

    /// Elements of the packed LSTM output `[batch, time + 1, hidden]`.
    pub fn packed_len(&self) -> usize {
        self.batch * (self.time + 1) * self.hidden
    }
}

/// The parameters of the layer, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct LstmParams<'a> {
    /// `[4·hidden, input]`.
    pub w_ih: &'a [f32],
    /// `[4·hidden, hidden]`.
    pub w_hh: &'a [f32],
    /// `[4·hidden]`.
    pub b_ih: &'a [f32],
    /// `[4·hidden]`.
    pub b_hh: &'a [f32],
}

/// What the forward pass leaves for the backward pass.
#[derive(Debug, Clone)]
pub struct LstmSaved {
    /// Activated gates `i, f, g, o` of every step, `[batch·time, 4·hidden]`, rows `b·time + t`.
    pub gates: Vec<f32>,
    /// Cell state after every step, `[batch·time, hidden]`, rows `b·time + t`.
    pub cells: Vec<f32>,
}

/// Result of [`lstm_forward`].
#[derive(Debug)]
pub struct LstmForward {
    /// `[batch, time + 1, hidden]`: `h_1..h_T`, then `c_T`.
    pub packed: Vec<f32>,
    /// Work buffers the backward pass reads.
    pub saved: LstmSaved,
}

/// Gradients of one fused LSTM call; `None` where the caller did not ask for one.
#[derive(Debug, Default)]
pub struct LstmGrads {
    /// `[batch, time, input]`.
    pub x: Option<Vec<f32>>,
    /// `[batch, hidden]`.
    pub h0: Option<Vec<f32>>,
    /// `[batch, hidden]`.
    pub c0: Option<Vec<f32>>,
    /// `[4·hidden, input]`.
    pub w_ih: Option<Vec<f32>>,
    /// `[4·hidden, hidden]`.
    pub w_hh: Option<Vec<f32>>,
    /// `[4·hidden]`; the gradient of `b_hh` is the same vector.
    pub bias: Option<Vec<f32>>,
}

/// Which gradients [`lstm_backward`] computes.
#[derive(Debug, Clone, Copy, Default)]
pub struct LstmWanted {
    /// Gradient of the input sequence.
    pub x: bool,
    /// Gradient of the initial hidden state.
    pub h0: bool,
    /// Gradient of the initial cell state.
    pub c0: bool,
    /// Gradient of `w_ih`.
    pub w_ih: bool,
    /// Gradient of `w_hh`.
    pub w_hh: bool,
    /// Gradient of either bias.
    pub bias: bool,
}

/// Runs the layer over the whole sequence.
pub fn lstm_forward(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    c0: &[f32],
    p: LstmParams<'_>,
) -> LstmForward {
    let (b_n, t_n, e, h, g4) = (d.batch, d.time, d.input, d.hidden, d.gates());
    check_inputs(d, x, h0, c0, p.w_ih, p.w_hh);
    assert_eq!(p.b_ih.len(), g4, "b_ih size");
    assert_eq!(p.b_hh.len(), g4, "b_hh size");

    // Pre-activations of every step: both biases, then `x · W_ihᵀ` on top, one GEMM.
    let mut gates = vec![0.0f32; d.rows() * g4];
    for row in gates.chunks_exact_mut(g4) {
        for ((z, bi), bh) in row.iter_mut().zip(p.b_ih).zip(p.b_hh) {
            *z = bi + bh;
        }
    }
    // SAFETY: `gates` is `[rows, 4H]`, `x` is `[rows, E]`, `w_ih` is `[4H, E]` read transposed
    // (row stride 1, column stride E); all sizes were checked above.
    unsafe {
        gemm_acc(
            d.rows(),
            g4,
            e,
            Out::new(gates.as_mut_ptr(), g4 as isize, 1),
            In::new(x.as_ptr(), e as isize, 1),
            In::new(p.w_ih.as_ptr(), 1, e as isize),
            true,
        );
    }

    // `W_hhᵀ` (`[H, 4H]`) for the per-step products; see [`RecurrentWeight`].
    let w_hh_t = RecurrentWeight::new(p.w_hh, g4, h, t_n);
    let mut cells = vec![0.0f32; d.rows() * h];
    let mut packed = vec![0.0f32; d.packed_len()];
    let packed_rs = (t_n + 1) * h;

    for t in 0..t_n {
        // Recurrent projection of step t, added in place into the rows of step t.
        let (h_prev, h_prev_rs) = if t == 0 {
            (h0.as_ptr(), h as isize)
        } else {
            // SAFETY: slot t-1 of sequence 0 lies inside `packed`.
            (
                unsafe { packed.as_ptr().add((t - 1) * h) },
                packed_rs as isize,
            )
        };
        // SAFETY: rows `b·T + t` of `gates` for b < B; `h_prev` rows are `[B, H]` with the given
        // stride; `w_hh_t` is `[H, 4H]`.
        unsafe {
            gemm_acc(
                b_n,
                g4,
                h,
                Out::new(gates.as_mut_ptr().add(t * g4), (t_n * g4) as isize, 1),
                In::new(h_prev, h_prev_rs, 1),
                w_hh_t.operand(),
                true,
            );
        }
        for b in 0..b_n {
            let row = b * t_n + t;
            let (done, rest) = cells.split_at_mut(row * h);
            let c_prev: &[f32] = if t == 0 {
                &c0[b * h..(b + 1) * h]
            } else {
                &done[(row - 1) * h..]
            };
            let start = b * packed_rs + t * h;
            math::lstm_cell_forward(
                &mut gates[row * g4..(row + 1) * g4],
                c_prev,
                &mut rest[..h],
                &mut packed[start..start + h],
            );
        }
    }
    // Final cell state into slot T.
    for b in 0..b_n {
        let dst = b * packed_rs + t_n * h;
        let src: &[f32] = if t_n == 0 {
            &c0[b * h..(b + 1) * h]
        } else {
            let row = b * t_n + t_n - 1;
            &cells[row * h..(row + 1) * h]
        };
        packed[dst..dst + h].copy_from_slice(src);
    }
    LstmForward {
        packed,
        saved: LstmSaved { gates, cells },
    }
}

/// Backpropagation through time over the whole sequence.
///
/// `packed` is the forward output, `grad` the gradient of the loss with respect to it (same
/// shape). `saved` is consumed: its gate buffer is overwritten with the pre-activation gradients.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    c0: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    packed: &[f32],
    saved: LstmSaved,
    grad: &[f32],
    wanted: LstmWanted,
) -> LstmGrads {
    let (b_n, t_n, e, h, g4) = (d.batch, d.time, d.input, d.hidden, d.gates());
    check_inputs(d, x, h0, c0, w_ih, w_hh);
    assert_eq!(packed.len(), d.packed_len(), "packed output size");
    assert_eq!(grad.len(), d.packed_len(), "packed gradient size");
    let LstmSaved {
        gates: mut dz,
        cells,
    } = saved;
    assert_eq!(dz.len(), d.rows() * g4, "saved gates size");
    assert_eq!(cells.len(), d.rows() * h, "saved cells size");
    let packed_rs = (t_n + 1) * h;

    // Running gradients of h and c flowing from step t+1 into step t.
    let mut dh_next = vec![0.0f32; b_n * h];
    let mut dc_next = vec![0.0f32; b_n * h];
    for b in 0..b_n {
        let src = b * packed_rs + t_n * h;
        dc_next[b * h..(b + 1) * h].copy_from_slice(&grad[src..src + h]);
    }
    let mut dh = vec![0.0f32; h];

    for t in (0..t_n).rev() {
        for b in 0..b_n {
            let row = b * t_n + t;
            let g_out = &grad[b * packed_rs + t * h..b * packed_rs + (t + 1) * h];
            for ((d_h, g), n) in dh.iter_mut().zip(g_out).zip(&dh_next[b * h..(b + 1) * h]) {
                *d_h = g + n;
            }
            let c_prev: &[f32] = if t == 0 {
                &c0[b * h..(b + 1) * h]
            } else {
                &cells[(row - 1) * h..row * h]
            };
            math::lstm_cell_backward(
                &mut dz[row * g4..(row + 1) * g4],
                &cells[row * h..(row + 1) * h],
                c_prev,
                &dh,
                &mut dc_next[b * h..(b + 1) * h],
            );
        }
        // dh_{t-1} = dz_t · W_hh.
        // SAFETY: rows `b·T + t` of `dz` (`[B, 4H]`, row stride T·4H) times `w_hh` (`[4H, H]`)
        // into `dh_next` (`[B, H]`).
        unsafe {
            gemm_acc(
                b_n,
                h,
                g4,
                Out::new(dh_next.as_mut_ptr(), h as isize, 1),
                In::new(dz.as_ptr().add(t * g4), (t_n * g4) as isize, 1),
                In::new(w_hh.as_ptr(), h as isize, 1),
                false,
            );
        }
    }

    let mut grads = LstmGrads::default();
    if wanted.h0 {
        // With no steps the gradient of h_T (slot T-1) does not exist; h0 gets nothing.
        grads.h0 = Some(dh_next);
    }
    if wanted.c0 {
        grads.c0 = Some(dc_next);
    }
    if wanted.bias {
        grads.bias = Some(column_sums(&dz, g4));
    }
    if wanted.w_ih {
        let mut dw = vec![0.0f32; g4 * e];
        // SAFETY: dzᵀ is `[4H, rows]` (row stride 1, column stride 4H), `x` is `[rows, E]`.
        unsafe {
            gemm_acc(
                g4,
                e,
                d.rows(),
                Out::new(dw.as_mut_ptr(), e as isize, 1),
                In::new(dz.as_ptr(), 1, g4 as isize),
                In::new(x.as_ptr(), e as isize, 1),
                false,
            );
        }
        grads.w_ih = Some(dw);
    }
    if wanted.w_hh {
        let h_prev = previous_hidden(d, h0, packed, packed_rs);
        let mut dw = vec![0.0f32; g4 * h];
        // SAFETY: dzᵀ is `[4H, rows]`, `h_prev` is `[rows, H]`.
        unsafe {
            gemm_acc(
                g4,
                h,
                d.rows(),
                Out::new(dw.as_mut_ptr(), h as isize, 1),
                In::new(dz.as_ptr(), 1, g4 as isize),
                In::new(h_prev.as_ptr(), h as isize, 1),
                false,
            );
        }
        grads.w_hh = Some(dw);
    }
    if wanted.x {
        let mut dx = vec![0.0f32; d.rows() * e];
        // SAFETY: dz is `[rows, 4H]`, `w_ih` is `[4H, E]`.
        unsafe {
            gemm_acc(
                d.rows(),
                e,
                g4,
                Out::new(dx.as_mut_ptr(), e as isize, 1),
                In::new(dz.as_ptr(), g4 as isize, 1),
                In::new(w_ih.as_ptr(), e as isize, 1),
                false,
            );
        }
        grads.x = Some(dx);
    }
    grads
}

/// What the GRU forward pass leaves for the backward pass.
#[derive(Debug, Clone)]
pub struct GruSaved {
    /// Activated gates `r, z, n` of every step, `[batch·time, 3·hidden]`, rows `b·time + t`.
    pub gates: Vec<f32>,
    /// The recurrent part of the candidate, `W_hn·h_{t-1} + b_hn`, `[batch·time, hidden]`.
    pub hn: Vec<f32>,
}

/// Result of [`gru_forward`].
#[derive(Debug)]
pub struct GruForward {
    /// `[batch, time, hidden]`: `h_1..h_T`.
    pub output: Vec<f32>,
    /// Work buffers the backward pass reads.
    pub saved: GruSaved,
}

/// Gradients of one fused GRU call; `None` where the caller did not ask for one.
#[derive(Debug, Default)]
pub struct GruGrads {
    /// `[batch, time, input]`.
    pub x: Option<Vec<f32>>,
    /// `[batch, hidden]`.
    pub h0: Option<Vec<f32>>,
    /// `[3·hidden, input]`.
    pub w_ih: Option<Vec<f32>>,
    /// `[3·hidden, hidden]`.
    pub w_hh: Option<Vec<f32>>,
    /// `[3·hidden]`.
    pub b_ih: Option<Vec<f32>>,
    /// `[3·hidden]`.
    pub b_hh: Option<Vec<f32>>,
}

/// Which gradients [`gru_backward`] computes.
#[derive(Debug, Clone, Copy, Default)]
pub struct GruWanted {
    /// Gradient of the input sequence.
    pub x: bool,
    /// Gradient of the initial hidden state.
    pub h0: bool,
    /// Gradient of `w_ih`.
    pub w_ih: bool,
    /// Gradient of `w_hh`.
    pub w_hh: bool,
    /// Gradient of `b_ih`.
    pub b_ih: bool,
    /// Gradient of `b_hh`.
    pub b_hh: bool,
}

/// Runs a GRU layer (PyTorch's `nn.GRU`: gates r, z, n, `n = tanh(x_n + r ⊙ (W_hn·h + b_hn))`,
/// `h' = (1 − z) ⊙ n + z ⊙ h`) over the whole sequence.
///
/// Same buffer layouts as [`lstm_forward`] with `3·hidden` gate rows; the output is
/// `[batch, time, hidden]` (the final hidden state is its last step). `p` holds the GRU's
/// `[3·hidden, …]` weights and biases.
pub fn gru_forward(d: SeqDims, x: &[f32], h0: &[f32], p: LstmParams<'_>) -> GruForward {
    let (b_n, t_n, e, h) = (d.batch, d.time, d.input, d.hidden);
    let g3 = 3 * h;
    check_gru_inputs(d, x, h0, p.w_ih, p.w_hh);
    assert_eq!(p.b_ih.len(), g3, "b_ih size");
    assert_eq!(p.b_hh.len(), g3, "b_hh size");

    // Input projections of every step with b_ih, one GEMM.
    let mut gates = vec![0.0f32; d.rows() * g3];
    for row in gates.chunks_exact_mut(g3) {
        row.copy_from_slice(p.b_ih);
    }
    // SAFETY: `gates` is `[rows, 3H]`, `x` is `[rows, E]`, `w_ih` is `[3H, E]` read transposed.
    unsafe {
        gemm_acc(
            d.rows(),
            g3,
            e,
            Out::new(gates.as_mut_ptr(), g3 as isize, 1),
            In::new(x.as_ptr(), e as isize, 1),
            In::new(p.w_ih.as_ptr(), 1, e as isize),
            true,
        );
    }
    let w_hh_t = RecurrentWeight::new(p.w_hh, g3, h, t_n);
    let mut hn = vec![0.0f32; d.rows() * h];
    let mut output = vec![0.0f32; d.rows() * h];
    // The recurrent projection of one step, `[B, 3H]`, b_hh included.
    let mut hp = vec![0.0f32; b_n * g3];
    let out_rs = t_n * h;

    for t in 0..t_n {
        for row in hp.chunks_exact_mut(g3) {
            row.copy_from_slice(p.b_hh);
        }
        let (h_prev, h_prev_rs) = if t == 0 {
            (h0.as_ptr(), h as isize)
        } else {
            // SAFETY: step t-1 of sequence 0 lies inside `output`.
            (unsafe { output.as_ptr().add((t - 1) * h) }, out_rs as isize)
        };
        // SAFETY: `hp` is `[B, 3H]`, `h_prev` rows are `[B, H]` with the given stride, `w_hh_t`
        // is `[H, 3H]`.
        unsafe {
            gemm_acc(
                b_n,
                g3,
                h,
                Out::new(hp.as_mut_ptr(), g3 as isize, 1),
                In::new(h_prev, h_prev_rs, 1),
                w_hh_t.operand(),
                true,
            );
        }
        for b in 0..b_n {
            let row = b * t_n + t;
            let start = b * out_rs + t * h;
            let (done, rest) = output.split_at_mut(start);
            let h_prev: &[f32] = if t == 0 {
                &h0[b * h..(b + 1) * h]
            } else {
                &done[start - h..]
            };
            math::gru_cell_forward(
                &mut gates[row * g3..(row + 1) * g3],
                &hp[b * g3..(b + 1) * g3],
                h_prev,
                &mut hn[row * h..(row + 1) * h],
                &mut rest[..h],
            );
        }
    }
    GruForward {
        output,
        saved: GruSaved { gates, hn },
    }
}

/// Backpropagation through time for [`gru_forward`].
///
/// `output` is the forward output, `grad` the gradient of the loss with respect to it (same
/// shape, `[batch, time, hidden]`). `saved` is consumed.
#[allow(clippy::too_many_arguments)]
pub fn gru_backward(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    output: &[f32],
    saved: GruSaved,
    grad: &[f32],
    wanted: GruWanted,
) -> GruGrads {
    let (b_n, t_n, e, h) = (d.batch, d.time, d.input, d.hidden);
    let g3 = 3 * h;
    check_gru_inputs(d, x, h0, w_ih, w_hh);
    assert_eq!(output.len(), d.rows() * h, "output size");
    assert_eq!(grad.len(), d.rows() * h, "output gradient size");
    let GruSaved { gates: mut dxp, hn } = saved;
    assert_eq!(dxp.len(), d.rows() * g3, "saved gates size");
    assert_eq!(hn.len(), d.rows() * h, "saved hn size");
    let out_rs = t_n * h;
    // Gradients of the recurrent projections (b_hh included), rows `b·T + t`.
    let mut dhp = vec![0.0f32; d.rows() * g3];
    let mut dh_next = vec![0.0f32; b_n * h];
    let mut dh = vec![0.0f32; h];

    for t in (0..t_n).rev() {
        for b in 0..b_n {
            let row = b * t_n + t;
            let g_out = &grad[b * out_rs + t * h..b * out_rs + (t + 1) * h];
            let carry = &mut dh_next[b * h..(b + 1) * h];
            for ((d_h, g), n) in dh.iter_mut().zip(g_out).zip(carry.iter()) {
                *d_h = g + n;
            }
            let h_prev: &[f32] = if t == 0 {
                &h0[b * h..(b + 1) * h]
            } else {
                &output[b * out_rs + (t - 1) * h..b * out_rs + t * h]
            };
            math::gru_cell_backward(
                &mut dxp[row * g3..(row + 1) * g3],
                &mut dhp[row * g3..(row + 1) * g3],
                &hn[row * h..(row + 1) * h],
                h_prev,
                &dh,
                carry,
            );
        }
        // dh_{t-1} += dhp_t · W_hh.
        // SAFETY: rows `b·T + t` of `dhp` (`[B, 3H]`, row stride T·3H) times `w_hh` (`[3H, H]`)
        // added into `dh_next` (`[B, H]`).
        unsafe {
            gemm_acc(
                b_n,
                h,
                g3,
                Out::new(dh_next.as_mut_ptr(), h as isize, 1),
                In::new(dhp.as_ptr().add(t * g3), (t_n * g3) as isize, 1),
                In::new(w_hh.as_ptr(), h as isize, 1),
                true,
            );
        }
    }

    let mut grads = GruGrads::default();
    if wanted.h0 {
        grads.h0 = Some(dh_next);
    }
    if wanted.b_ih {
        grads.b_ih = Some(column_sums(&dxp, g3));
    }
    if wanted.b_hh {
        grads.b_hh = Some(column_sums(&dhp, g3));
    }
    if wanted.w_ih {
        let mut dw = vec![0.0f32; g3 * e];
        // SAFETY: dxpᵀ is `[3H, rows]`, `x` is `[rows, E]`.
        unsafe {
            gemm_acc(
                g3,
                e,
                d.rows(),
                Out::new(dw.as_mut_ptr(), e as isize, 1),
                In::new(dxp.as_ptr(), 1, g3 as isize),
                In::new(x.as_ptr(), e as isize, 1),
                false,
            );
        }
        grads.w_ih = Some(dw);
    }
    if wanted.w_hh {
        let h_prev = previous_hidden(d, h0, output, out_rs);
        let mut dw = vec![0.0f32; g3 * h];
        // SAFETY: dhpᵀ is `[3H, rows]`, `h_prev` is `[rows, H]`.
        unsafe {
            gemm_acc(
                g3,
                h,
                d.rows(),
                Out::new(dw.as_mut_ptr(), h as isize, 1),
                In::new(dhp.as_ptr(), 1, g3 as isize),
                In::new(h_prev.as_ptr(), h as isize, 1),
                false,
            );
        }
        grads.w_hh = Some(dw);
    }
    if wanted.x {
        let mut dx = vec![0.0f32; d.rows() * e];
        // SAFETY: dxp is `[rows, 3H]`, `w_ih` is `[3H, E]`.
        unsafe {
            gemm_acc(
                d.rows(),
                e,
                g3,
                Out::new(dx.as_mut_ptr(), e as isize, 1),
                In::new(dxp.as_ptr(), g3 as isize, 1),
                In::new(w_ih.as_ptr(), e as isize, 1),
                false,
            );
        }
        grads.x = Some(dx);
    }
    grads
}

fn check_gru_inputs(d: SeqDims, x: &[f32], h0: &[f32], w_ih: &[f32], w_hh: &[f32]) {
    let g3 = 3 * d.hidden;
    assert_eq!(x.len(), d.rows() * d.input, "input size");
    assert_eq!(h0.len(), d.batch * d.hidden, "h0 size");
    assert_eq!(w_ih.len(), g3 * d.input, "w_ih size");
    assert_eq!(w_hh.len(), g3 * d.hidden, "w_hh size");
}

/// Sum of every column of a row-major matrix with `width` columns.
pub(crate) fn column_sums(m: &[f32], width: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; width];
    for row in m.chunks_exact(width) {
        for (acc, v) in sums.iter_mut().zip(row) {
            *acc += v;
        }
    }
    sums
}

/// The hidden state entering every step, `[batch·time, hidden]` with rows `b·time + t`, from
/// `h0` and the outputs (`[batch, time(+1), hidden]`, row stride `out_rs`).
fn previous_hidden(d: SeqDims, h0: &[f32], output: &[f32], out_rs: usize) -> Vec<f32> {
    let h = d.hidden;
    let mut h_prev = vec![0.0f32; d.rows() * h];
    for b in 0..d.batch {
        for t in 0..d.time {
            let row = b * d.time + t;
            let src: &[f32] = if t == 0 {
                &h0[b * h..(b + 1) * h]
            } else {
                &output[b * out_rs + (t - 1) * h..b * out_rs + t * h]
            };
            h_prev[row * h..(row + 1) * h].copy_from_slice(src);
        }
    }
    h_prev
}

/// `W_hhᵀ` as the right operand of the per-step products `h · W_hhᵀ`.
///
/// gemm's AVX-512 kernels run those small products about three times faster from a contiguous
/// `[H, G]` copy than from the transposed view of the `[G, H]` weight, so sequences of more than
/// one step pay for one copy; a single step (token-by-token generation) reads the view.
enum RecurrentWeight<'a> {
    View(&'a [f32], usize),
    Copy(Vec<f32>, usize),
}

impl<'a> RecurrentWeight<'a> {
    fn new(w_hh: &'a [f32], gates: usize, hidden: usize, steps: usize) -> Self {
        if steps > 1 {
            RecurrentWeight::Copy(transposed(w_hh, gates, hidden), gates)
        } else {
            RecurrentWeight::View(w_hh, hidden)
        }
    }

    fn operand(&self) -> In {
        match self {
            RecurrentWeight::View(w, hidden) => In::new(w.as_ptr(), 1, *hidden as isize),
            RecurrentWeight::Copy(w, gates) => In::new(w.as_ptr(), *gates as isize, 1),
        }
    }
}

/// `w` (`[rows, cols]`) transposed into a new contiguous `[cols, rows]` matrix.
fn transposed(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; rows * cols];
    for (r, row) in w.chunks_exact(cols).enumerate() {
        for (c, v) in row.iter().enumerate() {
            t[c * rows + r] = *v;
        }
    }
    t
}

fn check_inputs(d: SeqDims, x: &[f32], h0: &[f32], c0: &[f32], w_ih: &[f32], w_hh: &[f32]) {
    let g4 = d.gates();
    assert_eq!(x.len(), d.rows() * d.input, "input size");
    assert_eq!(h0.len(), d.batch * d.hidden, "h0 size");
    assert_eq!(c0.len(), d.batch * d.hidden, "c0 size");
    assert_eq!(w_ih.len(), g4 * d.input, "w_ih size");
    assert_eq!(w_hh.len(), g4 * d.hidden, "w_hh size");
}

/// A strided matrix operand: base pointer, row stride, column stride (in elements).
#[derive(Clone, Copy)]
struct In {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl In {
    fn new(ptr: *const f32, rs: isize, cs: isize) -> Self {
        In { ptr, rs, cs }
    }
}

/// A strided output matrix.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    rs: isize,
    cs: isize,
}

impl Out {
    fn new(ptr: *mut f32, rs: isize, cs: isize) -> Self {
        Out { ptr, rs, cs }
    }
}

/// `dst = lhs · rhs` (`accumulate == false`) or `dst += lhs · rhs`, with `lhs` `[m, k]` and `rhs`
/// `[k, n]`.
///
/// # Safety
/// Every element addressed through the pointers and strides must be in bounds, and `dst` must not
/// overlap `lhs` or `rhs`.
unsafe fn gemm_acc(m: usize, n: usize, k: usize, dst: Out, lhs: In, rhs: In, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: in bounds by the caller's contract.
                    unsafe { *dst.ptr.offset(i as isize * dst.rs + j as isize * dst.cs) = 0.0 };
                }
            }
        }
        return;
    }
    // SAFETY: forwarded from the caller; `gemm` computes dst = 1·dst + 1·lhs·rhs when reading
    // dst, else dst = lhs·rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs,
            dst.rs,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
}

/// Multi-threaded GEMM pays off from about 2 M multiply-adds (burn-flex uses 192³).
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= 2_000_000 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// The output projection `logits = hidden · weightᵀ + bias` as one GEMM.
///
/// # Shapes
/// `hidden` `[n, width]`, `weight` `[vocab, width]`, `bias` `[vocab]`; returns `[n, vocab]`.
pub fn project(n: usize, width: usize, hidden: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let vocab = bias.len();
    assert_eq!(hidden.len(), n * width, "hidden size");
    assert_eq!(weight.len(), vocab * width, "weight size");
    let mut logits = Vec::with_capacity(n * vocab);
    for _ in 0..n {
        logits.extend_from_slice(bias);
    }
    // SAFETY: logits [n, vocab] row-major; hidden [n, width]; weightᵀ read as [width, vocab]
    // through strides (row stride 1, column stride width); all in bounds by the asserts above.
    unsafe {
        gemm_acc(
            n,
            vocab,
            width,
            Out::new(logits.as_mut_ptr(), vocab as isize, 1),
            In::new(hidden.as_ptr(), width as isize, 1),
            In::new(weight.as_ptr(), 1, width as isize),
            true,
        );
    }
    logits
}

/// Gradients of [`project`] given the gradient of the logits `d_logits` `[n, vocab]`: of the
/// hidden vectors `[n, width]`, of the weight `[vocab, width]` and of the bias `[vocab]`, each
/// only when wanted.
pub fn project_backward(
    n: usize,
    width: usize,
    hidden: &[f32],
    weight: &[f32],
    d_logits: &[f32],
    wanted: [bool; 3],
) -> ProjectGrads {
    let vocab = weight.len() / width.max(1);
    assert_eq!(d_logits.len(), n * vocab, "d_logits size");
    assert_eq!(hidden.len(), n * width, "hidden size");
    let d_hidden = wanted[0].then(|| {
        let mut d = vec![0.0f32; n * width];
        // SAFETY: d [n, width] = d_logits [n, vocab] · weight [vocab, width], all row-major.
        unsafe {
            gemm_acc(
                n,
                width,
                vocab,
                Out::new(d.as_mut_ptr(), width as isize, 1),
                In::new(d_logits.as_ptr(), vocab as isize, 1),
                In::new(weight.as_ptr(), width as isize, 1),
                false,
            );
        }
        d
    });
    let d_weight = wanted[1].then(|| {
        let mut d = vec![0.0f32; vocab * width];
        // SAFETY: d [vocab, width] = d_logitsᵀ [vocab, n] · hidden [n, width]; the transpose is
        // read through strides.
        unsafe {
            gemm_acc(
                vocab,
                width,
                n,
                Out::new(d.as_mut_ptr(), width as isize, 1),
                In::new(d_logits.as_ptr(), 1, vocab as isize),
                In::new(hidden.as_ptr(), width as isize, 1),
                false,
            );
        }
        d
    });
    let d_bias = wanted[2].then(|| column_sums(d_logits, vocab));
    ProjectGrads {
        hidden: d_hidden,
        weight: d_weight,
        bias: d_bias,
    }
}

/// Gradients of [`project`]: `None` where not wanted.
pub struct ProjectGrads {
    /// Of the hidden vectors, `[n, width]`.
    pub hidden: Option<Vec<f32>>,
    /// Of the weight, `[vocab, width]`.
    pub weight: Option<Vec<f32>>,
    /// Of the bias, `[vocab]`.
    pub bias: Option<Vec<f32>>,
}
