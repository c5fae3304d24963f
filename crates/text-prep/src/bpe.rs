//! Byte-level BPE, trained and run by the Hugging Face `tokenizers` crate.
//!
//! The pipeline is GPT-2's: the `ByteLevel` pre-tokenizer (its regex, no prefix space) maps
//! every byte to a printable character, a BPE model merges them, and the `ByteLevel` decoder
//! maps them back. All 256 byte symbols are in the vocabulary, so no text is unknown, and
//! decoding the ids of a text gives the text back exactly.

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{DecoderWrapper, ModelWrapper, PreTokenizerWrapper, Tokenizer};

use crate::error::{Result, TextPrepError};

/// Number of byte symbols, the smallest possible vocabulary.
pub const BYTE_SYMBOLS: usize = 256;

/// Texts longer than this are encoded in pieces (see [`chunks`]), which keeps the memory of
/// the library's per-token bookkeeping bounded without changing the ids.
const CHUNK_BYTES: usize = 1 << 16;

/// A byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct BpeTokenizer {
    hf: Tokenizer,
    /// The bytes each id stands for.
    bytes: Vec<Vec<u8>>,
}

impl BpeTokenizer {
    /// Trains a vocabulary of `vocab_size` tokens (256 byte symbols plus merges) on `texts`.
    ///
    /// # Errors
    /// [`TextPrepError::BpeVocabTooSmall`] below 256, [`TextPrepError::Tokenizers`] when
    /// training fails.
    pub fn train<I, S>(texts: I, vocab_size: usize) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let texts: Vec<S> = texts.into_iter().collect();
        let pieces: Vec<&str> = texts.iter().flat_map(|t| chunks(t.as_ref())).collect();
        Self::train_pieces(pieces.into_iter(), vocab_size)
    }

    /// As [`train`](Self::train), on pieces the `ByteLevel` pre-tokenizer splits as it splits
    /// their concatenation (cut where [`cut_point`] cuts), read once, in any order: the
    /// vocabulary is trained on text that never needs to be in memory whole.
    ///
    /// # Errors
    /// As [`train`](Self::train).
    pub(crate) fn train_pieces<I, S>(pieces: I, vocab_size: usize) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if vocab_size < BYTE_SYMBOLS {
            return Err(TextPrepError::BpeVocabTooSmall { vocab_size });
        }
        let mut hf = Tokenizer::new(BPE::default());
        hf.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(pre_tokenizer())));
        hf.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(vocab_size)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        hf.train(&mut trainer, pieces)
            .map_err(|e| TextPrepError::tokenizers("training the bpe vocabulary", e))?;
        Self::from_hf(hf).map_err(|reason| TextPrepError::Tokenizers {
            doing: "training the bpe vocabulary",
            message: reason,
        })
    }

    /// Wraps a loaded Hugging Face tokenizer; it must have a BPE model and a `ByteLevel`
    /// decoder.
    ///
    /// # Errors
    /// A description of what does not fit.
    pub(crate) fn from_hf(hf: Tokenizer) -> Result<Self, String> {
        if !matches!(hf.get_model(), ModelWrapper::BPE(_)) {
            return Err("its model is not BPE".into());
        }
        if !matches!(hf.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return Err("its decoder is not ByteLevel".into());
        }
        let size = u32::try_from(hf.get_vocab_size(true))
            .map_err(|_| "its vocabulary is too large".to_owned())?;
        let bytes = (0..size)
            .map(|id| {
                hf.id_to_token(id)
                    .map_or_else(Vec::new, |t| token_bytes(&t))
            })
            .collect();
        Ok(Self { hf, bytes })
    }

    /// The underlying Hugging Face tokenizer.
    pub fn hf(&self) -> &Tokenizer {
        &self.hf
    }

    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        self.bytes.len()
    }

    /// The bytes id `id` stands for (part of a UTF-8 character, possibly).
    pub fn id_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize).map(Vec::as_slice)
    }

    /// Appends the ids of `text` to `out`; the same ids as encoding `text` in one call to the
    /// Hugging Face tokenizer.
    ///
    /// # Errors
    /// [`TextPrepError::Tokenizers`] when the library fails.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        for piece in chunks(text) {
            let encoding = self
                .hf
                .encode_fast(piece, false)
                .map_err(|e| TextPrepError::tokenizers("encoding text with bpe", e))?;
            out.extend_from_slice(encoding.get_ids());
        }
        Ok(())
    }
}

/// The pre-tokenizer: GPT-2's byte-level regex, without a prefix space.
pub(crate) fn pre_tokenizer() -> ByteLevel {
    ByteLevel::new(false, true, true)
}

/// Cuts `text` into pieces of about [`CHUNK_BYTES`] that the `ByteLevel` pre-tokenizer splits
/// exactly as it splits the whole text.
///
/// Pieces are cut in a whitespace run that contains a `\n` and is followed by a non-space
/// character. GPT-2's regex splits such a run `W` (followed by `c`) into `W` minus its last
/// character, matched by `\s+(?!\S)`, and then the last character, alone or glued to `c`
/// (` ?\p{L}+` and its kin). Cutting before that last character gives the same two words.
/// A run that is only the `\n` is a word of its own, and the cut goes after it.
fn chunks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = cut_point(rest).unwrap_or(rest.len());
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// Where to end the first piece of `text` (see [`chunks`]), or `None` to keep it whole.
///
/// A cut found in a prefix of a text is the cut the whole text gets: `None` whenever what
/// follows the prefix could matter.
pub(crate) fn cut_point(text: &str) -> Option<usize> {
    let mut from = CHUNK_BYTES;
    loop {
        let newline = from
            + text
                .as_bytes()
                .get(from..)?
                .iter()
                .position(|&b| b == b'\n')?;
        let tail: usize = text[newline + 1..]
            .chars()
            .take_while(|c| c.is_whitespace())
            .map(char::len_utf8)
            .sum();
        let run_end = newline + 1 + tail;
        if run_end >= text.len() {
            return None;
        }
        let space_before = text[..newline]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        if tail == 0 && !space_before {
            return Some(run_end);
        }
        let last = text[..run_end]
            .chars()
            .next_back()
            .map_or(0, char::len_utf8);
        if run_end - last > 0 {
            return Some(run_end - last);
        }
        from = run_end;
    }
}

/// The byte that a `ByteLevel` symbol stands for.
///
/// GPT-2 keeps the 188 printable bytes `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` as the characters with
/// the same code, and maps the other 68 bytes, in increasing order, to U+0100, U+0101, ...
pub(crate) fn symbol_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    let printable = |b: u32| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if code < 0x100 {
        return printable(code).then_some(code as u8);
    }
    let k = code - 0x100;
    let byte = match k {
        0..=32 => k,
        33..=66 => 0x7F + (k - 33),
        67 => 0xAD,
        _ => return None,
    };
    Some(byte as u8)
}

/// The bytes of a BPE token: its symbols mapped back to bytes, or, as the `ByteLevel` decoder
/// does for tokens that are not all symbols, its own UTF-8 bytes.
fn token_bytes(token: &str) -> Vec<u8> {
    token
        .chars()
        .map(symbol_byte)
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_else(|| token.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::PreTokenizer;

    fn check_chunks(text: &str, expected: &[&str]) {
        let got: Vec<&str> = chunks(text).collect();
        assert_eq!(got.concat(), text);
        assert_eq!(got, expected);
    }

    /// Index and neighbourhood of the first difference, to keep failure messages short.
    fn first_difference(a: &[u32], b: &[u32]) -> Option<(usize, Vec<u32>, Vec<u32>)> {
        let i = a
            .iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let window = |v: &[u32]| v[i.saturating_sub(3)..(i + 3).min(v.len())].to_vec();
        (a.len() != b.len() || i < a.len()).then(|| (i, window(a), window(b)))
    }

    #[test]
    fn symbols_cover_every_byte_like_the_library() {
        let alphabet = ByteLevel::alphabet();
        assert_eq!(alphabet.len(), 256);
        let mut seen = [false; 256];
        for &c in &alphabet {
            let b = symbol_byte(c).unwrap_or_else(|| panic!("{c:?} is not a symbol"));
            assert!(!seen[b as usize], "byte {b} twice");
            seen[b as usize] = true;
        }
        assert_eq!(symbol_byte('Ġ'), Some(b' '));
        assert_eq!(symbol_byte('Ċ'), Some(b'\n'));
        assert_eq!(symbol_byte('a'), Some(b'a'));
        assert_eq!(symbol_byte('\u{144}'), None);
        assert_eq!(symbol_byte(' '), None);
    }

    #[test]
    fn symbols_agree_with_the_pre_tokenizer() {
        // Every character up to U+07FF: all bytes that UTF-8 text can contain below 0xE0.
        let text: String = (1u32..0x800).filter_map(char::from_u32).collect();
        let mut pre = tokenizers::PreTokenizedString::from(text.as_str());
        ByteLevel::new(false, false, false)
            .pre_tokenize(&mut pre)
            .unwrap();
        let symbols: String = pre
            .get_splits(
                tokenizers::OffsetReferential::Normalized,
                tokenizers::OffsetType::Byte,
            )
            .into_iter()
            .map(|(s, _, _)| s.to_owned())
            .collect();
        assert_eq!(token_bytes(&symbols), text.as_bytes());
    }

    #[test]
    fn chunks_cut_inside_whitespace_runs_with_a_newline() {
        check_chunks("", &[]);
        check_chunks("short\ntext\n", &["short\ntext\n"]);
        let long = "a".repeat(CHUNK_BYTES);
        check_chunks(&format!("{long}\nb\n"), &[&format!("{long}\n"), "b\n"]);
        check_chunks(&format!("{long} \nb"), &[&format!("{long} "), "\nb"]);
        check_chunks(&format!("{long} \n = b"), &[&format!("{long} \n"), " = b"]);
        check_chunks(&format!("{long}\n\n\tb"), &[&format!("{long}\n\n"), "\tb"]);
        check_chunks(&format!("{long}\n \n"), &[&format!("{long}\n \n")]);
        check_chunks(&format!("{long} b\n"), &[&format!("{long} b\n")]);
    }

    #[test]
    fn train_rejects_tiny_vocabularies() {
        let err = BpeTokenizer::train(["abc"], 255).unwrap_err();
        assert!(matches!(
            err,
            TextPrepError::BpeVocabTooSmall { vocab_size: 255 }
        ));
    }

    #[test]
    fn trained_vocabulary_has_bytes_and_merges() {
        let text = "the cat and the hat and the bat\n".repeat(20);
        let t = BpeTokenizer::train([&text], 262).unwrap();
        assert_eq!(t.vocab_size(), 262);
        let mut ids = Vec::new();
        t.encode_into(&text, &mut ids).unwrap();
        assert!(
            ids.len() < text.len(),
            "{} ids for {} bytes",
            ids.len(),
            text.len()
        );
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| t.id_bytes(id).unwrap().to_vec())
            .collect();
        assert_eq!(bytes, text.as_bytes());
    }

    #[test]
    fn chunked_encoding_equals_one_call() {
        let sample = [
            " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles . \n",
            "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
            "tabs\tand  spaces \t\n\t indented\n\u{3000}ideographic\n🙂 emoji\n\n\n",
        ]
        .concat();
        let text = sample.repeat(2000);
        let t = BpeTokenizer::train([sample.as_str()], 300).unwrap();
        let mut ours = Vec::new();
        t.encode_into(&text, &mut ours).unwrap();
        let whole = t.hf().encode_fast(text.as_str(), false).unwrap();
        assert!(chunks(&text).count() > 2);
        assert_eq!(first_difference(&ours, whole.get_ids()), None);
    }
}
