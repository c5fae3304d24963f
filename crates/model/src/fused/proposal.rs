//! An 8-bit copy of the output projection that proposes the next token while reading a quarter
//! of the f32 projection's bytes.
//!
//! At batch 1 the output projection is most of what a generated token costs (`vocab × hidden`
//! weights read for one matrix-vector product). Sampling does not need every logit exactly: a
//! sampler can propose a token from approximate logits and check it against the exact logit of
//! that one token (rejection sampling), which keeps the exact distribution. That needs a bound
//! on how far each approximate logit can be from the exact one; this module keeps it.
//!
//! Weights are quantised per row (`w ≈ scale·q`, `|q| ≤ 127`) once, when the host model is
//! built; the input vector is quantised per call to 16 bits (`x ≈ step·x̂`). Their products are
//! summed in 32-bit integers, exactly, so every CPU path gives the same approximate logits.
use rayon::prelude::*;

use super::host_lm::{PARALLEL_FROM, ROWS_PER_TASK};

/// The output projection in 8 bits, with the figures of its error bound.
pub(crate) struct ProposalProjection {
    /// `[rows, n]`, row `i` is `round(w_i / scale_i)`.
    weights: Vec<i8>,
    scales: Vec<f32>,
    /// Per row: the bound on `|exact − approximate|` per unit of the input's L1 norm.
    slack: Vec<f32>,
    /// Per row: the largest weight's magnitude, for the input's quantisation error.
    largest: Vec<f32>,
    max_slack: f32,
    max_largest: f32,
    /// The part of the bound from adding the bias, the same for every row.
    bias_slack: f32,
    n: usize,
    /// Sum with the portable loop even where AVX-512 VNNI is available (a test switch).
    portable: bool,
}

/// The quantised input of one [`ProposalProjection::gemv`] and what its bound needs.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProposalInput {
    levels: Vec<i16>,
    /// `x ≈ step·levels`.
    step: f32,
    /// The input's L1 norm, rounded up.
    l1: f32,
}

/// Largest input level for rows of `n` weights: `127·n·level` must fit in an `i32`.
fn input_levels(n: usize) -> i32 {
    (i32::MAX as usize / (127 * n.max(1))).min(i16::MAX as usize) as i32
}

impl ProposalProjection {
    /// Quantises `weight` (`[bias.len(), n]`); `None` when a weight or bias is not finite or the
    /// rows are too long for 32-bit sums.
    pub(crate) fn new(weight: &[f32], bias: &[f32]) -> Option<Self> {
        let rows = bias.len();
        if rows == 0
            || !weight.len().is_multiple_of(rows)
            || weight.iter().chain(bias).any(|w| !w.is_finite())
        {
            return None;
        }
        let n = weight.len() / rows;
        if input_levels(n) < 1024 {
            return None;
        }
        // Rounding of the exact f32 dot product (n terms), of the approximate one's conversion
        // and scaling, and of both bias additions: (n + 8) units of 2⁻²⁴ of the magnitude sum.
        let rounding = (n + 8) as f64 * f64::from(f32::EPSILON) / 2.0;
        let mut weights = vec![0i8; weight.len()];
        let mut scales = vec![0.0f32; rows];
        let mut slack = vec![0.0f32; rows];
        let mut largest = vec![0.0f32; rows];
        for (r, row) in weight.chunks_exact(n).enumerate() {
            let a = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
            let scale = a / 127.0;
            let mut distance = 0.0f64;
            for (q, &w) in weights[r * n..(r + 1) * n].iter_mut().zip(row) {
                let level = if scale > 0.0 {
                    (w / scale).round().clamp(-127.0, 127.0)
                } else {
                    0.0
                };
                *q = level as i8;
                distance = distance.max((f64::from(w) - f64::from(scale) * f64::from(level)).abs());
            }
            scales[r] = scale;
            largest[r] = a;
            // A 1% margin on top of the bound: the bound is what the sampler relies on.
            slack[r] = ((distance + rounding * f64::from(a)) * 1.01) as f32;
        }
        let largest_bias = bias.iter().fold(0.0f32, |m, b| m.max(b.abs()));
        Some(ProposalProjection {
            max_slack: slack.iter().fold(0.0f32, |m, &s| m.max(s)),
            max_largest: largest.iter().fold(0.0f32, |m, &s| m.max(s)),
            bias_slack: (f64::from(largest_bias) * 4.0 * f64::from(f32::EPSILON)) as f32,
            weights,
            scales,
            slack,
            largest,
            n,
            portable: false,
        })
    }

    /// Sums with the portable loop from now on, even on CPUs with AVX-512 VNNI (the results are
    /// the same to the bit), so tests reach that loop on every CPU.
    pub(crate) fn use_portable_loop(&mut self) {
        self.portable = true;
    }

    /// Quantises `x` into `input`; false when `x` is not finite.
    pub(crate) fn prepare(&self, x: &[f32], input: &mut ProposalInput) -> bool {
        debug_assert_eq!(x.len(), self.n);
        let (mut l1, mut top) = (0.0f32, 0.0f32);
        for v in x {
            l1 += v.abs();
            top = top.max(v.abs());
        }
        // A vector this small would make the step (and its products with the scales) subnormal,
        // where rounding is no longer relative; no hidden vector of a working model is.
        if !l1.is_finite() || (top > 0.0 && top < 1e-20) {
            return false;
        }
        let levels = input_levels(self.n) as f32;
        input.step = top / levels;
        // The sum is rounded (relative error up to about n·2⁻²⁴): this margin and the slack's
        // 1% cover it.
        input.l1 = l1 * (1.0 + 1e-4);
        input.levels.resize(x.len(), 0);
        let inverse = if top > 0.0 { levels / top } else { 0.0 };
        for (q, v) in input.levels.iter_mut().zip(x) {
            *q = (v * inverse).round().clamp(-levels, levels) as i16;
        }
        true
    }

    /// The part of the bound from the input's quantisation, per unit of a row's largest weight:
    /// each `|x − step·x̂|` is at most half a step (plus the rounding of `x/step`).
    fn input_slack(&self, input: &ProposalInput) -> f32 {
        self.n as f32 * input.step * 0.51 * 1.01
    }

    /// The bound on `|exact − approximate|` for the logit of `row`.
    pub(crate) fn error(&self, input: &ProposalInput, row: usize) -> f32 {
        self.slack[row] * input.l1 + self.largest[row] * self.input_slack(input) + self.bias_slack
    }

    /// The largest [`error`](Self::error) over the rows.
    pub(crate) fn max_error(&self, input: &ProposalInput) -> f32 {
        self.max_slack * input.l1 + self.max_largest * self.input_slack(input) + self.bias_slack
    }

    /// Approximate `W·x + b` from the prepared input, rows split across threads.
    pub(crate) fn gemv(&self, b: &[f32], input: &ProposalInput, out: &mut [f32]) {
        let n = self.n;
        let vnni = !self.portable && proposal_is_fast();
        let rows = |q: &[i8], s: &[f32], b: &[f32], o: &mut [f32]| {
            quantised_rows(q, s, b, &input.levels, input.step, o, vnni)
        };
        if out.len() < 2 * ROWS_PER_TASK || self.weights.len() < PARALLEL_FROM {
            rows(&self.weights, &self.scales, b, out);
        } else {
            out.par_chunks_mut(ROWS_PER_TASK)
                .zip(self.weights.par_chunks(ROWS_PER_TASK * n))
                .zip(self.scales.par_chunks(ROWS_PER_TASK))
                .zip(b.par_chunks(ROWS_PER_TASK))
                .for_each(|(((o, q), s), b)| rows(q, s, b, o));
        }
    }
}

/// Whether this CPU sums the 8-bit products with AVX-512 VNNI; elsewhere the portable loop is
/// slower than the exact f32 projection, and samplers should use that instead.
pub fn proposal_is_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_vnni()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn has_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// One thread's share of [`ProposalProjection::gemv`]: `out[j] = (Σ q·x̂)·scale_j·step + b_j`,
/// with AVX-512 VNNI when `vnni` and the CPU has it.
fn quantised_rows(
    q: &[i8],
    scales: &[f32],
    b: &[f32],
    x: &[i16],
    step: f32,
    out: &mut [f32],
    vnni: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if vnni && has_vnni() {
        // SAFETY: the CPU supports AVX-512F, BW and VNNI, checked just above.
        unsafe { quantised_rows_vnni(q, scales, b, x, step, out) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vnni;
    let n = x.len();
    for (j, o) in out.iter_mut().enumerate() {
        *o = finish(
            integer_dot(&q[j * n..(j + 1) * n], x),
            scales[j],
            step,
            b[j],
        );
    }
}

fn integer_dot(q: &[i8], x: &[i16]) -> i32 {
    q.iter()
        .zip(x)
        .map(|(&w, &v)| i32::from(w) * i32::from(v))
        .sum()
}

#[inline(always)]
fn finish(dot: i32, scale: f32, step: f32, bias: f32) -> f32 {
    dot as f32 * (scale * step) + bias
}

/// Eight rows at a time: 32 weights are widened to 16 bits and multiplied into eight 32-bit
/// accumulators with `vpdpwssd` (two instructions per 32 products); the next eight rows are
/// prefetched a cache line at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn quantised_rows_vnni(q: &[i8], scales: &[f32], b: &[f32], x: &[i16], step: f32, out: &mut [f32]) {
    use std::arch::x86_64::*;
    const ROWS: usize = 8;
    const LANES: usize = 32;
    let n = x.len();
    let split = n - n % LANES;
    let rows = out.len();
    assert!(q.len() >= rows * n && b.len() >= rows && scales.len() >= rows);
    let qp = q.as_ptr();
    let xp = x.as_ptr();
    let tail = |j: usize| integer_dot(&q[j * n + split..(j + 1) * n], &x[split..]);
    let mut r = 0;
    while r + ROWS <= rows {
        let mut acc = [_mm512_setzero_si512(); ROWS];
        let prefetch = r + 2 * ROWS <= rows;
        let mut k = 0;
        while k < split {
            // SAFETY: k + 32 <= n and row r + 7 < rows (r + 15 < rows for the prefetches), so
            // every address is inside `x` and `q`.
            unsafe {
                let xv = _mm512_loadu_si512(xp.add(k) as *const __m512i);
                for (j, acc) in acc.iter_mut().enumerate() {
                    let row = qp.add((r + j) * n + k);
                    if prefetch && k % 64 == 0 {
                        _mm_prefetch::<_MM_HINT_T0>(row.add(ROWS * n));
                    }
                    let w = _mm512_cvtepi8_epi16(_mm256_loadu_si256(row as *const __m256i));
                    *acc = _mm512_dpwssd_epi32(*acc, w, xv);
                }
            }
            k += LANES;
        }
        for (j, acc) in acc.iter().enumerate() {
            let dot = _mm512_reduce_add_epi32(*acc) + tail(r + j);
            out[r + j] = finish(dot, scales[r + j], step, b[r + j]);
        }
        r += ROWS;
    }
    for j in r..rows {
        out[j] = finish(
            integer_dot(&q[j * n..(j + 1) * n], x),
            scales[j],
            step,
            b[j],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector path and the portable loop give the same approximate logits, to the bit (the
    /// sums are exact integers), for row counts and lengths that leave remainders.
    #[test]
    fn every_path_gives_the_same_logits() {
        if !proposal_is_fast() {
            eprintln!(
                "SKIPPED every_path_gives_the_same_logits (AVX-512 VNNI kernel): this CPU has no AVX-512 VNNI; the portable loop is checked"
            );
        }
        for portable in [false, true] {
            check_paths(portable);
        }
    }

    fn check_paths(portable: bool) {
        // The last case is split across threads and has rows long enough for fewer input levels.
        for (rows, n) in [(37, 70), (1100, 64), (9, 256), (2100, 600)] {
            let weight: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
                .collect();
            let bias: Vec<f32> = (0..rows).map(|i| i as f32 / 100.0).collect();
            let x: Vec<f32> = (0..n).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
            let mut p = ProposalProjection::new(&weight, &bias).unwrap();
            if portable {
                p.use_portable_loop();
            }
            let mut input = ProposalInput::default();
            assert!(p.prepare(&x, &mut input));
            let mut fast = vec![0.0; rows];
            p.gemv(&bias, &input, &mut fast);
            for (j, &v) in fast.iter().enumerate() {
                let plain = finish(
                    integer_dot(&p.weights[j * n..(j + 1) * n], &input.levels),
                    p.scales[j],
                    input.step,
                    bias[j],
                );
                assert_eq!(v.to_bits(), plain.to_bits(), "rows {rows} n {n} row {j}");
                let exact: f32 = weight[j * n..(j + 1) * n]
                    .iter()
                    .zip(&x)
                    .map(|(w, x)| w * x)
                    .sum::<f32>()
                    + bias[j];
                assert!((exact - v).abs() <= p.error(&input, j), "row {j}");
            }
        }
    }

    #[test]
    fn weights_that_are_not_finite_get_no_copy() {
        assert!(ProposalProjection::new(&[1.0, f32::NAN], &[0.0]).is_none());
        assert!(ProposalProjection::new(&[1.0, 2.0], &[f32::INFINITY]).is_none());
        let p = ProposalProjection::new(&[1.0, 2.0], &[0.0]).unwrap();
        assert!(!p.prepare(&[f32::NAN, 0.0], &mut ProposalInput::default()));
    }
}
