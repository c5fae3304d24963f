//! The continuous cache pointer (Grave et al. 2017, "Improving Neural Language Models with a
//! Continuous Cache"): the last `window` top-layer hidden vectors of a stream, each stored with
//! the word that followed it, form a second distribution over the next word,
//!
//! `p_cache(w | h_t) ∝ Σ_i 1[x_{i+1} = w] · exp(θ · h_t·h_i)` over the cached positions `i < t`,
//!
//! mixed with the model's: `p(w) = (1 − λ) p_model(w) + λ p_cache(w)`.
//!
//! Only the target's probability is ever needed (mixing two distributions and then reading the
//! target is the same as mixing the two target probabilities), so the cache never builds a
//! vocabulary-sized vector: the dot products of a segment's hidden vectors with the cache are
//! one batched matrix product on the model's device, and the rest is a pass over them on the
//! host. Each column of a stream batch reads its own part of the text, so each column has its
//! own cache. A position never sees its own target: the cache holds positions strictly before it.
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::InferError;

/// Settings of the cache pointer (`--cache WINDOW[:θ:λ]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Cached positions per stream column (at least 1).
    pub window: usize,
    /// Sharpness θ of the attention over the cache (≥ 0). Default 0.662, the value AWD-LSTM's
    /// pointer script ships for WikiText-2; tune it with `--tune-cache`.
    pub theta: f64,
    /// Weight λ of the cache in the mixture, from 0 (the model alone) to below 1. Default 0.1.
    pub lambda: f64,
}

/// Default θ (see [`CacheConfig::theta`]).
pub const DEFAULT_THETA: f64 = 0.662;
/// Default λ (see [`CacheConfig::lambda`]).
pub const DEFAULT_LAMBDA: f64 = 0.1;
/// The θ values `--tune-cache` tries.
pub const THETA_GRID: [f64; 9] = [0.05, 0.1, 0.2, 0.3, 0.45, 0.662, 0.9, 1.2, 1.6];
/// The λ values `--tune-cache` tries.
pub const LAMBDA_GRID: [f64; 11] = [0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6];

impl CacheConfig {
    /// A cache of `window` positions with the default θ and λ.
    pub fn new(window: usize) -> Self {
        CacheConfig {
            window,
            theta: DEFAULT_THETA,
            lambda: DEFAULT_LAMBDA,
        }
    }

    /// Parses `WINDOW` or `WINDOW:θ:λ` (the `--cache` flag), with a one-line error naming the
    /// flag and what to give.
    pub fn parse(spec: &str) -> Result<Self, InferError> {
        let usage = "give --cache WINDOW or WINDOW:θ:λ (e.g. 2000 or 2000:0.662:0.1; WINDOW ≥ 1, θ ≥ 0, 0 ≤ λ < 1)";
        let bad = |what: String| InferError::Input(format!("--cache {spec:?}: {what}: {usage}"));
        let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
        let window = parts[0]
            .parse::<usize>()
            .ok()
            .filter(|&w| w >= 1)
            .ok_or_else(|| bad(format!("window {:?} is not a whole number ≥ 1", parts[0])))?;
        let number = |s: &str, name: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("{name} {s:?} is not a number")))
        };
        let config = match parts.len() {
            1 => CacheConfig::new(window),
            3 => CacheConfig {
                window,
                theta: number(parts[1], "θ")?,
                lambda: number(parts[2], "λ")?,
            },
            _ => return Err(bad("expected one or three fields".into())),
        };
        config.validate().map_err(|e| bad(e.to_string()))?;
        Ok(config)
    }

    /// Checks the ranges: window ≥ 1, θ ≥ 0, 0 ≤ λ < 1.
    pub fn validate(&self) -> Result<(), InferError> {
        if self.window == 0 {
            return Err(InferError::Input(
                "the cache window must be at least 1".into(),
            ));
        }
        if !(self.theta.is_finite() && self.theta >= 0.0) {
            return Err(InferError::Input(format!(
                "θ {} must be a number ≥ 0",
                self.theta
            )));
        }
        if !(0.0..1.0).contains(&self.lambda) {
            return Err(InferError::Input(format!(
                "λ {} must be at least 0 and below 1",
                self.lambda
            )));
        }
        Ok(())
    }
}

/// `p_cache(target)` from the dot products `scores[i] = h_t·h_i` of the cached positions and
/// the words `next[i]` that followed them, with sharpness `theta`; `None` for an empty cache.
/// Computed in f64 from the largest score, so no term overflows.
pub fn cache_probability(scores: &[f32], next: &[u32], target: u32, theta: f64) -> Option<f64> {
    debug_assert_eq!(scores.len(), next.len());
    if scores.is_empty() {
        return None;
    }
    let max = scores
        .iter()
        .map(|&s| f64::from(s))
        .reduce(f64::max)
        .unwrap_or(0.0);
    let (mut total, mut hit) = (0.0f64, 0.0f64);
    for (&s, &w) in scores.iter().zip(next) {
        let e = (theta * (f64::from(s) - max)).exp();
        total += e;
        if w == target {
            hit += e;
        }
    }
    Some(hit / total)
}

/// `ln((1 − λ) e^{log_model} + λ p_cache)`: exactly `log_model` when λ = 0 or the cache is
/// empty.
pub fn mix_log_prob(log_model: f64, p_cache: Option<f64>, lambda: f64) -> f64 {
    match p_cache {
        Some(p) if lambda > 0.0 => {
            ((1.0 - lambda) * log_model.exp() + lambda * p).ln().max(
                // When p_model underflows in f64 and the cache holds nothing for the target.
                log_model + (1.0 - lambda).ln(),
            )
        }
        _ => log_model,
    }
}

/// The cache of a stream read in batches of columns: per column, the last `window` hidden
/// vectors (on the model's device, `[columns, len, hidden]`) and the words that followed them
/// (on the host).
pub struct StreamCache {
    window: usize,
    hidden: Option<Tensor<3>>,
    next: Vec<Vec<u32>>,
}

impl StreamCache {
    /// An empty cache of `window` positions per column.
    pub fn new(window: usize) -> Self {
        StreamCache {
            window,
            hidden: None,
            next: Vec::new(),
        }
    }

    /// Reads one segment: `hidden` `[columns, steps, hidden]` (detached) and `targets`
    /// (`[columns, steps]`, row-major: the word that follows each position). Calls
    /// `each(column, step, scores, next)` for every position with the dot products of its
    /// hidden vector with the positions before it in the cache (oldest first) and their next
    /// words, then appends the segment to the cache.
    pub fn read_segment(
        &mut self,
        hidden: Tensor<3>,
        targets: &[u32],
        mut each: impl FnMut(usize, usize, &[f32], &[u32]),
    ) -> Result<(), InferError> {
        let [columns, steps, _] = hidden.dims();
        if self.next.len() != columns {
            self.next = vec![Vec::new(); columns];
            self.hidden = None;
        }
        let before = self.hidden.as_ref().map_or(0, |h| h.dims()[1]);
        let all = match self.hidden.take() {
            Some(old) => Tensor::cat(vec![old, hidden], 1),
            None => hidden,
        };
        let len = before + steps;
        // [columns, steps, len]: each position of the segment against every cached one.
        let current = all.clone().narrow(1, before, steps);
        let scores: Vec<f32> = current
            .matmul(all.clone().swap_dims(1, 2))
            .try_into_vec_as::<f32>()
            .map_err(|e| {
                InferError::Device(format!("cannot read the cache scores from the device: {e}"))
            })?;
        for (c, next) in self.next.iter_mut().enumerate() {
            next.extend_from_slice(&targets[c * steps..(c + 1) * steps]);
            for t in 0..steps {
                // Positions before this one, at most `window` of them.
                let end = before + t;
                let start = end.saturating_sub(self.window);
                let row = &scores[(c * steps + t) * len..(c * steps + t + 1) * len];
                each(c, t, &row[start..end], &next[start..end]);
            }
        }
        let keep = len.min(self.window);
        self.hidden = Some(all.narrow(1, len - keep, keep));
        for next in &mut self.next {
            next.drain(..len - keep);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn parses_and_refuses_specs() {
        assert_eq!(CacheConfig::parse("100").unwrap(), CacheConfig::new(100));
        let c = CacheConfig::parse("50:0.3:0.2").unwrap();
        assert_eq!((c.window, c.theta, c.lambda), (50, 0.3, 0.2));
        for bad in [
            "0",
            "100:x",
            "100:0.3",
            "-1",
            "100:0.3:1",
            "100:-1:0.1",
            "1:2:3:4",
            "",
        ] {
            let e = CacheConfig::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--cache") && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn cache_probability_matches_a_hand_computation() {
        // Scores 1, 2, 0.5 with next words 7, 3, 7 and θ = 0.5:
        // p(7) = (e^0.5 + e^0.25) / (e^0.5 + e^1 + e^0.25).
        let p = cache_probability(&[1.0, 2.0, 0.5], &[7, 3, 7], 7, 0.5).unwrap();
        let (a, b, c) = (0.5f64.exp(), 1.0f64.exp(), 0.25f64.exp());
        assert!((p - (a + c) / (a + b + c)).abs() < 1e-12, "{p}");
        assert_eq!(cache_probability(&[1.0], &[3], 4, 1.0), Some(0.0));
        assert_eq!(cache_probability(&[], &[], 4, 1.0), None);
        // θ = 0: uniform over the cached positions.
        assert_eq!(cache_probability(&[9.0, -9.0], &[1, 2], 2, 0.0), Some(0.5));
    }

    #[test]
    fn lambda_zero_or_an_empty_cache_is_the_model() {
        let a = 0.3f64.ln();
        assert_eq!(mix_log_prob(a, Some(0.9), 0.0), a);
        assert_eq!(mix_log_prob(a, None, 0.5), a);
        let got = mix_log_prob(a, Some(0.6), 0.25).exp();
        assert!((got - (0.75 * 0.3 + 0.25 * 0.6)).abs() < 1e-12);
        assert!(mix_log_prob(-2000.0, Some(0.0), 0.1).is_finite());
    }

    /// Two columns, hidden width 2, two segments: every position's scores are the dot products
    /// with the positions before it in its own column, at most `window` of them.
    #[test]
    fn stream_cache_sees_only_earlier_positions_of_its_column() {
        let device = Device::flex();
        // Column c, step t has hidden vector (c + 1, t + 1) across the whole stream.
        let segment = |first: usize, steps: usize| {
            let mut v = Vec::new();
            for c in 0..2 {
                for t in first..first + steps {
                    v.push((c + 1) as f32);
                    v.push((t + 1) as f32);
                }
            }
            Tensor::<3>::from_data(TensorData::new(v, [2, steps, 2]), &device)
        };
        let targets = |first: usize, steps: usize| -> Vec<u32> {
            (0..2)
                .flat_map(|c| (first..first + steps).map(move |t| (100 * c + t) as u32))
                .collect()
        };
        let mut cache = StreamCache::new(2);
        let mut seen = Vec::new();
        for (first, steps) in [(0, 3), (3, 2)] {
            cache
                .read_segment(
                    segment(first, steps),
                    &targets(first, steps),
                    |c, t, s, n| seen.push((c, first + t, s.to_vec(), n.to_vec())),
                )
                .unwrap();
        }
        let dot = |c: usize, a: usize, b: usize| ((c + 1) * (c + 1) + (a + 1) * (b + 1)) as f32;
        for (c, t, scores, next) in seen {
            let earlier: Vec<usize> = (t.saturating_sub(2)..t).collect();
            assert_eq!(
                next,
                earlier
                    .iter()
                    .map(|&i| (100 * c + i) as u32)
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                scores,
                earlier.iter().map(|&i| dot(c, t, i)).collect::<Vec<_>>()
            );
        }
    }
}
