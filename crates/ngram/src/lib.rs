//! Interpolated modified Kneser-Ney n-gram language models (Chen & Goodman 1998, the model
//! KenLM and SRILM build) over lstm-lm's tokenizers, to compare with and mix into the LSTM.
//!
//! - [`NgramCounter`] counts every n-gram of orders 1 to N of `<s> line </s>` sentences in
//!   hash maps of packed integer keys (memory proportional to the distinct n-grams).
//! - [`estimate`] turns the counts into a [`KneserNeyModel`]: discounts D1, D2, D3+ per order,
//!   continuation counts for the lower orders, interpolation, stored in backoff form.
//! - The model is saved as a tagged, versioned binary file ([`MODEL_FORMAT`]) and exported as
//!   ARPA ([`KneserNeyModel::write_arpa`]); [`ArpaModel`] reads ARPA back.
//! - [`NgramRun`] is the run folder: tokenizer plus model, trained from text files.
//!
//! Not to be confused with text-prep's `NgramDataset`, the Keras recipe of n-gram *prefixes*
//! fed to an LSTM. **Architecture invariant:** this crate depends on text-prep only (no burn).
//!
//! Train a trigram model on a few lines and score a sentence with it:
//!
//! ```
//! use lstm_lm_ngram::{NgramRun, NgramTrainConfig};
//!
//! let text = "the keeper lit the lamp\nthe keeper climbed the tower\nthe lamp burned\n";
//! let config = NgramTrainConfig { order: 3, ..NgramTrainConfig::default() };
//! let run = NgramRun::train_on_texts(&[text], &config).unwrap();
//! assert_eq!(run.model.order(), 3);
//!
//! let seen = run.score_line("the keeper lit the lamp").unwrap();
//! let unseen = run.score_line("the lamp lit the keeper").unwrap();
//! // Each predicted token (and the end of the line) with its natural-log probability.
//! assert_eq!(seen.tokens.len(), 6);
//! let total = |s: &lstm_lm_ngram::NgramScore| s.tokens.iter().map(|(_, lp)| lp).sum::<f64>();
//! assert!(total(&seen) > total(&unseen));
//! ```
#![warn(missing_docs)]

mod arpa;
mod count;
mod error;
mod estimate;
mod model;
mod model_file;
mod run;
mod symbols;

pub use arpa::ArpaModel;
pub use count::NgramCounter;
pub use error::{NgramError, Result};
pub use estimate::{DiscountFallback, Estimation, FALLBACK_DISCOUNTS, estimate};
pub use model::{KneserNeyModel, LOG10_ZERO};
pub use model_file::{MODEL_FORMAT, MODEL_FORMAT_VERSION};
pub use run::{
    DEFAULT_ORDER, MODEL_FILE, NgramRun, NgramScore, NgramTrainConfig, TOKENIZER_FILE, is_ngram_run,
};
pub use symbols::{BOS_NAME, EOS_NAME, Symbols};

/// The highest order supported.
pub const MAX_ORDER: usize = 10;
