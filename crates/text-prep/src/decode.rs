//! Turning ids back into text, one id at a time.

use crate::segment::{Segmentation, is_cjk};
use crate::tokenizer::{Inner, TextTokenizer};

/// Decodes ids as they arrive, for token-by-token generation.
///
/// Each [`push`](Self::push) returns the text that can be printed now; [`finish`](Self::finish)
/// returns what is left. Concatenated, the pieces equal [`TextTokenizer::decode`] of all ids.
///
/// - Keras words: separated by single spaces; the padding id 0 writes nothing, and other ids
///   follow Keras' `sequences_to_texts` (ids at or above `num_words`, or without a word,
///   become the OOV token when one is set, and write nothing otherwise).
/// - Words: a space before each word except at the start and after `<eos>`, which is written
///   as a newline; `<unk>` is written as `<unk>`.
/// - Words of a segmented tokenizer (`--segment jieba`): as above, except that no space is
///   written next to a Chinese character or CJK punctuation (see [`is_cjk`]): Chinese words
///   are joined as Chinese is written, other words keep their spaces.
/// - Characters: each character as is; the unknown-character id is written as U+FFFD.
/// - BPE: bytes are held back until they form whole UTF-8 characters, so a character split
///   across two tokens is printed once complete. Bytes that can never be valid UTF-8 become
///   U+FFFD exactly as `String::from_utf8_lossy` would replace them.
///
/// Ids with no token write nothing.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a TextTokenizer,
    /// BPE bytes that do not yet form a whole character.
    pending: Vec<u8>,
    /// Whether nothing, or a newline, was written last (no space is due before a word).
    line_start: bool,
    /// The last character of the last word written (segmented tokenizers join CJK words).
    last_char: Option<char>,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder at the start of a text.
    pub fn new(tokenizer: &'a TextTokenizer) -> Self {
        Self {
            tokenizer,
            pending: Vec::new(),
            line_start: true,
            last_char: None,
        }
    }

    /// Takes the next id and returns the text that is ready (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        match &self.tokenizer.inner {
            Inner::KerasWord(t) => match t.sequence_word(id) {
                Some(word) if id != 0 => self.word(word),
                _ => String::new(),
            },
            Inner::Word(t) if id == t.eos_id() => {
                self.line_start = true;
                "\n".to_owned()
            }
            Inner::Word(t) => match t.token(id) {
                Some(word) => self.word(word),
                None => String::new(),
            },
            Inner::Char(t) if id == t.unk_id() => char::REPLACEMENT_CHARACTER.to_string(),
            Inner::Char(t) => t.char(id).map(String::from).unwrap_or_default(),
            Inner::Bpe(t) => {
                if let Some(bytes) = t.id_bytes(id) {
                    self.pending.extend_from_slice(bytes);
                }
                take_utf8(&mut self.pending, false)
            }
        }
    }

    /// Returns what is still held back: incomplete UTF-8 at the end of a BPE stream, written
    /// as U+FFFD. The decoder starts afresh afterwards.
    pub fn finish(&mut self) -> String {
        self.line_start = true;
        take_utf8(&mut self.pending, true)
    }

    fn word(&mut self, word: &str) -> String {
        let joined = self.tokenizer.pre.segment != Segmentation::None
            && (self.last_char.is_some_and(is_cjk) || word.chars().next().is_some_and(is_cjk));
        let sep = if self.line_start || joined { "" } else { " " };
        self.line_start = false;
        self.last_char = word.chars().next_back().or(self.last_char);
        format!("{sep}{word}")
    }
}

/// Removes and returns the decodable part of `pending`, replacing invalid bytes with U+FFFD.
/// Unless `at_end`, an incomplete character at the end stays in `pending`.
fn take_utf8(pending: &mut Vec<u8>, at_end: bool) -> String {
    let mut out = String::new();
    let mut keep = Vec::new();
    let mut chunks = pending.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        out.push_str(chunk.valid());
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        let incomplete = std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
        if !at_end && incomplete && chunks.peek().is_none() {
            keep = invalid.to_vec();
        } else {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    *pending = keep;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CharTokenizer, KerasTokenizer, WordTokenizer};
    use rand::{Rng, SeedableRng};

    fn check_stream(tokenizer: &TextTokenizer, ids: &[u32], expected_pieces: &[&str]) {
        let mut d = tokenizer.stream_decoder();
        let mut got: Vec<String> = ids.iter().map(|&id| d.push(id)).collect();
        got.push(d.finish());
        assert_eq!(got, expected_pieces, "pieces of {ids:?}");
        assert_eq!(tokenizer.decode(ids), expected_pieces.concat());
    }

    fn check_bytes(chunks: &[&[u8]], expected_pieces: &[&str]) {
        let mut pending = Vec::new();
        let mut got = Vec::new();
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            got.push(take_utf8(&mut pending, false));
        }
        got.push(take_utf8(&mut pending, true));
        assert_eq!(got, expected_pieces, "pieces of {chunks:?}");
    }

    #[test]
    fn words_get_spaces_and_newlines() {
        // a=0 b=1 <eos>=2 <unk>=3
        let t = TextTokenizer::from(WordTokenizer::fit(["a b\n"]));
        check_stream(&t, &[], &[""]);
        check_stream(&t, &[0, 1, 2], &["a", " b", "\n", ""]);
        check_stream(&t, &[2, 0, 2, 2, 1], &["\n", "a", "\n", "\n", "b", ""]);
        check_stream(&t, &[0, 3, 9, 1], &["a", " <unk>", "", " b", ""]);
    }

    #[test]
    fn keras_words_skip_padding() {
        // the=1 cat=2 dog=3
        let plain = TextTokenizer::from({
            let mut k = KerasTokenizer::new(None, None);
            k.fit_on_texts(["the cat the dog"]);
            k
        });
        check_stream(
            &plain,
            &[0, 0, 1, 2, 7, 3],
            &["", "", "the", " cat", "", " dog", ""],
        );
        let limited = TextTokenizer::from({
            let mut k = KerasTokenizer::new(Some(3), Some("<OOV>"));
            k.fit_on_texts(["the cat the dog"]);
            k
        });
        // <OOV>=1 the=2 cat=3 dog=4; ids 3 and 4 are cut off by num_words=3.
        check_stream(
            &limited,
            &[0, 2, 3, 1],
            &["", "the", " <OOV>", " <OOV>", ""],
        );
    }

    #[test]
    fn segmented_chinese_words_are_joined_without_spaces() {
        let config = crate::TokenizerConfig {
            segment: Segmentation::Jieba,
            ..crate::TokenizerConfig::new(crate::TokenizerKind::Word)
        };
        let text = "我来到北京清华大学，用 LSTM 模型 生成 hello world 文本。\n";
        let t = TextTokenizer::fit(&config, &[text]).unwrap();
        let ids = t.encode_text(text).unwrap();
        assert_eq!(
            t.decode(&ids),
            "我来到北京清华大学，用LSTM模型生成hello world文本。\n"
        );
        let id = |w: &str| t.token_to_id(w).unwrap();
        check_stream(
            &t,
            &[id("北京"), id("hello"), id("world"), id("。"), id("LSTM")],
            &["北京", "hello", " world", "。", "LSTM", ""],
        );
        // Without segmentation the same words keep their spaces.
        let plain = TextTokenizer::from(WordTokenizer::fit(["北京 清华大学\n"]));
        check_stream(&plain, &[0, 1], &["北京", " 清华大学", ""]);
    }

    #[test]
    fn characters_are_concatenated() {
        // h=0 i=1 \n=2 unknown=3
        let t = TextTokenizer::from(CharTokenizer::fit(["hi\n"]));
        check_stream(&t, &[0, 1, 2, 1], &["h", "i", "\n", "i", ""]);
        check_stream(&t, &[3, 4], &["\u{fffd}", "", ""]);
    }

    #[test]
    fn utf8_is_held_until_complete() {
        check_bytes(&[b"ab"], &["ab", ""]);
        // "é" is C3 A9, "🙂" is F0 9F 99 82.
        check_bytes(&[b"caf\xc3", b"\xa9!"], &["caf", "é!", ""]);
        check_bytes(
            &[b"\xf0", b"\x9f", b"\x99", b"\x82"],
            &["", "", "", "🙂", ""],
        );
        check_bytes(&[b"x\xf0\x9f"], &["x", "\u{fffd}"]);
        check_bytes(&[b"\xff", b"a"], &["\u{fffd}", "a", ""]);
        check_bytes(&[b"\xc3", b"a"], &["", "\u{fffd}a", ""]);
        check_bytes(&[b"\xe2\x82", b"\xac\xe2"], &["", "€", "\u{fffd}"]);
    }

    #[test]
    fn streamed_bytes_equal_lossy_decoding() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let alphabet: &[u8] = b"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82\xff\x80";
        for _ in 0..500 {
            let len = rng.random_range(0..24);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let mut pending = Vec::new();
            let mut streamed = String::new();
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len().min(4));
                pending.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                streamed.push_str(&take_utf8(&mut pending, false));
            }
            streamed.push_str(&take_utf8(&mut pending, true));
            assert_eq!(streamed, String::from_utf8_lossy(&bytes), "{bytes:x?}");
        }
    }
}
