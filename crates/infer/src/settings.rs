//! Training settings: one value merged from a preset, a TOML file and command-line overrides,
//! validated before anything is built.
use std::path::Path;

use lstm_lm_model::{CellKind, LanguageModelConfig};
use lstm_lm_text_prep::{CleanConfig, Segmentation};
use serde::{Deserialize, Serialize};

use crate::InferError;

/// Every setting of a training run. Serialized into the run folder's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// One line saying what this configuration is (presets fill it in).
    pub description: String,
    /// Data and tokenization.
    pub data: DataSettings,
    /// Model shape.
    pub model: ModelSettings,
    /// Optimizer and clipping.
    pub optim: OptimSettings,
    /// Learning-rate schedule.
    pub schedule: ScheduleSettings,
    /// Loop, validation, checkpoints.
    pub train: LoopSettings,
    /// AWD-LSTM's regularisers (all off by default).
    pub regularisation: RegularisationSettings,
}

/// AWD-LSTM's regularisers (Merity, Keskar & Socher 2017); every one is off by default, and
/// none changes evaluation or the saved weights. The dropout probabilities themselves are
/// `model.dropout`, `model.dropout_input` and `model.dropout_hidden`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegularisationSettings {
    /// Variational dropout: the embedding-output, between-layer and output dropouts use one
    /// mask per sequence shared by all its steps. Default false.
    pub locked_dropout: bool,
    /// DropConnect on every hidden-to-hidden matrix, one mask per batch (AWD-LSTM's `wdrop`).
    /// Default 0.
    pub weight_drop: f64,
    /// Whole words dropped from the embedding, one mask per batch (AWD-LSTM's `dropoute`).
    /// Default 0.
    pub embedding_dropout: f64,
    /// Activation regularisation coefficient (AWD-LSTM's `alpha`; stream recipe). Default 0.
    pub ar: f64,
    /// Temporal activation regularisation coefficient (AWD-LSTM's `beta`; stream recipe).
    /// Default 0.
    pub tar: f64,
}

impl RegularisationSettings {
    /// The regularisers the model applies while training.
    pub fn model_regularisation(&self) -> lstm_lm_model::regularisation::Regularisation {
        lstm_lm_model::regularisation::Regularisation {
            locked_dropout: self.locked_dropout,
            weight_drop: self.weight_drop,
            embedding_dropout: self.embedding_dropout,
        }
    }
}

/// Which tokenizer to fit on the training text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerChoice {
    /// Keras `Tokenizer` semantics (id 0 is padding).
    KerasWord,
    /// PTB/WikiText word level with `<unk>` and `<eos>`.
    #[default]
    Word,
    /// Character level.
    Char,
    /// Byte-level BPE.
    Bpe,
}

impl TokenizerChoice {
    /// The name settings use: `keras-word`, `word`, `char` or `bpe`.
    pub fn name(self) -> &'static str {
        match self {
            Self::KerasWord => "keras-word",
            Self::Word => "word",
            Self::Char => "char",
            Self::Bpe => "bpe",
        }
    }
}

/// How text becomes training examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// Keras article: pre-padded prefixes of each line, predict the next token.
    Ngram,
    /// One contiguous stream, truncated backpropagation through time.
    #[default]
    Stream,
}

/// Data settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSettings {
    /// Tokenizer kind. Default `word`.
    pub tokenizer: TokenizerChoice,
    /// Dataset recipe. Default `stream`.
    pub recipe: Recipe,
    /// Sequences per training batch. Default 20.
    pub batch_size: usize,
    /// Sequences per evaluation batch (stream recipe). Default 10, as pytorch/examples.
    pub eval_batch_size: usize,
    /// Unrolled steps per window (stream recipe). Default 35.
    pub bptt: usize,
    /// Draw each window's length around `bptt` (AWD-LSTM: mean `bptt` with probability 0.95,
    /// else `bptt / 2`, standard deviation 5, at least 5) and scale the step's learning rate
    /// by length / `bptt` (stream recipe). Default false.
    pub random_bptt: bool,
    /// Longest n-gram input kept, counted in tokens of the prefix (ngram recipe; none = longest line).
    pub max_len: Option<usize>,
    /// Keras `num_words` (keras-word only).
    pub num_words: Option<usize>,
    /// Keras `oov_token` (keras-word only).
    pub oov_token: Option<String>,
    /// BPE vocabulary size (bpe only). Default 4096.
    pub vocab_size: usize,
    /// Train/valid/test fractions used when only one file is given, split contiguously by
    /// tokens (`[0.9, 0.05, 0.05]` splits like the PyTorch reference's `--split-single`).
    /// Absent: no split, the whole file trains.
    pub split: Option<[f64; 3]>,
    /// Cleaning before tokenization, recorded in `tokenizer.json`: `"off"` (the default, text
    /// as it is) or the steps, comma-separated, from `escapes` (terminal escape codes and
    /// control characters), `nfkc`, `lowercase` and `whitespace` (runs collapsed, lines
    /// trimmed). `--clean` sets `"escapes,nfkc,whitespace"`.
    pub clean: String,
    /// Word segmentation before a word-level tokenizer splits text: `"none"` (the default) or
    /// `"jieba"` (Chinese words cut by jieba; word and keras-word only).
    pub segment: Segmentation,
}

impl DataSettings {
    /// The cleaning steps of `clean`.
    ///
    /// # Errors
    /// [`InferError::Settings`] naming `data.clean` when a step is unknown.
    pub fn clean_config(&self) -> Result<CleanConfig, InferError> {
        CleanConfig::from_steps(&self.clean)
            .map_err(|e| InferError::Settings(format!("data.clean = {:?}: {e}", self.clean)))
    }
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            tokenizer: TokenizerChoice::Word,
            recipe: Recipe::Stream,
            batch_size: 20,
            eval_batch_size: 10,
            bptt: 35,
            random_bptt: false,
            max_len: None,
            num_words: None,
            oov_token: None,
            vocab_size: 4096,
            split: None,
            clean: "off".to_owned(),
            segment: Segmentation::None,
        }
    }
}

/// Model settings (the vocabulary size comes from the tokenizer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// Recurrent cell. Default `lstm`.
    pub cell: CellKind,
    /// Embedding width. Default 128.
    pub embedding_size: usize,
    /// Hidden width. Default 128.
    pub hidden_size: usize,
    /// Stacked layers. Default 1.
    pub num_layers: usize,
    /// Hidden width of each layer, bottom first, when they differ (AWD-LSTM: `[1150, 1150,
    /// 400]`, the last equal to `embedding_size` when tied); one entry per layer. Default
    /// empty: every layer has `hidden_size`.
    pub hidden_sizes: Vec<usize>,
    /// Dropout on embeddings, between layers and on the output (pytorch/examples uses one
    /// value for all three). Default 0.
    pub dropout: f64,
    /// Dropout on the embedding output instead of `dropout` (AWD-LSTM's `dropouti`); none =
    /// `dropout`.
    pub dropout_input: Option<f64>,
    /// Dropout between recurrent layers instead of `dropout` (AWD-LSTM's `dropouth`); none =
    /// `dropout`.
    pub dropout_hidden: Option<f64>,
    /// Tie embedding and output weights. Default false.
    pub tie_weights: bool,
    /// Uniform initialisation half-width for embedding and output weights. Default 0.1.
    pub init_range: f64,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            cell: CellKind::Lstm,
            embedding_size: 128,
            hidden_size: 128,
            num_layers: 1,
            hidden_sizes: Vec::new(),
            dropout: 0.0,
            dropout_input: None,
            dropout_hidden: None,
            tie_weights: false,
            init_range: 0.1,
        }
    }
}

impl ModelSettings {
    /// The model configuration for a vocabulary of `vocab_size` ids.
    pub fn model_config(&self, vocab_size: usize) -> LanguageModelConfig {
        LanguageModelConfig::new(vocab_size)
            .with_cell(self.cell)
            .with_embedding_size(self.embedding_size)
            .with_hidden_size(self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_hidden_sizes((!self.hidden_sizes.is_empty()).then(|| self.hidden_sizes.clone()))
            .with_dropout_embedding(self.dropout_input.unwrap_or(self.dropout))
            .with_dropout_between(self.dropout_hidden.unwrap_or(self.dropout))
            .with_dropout_output(self.dropout)
            .with_tie_weights(self.tie_weights)
            .with_init_range(self.init_range)
    }
}

/// Optimizer kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Plain SGD (optionally with momentum).
    Sgd,
    /// Adam.
    #[default]
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
    /// RMSprop (no momentum unless set).
    Rmsprop,
}

/// Optimizer settings. Defaults differ per optimizer where noted; `None` means "the
/// optimizer's usual default" (Adam: betas 0.9/0.999, epsilon 1e-8 as PyTorch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSettings {
    /// Optimizer. Default `adam`.
    pub optimizer: OptimizerKind,
    /// Learning rate. Default 1e-3.
    pub lr: f64,
    /// Global gradient-norm clip (as PyTorch's `clip_grad_norm_`); none = no clipping.
    pub clip: Option<f64>,
    /// Weight decay (L2 for SGD/Adam/RMSprop, decoupled for AdamW). Default 0 (AdamW: 0.01).
    pub weight_decay: Option<f64>,
    /// Momentum (SGD, RMSprop). Default 0.
    pub momentum: f64,
    /// RMSprop smoothing constant. Default 0.99 (PyTorch); Keras uses 0.9.
    pub alpha: f64,
    /// Adam betas. Default [0.9, 0.999].
    pub betas: [f64; 2],
    /// Epsilon (Adam, AdamW, RMSprop). Default 1e-8 (PyTorch); Keras uses 1e-7.
    pub epsilon: f64,
    /// NT-ASGD (AWD-LSTM): once validation has not improved on the best loss from before the
    /// last `nonmono` epochs, evaluate and save the running mean of the weights after every
    /// step from then on (averaged SGD). Default false.
    pub nt_asgd: bool,
    /// NT-ASGD's patience in epochs. Default 5 (AWD-LSTM).
    pub nonmono: usize,
}

impl Default for OptimSettings {
    fn default() -> Self {
        OptimSettings {
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            clip: None,
            weight_decay: None,
            momentum: 0.0,
            alpha: 0.99,
            betas: [0.9, 0.999],
            epsilon: 1e-8,
            nt_asgd: false,
            nonmono: 5,
        }
    }
}

/// Learning-rate schedule kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs after `start_epoch`.
    Step,
    /// Cosine from `lr` to `min_lr` over all training steps.
    Cosine,
    /// Multiply by `factor` when validation loss has not improved for more than `patience`
    /// epochs (pytorch/examples divides by 4 after every epoch without improvement).
    Plateau,
}

/// Schedule settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// Kind. Default `constant`.
    pub kind: ScheduleKind,
    /// Step: epochs between decays. Default 1.
    pub step_size: usize,
    /// Step: decay factor. Default 0.5.
    pub gamma: f64,
    /// Step: the last epoch (1-based) run at the initial rate. Default 0.
    pub start_epoch: usize,
    /// Plateau: decay factor. Default 0.25.
    pub factor: f64,
    /// Plateau: epochs without improvement tolerated before decaying. Default 0.
    pub patience: usize,
    /// Lowest rate any schedule goes to. Default 0.
    pub min_lr: f64,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            kind: ScheduleKind::Constant,
            step_size: 1,
            gamma: 0.5,
            start_epoch: 0,
            factor: 0.25,
            patience: 0,
            min_lr: 0.0,
        }
    }
}

/// Loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopSettings {
    /// Epochs. Default 10.
    pub epochs: usize,
    /// Seed for initialisation, dropout and shuffling. Default 1111.
    pub seed: u64,
    /// Batches between progress log lines. Default 200.
    pub log_interval: usize,
    /// Stop each epoch after this many batches (0 = whole epoch). Default 0.
    pub max_batches: usize,
    /// Stop when validation loss has not improved for this many epochs; none = never.
    pub early_stopping: Option<usize>,
    /// Shuffle n-gram examples each epoch. Default true.
    pub shuffle: bool,
    /// How often to write a checkpoint in the middle of an epoch, besides the one at every
    /// epoch end: optimizer steps (`500`) or training time (`"10m"`, `"90s"`, `"2h"`); `0` or
    /// `"off"`: only at epoch ends and on interruption. Default `"10m"`.
    pub checkpoint_every: CheckpointEvery,
    /// Rewrite `RUN/curves.svg` (training curves, drawn by `lstm_lm_train::plot`) after every epoch.
    /// Default false.
    pub plot: bool,
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings {
            epochs: 10,
            seed: 1111,
            log_interval: 200,
            max_batches: 0,
            early_stopping: None,
            shuffle: true,
            checkpoint_every: CheckpointEvery::Seconds(600),
            plot: false,
        }
    }
}

/// How often the training loop writes a checkpoint in the middle of an epoch (see
/// [`LoopSettings::checkpoint_every`]). In TOML and `config.json`: an integer counts optimizer
/// steps, a string with an `s`, `m` or `h` suffix a training time; `0` or `"off"` is
/// [`Never`](Self::Never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointEvery {
    /// Whenever the run's optimizer step count is a multiple of this (at least 1).
    Steps(u64),
    /// When at least this many seconds (at least 1) of training passed since the last
    /// checkpoint of this process (or its start).
    Seconds(u64),
    /// Only at epoch ends and on interruption.
    Never,
}

impl CheckpointEvery {
    /// Parses `500` (steps), `90s`, `10m`, `2h` (training time), `0` or `off` (never).
    pub fn parse(text: &str) -> Result<Self, InferError> {
        let t = text.trim();
        let bad = || {
            InferError::Settings(format!(
                "train.checkpoint_every = {t:?} is not a step count (500), a time (90s, 10m, 2h) or off"
            ))
        };
        if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("never") {
            return Ok(CheckpointEvery::Never);
        }
        let (digits, unit) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], Some(c.to_ascii_lowercase())),
            _ => (t, None),
        };
        let n: u64 = digits.trim().parse().map_err(|_| bad())?;
        let seconds = |factor: u64| n.checked_mul(factor).ok_or_else(bad);
        let every = match unit {
            None => CheckpointEvery::Steps(n),
            Some('s') => CheckpointEvery::Seconds(n),
            Some('m') => CheckpointEvery::Seconds(seconds(60)?),
            Some('h') => CheckpointEvery::Seconds(seconds(3600)?),
            Some(_) => return Err(bad()),
        };
        Ok(match every {
            CheckpointEvery::Steps(0) | CheckpointEvery::Seconds(0) => CheckpointEvery::Never,
            e => e,
        })
    }
}

impl std::fmt::Display for CheckpointEvery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            CheckpointEvery::Steps(n) => write!(f, "{n}"),
            CheckpointEvery::Seconds(s) if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            CheckpointEvery::Seconds(s) if s % 60 == 0 => write!(f, "{}m", s / 60),
            CheckpointEvery::Seconds(s) => write!(f, "{s}s"),
            CheckpointEvery::Never => write!(f, "off"),
        }
    }
}

impl Serialize for CheckpointEvery {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            CheckpointEvery::Steps(n) => serializer.serialize_u64(n),
            other => serializer.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for CheckpointEvery {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = CheckpointEvery;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a step count (500), a time (\"90s\", \"10m\", \"2h\") or \"off\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                CheckpointEvery::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                CheckpointEvery::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                CheckpointEvery::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The presets shipped with lstm-lm, by name: the TOML text of each.
pub const PRESETS: &[(&str, &str)] = &[
    ("seed", include_str!("../presets/seed.toml")),
    ("sample", include_str!("../presets/sample.toml")),
    ("char-rnn", include_str!("../presets/char-rnn.toml")),
    ("wt2-small", include_str!("../presets/wt2-small.toml")),
    ("wt2-medium", include_str!("../presets/wt2-medium.toml")),
    ("ptb-small", include_str!("../presets/ptb-small.toml")),
    ("ptb-medium", include_str!("../presets/ptb-medium.toml")),
    ("tang-poetry", include_str!("../presets/tang-poetry.toml")),
    ("zh-word", include_str!("../presets/zh-word.toml")),
    ("awd-ptb", include_str!("../presets/awd-ptb.toml")),
    ("awd-wt2", include_str!("../presets/awd-wt2.toml")),
];

impl TrainSettings {
    /// The settings of a shipped preset.
    pub fn preset(name: &str) -> Result<Self, InferError> {
        let text = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                InferError::Settings(format!(
                    "unknown preset '{name}': use one of {}",
                    names.join(", ")
                ))
            })?;
        Self::from_toml(text, &format!("preset '{name}'"))
    }

    /// Parses settings from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, InferError> {
        toml::from_str(text)
            .map_err(|e| InferError::Settings(format!("{origin}: {}", e.message().trim_end())))
    }

    /// Reads settings from a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, InferError> {
        let text = std::fs::read_to_string(path).map_err(|e| InferError::io(path, e))?;
        Self::from_toml(&text, &format!("\"{}\"", path.display()))
    }

    /// The settings as a TOML document with the sections `[data]`, `[model]`, `[optim]`,
    /// `[schedule]`, `[train]` and `[regularisation]`: what `--config` reads, so it repeats
    /// these settings.
    pub fn to_toml(&self) -> Result<String, InferError> {
        toml::to_string(self)
            .map_err(|e| InferError::Settings(format!("cannot write the settings as TOML: {e}")))
    }

    /// Merges `other` over `self`: every key present in `other`'s TOML text wins.
    pub fn merge_toml(&self, text: &str, origin: &str) -> Result<Self, InferError> {
        let mut base = toml::Value::try_from(self)
            .map_err(|e| InferError::Settings(format!("{origin}: {e}")))?;
        let over: toml::Value = toml::from_str(text)
            .map_err(|e| InferError::Settings(format!("{origin}: {}", e.message().trim_end())))?;
        merge_values(&mut base, over);
        base.try_into().map_err(|e: toml::de::Error| {
            InferError::Settings(format!("{origin}: {}", e.message().trim_end()))
        })
    }

    /// Sets one dotted key, e.g. `optim.lr=0.5` or `model.cell="gru"`; the value is TOML
    /// (bare words are taken as strings).
    pub fn set(&self, assignment: &str) -> Result<Self, InferError> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            InferError::Settings(format!(
                "--set '{assignment}' is not KEY=VALUE (for example --set optim.lr=0.5)"
            ))
        })?;
        let key = key.trim();
        let value = value.trim();
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(InferError::Settings(format!("--set: bad key '{key}'")));
        }
        let literal = if toml::from_str::<toml::Table>(&format!("v = {value}")).is_ok() {
            value.to_string()
        } else {
            format!("{value:?}")
        };
        let mut text = String::new();
        if parts.len() > 1 {
            text.push_str(&format!("[{}]\n", parts[..parts.len() - 1].join(".")));
        }
        text.push_str(&format!("{} = {literal}\n", parts[parts.len() - 1]));
        self.merge_toml(&text, &format!("--set {key}"))
    }

    /// Checks values and combinations that cannot train.
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |m: String| Err(InferError::Settings(m));
        let d = &self.data;
        if d.batch_size == 0 || d.eval_batch_size == 0 {
            return bad("data.batch_size and data.eval_batch_size must be at least 1".into());
        }
        if d.recipe == Recipe::Stream && d.bptt == 0 {
            return bad("data.bptt must be at least 1".into());
        }
        if let Some(m) = d.max_len
            && m == 0
        {
            return bad("data.max_len must be at least 1".into());
        }
        if d.tokenizer != TokenizerChoice::KerasWord
            && (d.num_words.is_some() || d.oov_token.is_some())
        {
            return bad(
                "data.num_words and data.oov_token apply to the keras-word tokenizer only".into(),
            );
        }
        d.clean_config()?;
        if d.segment != Segmentation::None
            && !matches!(
                d.tokenizer,
                TokenizerChoice::Word | TokenizerChoice::KerasWord
            )
        {
            return bad(format!(
                "data.segment = \"{}\" applies to the word and keras-word tokenizers only, not {}",
                d.segment,
                d.tokenizer.name()
            ));
        }
        if d.tokenizer == TokenizerChoice::Bpe && d.vocab_size < 260 {
            return bad(format!(
                "data.vocab_size = {} is too small for byte-level BPE: use at least 260",
                d.vocab_size
            ));
        }
        if let Some([a, b, c]) = d.split {
            let ok = [a, b, c].iter().all(|x| (0.0..=1.0).contains(x))
                && a > 0.0
                && ((a + b + c) - 1.0).abs() < 1e-6;
            if !ok {
                return bad(format!(
                    "data.split = [{a}, {b}, {c}] must be three fractions summing to 1 with a positive train part"
                ));
            }
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return bad(format!("optim.lr = {} must be positive", o.lr));
        }
        if let Some(c) = o.clip
            && !(c > 0.0 && c.is_finite())
        {
            return bad(format!("optim.clip = {c} must be positive"));
        }
        if self.train.epochs == 0 {
            return bad("train.epochs must be at least 1".into());
        }
        if self.train.log_interval == 0 {
            return bad("train.log_interval must be at least 1".into());
        }
        let s = &self.schedule;
        if s.kind == ScheduleKind::Step && (s.step_size == 0 || s.gamma.is_nan() || s.gamma <= 0.0)
        {
            return bad("schedule.step_size must be at least 1 and schedule.gamma positive".into());
        }
        if s.kind == ScheduleKind::Plateau && !(s.factor > 0.0 && s.factor < 1.0) {
            return bad(format!("schedule.factor = {} must be in (0, 1)", s.factor));
        }
        self.check_regularisation()?;
        self.check_limits()?;
        self.model
            .model_config(2)
            .validate()
            .map_err(|e| InferError::Settings(e.to_string()))?;
        Ok(())
    }

    /// AWD-LSTM's settings: probabilities in [0, 1), finite non-negative coefficients, the
    /// stream recipe where a setting needs one.
    fn check_regularisation(&self) -> Result<(), InferError> {
        let bad = |m: String| Err(InferError::Settings(m));
        let r = &self.regularisation;
        let m = &self.model;
        let probabilities = [
            ("regularisation.weight_drop", Some(r.weight_drop)),
            (
                "regularisation.embedding_dropout",
                Some(r.embedding_dropout),
            ),
            ("model.dropout_input", m.dropout_input),
            ("model.dropout_hidden", m.dropout_hidden),
        ];
        for (name, p) in probabilities {
            if let Some(p) = p
                && !(0.0..1.0).contains(&p)
            {
                return bad(format!("{name} = {p} must be in [0, 1)"));
            }
        }
        for (name, c) in [("regularisation.ar", r.ar), ("regularisation.tar", r.tar)] {
            if !(c >= 0.0 && c.is_finite()) {
                return bad(format!("{name} = {c} must be a finite number >= 0"));
            }
        }
        let stream_only = [
            ("regularisation.ar", r.ar != 0.0),
            ("regularisation.tar", r.tar != 0.0),
            ("data.random_bptt", self.data.random_bptt),
        ];
        for (name, on) in stream_only {
            if on && self.data.recipe != Recipe::Stream {
                return bad(format!(
                    "{name} applies to the stream recipe only: set data.recipe = \"stream\" or turn it off"
                ));
            }
        }
        if self.optim.nt_asgd && self.optim.nonmono == 0 {
            return bad("optim.nonmono must be at least 1 with optim.nt_asgd".into());
        }
        if !m.hidden_sizes.is_empty() && m.hidden_sizes.len() != m.num_layers {
            return bad(format!(
                "model.hidden_sizes has {} entries but model.num_layers is {}: give one width per layer",
                m.hidden_sizes.len(),
                m.num_layers
            ));
        }
        Ok(())
    }

    /// Sizes past [`LanguageModelConfig`]'s limits, named by their setting and flag, before
    /// anything is built (the vocabulary of a word tokenizer is checked again once it is fitted).
    fn check_limits(&self) -> Result<(), InferError> {
        let m = &self.model;
        let d = &self.data;
        let mut sizes = vec![
            (
                "model.embedding_size (--embedding-size)",
                m.embedding_size,
                LanguageModelConfig::MAX_WIDTH,
            ),
            (
                "model.hidden_size (--hidden-size)",
                m.hidden_size,
                LanguageModelConfig::MAX_WIDTH,
            ),
            (
                "model.num_layers (--layers)",
                m.num_layers,
                LanguageModelConfig::MAX_LAYERS,
            ),
        ];
        if d.tokenizer == TokenizerChoice::Bpe {
            sizes.push((
                "data.vocab_size",
                d.vocab_size,
                LanguageModelConfig::MAX_VOCAB_SIZE,
            ));
        }
        for (name, value, limit) in sizes {
            if value > limit {
                return Err(InferError::Settings(format!(
                    "{name} = {value} is above the limit of {limit}"
                )));
            }
        }
        // The smallest vocabulary the tokenizer can give (BPE: the one asked for).
        let vocab = if d.tokenizer == TokenizerChoice::Bpe {
            d.vocab_size
        } else {
            2
        };
        let parameters = m.model_config(vocab).num_parameters();
        if parameters > u128::from(LanguageModelConfig::MAX_PARAMETERS) {
            return Err(InferError::Settings(format!(
                "the model would have {parameters} parameters, above the limit of {}: lower model.hidden_size (--hidden-size), model.embedding_size (--embedding-size), model.num_layers (--layers) or the vocabulary size",
                LanguageModelConfig::MAX_PARAMETERS
            )));
        }
        Ok(())
    }
}

fn merge_values(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => {
                        merge_values(existing, v)
                    }
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_validates() {
        for (name, _) in PRESETS {
            let s = TrainSettings::preset(name).unwrap();
            s.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!s.description.is_empty(), "{name} has no description");
        }
    }

    #[test]
    fn unknown_preset_names_the_choices() {
        let e = TrainSettings::preset("nope").unwrap_err().to_string();
        assert!(
            e.contains("unknown preset 'nope'") && e.contains("wt2-small"),
            "{e}"
        );
    }

    #[test]
    fn zaremba_conversion_is_per_token() {
        // Summed-over-steps lr 1 and clip 5 become lr = steps and clip = 5 / steps.
        let small = TrainSettings::preset("ptb-small").unwrap();
        assert_eq!(small.optim.lr, small.data.bptt as f64);
        assert!((small.optim.clip.unwrap() - 5.0 / small.data.bptt as f64).abs() < 1e-9);
        let medium = TrainSettings::preset("ptb-medium").unwrap();
        assert_eq!(medium.optim.lr, medium.data.bptt as f64);
        assert!((medium.optim.clip.unwrap() - 5.0 / medium.data.bptt as f64).abs() < 1e-5);
    }

    #[test]
    fn set_overrides_one_key_and_rejects_unknown_keys() {
        let s = TrainSettings::preset("seed").unwrap();
        let t = s.set("optim.lr=0.5").unwrap();
        assert_eq!(t.optim.lr, 0.5);
        assert_eq!(t.model.hidden_size, 128);
        let t = t.set("model.cell=gru").unwrap();
        assert_eq!(t.model.cell, CellKind::Gru);
        assert!(s.set("optim.lrr=0.5").is_err());
        assert!(s.set("no-equals").is_err());
    }

    #[test]
    fn to_toml_reads_back_as_the_same_settings() {
        for name in ["seed", "char-rnn", "wt2-small", "awd-ptb"] {
            let mut s = TrainSettings::preset(name).unwrap();
            s.train.checkpoint_every = CheckpointEvery::Steps(500);
            let text = s.to_toml().unwrap();
            let back = TrainSettings::default().merge_toml(&text, "test").unwrap();
            assert_eq!(back, s, "{name}:\n{text}");
        }
    }

    #[test]
    fn checkpoint_every_reads_steps_times_and_off() {
        use CheckpointEvery::*;
        let s = TrainSettings::default();
        assert_eq!(s.train.checkpoint_every, Seconds(600));
        let cases = [
            ("500", Steps(500)),
            ("90s", Seconds(90)),
            ("10m", Seconds(600)),
            ("2h", Seconds(7200)),
            ("0", Never),
            ("off", Never),
        ];
        for (text, want) in cases {
            let t = s.set(&format!("train.checkpoint_every={text}")).unwrap();
            assert_eq!(t.train.checkpoint_every, want, "{text}");
            // Written out and read back (config.json and TOML) it stays the same.
            let json = serde_json::to_string(&t).unwrap();
            let back: TrainSettings = serde_json::from_str(&json).unwrap();
            assert_eq!(back.train.checkpoint_every, want, "{json}");
            let toml_text = toml::to_string(&t).unwrap();
            assert_eq!(TrainSettings::from_toml(&toml_text, "t").unwrap(), t);
        }
        for bad in ["10x", "m", "-3", "1.5m", "99999999999999999999h"] {
            let e = s
                .set(&format!("train.checkpoint_every={bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("checkpoint_every"), "{bad}: {e}");
        }
        // A config.json written before the setting existed still loads, with the default.
        let mut old = serde_json::to_value(&s).unwrap();
        old["train"]
            .as_object_mut()
            .unwrap()
            .remove("checkpoint_every");
        let back: TrainSettings = serde_json::from_value(old).unwrap();
        assert_eq!(back.train.checkpoint_every, Seconds(600));
    }

    #[test]
    fn sizes_past_the_model_limits_name_their_setting() {
        let check = |change: &dyn Fn(&mut TrainSettings), needle: &str| {
            let mut s = TrainSettings::default();
            change(&mut s);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
            assert_eq!(e.lines().count(), 1, "{e}");
        };
        check(
            &|s| s.model.hidden_size = usize::MAX,
            "model.hidden_size (--hidden-size) = 18446744073709551615 is above the limit of 65536",
        );
        check(
            &|s| s.model.embedding_size = 70_000,
            "model.embedding_size (--embedding-size) = 70000 is above the limit of 65536",
        );
        check(
            &|s| s.model.num_layers = 1000,
            "model.num_layers (--layers) = 1000 is above the limit of 64",
        );
        check(
            &|s| {
                s.data.tokenizer = TokenizerChoice::Bpe;
                s.data.vocab_size = usize::MAX;
            },
            "data.vocab_size = 18446744073709551615 is above the limit of 16777216",
        );
        check(
            &|s| {
                s.model.hidden_size = 60_000;
                s.model.num_layers = 60;
            },
            "parameters, above the limit of 2147483648: lower model.hidden_size (--hidden-size)",
        );
        check(
            &|s| {
                s.data.tokenizer = TokenizerChoice::Bpe;
                s.data.vocab_size = 16_000_000;
                s.model.hidden_size = 1024;
            },
            "parameters, above the limit of 2147483648",
        );
    }

    #[test]
    fn cleaning_and_segmentation_settings() {
        let s = TrainSettings::default();
        assert_eq!(s.data.clean_config().unwrap(), CleanConfig::OFF);
        let t = s
            .set("data.clean=escapes,nfkc,whitespace")
            .unwrap()
            .set("data.segment=jieba")
            .unwrap();
        t.validate().unwrap();
        assert_eq!(t.data.clean_config().unwrap(), CleanConfig::STANDARD);
        assert_eq!(t.data.segment, Segmentation::Jieba);
        let text = t.to_toml().unwrap();
        assert!(
            text.contains("clean = \"escapes,nfkc,whitespace\""),
            "{text}"
        );
        assert!(text.contains("segment = \"jieba\""), "{text}");
        assert_eq!(TrainSettings::default().merge_toml(&text, "t").unwrap(), t);
        let e = s
            .set("data.clean=nfkc,nfd")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.clean = \"nfkc,nfd\": unknown cleaning step \"nfd\"; choose from escapes, nfkc, lowercase, whitespace"
        );
        let e = t
            .set("data.tokenizer=char")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("data.segment = \"jieba\" applies to the word and keras-word tokenizers only, not char"), "{e}");
        // A config.json from before these settings loads with both off.
        let mut old = serde_json::to_value(&s).unwrap();
        let data = old["data"].as_object_mut().unwrap();
        data.remove("clean");
        data.remove("segment");
        let back: TrainSettings = serde_json::from_value(old).unwrap();
        assert_eq!(back, s);
    }

    /// The AWD-LSTM presets hold the paper's settings, and their tied top layer validates.
    #[test]
    fn awd_presets_hold_the_papers_settings() {
        for (name, batch, dropout_input, dropout_hidden, epochs) in [
            ("awd-ptb", 20, 0.4, 0.25, 500),
            ("awd-wt2", 80, 0.65, 0.2, 750),
        ] {
            let s = TrainSettings::preset(name).unwrap();
            let m = &s.model;
            assert_eq!(m.hidden_sizes, vec![1150, 1150, 400], "{name}");
            assert!(m.tie_weights && m.embedding_size == 400, "{name}");
            assert_eq!(
                (m.dropout, m.dropout_input, m.dropout_hidden),
                (0.4, Some(dropout_input), Some(dropout_hidden)),
                "{name}"
            );
            let r = &s.regularisation;
            assert!(r.locked_dropout, "{name}");
            assert_eq!(
                (r.weight_drop, r.embedding_dropout, r.ar, r.tar),
                (0.5, 0.1, 2.0, 1.0),
                "{name}"
            );
            assert!(s.data.random_bptt && s.data.bptt == 70, "{name}");
            assert_eq!(s.data.batch_size, batch, "{name}");
            assert_eq!(s.train.epochs, epochs, "{name}");
            let o = &s.optim;
            assert_eq!(o.optimizer, OptimizerKind::Sgd, "{name}");
            assert_eq!(
                (o.lr, o.clip, o.weight_decay),
                (30.0, Some(0.25), Some(1.2e-6))
            );
            assert!(o.nt_asgd && o.nonmono == 5, "{name}");
            let config = m.model_config(10_000);
            config.validate().unwrap();
            assert_eq!(config.top_hidden_size(), 400);
            assert_eq!(
                (
                    config.dropout_embedding,
                    config.dropout_between,
                    config.dropout_output
                ),
                (dropout_input, dropout_hidden, 0.4)
            );
        }
    }

    /// A config.json from before the regularisation settings loads with all of them off, and
    /// the new settings are checked.
    #[test]
    fn regularisation_settings_default_off_and_are_checked() {
        let s = TrainSettings::default();
        let mut old = serde_json::to_value(&s).unwrap();
        old.as_object_mut().unwrap().remove("regularisation");
        for (section, key) in [
            ("data", "random_bptt"),
            ("model", "hidden_sizes"),
            ("model", "dropout_input"),
            ("model", "dropout_hidden"),
            ("optim", "nt_asgd"),
            ("optim", "nonmono"),
        ] {
            old[section].as_object_mut().unwrap().remove(key);
        }
        let back: TrainSettings = serde_json::from_value(old).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            s.regularisation.model_regularisation(),
            lstm_lm_model::regularisation::Regularisation::default()
        );
        assert!(s.regularisation.ar == 0.0 && s.regularisation.tar == 0.0);
        let check = |assignment: &str, needle: &str| {
            let e = s
                .set(assignment)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{assignment}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        };
        check(
            "regularisation.weight_drop=1.0",
            "regularisation.weight_drop = 1 must be in [0, 1)",
        );
        check("regularisation.embedding_dropout=-0.1", "must be in [0, 1)");
        check(
            "model.dropout_input=1.5",
            "model.dropout_input = 1.5 must be in [0, 1)",
        );
        check(
            "regularisation.ar=-1",
            "regularisation.ar = -1 must be a finite number >= 0",
        );
        check(
            "model.hidden_sizes=[8, 8]",
            "model.hidden_sizes has 2 entries but model.num_layers is 1",
        );
        let ngram = s.set("data.recipe=ngram").unwrap();
        for key in ["regularisation.tar=1", "data.random_bptt=true"] {
            let e = ngram.set(key).unwrap().validate().unwrap_err().to_string();
            assert!(
                e.contains("applies to the stream recipe only"),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn tying_with_different_sizes_is_rejected() {
        let mut s = TrainSettings::default();
        s.model.tie_weights = true;
        s.model.embedding_size = 100;
        s.model.hidden_size = 128;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("tie_weights"), "{e}");
    }
}
