//! Step-by-step inference on the host for generation: no autodiff, no tensor bookkeeping, no
//! allocation per token.
//!
//! Generating one token with the tensor model costs a dozen backend operations, each with its
//! own allocation, for about four million multiply-adds; at batch 1 the bookkeeping dominates.
//! [`HostLanguageModel`] copies the weights once into plain vectors and runs each step as
//! matrix-vector products (rows split across the thread pool) and the same gate arithmetic as
//! the fused kernels, writing into buffers it keeps.
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::math::{gru_cell_forward, lstm_cell_forward};
use super::proposal::{ProposalInput, ProposalProjection};
use crate::{CellKind, LanguageModel};

/// Rows per parallel task of a matrix-vector product; below this the product runs on one thread.
pub(super) const ROWS_PER_TASK: usize = 512;

/// Matrix size (elements) from which a matrix-vector product is split across threads.
pub(super) const PARALLEL_FROM: usize = 1 << 20;

/// One recurrent layer's weights in PyTorch's layout, as host vectors.
struct HostLayer {
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
    input: usize,
    /// This layer's hidden width (layers may differ: AWD-LSTM's shape).
    hidden: usize,
}

/// A language model's weights on the host, for step-by-step inference at batch 1.
pub struct HostLanguageModel {
    cell: CellKind,
    hidden: usize,
    vocab: usize,
    embedding_size: usize,
    embedding: Vec<f32>,
    layers: Vec<HostLayer>,
    /// `[vocab, hidden]`; the embedding matrix itself when tied.
    output_weight: Option<Vec<f32>>,
    output_bias: Vec<f32>,
    /// The 8-bit copy of the output projection; `None` when a weight is not finite.
    proposal: Option<ProposalProjection>,
}

/// The carried state and the work buffers of [`HostLanguageModel::step`].
#[derive(Clone, Debug)]
pub struct HostState {
    /// Hidden vector per layer.
    hidden: Vec<Vec<f32>>,
    /// Cell vector per layer (LSTM only).
    cell: Vec<Vec<f32>>,
    gates: Vec<f32>,
    recurrent: Vec<f32>,
    scratch: Vec<f32>,
    next: Vec<f32>,
    logits: Vec<f32>,
    /// Approximate logits from [`HostLanguageModel::propose`].
    proposal: Vec<f32>,
    /// The quantised top hidden vector behind `proposal`.
    proposal_input: ProposalInput,
}

impl HostState {
    /// The next-token logits after the last step.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The hidden vector of `layer` after the last step.
    pub fn hidden(&self, layer: usize) -> &[f32] {
        &self.hidden[layer]
    }

    /// The approximate logits left by the last [`HostLanguageModel::propose`].
    pub fn proposal(&self) -> &[f32] {
        &self.proposal
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .expect("float tensor data converts to f32")
}

impl HostLanguageModel {
    /// Copies the weights of `model` to the host.
    pub fn new(model: &LanguageModel) -> Self {
        let layers = model
            .layers
            .iter()
            .map(|l| {
                let [_, input] = l.weight_ih.dims();
                let [_, hidden] = l.weight_hh.dims();
                HostLayer {
                    hidden,
                    w_ih: host(l.weight_ih.val()),
                    w_hh: host(l.weight_hh.val()),
                    b_ih: host(l.bias_ih.val()),
                    b_hh: host(l.bias_hh.val()),
                    input,
                }
            })
            .collect();
        let [vocab, embedding_size] = model.embedding.dims();
        let embedding = host(model.embedding.val());
        let output_weight = model.output_weight.as_ref().map(|w| host(w.val()));
        let output_bias = host(model.output_bias.val());
        let proposal =
            ProposalProjection::new(output_weight.as_deref().unwrap_or(&embedding), &output_bias);
        HostLanguageModel {
            cell: model.cell(),
            hidden: model.hidden_size(),
            vocab,
            embedding_size,
            embedding,
            layers,
            output_weight,
            output_bias,
            proposal,
        }
    }

    /// Vocabulary size (length of the logits).
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// A zero state with its buffers.
    pub fn zero_state(&self) -> HostState {
        // Work buffers fit the widest layer; each layer uses their first part.
        let h = self
            .layers
            .iter()
            .map(|l| l.hidden)
            .max()
            .unwrap_or(self.hidden);
        let g = self.cell.gates() * h;
        let per_layer = || self.layers.iter().map(|l| vec![0.0; l.hidden]).collect();
        HostState {
            hidden: per_layer(),
            cell: if self.cell == CellKind::Lstm {
                per_layer()
            } else {
                Vec::new()
            },
            gates: vec![0.0; g],
            recurrent: vec![0.0; g],
            scratch: vec![0.0; h],
            next: vec![0.0; h],
            logits: vec![0.0; self.vocab],
            proposal: vec![0.0; self.vocab],
            proposal_input: ProposalInput::default(),
        }
    }

    /// Feeds one token: advances `state` and leaves the next-token logits in
    /// [`HostState::logits`] ([`advance`](Self::advance) then [`project`](Self::project)).
    ///
    /// # Panics
    /// If `token` is outside the vocabulary.
    pub fn step(&self, token: u32, state: &mut HostState) {
        self.advance(token, state);
        self.project(state);
    }

    /// Feeds one token through the recurrent layers only: the logits in `state` are stale until
    /// [`project`](Self::project) (or [`propose`](Self::propose)) runs, so a prompt pays for the
    /// output projection once, after its last token.
    ///
    /// # Panics
    /// If `token` is outside the vocabulary.
    pub fn advance(&self, token: u32, state: &mut HostState) {
        let token = token as usize;
        assert!(
            token < self.vocab,
            "token id {token} is outside the vocabulary"
        );
        let e = self.embedding_size;
        for (k, layer) in self.layers.iter().enumerate() {
            let h = layer.hidden;
            let g = self.cell.gates() * h;
            let (below, rest) = state.hidden.split_at_mut(k);
            let input: &[f32] = match below.last() {
                Some(prev) => prev,
                None => &self.embedding[token * e..(token + 1) * e],
            };
            debug_assert_eq!(input.len(), layer.input);
            let hidden = &mut rest[0];
            if self.cell == CellKind::Lstm
                && layer.w_ih.len() + layer.w_hh.len() >= PARALLEL_LAYER_FROM
                && rayon::current_num_threads() > 1
            {
                let cell = &mut state.cell[k];
                lstm_step_parallel(layer, input, hidden, cell, &mut state.next[..h]);
                hidden.copy_from_slice(&state.next[..h]);
                continue;
            }
            let (gates, recurrent) = (&mut state.gates[..g], &mut state.recurrent[..g]);
            let (scratch, next) = (&mut state.scratch[..h], &mut state.next[..h]);
            gemv(&layer.w_ih, &layer.b_ih, input, gates);
            gemv(&layer.w_hh, &layer.b_hh, hidden, recurrent);
            match self.cell {
                CellKind::Lstm => {
                    for (z, r) in gates.iter_mut().zip(recurrent.iter()) {
                        *z += r;
                    }
                    let cell = &mut state.cell[k];
                    lstm_cell_forward(gates, cell, scratch, next);
                    cell.copy_from_slice(scratch);
                }
                CellKind::Gru => {
                    gru_cell_forward(gates, recurrent, hidden, scratch, next);
                }
                CellKind::Rnn => {
                    for ((n, z), r) in next.iter_mut().zip(gates.iter()).zip(recurrent.iter()) {
                        *n = (z + r).tanh();
                    }
                }
            }
            hidden.copy_from_slice(&state.next[..h]);
        }
    }

    fn output_weight(&self) -> &[f32] {
        self.output_weight.as_deref().unwrap_or(&self.embedding)
    }

    fn top_hidden<'a>(&self, state: &'a HostState) -> &'a [f32] {
        &state.hidden[self.layers.len() - 1]
    }

    /// The exact next-token logits into [`HostState::logits`].
    pub fn project(&self, state: &mut HostState) {
        let top = &state.hidden[self.layers.len() - 1];
        gemv(
            self.output_weight(),
            &self.output_bias,
            top,
            &mut state.logits,
        );
    }

    /// The exact logit of one token, equal to bits to what [`project`](Self::project) writes
    /// for it (every row of the product is summed in the same order, wherever it falls).
    pub fn exact_logit(&self, state: &HostState, token: usize) -> f32 {
        let n = self.hidden;
        let mut out = [0.0f32];
        gemv_rows(
            &self.output_weight()[token * n..(token + 1) * n],
            &self.output_bias[token..token + 1],
            self.top_hidden(state),
            &mut out,
        );
        out[0]
    }

    /// Approximate next-token logits from the 8-bit copy of the output projection into
    /// [`HostState::proposal`]: a quarter of the bytes of [`project`](Self::project), for
    /// samplers that propose from them and check each proposal against
    /// [`exact_logit`](Self::exact_logit) (rejection sampling, which keeps the exact
    /// distribution). Each approximate logit is within [`proposal_error`](Self::proposal_error)
    /// of the exact one. Returns false, writing nothing, when the model has no 8-bit copy (a
    /// weight is not finite) or the hidden vector is not finite.
    pub fn propose(&self, state: &mut HostState) -> bool {
        self.propose_within(state, f32::INFINITY)
    }

    /// [`propose`](Self::propose), unless the largest bound
    /// ([`max_proposal_error`](Self::max_proposal_error)) would exceed `limit`: then it returns
    /// false before computing anything but the bound.
    pub fn propose_within(&self, state: &mut HostState, limit: f32) -> bool {
        let Some(p) = &self.proposal else {
            return false;
        };
        let top = &state.hidden[self.layers.len() - 1];
        if !p.prepare(top, &mut state.proposal_input) {
            return false;
        }
        // False for a NaN bound too.
        let within = p.max_error(&state.proposal_input) <= limit;
        if !within {
            return false;
        }
        p.gemv(
            &self.output_bias,
            &state.proposal_input,
            &mut state.proposal,
        );
        true
    }

    /// A bound on `|exact − approximate|` for the logit of `token` after the last
    /// [`propose`](Self::propose).
    pub fn proposal_error(&self, state: &HostState, token: usize) -> f32 {
        self.proposal
            .as_ref()
            .map_or(f32::INFINITY, |p| p.error(&state.proposal_input, token))
    }

    /// The largest [`proposal_error`](Self::proposal_error) over the vocabulary.
    pub fn max_proposal_error(&self, state: &HostState) -> f32 {
        self.proposal
            .as_ref()
            .map_or(f32::INFINITY, |p| p.max_error(&state.proposal_input))
    }

    /// Test switch: [`propose`](Self::propose) sums with the portable loop even on CPUs with
    /// AVX-512 VNNI (the same results, to the bit), so tests reach that loop on every CPU.
    #[doc(hidden)]
    pub fn use_portable_proposal(&mut self) {
        if let Some(p) = &mut self.proposal {
            p.use_portable_loop();
        }
    }
}

/// Hidden units per parallel task of [`lstm_step_parallel`].
const UNITS_PER_TASK: usize = 32;

/// Layer size (elements of both weight matrices) from which one LSTM step is split across
/// threads.
const PARALLEL_LAYER_FROM: usize = 1 << 18;

/// One LSTM step with the hidden units split across threads: each task computes the four gate
/// rows of its units from both weight matrices and runs their cell arithmetic, so the layer is
/// one parallel region instead of two serial products. Writes the new hidden vector into `next`
/// and updates `cell` in place.
fn lstm_step_parallel(
    layer: &HostLayer,
    input: &[f32],
    hidden: &[f32],
    cell: &mut [f32],
    next: &mut [f32],
) {
    let h = hidden.len();
    let (n_in, n_h) = (input.len(), h);
    next[..h]
        .par_chunks_mut(UNITS_PER_TASK)
        .zip(cell.par_chunks_mut(UNITS_PER_TASK))
        .enumerate()
        .for_each(|(task, (h_out, c))| {
            let units = h_out.len();
            let first = task * UNITS_PER_TASK;
            let mut z = [0.0f32; 4 * UNITS_PER_TASK];
            let mut r = [0.0f32; UNITS_PER_TASK];
            for g in 0..4 {
                let rows = g * h + first..g * h + first + units;
                let z_g = &mut z[g * units..(g + 1) * units];
                gemv_rows(
                    &layer.w_ih[rows.start * n_in..rows.end * n_in],
                    &layer.b_ih[rows.clone()],
                    input,
                    z_g,
                );
                gemv_rows(
                    &layer.w_hh[rows.start * n_h..rows.end * n_h],
                    &layer.b_hh[rows],
                    hidden,
                    &mut r[..units],
                );
                for (a, b) in z_g.iter_mut().zip(&r) {
                    *a += b;
                }
            }
            let c_prev: [f32; UNITS_PER_TASK] =
                std::array::from_fn(|j| c.get(j).copied().unwrap_or(0.0));
            lstm_cell_forward(&mut z[..4 * units], &c_prev[..units], c, h_out);
        });
}

/// `out = W·x + b` for a row-major `W` of `out.len()` rows, the rows split across threads when
/// there are enough of them.
fn gemv(w: &[f32], b: &[f32], x: &[f32], out: &mut [f32]) {
    let n = x.len();
    debug_assert_eq!(w.len(), out.len() * n);
    // Waking the other threads costs more than a small product saves.
    if out.len() < 2 * ROWS_PER_TASK || w.len() < PARALLEL_FROM {
        gemv_rows(w, b, x, out);
    } else {
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(w.par_chunks(ROWS_PER_TASK * n))
            .zip(b.par_chunks(ROWS_PER_TASK))
            .for_each(|((o, w), b)| gemv_rows(w, b, x, o));
    }
}

/// One thread's share of [`gemv`], with the CPU features picked once per call, not per row.
fn gemv_rows(w: &[f32], b: &[f32], x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::math::has_avx512f() {
        // SAFETY: the CPU supports AVX-512F, checked just above.
        unsafe { gemv_rows_avx512(w, b, x, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::math::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { gemv_rows_avx2(w, b, x, out) };
        return;
    }
    gemv_rows_generic(w, b, x, out)
}

/// Four rows at a time with AVX2/FMA intrinsics: each 16-float chunk of `x` is loaded once for
/// four rows, with two accumulators per row so that eight multiply-add chains run in parallel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gemv_rows_avx2(w: &[f32], b: &[f32], x: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len();
    let split = n - n % 16;
    let rows = out.len();
    assert!(w.len() >= rows * n && b.len() >= rows);
    // Horizontal sum of eight lanes.
    let hsum = |v: __m256| -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    };
    let wp = w.as_ptr();
    let xp = x.as_ptr();
    let mut r = 0;
    while r + 4 <= rows {
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut k = 0;
        while k < split {
            // SAFETY: k + 16 <= n and row r + 3 < rows, so every load is inside `x` and `w`.
            unsafe {
                // Fetch the same columns sixteen rows ahead: the hardware prefetcher alone does not
                // keep up with four interleaved row streams.
                if r + 20 <= rows {
                    for j in 16..20 {
                        _mm_prefetch::<_MM_HINT_T0>(wp.add((r + j) * n + k) as *const i8);
                    }
                }
                let x0 = _mm256_loadu_ps(xp.add(k));
                let x1 = _mm256_loadu_ps(xp.add(k + 8));
                for j in 0..4 {
                    let row = wp.add((r + j) * n + k);
                    acc[2 * j] = _mm256_fmadd_ps(_mm256_loadu_ps(row), x0, acc[2 * j]);
                    acc[2 * j + 1] =
                        _mm256_fmadd_ps(_mm256_loadu_ps(row.add(8)), x1, acc[2 * j + 1]);
                }
            }
            k += 16;
        }
        for j in 0..4 {
            let row = &w[(r + j) * n..(r + j + 1) * n];
            let tail: f32 = (split..n).map(|k| row[k] * x[k]).sum();
            out[r + j] = hsum(_mm256_add_ps(acc[2 * j], acc[2 * j + 1])) + tail + b[r + j];
        }
        r += 4;
    }
    // The remaining rows one at a time, summed in the same order as above, so that a row's
    // value does not depend on where it falls.
    for j in r..rows {
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut k = 0;
        while k < split {
            // SAFETY: k + 16 <= n and j < rows, so every load is inside `x` and `w`.
            unsafe {
                let row = wp.add(j * n + k);
                acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(row), _mm256_loadu_ps(xp.add(k)), acc[0]);
                acc[1] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(row.add(8)),
                    _mm256_loadu_ps(xp.add(k + 8)),
                    acc[1],
                );
            }
            k += 16;
        }
        let row = &w[j * n..(j + 1) * n];
        let tail: f32 = (split..n).map(|k| row[k] * x[k]).sum();
        out[j] = hsum(_mm256_add_ps(acc[0], acc[1])) + tail + b[j];
    }
}

/// Eight rows at a time with AVX-512: each 16-float chunk of `x` is loaded once for eight rows
/// (eight independent multiply-add chains), and the same columns of the next eight rows are
/// prefetched, which keeps the product close to the cache's streaming rate.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gemv_rows_avx512(w: &[f32], b: &[f32], x: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    const ROWS: usize = 8;
    let n = x.len();
    let split = n - n % 16;
    let rows = out.len();
    assert!(w.len() >= rows * n && b.len() >= rows);
    let wp = w.as_ptr();
    let xp = x.as_ptr();
    let mut r = 0;
    while r + ROWS <= rows {
        let mut acc = [_mm512_setzero_ps(); ROWS];
        let prefetch = r + 2 * ROWS <= rows;
        let mut k = 0;
        while k < split {
            // SAFETY: k + 16 <= n and row r + 7 < rows (r + 15 < rows for the prefetches), so
            // every address is inside `x` and `w`.
            unsafe {
                let xv = _mm512_loadu_ps(xp.add(k));
                for (j, acc) in acc.iter_mut().enumerate() {
                    let row = wp.add((r + j) * n + k);
                    if prefetch {
                        _mm_prefetch::<_MM_HINT_T0>(row.add(ROWS * n) as *const i8);
                    }
                    *acc = _mm512_fmadd_ps(_mm512_loadu_ps(row), xv, *acc);
                }
            }
            k += 16;
        }
        for (j, acc) in acc.iter().enumerate() {
            let row = &w[(r + j) * n..(r + j + 1) * n];
            let tail: f32 = (split..n).map(|k| row[k] * x[k]).sum();
            out[r + j] = _mm512_reduce_add_ps(*acc) + tail + b[r + j];
        }
        r += ROWS;
    }
    // The remaining rows one at a time, summed in the same order as above, so that a row's
    // value does not depend on where it falls.
    for j in r..rows {
        let mut acc = _mm512_setzero_ps();
        let mut k = 0;
        while k < split {
            // SAFETY: k + 16 <= n and j < rows, so every load is inside `x` and `w`.
            unsafe {
                acc = _mm512_fmadd_ps(
                    _mm512_loadu_ps(wp.add(j * n + k)),
                    _mm512_loadu_ps(xp.add(k)),
                    acc,
                );
            }
            k += 16;
        }
        let row = &w[j * n..(j + 1) * n];
        let tail: f32 = (split..n).map(|k| row[k] * x[k]).sum();
        out[j] = _mm512_reduce_add_ps(acc) + tail + b[j];
    }
}

/// The portable version: one dot product per row with eight partial sums.
fn gemv_rows_generic(w: &[f32], b: &[f32], x: &[f32], out: &mut [f32]) {
    const LANES: usize = 8;
    let n = x.len();
    for (j, o) in out.iter_mut().enumerate() {
        let row = &w[j * n..(j + 1) * n];
        let mut acc = [0.0f32; LANES];
        let (cw, cx) = (row.chunks_exact(LANES), x.chunks_exact(LANES));
        let tail: f32 = cw
            .remainder()
            .iter()
            .zip(cx.remainder())
            .map(|(a, b)| a * b)
            .sum();
        for (ws, xs) in cw.zip(cx) {
            for l in 0..LANES {
                acc[l] += ws[l] * xs[l];
            }
        }
        *o = acc.iter().sum::<f32>() + tail + b[j];
    }
}
