//! Adam and RMSprop whose update runs as one pass over host memory on the CPU backends.
//!
//! burn's optimizers write every update as tensor operations: Adam makes about a dozen passes
//! (and as many allocations) over each parameter, gradient and moment per step, which at
//! 5 million parameters costs more than the recurrent layers do. On the CPU backends the same
//! arithmetic fits in one pass. The state types are burn's own ([`AdamState`],
//! [`RmsPropState`]), so optimizer checkpoints have the same format either way; on other
//! backends (wgpu), and for options the host loop does not cover (RMSprop's momentum and
//! centred variants), the step is burn's.
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, CenteredState, LearningRate, Optimizer,
    RmsProp, RmsPropConfig, RmsPropState, SquareAvgState,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use lstm_lm_model::fused;
use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

fn on_host<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.dtype() == DType::F32 && fused::enabled() && fused::supports(&tensor.device())
}

/// One parallel pass over `IN` equally long inputs producing `OUT` outputs element by element,
/// written straight into fresh buffers (no zero-filling first).
fn host_pass<const IN: usize, const OUT: usize>(
    inputs: [&[f32]; IN],
    f: impl Fn([f32; IN]) -> [f32; OUT] + Sync,
) -> [Vec<f32>; OUT] {
    let n = inputs[0].len();
    assert!(inputs.iter().all(|x| x.len() == n));
    let mut outputs: [Vec<f32>; OUT] = std::array::from_fn(|_| Vec::with_capacity(n));
    let chunks = n.div_ceil(CHUNK);
    // Each task owns one chunk of every output.
    let mut tasks: Vec<[&mut [MaybeUninit<f32>]; OUT]> = (0..chunks)
        .map(|_| std::array::from_fn(|_| Default::default()))
        .collect();
    for (k, out) in outputs.iter_mut().enumerate() {
        for (task, chunk) in tasks
            .iter_mut()
            .zip(out.spare_capacity_mut()[..n].chunks_mut(CHUNK))
        {
            task[k] = chunk;
        }
    }
    tasks.into_par_iter().enumerate().for_each(|(c, out)| {
        let start = c * CHUNK;
        let len = out[0].len();
        let inputs = inputs.map(|x| &x[start..start + len]);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { host_pass_chunk_avx2(inputs, out, &f) };
            return;
        }
        host_pass_chunk(inputs, out, &f);
    });
    for out in &mut outputs {
        // SAFETY: every element of the first `n` was written above.
        unsafe { out.set_len(n) };
    }
    outputs
}

/// The body of [`host_pass`] for one chunk, written so that it vectorises (square roots and
/// divisions included: they are exact IEEE operations in any lane width).
#[inline(always)]
fn host_pass_chunk<const IN: usize, const OUT: usize>(
    inputs: [&[f32]; IN],
    outputs: [&mut [MaybeUninit<f32>]; OUT],
    f: &impl Fn([f32; IN]) -> [f32; OUT],
) {
    let n = outputs[0].len();
    let inputs = inputs.map(|x| &x[..n]);
    let mut outputs = outputs.map(|x| &mut x[..n]);
    for i in 0..n {
        let values = f(inputs.map(|x| x[i]));
        for (out, v) in outputs.iter_mut().zip(values) {
            out[i].write(v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn host_pass_chunk_avx2<const IN: usize, const OUT: usize>(
    inputs: [&[f32]; IN],
    outputs: [&mut [MaybeUninit<f32>]; OUT],
    f: &impl Fn([f32; IN]) -> [f32; OUT],
) {
    host_pass_chunk(inputs, outputs, f)
}

fn tensor<const D: usize>(values: Vec<f32>, shape: &[usize], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape.to_vec()), device)
}

/// Adam (L2 weight decay, no AMSGrad) with burn's arithmetic, in one pass on the CPU backends.
#[derive(Clone)]
pub struct HostAdam {
    burn: Adam,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: Option<f32>,
}

impl HostAdam {
    /// Adam with these constants and optional L2 weight decay.
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: Option<f32>) -> Self {
        let burn = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay.map(WeightDecayConfig::new))
            .build();
        HostAdam {
            burn,
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
        }
    }
}

impl Optimizer for HostAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !on_host(&param)
            || state
                .as_ref()
                .is_some_and(|s| s.momentum.max_moment_2.is_some())
        {
            return self.burn.step(lr, param, grad, state);
        }
        let (Some(p), Some(g)) = (fused::host_values(&param), fused::host_values(&grad)) else {
            return self.burn.step(lr, param, grad, state);
        };
        let (device, shape) = (param.device(), param.dims().to_vec());
        let previous = match &state {
            Some(s) => match (
                fused::host_values(&s.momentum.moment_1),
                fused::host_values(&s.momentum.moment_2),
            ) {
                (Some(m), Some(v)) => Some((s.momentum.time, m, v)),
                _ => return self.burn.step(lr, param, grad, state),
            },
            None => None,
        };
        let zeros;
        let (time, m, v): (usize, &[f32], &[f32]) = match &previous {
            Some((time, m, v)) => (time + 1, m, v),
            None => {
                zeros = vec![0.0f32; p.len()];
                (1, &zeros, &zeros)
            }
        };
        let (b1, b2) = (self.beta_1, self.beta_2);
        // burn's form: m·√(1−β₂ᵗ)/(1−β₁ᵗ) / (√v + ε·√(1−β₂ᵗ)).
        let correction_2 = (1.0 - b2.powi(time as i32)).sqrt();
        let factor = correction_2 / (1.0 - b1.powi(time as i32));
        let eps = self.epsilon * correction_2;
        let lr = lr as f32;
        let decay = self.weight_decay.unwrap_or(0.0);
        let [p_new, m_new, v_new] = host_pass([&p, &g, m, v], |[p, g, m, v]| {
            let g = if decay != 0.0 { g + decay * p } else { g };
            let m = b1 * m + (1.0 - b1) * g;
            let v = b2 * v + (1.0 - b2) * g * g;
            [p - lr * (m * factor / (v.sqrt() + eps)), m, v]
        });
        drop((p, g, previous));
        let momentum = AdaptiveMomentumState::new(
            time,
            tensor(m_new, &shape, &device),
            tensor(v_new, &shape, &device),
        );
        (
            tensor(p_new, &shape, &device),
            Some(AdamState::new(momentum)),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

/// RMSprop (L2 weight decay, no momentum, not centred) with burn's arithmetic, in one pass on
/// the CPU backends.
#[derive(Clone)]
pub struct HostRmsProp {
    burn: RmsProp,
    alpha: f32,
    epsilon: f32,
    weight_decay: Option<f32>,
    host_applies: bool,
}

impl HostRmsProp {
    /// RMSprop (not centred) with these constants and optional L2 weight decay.
    pub fn new(alpha: f32, momentum: f32, epsilon: f32, weight_decay: Option<f32>) -> Self {
        let burn = RmsPropConfig::new()
            .with_alpha(alpha)
            .with_momentum(momentum)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay.map(WeightDecayConfig::new))
            .build();
        HostRmsProp {
            burn,
            alpha,
            epsilon,
            weight_decay,
            host_applies: momentum == 0.0,
        }
    }
}

impl Optimizer for HostRmsProp {
    type State<const D: usize> = RmsPropState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !self.host_applies || !on_host(&param) {
            return self.burn.step(lr, param, grad, state);
        }
        let (Some(p), Some(g)) = (fused::host_values(&param), fused::host_values(&grad)) else {
            return self.burn.step(lr, param, grad, state);
        };
        let (device, shape) = (param.device(), param.dims().to_vec());
        let previous = match &state {
            Some(s) => match fused::host_values(&s.square_avg.square_avg) {
                Some(v) => Some(v),
                None => return self.burn.step(lr, param, grad, state),
            },
            None => None,
        };
        let zeros;
        // The first step starts from zero: burn writes (1−α)·g² there too.
        let (avg, alpha): (&[f32], f32) = match &previous {
            Some(v) => (v, self.alpha),
            None => {
                zeros = vec![0.0f32; p.len()];
                (&zeros, 0.0)
            }
        };
        let keep = 1.0 - self.alpha;
        let (eps, lr) = (self.epsilon, lr as f32);
        let decay = self.weight_decay.unwrap_or(0.0);
        let [p_new, avg_new] = host_pass([&p, &g, avg], |[p, g, s]| {
            let g = if decay != 0.0 { g + decay * p } else { g };
            let s = alpha * s + keep * g * g;
            [p - lr * (g / (s.sqrt() + eps)), s]
        });
        drop((p, g, previous));
        let square_avg = tensor::<D>(avg_new, &shape, &device);
        let state = RmsPropState::new(
            SquareAvgState {
                square_avg: square_avg.clone(),
            },
            CenteredState {
                grad_avg: None,
                avg: square_avg,
            },
            None,
        );
        (tensor(p_new, &shape, &device), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <RmsProp as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Module, Param};
    use burn::optim::{GradientsParams, ModuleOptimizer};

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<1>>,
        b: Param<Tensor<2>>,
    }

    /// Fixed starting weights (not from the process-wide RNG, which other tests reseed).
    fn start(device: &Device) -> Two {
        let wave = |n: usize| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37).sin()).collect() };
        Two {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(wave(40_000), [40_000]),
                device,
            )),
            b: Param::from_tensor(Tensor::from_data(TensorData::new(wave(35), [7, 5]), device)),
        }
    }

    /// Five steps on a loss whose gradient changes every step; returns the final weights.
    fn run(mut optimizer: ModuleOptimizer, device: &Device) -> Vec<f32> {
        let mut model = start(device);
        for step in 0..5 {
            let loss = (model.a.val().powf_scalar(3.0) * (step as f64 + 1.0)).sum()
                + model.b.val().sin().sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-2, model, grads);
        }
        let mut all = values(model.a.val().inner());
        all.extend(values(model.b.val().inner()));
        all
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "max abs difference {worst}");
    }

    #[test]
    fn host_adam_follows_burns_adam() {
        let device = Device::flex().autodiff();
        for wd in [None, Some(0.1f32)] {
            let host = run(
                ModuleOptimizer::from(HostAdam::new(0.9, 0.999, 1e-8, wd)),
                &device,
            );
            let reference = AdamConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(wd.map(WeightDecayConfig::new))
                .init();
            assert_close(&host, &run(reference, &device));
        }
    }

    #[test]
    fn host_rmsprop_follows_burns_rmsprop() {
        let device = Device::flex().autodiff();
        for wd in [None, Some(0.1f32)] {
            let host = run(
                ModuleOptimizer::from(HostRmsProp::new(0.9, 0.0, 1e-7, wd)),
                &device,
            );
            let reference = RmsPropConfig::new()
                .with_alpha(0.9)
                .with_momentum(0.0)
                .with_epsilon(1e-7)
                .with_weight_decay(wd.map(WeightDecayConfig::new))
                .init();
            assert_close(&host, &run(reference, &device));
        }
    }
}
