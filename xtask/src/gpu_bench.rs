//! `cargo xtask gpu-bench`: training and generation throughput on the wgpu backend.
//!
//! Synthetic token ids, the model built as `lstm-lm train` builds it, one training step as the
//! trainer takes it (forward, cross-entropy, backward, global-norm clipping at 0.25, Adam), and
//! generation as `lstm-lm generate` runs it (prompt in one call, then one token per call with
//! the state carried, sampled on the host).
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use lstm_lm_model::burn::module::Module;
use lstm_lm_model::burn::optim::{AdamConfig, GradientsParams};
use lstm_lm_model::burn::tensor::{Device, Int, Tensor, TensorData};
use lstm_lm_model::{BackendKind, LanguageModelConfig, device_for, wgpu_adapters};
use lstm_lm_train::Generator;
use lstm_lm_train::loss::cross_entropy;
use lstm_lm_train::optim::clip_global_norm;

/// Which model sizes to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchConfig {
    /// Embedding(10000, 256), 2×LSTM 256, batch 32, bptt 35.
    Lm,
    /// Embedding(33278, 1024), 2×LSTM 1024, batch 64, bptt 35 (WikiText-2 vocabulary).
    Large,
    /// Both.
    All,
}

/// Time training steps and generation on the wgpu backend.
#[derive(Debug, Args)]
pub struct GpuBenchArgs {
    /// wgpu adapter index, as `lstm-lm --device N` (0 = the first adapter listed).
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Timed training steps per configuration.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed training steps first (kernel compilation, allocator warm-up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Model configuration(s) to time.
    #[arg(long, value_enum, default_value = "all")]
    pub config: BenchConfig,
}

struct Shape {
    name: &'static str,
    vocab: usize,
    embedding: usize,
    hidden: usize,
    layers: usize,
    batch: usize,
    bptt: usize,
}

const LM: Shape = Shape {
    name: "lm",
    vocab: 10_000,
    embedding: 256,
    hidden: 256,
    layers: 2,
    batch: 32,
    bptt: 35,
};

const LARGE: Shape = Shape {
    name: "large",
    vocab: 33_278,
    embedding: 1024,
    hidden: 1024,
    layers: 2,
    batch: 64,
    bptt: 35,
};

const PROMPT_TOKENS: usize = 20;
const GENERATED_TOKENS: usize = 200;

/// Runs `cargo xtask gpu-bench`.
pub fn run(args: &GpuBenchArgs) -> Result<()> {
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let device = check_gpu(args.device)?;
    let shapes: Vec<&Shape> = match args.config {
        BenchConfig::Lm => vec![&LM],
        BenchConfig::Large => vec![&LARGE],
        BenchConfig::All => vec![&LM, &LARGE],
    };
    for shape in shapes {
        bench(shape, &device, args)?;
    }
    Ok(())
}

/// Looks for the Vulkan loader and drivers, then opens adapter `index`; says what is missing.
fn check_gpu(index: usize) -> Result<Device> {
    if cfg!(target_os = "linux") {
        let loader = [
            "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
            "/usr/lib/aarch64-linux-gnu/libvulkan.so.1",
            "/usr/lib64/libvulkan.so.1",
            "/usr/lib/libvulkan.so.1",
            "/usr/local/lib/libvulkan.so.1",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
        let mut icds = Vec::new();
        for dir in [
            "/usr/share/vulkan/icd.d",
            "/etc/vulkan/icd.d",
            "/usr/local/share/vulkan/icd.d",
        ] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                icds.extend(entries.flatten().map(|e| e.path().display().to_string()));
            }
        }
        match loader {
            Some(p) => println!("vulkan loader: {p}"),
            None => println!(
                "vulkan loader: libvulkan.so.1 not found in the usual places \
                 (Debian/Ubuntu: apt-get install libvulkan1)"
            ),
        }
        if icds.is_empty() {
            println!(
                "vulkan drivers: none in /usr/share/vulkan/icd.d or /etc/vulkan/icd.d \
                 (NVIDIA: the proprietary driver installs nvidia_icd.json; AMD/Intel: \
                 mesa-vulkan-drivers)"
            );
        } else {
            println!("vulkan drivers: {}", icds.join(", "));
        }
    }
    let adapters = wgpu_adapters();
    for (i, a) in adapters.iter().enumerate() {
        println!("wgpu adapter {i}: {a:?}");
    }
    if adapters.is_empty() {
        bail!(
            "no wgpu adapter: a GPU benchmark needs the Vulkan loader (libvulkan1) and the GPU \
             vendor's Vulkan driver (NVIDIA: the proprietary driver with nvidia_icd.json; \
             AMD/Intel: mesa-vulkan-drivers); Mesa's lavapipe also works but runs on the CPU"
        );
    }
    let device = device_for(BackendKind::Wgpu, index)?;
    if format!("{device:?}").contains("kind: Cpu") {
        println!(
            "note: adapter {index} is a software rasterizer (lavapipe/llvmpipe): these numbers \
             measure the CPU, not a GPU"
        );
    }
    Ok(device)
}

/// A fixed pseudo-random token stream (64-bit LCG).
struct Tokens(u64);

impl Tokens {
    fn next(&mut self, vocab: usize) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % vocab as u64) as u32
    }

    fn uniform(&mut self) -> f64 {
        self.next(1 << 24) as f64 / (1u64 << 24) as f64
    }

    fn batch(
        &mut self,
        vocab: usize,
        batch: usize,
        width: usize,
        device: &Device,
    ) -> Tensor<2, Int> {
        let v: Vec<i64> = (0..batch * width)
            .map(|_| self.next(vocab) as i64)
            .collect();
        Tensor::from_data(TensorData::new(v, [batch, width]), device)
    }
}

fn bench(shape: &Shape, device: &Device, args: &GpuBenchArgs) -> Result<()> {
    let config = LanguageModelConfig::new(shape.vocab)
        .with_embedding_size(shape.embedding)
        .with_hidden_size(shape.hidden)
        .with_num_layers(shape.layers);
    let ad = device.clone().autodiff();
    let mut model = config.init(&ad)?;
    let mut optim = AdamConfig::new().init();
    let mut tokens = Tokens(42);
    let (b, t, v) = (shape.batch, shape.bptt, shape.vocab);
    let mut state = None;
    let mut step = |model: lstm_lm_model::LanguageModel| {
        let window = tokens.batch(v, b, t + 1, &ad);
        let input = window.clone().narrow(1, 0, t);
        let target = window.narrow(1, 1, t).reshape([b * t]);
        let (logits, next) = model.forward(input, state.take());
        state = Some(next.detach());
        let loss = cross_entropy(logits.reshape([b * t, v]), target, None);
        let value: f32 = loss.clone().into_scalar();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        clip_global_norm(&model, &mut grads, 0.25);
        (optim.step(1e-3, model, grads), value)
    };
    for _ in 0..args.warmup {
        model = step(model).0;
    }
    let start = Instant::now();
    let mut last = 0.0;
    for _ in 0..args.iters {
        (model, last) = step(model);
    }
    // Wait for the last optimizer step too.
    let _: f32 = model.output_bias.val().sum().into_scalar();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "lstm-lm wgpu {} train tok_per_s={:.0} ms_per_step={:.1} steps={} batch={b} bptt={t} \
         loss={last:.3} {}",
        shape.name,
        (args.iters * b * t) as f64 / secs,
        secs * 1e3 / args.iters as f64,
        args.iters,
        memory(device)
    );

    let inference = model.valid();
    let mut generator = Generator::new(inference.clone(), device.clone());
    let prompt: Vec<u32> = (0..PROMPT_TOKENS).map(|_| tokens.next(v)).collect();
    // Warm-up: the prompt and a few single-token steps compile their kernels.
    generator.feed(&prompt)?;
    for _ in 0..5 {
        let id = sample(generator.logits(), v, &mut tokens)?;
        generator.feed(&[id])?;
    }
    let mut generator = Generator::new(inference, device.clone());
    let start = Instant::now();
    generator.feed(&prompt)?;
    let prompt_secs = start.elapsed().as_secs_f64();
    // Every token counted is one whose logits were read back whole and finite: a failed read
    // ends the benchmark with an error instead of timing tokens that were never produced.
    for _ in 0..GENERATED_TOKENS {
        let id = sample(generator.logits(), v, &mut tokens)?;
        generator.feed(&[id])?;
    }
    let secs = start.elapsed().as_secs_f64() - prompt_secs;
    println!(
        "lstm-lm wgpu {} gen tok_per_s={:.1} ms_per_token={:.2} prompt_ms={:.1} batch=1 \
         prompt={PROMPT_TOKENS} tokens={GENERATED_TOKENS} {}",
        shape.name,
        GENERATED_TOKENS as f64 / secs,
        secs * 1e3 / GENERATED_TOKENS as f64,
        prompt_secs * 1e3,
        memory(device)
    );
    Ok(())
}

/// Samples from softmax(logits) with temperature 1, on the host, as `lstm-lm generate` does.
/// An error when there are no logits (nothing fed), not `vocab` of them, or one is not finite.
fn sample(logits: Option<&[f32]>, vocab: usize, rng: &mut Tokens) -> Result<u32> {
    let Some(logits) = logits else {
        bail!("the generator has no logits to sample from");
    };
    if logits.len() != vocab {
        bail!(
            "read back {} logits from the device, expected {vocab}",
            logits.len()
        );
    }
    if let Some(i) = logits.iter().position(|l| !l.is_finite()) {
        bail!(
            "logit {i} read back from the device is {}: the generation step failed",
            logits[i]
        );
    }
    let max = logits.iter().copied().max_by(f32::total_cmp).unwrap_or(0.0);
    let weights: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let mut r = rng.uniform() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        r -= w;
        if r <= 0.0 {
            return Ok(i as u32);
        }
    }
    Ok((weights.len() - 1) as u32)
}

/// Peak resident memory of this process, and what burn's GPU allocator holds right now.
fn memory(device: &Device) -> String {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.0}", kb as f64 / 1024.0))
        .unwrap_or_else(|| "not_measured".into());
    let gpu = match device.memory_pool_usage() {
        Some(u) => format!(
            "gpu_reserved_mib={:.0} gpu_in_use_mib={:.0}",
            u.bytes_reserved as f64 / 1048576.0,
            u.bytes_in_use as f64 / 1048576.0
        ),
        None => "gpu_mem=not_measured".into(),
    };
    format!("peak_rss_mib={rss} {gpu}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token is counted only when its logits were read back: missing, short or non-finite
    /// logits fail the benchmark (they were sampled as token 0 before).
    #[test]
    fn sampling_refuses_logits_that_were_not_read_back() {
        let mut rng = Tokens(1);
        let good = [0.5f32, 2.0, -1.0];
        assert!(sample(Some(&good), 3, &mut rng).unwrap() < 3);
        let err = |logits: Option<&[f32]>| {
            sample(logits, 3, &mut Tokens(1))
                .expect_err("refused")
                .to_string()
        };
        assert!(err(None).contains("no logits"));
        assert!(err(Some(&[])).contains("read back 0 logits"));
        assert!(err(Some(&[0.0, f32::NAN, 0.0])).contains("logit 1"));
        assert!(err(Some(&[f32::INFINITY, 0.0, 0.0])).contains("logit 0"));
    }
}
