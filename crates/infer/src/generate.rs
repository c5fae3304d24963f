//! Stateful generation and scoring: the prompt runs once, then every new token costs one step.
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor};
use lstm_lm_model::fused::{self, HostLanguageModel, HostState};
use lstm_lm_model::{LanguageModel, RecurrentState};
use rand::Rng;

use crate::InferError;
use crate::data;

/// How the next token is picked from the model's distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Divide logits by this before the softmax (must be > 0). Default 1.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens. Default none.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (0 < p ≤ 1).
    pub top_p: Option<f64>,
    /// Always take the most likely token (ignores the other fields).
    pub greedy: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            greedy: false,
        }
    }
}

impl SamplingConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), InferError> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(InferError::Input(format!(
                "--temperature {} must be a positive number",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(InferError::Input("--top-k must be at least 1".into()));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(InferError::Input(format!("--top-p {p} must be in (0, 1]")));
        }
        Ok(())
    }

    /// Whether this samples from the whole distribution at its temperature (no top-k, no
    /// top-p, not greedy).
    fn is_plain(&self) -> bool {
        !self.greedy && self.top_k.is_none() && self.top_p.is_none_or(|p| p >= 1.0)
    }

    /// Picks a token id from `logits`; ids in `banned` (e.g. padding) are never picked.
    pub fn sample<R: Rng + ?Sized>(&self, logits: &[f32], banned: &[u32], rng: &mut R) -> u32 {
        let allowed = |i: usize| !banned.contains(&(i as u32));
        if self.greedy {
            return logits
                .iter()
                .enumerate()
                .filter(|(i, _)| allowed(*i))
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u32)
                .unwrap_or(0);
        }
        if self.is_plain() {
            return sample_full(logits, banned, self.temperature, rng);
        }
        CANDIDATES.with_borrow_mut(|cand| self.sample_truncated(logits, &allowed, cand, rng))
    }

    /// Top-k and top-p sampling over `cand`, a buffer kept from call to call.
    fn sample_truncated<R: Rng + ?Sized>(
        &self,
        logits: &[f32],
        allowed: &impl Fn(usize) -> bool,
        cand: &mut Vec<(u32, f64)>,
        rng: &mut R,
    ) -> u32 {
        let inv_t = 1.0 / self.temperature;
        cand.clear();
        cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(i, v)| allowed(*i) && v.is_finite())
                .map(|(i, &v)| (i as u32, v as f64 * inv_t)),
        );
        if cand.is_empty() {
            return 0;
        }
        if let Some(k) = self.top_k
            && k < cand.len()
        {
            // Partial selection: O(V) instead of a full sort.
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cand.truncate(k);
        }
        let max = cand.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max);
        let mut total = 0.0;
        for c in cand.iter_mut() {
            c.1 = (c.1 - max).exp();
            total += c.1;
        }
        if let Some(p) = self.top_p
            && p < 1.0
        {
            cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
            let mut acc = 0.0;
            let mut keep = cand.len();
            for (i, c) in cand.iter().enumerate() {
                acc += c.1 / total;
                if acc >= p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
            total = cand.iter().map(|c| c.1).sum();
        }
        let mut r = rng.random::<f64>() * total;
        for c in cand.iter() {
            r -= c.1;
            if r <= 0.0 {
                return c.0;
            }
        }
        cand[cand.len() - 1].0
    }
}

thread_local! {
    /// Per-thread buffer for the softmax weights of [`sample_full`], so sampling allocates once.
    static WEIGHTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Per-thread buffer for the candidates of top-k and top-p sampling, likewise.
    static CANDIDATES: std::cell::RefCell<Vec<(u32, f64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Sampling from the whole distribution at `temperature`: one vectorised pass for the maximum,
/// one for the weights, and a draw that skips whole blocks of weights by their sums; no
/// allocation after the first call on a thread.
fn sample_full<R: Rng + ?Sized>(
    logits: &[f32],
    banned: &[u32],
    temperature: f64,
    rng: &mut R,
) -> u32 {
    let max = allowed_max(logits, banned);
    if max == f32::NEG_INFINITY {
        return 0;
    }
    WEIGHTS.with_borrow_mut(|w| {
        let total = softmax_weights(logits, (1.0 / temperature) as f32, max, banned, w);
        draw(w, rng.random::<f64>() * total)
    })
}

/// Writes the unnormalised softmax weights `exp((logit − max)·scale)` into `w`, 0 for banned
/// ids, and returns their total, summed by the same blocks [`draw`] skips by: a total taken
/// before the banned weights were removed could have lost the allowed ones to rounding (a banned
/// id far more likely than every allowed one), and one summed otherwise than `draw` sums could
/// leave the last ids unreachable.
fn softmax_weights(logits: &[f32], scale: f32, max: f32, banned: &[u32], w: &mut Vec<f32>) -> f64 {
    w.resize(logits.len(), 0.0);
    fused::exp_weights(logits, scale, max, w);
    for &b in banned {
        if let Some(x) = w.get_mut(b as usize) {
            *x = 0.0;
        }
    }
    w.chunks(DRAW_BLOCK).map(block_sum).sum()
}

/// The largest finite logit whose id is not banned (−∞ when there is none).
fn allowed_max(logits: &[f32], banned: &[u32]) -> f32 {
    const LANES: usize = 16;
    // Lane-wise maxima (a comparison and a select per element, which vectorises).
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v.is_finite() && v > *m { v } else { *m };
        }
    }
    let max = lanes
        .into_iter()
        .chain(tail.iter().copied().filter(|v| v.is_finite()))
        .fold(f32::NEG_INFINITY, f32::max);
    // A banned id may hold that maximum; then look again without the banned ids.
    if banned.iter().any(|&b| logits.get(b as usize) == Some(&max)) {
        return logits
            .iter()
            .enumerate()
            .filter(|&(i, v)| v.is_finite() && !banned.contains(&(i as u32)))
            .map(|(_, &v)| v)
            .fold(f32::NEG_INFINITY, f32::max);
    }
    max
}

/// Weights per block of [`draw`].
const DRAW_BLOCK: usize = 64;

/// The index where the running sum of `weights` passes `r` (`0 ≤ r ≤` their sum), skipping
/// blocks whose whole sum stays below what is left of `r`; the last positive weight when
/// rounding leaves `r` beyond the end.
fn draw(weights: &[f32], mut r: f64) -> u32 {
    const BLOCK: usize = DRAW_BLOCK;
    let mut last = 0;
    for (b, block) in weights.chunks(BLOCK).enumerate() {
        let sum = block_sum(block);
        if sum < r {
            r -= sum;
            if sum > 0.0
                && let Some(i) = block.iter().rposition(|&x| x > 0.0)
            {
                last = b * BLOCK + i;
            }
            continue;
        }
        for (i, &x) in block.iter().enumerate() {
            if x > 0.0 {
                last = b * BLOCK + i;
                r -= x as f64;
                if r <= 0.0 {
                    return last as u32;
                }
            }
        }
    }
    last as u32
}

/// Sum of a block of weights in `f64`, eight partial sums at a time.
fn block_sum(block: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = block.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| x as f64).sum();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Proposals drawn before [`sample_with_proposal`] gives up (each is accepted with probability
/// at least `exp(−2·error/T)`, so this is reached only when the bound is very loose).
const MAX_PROPOSALS: usize = 64;

/// Largest `bound/T` for which sampling proposes from the approximate logits (acceptance at
/// least about `exp(−2·bound/T)`, typically `exp(−bound/T)`).
const MAX_ERROR_PER_TEMPERATURE: f64 = 2.0;

/// Margin, in units of `logit/T`, for the rounding of the proposal weights (their `exp` and
/// the subtraction before it are good to about 1e-5).
const WEIGHT_MARGIN: f64 = 1e-4;

/// Draws from the softmax of the exact logits at `temperature` (banned ids excluded) while
/// reading only approximate ones: `approx[i]` is within `error` of `exact(i)`. A token is
/// proposed from the approximate softmax and accepted with probability
/// `exp((exact − approx − error)/T)`, which is at most 1; this is rejection sampling, so what
/// comes out follows the exact distribution, and only the proposed tokens' exact logits are
/// computed. `None` when [`MAX_PROPOSALS`] are rejected (the caller then samples from the exact
/// logits, which keeps the distribution exact), and when a logit is not finite or a proposed
/// token shows the bound broken (which only a bug in the bound could do, and which is caught
/// only on the tokens proposed).
fn sample_with_proposal<R: Rng + ?Sized>(
    approx: &[f32],
    error: f64,
    exact: impl Fn(usize) -> f32,
    temperature: f64,
    banned: &[u32],
    rng: &mut R,
) -> Option<u32> {
    let max = allowed_max(approx, banned);
    if max == f32::NEG_INFINITY || !error.is_finite() {
        return None;
    }
    let scale = 1.0 / temperature;
    let bound = error * scale + WEIGHT_MARGIN;
    WEIGHTS.with_borrow_mut(|w| {
        let total = softmax_weights(approx, scale as f32, max, banned, w);
        if !(total > 0.0 && total.is_finite()) {
            return None;
        }
        for _ in 0..MAX_PROPOSALS {
            let i = draw(w, rng.random::<f64>() * total) as usize;
            // Target weight over proposal weight, over the bound on that ratio.
            let log_target = (f64::from(exact(i)) - f64::from(max)) * scale;
            let accept = (log_target - bound).exp() / f64::from(w[i]);
            // Above 1 the bound is broken; NaN means a logit is not finite.
            if accept > 1.0 || accept.is_nan() {
                return None;
            }
            if rng.random::<f64>() < accept {
                return Some(i as u32);
            }
        }
        None
    })
}

/// The id of the largest exact logit (the last one on ties, as [`SamplingConfig::sample`]
/// picks), banned ids excluded, computing exact logits only for the ids whose approximate
/// logit, within `error_of(i)` of the exact one, could still be the largest. `None` when an
/// exact logit is not finite or nothing is allowed.
fn argmax_with_proposal(
    approx: &[f32],
    error_of: impl Fn(usize) -> f32,
    exact: impl Fn(usize) -> f32,
    banned: &[u32],
) -> Option<u32> {
    let allowed = |i: usize| !banned.contains(&(i as u32));
    let floor = approx
        .iter()
        .enumerate()
        .filter(|&(i, v)| v.is_finite() && allowed(i))
        .map(|(i, &v)| v - error_of(i))
        .fold(f32::NEG_INFINITY, f32::max);
    if !floor.is_finite() {
        return None;
    }
    let mut best: Option<(u32, f32)> = None;
    for (i, &v) in approx.iter().enumerate() {
        // NaN approximations were left out of the floor and are left out here.
        if v.is_nan() || v + error_of(i) < floor || !allowed(i) {
            continue;
        }
        let e = exact(i);
        if !e.is_finite() {
            return None;
        }
        // `total_cmp`, as `SamplingConfig::sample` ranks (+0 above −0); the later id on ties.
        if best.is_none_or(|(_, b)| e.total_cmp(&b).is_ge()) {
            best = Some((i as u32, e));
        }
    }
    best.map(|(i, _)| i)
}

/// The next token from the host model without its full output projection (greedy, or plain
/// sampling at a temperature); `None` when this sampling needs the exact logits, or when the
/// proposal is slower than they are on this CPU (no AVX-512 VNNI) unless `even_if_slow`.
fn sample_on_host<R: Rng + ?Sized>(
    sampling: &SamplingConfig,
    model: &HostLanguageModel,
    state: &mut HostState,
    banned: &[u32],
    rng: &mut R,
    even_if_slow: bool,
) -> Option<u32> {
    let fast = even_if_slow || fused::proposal_is_fast();
    if !(sampling.greedy || sampling.is_plain()) || !fast {
        return None;
    }
    // Each proposal is accepted with probability at least about exp(−bound/T) (the bound on
    // the logits' error); at low temperatures that makes rejections too frequent to pay off.
    let limit = if sampling.greedy {
        f32::INFINITY
    } else {
        (MAX_ERROR_PER_TEMPERATURE * sampling.temperature) as f32
    };
    if !model.propose_within(state, limit) {
        return None;
    }
    let state = &*state;
    let exact = |i: usize| model.exact_logit(state, i);
    if sampling.greedy {
        argmax_with_proposal(
            state.proposal(),
            |i| model.proposal_error(state, i),
            exact,
            banned,
        )
    } else {
        sample_with_proposal(
            state.proposal(),
            f64::from(model.max_proposal_error(state)),
            exact,
            sampling.temperature,
            banned,
            rng,
        )
    }
}

/// A model plus its carried state: feed ids, read the next-token distribution.
///
/// On the CPU backends the model runs on the host ([`HostLanguageModel`]: matrix-vector
/// products into reused buffers, no tensor operations per token); elsewhere (wgpu) as tensor
/// operations on the device.
pub struct Generator {
    engine: Engine,
    /// Propose through the 8-bit copy even where that is slower than the exact logits (a test
    /// switch, so that the path runs on CPUs without AVX-512 VNNI too).
    propose_even_if_slow: bool,
}

/// A generator's carried state, taken by [`Generator::snapshot`].
#[derive(Clone)]
pub struct GeneratorState(SavedState);

#[derive(Clone)]
enum SavedState {
    Host {
        state: HostState,
        logits: HostLogits,
    },
    Device {
        state: Option<RecurrentState>,
        logits: Option<Vec<f32>>,
    },
}

/// What [`HostState::logits`] holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HostLogits {
    /// Nothing was fed yet.
    NotFed,
    /// Not computed for the last token fed (the projection runs only when asked for).
    Stale,
    /// The exact logits after the last token fed.
    Exact,
}

enum Engine {
    Host {
        model: Box<HostLanguageModel>,
        state: HostState,
        logits: HostLogits,
    },
    Device {
        model: Box<LanguageModel>,
        device: Device,
        state: Option<RecurrentState>,
        logits: Option<Vec<f32>>,
    },
}

impl Generator {
    /// Wraps an inference model (no autodiff) on `device`.
    pub fn new(model: LanguageModel, device: Device) -> Self {
        let engine = if fused::enabled() && fused::supports(&device) {
            let host = HostLanguageModel::new(&model);
            Engine::Host {
                state: host.zero_state(),
                model: Box::new(host),
                logits: HostLogits::NotFed,
            }
        } else {
            Engine::Device {
                model: Box::new(model),
                device,
                state: None,
                logits: None,
            }
        };
        Generator {
            engine,
            propose_even_if_slow: false,
        }
    }

    /// Runs `ids` through the model, carrying the state.
    ///
    /// # Errors
    /// [`InferError::Device`] when the device's logits cannot be read back (on the host nothing
    /// can fail).
    pub fn feed(&mut self, ids: &[u32]) -> Result<(), InferError> {
        if ids.is_empty() {
            return Ok(());
        }
        match &mut self.engine {
            Engine::Host {
                model,
                state,
                logits,
            } => {
                for &id in ids {
                    model.advance(id, state);
                }
                *logits = HostLogits::Stale;
            }
            Engine::Device {
                model,
                device,
                state,
                logits,
            } => {
                let input = data::ids_tensor(ids, 1, ids.len(), device);
                let (out, next) = model.forward_last(input, state.take());
                *state = Some(next);
                // Forget the previous step's logits first: after a failed read they are stale.
                *logits = None;
                // `try_`: a device that fails to hand the logits back is an error to report,
                // where `into_data` would panic.
                *logits = Some(out.try_into_vec_as::<f32>().map_err(|e| {
                    InferError::Device(format!(
                        "cannot read the next-token logits back from the device: {e}"
                    ))
                })?);
            }
        }
        Ok(())
    }

    /// A copy of the carried state (and the logits it ends on), for [`restore`](Self::restore):
    /// beam search keeps one per hypothesis.
    pub fn snapshot(&self) -> GeneratorState {
        match &self.engine {
            Engine::Host { state, logits, .. } => GeneratorState(SavedState::Host {
                state: state.clone(),
                logits: *logits,
            }),
            Engine::Device { state, logits, .. } => GeneratorState(SavedState::Device {
                state: state.clone(),
                logits: logits.clone(),
            }),
        }
    }

    /// Goes back to a state taken by [`snapshot`](Self::snapshot) of this generator.
    pub fn restore(&mut self, saved: &GeneratorState) {
        match (&mut self.engine, saved) {
            (
                Engine::Host { state, logits, .. },
                GeneratorState(SavedState::Host {
                    state: s,
                    logits: l,
                }),
            ) => {
                state.clone_from(s);
                *logits = *l;
            }
            (
                Engine::Device { state, logits, .. },
                GeneratorState(SavedState::Device {
                    state: s,
                    logits: l,
                }),
            ) => {
                state.clone_from(s);
                logits.clone_from(l);
            }
            // A snapshot of another engine cannot come from this generator; start over.
            _ => self.reset(),
        }
    }

    /// Forgets everything fed so far: the next [`feed`](Self::feed) starts from a zero state.
    pub fn reset(&mut self) {
        match &mut self.engine {
            Engine::Host {
                model,
                state,
                logits,
            } => {
                *state = model.zero_state();
                *logits = HostLogits::NotFed;
            }
            Engine::Device { state, logits, .. } => {
                *state = None;
                *logits = None;
            }
        }
    }

    /// The next-token logits after everything fed so far (`None` before the first feed).
    pub fn logits(&mut self) -> Option<&[f32]> {
        match &mut self.engine {
            Engine::Host {
                model,
                state,
                logits,
            } => match logits {
                HostLogits::NotFed => None,
                HostLogits::Stale => {
                    model.project(state);
                    *logits = HostLogits::Exact;
                    Some(state.logits())
                }
                HostLogits::Exact => Some(state.logits()),
            },
            Engine::Device { logits, .. } => logits.as_deref(),
        }
    }

    /// Picks the next token after everything fed so far, as [`SamplingConfig::sample`] picks
    /// from [`logits`](Self::logits) (`None` before the first feed).
    ///
    /// On the host, greedy choice and plain sampling at a temperature do not compute the full
    /// output projection: they read an 8-bit copy of it and compute exact logits only for the
    /// tokens that could be the answer (greedy) or that are proposed (sampling, by rejection
    /// against the exact logit). The result follows the same distribution as sampling from the
    /// exact logits, though not the same random stream.
    pub fn sample<R: Rng + ?Sized>(
        &mut self,
        sampling: &SamplingConfig,
        banned: &[u32],
        rng: &mut R,
    ) -> Option<u32> {
        if let Engine::Host {
            model,
            state,
            logits: HostLogits::Stale,
        } = &mut self.engine
            && let Some(id) = sample_on_host(
                sampling,
                model,
                state,
                banned,
                rng,
                self.propose_even_if_slow,
            )
        {
            return Some(id);
        }
        let logits = self.logits()?;
        Some(sampling.sample(logits, banned, rng))
    }
}

/// Log-probability (natural log) of each of `ids[from..]` given everything before it, with the
/// model starting from a zero state. Returns one value per scored position.
pub fn score_ids(
    model: &LanguageModel,
    ids: &[u32],
    from: usize,
    device: &Device,
) -> Result<Vec<f64>, InferError> {
    if ids.len() < 2 || from >= ids.len() || from == 0 {
        return Err(InferError::Input(
            "the text is too short to score: it needs at least one token after the context".into(),
        ));
    }
    let n = ids.len() - 1;
    let input = data::ids_tensor(&ids[..n], 1, n, device);
    let (logits, _) = model.forward(input, None);
    let [_, t, v] = logits.dims();
    let logp = log_softmax(logits.reshape([t, v]), 1);
    let targets = data::targets_tensor(&ids[1..], device).reshape([n, 1]);
    let picked: Tensor<2> = logp.gather(1, targets);
    let values = picked.try_into_vec_as::<f32>().map_err(|e| {
        InferError::Device(format!("cannot read the scores back from the device: {e}"))
    })?;
    Ok(values[from - 1..].iter().map(|&x| x as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The draw that skips blocks picks what a plain running sum picks, on weights whose sums
    /// are exact (small integers), for every boundary and between them.
    #[test]
    fn block_draw_matches_the_running_sum() {
        let weights: Vec<f32> = (0..1000).map(|i| ((i * 37) % 5) as f32).collect();
        let plain = |mut r: f64| -> u32 {
            let mut last = 0;
            for (i, &x) in weights.iter().enumerate() {
                if x > 0.0 {
                    last = i;
                    r -= x as f64;
                    if r <= 0.0 {
                        return i as u32;
                    }
                }
            }
            last as u32
        };
        let total: f64 = weights.iter().map(|&x| x as f64).sum();
        let mut r = 0.0;
        while r <= total + 1.0 {
            assert_eq!(draw(&weights, r), plain(r), "r = {r}");
            r += 0.5;
        }
    }

    /// Exact logits, and approximate ones off by up to 1 in both directions: proposals come
    /// from a distribution far from the exact one, and what is accepted must follow the exact
    /// one (banned ids never), at two temperatures.
    #[test]
    fn rejection_follows_the_exact_distribution_not_the_proposal() {
        let exact = [0.0f32, 1.0, -0.5, 2.0, 0.3, 1.5];
        let noise = [1.0f32, -1.0, 0.8, -0.9, 0.5, -0.7];
        let approx: Vec<f32> = exact.iter().zip(&noise).map(|(e, n)| e + n).collect();
        let banned = [2u32];
        let softmax = |logits: &[f32], t: f64| -> Vec<f64> {
            let w: Vec<f64> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| {
                    if banned.contains(&(i as u32)) {
                        0.0
                    } else {
                        (l as f64 / t).exp()
                    }
                })
                .collect();
            let total: f64 = w.iter().sum();
            w.iter().map(|x| x / total).collect()
        };
        for t in [1.0, 0.7] {
            let want = softmax(&exact, t);
            let proposal = softmax(&approx, t);
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            let n = 40_000;
            let mut c = [0usize; 6];
            for _ in 0..n {
                let i = sample_with_proposal(&approx, 1.0, |i| exact[i], t, &banned, &mut rng)
                    .expect("the bound holds");
                c[i as usize] += 1;
            }
            let mut farthest = 0.0f64;
            for i in 0..6 {
                let got = c[i] as f64 / n as f64;
                assert!(
                    (got - want[i]).abs() < 0.012,
                    "T={t} id {i}: {got} vs {}",
                    want[i]
                );
                farthest = farthest.max((proposal[i] - want[i]).abs());
            }
            assert_eq!(c[2], 0);
            // Sampling the proposal itself would fail the check above by a wide margin.
            assert!(farthest > 0.1, "{farthest}");
        }
    }

    /// A banned id far more likely than all the others: the allowed ones share the rest evenly
    /// and every one of them can be drawn, from the exact logits and through a proposal.
    #[test]
    fn a_dominant_banned_id_leaves_the_others_evenly_likely() {
        let mut logits = vec![0.0f32; 32];
        logits[5] = 40.0;
        let n = 31_000;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut exact = [0usize; 32];
        let mut proposed = [0usize; 32];
        for _ in 0..n {
            exact[SamplingConfig::default().sample(&logits, &[5], &mut rng) as usize] += 1;
            let id = sample_with_proposal(&logits, 0.01, |i| logits[i], 1.0, &[5], &mut rng)
                .expect("the bound holds");
            proposed[id as usize] += 1;
        }
        for c in [exact, proposed] {
            assert_eq!(c[5], 0);
            for (i, &k) in c.iter().enumerate().filter(|&(i, _)| i != 5) {
                let share = k as f64 / n as f64;
                assert!((share - 1.0 / 31.0).abs() < 0.008, "id {i}: {share}");
            }
        }
    }

    #[test]
    fn a_broken_bound_gives_up_instead_of_sampling_wrongly() {
        let exact = [0.0f32, 3.0, 1.0];
        let approx = [0.0f32, 1.0, 1.0]; // id 1 is 2 above its approximation; the bound says 0.1
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let gave_up = (0..200)
            .filter(|_| {
                sample_with_proposal(&approx, 0.1, |i| exact[i], 1.0, &[], &mut rng).is_none()
            })
            .count();
        assert!(gave_up > 0);
    }

    /// The arg max through approximate logits is the exact arg max (the last one on ties,
    /// banned ids skipped), and only the ids that could win get their exact logit computed.
    #[test]
    fn the_arg_max_through_bounds_is_the_exact_arg_max() {
        let v = 500;
        let exact: Vec<f32> = (0..v).map(|i| ((i * 7919) % 997) as f32 / 100.0).collect();
        let noise = |i: usize| ((i * 31) % 11) as f32 / 100.0 - 0.05; // within 0.05
        let approx: Vec<f32> = (0..v).map(|i| exact[i] + noise(i)).collect();
        let plain = |banned: &[u32]| {
            SamplingConfig {
                greedy: true,
                ..Default::default()
            }
            .sample(&exact, banned, &mut ChaCha8Rng::seed_from_u64(0))
        };
        let computed = std::cell::Cell::new(0);
        let exact_of = |i: usize| {
            computed.set(computed.get() + 1);
            exact[i]
        };
        let best = plain(&[]);
        assert_eq!(
            argmax_with_proposal(&approx, |_| 0.05, exact_of, &[]),
            Some(best)
        );
        assert!(computed.get() < v / 10, "{} exact logits", computed.get());
        assert_eq!(
            argmax_with_proposal(&approx, |_| 0.05, |i| exact[i], &[best]),
            Some(plain(&[best]))
        );
        let ties = [1.0f32, 2.0, 0.5, 2.0];
        assert_eq!(
            argmax_with_proposal(&ties, |_| 0.0, |i| ties[i], &[]),
            Some(3)
        );
    }

    /// On the host, greedy picks through the 8-bit proposal are the arg max of the exact
    /// logits at every step, and plain sampling at a temperature follows their softmax: with
    /// the AVX-512 VNNI sums, which only such CPUs have (SKIPPED elsewhere).
    #[test]
    fn host_sampling_through_the_proposal_matches_the_exact_logits() {
        if !fused::proposal_is_fast() {
            eprintln!(
                "SKIPPED host_sampling_through_the_proposal_matches_the_exact_logits: this CPU has no AVX-512 VNNI, so the sampler does not propose (the portable loop is checked by host_sampling_through_the_portable_proposal_matches_the_exact_logits)"
            );
            return;
        }
        check_sampling_through_the_proposal(false);
    }

    /// The same with the portable loop forced, and the proposal used although it is slower
    /// there: on every CPU.
    #[test]
    fn host_sampling_through_the_portable_proposal_matches_the_exact_logits() {
        check_sampling_through_the_proposal(true);
    }

    fn check_sampling_through_the_proposal(portable: bool) {
        use lstm_lm_model::LanguageModelConfig;
        let device = Device::flex();
        device.seed(9);
        let model = LanguageModelConfig::new(40)
            .with_embedding_size(16)
            .with_hidden_size(32)
            .init(&device)
            .unwrap();
        let mut quick = Generator::new(model.clone(), device.clone());
        let mut exact = Generator::new(model, device);
        if portable {
            let Engine::Host { model, .. } = &mut quick.engine else {
                panic!("the flex device runs on the host");
            };
            model.use_portable_proposal();
            quick.propose_even_if_slow = true;
        }
        let greedy = SamplingConfig {
            greedy: true,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        quick.feed(&[1, 2, 3]).unwrap();
        exact.feed(&[1, 2, 3]).unwrap();
        for step in 0..30 {
            let want = greedy.sample(exact.logits().unwrap(), &[5], &mut rng);
            let got = quick.sample(&greedy, &[5], &mut rng).unwrap();
            assert_eq!(got, want, "step {step}");
            quick.feed(&[got]).unwrap();
            exact.feed(&[got]).unwrap();
        }
        {
            // Both go through the proposal here, not the exact logits.
            let even_if_slow = quick.propose_even_if_slow;
            let Engine::Host { model, state, .. } = &mut quick.engine else {
                panic!("the flex device runs on the host");
            };
            let plain = SamplingConfig::default();
            for cfg in [&greedy, &plain] {
                assert!(sample_on_host(cfg, model, state, &[], &mut rng, even_if_slow).is_some());
            }
        }
        // 0.05: sharp enough that the distribution is far from uniform (the sampler may fall
        // back to the exact logits there); 1: through the proposal, as checked just above.
        for temperature in [0.05, 1.0] {
            let plain = SamplingConfig {
                temperature,
                ..Default::default()
            };
            let logits = exact.logits().unwrap().to_vec();
            let max = logits.iter().copied().max_by(f32::total_cmp).unwrap();
            assert!(max.is_finite(), "{logits:?}");
            let weights: Vec<f64> = logits
                .iter()
                .map(|&l| ((l - max) as f64 / plain.temperature).exp())
                .collect();
            let total: f64 = weights.iter().sum();
            let n = 20_000;
            let mut c = vec![0usize; logits.len()];
            for _ in 0..n {
                c[quick.sample(&plain, &[], &mut rng).unwrap() as usize] += 1;
            }
            for (i, (&k, w)) in c.iter().zip(&weights).enumerate() {
                let (got, want) = (k as f64 / n as f64, w / total);
                assert!(
                    (got - want).abs() < 0.015,
                    "T={temperature} id {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn the_maximum_skips_banned_ids_and_non_finite_values() {
        let mut logits = vec![0.5f32; 40];
        logits[3] = 9.0;
        logits[17] = f32::INFINITY;
        logits[30] = f32::NAN;
        logits[35] = 4.0;
        assert_eq!(allowed_max(&logits, &[]), 9.0);
        assert_eq!(allowed_max(&logits, &[3]), 4.0);
        assert_eq!(
            allowed_max(&[f32::NAN, f32::NEG_INFINITY], &[]),
            f32::NEG_INFINITY
        );
    }

    fn counts(cfg: &SamplingConfig, logits: &[f32], banned: &[u32], n: usize) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[cfg.sample(logits, banned, &mut rng) as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_takes_the_arg_max_and_respects_bans() {
        let cfg = SamplingConfig {
            greedy: true,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(cfg.sample(&[0.1, 3.0, 2.0], &[], &mut rng), 1);
        assert_eq!(cfg.sample(&[0.1, 3.0, 2.0], &[1], &mut rng), 2);
    }

    #[test]
    fn top_k_never_leaves_the_k_best() {
        let cfg = SamplingConfig {
            top_k: Some(2),
            ..Default::default()
        };
        let c = counts(&cfg, &[1.0, 0.0, 2.0, 1.5], &[], 2000);
        assert_eq!(c[0] + c[1], 0, "{c:?}");
        assert!(c[2] > c[3] && c[3] > 0, "{c:?}");
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // Probabilities 0.5, 0.3, 0.2: p = 0.7 keeps the first two.
        let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let cfg = SamplingConfig {
            top_p: Some(0.7),
            ..Default::default()
        };
        let c = counts(&cfg, &logits, &[], 3000);
        assert_eq!(c[2], 0, "{c:?}");
        let share = c[0] as f64 / 3000.0;
        assert!((share - 0.625).abs() < 0.05, "{share}");
    }

    #[test]
    fn temperature_one_follows_the_softmax() {
        let logits: Vec<f32> = [0.6f32, 0.4].iter().map(|p| p.ln()).collect();
        let c = counts(&SamplingConfig::default(), &logits, &[], 5000);
        let share = c[0] as f64 / 5000.0;
        assert!((share - 0.6).abs() < 0.03, "{share}");
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(
            SamplingConfig {
                top_p: Some(1.5),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SamplingConfig {
                top_p: Some(0.0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SamplingConfig {
                temperature: 0.0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SamplingConfig {
                top_k: Some(0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SamplingConfig {
                top_p: Some(1.0),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
    }
}
