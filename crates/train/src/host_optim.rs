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

/// Runs `update` over a parameter and its state (`tensors`, written in place) with the gradient
/// `grad` read, when every one of them is an unshared host buffer of the gradient's length;
/// gives them back untouched otherwise. No fresh buffers, and each cache line is written while
/// it is still there from being read.
#[allow(clippy::result_large_err)] // the error gives the caller's own tensors back
fn update_in_place<const W: usize, const D: usize>(
    tensors: [Tensor<D>; W],
    grad: &Tensor<D>,
    update: impl Fn([f32; W], f32) -> [f32; W] + Sync,
) -> Result<[Tensor<D>; W], [Tensor<D>; W]> {
    let Some(g) = fused::host_values(grad) else {
        return Err(tensors);
    };
    let mut owned = tensors.map(fused::owned_host_values);
    let usable = owned
        .iter_mut()
        .all(|t| t.as_mut().is_ok_and(|v| v.values_mut().len() == g.len()));
    if !usable {
        return Err(owned.map(|t| t.map_or_else(|t| t, |v| v.into_tensor())));
    }
    let mut values = owned.map(|t| t.unwrap_or_else(|_| unreachable!("checked above")));
    let chunks = g.len().div_ceil(CHUNK);
    let mut tasks: Vec<[&mut [f32]; W]> = (0..chunks)
        .map(|_| std::array::from_fn(|_| Default::default()))
        .collect();
    for (k, v) in values.iter_mut().enumerate() {
        for (task, chunk) in tasks.iter_mut().zip(v.values_mut().chunks_mut(CHUNK)) {
            task[k] = chunk;
        }
    }
    tasks.into_par_iter().enumerate().for_each(|(c, written)| {
        let start = c * CHUNK;
        let read = &g[start..start + written[0].len()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { in_place_chunk_avx2(written, read, &update) };
            return;
        }
        in_place_chunk(written, read, &update);
    });
    Ok(values.map(|v| v.into_tensor()))
}

/// The body of [`update_in_place`] for one chunk. Sixteen elements at a time go through local
/// arrays, so that the arithmetic vectorises: the compiler cannot tell that the written slices
/// do not overlap the others, and element by element over them it does not.
#[inline(always)]
fn in_place_chunk<const W: usize>(
    written: [&mut [f32]; W],
    read: &[f32],
    f: &impl Fn([f32; W], f32) -> [f32; W],
) {
    const LANES: usize = 16;
    let n = written[0].len();
    let read = &read[..n];
    let mut written = written.map(|x| &mut x[..n]);
    let whole = n - n % LANES;
    for start in (0..whole).step_by(LANES) {
        let mut w: [[f32; LANES]; W] = std::array::from_fn(|k| {
            written[k][start..start + LANES]
                .try_into()
                .expect("a whole block")
        });
        let r: [f32; LANES] = read[start..start + LANES]
            .try_into()
            .expect("a whole block");
        for (l, &g) in r.iter().enumerate() {
            let out = f(std::array::from_fn(|k| w[k][l]), g);
            for (block, v) in w.iter_mut().zip(out) {
                block[l] = v;
            }
        }
        for (dst, block) in written.iter_mut().zip(&w) {
            dst[start..start + LANES].copy_from_slice(block);
        }
    }
    for i in whole..n {
        let out = f(std::array::from_fn(|k| written[k][i]), read[i]);
        for (dst, v) in written.iter_mut().zip(out) {
            dst[i] = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn in_place_chunk_avx2<const W: usize>(
    written: [&mut [f32]; W],
    read: &[f32],
    f: &impl Fn([f32; W], f32) -> [f32; W],
) {
    in_place_chunk(written, read, f)
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

/// A parameter and its optimizer state after (or instead of) a step.
type Stepped<S, const D: usize> = (Tensor<D>, Option<S>);

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

impl HostAdam {
    /// One element's update at step `time` (from 1): `([parameter, moment 1, moment 2],
    /// gradient)` to their new values.
    fn update(&self, lr: LearningRate, time: usize) -> impl Fn([f32; 3], f32) -> [f32; 3] + Sync {
        let (b1, b2) = (self.beta_1, self.beta_2);
        // burn's form: m·√(1−β₂ᵗ)/(1−β₁ᵗ) / (√v + ε·√(1−β₂ᵗ)).
        let correction_2 = (1.0 - b2.powi(time as i32)).sqrt();
        let factor = correction_2 / (1.0 - b1.powi(time as i32));
        let eps = self.epsilon * correction_2;
        let lr = lr as f32;
        let decay = self.weight_decay.unwrap_or(0.0);
        move |[p, m, v], g| {
            let g = if decay != 0.0 { g + decay * p } else { g };
            let m = b1 * m + (1.0 - b1) * g;
            let v = b2 * v + (1.0 - b2) * g * g;
            [p - lr * (m * factor / (v.sqrt() + eps)), m, v]
        }
    }

    /// The step written over the parameter's and the moments' own buffers, when nothing else
    /// shares them (the usual case after the first step); gives everything back untouched
    /// otherwise.
    #[allow(clippy::result_large_err)] // the error gives the caller's own tensors back
    fn step_in_place<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: &Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> Result<Stepped<AdamState<D>, D>, Stepped<AdamState<D>, D>> {
        let Some(AdamState { momentum }) = state else {
            return Err((param, None));
        };
        if momentum.max_moment_2.is_some() {
            return Err((param, Some(AdamState::new(momentum))));
        }
        let time = momentum.time;
        let state = |time, [p, m, v]: [Tensor<D>; 3]| {
            (
                p,
                Some(AdamState::new(AdaptiveMomentumState::new(time, m, v))),
            )
        };
        let tensors = [param, momentum.moment_1, momentum.moment_2];
        match update_in_place(tensors, grad, self.update(lr, time + 1)) {
            Ok(updated) => Ok(state(time + 1, updated)),
            Err(untouched) => Err(state(time, untouched)),
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
        let (param, state) = match self.step_in_place(lr, param, &grad, state) {
            Ok(done) => return done,
            Err(untouched) => untouched,
        };
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
        let update = self.update(lr, time);
        let [p_new, m_new, v_new] = host_pass([&p, &g, m, v], |[p, g, m, v]| update([p, m, v], g));
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

/// The state burn's RMSprop keeps without momentum and centring: the running average, also as
/// the centred state's average (one buffer).
fn rmsprop_state<const D: usize>(square_avg: Tensor<D>) -> RmsPropState<D> {
    RmsPropState::new(
        SquareAvgState {
            square_avg: square_avg.clone(),
        },
        CenteredState {
            grad_avg: None,
            avg: square_avg,
        },
        None,
    )
}

impl HostRmsProp {
    /// One element's update: `([parameter, running average], gradient)` to their new values;
    /// `alpha` is 0 on the first step (the average starts from zero).
    fn update(&self, lr: LearningRate, alpha: f32) -> impl Fn([f32; 2], f32) -> [f32; 2] + Sync {
        let keep = 1.0 - self.alpha;
        let (eps, lr) = (self.epsilon, lr as f32);
        let decay = self.weight_decay.unwrap_or(0.0);
        move |[p, s], g| {
            let g = if decay != 0.0 { g + decay * p } else { g };
            let s = alpha * s + keep * g * g;
            [p - lr * (g / (s.sqrt() + eps)), s]
        }
    }

    /// The step written over the parameter's and the average's own buffers, when nothing else
    /// shares them (the usual case after the first step); gives everything back untouched
    /// otherwise.
    #[allow(clippy::result_large_err)] // the error gives the caller's own tensors back
    fn step_in_place<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: &Tensor<D>,
        state: Option<RmsPropState<D>>,
    ) -> Result<Stepped<RmsPropState<D>, D>, Stepped<RmsPropState<D>, D>> {
        let Some(state) = state else {
            return Err((param, None));
        };
        if state.momentum.is_some() || state.centered.grad_avg.is_some() {
            return Err((param, Some(state)));
        }
        let RmsPropState {
            square_avg,
            centered,
            ..
        } = state;
        // The centred average is the same buffer as the running average: dropped first, the
        // running average's buffer is unshared.
        drop(centered);
        let avg = square_avg.square_avg;
        match update_in_place([param, avg], grad, self.update(lr, self.alpha)) {
            Ok([p, avg]) => Ok((p, Some(rmsprop_state(avg)))),
            Err([p, avg]) => Err((p, Some(rmsprop_state(avg)))),
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
        let (param, state) = match self.step_in_place(lr, param, &grad, state) {
            Ok(done) => return done,
            Err(untouched) => untouched,
        };
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
        let update = self.update(lr, alpha);
        let [p_new, avg_new] = host_pass([&p, &g, avg], |[p, g, s]| update([p, s], g));
        drop((p, g, previous));
        (
            tensor(p_new, &shape, &device),
            Some(rmsprop_state(tensor::<D>(avg_new, &shape, &device))),
        )
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

    #[track_caller]
    fn assert_close(got: &[f32], want: &[f32]) {
        lstm_lm_model::testing::assert_close("host vs burn optimizer", got, want, 1e-5);
    }

    fn vector(n: usize, k: f32, device: &Device) -> Tensor<1> {
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * k).sin()).collect();
        Tensor::from_data(TensorData::new(v, [n]), device)
    }

    fn deep_copy(t: &Tensor<1>) -> Tensor<1> {
        Tensor::from_data(t.to_data(), &t.device())
    }

    /// After the first step, RMSprop writes over the parameter's and the average's own buffers,
    /// with the values the path with fresh buffers gives (taken here by sharing the parameter).
    #[test]
    fn rmsprop_updates_in_place_with_the_same_values() {
        let device = Device::flex();
        let opt = HostRmsProp::new(0.9, 0.0, 1e-7, Some(0.1));
        let (p1, s1) = opt.step(
            1e-2,
            vector(1000, 0.37, &device),
            vector(1000, 0.11, &device),
            None,
        );
        let s1 = s1.unwrap();
        let (p_copy, avg_copy) = (deep_copy(&p1), deep_copy(&s1.square_avg.square_avg));
        let grad = vector(1000, 0.23, &device);
        let Ok((p2, s2)) = opt.step_in_place(1e-2, p1, &grad, Some(s1)) else {
            panic!("the step was not taken in place");
        };
        let shared = p_copy.clone();
        let (p2_fresh, s2_fresh) = opt.step(1e-2, p_copy, grad, Some(rmsprop_state(avg_copy)));
        drop(shared);
        assert_eq!(values(p2), values(p2_fresh));
        assert_eq!(
            values(s2.unwrap().square_avg.square_avg),
            values(s2_fresh.unwrap().square_avg.square_avg)
        );
    }

    /// The same for Adam, moments included.
    #[test]
    fn adam_updates_in_place_with_the_same_values() {
        let device = Device::flex();
        let opt = HostAdam::new(0.9, 0.999, 1e-8, Some(0.1));
        let (p1, s1) = opt.step(
            1e-2,
            vector(1000, 0.37, &device),
            vector(1000, 0.11, &device),
            None,
        );
        let s1 = s1.unwrap();
        let copy = (
            deep_copy(&p1),
            deep_copy(&s1.momentum.moment_1),
            deep_copy(&s1.momentum.moment_2),
        );
        let grad = vector(1000, 0.23, &device);
        let Ok((p2, s2)) = opt.step_in_place(1e-2, p1, &grad, Some(s1)) else {
            panic!("the step was not taken in place");
        };
        let shared = copy.0.clone();
        let state = AdamState::new(AdaptiveMomentumState::new(1, copy.1, copy.2));
        let (p2_fresh, s2_fresh) = opt.step(1e-2, copy.0, grad, Some(state));
        drop(shared);
        assert_eq!(values(p2), values(p2_fresh));
        let (s2, s2_fresh) = (s2.unwrap().momentum, s2_fresh.unwrap().momentum);
        assert_eq!(s2.time, s2_fresh.time);
        assert_eq!(values(s2.moment_1), values(s2_fresh.moment_1));
        assert_eq!(values(s2.moment_2), values(s2_fresh.moment_2));
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
