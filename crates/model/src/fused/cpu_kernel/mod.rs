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
//!
//! One file per kernel: `lstm.rs`, `gru.rs`, `projection.rs` (the output projection), and
//! `strided_gemm.rs` (the GEMM call they share); this file holds the shapes, the parameters and
//! the helpers that split a batch into parts across threads.

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

mod gru;
mod lstm;
mod projection;
mod strided_gemm;
#[cfg(test)]
mod tests;

pub use gru::*;
pub use lstm::*;
pub use projection::*;
use strided_gemm::*;

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
