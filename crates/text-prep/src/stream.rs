//! Fitting and encoding text that arrives in pieces (a file read a megabyte at a time), with
//! the same vocabulary and ids as the whole text in one string.
//!
//! Each kind needs whole units of text: Keras and word tokenizers whole lines, BPE the pieces
//! its pre-tokenizer splits as the whole text ([`cut_point`]), characters anything. [`Recut`]
//! keeps the unfinished end of what came so far and hands out the finished units, so memory
//! holds one piece plus at most one unit (a line, or a BPE chunk), never the text.

use std::sync::{Arc, Mutex, PoisonError};

use crate::bpe::{BpeTokenizer, cut_point};
use crate::chars::CharFitter;
use crate::error::{Result, TextPrepError};
use crate::io::text_lines;
use crate::keras::KerasTokenizer;
use crate::prepare::{PreparedPieces, take_prepared_lines};
use crate::tokenizer::TokenizerKind;
use crate::tokenizer::{DEFAULT_BPE_VOCAB_SIZE, Inner, TextTokenizer, TokenizerConfig};
use crate::word::WordFitter;

/// Where text may be cut into units that a tokenizer kind reads like the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// After a `\n`.
    Lines,
    /// Where the BPE pre-tokenizer splits anyway.
    Bpe,
    /// Anywhere (between characters).
    Anywhere,
}

impl Unit {
    fn of(kind: TokenizerKind) -> Self {
        match kind {
            TokenizerKind::KerasWord | TokenizerKind::Word => Unit::Lines,
            TokenizerKind::Bpe => Unit::Bpe,
            TokenizerKind::Char => Unit::Anywhere,
        }
    }
}

/// Text so far, less the units already handed out.
#[derive(Debug)]
struct Recut {
    unit: Unit,
    pending: String,
}

impl Recut {
    fn new(kind: TokenizerKind) -> Self {
        Self {
            unit: Unit::of(kind),
            pending: String::new(),
        }
    }

    /// Adds `piece`; returns how many bytes at the front of the pending text are whole units.
    fn push(&mut self, piece: &str) -> usize {
        let before = self.pending.len();
        self.pending.push_str(piece);
        match self.unit {
            // The pending text held no `\n` before this piece (whole lines were taken).
            Unit::Lines => piece.rfind('\n').map_or(0, |i| before + i + 1),
            Unit::Anywhere => self.pending.len(),
            Unit::Bpe => self.ready_bpe(),
        }
    }

    /// The next BPE cut in the pending text, 0 if none is known yet.
    fn ready_bpe(&self) -> usize {
        cut_point(&self.pending).unwrap_or(0)
    }

    /// After the caller used `n` ready bytes: drops them and says how many more are ready.
    fn consume(&mut self, n: usize) -> usize {
        self.pending.drain(..n);
        match self.unit {
            Unit::Bpe => self.ready_bpe(),
            Unit::Lines | Unit::Anywhere => 0,
        }
    }
}

/// Encodes text given in pieces, cut anywhere between characters, into the ids that
/// [`TextTokenizer::encode_text`] gives for the whole text; see [`TextTokenizer::stream_encoder`].
#[derive(Debug)]
pub struct StreamEncoder<'a> {
    tokenizer: &'a TextTokenizer,
    recut: Recut,
    buf: String,
    /// With cleaning or segmentation: the unfinished last line, not yet prepared.
    unprepared: String,
}

impl StreamEncoder<'_> {
    /// Appends to `out` the ids of the text given so far that can be known now.
    ///
    /// # Errors
    /// Only BPE can fail, when the `tokenizers` library does.
    pub fn push(&mut self, piece: &str, out: &mut Vec<u32>) -> Result<()> {
        let pre = self.tokenizer.pre;
        if pre.is_off() {
            return self.push_prepared(piece, out);
        }
        self.unprepared.push_str(piece);
        if piece.contains('\n')
            && let Some(lines) =
                take_prepared_lines(&mut self.unprepared, &pre, self.tokenizer.kind())
        {
            self.push_prepared(&lines, out)?;
        }
        Ok(())
    }

    /// [`push`](Self::push) for text already cleaned and segmented.
    fn push_prepared(&mut self, piece: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut ready = self.recut.push(piece);
        while ready > 0 {
            encode_unit(
                self.tokenizer,
                &self.recut.pending[..ready],
                out,
                &mut self.buf,
            )?;
            ready = self.recut.consume(ready);
        }
        Ok(())
    }

    /// Appends the ids of the rest of the text: the text has ended.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn finish(mut self, out: &mut Vec<u32>) -> Result<()> {
        if !self.unprepared.is_empty() {
            let last = std::mem::take(&mut self.unprepared);
            let last = self.tokenizer.prepare(&last).into_owned();
            self.push_prepared(&last, out)?;
        }
        let rest = std::mem::take(&mut self.recut.pending);
        encode_unit(self.tokenizer, &rest, out, &mut self.buf)
    }
}

fn encode_unit(
    tokenizer: &TextTokenizer,
    text: &str,
    out: &mut Vec<u32>,
    buf: &mut String,
) -> Result<()> {
    match &tokenizer.inner {
        Inner::KerasWord(t) => {
            for line in text_lines(text) {
                t.extend_sequence(line, out, buf);
            }
        }
        Inner::Word(t) => t.encode_text_into(text, out),
        Inner::Char(t) => t.encode_into(text, out),
        Inner::Bpe(t) => t.encode_into(text, out)?,
    }
    Ok(())
}

/// The units of a text arriving in pieces, as owned strings; the first error of the pieces
/// ends them and is kept in `error`.
struct Units<I> {
    pieces: I,
    recut: Recut,
    ready: usize,
    finished: bool,
    error: Arc<Mutex<Option<TextPrepError>>>,
}

impl<I: Iterator<Item = Result<String>>> Iterator for Units<I> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if self.ready > 0 {
                let unit = self.recut.pending[..self.ready].to_owned();
                self.ready = self.recut.consume(self.ready);
                return Some(unit);
            }
            if self.finished {
                return None;
            }
            match self.pieces.next() {
                Some(Ok(piece)) => self.ready = self.recut.push(&piece),
                Some(Err(e)) => {
                    *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                    self.finished = true;
                    self.recut.pending.clear();
                }
                None => {
                    self.finished = true;
                    self.ready = self.recut.pending.len();
                }
            }
        }
    }
}

impl TextTokenizer {
    /// Fits a tokenizer on one text given in pieces (cut anywhere between characters), read
    /// once: the same tokenizer as [`fit`](Self::fit) on the text's lines for the Keras and
    /// word kinds and on the whole text for the character and BPE kinds, in the memory of a
    /// piece and a line (or a BPE chunk) besides the vocabulary.
    ///
    /// # Errors
    /// The first error of `pieces`, or as [`fit`](Self::fit).
    pub fn fit_pieces<I>(config: &TokenizerConfig, pieces: I) -> Result<Self>
    where
        I: Iterator<Item = Result<String>> + Send,
    {
        config.validate()?;
        let pre = config.preprocess();
        let error = Arc::new(Mutex::new(None));
        let mut units = Units {
            pieces: PreparedPieces::new(pieces, pre, config.kind),
            recut: Recut::new(config.kind),
            ready: 0,
            finished: false,
            error: Arc::clone(&error),
        };
        let fitted: Result<Self> = match config.kind {
            TokenizerKind::KerasWord => {
                let mut keras = KerasTokenizer::new(config.num_words, config.oov_token.as_deref());
                for unit in units {
                    keras.count_texts(text_lines(&unit).filter(|line| !line.is_empty()));
                }
                keras.renumber();
                Ok(keras.into())
            }
            TokenizerKind::Word => {
                let mut fitter = WordFitter::default();
                for unit in units {
                    text_lines(&unit)
                        .filter(|line| !line.is_empty())
                        .for_each(|line| fitter.add_line(line));
                }
                Ok(fitter.finish().into())
            }
            TokenizerKind::Char => {
                let mut fitter = CharFitter::default();
                for unit in units.by_ref() {
                    fitter.add(&unit);
                }
                Ok(fitter.finish().into())
            }
            TokenizerKind::Bpe => {
                let size = config.vocab_size.unwrap_or(DEFAULT_BPE_VOCAB_SIZE);
                BpeTokenizer::train_pieces(units, size).map(Into::into)
            }
        };
        let failed = error.lock().unwrap_or_else(PoisonError::into_inner).take();
        match failed {
            Some(e) => Err(e),
            None => fitted.map(|t| t.with_preprocess(pre)),
        }
    }

    /// An encoder for one text given in pieces (see [`StreamEncoder`]): the ids of
    /// [`encode_text`](Self::encode_text) on the whole text.
    pub fn stream_encoder(&self) -> StreamEncoder<'_> {
        StreamEncoder {
            tokenizer: self,
            recut: Recut::new(self.kind()),
            buf: String::new(),
            unprepared: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles . \n\
        First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\
        tabs\tand  spaces \t\n\t indented\n\u{3000}ideographic\n🙂 emoji\n\n\nlone\rcr\r\nnul\0x\n\
        \x1b[32m《感遇・其一》\x1b[m\r\n我来到北京清华大学，ＬＳＴＭ模型 生成文本。\n";

    /// `text` cut into pieces of `size` bytes (moved forward to character boundaries).
    fn cut(text: &str, size: usize) -> Vec<String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut end = size.min(rest.len());
            while !rest.is_char_boundary(end) {
                end += 1;
            }
            pieces.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
        pieces
    }

    fn configs() -> Vec<TokenizerConfig> {
        let mut keras_limited = TokenizerConfig::new(TokenizerKind::KerasWord);
        keras_limited.num_words = Some(5);
        keras_limited.oov_token = Some("<OOV>".into());
        let mut bpe = TokenizerConfig::new(TokenizerKind::Bpe);
        bpe.vocab_size = Some(300);
        let cleaned = |kind, segment| TokenizerConfig {
            clean: crate::CleanConfig::STANDARD,
            segment,
            vocab_size: (kind == TokenizerKind::Bpe).then_some(300),
            ..TokenizerConfig::new(kind)
        };
        vec![
            cleaned(TokenizerKind::Word, crate::Segmentation::Jieba),
            cleaned(TokenizerKind::KerasWord, crate::Segmentation::Jieba),
            cleaned(TokenizerKind::Char, crate::Segmentation::None),
            cleaned(TokenizerKind::Bpe, crate::Segmentation::None),
            TokenizerConfig::new(TokenizerKind::KerasWord),
            keras_limited,
            TokenizerConfig::new(TokenizerKind::Word),
            TokenizerConfig::new(TokenizerKind::Char),
            bpe,
        ]
    }

    /// How the training code fitted a tokenizer on a whole text before fitting streamed.
    fn fit_whole(config: &TokenizerConfig, text: &str) -> TextTokenizer {
        match config.kind {
            TokenizerKind::Char | TokenizerKind::Bpe => TextTokenizer::fit(config, &[text]),
            _ => TextTokenizer::fit(config, &text_lines(text).collect::<Vec<_>>()),
        }
        .unwrap()
    }

    fn check_same(text: &str, sizes: &[usize]) {
        for config in configs() {
            let whole = fit_whole(&config, text);
            let expected = whole.encode_text(text).unwrap();
            for &size in sizes {
                let pieces = cut(text, size).into_iter().map(Ok);
                let streamed = TextTokenizer::fit_pieces(&config, pieces).unwrap();
                assert_eq!(
                    streamed.to_json().unwrap(),
                    whole.to_json().unwrap(),
                    "{:?} fitted in pieces of {size}",
                    config.kind
                );
                let mut encoder = whole.stream_encoder();
                let mut ids = Vec::new();
                for piece in cut(text, size) {
                    encoder.push(&piece, &mut ids).unwrap();
                }
                encoder.finish(&mut ids).unwrap();
                assert_eq!(
                    ids, expected,
                    "{:?} encoded in pieces of {size}",
                    config.kind
                );
            }
        }
    }

    #[test]
    fn pieces_smaller_than_a_line_give_the_whole_text_results() {
        check_same(SAMPLE, &[1, 2, 3, 7, 16, 1000]);
        check_same("", &[1, 4]);
        check_same("\n\nno newline at the end", &[1, 5]);
    }

    #[test]
    fn bpe_chunks_cut_across_pieces_give_the_whole_text_results() {
        // Longer than a BPE chunk, so that the cuts inside the pending text are taken.
        let text = SAMPLE.repeat(1200);
        assert!(text.len() > 2 * (1 << 16));
        let mut config = TokenizerConfig::new(TokenizerKind::Bpe);
        config.vocab_size = Some(300);
        let whole = fit_whole(&config, &text);
        for size in [4093, 1 << 16] {
            let pieces = cut(&text, size).into_iter().map(Ok);
            let streamed = TextTokenizer::fit_pieces(&config, pieces).unwrap();
            assert_eq!(streamed.to_json().unwrap(), whole.to_json().unwrap());
            let mut encoder = whole.stream_encoder();
            let mut ids = Vec::new();
            for piece in cut(&text, size) {
                encoder.push(&piece, &mut ids).unwrap();
            }
            encoder.finish(&mut ids).unwrap();
            assert_eq!(ids, whole.encode_text(&text).unwrap(), "pieces of {size}");
        }
    }

    #[test]
    fn a_reading_error_is_the_fitting_error() {
        for config in configs() {
            let pieces = vec![
                Ok("some text\n".to_owned()),
                Err(TextPrepError::NotUtf8 {
                    path: "x.txt".into(),
                    byte: 10,
                }),
            ];
            let err = TextTokenizer::fit_pieces(&config, pieces.into_iter()).unwrap_err();
            assert!(
                matches!(err, TextPrepError::NotUtf8 { byte: 10, .. }),
                "{err}"
            );
        }
    }
}
