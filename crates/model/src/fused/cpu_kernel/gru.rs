//! The fused GRU layer: forward and backward with the LSTM's layouts and `3·hidden` gate rows.
use super::*;

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
    gru_forward_in_parts(d, x, h0, p, batch_parts(d.batch))
}

/// [`gru_forward`] with the batch cut into `parts` parts, each run on its own thread like the
/// LSTM's.
pub(super) fn gru_forward_in_parts(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    p: LstmParams<'_>,
    parts: usize,
) -> GruForward {
    let (t_n, e, h) = (d.time, d.input, d.hidden);
    let g3 = 3 * h;
    check_gru_inputs(d, x, h0, p.w_ih, p.w_hh);
    assert_eq!(p.b_ih.len(), g3, "b_ih size");
    assert_eq!(p.b_hh.len(), g3, "b_hh size");
    let mut gates = vec![0.0f32; d.rows() * g3];
    let mut hn = vec![0.0f32; d.rows() * h];
    let mut output = vec![0.0f32; d.rows() * h];
    let w_hh_t = RecurrentWeight::new(p.w_hh, g3, h, t_n);
    let w_hh_t = &w_hh_t;

    let per = d.batch.div_ceil(parts.max(1)).max(1);
    let count = d.batch.div_ceil(per);
    let threads = part_threads(count);
    let work = split(x, per * t_n * e, count)
        .zip(split(h0, per * h, count))
        .zip(split_mut(&mut gates, per * t_n * g3, count))
        .zip(split_mut(&mut hn, per * t_n * h, count))
        .zip(split_mut(&mut output, per * t_n * h, count))
        .enumerate()
        .map(|(i, ((((x, h0), gates), hn), output))| {
            let part = SeqDims {
                batch: per.min(d.batch - i * per),
                ..d
            };
            move || gru_forward_part(part, x, h0, p, w_hh_t, [gates, hn, output], threads)
        });
    run_parts(work.collect());
    GruForward {
        output,
        saved: GruSaved { gates, hn },
    }
}

/// [`gru_forward`] over the sequences of one part, into its `[gates, hn, output]` buffers.
pub(super) fn gru_forward_part(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    p: LstmParams<'_>,
    w_hh_t: &RecurrentWeight<'_>,
    bufs: [&mut [f32]; 3],
    threads: Threads,
) {
    let (b_n, t_n, e, h) = (d.batch, d.time, d.input, d.hidden);
    let g3 = 3 * h;
    let [gates, hn, output] = bufs;
    // Input projections of every step with b_ih, one GEMM.
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
            threads,
        );
    }
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
                threads,
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
    let parts = batch_parts(d.batch);
    gru_backward_in_parts(d, x, h0, w_ih, w_hh, output, saved, grad, wanted, parts)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn gru_backward_in_parts(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    output: &[f32],
    saved: GruSaved,
    grad: &[f32],
    wanted: GruWanted,
    parts: usize,
) -> GruGrads {
    let (b_n, t_n, e, h) = (d.batch, d.time, d.input, d.hidden);
    let g3 = 3 * h;
    check_gru_inputs(d, x, h0, w_ih, w_hh);
    assert_eq!(output.len(), d.rows() * h, "output size");
    assert_eq!(grad.len(), d.rows() * h, "output gradient size");
    let GruSaved { gates: mut dxp, hn } = saved;
    assert_eq!(dxp.len(), d.rows() * g3, "saved gates size");
    assert_eq!(hn.len(), d.rows() * h, "saved hn size");
    // Gradients of the recurrent projections (b_hh included), rows `b·T + t`.
    let mut dhp = vec![0.0f32; d.rows() * g3];
    // The gradient flowing out of step 0: that of h0.
    let mut dh_next = vec![0.0f32; b_n * h];

    // The loop over the steps per part of the batch, as in `lstm_backward`; the weight
    // gradients are whole-batch products after it.
    let per = d.batch.div_ceil(parts.max(1)).max(1);
    let count = d.batch.div_ceil(per);
    let threads = part_threads(count);
    let work = split(h0, per * h, count)
        .zip(split(output, per * t_n * h, count))
        .zip(split(grad, per * t_n * h, count))
        .zip(split(&hn, per * t_n * h, count))
        .zip(split_mut(&mut dxp, per * t_n * g3, count))
        .zip(split_mut(&mut dhp, per * t_n * g3, count))
        .zip(split_mut(&mut dh_next, per * h, count))
        .enumerate()
        .map(|(i, ((((((h0, output), grad), hn), dxp), dhp), dh_next))| {
            let part = SeqDims {
                batch: per.min(d.batch - i * per),
                ..d
            };
            move || {
                gru_backward_part(
                    part,
                    [h0, output, grad, hn, w_hh],
                    [dxp, dhp, dh_next],
                    threads,
                )
            }
        });
    run_parts(work.collect());
    let out_rs = t_n * h;

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
        grads.w_ih = Some(weight_gradient(&dxp, g3, x, e, Threads::Auto));
    }
    if wanted.w_hh {
        let h_prev = previous_hidden(d, &vec![d.time; d.batch], h0, output, out_rs);
        grads.w_hh = Some(weight_gradient(&dhp, g3, &h_prev, h, Threads::Auto));
    }
    if wanted.x {
        // SAFETY: dxp is `[rows, 3H]`, `w_ih` is `[3H, E]`.
        // The GEMM writes every element, so the buffer is not zero-filled first.
        let dx = unsafe {
            written_by(d.rows() * e, |out| {
                gemm_acc(
                    d.rows(),
                    e,
                    g3,
                    Out::new(out, e as isize, 1),
                    In::new(dxp.as_ptr(), g3 as isize, 1),
                    In::new(w_ih.as_ptr(), e as isize, 1),
                    false,
                    Threads::Auto,
                );
            })
        };
        grads.x = Some(dx);
    }
    grads
}

/// The loop over the steps of [`gru_backward`] for the sequences of one part: reads
/// `[h0, output, grad, hn, w_hh]`, turns its saved gates into their gradients and writes the
/// recurrent projections' gradients and that of `h0` into `[dxp, dhp, dh_next]`.
pub(super) fn gru_backward_part(
    d: SeqDims,
    inputs: [&[f32]; 5],
    bufs: [&mut [f32]; 3],
    threads: Threads,
) {
    let (b_n, t_n, h) = (d.batch, d.time, d.hidden);
    let g3 = 3 * h;
    let [h0, output, grad, hn, w_hh] = inputs;
    let [dxp, dhp, dh_next] = bufs;
    let out_rs = t_n * h;
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
                threads,
            );
        }
    }
}

pub(super) fn check_gru_inputs(d: SeqDims, x: &[f32], h0: &[f32], w_ih: &[f32], w_hh: &[f32]) {
    let g3 = 3 * d.hidden;
    assert_eq!(x.len(), d.rows() * d.input, "input size");
    assert_eq!(h0.len(), d.batch * d.hidden, "h0 size");
    assert_eq!(w_ih.len(), g3 * d.input, "w_ih size");
    assert_eq!(w_hh.len(), g3 * d.hidden, "w_hh size");
}
