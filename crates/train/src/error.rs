use std::path::{Path, PathBuf};

use lstm_lm_infer::InferError;
use lstm_lm_text_prep::one_line;
use thiserror::Error;

/// Errors of the training layer (the inference layer's [`InferError`] converts into it).
#[derive(Debug, Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("\"{path}\": {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said (kept out of the error chain: the message already holds it).
        cause: std::io::Error,
    },
    /// Settings that cannot be used.
    #[error("{}", one_line(.0))]
    Settings(String),
    /// Data that cannot be used (empty corpus, too short for a batch...).
    #[error("{}", one_line(.0))]
    Data(String),
    /// A run folder that is missing, incomplete or inconsistent.
    #[error("{}", one_line(.0))]
    RunDir(String),
    /// The model layer refused something.
    #[error(transparent)]
    Model(#[from] lstm_lm_model::ModelError),
    /// The tokenizer layer refused something.
    #[error(transparent)]
    Text(#[from] lstm_lm_text_prep::TextPrepError),
    /// The n-gram layer refused something.
    #[error(transparent)]
    Ngram(#[from] lstm_lm_ngram::NgramError),
    /// The loss stopped being a finite number.
    #[error(
        "the training loss became {value} at epoch {epoch}, batch {batch}; the last good checkpoint is kept in \"{checkpoint}\": lower the learning rate (optim.lr) or set a gradient clip (optim.clip) and resume with --resume"
    )]
    NonFiniteLoss {
        /// The bad value.
        value: f64,
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch.
        batch: usize,
        /// The checkpoint folder left in place.
        checkpoint: PathBuf,
    },
    /// Generation or scoring input that cannot be used.
    #[error("{}", one_line(.0))]
    Input(String),
    /// The device failed to hand back a result (a read-back of logits or scores).
    #[error("{0}")]
    Device(String),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            cause: source,
        }
    }
}

/// The inference layer's errors keep their kind: a settings error stays a settings error.
impl From<InferError> for TrainError {
    fn from(e: InferError) -> Self {
        match e {
            InferError::Io { path, cause } => TrainError::Io { path, cause },
            InferError::Settings(m) => TrainError::Settings(m),
            InferError::Data(m) => TrainError::Data(m),
            InferError::RunDir(m) => TrainError::RunDir(m),
            InferError::Model(e) => TrainError::Model(e),
            InferError::Text(e) => TrainError::Text(e),
            InferError::Ngram(e) => TrainError::Ngram(e),
            InferError::Input(m) => TrainError::Input(m),
            InferError::Device(m) => TrainError::Device(m),
        }
    }
}
