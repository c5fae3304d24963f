//! `cargo xtask train RECIPE`: a named benchmark run. A recipe is a dataset of
//! `datasets/manifest.json` and a preset of `crates/infer/presets/`; the command fetches the
//! dataset ([`crate::download::download`]), trains through the `lstm-lm-train` library
//! ([`lstm_lm_train::train`], as `lstm-lm train` does), evaluates the best model on the test
//! split and writes `summary.json` into the run folder, next to the published figure.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use lstm_lm_model::BackendKind;
use lstm_lm_train::settings::{ScheduleKind, TokenizerChoice, TrainSettings};
use lstm_lm_train::{
    DataFiles, EvalResult, ProgressMode, TrainOptions, TrainOutcome, TrainSummary, format_secs,
    setup_device, train, write_atomic,
};
use serde::Serialize;

use crate::download::{DownloadOptions, Mirror, SplitPaths, default_data_dir, download, show};
use crate::manifest::{Manifest, Splits};

/// A figure published for a recipe's setup, or why there is none.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Published {
    /// Test perplexity (per token of the recipe's tokenizer), when one is published.
    pub test_ppl: Option<f64>,
    /// Who reported it (or "no published figure").
    pub source: &'static str,
    /// Where.
    pub url: Option<&'static str>,
    /// Context: how the figure was obtained, or what to compare with instead.
    pub note: &'static str,
}

/// One recipe: a dataset of the manifest trained with a preset.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    /// Name on the command line.
    pub name: &'static str,
    /// Dataset name in `datasets/manifest.json`.
    pub dataset: &'static str,
    /// Preset name (`crates/infer/presets/<preset>.toml`).
    pub preset: &'static str,
    /// One line for `--list` and the README.
    pub about: &'static str,
    /// The published reference figure.
    pub published: Published,
    /// What is done to the dataset's file before training.
    pub prepare: Prepare,
    /// A sample generated after training and printed with the result line.
    pub sample: Option<Sample>,
}

/// What a recipe does to its dataset's text file before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepare {
    /// Train on the file as downloaded.
    AsIs,
    /// A fortune file: one line per entry, titles and authors dropped
    /// ([`crate::fortune::entries_as_lines`]), written beside the file as `NAME.lines.txt`.
    FortuneEntriesAsLines,
}

/// The text a recipe generates from its best model once trained.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The prompt (`"\n"` starts a new line of a character-level model).
    pub prompt: &'static str,
    /// At most this many tokens.
    pub tokens: usize,
    /// Stop at the first line break after some text (one poem of a poem-per-line corpus).
    pub one_line: bool,
    /// Printed before the sample.
    pub label: &'static str,
}

/// Every recipe.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "char-rnn",
        dataset: "tiny-shakespeare",
        preset: "char-rnn",
        about: "character-level Tiny Shakespeare, karpathy/char-rnn's defaults (2x128 LSTM, RMSprop)",
        published: Published {
            test_ppl: None,
            source: "no published figure",
            url: Some("https://github.com/karpathy/char-rnn"),
            note: "karpathy/char-rnn reports no test loss; our PyTorch reference \
                   (shared/bench/torch_lm_train.py, same settings) reaches valid 1.49 and test \
                   1.61 nats per character after 10 epochs",
        },
        prepare: Prepare::AsIs,
        sample: None,
    },
    Recipe {
        name: "wt2-small",
        dataset: "wikitext-2",
        preset: "wt2-small",
        about: "WikiText-2, pytorch/examples word_language_model defaults (2x200 LSTM, 40 epochs)",
        published: Published {
            test_ppl: None,
            source: "no published figure",
            url: Some("https://github.com/pytorch/examples/issues/281"),
            note: "pytorch/examples publishes no WikiText-2 figure for its defaults (the README's \
                   figures were PTB ones and were removed); a user reports test ppl 100.33 for \
                   the tied variant (--tied) in pytorch/examples#281",
        },
        prepare: Prepare::AsIs,
        sample: None,
    },
    Recipe {
        name: "wt2-medium",
        dataset: "wikitext-2",
        preset: "wt2-medium",
        about: "WikiText-2, tied 2x650 LSTM, dropout 0.5, 40 epochs",
        published: Published {
            test_ppl: Some(86.68),
            source: "pytorch/examples word_language_model, user report",
            url: Some("https://github.com/pytorch/examples/issues/281"),
            note: "one run of `main.py --emsize 650 --nhid 650 --dropout 0.5 --epochs 40 --tied` \
                   (valid ppl 91.70), reported in pytorch/examples#281",
        },
        prepare: Prepare::AsIs,
        sample: None,
    },
    Recipe {
        name: "ptb-small",
        dataset: "ptb",
        preset: "ptb-small",
        about: "Penn Treebank, Zaremba et al. 2014 small (2x200 LSTM, no dropout, 13 epochs)",
        published: Published {
            test_ppl: Some(114.5),
            source: "Zaremba et al. 2014",
            url: Some("https://arxiv.org/abs/1409.2329"),
            note: "Recurrent Neural Network Regularization, Table 1, non-regularized LSTM \
                   (valid 120.7, test 114.5)",
        },
        prepare: Prepare::AsIs,
        sample: None,
    },
    Recipe {
        name: "ptb-medium",
        dataset: "ptb",
        preset: "ptb-medium",
        about: "Penn Treebank, Zaremba et al. 2014 medium (2x650 LSTM, dropout 0.5, 39 epochs)",
        published: Published {
            test_ppl: Some(82.7),
            source: "Zaremba et al. 2014",
            url: Some("https://arxiv.org/abs/1409.2329"),
            note: "Recurrent Neural Network Regularization, Table 1, medium regularized LSTM \
                   (valid 86.2, test 82.7)",
        },
        prepare: Prepare::AsIs,
        sample: None,
    },
    Recipe {
        name: "awd-ptb",
        dataset: "ptb",
        preset: "awd-ptb",
        about: "Penn Treebank, AWD-LSTM (Merity et al. 2017): 3-layer tied LSTM, weight drop, NT-ASGD, 500 epochs (GPU-sized)",
        published: Published {
            test_ppl: Some(57.3),
            source: "Merity et al. 2017",
            url: Some("https://arxiv.org/abs/1708.02182"),
            note: "Regularizing and Optimizing LSTM Language Models, Table 1, AWD-LSTM (valid \
                   60.0, test 57.3) after a further fine-tuning run that lstm-lm does not do; \
                   salesforce/awd-lstm-lm's README gives about 58.8 test for main.py alone. \
                   500 epochs of a 24M-parameter model: a GPU budget (one epoch took at \
                   most about 4.7 hours on 2 shared CPU cores, 2026-12)",
        },
        prepare: Prepare::AsIs,
        sample: None,
    },
    Recipe {
        name: "awd-wt2",
        dataset: "wikitext-2",
        preset: "awd-wt2",
        about: "WikiText-2, AWD-LSTM (Merity et al. 2017): 3-layer tied LSTM, weight drop, NT-ASGD, 750 epochs (GPU-sized)",
        published: Published {
            test_ppl: Some(65.8),
            source: "Merity et al. 2017",
            url: Some("https://arxiv.org/abs/1708.02182"),
            note: "Regularizing and Optimizing LSTM Language Models, Table 2, AWD-LSTM (valid \
                   68.6, test 65.8) after a further fine-tuning run that lstm-lm does not do \
                   (66.0 without it, Table 3). 750 epochs of a 33M-parameter model: a GPU budget \
                   (one epoch took about 5.4 hours on 2 shared CPU cores, 2026-12)",
        },
        prepare: Prepare::AsIs,
        sample: None,
    },
    Recipe {
        name: "tang-poetry",
        dataset: "fortunes-zh-tang300",
        preset: "tang-poetry",
        about: "character-level Tang poems (one poem per line, cleaned), 1x256 LSTM; prints a poem",
        published: Published {
            test_ppl: None,
            source: "no published figure",
            url: None,
            note: "a small demonstration corpus (about 25,000 characters); no reference model \
                   has been trained on this split",
        },
        prepare: Prepare::FortuneEntriesAsLines,
        sample: Some(Sample {
            prompt: "\n",
            tokens: 120,
            one_line: true,
            label: "a poem",
        }),
    },
    Recipe {
        name: "zh-word",
        dataset: "fortunes-zh-chinese",
        preset: "zh-word",
        about: "word-level Chinese (jieba-segmented, cleaned) on fortunes-zh `chinese`, cut 90/5/5",
        published: Published {
            test_ppl: None,
            source: "no published figure",
            url: None,
            note: "no reference model has been trained on this split; the budget is a few \
                   hundred batches, far from convergence",
        },
        prepare: Prepare::AsIs,
        sample: Some(Sample {
            prompt: "",
            tokens: 60,
            one_line: false,
            label: "text",
        }),
    },
];

/// The recipe called `name`.
pub fn recipe(name: &str) -> Result<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        anyhow!(
            "unknown recipe '{name}': use one of {}",
            RECIPES
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `cargo xtask train` arguments.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Recipe to run (see --list).
    #[arg(required_unless_present = "list")]
    pub recipe: Option<String>,
    /// List the recipes and exit.
    #[arg(long)]
    pub list: bool,
    /// Fetch the dataset from this local folder or http(s) base URL instead of the manifest's URLs.
    #[arg(long, value_name = "DIR|URL")]
    pub mirror: Option<Mirror>,
    /// Run folder [default: runs/RECIPE in the project root]; must not hold a run yet, unless
    /// --resume.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run already in the run folder from its last checkpoint (one stopped with
    /// Ctrl-C, or a finished one given more --epochs) with the settings it was started with,
    /// then evaluate and write summary.json as a fresh run does.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: train on data files that changed since the run started; the epoch in
    /// progress restarts from its first batch.
    #[arg(long, requires = "resume")]
    pub accept_changed_data: bool,
    /// Data folder; the dataset goes to DATA_DIR/DATASET [default: data/ in the project root].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Manifest to read [default: datasets/manifest.json].
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Train this many epochs instead of the preset's.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop each epoch after this many batches (a budget for quick runs; 0 = whole epoch).
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Any setting as KEY=VALUE over the preset (e.g. train.seed=7); repeatable, applied last.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Backend: flex (CPU, default), ndarray (CPU) or wgpu (GPU).
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: BackendKind,
    /// GPU adapter index for wgpu (0 = the default adapter).
    #[arg(long = "device", default_value_t = 0)]
    pub device_index: usize,
    /// CPU threads for the CPU backends (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the plan (dataset, settings, run folder, published figure) and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Plain log lines instead of a progress bar.
    #[arg(long, conflicts_with = "quiet")]
    pub log_lines: bool,
    /// No progress output (the result line is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// One JSON object per line on stdout: the run's train, epoch and test events, then a
    /// summary line holding summary.json's fields (schema: docs/json-events.md).
    #[arg(long)]
    pub json: bool,
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse()
        .map_err(|e: lstm_lm_model::ModelError| e.to_string())
}

/// What a recipe run will do, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    pub recipe: &'static Recipe,
    /// Preset with the overrides applied, validated.
    pub settings: TrainSettings,
    pub manifest: PathBuf,
    pub data_dir: PathBuf,
    pub out: PathBuf,
}

impl Plan {
    /// Resolves and validates everything without touching the network or the run folder.
    pub fn new(args: &TrainArgs) -> Result<Plan> {
        let name = args
            .recipe
            .as_deref()
            .ok_or_else(|| anyhow!("missing RECIPE (see --list)"))?;
        let recipe = recipe(name)?;
        let mut settings = TrainSettings::preset(recipe.preset)?;
        if let Some(e) = args.epochs {
            settings = settings.set(&format!("train.epochs={e}"))?;
        }
        if let Some(m) = args.max_batches {
            settings = settings.set(&format!("train.max_batches={m}"))?;
        }
        for a in &args.set {
            settings = settings.set(a)?;
        }
        let manifest_path = args.manifest.clone().unwrap_or_else(Manifest::default_path);
        let manifest = Manifest::load(&manifest_path)?;
        let ds = manifest.get(recipe.dataset)?;
        // The manifest decides how the dataset splits: one file cut by fractions, or one file
        // per split.
        settings.data.split = match &ds.splits {
            Splits::Fraction {
                train, valid, test, ..
            } => Some([*train, *valid, *test]),
            Splits::Files { .. } => None,
        };
        settings.validate()?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| crate::project_root().join("runs").join(recipe.name));
        Ok(Plan {
            recipe,
            settings,
            manifest: manifest_path,
            data_dir: args.data_dir.clone().unwrap_or_else(default_data_dir),
            out,
        })
    }

    /// Whether the recipe's tokens are characters (then losses are also given in bits/char).
    pub fn char_level(&self) -> bool {
        self.settings.data.tokenizer == TokenizerChoice::Char
    }

    /// The plan, as `--dry-run` prints it.
    pub fn describe(&self, args: &TrainArgs) -> Result<String> {
        let r = self.recipe;
        let s = &self.settings;
        let manifest = Manifest::load(&self.manifest)?;
        let ds = manifest.get(r.dataset)?;
        let dir = self.data_dir.join(&ds.name);
        let present = ds.files.iter().all(|f| dir.join(&f.path).is_file());
        let source = if present {
            "in place (verified before training)".to_owned()
        } else {
            match &args.mirror {
                Some(Mirror::Local(p)) => format!("fetched from mirror {}", show(p)),
                Some(Mirror::Url(u)) => format!("fetched from mirror {u}"),
                None => "fetched from the manifest's URLs".to_owned(),
            }
        };
        let split = match &ds.splits {
            Splits::Fraction {
                file,
                train,
                valid,
                test,
            } => format!("{file} cut in order {train}/{valid}/{test}"),
            Splits::Files { train, valid, test } => format!("{train}, {valid}, {test}"),
        };
        let m = &s.model;
        let o = &s.optim;
        let schedule = match s.schedule.kind {
            ScheduleKind::Constant => "constant".to_owned(),
            ScheduleKind::Step => format!(
                "x{} every {} epoch(s) after epoch {}",
                s.schedule.gamma, s.schedule.step_size, s.schedule.start_epoch
            ),
            ScheduleKind::Cosine => format!("cosine to {}", s.schedule.min_lr),
            ScheduleKind::Plateau => format!(
                "x{} when validation stalls (patience {})",
                s.schedule.factor, s.schedule.patience
            ),
        };
        let budget = if s.train.max_batches == 0 {
            "whole epochs".to_owned()
        } else {
            format!("at most {} batches per epoch", s.train.max_batches)
        };
        let mut lines = vec![
            format!("recipe    {}: {}", r.name, r.about),
            format!("dataset   {} in {}: {source}", ds.name, show(&dir)),
            format!("splits    {split}"),
            format!("preset    {}: {}", r.preset, s.description),
            format!(
                "model     {:?} {}x{}, embedding {}, dropout {}, tied {}, {:?} tokens",
                m.cell,
                m.num_layers,
                if m.hidden_sizes.is_empty() {
                    m.hidden_size.to_string()
                } else {
                    format!(
                        "({})",
                        m.hidden_sizes
                            .iter()
                            .map(|h| h.to_string())
                            .collect::<Vec<_>>()
                            .join("/")
                    )
                },
                m.embedding_size,
                m.dropout,
                m.tie_weights,
                s.data.tokenizer
            )
            .to_lowercase(),
            format!(
                "optimizer {:?} lr {}, clip {}, schedule {schedule}",
                o.optimizer,
                o.lr,
                o.clip
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into())
            )
            .to_lowercase(),
            regularisation_line(s),
            format!(
                "training  {} epochs ({budget}), batch {}, bptt {}, eval batch {}, seed {}",
                s.train.epochs,
                s.data.batch_size,
                s.data.bptt,
                s.data.eval_batch_size,
                s.train.seed
            ),
            format!(
                "backend   {}{}",
                args.backend,
                args.threads
                    .map(|t| format!(", {t} threads"))
                    .unwrap_or_default()
            ),
            format!("run       {} (summary.json)", show(&self.out)),
            format!("published {}", published_text(&r.published)),
        ];
        lines.push("dry run: nothing fetched or trained".to_owned());
        Ok(lines.join("\n"))
    }
}

/// The `--dry-run` line naming AWD-LSTM's regularisers that are on ("none" when none is).
fn regularisation_line(s: &TrainSettings) -> String {
    let r = &s.regularisation;
    let mut on = Vec::new();
    if r.locked_dropout {
        on.push("locked dropout".to_owned());
    }
    if let Some(p) = s.model.dropout_input {
        on.push(format!("input dropout {p}"));
    }
    if let Some(p) = s.model.dropout_hidden {
        on.push(format!("hidden dropout {p}"));
    }
    for (name, value) in [
        ("weight drop", r.weight_drop),
        ("embedding dropout", r.embedding_dropout),
        ("AR", r.ar),
        ("TAR", r.tar),
    ] {
        if value != 0.0 {
            on.push(format!("{name} {value}"));
        }
    }
    if s.data.random_bptt {
        on.push("random bptt".to_owned());
    }
    if s.optim.nt_asgd {
        on.push(format!("NT-ASGD (nonmono {})", s.optim.nonmono));
    }
    if on.is_empty() {
        on.push("none".to_owned());
    }
    format!("regularise {}", on.join(", "))
}

fn published_text(p: &Published) -> String {
    match p.test_ppl {
        Some(ppl) => format!("test ppl {ppl} ({}; {})", p.source, p.note),
        None => format!("{} ({})", p.source, p.note),
    }
}

/// An evaluation in `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalFigures {
    /// Mean cross-entropy, nats per token.
    pub loss_nats: f64,
    pub ppl: f64,
    /// Bits per character (char-level recipes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits_per_char: Option<f64>,
    pub accuracy: f64,
    pub tokens: u64,
}

impl EvalFigures {
    fn new(e: &EvalResult, char_level: bool) -> EvalFigures {
        EvalFigures {
            loss_nats: e.loss,
            ppl: e.ppl,
            bits_per_char: char_level.then(|| e.loss / std::f64::consts::LN_2),
            accuracy: e.accuracy,
            tokens: e.tokens,
        }
    }
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RecipeSummary {
    pub recipe: String,
    pub dataset: String,
    pub preset: String,
    pub backend: String,
    /// Epochs the settings asked for.
    pub epochs_planned: usize,
    /// Epochs completed (fewer when early stopping ended the run).
    pub epochs_run: usize,
    /// Batch budget per epoch (0 = whole epochs).
    pub max_batches: usize,
    pub stopped_early: bool,
    /// The whole command: download check, tokenization, training, validation, test.
    pub wall_s: f64,
    /// The training loop with per-epoch validation and checkpoints.
    pub train_loop_s: f64,
    /// Time in training batches only.
    pub train_batches_s: f64,
    pub train_tokens: u64,
    /// `train_tokens / train_batches_s`, as the PyTorch reference's `train_tok_per_s`.
    pub tokens_per_s: f64,
    pub last_train_loss_nats: f64,
    /// The best model on the validation split.
    pub best_valid: Option<EvalFigures>,
    /// The best model on the test split.
    pub test: Option<EvalFigures>,
    pub published: Published,
    pub run_dir: PathBuf,
    /// The merged settings the run used.
    pub settings: TrainSettings,
    /// The line printed on stdout.
    pub line: String,
    /// Text generated by the best model after training (recipes with a sample).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
}

/// The recipe's sample from the best model in the run folder, at temperature 0.8 with the
/// run's seed.
fn generate_sample(
    plan: &Plan,
    sample: &Sample,
    device: lstm_lm_model::burn::tensor::Device,
) -> Result<String> {
    let run = lstm_lm_train::LoadedRun::load(&plan.out, device)?;
    let sampling = lstm_lm_train::SamplingConfig {
        temperature: 0.8,
        ..lstm_lm_train::SamplingConfig::default()
    };
    let mut text = String::new();
    let seed = plan.settings.train.seed;
    run.generate(sample.prompt, sample.tokens, &sampling, seed, |piece| {
        text.push_str(piece);
        Ok(())
    })?;
    let text = text.trim_start_matches('\n');
    let text = if sample.one_line {
        text.split('\n').next().unwrap_or_default()
    } else {
        text
    };
    Ok(text.trim_end().to_owned())
}

/// The one result line, e.g. `ptb-small: test ppl 118.3 (published 114.5, Zaremba et al.
/// 2014) after 13 epochs in 2h10m`.
pub fn result_line(
    recipe: &Recipe,
    test: Option<&EvalFigures>,
    valid: Option<&EvalFigures>,
    epochs: usize,
    wall_s: f64,
) -> String {
    let p = &recipe.published;
    let reference = match p.test_ppl {
        Some(ppl) => format!("published {ppl}, {}", p.source),
        None => p.source.to_owned(),
    };
    let figure = match (test, valid) {
        (Some(t), _) => format!("test ppl {:.2}", t.ppl) + &nats_bits(t),
        (None, Some(v)) => format!("valid ppl {:.2}", v.ppl) + &nats_bits(v),
        (None, None) => "no test or validation figure".to_owned(),
    };
    format!(
        "{}: {figure} ({reference}) after {epochs} epoch{} in {}",
        recipe.name,
        if epochs == 1 { "" } else { "s" },
        format_secs(wall_s)
    )
}

fn nats_bits(e: &EvalFigures) -> String {
    match e.bits_per_char {
        Some(b) => format!(", {:.3} nats, {b:.3} bits/char", e.loss_nats),
        None => format!(", {:.3} nats", e.loss_nats),
    }
}

/// Fetches the dataset, trains and evaluates; writes `summary.json`. `Ok(None)` when Ctrl-C
/// stopped the run (a checkpoint was saved).
pub fn run_plan(
    plan: &Plan,
    args: &TrainArgs,
    stop: Option<Arc<AtomicBool>>,
) -> Result<Option<RecipeSummary>> {
    let started = Instant::now();
    match (plan.out.join("config.json").exists(), args.resume) {
        (true, false) => bail!(
            "{} already holds a run: choose another --out, or continue it with `{}`",
            show(&plan.out),
            resume_command(plan)
        ),
        (false, true) => bail!(
            "--resume: {} holds no run to continue; leave out --resume to start one",
            show(&plan.out)
        ),
        _ => {}
    }
    let r = plan.recipe;
    let report = download(&DownloadOptions {
        name: r.dataset.to_owned(),
        manifest: plan.manifest.clone(),
        dest: plan.data_dir.clone(),
        mirror: args.mirror.clone(),
        force: false,
        print_checksums: false,
    })?;
    let data = match report.paths.splits {
        SplitPaths::Files { train, valid, test } => DataFiles {
            train: vec![train],
            valid: Some(valid),
            test: Some(test),
        },
        SplitPaths::Fraction { file, .. } => DataFiles {
            train: vec![match r.prepare {
                Prepare::AsIs => file,
                Prepare::FortuneEntriesAsLines => crate::fortune::write_entries_as_lines(&file)?,
            }],
            valid: None,
            test: None,
        },
    };
    let device = setup_device(args.backend, args.device_index, args.threads)?;
    let sample_device = device.clone();
    let progress = ProgressMode::from_flags(args.quiet, args.log_lines);
    let outcome = train(TrainOptions {
        settings: plan.settings.clone(),
        data,
        out: plan.out.clone(),
        backend: args.backend,
        device,
        extra_devices: Vec::new(),
        resume: args.resume,
        epochs_override: if args.resume { args.epochs } else { None },
        accept_changed_data: args.accept_changed_data,
        stop,
        progress,
        on_event: args.json.then(lstm_lm_train::json_events::stdout_sink),
        stop_at_step: None,
        crash_at_step: None,
    })
    .with_context(|| format!("recipe {}", r.name))?;
    let summary: TrainSummary = match outcome {
        TrainOutcome::Finished(s) => s,
        TrainOutcome::Interrupted { checkpoint } => {
            if args.json {
                lstm_lm_train::json_events::print_json_line(
                    &lstm_lm_train::json_events::interrupted_event(
                        &checkpoint,
                        &resume_command(plan),
                    ),
                );
            }
            eprintln!(
                "interrupted: checkpoint saved in \"{}\"; continue with: {}",
                checkpoint.display(),
                resume_command(plan)
            );
            return Ok(None);
        }
    };
    let char_level = plan.char_level();
    let best_valid = summary
        .best_valid
        .as_ref()
        .map(|e| EvalFigures::new(e, char_level));
    let test = summary
        .test
        .as_ref()
        .map(|e| EvalFigures::new(e, char_level));
    let wall_s = started.elapsed().as_secs_f64();
    let line = result_line(
        r,
        test.as_ref(),
        best_valid.as_ref(),
        summary.epochs,
        wall_s,
    );
    let out = RecipeSummary {
        recipe: r.name.to_owned(),
        dataset: r.dataset.to_owned(),
        preset: r.preset.to_owned(),
        backend: args.backend.to_string(),
        epochs_planned: plan.settings.train.epochs,
        epochs_run: summary.epochs,
        max_batches: plan.settings.train.max_batches,
        stopped_early: summary.stopped_early,
        wall_s,
        train_loop_s: summary.elapsed_s,
        train_batches_s: summary.train_s,
        train_tokens: summary.train_tokens,
        tokens_per_s: summary.train_tokens as f64 / summary.train_s.max(1e-9),
        last_train_loss_nats: summary.last_train_loss,
        best_valid,
        test,
        published: r.published,
        run_dir: plan.out.clone(),
        settings: plan.settings.clone(),
        line,
        sample: None,
    };
    let out = RecipeSummary {
        sample: match &r.sample {
            Some(sample) => Some(generate_sample(plan, sample, sample_device)?),
            None => None,
        },
        ..out
    };
    let json = serde_json::to_string_pretty(&out)? + "\n";
    write_atomic(&summary_path(&plan.out), json.as_bytes())?;
    Ok(Some(out))
}

/// `text` with a line break after each sentence-ending mark (Chinese or, after NFKC
/// cleaning, ASCII), so that a poem prints one couplet per line.
pub fn with_verse_breaks(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if matches!(c, '。' | '！' | '？' | '!' | '?' | '；' | ';')
            && chars.peek().is_some_and(|n| *n != '\n')
        {
            out.push('\n');
        }
    }
    out
}

/// The command that continues this plan's run.
fn resume_command(plan: &Plan) -> String {
    format!(
        "cargo xtask train {} --resume --out \"{}\"",
        plan.recipe.name,
        plan.out.display()
    )
}

/// `<run>/summary.json`.
pub fn summary_path(run: &Path) -> PathBuf {
    run.join("summary.json")
}

/// Runs `cargo xtask train`. A run stopped by Ctrl-C exits with status 130 (128 + SIGINT), as
/// `lstm-lm train` does, after saving a checkpoint.
pub fn run(args: &TrainArgs) -> Result<()> {
    if args.list {
        for r in RECIPES {
            println!(
                "{:<11} {:<17} {:<11} {}",
                r.name, r.dataset, r.preset, r.about
            );
        }
        return Ok(());
    }
    let plan = Plan::new(args)?;
    if args.dry_run {
        println!("{}", plan.describe(args)?);
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // Training is fine without it; say so rather than fail (the usual cause is a parent
        // that ignores SIGINT, a choice training should not override).
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)) {
            eprintln!("warning: Ctrl-C cannot be caught ({e}): it will not save a checkpoint");
        }
    }
    match run_plan(&plan, args, Some(stop))? {
        Some(summary) if args.json => {
            let mut event = serde_json::to_value(&summary)?;
            if let Some(fields) = event.as_object_mut() {
                fields.insert("event".into(), "summary".into());
                fields.insert(
                    "version".into(),
                    lstm_lm_train::json_events::JSON_EVENTS_VERSION.into(),
                );
            }
            lstm_lm_train::json_events::print_json_line(&event);
            Ok(())
        }
        Some(summary) => {
            println!("{}", summary.line);
            if let (Some(text), Some(sample)) = (&summary.sample, &plan.recipe.sample) {
                println!("sample ({}):", sample.label);
                println!("{}", with_verse_breaks(text));
            }
            Ok(())
        }
        None => std::process::exit(130),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dry_run_names_every_awd_regulariser() {
        let s = TrainSettings::preset("awd-wt2").unwrap();
        assert_eq!(
            regularisation_line(&s),
            "regularise locked dropout, input dropout 0.65, hidden dropout 0.2, weight drop 0.5, \
             embedding dropout 0.1, AR 2, TAR 1, random bptt, NT-ASGD (nonmono 5)"
        );
        let plain = TrainSettings::preset("wt2-small").unwrap();
        assert_eq!(regularisation_line(&plain), "regularise none");
    }
}
