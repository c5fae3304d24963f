//! The symbols an n-gram model counts: a tokenizer's ids, plus sentence boundaries.
//!
//! Every line of text is one sentence, read as `<s> w1 … wn </s>`. `</s>` is the tokenizer's
//! own `<eos>` where it has one (the word tokenizer), so the model predicts exactly the tokens
//! of the stream the LSTM is evaluated on; otherwise it is one extra id after the tokenizer's.
//! `<s>` is always an extra id: it is context only and never predicted. Padding (the Keras
//! tokenizer's id 0) is never predicted either.
use lstm_lm_text_prep::{TextTokenizer, TokenizerKind, text_lines};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// The name `<s>` has in ARPA files.
pub const BOS_NAME: &str = "<s>";
/// The name `</s>` has in ARPA files.
pub const EOS_NAME: &str = "</s>";

/// How a tokenizer's ids map to the model's symbols.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbols {
    /// The tokenizer's vocabulary size; ids below it are the tokenizer's.
    pub tokenizer_size: u32,
    /// The id of `<s>`.
    pub bos: u32,
    /// The id of `</s>`.
    pub eos: u32,
    /// Whether `</s>` is the tokenizer's own `<eos>` (true for the word tokenizer).
    pub eos_is_token: bool,
    /// Tokenizer ids that are never predicted (padding).
    pub excluded: Vec<u32>,
}

impl Symbols {
    /// The symbols for `tokenizer`.
    pub fn for_tokenizer(tokenizer: &TextTokenizer) -> Self {
        let tokenizer_size = tokenizer.vocab_size() as u32;
        let (eos, eos_is_token) = match tokenizer.eos_id() {
            Some(eos) => (eos, true),
            None => (tokenizer_size, false),
        };
        let bos = if eos_is_token {
            tokenizer_size
        } else {
            tokenizer_size + 1
        };
        Symbols {
            tokenizer_size,
            bos,
            eos,
            eos_is_token,
            excluded: tokenizer.pad_id().into_iter().collect(),
        }
    }

    /// Number of symbols, `<s>` included (ids are below it).
    pub fn len(&self) -> u32 {
        self.bos + 1
    }

    /// Always false: `<s>` and `</s>` are always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `id` can be predicted: anything but `<s>` and padding.
    pub fn is_predictable(&self, id: u32) -> bool {
        id < self.bos && !self.excluded.contains(&id)
    }

    /// Number of predictable symbols: the size of the uniform distribution the unigrams are
    /// interpolated with.
    pub fn predictable(&self) -> usize {
        (self.bos as usize) - self.excluded.len()
    }

    /// The ids of one line, without `</s>` (the word tokenizer's trailing `<eos>` removed).
    pub fn sentence(&self, tokenizer: &TextTokenizer, line: &str) -> Result<Vec<u32>> {
        let mut ids = tokenizer.encode_line(line)?;
        if self.eos_is_token && ids.last() == Some(&self.eos) {
            ids.pop();
        }
        Ok(ids)
    }

    /// Every line of `text` as a sentence, in order.
    pub fn sentences<'a>(
        &'a self,
        tokenizer: &'a TextTokenizer,
        text: &'a str,
    ) -> impl Iterator<Item = Result<Vec<u32>>> + 'a {
        text_lines(text).map(move |line| self.sentence(tokenizer, line))
    }

    /// The name of a symbol: `<s>`, `</s>` or the tokenizer's token.
    pub fn name(&self, tokenizer: &TextTokenizer, id: u32) -> String {
        if id == self.bos {
            BOS_NAME.to_string()
        } else if id == self.eos {
            EOS_NAME.to_string()
        } else {
            tokenizer.id_to_token(id).unwrap_or_default()
        }
    }

    /// Whether the tokenizer's kind keeps every stream token in the sentences (the word
    /// tokenizer: each line's words then `<eos>`), so per-token figures line up with an LSTM's
    /// stream one for one.
    pub fn aligns_with_stream(kind: TokenizerKind) -> bool {
        kind == TokenizerKind::Word
    }
}
