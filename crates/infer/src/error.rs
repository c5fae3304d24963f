use std::path::{Path, PathBuf};

use lstm_lm_text_prep::one_line;
use thiserror::Error;

/// Errors of the layer that uses trained runs: loading a run folder, generating, scoring,
/// evaluating, embedding and exporting.
#[derive(Debug, Error)]
pub enum InferError {
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
    /// Generation or scoring input that cannot be used.
    #[error("{}", one_line(.0))]
    Input(String),
    /// The device failed to hand back a result (a read-back of logits or scores).
    #[error("{0}")]
    Device(String),
}

impl InferError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        InferError::Io {
            path: path.to_path_buf(),
            cause: source,
        }
    }
}
