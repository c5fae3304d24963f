//! [`TextTokenizer`], the one tokenizer type the rest of lstm-lm uses, over the four kinds.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bpe::BpeTokenizer;
use crate::chars::{CHAR_UNK_TOKEN, CharTokenizer};
use crate::clean::CleanConfig;
use crate::decode::StreamDecoder;
use crate::error::{Result, TextPrepError};
use crate::io::text_lines;
use crate::keras::KerasTokenizer;
use crate::prepare::Preprocess;
use crate::segment::Segmentation;
use crate::word::WordTokenizer;

/// The vocabulary size a BPE tokenizer gets when none is asked for.
pub const DEFAULT_BPE_VOCAB_SIZE: usize = 8000;

/// The name given to id 0 of a Keras tokenizer, the padding id.
pub const KERAS_PAD_TOKEN: &str = "<pad>";

/// The kinds of tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// Keras 2's word tokenizer with default settings ([`KerasTokenizer`]).
    KerasWord,
    /// PTB/WikiText-style words with `<eos>` per line ([`WordTokenizer`]).
    Word,
    /// Unicode characters ([`CharTokenizer`]).
    Char,
    /// Byte-level BPE ([`BpeTokenizer`]).
    Bpe,
}

impl TokenizerKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [TokenizerKind; 4] = [Self::KerasWord, Self::Word, Self::Char, Self::Bpe];

    /// The name used on the command line and in `tokenizer.json`: `keras-word`, `word`,
    /// `char` or `bpe`.
    pub fn name(self) -> &'static str {
        match self {
            Self::KerasWord => "keras-word",
            Self::Word => "word",
            Self::Char => "char",
            Self::Bpe => "bpe",
        }
    }
}

impl fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TokenizerKind {
    type Err = TextPrepError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| TextPrepError::UnknownKind {
                value: s.to_owned(),
            })
    }
}

/// What to fit: the kind and the options that apply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerConfig {
    /// The kind of tokenizer.
    pub kind: TokenizerKind,
    /// BPE only: the vocabulary size (default [`DEFAULT_BPE_VOCAB_SIZE`], at least 256).
    pub vocab_size: Option<usize>,
    /// Keras only: keep ids below this (Keras' `num_words`; `None` or 0: no limit).
    pub num_words: Option<usize>,
    /// Keras only: the OOV token (Keras' `oov_token`), id 1 when set.
    pub oov_token: Option<String>,
    /// Cleaning before tokenization (every kind). Default: none.
    pub clean: CleanConfig,
    /// Word segmentation (`word` and `keras-word` only). Default: none.
    pub segment: Segmentation,
}

impl TokenizerConfig {
    /// A configuration of `kind` with no options set.
    pub fn new(kind: TokenizerKind) -> Self {
        Self {
            kind,
            vocab_size: None,
            num_words: None,
            oov_token: None,
            clean: CleanConfig::OFF,
            segment: Segmentation::None,
        }
    }

    /// The cleaning and segmentation stages of this configuration.
    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            clean: self.clean,
            segment: self.segment,
        }
    }

    /// Checks that every option set applies to the kind.
    ///
    /// # Errors
    /// [`TextPrepError::OptionNotApplicable`] for the first option that does not apply,
    /// [`TextPrepError::BpeVocabTooSmall`] for a BPE vocabulary below 256.
    pub fn validate(&self) -> Result<()> {
        let kind = self.kind.name();
        check_segmentation(self.kind, self.segment)?;
        if self.kind != TokenizerKind::Bpe && self.vocab_size.is_some() {
            return Err(TextPrepError::OptionNotApplicable {
                option: "vocab_size",
                kind,
                applies_to: "bpe",
            });
        }
        if self.kind != TokenizerKind::KerasWord {
            let keras_option = if self.num_words.is_some() {
                Some("num_words")
            } else if self.oov_token.is_some() {
                Some("oov_token")
            } else {
                None
            };
            if let Some(option) = keras_option {
                return Err(TextPrepError::OptionNotApplicable {
                    option,
                    kind,
                    applies_to: "keras-word",
                });
            }
        }
        match self.vocab_size {
            Some(n) if n < crate::bpe::BYTE_SYMBOLS => {
                Err(TextPrepError::BpeVocabTooSmall { vocab_size: n })
            }
            _ => Ok(()),
        }
    }
}

/// Segmentation applies to the word-level kinds only.
fn check_segmentation(kind: TokenizerKind, segment: Segmentation) -> Result<()> {
    if segment != Segmentation::None
        && !matches!(kind, TokenizerKind::Word | TokenizerKind::KerasWord)
    {
        return Err(TextPrepError::OptionNotApplicable {
            option: "segment",
            kind: kind.name(),
            applies_to: "word or keras-word",
        });
    }
    Ok(())
}

/// A fitted tokenizer of any kind.
///
/// | kind | ids | `pad_id` | `unk_id` | `eos_id` |
/// |---|---|---|---|---|
/// | `keras-word` | 0 padding, words from 1 by count | `Some(0)` | OOV id, if set | `None` |
/// | `word` | first appearance, `<eos>` after each line | `None` | `<unk>` | `<eos>` |
/// | `char` | first appearance, unknown last | `None` | last id | `None` |
/// | `bpe` | 256 byte symbols, then merges | `None` | `None` | `None` |
///
/// Every kind may clean text first, and the word-level kinds may segment it (see
/// [`Preprocess`]); encoding and fitting apply both before the kind's own rules.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    pub(crate) inner: Inner,
    pub(crate) pre: Preprocess,
}

/// The kinds' own tokenizers.
#[derive(Debug, Clone)]
pub(crate) enum Inner {
    KerasWord(KerasTokenizer),
    Word(WordTokenizer),
    Char(CharTokenizer),
    /// Boxed: the Hugging Face tokenizer is much larger than the other kinds.
    Bpe(Box<BpeTokenizer>),
}

impl From<KerasTokenizer> for TextTokenizer {
    fn from(t: KerasTokenizer) -> Self {
        Self {
            inner: Inner::KerasWord(t),
            pre: Preprocess::default(),
        }
    }
}

impl From<WordTokenizer> for TextTokenizer {
    fn from(t: WordTokenizer) -> Self {
        Self {
            inner: Inner::Word(t),
            pre: Preprocess::default(),
        }
    }
}

impl From<CharTokenizer> for TextTokenizer {
    fn from(t: CharTokenizer) -> Self {
        Self {
            inner: Inner::Char(t),
            pre: Preprocess::default(),
        }
    }
}

impl From<BpeTokenizer> for TextTokenizer {
    fn from(t: BpeTokenizer) -> Self {
        Self {
            inner: Inner::Bpe(Box::new(t)),
            pre: Preprocess::default(),
        }
    }
}

impl TextTokenizer {
    /// Fits a tokenizer of `config.kind` on whole texts (typically the contents of files).
    ///
    /// Keras sees each line of each text as one of its texts (see
    /// [`text_lines`](crate::text_lines)); the word tokenizer reads them line by line with
    /// `<eos>` after each; the character tokenizer reads every character; BPE trains on them.
    ///
    /// # Errors
    /// An invalid `config` (see [`TokenizerConfig::validate`]) or a failed BPE training.
    pub fn fit<S: AsRef<str>>(config: &TokenizerConfig, texts: &[S]) -> Result<Self> {
        config.validate()?;
        let pre = config.preprocess();
        let prepared: Vec<Cow<'_, str>> = texts
            .iter()
            .map(|t| pre.prepare(config.kind, t.as_ref()))
            .collect();
        let texts = prepared.iter().map(AsRef::as_ref);
        let fitted: Self = match config.kind {
            TokenizerKind::KerasWord => {
                let mut keras = KerasTokenizer::new(config.num_words, config.oov_token.as_deref());
                keras.fit_on_texts(texts.flat_map(text_lines));
                keras.into()
            }
            TokenizerKind::Word => WordTokenizer::fit(texts).into(),
            TokenizerKind::Char => CharTokenizer::fit(texts).into(),
            TokenizerKind::Bpe => {
                let size = config.vocab_size.unwrap_or(DEFAULT_BPE_VOCAB_SIZE);
                BpeTokenizer::train(texts, size)?.into()
            }
        };
        Ok(fitted.with_preprocess(pre))
    }

    /// This tokenizer with other cleaning and segmentation stages (the vocabulary is kept as
    /// it is). Used when a tokenizer is fitted or loaded; segmentation is ignored by the kinds
    /// it does not apply to (see [`TokenizerConfig::validate`]).
    pub(crate) fn with_preprocess(mut self, pre: Preprocess) -> Self {
        self.pre = pre;
        if check_segmentation(self.kind(), pre.segment).is_err() {
            self.pre.segment = Segmentation::None;
        }
        self
    }

    /// The cleaning and segmentation this tokenizer applies before its own rules.
    pub fn preprocess(&self) -> Preprocess {
        self.pre
    }

    /// `text` as this tokenizer's own rules read it: cleaned and segmented (see
    /// [`Preprocess`]); borrowed when the tokenizer does neither. Segmented Chinese words are
    /// separated by spaces.
    pub fn prepare<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.pre.prepare(self.kind(), text)
    }

    /// The kind of tokenizer.
    pub fn kind(&self) -> TokenizerKind {
        match &self.inner {
            Inner::KerasWord(_) => TokenizerKind::KerasWord,
            Inner::Word(_) => TokenizerKind::Word,
            Inner::Char(_) => TokenizerKind::Char,
            Inner::Bpe(_) => TokenizerKind::Bpe,
        }
    }

    /// The number of ids a model's embedding and output layer need: every id the encoder can
    /// produce is below it (Keras' padding id 0 included).
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::KerasWord(t) => t.vocab_size(),
            Inner::Word(t) => t.len(),
            Inner::Char(t) => t.vocab_size(),
            Inner::Bpe(t) => t.vocab_size(),
        }
    }

    /// The padding id: 0 for Keras, `None` for the other kinds (0 is a real token there).
    pub fn pad_id(&self) -> Option<u32> {
        matches!(self.inner, Inner::KerasWord(_)).then_some(0)
    }

    /// The id unknown input maps to: Keras' OOV id (if an OOV token is set), `<unk>` for
    /// words, the reserved id for characters, none for byte-level BPE.
    pub fn unk_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::KerasWord(t) => t.oov_id(),
            Inner::Word(t) => Some(t.unk_id()),
            Inner::Char(t) => Some(t.unk_id()),
            Inner::Bpe(_) => None,
        }
    }

    /// The end-of-line id: `<eos>` for the word kind, `None` for the others.
    pub fn eos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Word(t) => Some(t.eos_id()),
            _ => None,
        }
    }

    /// The token of `id`: a word, `<pad>` for Keras' id 0, a one-character string, `<unk>`
    /// for the character tokenizer's unknown id, or a byte-level BPE symbol string.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.inner {
            Inner::KerasWord(_) if id == 0 => Some(KERAS_PAD_TOKEN.to_owned()),
            Inner::KerasWord(t) => t.index_word(id).map(str::to_owned),
            Inner::Word(t) => t.token(id).map(str::to_owned),
            Inner::Char(t) if id == t.unk_id() => Some(CHAR_UNK_TOKEN.to_owned()),
            Inner::Char(t) => t.char(id).map(String::from),
            Inner::Bpe(t) => t.hf().id_to_token(id),
        }
    }

    /// The id of a token, the inverse of [`id_to_token`](Self::id_to_token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::KerasWord(t) => t
                .word_id(token)
                .or_else(|| (token == KERAS_PAD_TOKEN).then_some(0)),
            Inner::Word(t) => t.id(token),
            Inner::Char(t) if token == CHAR_UNK_TOKEN => Some(t.unk_id()),
            Inner::Char(t) => {
                let mut chars = token.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => t.get(c),
                    _ => None,
                }
            }
            Inner::Bpe(t) => t.hf().token_to_id(token),
        }
    }

    /// The ids of one line of text. Keras: `texts_to_sequences([line])[0]`; word: its words
    /// then `<eos>` (any whitespace separates words); char and BPE: the same as
    /// [`encode_text`](Self::encode_text).
    ///
    /// # Errors
    /// Only BPE can fail, when the `tokenizers` library does.
    pub fn encode_line(&self, line: &str) -> Result<Vec<u32>> {
        let line = self.prepare(line);
        let line = line.as_ref();
        let mut out = Vec::new();
        match &self.inner {
            Inner::KerasWord(t) => t.extend_sequence(line, &mut out, &mut String::new()),
            Inner::Word(t) => t.encode_line_into(line, &mut out),
            Inner::Char(t) => t.encode_into(line, &mut out),
            Inner::Bpe(t) => t.encode_into(line, &mut out)?,
        }
        Ok(out)
    }

    /// A whole text as one stream of ids. Keras: the sequences of its lines, concatenated;
    /// word: each line's words followed by `<eos>`; char: every character, `\n` included;
    /// BPE: the text encoded as a whole.
    ///
    /// # Errors
    /// Only BPE can fail, when the `tokenizers` library does.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        let text = self.prepare(text);
        let text = text.as_ref();
        let mut out = Vec::with_capacity(text.len() / 5);
        match &self.inner {
            Inner::KerasWord(t) => {
                let mut buf = String::new();
                for line in text_lines(text) {
                    t.extend_sequence(line, &mut out, &mut buf);
                }
            }
            Inner::Word(t) => t.encode_text_into(text, &mut out),
            Inner::Char(t) => t.encode_into(text, &mut out),
            Inner::Bpe(t) => t.encode_into(text, &mut out)?,
        }
        Ok(out)
    }

    /// Text for `ids` that reads naturally; see [`StreamDecoder`] for the rules. Ids with no
    /// token are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut decoder = self.stream_decoder();
        let mut text: String = ids.iter().map(|&id| decoder.push(id)).collect();
        text.push_str(&decoder.finish());
        text
    }

    /// A decoder for ids that arrive one at a time.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// The Keras tokenizer, if this is one.
    pub fn as_keras(&self) -> Option<&KerasTokenizer> {
        match &self.inner {
            Inner::KerasWord(t) => Some(t),
            _ => None,
        }
    }

    /// The word tokenizer, if this is one.
    pub fn as_word(&self) -> Option<&WordTokenizer> {
        match &self.inner {
            Inner::Word(t) => Some(t),
            _ => None,
        }
    }

    /// The character tokenizer, if this is one.
    pub fn as_char(&self) -> Option<&CharTokenizer> {
        match &self.inner {
            Inner::Char(t) => Some(t),
            _ => None,
        }
    }

    /// The BPE tokenizer, if this is one.
    pub fn as_bpe(&self) -> Option<&BpeTokenizer> {
        match &self.inner {
            Inner::Bpe(t) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(kind: TokenizerKind, texts: &[&str]) -> TextTokenizer {
        TextTokenizer::fit(&TokenizerConfig::new(kind), texts).unwrap()
    }

    fn check_config(config: TokenizerConfig, expected: Option<&str>) {
        let got = config.validate().err().map(|e| e.to_string());
        assert_eq!(got.as_deref(), expected, "{config:?}");
    }

    #[test]
    fn kinds_parse_and_print() {
        for kind in TokenizerKind::ALL {
            assert_eq!(kind.name().parse::<TokenizerKind>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
        let err = "keras".parse::<TokenizerKind>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown tokenizer kind \"keras\"; choose keras-word, word, char or bpe"
        );
    }

    #[test]
    fn options_must_apply_to_the_kind() {
        use TokenizerKind::*;
        let with = |kind, vocab_size, num_words, oov: Option<&str>| TokenizerConfig {
            kind,
            vocab_size,
            num_words,
            oov_token: oov.map(str::to_owned),
            ..TokenizerConfig::new(kind)
        };
        check_config(with(KerasWord, None, Some(10), Some("<OOV>")), None);
        check_config(with(Bpe, Some(300), None, None), None);
        check_config(with(Word, None, None, None), None);
        check_config(
            with(KerasWord, Some(300), None, None),
            Some(
                "vocab_size does not apply to the keras-word tokenizer; leave it out or choose bpe",
            ),
        );
        check_config(
            with(Char, None, Some(5), None),
            Some(
                "num_words does not apply to the char tokenizer; leave it out or choose keras-word",
            ),
        );
        check_config(
            with(Bpe, None, None, Some("x")),
            Some(
                "oov_token does not apply to the bpe tokenizer; leave it out or choose keras-word",
            ),
        );
        check_config(
            with(Bpe, Some(100), None, None),
            Some(
                "bpe vocabulary size 100 is smaller than the 256 byte symbols; ask for 256 or more",
            ),
        );
    }

    #[test]
    fn special_ids_per_kind() {
        let keras = fit(TokenizerKind::KerasWord, &["b a a\n"]);
        assert_eq!(
            (keras.pad_id(), keras.unk_id(), keras.eos_id()),
            (Some(0), None, None)
        );
        assert_eq!(keras.vocab_size(), 3);
        let word = fit(TokenizerKind::Word, &["b a a\n"]);
        assert_eq!(
            (word.pad_id(), word.unk_id(), word.eos_id()),
            (None, Some(3), Some(2))
        );
        assert_eq!(word.vocab_size(), 4);
        let chars = fit(TokenizerKind::Char, &["ab"]);
        assert_eq!(
            (chars.pad_id(), chars.unk_id(), chars.eos_id()),
            (None, Some(2), None)
        );
        assert_eq!(chars.vocab_size(), 3);
    }

    #[test]
    fn tokens_and_ids_are_inverse() {
        let keras = fit(TokenizerKind::KerasWord, &["b a a\n"]);
        assert_eq!(keras.id_to_token(0).as_deref(), Some("<pad>"));
        assert_eq!(keras.id_to_token(1).as_deref(), Some("a"));
        assert_eq!(keras.id_to_token(3), None);
        assert_eq!(keras.token_to_id("b"), Some(2));
        assert_eq!(keras.token_to_id("<pad>"), Some(0));
        let chars = fit(TokenizerKind::Char, &["a\n"]);
        assert_eq!(chars.id_to_token(1).as_deref(), Some("\n"));
        assert_eq!(chars.id_to_token(2).as_deref(), Some("<unk>"));
        assert_eq!(chars.token_to_id("\n"), Some(1));
        assert_eq!(chars.token_to_id("<unk>"), Some(2));
        assert_eq!(chars.token_to_id("z"), None);
        assert_eq!(chars.token_to_id("ab"), None);
    }

    #[test]
    fn keras_fits_one_text_per_line() {
        let keras = fit(TokenizerKind::KerasWord, &["x y\nx\n", "y\ny"]);
        let t = keras.as_keras().unwrap();
        assert_eq!(t.document_count(), 4);
        assert_eq!(t.word_index(), [("y", 1), ("x", 2)]);
        assert_eq!(keras.encode_text("y x\nx\n").unwrap(), [1, 2, 2]);
        assert_eq!(keras.encode_line("Y, z!").unwrap(), [1]);
    }

    #[test]
    fn characters_of_chinese_text_and_emoji_are_single_tokens() {
        let text = "春眠不觉晓，处处闻啼鸟。「你好！」（ＡＢ）🙂👍🏽😀\n";
        let chars = fit(TokenizerKind::Char, &[text]);
        let ids = chars.encode_text(text).unwrap();
        assert_eq!(ids.len(), text.chars().count());
        let tokens: Vec<String> = ids.iter().map(|&i| chars.id_to_token(i).unwrap()).collect();
        assert_eq!(tokens[..6], ["春", "眠", "不", "觉", "晓", "，"]);
        for token in ["。", "「", "！", "（", "Ａ", "🙂", "👍", "🏽", "😀"] {
            assert!(chars.token_to_id(token).is_some(), "{token}");
        }
        assert_eq!(chars.decode(&ids), text);
        // NFKC cleaning turns the full-width forms into ASCII before they become tokens.
        let config = TokenizerConfig {
            clean: CleanConfig::STANDARD,
            ..TokenizerConfig::new(TokenizerKind::Char)
        };
        let cleaned = TextTokenizer::fit(&config, &[text]).unwrap();
        assert!(cleaned.token_to_id("Ａ").is_none() && cleaned.token_to_id("A").is_some());
        assert_eq!(
            cleaned.decode(&cleaned.encode_text(text).unwrap()),
            "春眠不觉晓,处处闻啼鸟。「你好!」(AB)🙂👍🏽😀\n"
        );
    }

    #[test]
    fn segmentation_applies_to_word_kinds_only() {
        for kind in [TokenizerKind::Char, TokenizerKind::Bpe] {
            let config = TokenizerConfig {
                segment: Segmentation::Jieba,
                ..TokenizerConfig::new(kind)
            };
            assert_eq!(
                config.validate().unwrap_err().to_string(),
                format!(
                    "segment does not apply to the {kind} tokenizer; leave it out or choose word or keras-word"
                )
            );
        }
        let keras = TextTokenizer::fit(
            &TokenizerConfig {
                segment: Segmentation::Jieba,
                ..TokenizerConfig::new(TokenizerKind::KerasWord)
            },
            &["我来到北京清华大学, Hello world.\n我来到北京"],
        )
        .unwrap();
        assert_eq!(
            keras.as_keras().unwrap().word_index()[..2],
            [("我", 1), ("来到", 2)]
        );
        assert_eq!(keras.encode_line("hello 北京").unwrap().len(), 2);
        assert_eq!(keras.prepare("北京,清华大学"), "北京,清华大学");
        assert_eq!(keras.prepare("北京大学生"), "北京 大学生");
    }

    #[test]
    fn line_and_text_encodings() {
        let word = fit(TokenizerKind::Word, &["a b\nc\n"]);
        assert_eq!(word.encode_line("a c").unwrap(), [0, 3, 2]);
        assert_eq!(word.encode_text("a\nc\n").unwrap(), [0, 2, 3, 2]);
        let chars = fit(TokenizerKind::Char, &["ab\n"]);
        assert_eq!(chars.encode_line("ba").unwrap(), [1, 0]);
        assert_eq!(chars.encode_text("a\nb\n").unwrap(), [0, 2, 1, 2]);
    }
}
