//! The fuzz targets: every loader of the project fed mutated versions of real files (written
//! by a tiny training run made once per process) and random bytes.
//!
//! A target returns `Ok` when the loader answered with a result or an error, and `Err` with
//! a description when the answer breaks a rule: an error message that is not one line, an id
//! past the vocabulary. Panics are caught by the runner.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lstm_lm_model::LanguageModelConfig;
use lstm_lm_model::burn::tensor::Device;
use lstm_lm_text_prep::{TextTokenizer, TokenizerConfig, TokenizerKind};
use lstm_lm_train::data::{self, Split};
use lstm_lm_train::optim::build_optimizer;
use lstm_lm_train::settings::{Recipe, TokenizerChoice, TrainSettings};
use lstm_lm_train::{
    Checkpoint, DataFiles, LoadedRun, RunDir, SamplingConfig, TrainOptions, TrainOutcome,
    load_weights, train,
};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

use super::mutate::{mutated_bytes, mutated_json, texty_bytes};

/// A target's name and what it feeds.
#[derive(Debug, Clone, Copy)]
pub struct TargetInfo {
    /// The name on the command line.
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[TargetInfo] = &[
    TargetInfo {
        name: "tokenizer-json",
        about: "tokenizer.json of every kind, mutated, through TextTokenizer::load, then encode and decode",
    },
    TargetInfo {
        name: "config-json",
        about: "a run's config.json, mutated, through RunDir::load_config and LoadedRun::load",
    },
    TargetInfo {
        name: "checkpoint",
        about: "each file of a checkpoint (and checkpoint.json), mutated, through Checkpoint::load and the optimizer restore",
    },
    TargetInfo {
        name: "model-bpk",
        about: "model.bpk, mutated, through load_weights",
    },
    TargetInfo {
        name: "corpus",
        about: "text bytes (invalid UTF-8, NUL, lone CR, long lines) through fit, encode and batches, every tokenizer and recipe",
    },
    TargetInfo {
        name: "prompt",
        about: "prompts through LoadedRun prompt_ids, score and generate, one tiny run per tokenizer",
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static TargetInfo> {
    TARGETS.iter().find(|t| t.name == name)
}

/// One tiny trained run.
#[derive(Debug)]
pub struct RunFixture {
    /// What it is, e.g. `word-stream`.
    pub name: String,
    /// Its folder (never written after setup: targets work on copies).
    pub dir: PathBuf,
}

/// Everything the targets start from, made once per process in a temporary folder.
pub struct Fixtures {
    dir: tempfile::TempDir,
    /// `tokenizer.json` of each kind: (name, bytes).
    pub tokenizers: Vec<(String, Vec<u8>)>,
    /// Finished runs, one per tokenizer kind.
    pub runs: Vec<RunFixture>,
    /// A run stopped mid-epoch: its checkpoint carries recurrent state.
    pub interrupted: PathBuf,
    /// The interrupted run's checkpoint files and `checkpoint.json`: (path in the run, bytes).
    pub checkpoint_files: Vec<(PathBuf, Vec<u8>)>,
    loaded: Vec<LoadedRun>,
}

/// The corpus of the tiny runs: short lines of common words, with punctuation.
const CORPUS: &str = "the cat sat on the mat .\nthe dog sat on the log .\na cat and a dog , on a mat !\n\
    the mat is on the log ; the log is on the mat .\nwhere is the cat ? the cat is on the dog .\n";

fn tiny_settings(tokenizer: TokenizerChoice, recipe: Recipe) -> TrainSettings {
    let mut s = TrainSettings::default();
    s.data.tokenizer = tokenizer;
    s.data.recipe = recipe;
    s.data.batch_size = 2;
    s.data.eval_batch_size = 2;
    s.data.bptt = 4;
    s.data.vocab_size = 270;
    s.model.embedding_size = 8;
    s.model.hidden_size = 8;
    s.train.epochs = 1;
    s.train.max_batches = 3;
    s
}

fn train_tiny(
    settings: TrainSettings,
    data: DataFiles,
    out: &Path,
    stop_at: Option<u64>,
) -> Result<()> {
    let outcome = train(TrainOptions {
        stop_at_step: stop_at,
        ..TrainOptions::new(settings, data, out)
    })
    .with_context(|| format!("training the fixture run {}", out.display()))?;
    match (outcome, stop_at) {
        (TrainOutcome::Finished(_), None) | (TrainOutcome::Interrupted { .. }, Some(_)) => Ok(()),
        (other, _) => bail!("fixture run {} ended as {other:?}", out.display()),
    }
}

impl Fixtures {
    /// Trains the tiny runs and writes the tokenizer files.
    ///
    /// # Errors
    /// When a fixture cannot be made (a bug of the project, not of an input).
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let corpus = dir.path().join("corpus.txt");
        fs::write(&corpus, CORPUS)?;
        let data = DataFiles {
            train: vec![corpus.clone()],
            valid: Some(corpus.clone()),
            test: None,
        };
        let mut tokenizers = Vec::new();
        for (name, kind, num_words, oov) in [
            ("keras-word", TokenizerKind::KerasWord, None, None),
            (
                "keras-word-limited",
                TokenizerKind::KerasWord,
                Some(5),
                Some("<OOV>"),
            ),
            ("word", TokenizerKind::Word, None, None),
            ("char", TokenizerKind::Char, None, None),
            ("bpe", TokenizerKind::Bpe, None, None),
        ] {
            let config = TokenizerConfig {
                kind,
                vocab_size: (kind == TokenizerKind::Bpe).then_some(270),
                num_words,
                oov_token: oov.map(str::to_owned),
                ..TokenizerConfig::new(kind)
            };
            let t = TextTokenizer::fit(&config, &[CORPUS])?;
            tokenizers.push((name.to_owned(), t.to_json()?.into_bytes()));
        }
        let mut runs = Vec::new();
        for (name, tokenizer, recipe) in [
            ("word-stream", TokenizerChoice::Word, Recipe::Stream),
            ("keras-ngram", TokenizerChoice::KerasWord, Recipe::Ngram),
            ("char-stream", TokenizerChoice::Char, Recipe::Stream),
            ("bpe-stream", TokenizerChoice::Bpe, Recipe::Stream),
        ] {
            let out = dir.path().join(name);
            train_tiny(tiny_settings(tokenizer, recipe), data.clone(), &out, None)?;
            runs.push(RunFixture {
                name: name.to_owned(),
                dir: out,
            });
        }
        let interrupted = dir.path().join("interrupted");
        let mut settings = tiny_settings(TokenizerChoice::Word, Recipe::Stream);
        settings.train.max_batches = 0;
        train_tiny(settings, data, &interrupted, Some(2))?;
        let run = RunDir::new(&interrupted);
        let latest = Checkpoint::latest(&run)?.context("the interrupted run has no checkpoint")?;
        let mut checkpoint_files = vec![(
            PathBuf::from("checkpoint.json"),
            fs::read(run.checkpoint_pointer())?,
        )];
        let mut names: Vec<PathBuf> = fs::read_dir(&latest)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for path in names {
            let rel = path.strip_prefix(&interrupted)?.to_path_buf();
            checkpoint_files.push((rel, fs::read(&path)?));
        }
        let loaded = runs
            .iter()
            .map(|r| LoadedRun::load(&r.dir, Device::flex()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            dir,
            tokenizers,
            runs,
            interrupted,
            checkpoint_files,
            loaded,
        })
    }

    /// A fresh folder for one target's files.
    fn scratch(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.path().join("scratch").join(name);
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// The names of a target's slots (which seed file a case starts from).
    pub fn slots(&self, target: &str) -> Vec<String> {
        match target {
            "tokenizer-json" => self.tokenizers.iter().map(|(n, _)| n.clone()).collect(),
            "config-json" | "model-bpk" | "prompt" => {
                self.runs.iter().map(|r| r.name.clone()).collect()
            }
            "checkpoint" => self
                .checkpoint_files
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect(),
            "corpus" => corpus_slots()
                .iter()
                .map(|(n, _, _)| (*n).to_owned())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The inputs of `target`: a slot and bytes.
    pub fn strategy(&self, target: &str) -> BoxedStrategy<(usize, Vec<u8>)> {
        let seeds: Vec<(Vec<u8>, bool)> = match target {
            "tokenizer-json" => self
                .tokenizers
                .iter()
                .map(|(_, b)| (b.clone(), true))
                .collect(),
            "config-json" => self
                .runs
                .iter()
                .map(|r| {
                    (
                        fs::read(r.dir.join("config.json")).unwrap_or_default(),
                        true,
                    )
                })
                .collect(),
            "model-bpk" => self
                .runs
                .iter()
                .map(|r| (fs::read(r.dir.join("model.bpk")).unwrap_or_default(), false))
                .collect(),
            "checkpoint" => self
                .checkpoint_files
                .iter()
                .map(|(p, b)| (b.clone(), p.extension().is_some_and(|e| e == "json")))
                .collect(),
            "corpus" => {
                let n = corpus_slots().len();
                return (0..n, texty_bytes(200)).boxed();
            }
            "prompt" => {
                let n = self.runs.len();
                return (0..n, texty_bytes(24)).boxed();
            }
            _ => return Just((0, Vec::new())).boxed(),
        };
        let n = seeds.len();
        (0..n)
            .prop_flat_map(move |slot| {
                let (seed, json) = seeds[slot].clone();
                let bytes = if json {
                    mutated_json(seed).boxed()
                } else {
                    mutated_bytes(seed).boxed()
                };
                (Just(slot), bytes)
            })
            .boxed()
    }

    /// Runs `target` on one input.
    ///
    /// # Errors
    /// A description of the broken rule; `Ok` for any result or proper error of the loader.
    pub fn check(&self, target: &str, slot: usize, bytes: &[u8]) -> Result<(), String> {
        let work = self.scratch(target).map_err(|e| format!("fixture: {e}"))?;
        match target {
            "tokenizer-json" => check_tokenizer_json(&work, bytes),
            "config-json" => self.check_config_json(&work, slot, bytes),
            "checkpoint" => self.check_checkpoint(&work, slot, bytes),
            "model-bpk" => self.check_model_bpk(&work, slot, bytes),
            "corpus" => check_corpus(&work, slot, bytes),
            "prompt" => self.check_prompt(slot, bytes),
            other => Err(format!("no target named {other}")),
        }
    }

    fn check_config_json(&self, work: &Path, slot: usize, bytes: &[u8]) -> Result<(), String> {
        let run = &self.runs[slot % self.runs.len()];
        copy_run(&run.dir, work).map_err(|e| format!("fixture: {e}"))?;
        fs::write(work.join("config.json"), bytes).map_err(|e| format!("fixture: {e}"))?;
        let config = match RunDir::new(work).load_config() {
            Ok(config) => config,
            Err(e) => return one_line(&e),
        };
        // A configuration the limits allow but whose weights would not fit a test machine is
        // not loaded: the limits themselves are tested elsewhere.
        if weights_bytes(&config.model) > 256 << 20 {
            return Ok(());
        }
        match LoadedRun::load(work, Device::flex()) {
            Ok(loaded) => exercise_run(&loaded, "the cat"),
            Err(e) => one_line(&e),
        }
    }

    fn check_checkpoint(&self, work: &Path, slot: usize, bytes: &[u8]) -> Result<(), String> {
        copy_run(&self.interrupted, work).map_err(|e| format!("fixture: {e}"))?;
        let (rel, _) = &self.checkpoint_files[slot % self.checkpoint_files.len()];
        fs::write(work.join(rel), bytes).map_err(|e| format!("fixture: {e}"))?;
        let run = RunDir::new(work);
        let config = run.load_config().map_err(|e| format!("fixture: {e}"))?;
        let loaded = match Checkpoint::load(&run, &config.model, &Device::flex().autodiff()) {
            Ok(loaded) => loaded,
            Err(e) => return one_line(&e),
        };
        let optimizer = build_optimizer(&config.settings.optim);
        match Checkpoint::restore_optimizer(optimizer, loaded.optimizer) {
            Ok(_) => Ok(()),
            Err(e) => one_line(&e),
        }
    }

    fn check_model_bpk(&self, work: &Path, slot: usize, bytes: &[u8]) -> Result<(), String> {
        let run = &self.runs[slot % self.runs.len()];
        let config = RunDir::new(&run.dir)
            .load_config()
            .map_err(|e| format!("fixture: {e}"))?;
        let path = work.join("model.bpk");
        fs::write(&path, bytes).map_err(|e| format!("fixture: {e}"))?;
        match load_weights(&path, &config.model, &Device::flex()) {
            Ok(_) => Ok(()),
            Err(e) => one_line(&e),
        }
    }

    fn check_prompt(&self, slot: usize, bytes: &[u8]) -> Result<(), String> {
        let run = &self.loaded[slot % self.loaded.len()];
        let prompt = String::from_utf8_lossy(bytes);
        exercise_run(run, &prompt)
    }
}

/// Bytes of a model's weights, as f32 (saturating: absurd sizes stay absurd).
fn weights_bytes(m: &LanguageModelConfig) -> u128 {
    let (v, e, h, l) = (
        m.vocab_size as u128,
        m.embedding_size as u128,
        m.hidden_size as u128,
        m.num_layers as u128,
    );
    let gates = m.cell.gates() as u128;
    let recurrent = gates * h * (e.max(h) + h + 2) * l;
    4 * (v * e + recurrent + v * h + v)
}

fn copy_run(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_run(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// An error must be one line: it is what the user reads.
fn one_line(e: &dyn std::fmt::Display) -> Result<(), String> {
    let text = e.to_string();
    if text.contains('\n') || text.is_empty() {
        return Err(format!("the error is not one line: {text:?}"));
    }
    Ok(())
}

fn check_ids(ids: &[u32], vocab: usize, what: &str) -> Result<(), String> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(id) => Err(format!(
            "{what} gave id {id}, past the vocabulary of {vocab}"
        )),
        None => Ok(()),
    }
}

fn check_tokenizer_json(work: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = work.join("tokenizer.json");
    fs::write(&path, bytes).map_err(|e| format!("fixture: {e}"))?;
    let tokenizer = match TextTokenizer::load(&path) {
        Ok(t) => t,
        Err(e) => return one_line(&e),
    };
    let vocab = tokenizer.vocab_size();
    for text in [
        "the cat sat\non the mat\n",
        "",
        "ünknown wörds 🙂\r\n\0",
        "  \n\n",
    ] {
        let ids = tokenizer.encode_text(text).map_err(|e| e.to_string())?;
        check_ids(&ids, vocab, "encode_text")?;
        let ids = tokenizer.encode_line(text).map_err(|e| e.to_string())?;
        check_ids(&ids, vocab, "encode_line")?;
        let _ = tokenizer.decode(&ids);
    }
    let some: Vec<u32> = (0..vocab.min(300) as u32)
        .chain([u32::MAX, vocab as u32])
        .collect();
    let _ = tokenizer.decode(&some);
    for &id in &some {
        if let Some(token) = tokenizer.id_to_token(id) {
            let _ = tokenizer.token_to_id(&token);
        }
    }
    Ok(())
}

/// The corpus target's slots: (name, tokenizer, recipe).
pub fn corpus_slots() -> [(&'static str, TokenizerChoice, Recipe); 6] {
    [
        ("word-stream", TokenizerChoice::Word, Recipe::Stream),
        (
            "keras-word-ngram",
            TokenizerChoice::KerasWord,
            Recipe::Ngram,
        ),
        (
            "keras-word-stream",
            TokenizerChoice::KerasWord,
            Recipe::Stream,
        ),
        ("char-stream", TokenizerChoice::Char, Recipe::Stream),
        ("char-ngram", TokenizerChoice::Char, Recipe::Ngram),
        ("bpe-stream", TokenizerChoice::Bpe, Recipe::Stream),
    ]
}

/// The data path on `bytes` as training and validation file: fit, encode, every batch.
pub fn check_corpus(work: &Path, slot: usize, bytes: &[u8]) -> Result<(), String> {
    let slots = corpus_slots();
    let (_, tokenizer, recipe) = slots[slot % slots.len()];
    let train_file = work.join("train.txt");
    fs::write(&train_file, bytes).map_err(|e| format!("fixture: {e}"))?;
    let files = DataFiles {
        train: vec![train_file.clone()],
        valid: Some(train_file),
        test: None,
    };
    let d = tiny_settings(tokenizer, recipe).data;
    let fitted = match data::fit_tokenizer_on_files(&d, &files) {
        Ok(t) => t,
        Err(e) => return one_line(&e),
    };
    let prepared = match data::prepare_files(&d, &fitted, &files, &mut |_| {}) {
        Ok(p) => p,
        Err(e) => return one_line(&e),
    };
    let vocab = fitted.vocab_size();
    let width = prepared.ngram_width.unwrap_or(d.bptt);
    for split in [Some(&prepared.train), prepared.valid.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Split::Stream { ids } = split {
            check_ids(ids, vocab, "the stream recipe")?;
        }
        let batches = match split.batches(d.batch_size, width, Some(7)) {
            Ok(b) => b,
            Err(e) => return one_line(&e),
        };
        for batch in batches {
            check_ids(&batch.inputs, vocab, "a batch's inputs")?;
            check_ids(&batch.targets, vocab, "a batch's targets")?;
            if batch.inputs.len() != batch.batch * batch.width {
                return Err(format!(
                    "a batch of {} ids is not {} rows of {}",
                    batch.inputs.len(),
                    batch.batch,
                    batch.width
                ));
            }
        }
    }
    Ok(())
}

fn exercise_run(run: &LoadedRun, prompt: &str) -> Result<(), String> {
    let vocab = run.tokenizer.vocab_size();
    match run.prompt_ids(prompt) {
        Ok(ids) => check_ids(&ids, vocab, "prompt_ids")?,
        Err(e) => one_line(&e)?,
    }
    match run.score(prompt) {
        Ok(score) => {
            if score.tokens.iter().any(|(_, lp)| lp.is_nan() || *lp > 1e-6) {
                return Err(format!(
                    "score gave a log-probability that is NaN or above 0: {score:?}"
                ));
            }
        }
        Err(e) => one_line(&e)?,
    }
    let sampling = SamplingConfig::default();
    match run.generate(prompt, 4, &sampling, 3, |_| Ok(())) {
        Ok(ids) => check_ids(&ids, vocab, "generate")?,
        Err(e) => one_line(&e)?,
    }
    Ok(())
}
