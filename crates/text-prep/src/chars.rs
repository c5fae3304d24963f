//! The character tokenizer: one token per Unicode scalar value, newlines included.
//!
//! Ids follow the order in which characters first appear in the fitted text, as
//! `shared/bench/torch_lm_train.py --level char` numbers them, so fitting on the whole of Tiny
//! Shakespeare gives the reference's ids. One extra id, after all characters, is reserved for
//! characters never seen; its token is written `<unk>` (a name no single character can have).

use std::collections::HashMap;

/// The name of the reserved id for unseen characters.
pub const CHAR_UNK_TOKEN: &str = "<unk>";

/// Marks an ASCII character absent from the vocabulary in the lookup table.
const ABSENT: u32 = u32::MAX;

/// A character-level vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct CharTokenizer {
    chars: Vec<char>,
    index: HashMap<char, u32>,
    /// Ids of ASCII characters, [`ABSENT`] when not in the vocabulary: most text is ASCII.
    ascii: Box<[u32; 128]>,
}

/// Fits a [`CharTokenizer`] on text given in any number of pieces.
#[derive(Default)]
pub(crate) struct CharFitter {
    chars: Vec<char>,
    seen: std::collections::HashSet<char>,
}

impl CharFitter {
    /// Adds the characters of `text` not seen before.
    pub(crate) fn add(&mut self, text: &str) {
        for c in text.chars() {
            if self.seen.insert(c) {
                self.chars.push(c);
            }
        }
    }

    /// The tokenizer.
    pub(crate) fn finish(self) -> CharTokenizer {
        CharTokenizer::from_chars_unchecked(self.chars)
    }
}

impl CharTokenizer {
    /// Builds the vocabulary from `texts`, in order of first appearance.
    pub fn fit<I, S>(texts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut fitter = CharFitter::default();
        for text in texts {
            fitter.add(text.as_ref());
        }
        fitter.finish()
    }

    /// A tokenizer whose character with id `i` is `chars[i]`.
    ///
    /// # Errors
    /// A description of the problem when a character is repeated.
    pub(crate) fn from_chars(chars: Vec<char>) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        if let Some(c) = chars.iter().find(|&&c| !seen.insert(c)) {
            return Err(format!("the character {c:?} appears twice"));
        }
        Ok(Self::from_chars_unchecked(chars))
    }

    fn from_chars_unchecked(chars: Vec<char>) -> Self {
        let mut ascii = Box::new([ABSENT; 128]);
        let mut index = HashMap::with_capacity(chars.len());
        for (id, &c) in chars.iter().enumerate() {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            index.insert(c, id);
            if c.is_ascii() {
                ascii[c as usize] = id;
            }
        }
        Self {
            chars,
            index,
            ascii,
        }
    }

    /// The id reserved for characters not in the vocabulary (one past the last character).
    pub fn unk_id(&self) -> u32 {
        u32::try_from(self.chars.len()).unwrap_or(u32::MAX)
    }

    /// Number of ids, the reserved unknown-character id included.
    pub fn vocab_size(&self) -> usize {
        self.chars.len() + 1
    }

    /// The characters, by id.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The character with id `id`.
    pub fn char(&self, id: u32) -> Option<char> {
        self.chars.get(id as usize).copied()
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn get(&self, c: char) -> Option<u32> {
        self.index.get(&c).copied()
    }

    /// The id of `c`, or the unknown-character id.
    pub fn id(&self, c: char) -> u32 {
        if c.is_ascii() {
            let id = self.ascii[c as usize];
            if id != ABSENT {
                return id;
            }
            return self.unk_id();
        }
        self.index.get(&c).copied().unwrap_or_else(|| self.unk_id())
    }

    /// Appends the id of every character of `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        out.extend(text.chars().map(|c| self.id(c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fit: &str, text: &str, expected: &[u32]) {
        let t = CharTokenizer::fit([fit]);
        let mut got = Vec::new();
        t.encode_into(text, &mut got);
        assert_eq!(got, expected, "ids of {text:?} after fitting {fit:?}");
    }

    #[test]
    fn vocabulary_in_order_of_first_appearance() {
        let t = CharTokenizer::fit(["hello\nwörld", "!"]);
        assert_eq!(
            t.chars(),
            ['h', 'e', 'l', 'o', '\n', 'w', 'ö', 'r', 'd', '!']
        );
        assert_eq!(t.unk_id(), 10);
        assert_eq!(t.vocab_size(), 11);
        assert_eq!(CharTokenizer::fit([""]).vocab_size(), 1);
    }

    #[test]
    fn ids_of_characters() {
        // h=0 i=1 \n=2 é=3
        check("hi\né", "", &[]);
        check("hi\né", "hi", &[0, 1]);
        check("hi\né", "ih\n\n", &[1, 0, 2, 2]);
        check("hi\né", "é", &[3]);
        check("hi\né", "x", &[4]);
        check("hi\né", "ü?\r", &[4, 4, 4]);
        check("hi\né", "H", &[4]);
        // A character outside the basic plane is one scalar value.
        check("a🙂", "🙂a", &[1, 0]);
    }

    #[test]
    fn from_chars_rejects_repeats() {
        assert_eq!(
            CharTokenizer::from_chars(vec!['a', 'b', 'a']).unwrap_err(),
            "the character 'a' appears twice"
        );
        let t = CharTokenizer::from_chars(vec!['b', 'a']).unwrap();
        assert_eq!((t.id('a'), t.id('z')), (1, 2));
    }
}
