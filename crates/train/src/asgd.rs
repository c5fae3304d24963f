//! Non-monotonically triggered averaged SGD (NT-ASGD, Merity et al. 2017): training steps as
//! before, but once validation stops improving the model that is evaluated and saved is the
//! running mean of the weights after every step since the switch.
//!
//! AWD-LSTM's rule: at the end of an epoch, before averaging has started, switch when there
//! are more than `nonmono` earlier validation losses and this epoch's loss is worse than the
//! best of all but the last `nonmono` of them. The average then covers the weights after
//! every optimizer step from the switch on (PyTorch's `ASGD` with `t0 = 0, lambd = 0`).
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use lstm_lm_model::LanguageModel;
use serde::{Deserialize, Serialize};

/// Whether NT-ASGD switches to averaging after this epoch: `history` holds the validation
/// losses of the earlier epochs (oldest first), `loss` this epoch's.
pub fn should_switch(history: &[f64], loss: f64, nonmono: usize) -> bool {
    if history.len() <= nonmono {
        return false;
    }
    let older = &history[..history.len() - nonmono];
    let best = older.iter().copied().reduce(f64::min);
    best.is_some_and(|best| loss > best)
}

/// Where averaging stands, kept in the checkpoint's trainer state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AsgdProgress {
    /// The epoch (1-based) after which averaging started.
    pub switched_after_epoch: usize,
    /// Optimizer steps averaged so far (the average's weight count).
    pub averaged_steps: u64,
}

/// The running mean of a model's weights (on the device without autodiff).
#[derive(Debug, Clone)]
pub struct AveragedWeights {
    /// The mean so far, as a model.
    pub model: LanguageModel,
    /// How many iterates the mean holds.
    pub count: u64,
}

impl AveragedWeights {
    /// The mean of one iterate: `model`'s weights.
    pub fn first(model: &LanguageModel) -> Self {
        AveragedWeights {
            model: model.valid(),
            count: 1,
        }
    }

    /// A mean of `count` iterates read back from a checkpoint.
    pub fn resumed(model: LanguageModel, count: u64) -> Self {
        AveragedWeights { model, count }
    }

    /// Adds `model`'s weights to the mean: `mean += (w − mean) / (count + 1)`.
    pub fn add(&mut self, model: &LanguageModel) {
        let mut weights = Collect(Vec::new());
        model.valid().visit(&mut weights);
        self.count += 1;
        let mut mapper = Blend {
            weights: weights.0.into_iter(),
            step: 1.0 / self.count as f64,
        };
        self.model = self.model.clone().map(&mut mapper);
    }
}

/// Every float parameter, flattened, in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

/// Moves each parameter of the mean toward the next collected weight by `step`.
struct Blend<I> {
    weights: I,
    step: f64,
}

impl<I: Iterator<Item = Tensor<1>>> ModuleMapper for Blend<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(w) = self.weights.next() else {
            return param;
        };
        param.map(|mean| {
            let dims = mean.dims();
            let w = w.reshape(dims);
            mean.clone() + (w - mean).mul_scalar(self.step)
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use lstm_lm_model::LanguageModelConfig;

    use super::*;

    fn values(model: &LanguageModel) -> Vec<f32> {
        let mut all = Collect(Vec::new());
        model.visit(&mut all);
        all.0
            .into_iter()
            .flat_map(|t| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
            .collect()
    }

    /// The running mean equals the direct mean of the iterates, parameter by parameter.
    #[test]
    fn the_average_is_the_mean_of_the_iterates() {
        let device = Device::flex();
        let config = LanguageModelConfig::new(7)
            .with_embedding_size(3)
            .with_hidden_size(4)
            .with_num_layers(2);
        let iterates: Vec<LanguageModel> = (0..5)
            .map(|k| {
                device.seed(100 + k);
                config.init(&device).unwrap()
            })
            .collect();
        let mut mean = AveragedWeights::first(&iterates[0]);
        for m in &iterates[1..] {
            mean.add(m);
        }
        assert_eq!(mean.count, 5);
        let direct: Vec<Vec<f32>> = iterates.iter().map(values).collect();
        let got = values(&mean.model);
        assert_eq!(got.len(), direct[0].len());
        for (i, g) in got.iter().enumerate() {
            let want = direct.iter().map(|v| v[i] as f64).sum::<f64>() / 5.0;
            assert!(
                g.is_finite() && (*g as f64 - want).abs() < 1e-6,
                "{i}: {g} vs {want}"
            );
        }
    }

    #[test]
    fn the_switch_waits_for_nonmono_epochs_without_improvement() {
        // Fewer than nonmono + 1 earlier epochs: never.
        assert!(!should_switch(&[5.0, 4.0], 9.0, 2));
        // Worse than the best of all but the last two (4.0): switch.
        assert!(should_switch(&[4.0, 5.0, 4.5], 4.2, 2));
        // Better than that best: keep going, however the last two went.
        assert!(!should_switch(&[4.0, 5.0, 4.5], 3.9, 2));
        // Only epochs before the last `nonmono` count: 3.0 is one of the last two.
        assert!(!should_switch(&[5.0, 4.0, 3.0], 4.5, 2));
        assert!(should_switch(&[5.0, 4.0, 3.0, 3.5, 3.6], 3.9, 2));
    }
}
