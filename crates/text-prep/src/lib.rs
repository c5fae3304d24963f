//! Text preparation for lstm-lm: tokenizers, padding, labels and dataset recipes.
//!
//! - Tokenizers: [`KerasTokenizer`] (Keras 2 compatible words), [`WordTokenizer`]
//!   (PTB/WikiText words with `<eos>`), [`CharTokenizer`] and [`BpeTokenizer`] (byte-level
//!   BPE), all behind [`TextTokenizer`], which saves and loads Hugging Face `tokenizer.json`
//!   files and decodes ids as they stream in ([`StreamDecoder`]).
//! - Stages before tokenizing ([`Preprocess`]): cleaning ([`CleanConfig`]: escape codes and
//!   control characters, NFKC, lowercasing, whitespace) for every kind, and Chinese word
//!   segmentation with jieba ([`Segmentation`]) for the word-level kinds; both are recorded in
//!   `tokenizer.json`.
//! - Keras helpers: [`pad_sequences`] and [`to_categorical`].
//! - Dataset recipes: [`NgramDataset`] (every prefix of every line, the classic Keras
//!   text-generation recipe) and [`TbpttBatcher`] (one stream cut into columns and windows,
//!   as pytorch/examples' `word_language_model`), with [`split_by_fraction`] for one-file
//!   corpora.
//!
//! **Architecture invariant:** this crate knows nothing about burn or models; it produces ids.
//!
//! The Keras article's first steps: fit a tokenizer, turn lines into ids, pad them, and save the
//! tokenizer as a `tokenizer.json` that Python's `tokenizers` loads too.
//!
//! ```
//! use lstm_lm_text_prep::{
//!     KerasTokenizer, Padding, TextTokenizer, Truncating, pad_sequences,
//! };
//!
//! let lines = ["The cat sat on the mat.", "The dog sat."];
//! let mut keras = KerasTokenizer::new(None, None);
//! keras.fit_on_texts(lines);
//! // Ids by frequency, from 1 ("the" and "sat" come twice); 0 is padding.
//! let ids = keras.texts_to_sequences(lines);
//! assert_eq!(ids[1], vec![1, 6, 2]);
//! let padded = pad_sequences(&ids, Some(5), Padding::Pre, Truncating::Pre, 0);
//! assert_eq!(padded.row(1), Some(&[0, 0, 1, 6, 2][..]));
//!
//! let tokenizer = TextTokenizer::from(keras);
//! let dir = std::env::temp_dir().join(format!("lstm-lm-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! tokenizer.save(dir.join("tokenizer.json")).unwrap();
//! let again = TextTokenizer::load(dir.join("tokenizer.json")).unwrap();
//! assert_eq!(again.encode_line("the dog").unwrap(), vec![1, 6]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
#![warn(missing_docs)]

pub mod atomic_file;
mod bpe;
mod categorical;
mod chars;
mod clean;
mod decode;
mod error;
mod hf_pipeline;
mod io;
mod keras;
mod ngram;
mod padding;
mod prepare;
mod segment;
mod split;
mod stream;
// The synthetic corpus of known entropy: for tests and `cargo xtask synth` (feature `testing`).
#[cfg(feature = "testing")]
pub mod synthetic;
mod tbptt;
mod tokenizer;
mod tokenizer_file;
mod word;

pub use bpe::{BYTE_SYMBOLS, BpeTokenizer};
pub use categorical::to_categorical;
pub use chars::{CHAR_UNK_TOKEN, CharTokenizer};
pub use clean::CleanConfig;
pub use decode::StreamDecoder;
pub use error::{Result, TextPrepError, one_line};
pub use io::{READ_PIECE_BYTES, TextPieces, read_text_file, text_lines, write_atomic};
pub use keras::{KERAS_FILTERS, KerasTokenizer, text_to_word_sequence};
pub use ngram::{NgramBatch, NgramBatcher, NgramDataset};
pub use padding::{Padded, Padding, Truncating, pad_into, pad_sequences};
pub use prepare::Preprocess;
pub use segment::{Segmentation, is_cjk, is_han, jieba_words};
pub use split::{Splits, split_by_fraction, split_text_by_fraction};
pub use stream::StreamEncoder;
pub use tbptt::{TbpttBatch, TbpttBatcher, TbpttWindows};
pub use tokenizer::{
    DEFAULT_BPE_VOCAB_SIZE, KERAS_PAD_TOKEN, TextTokenizer, TokenizerConfig, TokenizerKind,
};
pub use tokenizer_file::{METADATA_KEY, TOKENIZER_FORMAT_VERSION};
pub use word::{EOS_TOKEN, UNK_TOKEN, WordTokenizer};
