//! Optimizers built from settings, and global gradient-norm clipping.
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;
use lstm_lm_model::fused;

use crate::host_optim::{HostAdam, HostRmsProp};
use crate::settings::{OptimSettings, OptimizerKind};

/// Builds the optimizer (Adam and RMSprop update on the host on the CPU backends: see
/// [`HostAdam`]). Clipping is not configured here: burn's clipping is per tensor, while
/// we clip the global norm over all parameters with [`clip_global_norm`], as PyTorch's
/// `clip_grad_norm_` does.
pub fn build_optimizer(s: &OptimSettings) -> ModuleOptimizer {
    let decay = |default: f64| {
        let wd = s.weight_decay.unwrap_or(default);
        (wd > 0.0).then(|| WeightDecayConfig::new(wd as f32))
    };
    let l2 = || s.weight_decay.filter(|&wd| wd > 0.0).map(|wd| wd as f32);
    match s.optimizer {
        OptimizerKind::Sgd => {
            let momentum = (s.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(s.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(false)
            });
            SgdConfig::new()
                .with_momentum(momentum)
                .with_weight_decay(decay(0.0))
                .init()
        }
        OptimizerKind::Adam => ModuleOptimizer::from(HostAdam::new(
            s.betas[0] as f32,
            s.betas[1] as f32,
            s.epsilon as f32,
            l2(),
        )),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_beta_1(s.betas[0] as f32)
            .with_beta_2(s.betas[1] as f32)
            .with_epsilon(s.epsilon as f32)
            .with_weight_decay(s.weight_decay.unwrap_or(0.01) as f32)
            .init(),
        OptimizerKind::Rmsprop => ModuleOptimizer::from(HostRmsProp::new(
            s.alpha as f32,
            s.momentum as f32,
            s.epsilon as f32,
            l2(),
        )),
    }
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    /// Tensors read on the host, summed there.
    host: f64,
    /// The others, summed as tensor operations.
    sum: Option<Tensor<1>>,
}

/// Elements per partial sum of [`sum_of_squares`].
const NORM_CHUNK: usize = 1 << 14;

/// `Σ v²` in `f64`, by fixed chunks on the thread pool (the result does not depend on the
/// number of threads).
fn sum_of_squares(values: &[f32]) -> f64 {
    use rayon::prelude::*;
    let partial: Vec<f64> = values
        .par_chunks(NORM_CHUNK)
        .map(|chunk| {
            // Eight f32 lanes per chunk vectorise; a chunk is short enough for f32 partials.
            let mut lanes = [0.0f32; 8];
            let blocks = chunk.chunks_exact(8);
            let tail: f32 = blocks.remainder().iter().map(|v| v * v).sum();
            for block in blocks {
                for (acc, v) in lanes.iter_mut().zip(block) {
                    *acc += v * v;
                }
            }
            lanes.iter().map(|&x| f64::from(x)).sum::<f64>() + f64::from(tail)
        })
        .collect();
    partial.iter().sum()
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            if let Some(values) = fused::host_values(&g) {
                self.host += sum_of_squares(&values);
                return;
            }
            let s = g.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        use rayon::prelude::*;
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let scaled = match fused::owned_host_values(g) {
                // Written over the gradient's own buffer: nothing else holds it.
                Ok(mut values) => {
                    let factor = self.factor as f32;
                    values
                        .values_mut()
                        .par_chunks_mut(NORM_CHUNK)
                        .for_each(|chunk| chunk.iter_mut().for_each(|v| *v *= factor));
                    values.into_tensor()
                }
                Err(g) => g.mul_scalar(self.factor),
            };
            self.grads.register(param.id, scaled);
        }
    }
}

/// The L2 norm of all gradients of `module` taken together.
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm {
        grads,
        host: 0.0,
        sum: None,
    };
    module.visit(&mut v);
    let on_device = v.sum.map_or(0.0, |s| f64::from(s.into_scalar::<f32>()));
    (v.host + on_device).sqrt()
}

/// Rescales all gradients together so that their global L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1). Returns the
/// norm before clipping.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = global_grad_norm(module, grads);
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        module.visit(&mut Scale { grads, factor });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<1>>,
        b: Param<Tensor<2>>,
    }

    /// The host sum of squares (by chunks, f32 lanes inside a chunk) against a plain f64 sum.
    #[test]
    fn sum_of_squares_matches_a_plain_f64_sum() {
        let values: Vec<f32> = (0..100_003)
            .map(|i| (i as f32 * 0.37).sin() * 3.0)
            .collect();
        let want: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let got = sum_of_squares(&values);
        assert!((got - want).abs() <= want * 1e-6, "{got} vs {want}");
    }

    /// Gradients (3, 4) for `a` and [[12]] for `b`: global norm 13. Clipping to 6.5 halves
    /// both; per-tensor clipping would leave `a` (norm 5) alone and cut `b` to 6.5.
    #[test]
    fn global_clipping_scales_all_tensors_by_one_factor() {
        let device = Device::flex().autodiff();
        let model = Two {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.0f32, 0.0], [2]),
                &device,
            )),
            b: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.0f32], [1, 1]),
                &device,
            )),
        };
        let coef_a = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 4.0], [2]), &device);
        let coef_b = Tensor::<2>::from_data(TensorData::new(vec![12.0f32], [1, 1]), &device);
        let loss = (model.a.val() * coef_a).sum() + (model.b.val() * coef_b).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = clip_global_norm(&model, &mut grads, 6.5);
        assert!((norm - 13.0).abs() < 1e-4);
        let ga = grads
            .get::<1>(model.a.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let gb = grads
            .get::<2>(model.b.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            (ga[0] - 1.5).abs() < 1e-4 && (ga[1] - 2.0).abs() < 1e-4,
            "{ga:?}"
        );
        assert!((gb[0] - 6.0).abs() < 1e-4, "{gb:?}");
        // burn's own clipping works per tensor: `a` keeps its gradient.
        let per_tensor = burn::grad_clipping::GradientClipping::Norm(6.5);
        let a_clipped = per_tensor
            .clip_gradient(Tensor::<1>::from_data(
                TensorData::new(vec![3.0f32, 4.0], [2]),
                &device,
            ))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((a_clipped[0] - 3.0).abs() < 1e-4, "{a_clipped:?}");
    }

    #[test]
    fn below_the_threshold_nothing_changes() {
        let device = Device::flex().autodiff();
        let model = Two {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.0f32, 0.0], [2]),
                &device,
            )),
            b: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.0f32], [1, 1]),
                &device,
            )),
        };
        let coef_a = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 4.0], [2]), &device);
        let loss = (model.a.val() * coef_a).sum() + model.b.val().sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        clip_global_norm(&model, &mut grads, 100.0);
        let ga = grads
            .get::<1>(model.a.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(ga, vec![3.0, 4.0]);
    }
}
