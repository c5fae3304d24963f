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
use crate::{CellKind, LanguageModel};

/// Rows per parallel task of a matrix-vector product; below this the product runs on one thread.
const ROWS_PER_TASK: usize = 512;

/// One recurrent layer's weights in PyTorch's layout, as host vectors.
struct HostLayer {
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
    input: usize,
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
                HostLayer {
                    w_ih: host(l.weight_ih.val()),
                    w_hh: host(l.weight_hh.val()),
                    b_ih: host(l.bias_ih.val()),
                    b_hh: host(l.bias_hh.val()),
                    input,
                }
            })
            .collect();
        let [vocab, embedding_size] = model.embedding.dims();
        HostLanguageModel {
            cell: model.cell(),
            hidden: model.hidden_size(),
            vocab,
            embedding_size,
            embedding: host(model.embedding.val()),
            layers,
            output_weight: model.output_weight.as_ref().map(|w| host(w.val())),
            output_bias: host(model.output_bias.val()),
        }
    }

    /// Vocabulary size (length of the logits).
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// A zero state with its buffers.
    pub fn zero_state(&self) -> HostState {
        let h = self.hidden;
        let g = self.cell.gates() * h;
        let n = self.layers.len();
        HostState {
            hidden: vec![vec![0.0; h]; n],
            cell: if self.cell == CellKind::Lstm {
                vec![vec![0.0; h]; n]
            } else {
                Vec::new()
            },
            gates: vec![0.0; g],
            recurrent: vec![0.0; g],
            scratch: vec![0.0; h],
            next: vec![0.0; h],
            logits: vec![0.0; self.vocab],
        }
    }

    /// Feeds one token: advances `state` and leaves the next-token logits in
    /// [`HostState::logits`].
    ///
    /// # Panics
    /// If `token` is outside the vocabulary.
    pub fn step(&self, token: u32, state: &mut HostState) {
        let token = token as usize;
        assert!(
            token < self.vocab,
            "token id {token} is outside the vocabulary"
        );
        let e = self.embedding_size;
        let h = self.hidden;
        for (k, layer) in self.layers.iter().enumerate() {
            let (below, rest) = state.hidden.split_at_mut(k);
            let input: &[f32] = match below.last() {
                Some(prev) => prev,
                None => &self.embedding[token * e..(token + 1) * e],
            };
            debug_assert_eq!(input.len(), layer.input);
            let hidden = &mut rest[0];
            gemv(&layer.w_ih, &layer.b_ih, input, &mut state.gates);
            gemv(&layer.w_hh, &layer.b_hh, hidden, &mut state.recurrent);
            match self.cell {
                CellKind::Lstm => {
                    for (z, r) in state.gates.iter_mut().zip(&state.recurrent) {
                        *z += r;
                    }
                    let cell = &mut state.cell[k];
                    lstm_cell_forward(&mut state.gates, cell, &mut state.scratch, &mut state.next);
                    cell.copy_from_slice(&state.scratch);
                }
                CellKind::Gru => {
                    gru_cell_forward(
                        &mut state.gates,
                        &state.recurrent,
                        hidden,
                        &mut state.scratch,
                        &mut state.next,
                    );
                }
                CellKind::Rnn => {
                    for ((n, z), r) in state
                        .next
                        .iter_mut()
                        .zip(&state.gates)
                        .zip(&state.recurrent)
                    {
                        *n = (z + r).tanh();
                    }
                }
            }
            hidden.copy_from_slice(&state.next[..h]);
        }
        let top = &state.hidden[self.layers.len() - 1];
        let weight = self.output_weight.as_deref().unwrap_or(&self.embedding);
        gemv(weight, &self.output_bias, top, &mut state.logits);
    }
}

/// `out = W·x + b` for a row-major `W` of `out.len()` rows, the rows split across threads when
/// there are enough of them.
fn gemv(w: &[f32], b: &[f32], x: &[f32], out: &mut [f32]) {
    let n = x.len();
    debug_assert_eq!(w.len(), out.len() * n);
    let rows = |out: &mut [f32], w: &[f32], b: &[f32]| {
        for ((o, row), &bias) in out.iter_mut().zip(w.chunks_exact(n)).zip(b) {
            *o = dot(row, x) + bias;
        }
    };
    if out.len() < 2 * ROWS_PER_TASK {
        rows(out, w, b);
    } else {
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(w.par_chunks(ROWS_PER_TASK * n))
            .zip(b.par_chunks(ROWS_PER_TASK))
            .for_each(|((o, w), b)| rows(o, w, b));
    }
}

/// Dot product with sixteen independent partial sums, so that it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::math::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_lanes::<false>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes::<true>(a, b)
}

/// `FMA`: use fused multiply-add (only where the CPU has it; in software it is slow).
#[inline(always)]
fn dot_lanes<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(xa).zip(xb) {
            *s = if FMA { x.mul_add(*y, *s) } else { x * y + *s };
        }
    }
    acc.iter().sum::<f32>() + tail
}
