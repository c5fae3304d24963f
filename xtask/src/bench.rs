//! `cargo xtask bench`: the three CPU configurations of `../shared/bench/torch_lstm_bench.py`
//! (same shapes, optimizers and work per iteration), timed through the library code that
//! `lstm-lm train` and `lstm-lm generate` run, optionally alternating with the PyTorch script.
//!
//! Every measurement runs in a child process (this binary with the hidden `bench-one`
//! subcommand), so peak memory is per configuration and measured the same way for both
//! programs: the child's maximum resident set size as the kernel reports it to `wait4`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use lstm_lm_model::burn::optim::GradientsParams;
use lstm_lm_model::burn::tensor::Device;
use lstm_lm_model::regularisation::Regularisation;
use lstm_lm_model::{BackendKind, CellKind, LanguageModelConfig, device_for};
use lstm_lm_train::activation_reg::ActivationPenalty;
use lstm_lm_train::data::{ids_tensor, targets_tensor};
use lstm_lm_train::loss::projected_cross_entropy;
use lstm_lm_train::optim::{build_optimizer, clip_global_norm};
use lstm_lm_train::settings::{OptimSettings, OptimizerKind};
use lstm_lm_train::{Generator, SamplingConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bench_use::{RunUse, bench_run_use};

const VOCAB: usize = 10_000;

/// A benchmark configuration (see `../shared/bench/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchConfig {
    /// Embedding(10000,100) → LSTM 128 → Linear on the last step; T=20, batch 128, RMSprop.
    Seed,
    /// Embedding(10000,256) → 2×LSTM 256 → Linear on every step; T=35, batch 32, Adam, clip 0.25.
    Lm,
    /// The `lm` step with AWD-LSTM's regularisers on (locked dropout 0.4 on the embedding
    /// output, between layers and on the output, weight drop 0.5, embedding dropout 0.1, AR 2,
    /// TAR 1): with `lm` in the same run, the ratio of the two is printed (not in `all`; no
    /// PyTorch counterpart).
    LmAwd,
    /// The `lm` model, batch 1: a 20-token prompt, then 200 sampled tokens.
    Gen,
    /// A 5-gram Kneser-Ney model of WikiText-2's training text (2M tokens): tokenizer fit,
    /// counting and estimation (no PyTorch counterpart).
    Ngram,
    /// `lstm-lm neighbors`: one nearest-word query on a 33,278 × 650 table (not in `all`).
    Neighbors,
    /// `lstm-lm eval FILE` on 400 lines with the `lm` model (not in `all`).
    Eval,
    /// `lstm-lm score --file FILE` on the same lines, with its ratio to `eval` (not in `all`).
    Score,
    /// `lstm-lm embed --file FILE` on the same lines, with its ratio to `eval` (not in `all`).
    Embed,
    /// seed, lm, gen and ngram.
    All,
}

impl BenchConfig {
    fn name(self) -> &'static str {
        match self {
            BenchConfig::Seed => "seed",
            BenchConfig::Lm => "lm",
            BenchConfig::LmAwd => "lm-awd",
            BenchConfig::Gen => "gen",
            BenchConfig::Neighbors => "neighbors",
            BenchConfig::Eval => "eval",
            BenchConfig::Score => "score",
            BenchConfig::Embed => "embed",
            BenchConfig::Ngram => "ngram",
            BenchConfig::All => "all",
        }
    }

    fn in_torch_script(self) -> bool {
        matches!(self, BenchConfig::Seed | BenchConfig::Lm | BenchConfig::Gen)
    }

    fn expand(list: &[BenchConfig]) -> Vec<BenchConfig> {
        let mut out = Vec::new();
        for &c in list {
            let add: &[BenchConfig] = if c == BenchConfig::All {
                &[
                    BenchConfig::Seed,
                    BenchConfig::Lm,
                    BenchConfig::Gen,
                    BenchConfig::Ngram,
                ]
            } else {
                std::slice::from_ref(&c)
            };
            for &a in add {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }
}

/// `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Configurations to time.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub config: Vec<BenchConfig>,
    /// Backends to time (ndarray, flex, wgpu).
    #[arg(long, value_delimiter = ',', default_value = "flex")]
    pub backend: Vec<String>,
    /// Timed iterations per measurement (the median is reported).
    #[arg(long, default_value_t = 8)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// CPU threads, for both programs (PyTorch's `--threads`).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Also run the PyTorch script with this Python, alternating with ours, and print ratios.
    #[arg(long, value_name = "PYTHON")]
    pub vs_torch: Option<PathBuf>,
    /// The PyTorch script (default: ../shared/bench/torch_lstm_bench.py beside the project).
    #[arg(long, value_name = "FILE")]
    pub torch_script: Option<PathBuf>,
    /// Thread counts to run PyTorch with, each in every round (e.g. `1,2`); the ratios use the
    /// fastest of them (default: --threads).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub torch_threads: Vec<usize>,
    /// Alternating rounds (lstm-lm, torch, lstm-lm, torch, ...); ratios are reported per round.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Run the recurrent layers as composed tensor operations instead of the fused kernel.
    #[arg(long)]
    pub composed: bool,
    /// WikiText-2's train.txt for the `ngram` configuration (default: data/wikitext-2/ or
    /// ../shared/datasets/wikitext-2/ beside the project; skipped when neither exists).
    #[arg(long, value_name = "FILE")]
    pub ngram_data: Option<PathBuf>,
}

/// `cargo xtask bench-one` (hidden): one configuration on one backend, in this process.
#[derive(Debug, Args)]
pub struct BenchOneArgs {
    /// Configuration.
    #[arg(long, value_enum)]
    pub config: BenchConfig,
    /// Backend.
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Timed iterations.
    #[arg(long, default_value_t = 8)]
    pub iters: usize,
    /// Warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Composed recurrent layers instead of the fused kernel.
    #[arg(long)]
    pub composed: bool,
    /// The `ngram` configuration's training text.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
}

/// One measured line of either program.
#[derive(Debug, Clone)]
struct Measured {
    value: f64,
    /// CPU milliseconds per iteration (`cpu_ms`), when the line has them.
    cpu_ms: Option<f64>,
    peak_rss_mb: f64,
    line: String,
}

/// One (configuration, backend) pair and its per-round (lstm-lm, torch) figures.
type Row = (String, String, Vec<(Measured, Option<Measured>)>);

/// Runs the benchmark as `cargo xtask bench` asks.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let configs = BenchConfig::expand(&args.config);
    let torch = match &args.vs_torch {
        Some(python) => {
            let script = args.torch_script.clone().unwrap_or_else(|| {
                crate::project_root().join("../shared/bench/torch_lstm_bench.py")
            });
            if !script.is_file() {
                bail!(
                    "the PyTorch script {} does not exist: pass --torch-script FILE",
                    script.display()
                );
            }
            if args.iters < 5 {
                bail!("--iters must be at least 5 with --vs-torch (the PyTorch script's minimum)");
            }
            Some((python.clone(), script))
        }
        None => None,
    };
    let torch_threads = if args.torch_threads.is_empty() {
        vec![args.threads]
    } else {
        args.torch_threads.clone()
    };
    if torch_threads.contains(&0) {
        bail!("--torch-threads takes thread counts of at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    println!(
        "# lstm-lm bench: iters={} warmup={} threads={} rounds={}{}",
        args.iters,
        args.warmup,
        args.threads,
        args.rounds,
        if args.composed { " composed" } else { "" }
    );
    let mut table: Vec<Row> = Vec::new();
    for round in 0..args.rounds {
        for &config in &configs {
            if config == BenchConfig::Ngram {
                // One line, whatever the backends: counting runs on the host.
                let Some(data) = ngram_data(args)? else {
                    println!(
                        "# ngram SKIPPED: no wikitext-2/train.txt under data/ or ../shared/datasets/ (pass --ngram-data FILE)"
                    );
                    continue;
                };
                let mut cmd = Command::new(&exe);
                cmd.args(["bench-one", "--config", "ngram"])
                    .args(["--iters", &args.iters.min(3).to_string()])
                    .arg("--data")
                    .arg(&data);
                println!("{}", measure(cmd, "lstm-lm")?.line);
                continue;
            }
            for backend in &args.backend {
                let mut cmd = Command::new(&exe);
                cmd.arg("bench-one")
                    .args(["--config", config.name(), "--backend", backend])
                    .args(["--iters", &args.iters.to_string()])
                    .args(["--warmup", &args.warmup.to_string()])
                    .args(["--threads", &args.threads.to_string()]);
                if args.composed {
                    cmd.arg("--composed");
                }
                let ours = measure(cmd, "lstm-lm")?;
                println!("{}", ours.line);
                // PyTorch at each thread count; the fastest one is compared with ours.
                let mut theirs: Option<Measured> = None;
                // The PyTorch script has no `neighbors`, `eval`, `score` or `embed` configuration.
                if let Some((python, script)) = torch.as_ref().filter(|_| config.in_torch_script())
                {
                    for threads in &torch_threads {
                        let mut cmd = Command::new(python);
                        cmd.arg(script)
                            .args(["--config", config.name()])
                            .args(["--iters", &args.iters.to_string()])
                            .args(["--warmup", &args.warmup.to_string()])
                            .args(["--threads", &threads.to_string()]);
                        let t = measure(cmd, "torch")?;
                        println!("{}", t.line);
                        if theirs.as_ref().is_none_or(|best| t.value > best.value) {
                            theirs = Some(t);
                        }
                    }
                }
                let key = (config.name().to_string(), backend.clone());
                match table
                    .iter_mut()
                    .find(|(c, b, _)| (c, b) == (&key.0, &key.1))
                {
                    Some(row) => row.2.push((ours, theirs)),
                    None => table.push((key.0, key.1, vec![(ours, theirs)])),
                }
            }
        }
        if args.rounds > 1 {
            println!("# round {} of {} done", round + 1, args.rounds);
        }
    }
    print_paired_ratios(&table);
    if torch.is_some() {
        println!(
            "# ratios lstm-lm / torch (throughput: higher is better; memory: lower is better){}",
            if torch_threads.len() > 1 {
                " against PyTorch's fastest thread count of each round"
            } else {
                ""
            }
        );
        for (config, backend, rounds) in &table {
            let speed: Vec<f64> = rounds
                .iter()
                .filter_map(|(o, t)| t.as_ref().map(|t| o.value / t.value))
                .collect();
            let memory: Vec<f64> = rounds
                .iter()
                .filter_map(|(o, t)| t.as_ref().map(|t| o.peak_rss_mb / t.peak_rss_mb))
                .collect();
            let list = |v: &[f64]| {
                v.iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "ratio {config} backend={backend} speed={:.2} (rounds: {}) peak_rss={:.2} (rounds: {})",
                median(&speed),
                list(&speed),
                median(&memory),
                list(&memory)
            );
        }
    }
    Ok(())
}

/// Configurations timed against another of the same run, on the same backend, round by round:
/// `score` and `embed` against `eval` (1.00 is eval speed), `lm-awd` against `lm` (1.00 is no
/// cost for the regularisers). Wall-clock throughput, and CPU time per unit of work, which a
/// shared machine disturbs less.
const RATIO_PAIRS: [(&str, &str); 3] = [("score", "eval"), ("embed", "eval"), ("lm-awd", "lm")];

fn print_paired_ratios(table: &[Row]) {
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (config, base_config) in RATIO_PAIRS {
        for (_, backend, rounds) in table.iter().filter(|r| r.0 == config) {
            let Some((_, _, base)) = table.iter().find(|r| r.0 == base_config && &r.1 == backend)
            else {
                continue;
            };
            let pairs = || {
                rounds
                    .iter()
                    .zip(base)
                    .map(|((ours, _), (theirs, _))| (ours, theirs))
            };
            let speed: Vec<f64> = pairs().map(|(o, b)| o.value / b.value).collect();
            let cpu_speed: Vec<f64> = pairs()
                .filter_map(|(o, b)| Some(b.cpu_ms? / o.cpu_ms?))
                .collect();
            println!(
                "ratio {config}/{base_config} backend={backend} speed={:.2} (rounds: {}) cpu_speed={:.2} (rounds: {})",
                median(&speed),
                list(&speed),
                median(&cpu_speed),
                list(&cpu_speed)
            );
        }
    }
}

/// The WikiText-2 training text for the `ngram` configuration, if there is one.
fn ngram_data(args: &BenchArgs) -> Result<Option<PathBuf>> {
    if let Some(path) = &args.ngram_data {
        if !path.is_file() {
            bail!("--ngram-data {} is not a file", path.display());
        }
        return Ok(Some(path.clone()));
    }
    let root = crate::project_root();
    Ok([
        root.join("data/wikitext-2/train.txt"),
        root.join("../shared/datasets/wikitext-2/train.txt"),
    ]
    .into_iter()
    .find(|p| p.is_file()))
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `cmd`, takes the line that starts with `prefix`, and adds the child's peak RSS.
fn measure(mut cmd: Command, prefix: &str) -> Result<Measured> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .with_context(|| format!("cannot read the output of {shown}"))?;
    }
    let (status, peak_kb) = wait_with_peak_rss(child.id())?;
    if status != 0 {
        bail!("{shown} failed (exit status {status}); its output:\n{out}");
    }
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .with_context(|| format!("{shown} printed no `{prefix} …` line; its output:\n{out}"))?;
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let value = field("seq_per_s")
        .or_else(|| field("tok_per_s"))
        .or_else(|| field("query_per_s"))
        .with_context(|| format!("no throughput figure in `{line}`"))?;
    let peak_rss_mb = peak_kb as f64 / 1024.0;
    Ok(Measured {
        value,
        cpu_ms: field("cpu_ms"),
        peak_rss_mb,
        line: format!("{line} peak_rss_mb={peak_rss_mb:.0}"),
    })
}

/// Waits for the child `pid` and returns its exit status and peak resident set size in KiB.
fn wait_with_peak_rss(pid: u32) -> Result<(i32, i64)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data that `wait4` fills; `status` is a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        bail!(
            "waiting for process {pid} failed: {}",
            std::io::Error::last_os_error()
        );
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage.ru_maxrss))
}

/// Process CPU time (user + system, all threads) in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` fills the plain-data struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Times `step`: `warmup` untimed calls, then `iters` timed ones. Returns wall and CPU
/// milliseconds per timed call.
pub(crate) fn time_iters(
    warmup: usize,
    iters: usize,
    mut step: impl FnMut(),
) -> (Vec<f64>, Vec<f64>) {
    for _ in 0..warmup {
        step();
    }
    let mut wall = Vec::with_capacity(iters);
    let mut cpu = Vec::with_capacity(iters);
    for _ in 0..iters {
        let c0 = cpu_seconds();
        let t0 = Instant::now();
        step();
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        cpu.push((cpu_seconds() - c0) * 1e3);
    }
    (wall, cpu)
}

/// Runs one configuration in this process and prints one line in the PyTorch script's format.
pub fn run_one(args: &BenchOneArgs) -> Result<()> {
    if args.config == BenchConfig::Ngram {
        return bench_ngram(args);
    }
    lstm_lm_train::setup_threads(Some(args.threads))?;
    lstm_lm_model::fused::set_enabled(!args.composed);
    let device = device_for(args.backend.parse::<BackendKind>()?, 0)?;
    device.seed(0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // On a pool thread, as `lstm-lm train` and `generate` run.
    let (unit, work, (wall, cpu)) = lstm_lm_train::on_pool(|| -> Result<_> {
        Ok(match args.config {
            BenchConfig::Seed => ("seq_per_s", 128usize, bench_seed(args, &device, &mut rng)?),
            BenchConfig::Lm => (
                "tok_per_s",
                32 * 35,
                bench_lm(args, &device, &mut rng, false)?,
            ),
            BenchConfig::LmAwd => (
                "tok_per_s",
                32 * 35,
                bench_lm(args, &device, &mut rng, true)?,
            ),
            BenchConfig::Gen => ("tok_per_s", 200, bench_gen(args, &device, &mut rng)?),
            BenchConfig::Neighbors => (
                "query_per_s",
                1,
                crate::bench_neighbors::bench_neighbors(args.warmup, args.iters, &mut rng),
            ),
            BenchConfig::Eval | BenchConfig::Score | BenchConfig::Embed => {
                let what = match args.config {
                    BenchConfig::Eval => RunUse::Eval,
                    BenchConfig::Score => RunUse::Score,
                    _ => RunUse::Embed,
                };
                let (tokens, times) =
                    bench_run_use(what, args.warmup, args.iters, &device, &mut rng)?;
                ("tok_per_s", tokens, times)
            }
            BenchConfig::Ngram | BenchConfig::All => {
                bail!("bench-one takes a single model configuration")
            }
        })
    })?;
    let med = median(&wall);
    let min = wall.iter().copied().fold(f64::INFINITY, f64::min);
    let max = wall.iter().copied().max_by(f64::total_cmp).unwrap_or(0.0);
    println!(
        "lstm-lm {} {unit}={:.1} median_ms={med:.3} min_ms={min:.3} max_ms={max:.3} cpu_ms={:.3} iters={} threads={} backend={}{}",
        args.config.name(),
        work as f64 / (med / 1e3),
        median(&cpu),
        wall.len(),
        args.threads,
        args.backend,
        if args.composed { " composed" } else { "" }
    );
    Ok(())
}

/// Keras-article shape: padded prefixes (left-aligned as the trainer feeds them), the loss on
/// each row's last real token, RMSprop with Keras' constants. The step is the trainer's:
/// `hidden_at`, the projected cross-entropy, backward, optimizer.
fn bench_seed(
    args: &BenchOneArgs,
    device: &Device,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (batch, time) = (128, 20);
    let train = device.clone().autodiff();
    let mut model = Some(
        LanguageModelConfig::new(VOCAB)
            .with_embedding_size(100)
            .with_hidden_size(128)
            .with_num_layers(1)
            .with_cell(CellKind::Lstm)
            .init(&train)?,
    );
    let mut optimizer = build_optimizer(&OptimSettings {
        optimizer: OptimizerKind::Rmsprop,
        lr: 1e-3,
        alpha: 0.9,
        epsilon: 1e-7,
        ..OptimSettings::default()
    });
    let pool: Vec<_> = (0..8)
        .map(|_| {
            let mut inputs = vec![0u32; batch * time];
            let mut positions = Vec::with_capacity(batch);
            for row in 0..batch {
                let len = rng.random_range(1..=time);
                for t in 0..len {
                    inputs[row * time + t] = rng.random_range(1..VOCAB as u32);
                }
                positions.push(len as u32 - 1);
            }
            let targets: Vec<u32> = (0..batch)
                .map(|_| rng.random_range(1..VOCAB as u32))
                .collect();
            (
                ids_tensor(&inputs, batch, time, &train),
                targets_tensor(&positions, &train),
                targets_tensor(&targets, &train),
            )
        })
        .collect();
    let mut it = 0;
    Ok(time_iters(args.warmup, args.iters, || {
        let (x, positions, y) = &pool[it % pool.len()];
        it += 1;
        let m = model.take().expect("model is put back after every step");
        let (hidden, _) = m.hidden_at(x.clone(), positions.clone(), None);
        let (loss, _) = projected_cross_entropy(&m, hidden, y.clone(), None);
        let grads = GradientsParams::from_grads(loss.clone().backward(), &m);
        model = Some(optimizer.step(1e-3, m, grads));
        // Reading the loss (as the trainer does) also waits for asynchronous backends.
        let _: f32 = loss.into_scalar();
    }))
}

/// word_language_model shape: truncated BPTT over column streams, state carried and detached,
/// the loss on every position, global-norm clipping 0.25, Adam. With `awd`, AWD-LSTM's
/// regularisers as the trainer applies them (see [`BenchConfig::LmAwd`]).
fn bench_lm(
    args: &BenchOneArgs,
    device: &Device,
    rng: &mut ChaCha8Rng,
    awd: bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (batch, time, windows) = (32, 35, 16);
    let train = device.clone().autodiff();
    let (config, regularisation, penalty) = if awd {
        (
            lm_config()
                .with_dropout_embedding(0.4)
                .with_dropout_between(0.4)
                .with_dropout_output(0.4),
            Regularisation {
                locked_dropout: true,
                weight_drop: 0.5,
                embedding_dropout: 0.1,
            },
            ActivationPenalty { ar: 2.0, tar: 1.0 },
        )
    } else {
        (
            lm_config(),
            Regularisation::default(),
            ActivationPenalty::default(),
        )
    };
    let mut model = Some(config.init(&train)?.with_regularisation(regularisation));
    let mut optimizer = build_optimizer(&OptimSettings {
        optimizer: OptimizerKind::Adam,
        lr: 1e-3,
        clip: Some(0.25),
        ..OptimSettings::default()
    });
    // `streams[b]` is column b of the batchified corpus, as the trainer's TBPTT windows read it.
    let streams: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            (0..windows * time + 1)
                .map(|_| rng.random_range(0..VOCAB as u32))
                .collect()
        })
        .collect();
    let window = |k: usize| {
        let start = (k % windows) * time;
        let mut x = Vec::with_capacity(batch * time);
        let mut y = Vec::with_capacity(batch * time);
        for s in &streams {
            x.extend_from_slice(&s[start..start + time]);
            y.extend_from_slice(&s[start + 1..start + time + 1]);
        }
        (
            ids_tensor(&x, batch, time, &train),
            targets_tensor(&y, &train),
        )
    };
    let pool: Vec<_> = (0..windows).map(window).collect();
    let mut state = None;
    let mut it = 0;
    Ok(time_iters(args.warmup, args.iters, || {
        let (x, y) = &pool[it % pool.len()];
        it += 1;
        let m = model.take().expect("model is put back after every step");
        let (top, next) = m.regularised_hidden_states(x.clone(), state.take());
        let extra = penalty.penalty(&top);
        let hidden = top.dropped.reshape([batch * time, 256]);
        let (loss, _) = projected_cross_entropy(&m, hidden, y.clone(), None);
        let objective = match extra {
            Some(p) => loss.clone() + p,
            None => loss.clone(),
        };
        let mut grads = GradientsParams::from_grads(objective.backward(), &m);
        clip_global_norm(&m, &mut grads, 0.25);
        model = Some(optimizer.step(1e-3, m, grads));
        state = Some(next.detach());
        let _: f32 = loss.into_scalar();
    }))
}

fn lm_config() -> LanguageModelConfig {
    LanguageModelConfig::new(VOCAB)
        .with_embedding_size(256)
        .with_hidden_size(256)
        .with_num_layers(2)
        .with_cell(CellKind::Lstm)
}

/// Generation as `lstm-lm generate` does it: the prompt once, then one step per sampled token
/// (temperature 1, no top-k/top-p), state carried, no autodiff.
fn bench_gen(
    args: &BenchOneArgs,
    device: &Device,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let model = lm_config().init(device)?;
    let prompt: Vec<u32> = (0..20).map(|_| rng.random_range(0..VOCAB as u32)).collect();
    let sampling = SamplingConfig::default();
    let mut generator = Generator::new(model, device.clone());
    Ok(time_iters(args.warmup, args.iters, || {
        generator.reset();
        generator.feed(&prompt).expect("the logits are read back");
        for _ in 0..200 {
            let next = generator
                .sample(&sampling, &[], rng)
                .expect("the prompt was fed");
            generator.feed(&[next]).expect("the logits are read back");
        }
    }))
}

/// Fits the word tokenizer, counts every n-gram up to order 5 and estimates the Kneser-Ney
/// model on the text (read once, untimed), as `lstm-lm ngram train` does; the peak memory that
/// `measure` adds is the child's, text included.
fn bench_ngram(args: &BenchOneArgs) -> Result<()> {
    let path = args
        .data
        .as_ref()
        .context("bench-one --config ngram needs --data FILE")?;
    let text = lstm_lm_text_prep::read_text_file(path)?;
    let config = lstm_lm_ngram::NgramTrainConfig::default();
    let mut last = None;
    let (wall, cpu) = time_iters(0, args.iters.max(1), || {
        // The previous model goes first, so the peak is one model's.
        drop(last.take());
        last = Some(lstm_lm_ngram::NgramRun::train_on_texts(&[&text], &config));
    });
    let run = last.context("no iteration ran")??;
    let tokens = run.model.estimation().tokens;
    let ngrams: usize = run.model.ngram_counts().iter().sum();
    let med = median(&wall);
    println!(
        "lstm-lm ngram tok_per_s={:.0} median_ms={med:.1} cpu_ms={:.1} iters={} order={} tokens={tokens} ngrams={ngrams}",
        tokens as f64 / (med / 1e3),
        median(&cpu),
        wall.len(),
        run.model.order(),
    );
    Ok(())
}
