//! Evaluation-time adaptation of a trained run: the cache pointer ([`crate::cache_pointer`])
//! and dynamic evaluation ([`crate::dynamic_eval`]), alone or together, always reported next
//! to the plain model on the same tokens; and the grid searches that tune them on a
//! validation text.
//!
//! The text is read as the stream recipe evaluates (`eval_batch_size` columns, windows of
//! `bptt` steps, state carried across windows). For every window the order is fixed: the
//! current weights read it and every token's log-probability is taken, then the cache takes
//! in the window's hidden vectors, then the dynamic model takes its gradient step. Nothing a
//! window's tokens teach reaches a score of that window or an earlier one.
use std::path::Path;

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor};
use lstm_lm_model::{LanguageModel, fused};
use serde::{Deserialize, Serialize};

use crate::InferError;
use crate::cache_pointer::{
    CacheConfig, LAMBDA_GRID, StreamCache, THETA_GRID, cache_probability, mix_log_prob,
};
use crate::data::{self, Split};
use crate::dynamic_eval::{DynamicConfig, DynamicModel, DynamicRule, GradientStats, stream_only};
use crate::session::{LoadedRun, TextScore};
use crate::settings::Recipe;

/// Loss and perplexity of one way of scoring the text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Mean negative natural-log probability per token.
    pub loss: f64,
    /// exp(loss).
    pub ppl: f64,
}

impl Figures {
    fn from_sum(logprob_sum: f64, tokens: usize) -> Self {
        let loss = -logprob_sum / tokens.max(1) as f64;
        Figures {
            loss,
            ppl: loss.exp(),
        }
    }
}

/// What `eval --cache/--dynamic` measures; every figure is over the same tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptedEval {
    /// Tokens predicted.
    pub tokens: u64,
    /// The trained model as it is.
    pub plain: Figures,
    /// The cache's settings, when it was on.
    pub cache_config: Option<CacheConfig>,
    /// Dynamic evaluation's settings, when it was on.
    pub dynamic_config: Option<DynamicConfig>,
    /// The trained model with the cache.
    pub cache: Option<Figures>,
    /// Dynamic evaluation without the cache.
    pub dynamic: Option<Figures>,
    /// Dynamic evaluation with the cache.
    pub dynamic_cache: Option<Figures>,
}

/// Per-token scores of one pass over a stream.
#[derive(Debug, Clone, Default)]
pub struct StreamScores {
    /// The stream position each score predicts (`ids[position]`), in the order scored.
    pub positions: Vec<usize>,
    /// The model's natural-log probability of each target.
    pub model: Vec<f32>,
    /// Per θ asked for, the cache's probability of each target (`None`: the cache was empty).
    pub cache: Vec<Vec<Option<f32>>>,
}

impl StreamScores {
    /// The model's figures.
    pub fn model_figures(&self) -> Figures {
        let sum: f64 = self.model.iter().map(|&x| f64::from(x)).sum();
        Figures::from_sum(sum, self.model.len())
    }

    /// The figures of the mixture with the cache of the `k`-th θ at weight `lambda`.
    pub fn mixed_figures(&self, k: usize, lambda: f64) -> Figures {
        let sum: f64 = self
            .model
            .iter()
            .zip(&self.cache[k])
            .map(|(&m, c)| mix_log_prob(f64::from(m), c.map(f64::from), lambda))
            .sum();
        Figures::from_sum(sum, self.model.len())
    }
}

/// The natural-log probability of each `targets[i]` under the logits `[n, vocab]`. On the host
/// the logits are read in place; elsewhere through `log_softmax`.
fn target_logprobs(logits: Tensor<2>, targets: &[u32]) -> Result<Vec<f32>, InferError> {
    let [n, vocab] = logits.dims();
    if let Some(values) = fused::host_values(&logits) {
        let mut weights = vec![0.0f32; vocab];
        return Ok(values
            .chunks_exact(vocab)
            .zip(targets)
            .map(|(row, &target)| {
                let max = row
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .reduce(f32::max)
                    .unwrap_or(0.0);
                let total = fused::exp_weights(row, 1.0, max, &mut weights);
                (f64::from(row[target as usize]) - f64::from(max) - total.ln()) as f32
            })
            .collect());
    }
    let device = logits.device();
    let index = data::targets_tensor(targets, &device).reshape([n, 1]);
    log_softmax(logits, 1)
        .gather(1, index)
        .try_into_vec_as::<f32>()
        .map_err(|e| InferError::Device(format!("cannot read the scores from the device: {e}")))
}

/// Refuses a window whose mean loss is far worse than the uniform distribution's, ln(vocab),
/// (by more than 5 nats, 148 times less likely per token): an adapting model that took too
/// large a step never recovers, and its figures mean nothing.
fn check_not_diverged(window: &[f32], vocab: usize) -> Result<(), InferError> {
    let loss = -window.iter().map(|&x| f64::from(x)).sum::<f64>() / window.len().max(1) as f64;
    let limit = (vocab.max(2) as f64).ln() + 5.0;
    if loss.is_finite() && loss <= limit {
        return Ok(());
    }
    Err(InferError::Data(format!(
        "dynamic evaluation diverged (a window's loss became {loss:.1}, above the uniform distribution's {:.1} + 5): use a smaller --dynamic step size or a larger decay",
        limit - 5.0
    )))
}

/// The stream ids of `text`, prepared as the run's data was, at most `max_tokens` targets.
pub fn stream_ids(
    run: &LoadedRun,
    text: &str,
    flag: &str,
    max_tokens: Option<usize>,
) -> Result<Vec<u32>, InferError> {
    let d = &run.config.settings.data;
    if d.recipe != Recipe::Stream {
        return Err(stream_only(flag));
    }
    let Split::Stream { mut ids } = data::prepare_split(d, &run.tokenizer, text, None)? else {
        return Err(stream_only(flag));
    };
    if let Some(n) = max_tokens {
        ids.truncate(n.saturating_add(1));
    }
    Ok(ids)
}

/// One pass over the stream `ids` as the evaluation reads it. With `cache = (window, θs)` the
/// cache's probability of every target is taken for each θ; with `dynamic` the model adapts
/// after each window (scored first, then one step).
pub fn score_stream(
    run: &LoadedRun,
    ids: &[u32],
    cache: Option<(usize, &[f64])>,
    mut dynamic: Option<&mut DynamicModel>,
) -> Result<StreamScores, InferError> {
    let d = &run.config.settings.data;
    let columns = d.eval_batch_size;
    let split = Split::Stream { ids: ids.to_vec() };
    let rows = ids.len() / columns.max(1);
    let mut out = StreamScores::default();
    let mut stream_cache = cache.map(|(window, thetas)| {
        out.cache = vec![Vec::new(); thetas.len()];
        (StreamCache::new(window), thetas)
    });
    let mut state = None;
    let mut start = 0usize;
    for batch in split.batches(columns, d.bptt, None)? {
        let (b, t) = (batch.batch, batch.width);
        // Score with the current weights.
        let (hidden, graph) = match dynamic.as_deref() {
            None => {
                let input = data::ids_tensor(&batch.inputs, b, t, &run.device);
                let (hidden, s) = run.model.hidden_states(input, state.take());
                state = Some(s);
                (hidden, None)
            }
            Some(dm) => {
                let input = data::ids_tensor(&batch.inputs, b, t, dm.device());
                let (hidden, s) = dm.model().hidden_states(input, state.take());
                state = Some(s.detach());
                (hidden.clone().inner(), Some(hidden))
            }
        };
        let [_, _, h] = hidden.dims();
        let scoring: LanguageModel = match dynamic.as_deref() {
            None => run.model.clone(),
            Some(dm) => dm.model().valid(),
        };
        let logits = scoring.project(hidden.clone().reshape([b * t, h]));
        let window = target_logprobs(logits, &batch.targets)?;
        if dynamic.is_some() {
            check_not_diverged(&window, scoring.vocab_size())?;
        }
        out.model.extend(window);
        for c in 0..b {
            out.positions
                .extend((0..t).map(|step| c * rows + start + step + 1));
        }
        if let Some((cache, thetas)) = stream_cache.as_mut() {
            let per_theta = &mut out.cache;
            cache.read_segment(hidden, &batch.targets, |c, step, scores, next| {
                let target = batch.targets[c * t + step];
                for (k, &theta) in thetas.iter().enumerate() {
                    per_theta[k]
                        .push(cache_probability(scores, next, target, theta).map(|p| p as f32));
                }
            })?;
        }
        // Then learn from the window just scored.
        if let (Some(dm), Some(graph)) = (dynamic.as_deref_mut(), graph) {
            dm.learn(graph.reshape([b * t, h]), &batch.targets);
        }
        start += t;
    }
    if out.model.is_empty() {
        return Err(InferError::Data(
            "the evaluation data is too short to predict a single token".into(),
        ));
    }
    if let Some(bad) = out.model.iter().find(|v| !v.is_finite()) {
        return Err(InferError::Data(format!(
            "a log-probability became {bad}: the adapted model diverged; use a smaller --dynamic step size"
        )));
    }
    Ok(out)
}

/// Evaluates `run` on the text file at `path` with the cache and/or dynamic evaluation
/// (`stats`: the RMS rule's gradient statistics), next to the plain model; at most
/// `max_tokens` targets.
pub fn evaluate_adapted(
    run: &LoadedRun,
    path: &Path,
    cache: Option<CacheConfig>,
    dynamic: Option<DynamicConfig>,
    stats: Option<&GradientStats>,
    max_tokens: Option<usize>,
) -> Result<AdaptedEval, InferError> {
    if let Some(c) = &cache {
        c.validate()?;
    }
    let flag = if cache.is_some() {
        "--cache"
    } else {
        "--dynamic"
    };
    let text = data::read_file(path)?;
    let ids = stream_ids(run, &text, flag, max_tokens)?;
    let theta = cache.map(|c| [c.theta]);
    let cache_arg = cache.zip(theta.as_ref()).map(|(c, th)| (c.window, &th[..]));
    let plain = score_stream(run, &ids, cache_arg, None)?;
    let mut result = AdaptedEval {
        tokens: plain.model.len() as u64,
        plain: plain.model_figures(),
        cache_config: cache,
        dynamic_config: dynamic,
        cache: cache.map(|c| plain.mixed_figures(0, c.lambda)),
        dynamic: None,
        dynamic_cache: None,
    };
    if let Some(config) = dynamic {
        let mut model = DynamicModel::new(run, config, stats)?;
        let adapted = score_stream(run, &ids, cache_arg, Some(&mut model))?;
        result.dynamic = Some(adapted.model_figures());
        result.dynamic_cache = cache.map(|c| adapted.mixed_figures(0, c.lambda));
    }
    Ok(result)
}

/// One point of a grid search and its figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridPoint {
    /// The first setting (θ for the cache, the step size for dynamic evaluation).
    pub a: f64,
    /// The second setting (λ for the cache, the decay for dynamic evaluation).
    pub b: f64,
    /// Figures on the validation text.
    pub figures: Figures,
}

/// The result of a grid search on a validation text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    /// The point with the lowest loss (the first one among equals).
    pub best: GridPoint,
    /// The plain model on the same tokens.
    pub plain: Figures,
    /// Every point tried, in order.
    pub grid: Vec<GridPoint>,
    /// Tokens of the validation text scored.
    pub tokens: u64,
}

/// The point of `grid` with the lowest finite loss; the first among equals.
pub fn best_point(grid: &[GridPoint]) -> Option<GridPoint> {
    grid.iter()
        .filter(|p| p.figures.loss.is_finite())
        .copied()
        .reduce(|best, p| {
            if p.figures.loss < best.figures.loss {
                p
            } else {
                best
            }
        })
}

fn tuning(grid: Vec<GridPoint>, plain: Figures, tokens: u64) -> Result<Tuning, InferError> {
    let best = best_point(&grid).ok_or_else(|| {
        InferError::Data("no setting of the grid gave a finite loss on the validation text".into())
    })?;
    Ok(Tuning {
        best,
        plain,
        grid,
        tokens,
    })
}

/// Picks the cache's θ and λ for `window` on the validation text at `path` from
/// [`THETA_GRID`] × [`LAMBDA_GRID`] (one pass of the model; every θ is tried on its scores).
pub fn tune_cache(
    run: &LoadedRun,
    path: &Path,
    window: usize,
    max_tokens: Option<usize>,
) -> Result<Tuning, InferError> {
    CacheConfig::new(window).validate()?;
    let text = data::read_file(path)?;
    let ids = stream_ids(run, &text, "--tune-cache", max_tokens)?;
    let scores = score_stream(run, &ids, Some((window, &THETA_GRID)), None)?;
    let mut grid = Vec::new();
    for (k, &theta) in THETA_GRID.iter().enumerate() {
        for &lambda in &LAMBDA_GRID {
            grid.push(GridPoint {
                a: theta,
                b: lambda,
                figures: scores.mixed_figures(k, lambda),
            });
        }
    }
    tuning(grid, scores.model_figures(), scores.model.len() as u64)
}

/// Picks dynamic evaluation's step size and decay for `rule` on the validation text at `path`
/// from [`DynamicRule::grid`] (one adapting pass per point, each from the trained weights).
pub fn tune_dynamic(
    run: &LoadedRun,
    path: &Path,
    rule: DynamicRule,
    stats: Option<&GradientStats>,
    max_tokens: Option<usize>,
    mut progress: impl FnMut(&GridPoint),
) -> Result<Tuning, InferError> {
    let text = data::read_file(path)?;
    let ids = stream_ids(run, &text, "--tune-dynamic", max_tokens)?;
    let plain = score_stream(run, &ids, None, None)?;
    let mut grid = Vec::new();
    for (lr, decay) in rule.grid() {
        let config = DynamicConfig {
            lr,
            decay,
            ..DynamicConfig::new(rule)
        };
        let mut model = DynamicModel::new(run, config, stats)?;
        let loss = match score_stream(run, &ids, None, Some(&mut model)) {
            Ok(s) => s.model_figures(),
            // A step size that diverges is a bad point of the grid, not a failure.
            Err(InferError::Data(_)) => Figures {
                loss: f64::INFINITY,
                ppl: f64::INFINITY,
            },
            Err(e) => return Err(e),
        };
        let point = GridPoint {
            a: lr,
            b: decay,
            figures: loss,
        };
        progress(&point);
        grid.push(point);
    }
    tuning(grid, plain.model_figures(), plain.model.len() as u64)
}

/// Collects the RMS rule's gradient statistics on the text file at `path`, read in the
/// evaluation's geometry (see [`crate::dynamic_eval::gradient_stats`]).
pub fn gradient_stats_file(
    run: &LoadedRun,
    path: &Path,
    max_tokens: Option<usize>,
) -> Result<GradientStats, InferError> {
    let text = data::read_file(path)?;
    let d = &run.config.settings.data;
    crate::dynamic_eval::gradient_stats(run, &text, d.eval_batch_size, d.bptt, max_tokens)
}

/// A text's scores with the cache (`score --cache`), and its plain perplexity.
#[derive(Debug, Clone)]
pub struct CachedTextScore {
    /// The scores with the cache.
    pub score: TextScore,
    /// The plain model's total log-probability of the same tokens.
    pub plain_total_logprob: f64,
    /// The plain model's perplexity on the same tokens.
    pub plain_ppl: f64,
}

impl LoadedRun {
    /// Scores `text` as [`score`](Self::score) does (from a fresh state, after the run's
    /// start context) with the cache pointer over the text's own earlier positions.
    pub fn score_with_cache(
        &self,
        text: &str,
        cache: &CacheConfig,
    ) -> Result<CachedTextScore, InferError> {
        cache.validate()?;
        let mut body = self.tokenizer.encode_line(text)?;
        if self.config.settings.data.recipe != Recipe::Stream
            && let Some(eos) = self.tokenizer.eos_id()
            && body.last() == Some(&eos)
        {
            body.pop();
        }
        if body.is_empty() {
            return Err(InferError::Input(format!(
                "{text:?} has no token this model's tokenizer knows"
            )));
        }
        let context = self.start_context();
        let from = context.len().max(1);
        let mut ids = context;
        ids.extend_from_slice(&body);
        if ids.len() < 2 {
            return Err(InferError::Input(format!(
                "{text:?} is too short to score: it needs at least one token after the first"
            )));
        }
        let n = ids.len() - 1;
        let device: &Device = &self.device;
        let input = data::ids_tensor(&ids[..n], 1, n, device);
        let (hidden, _) = self.model.hidden_states(input, None);
        let [_, _, h] = hidden.dims();
        let targets = &ids[1..];
        let model = target_logprobs(self.model.project(hidden.clone().reshape([n, h])), targets)?;
        let mut mixed = vec![0.0f64; n];
        StreamCache::new(cache.window).read_segment(hidden, targets, |_, t, scores, next| {
            let p = cache_probability(scores, next, targets[t], cache.theta);
            mixed[t] = mix_log_prob(f64::from(model[t]), p, cache.lambda);
        })?;
        let logps = &mixed[from - 1..];
        let scored_ids = ids[from..].to_vec();
        let total: f64 = logps.iter().sum();
        let plain_total: f64 = model[from - 1..].iter().map(|&x| f64::from(x)).sum();
        let count = logps.len() as f64;
        Ok(CachedTextScore {
            score: TextScore {
                tokens: scored_ids
                    .iter()
                    .zip(logps)
                    .map(|(&id, &lp)| (self.tokenizer.id_to_token(id).unwrap_or_default(), lp))
                    .collect(),
                ids: scored_ids,
                total_logprob: total,
                ppl: (-total / count).exp(),
            },
            plain_total_logprob: plain_total,
            plain_ppl: (-plain_total / count).exp(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(a: f64, loss: f64) -> GridPoint {
        GridPoint {
            a,
            b: 0.0,
            figures: Figures {
                loss,
                ppl: loss.exp(),
            },
        }
    }

    #[test]
    fn the_best_point_is_the_lowest_finite_loss_first_among_equals() {
        let grid = [
            point(1.0, 3.0),
            point(2.0, f64::NAN),
            point(3.0, 2.0),
            point(4.0, 2.0),
            point(5.0, f64::INFINITY),
        ];
        assert_eq!(best_point(&grid).unwrap().a, 3.0);
        assert!(best_point(&[point(1.0, f64::NAN)]).is_none());
    }

    #[test]
    fn a_window_far_worse_than_uniform_is_divergence() {
        // Uniform over 100 words: ln 100 = 4.6 nats; the limit is 9.6.
        assert!(check_not_diverged(&[-4.6, -9.0], 100).is_ok());
        let e = check_not_diverged(&[-12.0, -9.0], 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("diverged") && e.contains("--dynamic"), "{e}");
        assert!(check_not_diverged(&[f32::NAN], 100).is_err());
    }
}
