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

use std::mem::MaybeUninit;

use rayon::prelude::*;

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

/// Which gradients [`lstm_backward`] computes ([`LstmWanted::ALL`]: every one).
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

impl LstmWanted {
    /// Every gradient.
    pub const ALL: LstmWanted = LstmWanted {
        x: true,
        h0: true,
        c0: true,
        w_ih: true,
        w_hh: true,
        bias: true,
    };
}

/// Runs the layer over the whole sequence.
///
/// The sequences of the batch are independent until the weight gradients, so the batch is cut
/// into one part per thread (see [`batch_parts`]) and every part runs all its steps on its own
/// thread with single-threaded GEMMs: no fork and join per step.
pub fn lstm_forward(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    c0: &[f32],
    p: LstmParams<'_>,
) -> LstmForward {
    lstm_forward_in_parts(d, x, h0, c0, p, batch_parts(d.batch))
}

fn lstm_forward_in_parts(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    c0: &[f32],
    p: LstmParams<'_>,
    parts: usize,
) -> LstmForward {
    let (t_n, e, h, g4) = (d.time, d.input, d.hidden, d.gates());
    check_inputs(d, x, h0, c0, p.w_ih, p.w_hh);
    assert_eq!(p.b_ih.len(), g4, "b_ih size");
    assert_eq!(p.b_hh.len(), g4, "b_hh size");

    // Each part initialises its own share of these (in parallel, and into its own cache).
    let mut gates = Vec::<f32>::with_capacity(d.rows() * g4);
    let mut cells = Vec::<f32>::with_capacity(d.rows() * h);
    let mut packed = Vec::<f32>::with_capacity(d.packed_len());
    let bias: Vec<f32> = p.b_ih.iter().zip(p.b_hh).map(|(a, b)| a + b).collect();
    let bias = &bias;
    // `W_hhᵀ` (`[H, 4H]`) for the per-step products; see [`RecurrentWeight`].
    let w_hh_t = RecurrentWeight::new(p.w_hh, g4, h, t_n);
    let w_hh_t = &w_hh_t;

    let per = d.batch.div_ceil(parts.max(1)).max(1);
    let count = d.batch.div_ceil(per);
    let threads = part_threads(count);
    let work = split(x, per * t_n * e, count)
        .zip(split(h0, per * h, count))
        .zip(split(c0, per * h, count))
        .zip(split_mut(
            &mut gates.spare_capacity_mut()[..d.rows() * g4],
            per * t_n * g4,
            count,
        ))
        .zip(split_mut(
            &mut cells.spare_capacity_mut()[..d.rows() * h],
            per * t_n * h,
            count,
        ))
        .zip(split_mut(
            &mut packed.spare_capacity_mut()[..d.packed_len()],
            per * (t_n + 1) * h,
            count,
        ))
        .enumerate()
        .map(|(i, (((((x, h0), c0), gates), cells), packed))| {
            let part = SeqDims {
                batch: per.min(d.batch - i * per),
                ..d
            };
            move || {
                let bufs = ForwardBufs {
                    gates: fill_rows(gates, bias),
                    cells: fill_zeros(cells),
                    packed: fill_zeros(packed),
                };
                lstm_forward_part(part, x, h0, c0, p, w_hh_t, bufs, threads)
            }
        });
    run_parts(work.collect());
    // SAFETY: the parts cover every buffer whole (`count · per ≥ batch`) and `fill_rows`
    // initialised each share.
    unsafe {
        gates.set_len(d.rows() * g4);
        cells.set_len(d.rows() * h);
        packed.set_len(d.packed_len());
    }
    LstmForward {
        packed,
        saved: LstmSaved { gates, cells },
    }
}

/// The output buffers of one part of the batch.
struct ForwardBufs<'a> {
    gates: &'a mut [f32],
    cells: &'a mut [f32],
    packed: &'a mut [f32],
}

/// [`lstm_forward`] over the sequences of one part (`d.batch` of them), into its buffers.
#[allow(clippy::too_many_arguments)]
fn lstm_forward_part(
    d: SeqDims,
    x: &[f32],
    h0: &[f32],
    c0: &[f32],
    p: LstmParams<'_>,
    w_hh_t: &RecurrentWeight<'_>,
    bufs: ForwardBufs<'_>,
    threads: Threads,
) {
    let (b_n, t_n, e, h, g4) = (d.batch, d.time, d.input, d.hidden, d.gates());
    let ForwardBufs {
        gates,
        cells,
        packed,
    } = bufs;
    // Pre-activations of every step: both biases (already in `gates`), then `x · W_ihᵀ` on top,
    // one GEMM.
    // SAFETY: `gates` is `[rows, 4H]`, `x` is `[rows, E]`, `w_ih` is `[4H, E]` read transposed
    // (row stride 1, column stride E); the caller checked all sizes.
    unsafe {
        gemm_acc(
            d.rows(),
            g4,
            e,
            Out::new(gates.as_mut_ptr(), g4 as isize, 1),
            In::new(x.as_ptr(), e as isize, 1),
            In::new(p.w_ih.as_ptr(), 1, e as isize),
            true,
            threads,
        );
    }

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
                threads,
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
}

/// Backpropagation through time over the whole sequence.
///
/// `packed` is the forward output, `grad` the gradient of the loss with respect to it (same
/// shape). `saved` is consumed: its gate buffer is overwritten with the pre-activation gradients.
///
/// Each part of the batch (as in [`lstm_forward`]) runs its loop over the steps, its input
/// gradient and its share of the weight gradients on one thread; the shares are added in part
/// order, so for a given number of threads the result is the same every run. Steps after a
/// sequence's last nonzero gradient are skipped (their gradients are exactly zero).
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
    let parts = batch_parts(d.batch);
    lstm_backward_in_parts(d, x, h0, c0, w_ih, w_hh, packed, saved, grad, wanted, parts)
}

#[allow(clippy::too_many_arguments)]
fn lstm_backward_in_parts(
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
    parts: usize,
) -> LstmGrads {
    let (t_n, e, h, g4) = (d.time, d.input, d.hidden, d.gates());
    check_inputs(d, x, h0, c0, w_ih, w_hh);
    assert_eq!(packed.len(), d.packed_len(), "packed output size");
    assert_eq!(grad.len(), d.packed_len(), "packed gradient size");
    let LstmSaved {
        gates: mut dz,
        cells,
    } = saved;
    assert_eq!(dz.len(), d.rows() * g4, "saved gates size");
    assert_eq!(cells.len(), d.rows() * h, "saved cells size");

    // Gradients of h and c flowing out of step 0: those of h0 and c0.
    let mut dh0 = vec![0.0f32; d.batch * h];
    let mut dc0 = vec![0.0f32; d.batch * h];
    let dx_len = if wanted.x { d.rows() * e } else { 0 };
    let mut dx = Vec::<f32>::with_capacity(dx_len);

    let per = d.batch.div_ceil(parts.max(1)).max(1);
    let count = d.batch.div_ceil(per);
    let threads = part_threads(count);
    let dx_part = if wanted.x { per * t_n * e } else { 0 };
    let work = split(x, per * t_n * e, count)
        .zip(split(h0, per * h, count))
        .zip(split(c0, per * h, count))
        .zip(split(&cells, per * t_n * h, count))
        .zip(split(packed, per * (t_n + 1) * h, count))
        .zip(split(grad, per * (t_n + 1) * h, count))
        .zip(split_mut(&mut dz, per * t_n * g4, count))
        .zip(split_mut(&mut dh0, per * h, count))
        .zip(split_mut(&mut dc0, per * h, count))
        .zip(split_mut(
            &mut dx.spare_capacity_mut()[..dx_len],
            dx_part,
            count,
        ))
        .enumerate()
        .map(
            |(i, (((((((((x, h0), c0), cells), packed), grad), dz), dh), dc), dx))| {
                let part = SeqDims {
                    batch: per.min(d.batch - i * per),
                    ..d
                };
                move || {
                    let inputs = BackwardInputs {
                        x,
                        h0,
                        c0,
                        w_ih,
                        w_hh,
                        cells,
                        packed,
                        grad,
                    };
                    let bufs = BackwardBufs { dz, dh, dc, dx };
                    lstm_backward_part(part, inputs, bufs, wanted, threads)
                }
            },
        );
    let partials = run_parts(work.collect());
    // SAFETY: the parts cover `dx` whole and each part's GEMM wrote its share.
    unsafe { dx.set_len(dx_len) };

    // The weight gradients sum over the parts, in the order of the parts.
    let mut partials = partials.into_iter();
    let mut total = partials.next().unwrap_or_default();
    for p in partials {
        for (acc, more) in [
            (&mut total.w_ih, p.w_ih),
            (&mut total.w_hh, p.w_hh),
            (&mut total.bias, p.bias),
        ] {
            if let (Some(acc), Some(more)) = (acc.as_mut(), more) {
                add_into(acc, &more);
            }
        }
    }
    let zeros = |len: usize, want: bool| want.then(|| vec![0.0f32; len]);
    LstmGrads {
        // With no steps the gradient of h_T (slot T-1) does not exist; h0 gets nothing.
        h0: wanted.h0.then_some(dh0),
        c0: wanted.c0.then_some(dc0),
        x: wanted.x.then_some(dx),
        // An empty batch has no parts; its weight gradients are zero.
        w_ih: total.w_ih.or_else(|| zeros(g4 * e, wanted.w_ih)),
        w_hh: total.w_hh.or_else(|| zeros(g4 * h, wanted.w_hh)),
        bias: total.bias.or_else(|| zeros(g4, wanted.bias)),
    }
}

/// What one part of the batch reads in [`lstm_backward`]: the whole weights and its own share
/// of everything else.
struct BackwardInputs<'a> {
    x: &'a [f32],
    h0: &'a [f32],
    c0: &'a [f32],
    w_ih: &'a [f32],
    w_hh: &'a [f32],
    cells: &'a [f32],
    packed: &'a [f32],
    grad: &'a [f32],
}

/// The buffers one part of the batch writes in [`lstm_backward`].
struct BackwardBufs<'a> {
    /// In: the saved activated gates; out: the pre-activation gradients.
    dz: &'a mut [f32],
    /// Out: the gradient of `h0`.
    dh: &'a mut [f32],
    /// Out: the gradient of `c0`.
    dc: &'a mut [f32],
    /// Out: the gradient of `x` (empty when not wanted), written by a GEMM.
    dx: &'a mut [MaybeUninit<f32>],
}

/// One part's share of the weight gradients.
#[derive(Default)]
struct PartialGrads {
    w_ih: Option<Vec<f32>>,
    w_hh: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
}

/// [`lstm_backward`] for the sequences of one part: the loop over the steps, then the part's
/// input gradient and its share of the weight gradients.
fn lstm_backward_part(
    d: SeqDims,
    inputs: BackwardInputs<'_>,
    bufs: BackwardBufs<'_>,
    wanted: LstmWanted,
    threads: Threads,
) -> PartialGrads {
    let (b_n, t_n, e, h, g4) = (d.batch, d.time, d.input, d.hidden, d.gates());
    let BackwardInputs {
        x,
        h0,
        c0,
        w_ih,
        w_hh,
        cells,
        packed,
        grad,
    } = inputs;
    let BackwardBufs {
        dz,
        dh: dh_next,
        dc: dc_next,
        dx,
    } = bufs;
    let packed_rs = (t_n + 1) * h;
    // Running gradients of h and c flowing from step t+1 into step t.
    for b in 0..b_n {
        let src = b * packed_rs + t_n * h;
        dc_next[b * h..(b + 1) * h].copy_from_slice(&grad[src..src + h]);
    }
    let mut dh = vec![0.0f32; h];
    // Steps of each sequence up to its last one with a gradient; after it every gradient is
    // exactly zero (a loss read at one position per sequence, right-padded, as the n-gram
    // recipe does), so those steps are skipped here and their rows left out of the products
    // after the loop.
    let active: Vec<usize> = (0..b_n)
        .map(|b| active_steps(&grad[b * packed_rs..(b + 1) * packed_rs], t_n, h))
        .collect();

    for t in (0..t_n).rev() {
        for b in 0..b_n {
            let row = b * t_n + t;
            if t >= active[b] {
                dz[row * g4..(row + 1) * g4].fill(0.0);
                continue;
            }
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
                threads,
            );
        }
    }

    // The rows with a gradient, packed to the front (each sequence's active steps are a prefix
    // of its rows, so this moves whole blocks); with none skipped nothing moves.
    let rows: usize = active.iter().sum();
    let all_active = rows == d.rows();
    let mut x_active = Vec::new();
    if !all_active {
        let mut at = 0;
        for (b, &n) in active.iter().enumerate() {
            dz.copy_within(b * t_n * g4..(b * t_n + n) * g4, at * g4);
            at += n;
        }
        if wanted.w_ih {
            x_active.reserve(rows * e);
            for (b, &n) in active.iter().enumerate() {
                x_active.extend_from_slice(&x[b * t_n * e..(b * t_n + n) * e]);
            }
        }
    }
    let dz = &dz[..rows * g4];
    let x = if all_active { x } else { &x_active[..] };

    let mut out = PartialGrads::default();
    if wanted.bias {
        let mut sums = vec![0.0f32; g4];
        add_columns(dz, g4, 0, &mut sums);
        out.bias = Some(sums);
    }
    if wanted.w_ih {
        out.w_ih = Some(weight_gradient(dz, g4, x, e, threads));
    }
    if wanted.w_hh {
        let h_prev = previous_hidden(d, &active, h0, packed, packed_rs);
        out.w_hh = Some(weight_gradient(dz, g4, &h_prev, h, threads));
    }
    if wanted.x {
        assert_eq!(dx.len(), d.rows() * e, "dx part size");
        // The active rows' gradient, written straight into `dx` when no row was skipped.
        let mut dx_active = Vec::with_capacity(if all_active { 0 } else { rows * e });
        let dst = if all_active {
            dx.as_mut_ptr().cast::<f32>()
        } else {
            dx_active.as_mut_ptr()
        };
        // SAFETY: dz is `[rows, 4H]`, `w_ih` is `[4H, E]`, `dst` has room for `[rows, E]`, every
        // element of which the GEMM writes (it never reads the destination).
        unsafe {
            gemm_acc(
                rows,
                e,
                g4,
                Out::new(dst, e as isize, 1),
                In::new(dz.as_ptr(), g4 as isize, 1),
                In::new(w_ih.as_ptr(), e as isize, 1),
                false,
                threads,
            );
        }
        if !all_active {
            // SAFETY: the GEMM above wrote all `rows · E` elements.
            unsafe { dx_active.set_len(rows * e) };
            let mut from = 0;
            for (b, &n) in active.iter().enumerate() {
                let block = &mut dx[b * t_n * e..(b + 1) * t_n * e];
                let (head, tail) = block.split_at_mut(n * e);
                for (dst, v) in head.iter_mut().zip(&dx_active[from * e..(from + n) * e]) {
                    dst.write(*v);
                }
                tail.fill(MaybeUninit::new(0.0));
                from += n;
            }
        }
    }
    out
}

/// The gradient of a weight `[gates, width]` from the pre-activation gradients `dz`
/// (`[rows, gates]`) and what the weight multiplied (`inputs`, `[rows, width]`): `dzᵀ · inputs`.
fn weight_gradient(
    dz: &[f32],
    gates: usize,
    inputs: &[f32],
    width: usize,
    threads: Threads,
) -> Vec<f32> {
    let rows = dz.len() / gates.max(1);
    assert_eq!(dz.len(), rows * gates, "dz size");
    assert_eq!(inputs.len(), rows * width, "inputs size");
    // SAFETY: dzᵀ is `[gates, rows]` (row stride 1, column stride `gates`), `inputs` is
    // `[rows, width]`, both in bounds by the asserts; the GEMM writes every element of the
    // `[gates, width]` result.
    unsafe {
        written_by(gates * width, |dst| {
            gemm_acc(
                gates,
                width,
                rows,
                Out::new(dst, width as isize, 1),
                In::new(dz.as_ptr(), 1, gates as isize),
                In::new(inputs.as_ptr(), width as isize, 1),
                false,
                threads,
            )
        })
    }
}

/// How many leading steps of one sequence can have a nonzero gradient, given the gradient of
/// its packed output (`[time + 1, hidden]`: the outputs, then the final cell): all of them when
/// the final cell has one, else up to the last output that has one.
fn active_steps(grad: &[f32], time: usize, hidden: usize) -> usize {
    let nonzero = |slot: usize| {
        grad[slot * hidden..(slot + 1) * hidden]
            .iter()
            .any(|&g| g != 0.0)
    };
    if nonzero(time) {
        return time;
    }
    (0..time).rev().find(|&t| nonzero(t)).map_or(0, |t| t + 1)
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
    gru_forward_in_parts(d, x, h0, p, batch_parts(d.batch))
}

/// [`gru_forward`] with the batch cut into `parts` parts, each run on its own thread like the
/// LSTM's.
fn gru_forward_in_parts(
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
fn gru_forward_part(
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
fn gru_backward_in_parts(
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
fn gru_backward_part(d: SeqDims, inputs: [&[f32]; 5], bufs: [&mut [f32]; 3], threads: Threads) {
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

fn check_gru_inputs(d: SeqDims, x: &[f32], h0: &[f32], w_ih: &[f32], w_hh: &[f32]) {
    let g3 = 3 * d.hidden;
    assert_eq!(x.len(), d.rows() * d.input, "input size");
    assert_eq!(h0.len(), d.batch * d.hidden, "h0 size");
    assert_eq!(w_ih.len(), g3 * d.input, "w_ih size");
    assert_eq!(w_hh.len(), g3 * d.hidden, "w_hh size");
}

/// Sum of every column of a row-major matrix with `width` columns.
///
/// Large matrices are summed by column blocks on the thread pool; every column is still summed
/// top to bottom, so the result does not depend on the number of threads.
pub(crate) fn column_sums(m: &[f32], width: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; width];
    if width == 0 {
        return sums;
    }
    let threads = rayon::current_num_threads();
    if threads == 1 || m.len() < 1 << 16 || width < 2 * SIMD_COLUMNS {
        add_columns(m, width, 0, &mut sums);
        return sums;
    }
    let block = width.div_ceil(threads).next_multiple_of(SIMD_COLUMNS);
    sums.par_chunks_mut(block)
        .enumerate()
        .for_each(|(i, s)| add_columns(m, width, i * block, s));
    sums
}

/// Columns per block of [`column_sums`]: a whole number of 512-bit vectors.
const SIMD_COLUMNS: usize = 16;

/// Adds columns `first..first + sums.len()` of every row of `m` into `sums`.
fn add_columns(m: &[f32], width: usize, first: usize, sums: &mut [f32]) {
    if width == 0 {
        return;
    }
    for row in m.chunks_exact(width) {
        for (acc, v) in sums.iter_mut().zip(&row[first..]) {
            *acc += v;
        }
    }
}

/// The hidden state entering each of the first `active[b]` steps of every sequence `b`, rows
/// packed in that order (`[Σ active, hidden]`), from `h0` and the outputs (`[batch, time + 1,
/// hidden]`, row stride `out_rs`).
fn previous_hidden(
    d: SeqDims,
    active: &[usize],
    h0: &[f32],
    output: &[f32],
    out_rs: usize,
) -> Vec<f32> {
    let h = d.hidden;
    let mut h_prev = Vec::with_capacity(active.iter().sum::<usize>() * h);
    for (b, &n) in active.iter().enumerate() {
        if n > 0 {
            h_prev.extend_from_slice(&h0[b * h..(b + 1) * h]);
            h_prev.extend_from_slice(&output[b * out_rs..b * out_rs + (n - 1) * h]);
        }
    }
    h_prev
}

/// Sequences below which a part of the batch is not worth a thread of its own.
const MIN_PART_BATCH: usize = 8;

/// At most this many parts: each part of the backward holds its own copy of the weight
/// gradients until they are added, which a part per thread of a large machine would multiply.
const MAX_PARTS: usize = 8;

/// Into how many parts [`lstm_forward`] and [`lstm_backward`] cut a batch: one per thread of the
/// pool (at most [`MAX_PARTS`]), each of at least [`MIN_PART_BATCH`] sequences.
fn batch_parts(batch: usize) -> usize {
    rayon::current_num_threads()
        .min(MAX_PARTS)
        .min(batch / MIN_PART_BATCH)
        .max(1)
}

/// The threads each of `count` parts may give its GEMMs: all of them for a whole batch, the
/// pool's share per part when the pool has at least two threads per part, else its own.
fn part_threads(count: usize) -> Threads {
    let pool = rayon::current_num_threads();
    match count {
        0 | 1 => Threads::Auto,
        _ if pool >= 2 * count => Threads::Share(pool / count),
        _ => Threads::One,
    }
}

/// `count` consecutive pieces of `buf`, each `len` long but the last (which may be shorter or
/// empty): the part of one buffer that each part of a batch owns.
fn split(buf: &[f32], len: usize, count: usize) -> impl Iterator<Item = &[f32]> {
    let mut rest = buf;
    (0..count).map(move |_| {
        let (head, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        head
    })
}

/// Initialises `buf` with copies of `row` (its length a multiple of `row`'s) and returns it as
/// initialised memory.
fn fill_rows<'a>(buf: &'a mut [MaybeUninit<f32>], row: &[f32]) -> &'a mut [f32] {
    let whole = if row.is_empty() {
        buf.is_empty()
    } else {
        buf.len().is_multiple_of(row.len())
    };
    assert!(whole, "whole rows");
    for chunk in buf.chunks_exact_mut(row.len().max(1)) {
        for (dst, v) in chunk.iter_mut().zip(row) {
            dst.write(*v);
        }
    }
    // SAFETY: every element was written above (the assertion makes the chunks whole rows of a
    // non-empty `row`, or `buf` empty); `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(buf as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Initialises `buf` with zeros and returns it as initialised memory.
fn fill_zeros(buf: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    buf.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was written above; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(buf as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A vector of `len` elements that `write` fills completely through the pointer it is given
/// (a GEMM that does not read its destination), so it is never zero-filled first.
///
/// # Safety
/// `write` must initialise all `len` elements.
unsafe fn written_by(len: usize, write: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    write(v.as_mut_ptr());
    // SAFETY: forwarded from the caller.
    unsafe { v.set_len(len) };
    v
}

/// [`split`] for a buffer the parts write.
fn split_mut<T>(buf: &mut [T], len: usize, count: usize) -> impl Iterator<Item = &mut [T]> {
    let mut rest = buf;
    (0..count).map(move |_| {
        let all = std::mem::take(&mut rest);
        let (head, tail) = all.split_at_mut(len.min(all.len()));
        rest = tail;
        head
    })
}

/// Runs the parts of a batch, on the thread pool when there is more than one, and returns their
/// results in order.
fn run_parts<R: Send, F: FnOnce() -> R + Send>(parts: Vec<F>) -> Vec<R> {
    if parts.len() == 1 {
        parts.into_iter().map(|f| f()).collect()
    } else {
        parts.into_par_iter().map(|f| f()).collect()
    }
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
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_acc(
    m: usize,
    n: usize,
    k: usize,
    dst: Out,
    lhs: In,
    rhs: In,
    accumulate: bool,
    threads: Threads,
) {
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
            match threads {
                Threads::Auto => parallelism(m, n, k),
                Threads::One => gemm::Parallelism::None,
                Threads::Share(share) => match parallelism(m, n, k) {
                    gemm::Parallelism::Rayon(_) if share > 1 => gemm::Parallelism::Rayon(share),
                    _ => gemm::Parallelism::None,
                },
            },
        );
    }
}

/// Whether a GEMM may use the thread pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// Multi-threaded when large enough (see [`parallelism`]).
    Auto,
    /// On the calling thread: the caller already runs one task per thread.
    One,
    /// At most this many threads (when large enough): the caller runs other work beside it.
    Share(usize),
}

/// Multi-threaded GEMM pays off from about 2 M multiply-adds (burn-flex uses 192³).
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= 2_000_000 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// The output projection `logits = hidden · weightᵀ (+ bias)` as one GEMM.
///
/// Without `bias` the caller adds it where it passes over the rows anyway (the fused
/// cross-entropy does), which saves a pass over the `[n, vocab]` logits.
///
/// # Shapes
/// `hidden` `[n, width]`, `weight` `[vocab, width]`, `bias` `[vocab]`; returns `[n, vocab]`.
pub fn project(
    n: usize,
    width: usize,
    hidden: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let vocab = weight.len() / width.max(1);
    assert_eq!(hidden.len(), n * width, "hidden size");
    assert_eq!(weight.len(), vocab * width, "weight size");
    // SAFETY: logits [n, vocab] row-major; hidden [n, width]; weightᵀ read as [width, vocab]
    // through strides (row stride 1, column stride width); all in bounds by the asserts above.
    // The GEMM writes every element.
    let mut logits = unsafe {
        written_by(n * vocab, |out| {
            gemm_acc(
                n,
                vocab,
                width,
                Out::new(out, vocab as isize, 1),
                In::new(hidden.as_ptr(), width as isize, 1),
                In::new(weight.as_ptr(), 1, width as isize),
                false,
                Threads::Auto,
            );
        })
    };
    if let Some(bias) = bias {
        assert_eq!(bias.len(), vocab, "bias size");
        if vocab > 0 {
            logits
                .par_chunks_mut(vocab)
                .for_each(|row| add_into(row, bias));
        }
    }
    logits
}

/// `row += bias`, element by element.
pub(crate) fn add_into(row: &mut [f32], bias: &[f32]) {
    for (v, b) in row.iter_mut().zip(bias) {
        *v += b;
    }
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
    // The two products are independent and each too narrow to keep every thread of the pool
    // busy on its own (the one for the hidden vectors is only `[n, width]`), so each gets half
    // of the pool.
    let pool = rayon::current_num_threads();
    let both = wanted[0] && wanted[1] && pool > 1;
    let threads = if both {
        Threads::Share(pool / 2)
    } else {
        Threads::Auto
    };
    let hidden_grad = || {
        wanted[0].then(|| {
            // SAFETY: d [n, width] = d_logits [n, vocab] · weight [vocab, width], all row-major;
            // the GEMM writes every element.
            unsafe {
                written_by(n * width, |out| {
                    gemm_acc(
                        n,
                        width,
                        vocab,
                        Out::new(out, width as isize, 1),
                        In::new(d_logits.as_ptr(), vocab as isize, 1),
                        In::new(weight.as_ptr(), width as isize, 1),
                        false,
                        threads,
                    )
                })
            }
        })
    };
    let weight_grad =
        || wanted[1].then(|| weight_gradient(d_logits, vocab, hidden, width, threads));
    let bias_grad = || wanted[2].then(|| column_sums(d_logits, vocab));
    let ((d_hidden, d_bias), d_weight) = if both {
        rayon::join(|| (hidden_grad(), bias_grad()), weight_grad)
    } else {
        ((hidden_grad(), bias_grad()), weight_grad())
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    fn assert_close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs())),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// The inputs and weights of one LSTM layer, deterministic from a seed.
    struct Layer {
        d: SeqDims,
        x: Vec<f32>,
        h0: Vec<f32>,
        c0: Vec<f32>,
        w_ih: Vec<f32>,
        w_hh: Vec<f32>,
        b_ih: Vec<f32>,
        b_hh: Vec<f32>,
    }

    impl Layer {
        fn new(d: SeqDims, seed: u64) -> Self {
            let g4 = d.gates();
            Layer {
                d,
                x: values(d.rows() * d.input, seed),
                h0: values(d.batch * d.hidden, seed + 1),
                c0: values(d.batch * d.hidden, seed + 2),
                w_ih: values(g4 * d.input, seed + 3),
                w_hh: values(g4 * d.hidden, seed + 4),
                b_ih: values(g4, seed + 5),
                b_hh: values(g4, seed + 6),
            }
        }

        /// Forward, then backward of `grad` with every gradient wanted, in `parts` parts.
        fn run(&self, grad: &[f32], parts: usize) -> (Vec<f32>, LstmGrads) {
            let p = LstmParams {
                w_ih: &self.w_ih,
                w_hh: &self.w_hh,
                b_ih: &self.b_ih,
                b_hh: &self.b_hh,
            };
            let wanted = LstmWanted::ALL;
            let (d, x, h0, c0) = (self.d, &self.x, &self.h0, &self.c0);
            let f = lstm_forward_in_parts(d, x, h0, c0, p, parts);
            let packed = f.packed.clone();
            let g = lstm_backward_in_parts(
                d, x, h0, c0, &self.w_ih, &self.w_hh, &packed, f.saved, grad, wanted, parts,
            );
            (packed, g)
        }
    }

    /// A named pair of optional gradients.
    type Pair<'a> = (&'a str, &'a Option<Vec<f32>>, &'a Option<Vec<f32>>);

    /// Each named pair of gradients, both present, agrees.
    fn assert_each_close<const N: usize>(pairs: [Pair<'_>; N]) {
        for (what, a, b) in pairs {
            assert_close(what, a.as_ref().unwrap(), b.as_ref().unwrap());
        }
    }

    fn assert_grads_close(got: &LstmGrads, want: &LstmGrads) {
        assert_each_close([
            ("x", &got.x, &want.x),
            ("h0", &got.h0, &want.h0),
            ("c0", &got.c0, &want.c0),
            ("w_ih", &got.w_ih, &want.w_ih),
            ("w_hh", &got.w_hh, &want.w_hh),
            ("bias", &got.bias, &want.bias),
        ]);
    }

    /// Cutting the batch into parts (here 1, 2 and 3, the last one shorter) gives what one part
    /// gives, forward and backward.
    #[test]
    fn parts_of_a_batch_agree_with_the_whole() {
        let d = SeqDims {
            batch: 7,
            time: 5,
            input: 6,
            hidden: 4,
        };
        let layer = Layer::new(d, 1);
        let grad = values(d.packed_len(), 8);
        let (packed_1, g_1) = layer.run(&grad, 1);
        for parts in [2, 3] {
            let (packed, g) = layer.run(&grad, parts);
            assert_close("packed", &packed, &packed_1);
            assert_grads_close(&g, &g_1);
        }
    }

    /// Steps after a sequence's last gradient are skipped: the result equals the one where
    /// those gradients are tiny but not zero (so nothing is skipped), for every way of cutting
    /// the batch, with a sequence whose only gradient is at step 0, one with none at all and
    /// one with a gradient on its final cell.
    #[test]
    fn steps_after_the_last_gradient_are_skipped_exactly() {
        let d = SeqDims {
            batch: 5,
            time: 6,
            input: 3,
            hidden: 4,
        };
        let (h, slots) = (d.hidden, d.time + 1);
        let layer = Layer::new(d, 11);
        // Last step with a gradient per sequence (`None`: no gradient; `Some(time)`: the
        // final cell's).
        let last = [Some(2), Some(0), None, Some(5), Some(6)];
        let full = values(d.packed_len(), 18);
        let with_tail = |tail: f32| -> Vec<f32> {
            let mut g = full.clone();
            for (b, l) in last.iter().enumerate() {
                let from = l.map_or(0, |l| l + 1);
                for slot in from..slots {
                    g[(b * slots + slot) * h..(b * slots + slot + 1) * h].fill(tail);
                }
            }
            g
        };
        let (_, want) = layer.run(&with_tail(1e-30), 1);
        for parts in [1, 2, 3] {
            let (_, got) = layer.run(&with_tail(0.0), parts);
            assert_grads_close(&got, &want);
        }
    }

    /// The GRU cut into parts gives what one part gives, forward and backward.
    #[test]
    fn gru_parts_agree_with_the_whole() {
        let d = SeqDims {
            batch: 7,
            time: 5,
            input: 6,
            hidden: 4,
        };
        let g3 = 3 * d.hidden;
        let x = values(d.rows() * d.input, 21);
        let h0 = values(d.batch * d.hidden, 22);
        let (w_ih, w_hh) = (values(g3 * d.input, 23), values(g3 * d.hidden, 24));
        let (b_ih, b_hh) = (values(g3, 25), values(g3, 26));
        let grad = values(d.rows() * d.hidden, 27);
        let p = LstmParams {
            w_ih: &w_ih,
            w_hh: &w_hh,
            b_ih: &b_ih,
            b_hh: &b_hh,
        };
        let wanted = GruWanted {
            x: true,
            h0: true,
            w_ih: true,
            w_hh: true,
            b_ih: true,
            b_hh: true,
        };
        let run = |parts: usize| {
            let f = gru_forward_in_parts(d, &x, &h0, p, parts);
            let out = f.output.clone();
            let g = gru_backward_in_parts(
                d, &x, &h0, &w_ih, &w_hh, &out, f.saved, &grad, wanted, parts,
            );
            (out, g)
        };
        let (out_1, g_1) = run(1);
        for parts in [2, 3] {
            let (out, g) = run(parts);
            assert_close("output", &out, &out_1);
            assert_each_close([
                ("x", &g.x, &g_1.x),
                ("h0", &g.h0, &g_1.h0),
                ("w_ih", &g.w_ih, &g_1.w_ih),
                ("w_hh", &g.w_hh, &g_1.w_hh),
                ("b_ih", &g.b_ih, &g_1.b_ih),
                ("b_hh", &g.b_hh, &g_1.b_hh),
            ]);
        }
    }

    #[test]
    fn column_sums_by_blocks_match_the_plain_sum() {
        let (rows, width) = (300, 1000);
        let m = values(rows * width, 9);
        let got = column_sums(&m, width);
        for (c, sum) in got.iter().enumerate() {
            let want: f32 = (0..rows).map(|r| m[r * width + c]).sum();
            assert_eq!(*sum, want, "column {c}");
        }
    }

    #[test]
    fn small_batches_stay_whole() {
        assert_eq!(batch_parts(1), 1);
        assert_eq!(batch_parts(MIN_PART_BATCH - 1), 1);
        assert!(batch_parts(1024) <= rayon::current_num_threads());
    }
}
