//! Gate arithmetic of the fused kernels: one pass over a gate row (`4·hidden` for LSTM, `3·hidden`
//! for GRU) per sequence and step.
//!
//! The activations use a branch-free `exp` (Cephes' `expf` polynomial, relative error about
//! 2e-7) so that the loops vectorise. On x86-64 CPUs with AVX2 and FMA the same loops are compiled a
//! second time for those features and picked at run time; elsewhere the baseline build runs.

/// How `a·b + c` is evaluated: separately rounded in the baseline build, fused where FMA exists.
trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

struct Separate;

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

#[cfg(target_arch = "x86_64")]
struct Fused;

#[cfg(target_arch = "x86_64")]
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// `exp(x)` for `x` clamped to `[-87, 88]`, where the result is a normal `f32`; NaN stays NaN.
#[inline(always)]
fn exp<M: MulAdd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n·LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer and leaves that integer in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let shifted = M::mul_add(x, LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = M::mul_add(n, -LN2_HI, x);
    let r = M::mul_add(n, -LN2_LO, r);
    let mut p = 1.987_569_1e-4;
    p = M::mul_add(p, r, 1.398_199_9e-3);
    p = M::mul_add(p, r, 8.333_452e-3);
    p = M::mul_add(p, r, 4.166_579_6e-2);
    p = M::mul_add(p, r, 1.666_666_5e-1);
    p = M::mul_add(p, r, 0.5);
    let y = M::mul_add(p * r, r, r) + 1.0;
    let k = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits(((k + 127) as u32) << 23);
    y * scale
}

#[inline(always)]
fn sigmoid<M: MulAdd>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<M>(-x))
}

#[inline(always)]
fn tanh<M: MulAdd>(x: f32) -> f32 {
    1.0 - 2.0 / (exp::<M>(2.0 * x) + 1.0)
}

#[inline(always)]
fn cell_forward<M: MulAdd>(z: &mut [f32], c_prev: &[f32], c_out: &mut [f32], h_out: &mut [f32]) {
    let h = c_out.len();
    let (zi, rest) = z.split_at_mut(h);
    let (zf, rest) = rest.split_at_mut(h);
    let (zg, zo) = rest.split_at_mut(h);
    let (zo, c_prev, h_out) = (&mut zo[..h], &c_prev[..h], &mut h_out[..h]);
    for j in 0..h {
        let i = sigmoid::<M>(zi[j]);
        let f = sigmoid::<M>(zf[j]);
        let g = tanh::<M>(zg[j]);
        let o = sigmoid::<M>(zo[j]);
        let c = M::mul_add(f, c_prev[j], i * g);
        zi[j] = i;
        zf[j] = f;
        zg[j] = g;
        zo[j] = o;
        c_out[j] = c;
        h_out[j] = o * tanh::<M>(c);
    }
}

#[inline(always)]
fn cell_backward<M: MulAdd>(z: &mut [f32], c: &[f32], c_prev: &[f32], dh: &[f32], dc: &mut [f32]) {
    let h = dc.len();
    let (zi, rest) = z.split_at_mut(h);
    let (zf, rest) = rest.split_at_mut(h);
    let (zg, zo) = rest.split_at_mut(h);
    let (zo, c, c_prev, dh) = (&mut zo[..h], &c[..h], &c_prev[..h], &dh[..h]);
    for j in 0..h {
        let (i, f, g, o) = (zi[j], zf[j], zg[j], zo[j]);
        let tc = tanh::<M>(c[j]);
        let d_h = dh[j];
        let d_c = M::mul_add(d_h * o, 1.0 - tc * tc, dc[j]);
        zo[j] = d_h * tc * o * (1.0 - o);
        zi[j] = d_c * g * i * (1.0 - i);
        zg[j] = d_c * i * (1.0 - g * g);
        zf[j] = d_c * c_prev[j] * f * (1.0 - f);
        dc[j] = d_c * f;
    }
}

#[inline(always)]
fn gru_forward_row<M: MulAdd>(
    g: &mut [f32],
    hp: &[f32],
    h_prev: &[f32],
    hn_out: &mut [f32],
    h_out: &mut [f32],
) {
    let h = h_out.len();
    let (gr, rest) = g.split_at_mut(h);
    let (gz, gn) = rest.split_at_mut(h);
    let (hr, rest) = hp.split_at(h);
    let (hz, hn) = rest.split_at(h);
    let (gn, hr, hz, hn) = (&mut gn[..h], &hr[..h], &hz[..h], &hn[..h]);
    let (h_prev, hn_out) = (&h_prev[..h], &mut hn_out[..h]);
    for j in 0..h {
        let r = sigmoid::<M>(gr[j] + hr[j]);
        let z = sigmoid::<M>(gz[j] + hz[j]);
        let n = tanh::<M>(M::mul_add(r, hn[j], gn[j]));
        gr[j] = r;
        gz[j] = z;
        gn[j] = n;
        hn_out[j] = hn[j];
        h_out[j] = M::mul_add(z, h_prev[j] - n, n);
    }
}

#[inline(always)]
fn gru_backward_row<M: MulAdd>(
    g: &mut [f32],
    dhp: &mut [f32],
    hn: &[f32],
    h_prev: &[f32],
    dh: &[f32],
    dh_prev: &mut [f32],
) {
    let h = dh_prev.len();
    let (gr, rest) = g.split_at_mut(h);
    let (gz, gn) = rest.split_at_mut(h);
    let (dr, rest) = dhp.split_at_mut(h);
    let (dz, dn) = rest.split_at_mut(h);
    let (gn, dr, dz, dn) = (&mut gn[..h], &mut dr[..h], &mut dz[..h], &mut dn[..h]);
    let (hn, h_prev, dh) = (&hn[..h], &h_prev[..h], &dh[..h]);
    for j in 0..h {
        let (r, z, n) = (gr[j], gz[j], gn[j]);
        let d_h = dh[j];
        let dn_pre = d_h * (1.0 - z) * (1.0 - n * n);
        let dr_pre = dn_pre * hn[j] * r * (1.0 - r);
        let dz_pre = d_h * (h_prev[j] - n) * z * (1.0 - z);
        gr[j] = dr_pre;
        gz[j] = dz_pre;
        gn[j] = dn_pre;
        dr[j] = dr_pre;
        dz[j] = dz_pre;
        dn[j] = dn_pre * r;
        dh_prev[j] = d_h * z;
    }
}

/// Log-softmax cross-entropy of one row of logits against `target`, and its gradient, in place.
///
/// Replaces the logits in `row` by `scale · (softmax(row) − onehot(target))` (the gradient of
/// `scale · loss`) and returns the loss `logsumexp(row) − row[target]` and the index of the
/// (first) largest logit.
#[inline(always)]
fn xent_row<M: MulAdd>(row: &mut [f32], target: usize, scale: f32) -> (f32, usize) {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(chunks.remainder()) {
        max = if v > max { v } else { max };
    }
    let arg_max = row.iter().position(|&v| v == max).unwrap_or(0);
    let picked = row[target];
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (v, s) in chunk.iter_mut().zip(sums.iter_mut()) {
            let e = exp::<M>(*v - max);
            *v = e;
            *s += e;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in chunks.into_remainder() {
        let e = exp::<M>(*v - max);
        *v = e;
        sum += e;
    }
    let k = scale / sum;
    for v in row.iter_mut() {
        *v *= k;
    }
    row[target] -= scale;
    (max + sum.ln() - picked, arg_max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn xent_row_avx2(row: &mut [f32], target: usize, scale: f32) -> (f32, usize) {
    xent_row::<Fused>(row, target, scale)
}

/// Cross-entropy of one row of logits, in place: see the private `xent_row`.
/// `target < row.len()`.
pub fn softmax_cross_entropy_row(row: &mut [f32], target: usize, scale: f32) -> (f32, usize) {
    assert!(target < row.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { xent_row_avx2(row, target, scale) };
    }
    xent_row::<Separate>(row, target, scale)
}

#[inline(always)]
fn exp_weights_impl<M: MulAdd>(x: &[f32], scale: f32, shift: f32, out: &mut [f32]) -> f64 {
    const LANES: usize = 16;
    let mut sums = [0.0f32; LANES];
    let mut o_chunks = out.chunks_exact_mut(LANES);
    let mut x_chunks = x.chunks_exact(LANES);
    for (o, xs) in (&mut o_chunks).zip(&mut x_chunks) {
        for ((o, &v), s) in o.iter_mut().zip(xs).zip(sums.iter_mut()) {
            // `v > -inf` is false for NaN and -inf: such entries get weight 0.
            let e = if v > f32::NEG_INFINITY {
                exp::<M>((v - shift) * scale)
            } else {
                0.0
            };
            *o = e;
            *s += e;
        }
    }
    let mut sum: f64 = sums.iter().map(|&s| s as f64).sum();
    for (o, &v) in o_chunks
        .into_remainder()
        .iter_mut()
        .zip(x_chunks.remainder())
    {
        let e = if v > f32::NEG_INFINITY {
            exp::<M>((v - shift) * scale)
        } else {
            0.0
        };
        *o = e;
        sum += e as f64;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_weights_avx2(x: &[f32], scale: f32, shift: f32, out: &mut [f32]) -> f64 {
    exp_weights_impl::<Fused>(x, scale, shift, out)
}

/// Writes `exp((x − shift)·scale)` into `out` (0 for NaN and −∞) and returns the sum: the
/// unnormalised softmax at temperature `1/scale` when `shift` is the maximum.
pub fn exp_weights(x: &[f32], scale: f32, shift: f32, out: &mut [f32]) -> f64 {
    assert_eq!(x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { exp_weights_avx2(x, scale, shift, out) };
    }
    exp_weights_impl::<Separate>(x, scale, shift, out)
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512f() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cell_forward_avx2(z: &mut [f32], c_prev: &[f32], c_out: &mut [f32], h_out: &mut [f32]) {
    cell_forward::<Fused>(z, c_prev, c_out, h_out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cell_backward_avx2(z: &mut [f32], c: &[f32], c_prev: &[f32], dh: &[f32], dc: &mut [f32]) {
    cell_backward::<Fused>(z, c, c_prev, dh, dc)
}

/// One LSTM step for one sequence.
///
/// `z` holds the pre-activations `i, f, g, o` (`4·hidden`) and is overwritten with the
/// activated gates; writes the new cell into `c_out` and the new hidden vector into `h_out`.
pub fn lstm_cell_forward(z: &mut [f32], c_prev: &[f32], c_out: &mut [f32], h_out: &mut [f32]) {
    let h = c_out.len();
    assert!(z.len() == 4 * h && c_prev.len() == h && h_out.len() == h);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { cell_forward_avx2(z, c_prev, c_out, h_out) };
        return;
    }
    cell_forward::<Separate>(z, c_prev, c_out, h_out)
}

/// Backward of one LSTM step for one sequence.
///
/// `z` holds the activated gates of the step and is overwritten with the gradient of the
/// pre-activations; `c` is the cell after the step, `c_prev` the one before, `dh` the gradient
/// of the step's hidden output. `dc` holds the gradient of `c` flowing back from later steps and
/// is replaced by the gradient of `c_prev`.
pub fn lstm_cell_backward(z: &mut [f32], c: &[f32], c_prev: &[f32], dh: &[f32], dc: &mut [f32]) {
    let h = dc.len();
    assert!(z.len() == 4 * h && c.len() == h && c_prev.len() == h && dh.len() == h);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { cell_backward_avx2(z, c, c_prev, dh, dc) };
        return;
    }
    cell_backward::<Separate>(z, c, c_prev, dh, dc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gru_forward_avx2(
    g: &mut [f32],
    hp: &[f32],
    h_prev: &[f32],
    hn_out: &mut [f32],
    h_out: &mut [f32],
) {
    gru_forward_row::<Fused>(g, hp, h_prev, hn_out, h_out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gru_backward_avx2(
    g: &mut [f32],
    dhp: &mut [f32],
    hn: &[f32],
    h_prev: &[f32],
    dh: &[f32],
    dh_prev: &mut [f32],
) {
    gru_backward_row::<Fused>(g, dhp, hn, h_prev, dh, dh_prev)
}

/// One GRU step for one sequence.
///
/// `g` holds the input projections `r, z, n` (`3·hidden`, `b_ih` included) and is overwritten with
/// the activated gates; `hp` is the recurrent projection (`b_hh` included). Writes its candidate
/// part `W_hn·h + b_hn` into `hn_out` and the new hidden vector into `h_out`.
pub fn gru_cell_forward(
    g: &mut [f32],
    hp: &[f32],
    h_prev: &[f32],
    hn_out: &mut [f32],
    h_out: &mut [f32],
) {
    let h = h_out.len();
    assert!(g.len() == 3 * h && hp.len() == 3 * h && h_prev.len() == h && hn_out.len() == h);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { gru_forward_avx2(g, hp, h_prev, hn_out, h_out) };
        return;
    }
    gru_forward_row::<Separate>(g, hp, h_prev, hn_out, h_out)
}

/// Backward of one GRU step for one sequence.
///
/// `g` holds the activated gates and is overwritten with the gradient of the input projections;
/// `dhp` receives the gradient of the recurrent projections. `hn` is the saved `W_hn·h + b_hn`,
/// `dh` the gradient of the step's output; `dh_prev` receives the part of the gradient of
/// `h_prev` that does not go through `W_hh` (the caller adds `dhp · W_hh`).
pub fn gru_cell_backward(
    g: &mut [f32],
    dhp: &mut [f32],
    hn: &[f32],
    h_prev: &[f32],
    dh: &[f32],
    dh_prev: &mut [f32],
) {
    let h = dh_prev.len();
    assert!(
        g.len() == 3 * h
            && dhp.len() == 3 * h
            && hn.len() == h
            && h_prev.len() == h
            && dh.len() == h
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { gru_backward_avx2(g, dhp, hn, h_prev, dh, dh_prev) };
        return;
    }
    gru_backward_row::<Separate>(g, dhp, hn, h_prev, dh, dh_prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = x.exp();
            let got = exp::<Separate>(x);
            worst = worst.max(((got - want) / want).abs());
            x += 0.01;
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert!(exp::<Separate>(f32::NAN).is_nan());
    }

    #[test]
    fn activations_match_std() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid::<Separate>(x) - s).abs() < 1e-6, "sigmoid({x})");
            assert!((tanh::<Separate>(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
            x += 0.003;
        }
        let tiny = sigmoid::<Separate>(-1000.0);
        assert!((0.0..1e-37).contains(&tiny), "sigmoid(-1000) = {tiny}");
        assert_eq!(sigmoid::<Separate>(1000.0), 1.0);
        assert_eq!(tanh::<Separate>(1000.0), 1.0);
        assert_eq!(tanh::<Separate>(-1000.0), -1.0);
    }
}
