//! Dynamic evaluation (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence Models"):
//! the model keeps learning from the text it is evaluated on. Each segment is scored first,
//! then one gradient step on that same segment's loss moves the weights, so segment k is
//! scored by weights that saw segments 0..k−1 only.
//!
//! Two rules (`θ` the weights, `θ₀` the trained ones, `g` the gradient of the segment's mean
//! loss):
//! - SGD: `θ ← θ − η g + λ (θ₀ − θ)`;
//! - RMS (Krause et al.'s "RMS with a global decay prior"):
//!   `θ ← θ − η g / (√MS + ε·mean √MS) + r ⊙ (θ₀ − θ)`, where `MS` is each weight's mean squared gradient over the segments of a
//!   separate text (training or validation data, never the text evaluated) read with the
//!   trained weights, and the decay rate `r = min(λ · √MS / mean(√MS), 1)` pulls back hardest
//!   the weights whose gradients are usually large (the mean is over all weights).
//!
//! The model runs on the autodiff form of the run's device without dropout (dynamic evaluation
//! adapts the evaluated model, it does not train with noise); every update is tensor arithmetic
//! on the inner device, so every backend works.
use burn::module::{Flag, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use lstm_lm_model::{LanguageModel, RecurrentState};
use serde::{Deserialize, Serialize};

use crate::InferError;
use crate::data::{self, Split};
use crate::loss::projected_cross_entropy;
use crate::session::LoadedRun;

/// The update rule of dynamic evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DynamicRule {
    /// Plain gradient steps with a uniform decay toward the trained weights.
    #[default]
    Sgd,
    /// Steps divided by each weight's RMS gradient, decay scaled by it (Krause et al.).
    Rms,
}

impl DynamicRule {
    /// The rule's name as the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            DynamicRule::Sgd => "sgd",
            DynamicRule::Rms => "rms",
        }
    }

    /// Parses `sgd` or `rms`.
    pub fn parse(s: &str) -> Result<Self, InferError> {
        match s.trim() {
            "sgd" => Ok(DynamicRule::Sgd),
            "rms" => Ok(DynamicRule::Rms),
            other => Err(InferError::Input(format!(
                "--dynamic-rule {other:?} is not a rule: give sgd or rms"
            ))),
        }
    }

    /// The default step size η of the rule: 0.0003 for RMS, 1.0 for SGD (a tenth of a typical
    /// word-level training rate of 10-20). For RMS, with statistics from 100k tokens of
    /// WikiText-2's training text, 0.0003 was the best of 1e-4 to 3e-3 on a validation text
    /// for a WikiText-2 model here, and 0.001 with a decay of 0.08 already diverged.
    pub fn default_lr(self) -> f64 {
        match self {
            DynamicRule::Sgd => 1.0,
            DynamicRule::Rms => 0.0003,
        }
    }

    /// The default decay λ toward the trained weights: 0.005 for RMS (0.001 to 0.005 were best
    /// with the step above), 0.001 for SGD.
    pub fn default_decay(self) -> f64 {
        match self {
            DynamicRule::Sgd => 0.001,
            DynamicRule::Rms => 0.005,
        }
    }

    /// The (η, λ) pairs `--tune-dynamic` tries: three step sizes around the default, each with
    /// three decays.
    pub fn grid(self) -> Vec<(f64, f64)> {
        let (lr, decay) = (self.default_lr(), self.default_decay());
        let mut grid = Vec::new();
        for l in [lr / 3.0, lr, lr * 3.0] {
            for d in [decay / 4.0, decay, decay * 4.0] {
                grid.push((l, d));
            }
        }
        grid
    }
}

/// Settings of dynamic evaluation (`--dynamic [LR[:DECAY]]`, `--dynamic-rule`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DynamicConfig {
    /// The update rule. Default SGD.
    pub rule: DynamicRule,
    /// Step size η (> 0). Default: [`DynamicRule::default_lr`].
    pub lr: f64,
    /// Decay λ toward the trained weights (0 to 1). Default: [`DynamicRule::default_decay`].
    pub decay: f64,
    /// ε of the RMS rule, relative to the mean RMS gradient: steps are divided by
    /// `√MS + ε · mean(√MS)`, so a weight with a tiny gradient in the statistics moves at most
    /// 1/ε times a typical step. (A weight whose gradient the statistics never saw, such as the
    /// embedding row of a word absent from the statistics text, takes its tensor's mean √MS
    /// instead.) Default 0.1.
    pub epsilon: f64,
}

impl DynamicConfig {
    /// The rule's defaults.
    pub fn new(rule: DynamicRule) -> Self {
        DynamicConfig {
            rule,
            lr: rule.default_lr(),
            decay: rule.default_decay(),
            epsilon: 0.1,
        }
    }

    /// Parses `""` (the defaults), `LR` or `LR:DECAY` (the `--dynamic` flag).
    pub fn parse(spec: &str, rule: DynamicRule) -> Result<Self, InferError> {
        let usage = "give --dynamic, --dynamic LR or --dynamic LR:DECAY (e.g. 0.0003:0.005; LR > 0, DECAY from 0 to 1)";
        let bad = |what: String| InferError::Input(format!("--dynamic {spec:?}: {what}: {usage}"));
        let mut config = DynamicConfig::new(rule);
        if spec.trim().is_empty() {
            return Ok(config);
        }
        let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
        if parts.len() > 2 {
            return Err(bad("expected one or two fields".into()));
        }
        let number = |s: &str, name: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("{name} {s:?} is not a number")))
        };
        config.lr = number(parts[0], "LR")?;
        if let Some(d) = parts.get(1) {
            config.decay = number(d, "DECAY")?;
        }
        config.validate().map_err(|e| bad(e.to_string()))?;
        Ok(config)
    }

    /// Checks the ranges: η > 0, 0 ≤ λ ≤ 1, ε > 0.
    pub fn validate(&self) -> Result<(), InferError> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(InferError::Input(format!(
                "the step size {} must be above 0",
                self.lr
            )));
        }
        if !(0.0..=1.0).contains(&self.decay) {
            return Err(InferError::Input(format!(
                "the decay {} must be from 0 to 1",
                self.decay
            )));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(InferError::Input(format!(
                "epsilon {} must be above 0",
                self.epsilon
            )));
        }
        Ok(())
    }
}

/// Per-weight root mean squared gradients (the RMS rule's statistics), one tensor per
/// parameter on the inner device, and their mean over all weights.
pub struct GradientStats {
    rms: GradientsParams,
    mean_rms: f64,
    /// Segments the statistics were collected over.
    pub segments: usize,
}

/// A copy of the run's model that learns from the text it scores.
pub struct DynamicModel {
    /// The adapting model, on the autodiff device, without dropout.
    model: LanguageModel,
    device: Device,
    config: DynamicConfig,
    /// The trained weights θ₀.
    originals: GradientsParams,
    /// Per-weight step scale η / (√MS + ε·mean √MS) (RMS rule).
    scales: Option<GradientsParams>,
    /// Per-weight decay rate min(λ √MS / mean √MS, 1) (RMS rule).
    rates: Option<GradientsParams>,
    pad: Option<u32>,
}

/// Makes every weight a tracked leaf on the autodiff form of its device (keeping its id) and
/// turns every training flag (dropout) off.
struct ToTrainable;

impl ModuleMapper for ToTrainable {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let leaf = tensor.inner().autodiff().require_grad();
        Param::from_mapped_value(id, leaf, mapper)
    }

    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

/// The run's model on the autodiff form of its device, every weight requiring its gradient,
/// without dropout. Each parameter keeps the id it has in the run's model, so every copy (and
/// the gradient statistics taken on one) names a weight alike.
fn trainable_copy(run: &LoadedRun) -> Result<(LanguageModel, Device), InferError> {
    let device = run.device.clone().autodiff();
    let model = run.model.clone().map(&mut ToTrainable);
    Ok((model, device))
}

/// Records every parameter's value (inner device) into a [`GradientsParams`] keyed by its id.
struct Snapshot(GradientsParams);

impl ModuleVisitor for Snapshot {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.register::<D>(param.id, param.val().inner());
    }
}

/// Adds the squares of `grads` into `sums`.
struct AddSquares<'a> {
    sums: &'a mut GradientsParams,
    grads: GradientsParams,
}

impl ModuleVisitor for AddSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let sq = g.square();
            let sum = match self.sums.remove::<D>(param.id) {
                Some(s) => s + sq,
                None => sq,
            };
            self.sums.register::<D>(param.id, sum);
        }
    }
}

/// Turns summed squares into RMS values (dividing by `count`) and sums them for the mean.
struct ToRms<'a> {
    sums: &'a mut GradientsParams,
    count: f64,
    total: f64,
    elements: u64,
}

impl ModuleVisitor for ToRms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let rms = match self.sums.remove::<D>(param.id) {
            Some(s) => unseen_take_the_seen_mean((s / self.count).sqrt()),
            None => param.val().inner().zeros_like(),
        };
        self.total += f64::from(rms.clone().sum().into_scalar::<f32>());
        self.elements += rms.shape().num_elements() as u64;
        self.sums.register::<D>(param.id, rms);
    }
}

/// Gives the weights of one tensor whose gradient was zero throughout the statistics text
/// (the embedding rows of words it does not contain) the mean RMS of the tensor's other
/// weights. Left at zero they would take the largest steps of all (η / ε·mean) and never decay
/// back, and a text that uses those words makes dynamic evaluation diverge; knowing nothing
/// of them, the rule treats them as typical weights of their tensor.
fn unseen_take_the_seen_mean<const D: usize>(rms: Tensor<D>) -> Tensor<D> {
    let seen = rms.clone().greater_elem(0.0).float();
    let n_seen = f64::from(seen.clone().sum().into_scalar::<f32>());
    let elements = rms.shape().num_elements() as f64;
    if n_seen == 0.0 || n_seen == elements {
        return rms;
    }
    let seen_mean = f64::from(rms.clone().sum().into_scalar::<f32>()) / n_seen;
    rms + (seen.neg() + 1.0) * seen_mean
}

/// Builds the RMS rule's per-weight step scales and decay rates from the statistics.
struct RuleTensors<'a> {
    stats: &'a GradientStats,
    config: DynamicConfig,
    scales: GradientsParams,
    rates: GradientsParams,
}

impl ModuleVisitor for RuleTensors<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(rms) = self.stats.rms.get::<D>(param.id) {
            let c = self.config;
            let floor = c.epsilon * self.stats.mean_rms;
            let scale = (rms.clone() + floor).recip() * c.lr;
            let rate =
                (rms * (c.decay / self.stats.mean_rms.max(f64::MIN_POSITIVE))).clamp_max(1.0);
            self.scales.register::<D>(param.id, scale);
            self.rates.register::<D>(param.id, rate);
        }
    }
}

/// One update of every parameter with its gradient (see the module documentation).
struct Update<'a> {
    grads: GradientsParams,
    model: &'a DynamicModel,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let m = self.model;
        let weight = tensor.inner();
        let step = match &m.scales {
            Some(scales) => scales.get::<D>(id).map_or(grad.zeros_like(), |s| grad * s),
            None => grad * m.config.lr,
        };
        let mut updated = weight.clone() - step;
        if m.config.decay > 0.0
            && let Some(original) = m.originals.get::<D>(id)
        {
            let pull = original - weight;
            updated = updated
                + match &m.rates {
                    Some(rates) => rates.get::<D>(id).map_or(pull.zeros_like(), |r| pull * r),
                    None => pull * m.config.decay,
                };
        }
        Param::from_mapped_value(id, Tensor::from_inner(updated).require_grad(), mapper)
    }
}

impl DynamicModel {
    /// A copy of `run`'s model ready to adapt with `config`; the RMS rule needs `stats`.
    pub fn new(
        run: &LoadedRun,
        config: DynamicConfig,
        stats: Option<&GradientStats>,
    ) -> Result<Self, InferError> {
        config.validate()?;
        let (model, device) = trainable_copy(run)?;
        let mut snapshot = Snapshot(GradientsParams::new());
        model.visit(&mut snapshot);
        let (scales, rates) = match (config.rule, stats) {
            (DynamicRule::Sgd, _) => (None, None),
            (DynamicRule::Rms, None) => {
                return Err(InferError::Input(
                    "the RMS rule of --dynamic needs gradient statistics: give --dynamic-stats FILE (training or validation text) or use --dynamic-rule sgd".into(),
                ));
            }
            (DynamicRule::Rms, Some(stats)) => {
                let mut t = RuleTensors {
                    stats,
                    config,
                    scales: GradientsParams::new(),
                    rates: GradientsParams::new(),
                };
                model.visit(&mut t);
                (Some(t.scales), Some(t.rates))
            }
        };
        Ok(DynamicModel {
            model,
            device,
            config,
            originals: snapshot.0,
            scales,
            rates,
            pad: run.tokenizer.pad_id(),
        })
    }

    /// The settings this model adapts with.
    pub fn config(&self) -> DynamicConfig {
        self.config
    }

    /// The current weights, on the autodiff device.
    pub fn model(&self) -> &LanguageModel {
        &self.model
    }

    /// The device the model adapts on (autodiff).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One step on a segment the caller has already scored: `hidden` `[n, hidden]` is the
    /// top layer's output of the current weights on it (still in the autodiff graph) and
    /// `targets` its `n` next words.
    pub fn learn(&mut self, hidden: Tensor<2>, targets: &[u32]) {
        let targets = data::targets_tensor(targets, &self.device);
        let (loss, _) = projected_cross_entropy(&self.model, hidden, targets, self.pad);
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let mut update = Update { grads, model: self };
        let model = self.model.clone().map(&mut update);
        self.model = model;
    }
}

/// Collects the RMS rule's statistics: the mean squared gradient of every weight over the
/// segments of `text` (read as the evaluation reads a stream: `columns` columns, windows of
/// `width`, state carried), with the trained weights, at most `max_tokens` targets.
pub fn gradient_stats(
    run: &LoadedRun,
    text: &str,
    columns: usize,
    width: usize,
    max_tokens: Option<usize>,
) -> Result<GradientStats, InferError> {
    let (model, device) = trainable_copy(run)?;
    let d = &run.config.settings.data;
    let split = data::prepare_split(d, &run.tokenizer, text, None)?;
    let Split::Stream { mut ids } = split else {
        return Err(stream_only("--dynamic"));
    };
    if let Some(n) = max_tokens {
        ids.truncate(n.saturating_add(1));
    }
    let split = Split::Stream { ids };
    let mut sums = GradientsParams::new();
    let mut state: Option<RecurrentState> = None;
    let mut segments = 0usize;
    for batch in split.batches(columns, width, None)? {
        let input = data::ids_tensor(&batch.inputs, batch.batch, batch.width, &device);
        let (hidden, s) = model.hidden_states(input, state.take());
        state = Some(s.detach());
        let [b, t, h] = hidden.dims();
        let targets = data::targets_tensor(&batch.targets, &device);
        let (loss, _) = projected_cross_entropy(
            &model,
            hidden.reshape([b * t, h]),
            targets,
            run.tokenizer.pad_id(),
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model.visit(&mut AddSquares {
            sums: &mut sums,
            grads,
        });
        segments += 1;
    }
    if segments == 0 {
        return Err(InferError::Data(
            "the gradient-statistics text is too short for one segment".into(),
        ));
    }
    let mut to_rms = ToRms {
        sums: &mut sums,
        count: segments as f64,
        total: 0.0,
        elements: 0,
    };
    model.visit(&mut to_rms);
    let mean_rms = to_rms.total / to_rms.elements.max(1) as f64;
    if !mean_rms.is_finite() || mean_rms <= 0.0 {
        return Err(InferError::Data(format!(
            "the gradient statistics are unusable (mean RMS {mean_rms}): use another --dynamic-stats text"
        )));
    }
    Ok(GradientStats {
        rms: sums,
        mean_rms,
        segments,
    })
}

/// The error for a run that is not a stream-recipe run.
pub(crate) fn stream_only(flag: &str) -> InferError {
    InferError::Input(format!(
        "{flag} needs a run trained with the stream recipe (the text read as one stream, state carried): this run uses the n-gram recipe"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn weights_the_statistics_never_saw_take_their_tensors_seen_mean() {
        let device = Device::flex();
        let rms = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [2, 2]), &device);
        let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let filled = unseen_take_the_seen_mean(rms(vec![0.0, 2.0, 0.0, 4.0]));
        assert_eq!(values(filled), vec![3.0, 2.0, 3.0, 4.0]);
        // Nothing seen, or everything: unchanged.
        for v in [vec![0.0; 4], vec![1.0, 2.0, 3.0, 4.0]] {
            assert_eq!(values(unseen_take_the_seen_mean(rms(v.clone()))), v);
        }
    }

    #[test]
    fn parses_and_refuses_specs() {
        let rms = DynamicConfig::parse("", DynamicRule::Rms).unwrap();
        assert_eq!(rms, DynamicConfig::new(DynamicRule::Rms));
        let c = DynamicConfig::parse("0.01", DynamicRule::Sgd).unwrap();
        assert_eq!((c.lr, c.decay), (0.01, DynamicRule::Sgd.default_decay()));
        let c = DynamicConfig::parse("0.5:0", DynamicRule::Sgd).unwrap();
        assert_eq!((c.lr, c.decay), (0.5, 0.0));
        for bad in ["-1", "0", "x", "0.1:2", "0.1:-0.5", "0.1:0.1:0.1", "inf"] {
            let e = DynamicConfig::parse(bad, DynamicRule::Rms)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("--dynamic") && !e.contains('\n'),
                "{bad}: {e}"
            );
        }
        assert!(DynamicRule::parse("adam").is_err());
        assert_eq!(DynamicRule::parse("sgd").unwrap(), DynamicRule::Sgd);
    }

    #[test]
    fn the_grid_surrounds_the_defaults() {
        for rule in [DynamicRule::Sgd, DynamicRule::Rms] {
            let grid = rule.grid();
            assert_eq!(grid.len(), 9);
            assert!(grid.contains(&(rule.default_lr(), rule.default_decay())));
        }
    }
}
