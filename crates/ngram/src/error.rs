//! The error type of the n-gram crate.

use std::path::PathBuf;

use lstm_lm_text_prep::TextPrepError;

/// Everything that can go wrong while building, saving, loading or querying an n-gram model.
///
/// Messages are lower-case, name the offending value or file (paths quoted) and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum NgramError {
    /// The order is 0 or above [`MAX_ORDER`](crate::MAX_ORDER).
    #[error("--order {order} is out of range: choose an order from 1 to {max}")]
    BadOrder {
        /// The order asked for.
        order: usize,
        /// The largest order supported.
        max: usize,
    },

    /// The training text has no token at all.
    #[error("the training text has no tokens: give --data files that hold text")]
    EmptyCorpus,

    /// A file could not be read or written.
    #[error("cannot {action} \"{}\"", path.display())]
    Io {
        /// What was being done: "read", "write", "create".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A model file that is damaged, foreign or from a newer lstm-lm.
    #[error("\"{}\" is not a usable n-gram model: {reason}", path.display())]
    BadModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        reason: String,
    },

    /// A folder that is not an n-gram run.
    #[error(
        "\"{}\" is not an n-gram run folder (no {file}): pass the --out folder of `lstm-lm ngram train`",
        path.display()
    )]
    NotNgramRun {
        /// The folder.
        path: PathBuf,
        /// The file that is missing.
        file: &'static str,
    },

    /// The tokenizer of a run does not fit the model beside it.
    #[error("\"{}\" does not belong to the model beside it: {reason}", path.display())]
    TokenizerMismatch {
        /// The tokenizer file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },

    /// An ARPA file that cannot be written or read.
    #[error("ARPA: {0}")]
    Arpa(String),

    /// Writing ARPA text failed (the cause is kept, so a closed pipe can be told apart).
    #[error("cannot write the ARPA text")]
    WriteArpa(#[source] std::io::Error),

    /// Input that cannot be scored or continued.
    #[error("{0}")]
    Input(String),

    /// An error from tokenization.
    #[error(transparent)]
    TextPrep(#[from] TextPrepError),
}

/// Results of this crate.
pub type Result<T, E = NgramError> = std::result::Result<T, E>;
