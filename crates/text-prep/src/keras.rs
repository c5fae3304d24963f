//! A word tokenizer that behaves exactly like Keras 2's `keras_preprocessing.text.Tokenizer`
//! with its default settings.
//!
//! Text is lowercased (Python's `str.lower`, which Rust's `str::to_lowercase` matches, final
//! sigma included), every character of [`KERAS_FILTERS`] becomes a space, the result is split on
//! single spaces and empty pieces are dropped. Only the space separates words: `\r`, a
//! no-break space or any other whitespace stays inside a word.
//!
//! Ids start at 1 (0 is padding). Words are numbered by descending count, ties in the order
//! the words were first seen. An OOV token, when set, is numbered 1 and shifts every word by
//! one. With `num_words`, sequences keep only ids below `num_words`.

use std::collections::HashMap;

/// The characters Keras' default `filters` turn into spaces:
/// ``!"#$%&()*+,-./:;<=>?@[\]^_`{|}~`` plus tab and newline (not the apostrophe).
pub const KERAS_FILTERS: &str = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n";

/// Whether `c` separates words: a space or one of [`KERAS_FILTERS`].
pub(crate) fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '!'
            | '"'
            | '#'
            | '$'
            | '%'
            | '&'
            | '('
            | ')'
            | '*'
            | '+'
            | ','
            | '-'
            | '.'
            | '/'
            | ':'
            | ';'
            | '<'
            | '='
            | '>'
            | '?'
            | '@'
            | '['
            | '\\'
            | ']'
            | '^'
            | '_'
            | '`'
            | '{'
            | '|'
            | '}'
            | '~'
            | '\t'
            | '\n'
    )
}

/// Lowercases `text` into `buf` (reusing its allocation for ASCII text).
fn lower_into(text: &str, buf: &mut String) {
    buf.clear();
    if text.is_ascii() {
        buf.push_str(text);
        buf.make_ascii_lowercase();
    } else {
        buf.push_str(&text.to_lowercase());
    }
}

/// Calls `f` with each word of `text`, as Keras' `text_to_word_sequence` cuts it.
/// `buf` is scratch space, reused between calls to avoid allocating.
fn for_each_word(text: &str, buf: &mut String, mut f: impl FnMut(&str)) {
    lower_into(text, buf);
    for word in buf.split(is_separator) {
        if !word.is_empty() {
            f(word);
        }
    }
}

/// The words of `text` as Keras' `text_to_word_sequence` returns them with default arguments.
pub fn text_to_word_sequence(text: &str) -> Vec<String> {
    let mut buf = String::new();
    let mut words = Vec::new();
    for_each_word(text, &mut buf, |w| words.push(w.to_owned()));
    words
}

/// Keras 2's `Tokenizer` with default filters, lowercasing and split character.
///
/// Each text given to [`fit_on_texts`](Self::fit_on_texts) and
/// [`texts_to_sequences`](Self::texts_to_sequences) is one Keras "text" (the CLI uses one line
/// per text). Fitting again adds to the counts and renumbers, as in Keras.
///
/// One documented difference: before any fit, Keras has an empty `word_index`, so an OOV token
/// has no id yet; here it already has id 1.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasTokenizer {
    num_words: Option<usize>,
    oov_token: Option<String>,
    document_count: u64,
    /// Word counts in order of first appearance (Python's insertion-ordered dict).
    counts: Vec<(Box<str>, u64)>,
    /// Position of each word in `counts`.
    count_slot: HashMap<Box<str>, usize>,
    word_index: HashMap<Box<str>, u32>,
    /// `index_word[id]`: the word with that id, `None` for 0 and for unused ids.
    index_word: Vec<Option<Box<str>>>,
}

impl KerasTokenizer {
    /// A tokenizer that has seen no text.
    ///
    /// `num_words` of `Some(0)` means no limit, as `num_words=0` does in Keras (it tests the
    /// value's truth). `oov_token` is used as given: Keras neither lowercases nor filters it.
    pub fn new(num_words: Option<usize>, oov_token: Option<&str>) -> Self {
        let mut tokenizer = Self {
            num_words: num_words.filter(|&n| n > 0),
            oov_token: oov_token.map(str::to_owned),
            document_count: 0,
            counts: Vec::new(),
            count_slot: HashMap::new(),
            word_index: HashMap::new(),
            index_word: Vec::new(),
        };
        tokenizer.renumber();
        tokenizer
    }

    /// Rebuilds a tokenizer from saved state: `word_counts` must be in order of first
    /// appearance, as [`word_counts`](Self::word_counts) yields them.
    pub fn from_counts(
        num_words: Option<usize>,
        oov_token: Option<&str>,
        document_count: u64,
        word_counts: impl IntoIterator<Item = (String, u64)>,
    ) -> Self {
        let mut tokenizer = Self::new(num_words, oov_token);
        tokenizer.document_count = document_count;
        for (word, count) in word_counts {
            let word: Box<str> = word.into();
            match tokenizer.count_slot.get(&word) {
                Some(&slot) => tokenizer.counts[slot].1 += count,
                None => {
                    tokenizer
                        .count_slot
                        .insert(word.clone(), tokenizer.counts.len());
                    tokenizer.counts.push((word, count));
                }
            }
        }
        tokenizer.renumber();
        tokenizer
    }

    /// Counts the words of `texts` and renumbers the vocabulary (`Tokenizer.fit_on_texts`).
    pub fn fit_on_texts<I, S>(&mut self, texts: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.count_texts(texts);
        self.renumber();
    }

    /// Counts the words of `texts` without renumbering; [`renumber`](Self::renumber) must
    /// follow before the tokenizer is used (fitting in many calls renumbers once).
    pub(crate) fn count_texts<I, S>(&mut self, texts: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut buf = String::new();
        for text in texts {
            self.document_count += 1;
            let counts = &mut self.counts;
            let slots = &mut self.count_slot;
            for_each_word(text.as_ref(), &mut buf, |word| match slots.get(word) {
                Some(&slot) => counts[slot].1 += 1,
                None => {
                    slots.insert(word.into(), counts.len());
                    counts.push((word.into(), 1));
                }
            });
        }
    }

    /// Numbers the words as Keras does: stable sort by descending count, OOV token first.
    pub(crate) fn renumber(&mut self) {
        let mut order: Vec<usize> = (0..self.counts.len()).collect();
        // `sort_by` is stable, like Python's `list.sort(reverse=True)`: ties keep their order.
        order.sort_by(|&a, &b| self.counts[b].1.cmp(&self.counts[a].1));
        let sorted = self
            .oov_token
            .as_deref()
            .into_iter()
            .chain(order.iter().map(|&i| &*self.counts[i].0));
        self.word_index.clear();
        for (position, word) in sorted.enumerate() {
            // Like `dict(zip(...))`: a word seen twice (an OOV token that is also a word of
            // the corpus) keeps its later id, and the earlier id is left unused.
            self.word_index.insert(word.into(), id_from(position + 1));
        }
        let max_id = self.word_index.values().copied().max().unwrap_or(0);
        self.index_word = vec![None; max_id as usize + 1];
        for (word, &id) in &self.word_index {
            self.index_word[id as usize] = Some(word.clone());
        }
    }

    /// The `num_words` limit (`None`: all words are kept).
    pub fn num_words(&self) -> Option<usize> {
        self.num_words
    }

    /// The OOV token, if one was set.
    pub fn oov_token(&self) -> Option<&str> {
        self.oov_token.as_deref()
    }

    /// Number of texts fitted so far (`Tokenizer.document_count`).
    pub fn document_count(&self) -> u64 {
        self.document_count
    }

    /// Every word and its count, in order of first appearance (`Tokenizer.word_counts`).
    pub fn word_counts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(w, c)| (&**w, *c))
    }

    /// Every entry of `Tokenizer.word_index`, sorted by id. The OOV token is included.
    pub fn word_index(&self) -> Vec<(&str, u32)> {
        self.index_word
            .iter()
            .enumerate()
            .filter_map(|(id, w)| w.as_deref().map(|w| (w, id_from(id))))
            .collect()
    }

    /// The id of `word` in `word_index`, ignoring `num_words`.
    pub fn word_id(&self, word: &str) -> Option<u32> {
        self.word_index.get(word).copied()
    }

    /// The word with id `id` (`Tokenizer.index_word`), ignoring `num_words`.
    pub fn index_word(&self, id: u32) -> Option<&str> {
        self.index_word.get(id as usize)?.as_deref()
    }

    /// The id that unknown and cut-off words get, when an OOV token is set.
    pub fn oov_id(&self) -> Option<u32> {
        self.word_id(self.oov_token.as_deref()?)
    }

    /// One more than the largest id [`texts_to_sequences`](Self::texts_to_sequences) can
    /// produce, counting 0 for padding: the size a model's embedding and output need.
    pub fn vocab_size(&self) -> usize {
        let all = self.index_word.len().max(1);
        let kept = match self.num_words {
            Some(n) => all.min(n),
            None => all,
        };
        let oov = self.oov_id().map_or(0, |id| id as usize + 1);
        kept.max(oov)
    }

    /// Appends the ids of `text` to `out` (one entry of `Tokenizer.texts_to_sequences`).
    /// `buf` is scratch space.
    pub(crate) fn extend_sequence(&self, text: &str, out: &mut Vec<u32>, buf: &mut String) {
        let oov = self.oov_id();
        for_each_word(text, buf, |word| {
            let id = match self.word_index.get(word) {
                Some(&id) if self.num_words.is_some_and(|n| id as usize >= n) => oov,
                Some(&id) => Some(id),
                None => oov,
            };
            out.extend(id);
        });
    }

    /// The ids of one text, as `texts_to_sequences([text])[0]`.
    pub fn text_to_sequence(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.extend_sequence(text, &mut out, &mut String::new());
        out
    }

    /// `Tokenizer.texts_to_sequences`: unknown words and words whose id is not below
    /// `num_words` become the OOV id when an OOV token is set, and are dropped otherwise.
    pub fn texts_to_sequences<I, S>(&self, texts: I) -> Vec<Vec<u32>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut buf = String::new();
        texts
            .into_iter()
            .map(|text| {
                let mut out = Vec::new();
                self.extend_sequence(text.as_ref(), &mut out, &mut buf);
                out
            })
            .collect()
    }

    /// The word Keras' `sequences_to_texts` writes for `id`, or `None` when it writes nothing.
    ///
    /// Ids not below `num_words`, and ids with no word (including 0), become the OOV token
    /// when one is set.
    pub fn sequence_word(&self, id: u32) -> Option<&str> {
        match self.index_word(id) {
            Some(word) if self.num_words.is_none_or(|n| (id as usize) < n) => Some(word),
            _ => self.oov_token(),
        }
    }

    /// `Tokenizer.sequences_to_texts`: each sequence's words joined by single spaces.
    pub fn sequences_to_texts<S: AsRef<[u32]>>(&self, sequences: &[S]) -> Vec<String> {
        sequences
            .iter()
            .map(|seq| {
                let words: Vec<&str> = seq
                    .as_ref()
                    .iter()
                    .filter_map(|&id| self.sequence_word(id))
                    .collect();
                words.join(" ")
            })
            .collect()
    }
}

/// Converts a vocabulary position to an id. Vocabularies beyond `u32::MAX` entries cannot be
/// built from text that fits in memory, so saturating is only a formality.
fn id_from(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fitted(texts: &[&str], num_words: Option<usize>, oov: Option<&str>) -> KerasTokenizer {
        let mut t = KerasTokenizer::new(num_words, oov);
        t.fit_on_texts(texts);
        t
    }

    fn check_words(text: &str, expected: &[&str]) {
        assert_eq!(text_to_word_sequence(text), expected, "words of {text:?}");
    }

    fn check_index(texts: &[&str], oov: Option<&str>, expected: &[(&str, u32)]) {
        let t = fitted(texts, None, oov);
        assert_eq!(t.word_index(), expected, "word_index of {texts:?}");
    }

    fn check_seqs(
        fit: &[&str],
        num_words: Option<usize>,
        oov: Option<&str>,
        texts: &[&str],
        expected: &[&[u32]],
    ) {
        let t = fitted(fit, num_words, oov);
        let got = t.texts_to_sequences(texts);
        let expected: Vec<Vec<u32>> = expected.iter().map(|s| s.to_vec()).collect();
        assert_eq!(
            got, expected,
            "num_words={num_words:?} oov={oov:?} texts={texts:?}"
        );
    }

    #[test]
    fn word_sequence_follows_keras_defaults() {
        check_words("", &[]);
        check_words("Hello, World!", &["hello", "world"]);
        check_words("a  b", &["a", "b"]);
        check_words("  leading and trailing  ", &["leading", "and", "trailing"]);
        check_words("don't stop", &["don't", "stop"]);
        check_words("e-mail a.b/c", &["e", "mail", "a", "b", "c"]);
        check_words("tab\there\nnewline", &["tab", "here", "newline"]);
        // `\r` and other whitespace are not separators in Keras.
        check_words("line\r", &["line\r"]);
        check_words("a\rb", &["a\rb"]);
        check_words("no\u{a0}break", &["no\u{a0}break"]);
        check_words("x\u{b}y", &["x\u{b}y"]);
        check_words("ÉCOLE Straße", &["école", "straße"]);
        check_words("<unk> = Valkyria =", &["unk", "valkyria"]);
        check_words("@-@ 1 @,@ 000", &["1", "000"]);
        check_words("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~", &[]);
        check_words("'quoted'", &["'quoted'"]);
        // Python's str.lower() handles the final sigma; so does Rust's to_lowercase.
        check_words("ΟΔΟΣ ΟΔΟΣ.", &["οδος", "οδος"]);
    }

    #[test]
    fn word_index_orders_by_count_then_first_appearance() {
        check_index(&[], None, &[]);
        check_index(&["b a"], None, &[("b", 1), ("a", 2)]);
        check_index(&["a b b"], None, &[("b", 1), ("a", 2)]);
        check_index(&["c b a", "a b"], None, &[("b", 1), ("a", 2), ("c", 3)]);
        check_index(
            &["The cat. the DOG", "dog cat bird"],
            None,
            &[("the", 1), ("cat", 2), ("dog", 3), ("bird", 4)],
        );
        check_index(&["", "   ", "x"], None, &[("x", 1)]);
    }

    #[test]
    fn oov_token_takes_id_one() {
        check_index(
            &["b a a"],
            Some("<OOV>"),
            &[("<OOV>", 1), ("a", 2), ("b", 3)],
        );
        check_index(&[], Some("<OOV>"), &[("<OOV>", 1)]);
        // An OOV token that is also a word keeps the later id, and id 1 is left unused,
        // exactly as `dict(zip(sorted_voc, range(1, ...)))` does in Keras.
        check_index(&["x unk unk"], Some("unk"), &[("unk", 2), ("x", 3)]);
    }

    #[test]
    fn word_counts_keep_first_appearance_order() {
        let t = fitted(&["b a b", "c a b"], None, None);
        let counts: Vec<(&str, u64)> = t.word_counts().collect();
        assert_eq!(counts, [("b", 3), ("a", 2), ("c", 1)]);
        assert_eq!(t.document_count(), 2);
    }

    #[test]
    fn fitting_twice_accumulates() {
        let mut t = KerasTokenizer::new(None, None);
        t.fit_on_texts(["a b"]);
        t.fit_on_texts(["b c"]);
        assert_eq!(t.word_index(), [("b", 1), ("a", 2), ("c", 3)]);
        assert_eq!(t.document_count(), 2);
    }

    #[test]
    fn sequences_without_limits() {
        let fit = ["the cat sat", "the dog"];
        check_seqs(&fit, None, None, &["the cat", "a dog!"], &[&[1, 2], &[4]]);
        check_seqs(&fit, None, None, &["", "unknown words"], &[&[], &[]]);
        check_seqs(&fit, None, Some("<OOV>"), &["a dog!"], &[&[1, 5]]);
        check_seqs(&fit, None, Some("<OOV>"), &["THE Sat"], &[&[2, 4]]);
    }

    #[test]
    fn num_words_keeps_ids_below_it() {
        // word_index: the=1 cat=2 sat=3 dog=4
        let fit = ["the cat sat", "the dog"];
        check_seqs(&fit, Some(3), None, &["the cat sat dog"], &[&[1, 2]]);
        check_seqs(&fit, Some(1), None, &["the cat"], &[&[]]);
        check_seqs(&fit, Some(100), None, &["dog the"], &[&[4, 1]]);
        // Some(0) means "no limit", as `num_words=0` does in Keras.
        check_seqs(&fit, Some(0), None, &["dog the"], &[&[4, 1]]);
        // With an OOV token: <OOV>=1 the=2 cat=3 sat=4 dog=5.
        check_seqs(
            &fit,
            Some(3),
            Some("<OOV>"),
            &["the cat sat dog x"],
            &[&[2, 1, 1, 1, 1]],
        );
        check_seqs(&fit, Some(4), Some("<OOV>"), &["cat sat"], &[&[3, 1]]);
    }

    #[test]
    fn vocab_size_counts_padding_and_limits() {
        let fit = ["the cat sat", "the dog"];
        assert_eq!(fitted(&fit, None, None).vocab_size(), 5);
        assert_eq!(fitted(&fit, Some(3), None).vocab_size(), 3);
        assert_eq!(fitted(&fit, Some(100), None).vocab_size(), 5);
        assert_eq!(fitted(&fit, None, Some("<OOV>")).vocab_size(), 6);
        assert_eq!(fitted(&fit, Some(2), Some("<OOV>")).vocab_size(), 2);
        assert_eq!(fitted(&[], None, None).vocab_size(), 1);
        // The OOV id may lie beyond num_words when the OOV token is also a word.
        assert_eq!(fitted(&["x unk unk"], Some(2), Some("unk")).vocab_size(), 3);
    }

    #[test]
    fn sequences_to_texts_follows_keras() {
        let fit = ["the cat sat", "the dog"];
        let plain = fitted(&fit, None, None);
        assert_eq!(
            plain.sequences_to_texts(&[vec![1, 2, 0, 9, 4]]),
            ["the cat dog"]
        );
        let limited = fitted(&fit, Some(3), None);
        assert_eq!(limited.sequences_to_texts(&[vec![1, 2, 3, 4]]), ["the cat"]);
        let oov = fitted(&fit, Some(3), Some("<OOV>"));
        assert_eq!(
            oov.sequences_to_texts(&[vec![2, 3, 0, 9], vec![]]),
            ["the <OOV> <OOV> <OOV>", ""]
        );
    }

    #[test]
    fn from_counts_restores_the_same_tokenizer() {
        let t = fitted(&["b a b", "c a b d"], Some(3), Some("<OOV>"));
        let counts = t.word_counts().map(|(w, c)| (w.to_owned(), c));
        let back = KerasTokenizer::from_counts(Some(3), Some("<OOV>"), 2, counts);
        assert_eq!(back, t);
    }
}
