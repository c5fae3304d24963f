//! The fused LSTM layer: forward and backward over a whole sequence, split by batch rows
//! across threads.
use std::mem::MaybeUninit;

use super::*;

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
/// into one part per thread (see `batch_parts`) and every part runs all its steps on its own
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

pub(super) fn lstm_forward_in_parts(
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
pub(super) struct ForwardBufs<'a> {
    gates: &'a mut [f32],
    cells: &'a mut [f32],
    packed: &'a mut [f32],
}

/// [`lstm_forward`] over the sequences of one part (`d.batch` of them), into its buffers.
#[allow(clippy::too_many_arguments)]
pub(super) fn lstm_forward_part(
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
pub(super) fn lstm_backward_in_parts(
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
pub(super) struct BackwardInputs<'a> {
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
pub(super) struct BackwardBufs<'a> {
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
pub(super) struct PartialGrads {
    w_ih: Option<Vec<f32>>,
    w_hh: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
}

/// [`lstm_backward`] for the sequences of one part: the loop over the steps, then the part's
/// input gradient and its share of the weight gradients.
pub(super) fn lstm_backward_part(
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
pub(super) fn weight_gradient(
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
pub(super) fn active_steps(grad: &[f32], time: usize, hidden: usize) -> usize {
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
