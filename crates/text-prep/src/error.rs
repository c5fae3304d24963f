//! The error type of the text-prep crate.

use std::path::PathBuf;

/// Everything that can go wrong while preparing text.
///
/// Messages are lower-case, name the offending value or file (paths quoted) and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum TextPrepError {
    /// A file could not be opened or read.
    #[error("cannot read \"{}\" (check that it exists and is readable)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A file could not be written, synced or renamed into place.
    #[error("cannot write \"{}\" (check that its folder exists and is writable)", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A text file holds bytes that are not UTF-8.
    #[error("\"{}\" is not valid UTF-8 at byte {byte}; convert it to UTF-8 first", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first byte that is not part of valid UTF-8.
        byte: usize,
    },

    /// A `tokenizer.json` file could not be understood.
    #[error(
        "\"{}\" is not a usable tokenizer file: {reason}; re-create it with `lstm-lm tokenize`",
        path.display()
    )]
    BadTokenizerFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A tokenizer kind name that does not exist.
    #[error("unknown tokenizer kind \"{value}\"; choose keras-word, word, char or bpe")]
    UnknownKind {
        /// The name given.
        value: String,
    },

    /// A cleaning step name that does not exist.
    #[error("unknown cleaning step \"{value}\"; choose from escapes, nfkc, lowercase, whitespace")]
    UnknownCleanStep {
        /// The name given.
        value: String,
    },

    /// A segmentation name that does not exist.
    #[error("unknown segmentation \"{value}\"; choose none or jieba")]
    UnknownSegmentation {
        /// The name given.
        value: String,
    },

    /// An option was given to a tokenizer kind it does not apply to.
    #[error("{option} does not apply to the {kind} tokenizer; leave it out or choose {applies_to}")]
    OptionNotApplicable {
        /// The option's name.
        option: &'static str,
        /// The kind it was given to.
        kind: &'static str,
        /// The kind(s) it applies to.
        applies_to: &'static str,
    },

    /// A byte-level BPE vocabulary smaller than its 256 byte symbols was asked for.
    #[error(
        "bpe vocabulary size {vocab_size} is smaller than the 256 byte symbols; ask for 256 or more"
    )]
    BpeVocabTooSmall {
        /// The size asked for.
        vocab_size: usize,
    },

    /// The Hugging Face `tokenizers` library reported an error.
    #[error("tokenizers library failed while {doing}: {message}")]
    Tokenizers {
        /// What we were doing.
        doing: &'static str,
        /// The library's message.
        message: String,
    },

    /// A split fraction is negative, not a number, or the fractions leave no training data.
    #[error(
        "split fractions valid={valid} and test={test} are invalid; each must be in [0, 1) and together below 1"
    )]
    BadSplitFractions {
        /// The validation fraction.
        valid: f64,
        /// The test fraction.
        test: f64,
    },

    /// A size parameter (batch size, window length, ...) is zero.
    #[error("{name} must be at least 1, got 0")]
    ZeroSize {
        /// The parameter's name.
        name: &'static str,
    },

    /// A token stream is too short to be cut into the requested columns.
    #[error(
        "a stream of {len} tokens is too short for batch size {batch_size}; it needs at least {needed} tokens (use a smaller batch size or more text)"
    )]
    StreamTooShort {
        /// Number of tokens in the stream.
        len: usize,
        /// Requested number of columns.
        batch_size: usize,
        /// Minimum number of tokens needed.
        needed: usize,
    },

    /// A class label is not below the number of classes.
    #[error(
        "label {label} at position {position} is out of range for {num_classes} classes; pass a number of classes above the largest label"
    )]
    LabelOutOfRange {
        /// The label.
        label: u32,
        /// Its position in the input.
        position: usize,
        /// The number of classes given.
        num_classes: usize,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = TextPrepError> = std::result::Result<T, E>;

impl TextPrepError {
    /// Wraps an error of the `tokenizers` crate, saying what we were doing.
    pub(crate) fn tokenizers(doing: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Tokenizers {
            doing,
            message: one_line(&err.to_string()),
        }
    }

    /// A [`TextPrepError::BadTokenizerFile`] for `path`.
    pub(crate) fn bad_file(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::BadTokenizerFile {
            path: path.to_path_buf(),
            reason: one_line(&reason.into()),
        }
    }
}

/// `text` on one line: line breaks (which a file's own content can bring into a parser's
/// message) written as `\n` and `\r`, since an error is one line.
pub fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}
