//! A coarse first pass for whole-vocabulary cosine search: the unit table again in bfloat16
//! (half the bytes, so half the memory traffic of a query, which is what bounds it), with an
//! error bound that lets the exact pass look at only the few rows that can still be in the top
//! `k`. The answer is the exact one: see [`candidate_floor`].
use rayon::prelude::*;

/// Rows per parallel task (as for the exact pass).
const ROWS_PER_TASK: usize = 512;

/// The largest error of a bfloat16 similarity of two unit vectors: rounding each table value
/// to 8 significant bits moves it by at most half a unit in the last place, 2⁻⁸ of itself, so
/// the dot product moves by at most 2⁻⁸·Σ|qᵢxᵢ| ≤ 2⁻⁸·|q|·|x| = 2⁻⁸; the rest covers the f32
/// sums of both passes.
pub const COARSE_ERROR: f32 = 1.0 / 256.0 + 1e-4;

/// f32 to bfloat16 bits, rounding to nearest even (NaN stays NaN).
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// A table of unit rows in bfloat16, `dim` values a row.
#[derive(Debug, Clone)]
pub struct CoarseTable {
    bits: Vec<u16>,
    dim: usize,
}

impl CoarseTable {
    /// Rounds every value of the unit table `unit` (`dim` values a row).
    pub fn new(unit: &[f32], dim: usize) -> Self {
        CoarseTable {
            bits: unit.par_iter().map(|&v| to_bf16(v)).collect(),
            dim,
        }
    }

    /// `scale · (row · query)` for every row, in id order.
    pub fn similarities(&self, query: &[f32], scale: f32) -> Vec<f32> {
        let rows = self.bits.len().checked_div(self.dim).unwrap_or(0);
        let mut out = vec![0.0f32; rows];
        if self.dim == 0 {
            return out;
        }
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(self.bits.par_chunks(ROWS_PER_TASK * self.dim))
            .for_each(|(sims, block)| {
                for (s, row) in sims.iter_mut().zip(block.chunks_exact(self.dim)) {
                    *s = dot_bf16(row, query) * scale;
                }
            });
        out
    }
}

/// The lowest coarse similarity a row can have and still be among the `k` best exact ones:
/// the `k`-th best coarse similarity of the rows `keep` allows, less twice [`COARSE_ERROR`]
/// (those `k` rows are each at least that minus one error exactly, and a row that beats them
/// exactly is at most one error lower coarsely). `None` when fewer than `k` rows are kept: then
/// every kept row is a candidate.
pub fn candidate_floor(coarse: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Option<f32> {
    if k == 0 {
        return None;
    }
    let mut kept: Vec<f32> = coarse
        .iter()
        .enumerate()
        .filter(|&(id, s)| s.is_finite() && keep(id))
        .map(|(_, &s)| s)
        .collect();
    if kept.len() <= k {
        return None;
    }
    let (_, kth, _) = kept.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    Some(*kth - 2.0 * COARSE_ERROR)
}

fn dot_bf16_portable(row: &[u16], query: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (cr, cq) = (row.chunks_exact(LANES), query.chunks_exact(LANES));
    let tail: f32 = cr
        .remainder()
        .iter()
        .zip(cq.remainder())
        .map(|(&r, q)| f32::from_bits(u32::from(r) << 16) * q)
        .sum();
    for (r, q) in cr.zip(cq) {
        for i in 0..LANES {
            acc[i] += f32::from_bits(u32::from(r[i]) << 16) * q[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_bf16_avx2(row: &[u16], query: &[f32]) -> f32 {
    dot_bf16_portable(row, query)
}

/// `row · query` with the row in bfloat16 bits; AVX2 where the CPU has it.
fn dot_bf16(row: &[u16], query: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::fused::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { dot_bf16_avx2(row, query) };
    }
    dot_bf16_portable(row, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_specials() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        assert_eq!(f32::from_bits(u32::from(to_bf16(-2.5)) << 16), -2.5);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3F82);
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
        assert_eq!(to_bf16(f32::INFINITY), 0x7F80);
        for x in [0.1f32, -0.3, 0.007, 0.99] {
            let back = f32::from_bits(u32::from(to_bf16(x)) << 16);
            assert!((back - x).abs() <= x.abs() / 256.0, "{x} -> {back}");
        }
    }

    #[test]
    fn the_floor_is_the_kth_best_kept_less_two_errors() {
        let coarse = [0.5, 0.9, f32::NAN, 0.7, 0.8, 0.1];
        let floor = candidate_floor(&coarse, 2, |id| id != 1).unwrap();
        assert_eq!(floor, 0.7 - 2.0 * COARSE_ERROR);
        assert_eq!(candidate_floor(&coarse, 5, |_| true), None);
        assert_eq!(candidate_floor(&coarse, 0, |_| true), None);
    }
}
