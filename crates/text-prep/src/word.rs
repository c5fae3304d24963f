//! The PTB/WikiText-style word tokenizer: whitespace-separated words and `<eos>` after each line.
//!
//! Ids follow the order in which tokens first appear in the fitted text, read line by line with
//! `<eos>` after each line, exactly as pytorch/examples' `word_language_model` (and
//! `shared/bench/torch_lm_train.py`) builds its dictionary. For WikiText-2, whose valid and test
//! words all occur in train, fitting on train therefore gives the reference's ids. If the text
//! never produced `<unk>` or `<eos>`, they are appended in that order, so both always exist.
//! WikiText-2 already writes unknown words as `<unk>`; that token is the unknown-word token here.

use std::collections::HashMap;

use crate::io::text_lines;

/// The token for words not in the vocabulary.
pub const UNK_TOKEN: &str = "<unk>";
/// The token that ends every line.
pub const EOS_TOKEN: &str = "<eos>";

/// A word-level vocabulary with `<unk>` and `<eos>`.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTokenizer {
    tokens: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
    unk: u32,
    eos: u32,
}

impl WordTokenizer {
    /// Builds the vocabulary from whole texts (each is cut into lines with
    /// [`text_lines`](crate::text_lines)), in order of first appearance.
    pub fn fit<I, S>(texts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut fitter = WordFitter::default();
        for text in texts {
            for line in text_lines(text.as_ref()) {
                fitter.add_line(line);
            }
        }
        fitter.finish()
    }

    /// A tokenizer whose token with id `i` is `tokens[i]`.
    ///
    /// # Errors
    /// A description of the problem when a token is repeated or `<unk>` or `<eos>` is missing.
    pub(crate) fn from_tokens(tokens: Vec<String>) -> Result<Self, String> {
        let mut builder = Builder::default();
        for token in &tokens {
            if !builder.add(token) {
                return Err(format!("the token {token:?} appears twice"));
            }
        }
        for needed in [UNK_TOKEN, EOS_TOKEN] {
            if !builder.index.contains_key(needed) {
                return Err(format!("the vocabulary has no {needed:?} token"));
            }
        }
        Ok(builder.finish())
    }

    /// Number of tokens, `<unk>` and `<eos>` included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: `<unk>` and `<eos>` are always present.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `<unk>`.
    pub fn unk_id(&self) -> u32 {
        self.unk
    }

    /// The id of `<eos>`.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// The token with id `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|t| &**t)
    }

    /// The id of `token`.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    /// All tokens, by id.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(|t| &**t)
    }

    /// Appends the ids of the words of `line` and then `<eos>` to `out`. Any whitespace,
    /// a `\n` included, separates words.
    pub fn encode_line_into(&self, line: &str, out: &mut Vec<u32>) {
        out.extend(
            line.split_whitespace()
                .map(|w| self.index.get(w).copied().unwrap_or(self.unk)),
        );
        out.push(self.eos);
    }

    /// Appends the ids of every line of `text` (see [`text_lines`](crate::text_lines)),
    /// each followed by `<eos>`, to `out`.
    pub fn encode_text_into(&self, text: &str, out: &mut Vec<u32>) {
        for line in text_lines(text) {
            self.encode_line_into(line, out);
        }
    }
}

/// Fits a [`WordTokenizer`] one line at a time.
#[derive(Default)]
pub(crate) struct WordFitter {
    builder: Builder,
}

impl WordFitter {
    /// Adds the words of `line`, then `<eos>`.
    pub(crate) fn add_line(&mut self, line: &str) {
        for word in line.split_whitespace() {
            self.builder.add(word);
        }
        self.builder.add(EOS_TOKEN);
    }

    /// The tokenizer, with `<unk>` and `<eos>` added if no line produced them.
    pub(crate) fn finish(mut self) -> WordTokenizer {
        self.builder.add(UNK_TOKEN);
        self.builder.add(EOS_TOKEN);
        self.builder.finish()
    }
}

/// Numbers tokens in order of first appearance.
#[derive(Default)]
struct Builder {
    tokens: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl Builder {
    /// Adds `token` if it is new; says whether it was.
    fn add(&mut self, token: &str) -> bool {
        if self.index.contains_key(token) {
            return false;
        }
        let id = u32::try_from(self.tokens.len()).unwrap_or(u32::MAX);
        self.index.insert(token.into(), id);
        self.tokens.push(token.into());
        true
    }

    fn finish(self) -> WordTokenizer {
        let unk = self.index.get(UNK_TOKEN).copied().unwrap_or_default();
        let eos = self.index.get(EOS_TOKEN).copied().unwrap_or_default();
        WordTokenizer {
            tokens: self.tokens,
            index: self.index,
            unk,
            eos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_vocab(texts: &[&str], expected: &[&str]) {
        let t = WordTokenizer::fit(texts);
        let got: Vec<&str> = t.tokens().collect();
        assert_eq!(got, expected, "vocabulary of {texts:?}");
    }

    fn check_text(fit: &str, text: &str, expected: &[u32]) {
        let t = WordTokenizer::fit([fit]);
        let mut got = Vec::new();
        t.encode_text_into(text, &mut got);
        assert_eq!(got, expected, "ids of {text:?}");
    }

    #[test]
    fn vocabulary_in_order_of_first_appearance() {
        check_vocab(&[], &["<unk>", "<eos>"]);
        check_vocab(&[""], &["<unk>", "<eos>"]);
        check_vocab(&["\n"], &["<eos>", "<unk>"]);
        check_vocab(&["b a b\na c\n"], &["b", "a", "<eos>", "c", "<unk>"]);
        check_vocab(&["x <unk> y"], &["x", "<unk>", "y", "<eos>"]);
        check_vocab(&["a\n", "b\n"], &["a", "<eos>", "b", "<unk>"]);
        check_vocab(&[" = Title = \n"], &["=", "Title", "<eos>", "<unk>"]);
        // Case is kept and any whitespace separates words.
        check_vocab(&["A a\tb\r\n"], &["A", "a", "b", "<eos>", "<unk>"]);
    }

    #[test]
    fn text_ids_end_each_line_with_eos() {
        // vocabulary: a=0 b=1 <eos>=2 c=3 <unk>=4
        let fit = "a b\nc\n";
        check_text(fit, "", &[]);
        check_text(fit, "a", &[0, 2]);
        check_text(fit, "a\n", &[0, 2]);
        check_text(fit, "a\n\n", &[0, 2, 2]);
        check_text(fit, "c  b\nz a", &[3, 1, 2, 4, 0, 2]);
        check_text(fit, "  \n", &[2]);
        check_text(fit, "A", &[4, 2]);
    }

    #[test]
    fn line_ids_treat_newlines_as_spaces() {
        let t = WordTokenizer::fit(["a b\n"]);
        let mut got = Vec::new();
        t.encode_line_into("a\nb", &mut got);
        assert_eq!(got, [0, 1, 2]);
        got.clear();
        t.encode_line_into("", &mut got);
        assert_eq!(got, [2]);
    }

    #[test]
    fn ids_of_special_tokens() {
        let t = WordTokenizer::fit(["x\n"]);
        assert_eq!((t.unk_id(), t.eos_id(), t.len()), (2, 1, 3));
        assert_eq!(t.token(2), Some("<unk>"));
        assert_eq!(t.token(3), None);
        assert_eq!(t.id("x"), Some(0));
    }

    #[test]
    fn from_tokens_checks_the_vocabulary() {
        let ok = WordTokenizer::from_tokens(vec!["<eos>".into(), "a".into(), "<unk>".into()]);
        assert_eq!(ok.map(|t| (t.eos_id(), t.unk_id())), Ok((0, 2)));
        let twice = WordTokenizer::from_tokens(vec!["a".into(), "a".into()]);
        assert_eq!(twice.unwrap_err(), "the token \"a\" appears twice");
        let no_unk = WordTokenizer::from_tokens(vec!["<eos>".into()]);
        assert_eq!(no_unk.unwrap_err(), "the vocabulary has no \"<unk>\" token");
    }
}
