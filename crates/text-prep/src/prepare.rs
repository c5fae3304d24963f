//! What a tokenizer does to text before its own rules read it: cleaning, then segmentation.
//!
//! Both work one line at a time and keep every `\n` in place, so preparing a text equals
//! preparing its lines one by one, and text given in pieces can be prepared a line at a time
//! ([`PreparedPieces`]).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::clean::CleanConfig;
use crate::error::Result;
use crate::keras::is_separator;
use crate::segment::Segmentation;
use crate::tokenizer::TokenizerKind;

/// The stages before tokenization: which cleaning steps run and how words are segmented.
/// Default: neither (text is read as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// The cleaning steps.
    pub clean: CleanConfig,
    /// The word segmentation (word-level kinds only).
    pub segment: Segmentation,
}

impl Preprocess {
    /// Whether text is read as it is.
    pub fn is_off(&self) -> bool {
        self.clean.is_off() && self.segment == Segmentation::None
    }

    /// `text` cleaned and segmented for a tokenizer of `kind`; borrowed when nothing is to be
    /// done.
    pub fn prepare<'a>(&self, kind: TokenizerKind, text: &'a str) -> Cow<'a, str> {
        let cleaned = self.clean.clean(text);
        if self.segment == Segmentation::None {
            return cleaned;
        }
        let separator: fn(char) -> bool = match kind {
            TokenizerKind::KerasWord => is_separator,
            _ => char::is_whitespace,
        };
        let mut out = String::with_capacity(cleaned.len() + cleaned.len() / 2);
        for (i, line) in cleaned.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            self.segment.segment_line_into(line, separator, &mut out);
        }
        Cow::Owned(out)
    }
}

/// Pieces of a text (cut anywhere between characters) turned into prepared whole lines: the
/// concatenation of what it yields is [`Preprocess::prepare`] of the whole text. Holds at most
/// one line besides the current piece. Without cleaning and segmentation, the pieces pass
/// through as they are.
pub(crate) struct PreparedPieces<I> {
    pieces: I,
    pre: Preprocess,
    kind: TokenizerKind,
    pending: String,
    done: bool,
}

impl<I> PreparedPieces<I> {
    pub(crate) fn new(pieces: I, pre: Preprocess, kind: TokenizerKind) -> Self {
        Self {
            pieces,
            pre,
            kind,
            pending: String::new(),
            done: false,
        }
    }
}

/// Splits off the whole lines at the front of `pending` (through its last `\n`), prepared.
pub(crate) fn take_prepared_lines(
    pending: &mut String,
    pre: &Preprocess,
    kind: TokenizerKind,
) -> Option<String> {
    let end = pending.rfind('\n')? + 1;
    let lines: String = pending.drain(..end).collect();
    Some(pre.prepare(kind, &lines).into_owned())
}

impl<I: Iterator<Item = Result<String>>> Iterator for PreparedPieces<I> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if self.pre.is_off() {
            return self.pieces.next();
        }
        while !self.done {
            match self.pieces.next() {
                Some(Ok(piece)) => {
                    self.pending.push_str(&piece);
                    if piece.contains('\n')
                        && let Some(lines) =
                            take_prepared_lines(&mut self.pending, &self.pre, self.kind)
                    {
                        return Some(Ok(lines));
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    if !self.pending.is_empty() {
                        let rest = std::mem::take(&mut self.pending);
                        return Some(Ok(self.pre.prepare(self.kind, &rest).into_owned()));
                    }
                }
            }
        }
        None
    }
}
