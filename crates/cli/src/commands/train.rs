//! `lstm-lm train`: fit a tokenizer, train a model, write a run folder.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lstm_lm_train::json_events;
use lstm_lm_train::settings::{CheckpointEvery, TrainSettings};
use lstm_lm_train::{
    DataFiles, LoadedRun, ProgressMode, SamplingConfig, TrainOptions, TrainOutcome, train,
};

use super::device_args::{DeviceArgs, DevicesSpec, parse_devices};
use super::stop_signals::StopSignals;
use super::tokenize::PreprocessArgs;

/// Most tokens `--sample-tokens` may ask for: the sample is collected before it is printed, and
/// `lstm-lm generate` is there for longer text.
pub const MAX_SAMPLE_TOKENS: usize = 100_000;

/// Train a language model on text files.
#[derive(Debug, Args)]
#[command(
    allow_negative_numbers = true,
    after_help = "Ctrl-C or SIGTERM saves a checkpoint and exits with status 130 or 143 (128 + the signal number); --resume continues from it.

Examples:
  lstm-lm train --preset sample --data datasets/sample/corpus.txt --valid datasets/sample/valid.txt --out runs/sample
  lstm-lm train --preset char-rnn --data input.txt --split 0.9,0.05,0.05 --out runs/char --plot
  lstm-lm train --resume runs/char --epochs 20"
)]
pub struct TrainArgs {
    /// Training text (one or more files).
    #[arg(long, num_args = 1.., required_unless_present_any = ["resume", "print_config"])]
    pub data: Vec<PathBuf>,
    /// Validation text.
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Test text, evaluated with the best model at the end.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Run folder to create (must not hold a run yet).
    #[arg(long, required_unless_present_any = ["resume", "print_config"], conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (a run stopped before its
    /// first checkpoint starts again from the beginning with its saved settings).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: train on data files that changed since the run started (their new sizes
    /// and hashes are recorded); the epoch in progress restarts from its first batch.
    #[arg(long, requires = "resume")]
    pub accept_changed_data: bool,
    /// Start from a shipped preset: seed, sample, char-rnn, wt2-small, wt2-medium, ptb-small,
    /// ptb-medium, tang-poetry, zh-word, awd-ptb, awd-wt2.
    #[arg(long)]
    pub preset: Option<String>,
    /// TOML file merged over the preset.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Any setting as KEY=VALUE (e.g. optim.lr=0.5, model.cell=gru); repeatable, applied last.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Tokenizer: keras-word, word, char or bpe.
    #[arg(long)]
    pub tokenizer: Option<String>,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
    /// Dataset recipe: ngram or stream.
    #[arg(long)]
    pub recipe: Option<String>,
    /// Epochs (on --resume: train up to this many epochs in all).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Sequences per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Unrolled steps per window (stream recipe).
    #[arg(long)]
    pub bptt: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimizer: sgd, adam, adamw or rmsprop.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Global gradient-norm clip.
    #[arg(long)]
    pub clip: Option<f64>,
    /// Recurrent cell: lstm, gru or rnn.
    #[arg(long)]
    pub cell: Option<String>,
    /// Hidden width.
    #[arg(long)]
    pub hidden_size: Option<usize>,
    /// Embedding width.
    #[arg(long)]
    pub embedding_size: Option<usize>,
    /// Stacked layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Dropout (embedding, between layers, output).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Tie embedding and output weights (needs equal sizes).
    #[arg(long)]
    pub tie_weights: bool,
    /// Variational dropout: one dropout mask per sequence, shared by all its steps
    /// (regularisation.locked_dropout).
    #[arg(long)]
    pub locked_dropout: bool,
    /// DropConnect on the hidden-to-hidden weights, one mask per batch
    /// (regularisation.weight_drop).
    #[arg(long, value_name = "P")]
    pub weight_drop: Option<f64>,
    /// Drop whole words from the embedding, one mask per batch
    /// (regularisation.embedding_dropout).
    #[arg(long, value_name = "P")]
    pub embedding_dropout: Option<f64>,
    /// Activation regularisation coefficient (regularisation.ar; AWD-LSTM: 2).
    #[arg(long, value_name = "ALPHA")]
    pub ar: Option<f64>,
    /// Temporal activation regularisation coefficient (regularisation.tar; AWD-LSTM: 1).
    #[arg(long, value_name = "BETA")]
    pub tar: Option<f64>,
    /// Random window lengths around --bptt, learning rate scaled by length (data.random_bptt).
    #[arg(long)]
    pub random_bptt: bool,
    /// Switch to averaged SGD when validation stalls for optim.nonmono epochs (optim.nt_asgd).
    #[arg(long)]
    pub nt_asgd: bool,
    /// Seed for initialisation, dropout and shuffling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop each epoch after this many batches.
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Batches between log lines.
    #[arg(long)]
    pub log_interval: Option<usize>,
    /// Stop after this many epochs without validation improvement.
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Also write a checkpoint in the middle of an epoch every N optimizer steps (500) or
    /// every so much training time (90s, 10m, 2h); off: only at epoch ends and on Ctrl-C.
    /// [default: 10m]
    #[arg(long, value_name = "N|TIME")]
    pub checkpoint_every: Option<String>,
    /// Split a single --data file into train/valid/test by these fractions, e.g. 0.9,0.05,0.05.
    #[arg(
        long,
        value_name = "TRAIN,VALID,TEST",
        value_delimiter = ',',
        num_args = 1
    )]
    pub split: Option<Vec<f64>>,
    /// Tokens of sample text printed after training (0: none).
    #[arg(long, default_value_t = 40)]
    pub sample_tokens: usize,
    /// Prompt for the sample printed after training.
    #[arg(long, default_value = "")]
    pub sample_prompt: String,
    /// Rewrite RUN_DIR/curves.svg (training curves) after every epoch; `lstm-lm plot` draws
    /// them on demand.
    #[arg(long)]
    pub plot: bool,
    /// Print the merged settings (defaults, --preset, --config, flags) as TOML and exit; the
    /// output is a --config file that repeats the run.
    #[arg(long, conflicts_with = "resume")]
    pub print_config: bool,
    /// Plain log lines instead of a progress bar.
    #[arg(long, conflicts_with = "quiet")]
    pub log_lines: bool,
    /// No progress output (metrics.jsonl is still written).
    #[arg(long)]
    pub quiet: bool,
    /// One JSON object per line on stdout (train, epoch, test, sample and summary events;
    /// schema in docs/json-events.md) instead of the human summary; progress stays on stderr.
    #[arg(long)]
    pub json: bool,
    /// Data-parallel training: a count (2: wgpu adapters 0 and 1; on flex/ndarray, the batch
    /// split into 2 shards trained in parallel threads on the CPU) or wgpu adapter indices
    /// (0,2). The first device is the main one. Allowed on --resume.
    #[arg(long, value_name = "N|I,J,...", value_parser = parse_devices, conflicts_with = "device_index")]
    pub devices: Option<DevicesSpec>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl TrainArgs {
    /// Preset, then config file, then flags: one settings value.
    fn settings(&self) -> Result<TrainSettings> {
        let mut s = match &self.preset {
            Some(name) => TrainSettings::preset(name)?,
            None => TrainSettings::default(),
        };
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--config \"{}\": {e}", path.display()))?;
            s = s.merge_toml(&text, &format!("--config \"{}\"", path.display()))?;
        }
        let mut sets: Vec<String> = Vec::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                sets.push(format!("{key}={v}"));
            }
        };
        put("data.tokenizer", self.tokenizer.clone());
        put("data.recipe", self.recipe.clone());
        if let Some(clean) = self.preprocess.clean_config()? {
            // --lowercase alone adds to the cleaning a preset or --config already asks for.
            let clean = if self.preprocess.clean || self.preprocess.clean_steps.is_some() {
                clean
            } else {
                let mut merged = s.data.clean_config()?;
                merged.lowercase = true;
                merged
            };
            put("data.clean", Some(format!("{:?}", clean.describe())));
        }
        put(
            "data.segment",
            self.preprocess.segment.map(|v| format!("{:?}", v.name())),
        );
        put("train.epochs", self.epochs.map(|v| v.to_string()));
        put("data.batch_size", self.batch_size.map(|v| v.to_string()));
        put("data.bptt", self.bptt.map(|v| v.to_string()));
        put("optim.lr", self.lr.map(toml_float));
        put("optim.optimizer", self.optimizer.clone());
        put("optim.clip", self.clip.map(toml_float));
        put("model.cell", self.cell.clone());
        put("model.hidden_size", self.hidden_size.map(|v| v.to_string()));
        put(
            "model.embedding_size",
            self.embedding_size.map(|v| v.to_string()),
        );
        put("model.num_layers", self.layers.map(|v| v.to_string()));
        put("model.dropout", self.dropout.map(toml_float));
        put(
            "model.tie_weights",
            self.tie_weights.then(|| "true".to_string()),
        );
        let on = |flag: bool| flag.then(|| "true".to_string());
        put("regularisation.locked_dropout", on(self.locked_dropout));
        put(
            "regularisation.weight_drop",
            self.weight_drop.map(toml_float),
        );
        put(
            "regularisation.embedding_dropout",
            self.embedding_dropout.map(toml_float),
        );
        put("regularisation.ar", self.ar.map(toml_float));
        put("regularisation.tar", self.tar.map(toml_float));
        put("data.random_bptt", on(self.random_bptt));
        put("optim.nt_asgd", on(self.nt_asgd));
        put("train.seed", self.seed.map(|v| v.to_string()));
        put("train.max_batches", self.max_batches.map(|v| v.to_string()));
        put(
            "train.log_interval",
            self.log_interval.map(|v| v.to_string()),
        );
        put("train.plot", self.plot.then(|| "true".to_string()));
        put(
            "train.early_stopping",
            self.early_stopping.map(|v| v.to_string()),
        );
        if let Some(text) = &self.checkpoint_every {
            let every = CheckpointEvery::parse(text)
                .map_err(|e| anyhow::anyhow!("--checkpoint-every: {e}"))?;
            put("train.checkpoint_every", Some(every.to_string()));
        }
        if let Some(v) = &self.split
            && v.len() != 3
        {
            bail!(
                "--split takes three fractions, train,valid,test (e.g. 0.9,0.05,0.05), not {}",
                v.len()
            );
        }
        put(
            "data.split",
            self.split.as_ref().map(|v| {
                format!(
                    "[{}]",
                    v.iter()
                        .map(|x| toml_float(*x))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        );
        for a in sets.iter().chain(self.set.iter()) {
            s = s.set(a)?;
        }
        s.validate()?;
        Ok(s)
    }
}

fn toml_float(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// Runs `lstm-lm train`; returns the process exit status.
pub fn run(args: TrainArgs) -> Result<i32> {
    if args.sample_tokens > MAX_SAMPLE_TOKENS {
        bail!(
            "--sample-tokens {} is above the limit of {MAX_SAMPLE_TOKENS}; use lstm-lm generate --max-tokens for longer text",
            args.sample_tokens
        );
    }
    let resume = args.resume.is_some();
    if resume {
        let ignored = args.preset.is_some()
            || args.config.is_some()
            || !args.set.is_empty()
            || args.valid.is_some()
            || args.test.is_some()
            || args.split.is_some()
            || args.checkpoint_every.is_some()
            || args.plot
            || args.preprocess.clean
            || args.preprocess.clean_steps.is_some()
            || args.preprocess.lowercase
            || args.preprocess.segment.is_some();
        if ignored || !args.data.is_empty() {
            bail!(
                "--resume continues a run with its own settings and data: drop the other settings flags (only --epochs may change)"
            );
        }
    }
    let settings = if resume {
        TrainSettings::default()
    } else {
        args.settings()?
    };
    if args.print_config {
        let mut out = std::io::stdout().lock();
        write!(out, "{}", settings.to_toml()?)?;
        out.flush()?;
        return Ok(0);
    }
    if !resume {
        if args.data.len() > 1 && settings.data.split.is_some() {
            bail!("--split takes exactly one --data file");
        }
        if settings.data.split.is_some() && (args.valid.is_some() || args.test.is_some()) {
            bail!("--split and --valid/--test are alternatives: use one or the other");
        }
    }
    let out = args.resume.clone().or(args.out.clone()).unwrap_or_default();
    let (device, extra_devices) = match &args.devices {
        None => (args.device.device()?, Vec::new()),
        Some(spec) => {
            let mut all = args.device.devices(spec)?;
            let main = all.remove(0);
            (main, all)
        }
    };
    let (signals, warnings) = StopSignals::install();
    for warning in warnings {
        eprintln!("{warning}");
    }
    let progress = ProgressMode::from_flags(args.quiet, args.log_lines);
    let outcome = train(TrainOptions {
        settings,
        data: DataFiles {
            train: args.data.clone(),
            valid: args.valid.clone(),
            test: args.test.clone(),
        },
        out: out.clone(),
        backend: args.device.backend,
        device: device.clone(),
        extra_devices,
        resume,
        epochs_override: if resume { args.epochs } else { None },
        accept_changed_data: args.accept_changed_data,
        stop: Some(signals.stop.clone()),
        progress,
        on_event: args.json.then(json_events::stdout_sink),
        stop_at_step: None,
        crash_at_step: None,
    })?;
    match outcome {
        TrainOutcome::Interrupted { checkpoint } => {
            if args.json {
                let resume = format!("lstm-lm train --resume \"{}\"", out.display());
                json_events::print_json_line(&json_events::interrupted_event(&checkpoint, &resume));
            }
            eprintln!(
                "interrupted: checkpoint saved in \"{}\"; continue with: lstm-lm train --resume \"{}\"",
                checkpoint.display(),
                out.display()
            );
            Ok(signals.exit_status())
        }
        TrainOutcome::Finished(summary) if args.json => {
            if args.sample_tokens > 0 {
                let text = sample_text(&out, device, &args.sample_prompt, args.sample_tokens)?;
                json_events::print_json_line(&json_events::sample_event(&text));
            }
            json_events::print_json_line(&json_events::summary_event(&summary, &out));
            Ok(0)
        }
        TrainOutcome::Finished(summary) => {
            let mut line = format!(
                "trained {} epochs in {:.1}s: train loss {:.4}",
                summary.epochs, summary.elapsed_s, summary.last_train_loss
            );
            if let Some(v) = &summary.best_valid {
                line.push_str(&format!(
                    ", best valid loss {:.4} (ppl {:.2})",
                    v.loss, v.ppl
                ));
            }
            if let Some(t) = &summary.test {
                line.push_str(&format!(", test loss {:.4} (ppl {:.2})", t.loss, t.ppl));
            }
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{line}")?;
            writeln!(stdout, "model saved in \"{}\"", out.display())?;
            stdout.flush()?;
            drop(stdout);
            if args.sample_tokens > 0 {
                print_sample(&out, device, &args.sample_prompt, args.sample_tokens)?;
            }
            Ok(0)
        }
    }
}

/// Prints a short generated sample from the finished run (or why there is none).
fn print_sample(
    out: &std::path::Path,
    device: lstm_lm_model::burn::tensor::Device,
    prompt: &str,
    tokens: usize,
) -> Result<()> {
    let line = match sample_text(out, device, prompt, tokens) {
        Ok(text) => format!("sample: {}", text.trim()),
        Err(e) => format!("no sample: {e}"),
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// A short sample from the finished run: the prompt and its continuation. N-gram models need a
/// prompt: without one, the first word of the training text starts the sample.
fn sample_text(
    out: &std::path::Path,
    device: lstm_lm_model::burn::tensor::Device,
    prompt: &str,
    tokens: usize,
) -> Result<String> {
    let run = LoadedRun::load(out, device)?;
    let mut prompt = prompt.to_string();
    if prompt.is_empty()
        && run.config.settings.data.recipe == lstm_lm_train::settings::Recipe::Ngram
        && let Some(first) = run.config.data.train.first()
    {
        let text = lstm_lm_train::data::read_file(first)?;
        prompt = text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
    }
    let sampling = SamplingConfig {
        temperature: 0.8,
        ..SamplingConfig::default()
    };
    let mut text = prompt.clone();
    run.generate(
        &prompt,
        tokens,
        &sampling,
        run.config.settings.train.seed,
        |piece| {
            text.push_str(piece);
            Ok(())
        },
    )?;
    Ok(text)
}
