//! The run folder: everything needed to rebuild, resume and use a trained model.
//!
//! ```text
//! RUN/config.json        RunConfig: settings, model config, data files with their sizes and
//!                        SHA-256, format tag and version
//! RUN/tokenizer.json     the fitted tokenizer (Hugging Face format)
//! RUN/model.bpk          weights of the best model so far (burnpack)
//! RUN/metrics.jsonl      a format header line, then one JSON object per log line, epoch and
//!                        test evaluation
//! RUN/checkpoint.json    names the newest complete checkpoint folder (format tag, version)
//! RUN/checkpoints/step-N/{model.bpk, optimizer.bpk, trainer.json, state.safetensors}
//! ```
//! Every file is written atomically; a checkpoint folder is complete before
//! `checkpoint.json` is switched to it, so a crash leaves the previous checkpoint usable.
//! Every file carries a format name and version, checked on load (burnpack and the Hugging
//! Face tokenizer format carry their own).
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use lstm_lm_model::{LanguageModel, LanguageModelConfig};
use lstm_lm_text_prep::TextTokenizer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::write_atomic;
use crate::{InferError, TrainSettings};

/// The format tag written into every `config.json`.
pub const RUN_FORMAT: &str = "lstm-lm-run";
/// The current run-folder format version. Version 2 added the data files' digests, the
/// `train.checkpoint_every` setting and tagged checkpoint files (`state.safetensors`); version 1
/// folders still load.
pub const RUN_FORMAT_VERSION: u32 = 2;

/// `config.json`: enough to rebuild the tokenizer pipeline and the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// Always [`RUN_FORMAT`].
    pub format: String,
    /// Format version, [`RUN_FORMAT_VERSION`] when written by this version.
    pub version: u32,
    /// The merged training settings.
    pub settings: TrainSettings,
    /// The model configuration (vocabulary size included).
    pub model: LanguageModelConfig,
    /// Input width of the n-gram recipe (prefix length fed to the model), when it applies.
    pub ngram_width: Option<usize>,
    /// Training data files as given.
    pub data: DataFiles,
    /// Size and SHA-256 of every data file when the run started (or last accepted a change);
    /// empty in runs written before they were recorded.
    #[serde(default)]
    pub data_digests: Vec<DataFileDigest>,
    /// The backend the run trained on.
    pub backend: String,
}

/// Size and content hash of one data file, as recorded in `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFileDigest {
    /// The file, as given.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content, lowercase hex.
    pub sha256: String,
}

impl DataFileDigest {
    /// Reads `path` and hashes it.
    pub fn of_file(path: &Path) -> Result<Self, InferError> {
        let mut file = std::fs::File::open(path).map_err(|e| InferError::io(path, e))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(InferError::io(path, e)),
            };
            hasher.update(&buffer[..n]);
            bytes += n as u64;
        }
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(DataFileDigest {
            path: path.to_path_buf(),
            bytes,
            sha256,
        })
    }
}

/// The data files a run was trained on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataFiles {
    /// Training text.
    pub train: Vec<PathBuf>,
    /// Validation text, if any.
    pub valid: Option<PathBuf>,
    /// Test text, if any.
    pub test: Option<PathBuf>,
}

impl DataFiles {
    /// One training file, no validation or test file.
    pub fn train_only(train: impl Into<PathBuf>) -> Self {
        DataFiles {
            train: vec![train.into()],
            valid: None,
            test: None,
        }
    }

    /// Every file: training files first, then validation and test; each once.
    pub fn all(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        let rest = self.valid.iter().chain(self.test.iter());
        for p in self.train.iter().chain(rest) {
            if !out.contains(&p.as_path()) {
                out.push(p);
            }
        }
        out
    }

    /// The size and SHA-256 of every file, in the order of [`all`](Self::all).
    pub fn digests(&self) -> Result<Vec<DataFileDigest>, InferError> {
        self.all()
            .into_iter()
            .map(DataFileDigest::of_file)
            .collect()
    }
}

/// The recorded files whose size or content differs from `now` (a file missing from `now`
/// counts as changed), with what differs.
pub fn changed_data_files(recorded: &[DataFileDigest], now: &[DataFileDigest]) -> Vec<String> {
    recorded
        .iter()
        .filter_map(|r| {
            let why = match now.iter().find(|n| n.path == r.path) {
                None => "is no longer among the run's files".to_string(),
                Some(n) if n.bytes != r.bytes => {
                    format!("is now {} bytes, was {}", n.bytes, r.bytes)
                }
                Some(n) if n.sha256 != r.sha256 => "has a different content (SHA-256)".into(),
                Some(_) => return None,
            };
            Some(format!("\"{}\" {why}", r.path.display()))
        })
        .collect()
}

/// Checks a file's format tag and version: `format` must be `expected` and `version` at most
/// `current`. A file without a tag (empty `format`, version 0) was written before tags existed
/// and is accepted as version 0.
pub fn check_format(
    path: &Path,
    format: &str,
    version: u32,
    expected: &str,
    current: u32,
) -> Result<(), InferError> {
    let untagged = format.is_empty() && version == 0;
    if untagged || (format == expected && version <= current) {
        return Ok(());
    }
    Err(InferError::RunDir(format!(
        "\"{}\" is format '{format}' version {version}, this lstm-lm reads '{expected}' up to version {current}: {}",
        path.display(),
        if format == expected {
            "it was written by a newer lstm-lm; use that version"
        } else {
            "it is not this kind of lstm-lm file; restore it"
        }
    )))
}

/// Paths inside a run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A run folder at `root` (nothing is touched).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `tokenizer.json`.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }

    /// `model.bpk` (best weights).
    pub fn model_path(&self) -> PathBuf {
        self.root.join("model.bpk")
    }

    /// `metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// `checkpoint.json`.
    pub fn checkpoint_pointer(&self) -> PathBuf {
        self.root.join("checkpoint.json")
    }

    /// Creates the folder (and parents).
    pub fn create(&self) -> Result<(), InferError> {
        std::fs::create_dir_all(&self.root).map_err(|e| InferError::io(&self.root, e))
    }

    /// Writes `config.json` atomically.
    pub fn save_config(&self, config: &RunConfig) -> Result<(), InferError> {
        let text = serde_json::to_string_pretty(config)
            .map_err(|e| InferError::RunDir(format!("cannot serialize config.json: {e}")))?;
        write_atomic(&self.config_path(), text.as_bytes())
    }

    /// Reads and checks `config.json`.
    pub fn load_config(&self) -> Result<RunConfig, InferError> {
        if !self.root.is_dir() {
            return Err(InferError::RunDir(format!(
                "run folder \"{}\" does not exist: pass the --out folder of a finished `lstm-lm train`",
                self.root.display()
            )));
        }
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            InferError::RunDir(format!(
                "\"{}\" cannot be read ({e}): the folder is not a complete lstm-lm run",
                path.display()
            ))
        })?;
        let config: RunConfig = serde_json::from_str(&text).map_err(|e| {
            InferError::RunDir(format!(
                "\"{}\" is corrupt ({e}): restore it or train again",
                path.display()
            ))
        })?;
        if config.format.is_empty() {
            // config.json has always been tagged: an empty tag is damage, not an old file.
            return Err(InferError::RunDir(format!(
                "\"{}\" has no format tag: restore it or train again",
                path.display()
            )));
        }
        check_format(
            &path,
            &config.format,
            config.version,
            RUN_FORMAT,
            RUN_FORMAT_VERSION,
        )?;
        // Sizes and values are checked before anything is built from them (an edited file
        // could ask for a model that does not fit in memory).
        let checked = config.model.validate().map_err(InferError::from);
        checked
            .and_then(|()| config.settings.validate())
            .map_err(|e| {
                InferError::RunDir(format!(
                    "\"{}\" cannot be used: {e}; restore it or train again",
                    path.display()
                ))
            })?;
        Ok(config)
    }

    /// Writes the tokenizer atomically.
    pub fn save_tokenizer(&self, tokenizer: &TextTokenizer) -> Result<(), InferError> {
        Ok(tokenizer.save(self.tokenizer_path())?)
    }

    /// Loads the tokenizer and checks it against the model's vocabulary size.
    pub fn load_tokenizer(&self, config: &RunConfig) -> Result<TextTokenizer, InferError> {
        let path = self.tokenizer_path();
        let tokenizer = TextTokenizer::load(&path)?;
        if tokenizer.vocab_size() != config.model.vocab_size {
            return Err(InferError::RunDir(format!(
                "\"{}\" has {} ids but the model in \"{}\" was built for {}: the tokenizer does not belong to this run",
                path.display(),
                tokenizer.vocab_size(),
                self.root.display(),
                config.model.vocab_size
            )));
        }
        Ok(tokenizer)
    }

    /// Loads `model.bpk` into a model built from `config` on `device`.
    pub fn load_model(
        &self,
        config: &RunConfig,
        device: &Device,
    ) -> Result<LanguageModel, InferError> {
        load_weights(&self.model_path(), &config.model, device)
    }
}

/// Serializes a model's weights to burnpack bytes.
pub fn model_bytes(model: &LanguageModel) -> Result<Vec<u8>, InferError> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| InferError::RunDir(format!("cannot serialize the model: {e}")))?;
    Ok(bytes.to_vec())
}

/// Builds a model from `config` and loads the burnpack file at `path` into it.
pub fn load_weights(
    path: &Path,
    config: &LanguageModelConfig,
    device: &Device,
) -> Result<LanguageModel, InferError> {
    let data = std::fs::read(path).map_err(|e| {
        InferError::RunDir(format!(
            "\"{}\" cannot be read ({e}): the run has no saved model yet",
            path.display()
        ))
    })?;
    let model = config.init(device)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(data)).map_err(|e| {
        InferError::RunDir(format!(
            "\"{}\" is not a valid burnpack file ({e}): restore it or train again",
            path.display()
        ))
    })?;
    model.try_load_record(record).map_err(|e| {
        InferError::RunDir(format!(
            "\"{}\" does not fit the model in config.json ({e})",
            path.display()
        ))
    })
}
