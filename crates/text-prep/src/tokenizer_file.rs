//! Saving and loading a [`TextTokenizer`] as a Hugging Face `tokenizer.json`.
//!
//! The file is what `tokenizers` writes for the pipeline of [`TextTokenizer::to_hf`], so
//! Python's `tokenizers.Tokenizer.from_file` loads it and encodes lines to the same ids. Our
//! own metadata goes in the `model` object under `"lstm_lm"`:
//!
//! ```json
//! "model": { "type": "WordLevel", "vocab": {...}, "unk_token": "<unk>",
//!            "lstm_lm": { "format_version": 2, "kind": "word",
//!                         "preprocess": { "clean": { "escapes": true, "nfkc": true,
//!                                                    "lowercase": false, "whitespace": true },
//!                                         "segment": "jieba" } } }
//! ```
//!
//! Versions: 1 had no `preprocess` (a version-1 file loads with cleaning and segmentation
//! off, which is what it was written with); 2 adds it. The cleaning steps are also the
//! pipeline's first normalizers, so Python's `tokenizers` cleans as lstm-lm does;
//! segmentation has no `tokenizers` equivalent, so users of the file outside lstm-lm give it
//! text already segmented (words separated by spaces, as `lstm-lm tokenize --segment jieba`
//! would cut them).
//!
//! Why there: `tokenizers` 0.23 reads the top-level object with a visitor that skips the key
//! of an unknown field without reading its value, which makes `serde_json` fail with
//! "expected `,` or `}`" (Rust and Python alike). The model object, on the other hand, is first
//! read into a `serde_json::Value` and then converted, which ignores extra fields.
//!
//! A Keras tokenizer also stores `num_words`, `oov_token`, `document_count` and its
//! `word_counts` (an object in order of first appearance), from which its whole `word_index`
//! is rebuilt; the word-level vocabulary in the file holds only the ids below `num_words`.
//!
//! Maps are written in a fixed order (vocabularies by id, counts by first appearance), so the
//! same tokenizer always gives the same bytes. Loading checks the file against its metadata: the
//! pipeline rebuilt from the metadata must serialize exactly like the one in the file.

use std::path::Path;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokenizers::{
    AddedVocabulary, DecoderWrapper, ModelWrapper, NormalizerWrapper, PaddingParams,
    PostProcessorWrapper, PreTokenizerWrapper, Tokenizer, TruncationParams,
};

use crate::bpe::BpeTokenizer;
use crate::chars::{CHAR_UNK_TOKEN, CharTokenizer};
use crate::error::{Result, TextPrepError};
use crate::io::{read_text_file, write_atomic};
use crate::keras::KerasTokenizer;
use crate::prepare::Preprocess;
use crate::tokenizer::{TextTokenizer, TokenizerConfig, TokenizerKind};
use crate::word::WordTokenizer;

/// The version of our metadata this build writes and reads.
pub const TOKENIZER_FORMAT_VERSION: u32 = 2;

/// The oldest version this build still reads (version 1: no cleaning, no segmentation).
pub const OLDEST_TOKENIZER_FORMAT_VERSION: u32 = 1;

/// The key of our metadata inside the `model` object.
pub const METADATA_KEY: &str = "lstm_lm";

/// The metadata stored beside the model.
#[derive(Debug, Serialize, Deserialize)]
struct Metadata {
    format_version: u32,
    kind: TokenizerKind,
    /// Absent in version 1: nothing before tokenization.
    #[serde(default)]
    preprocess: Option<Preprocess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keras: Option<KerasMetadata>,
}

/// What it takes to rebuild a [`KerasTokenizer`].
#[derive(Debug, Serialize, Deserialize)]
struct KerasMetadata {
    num_words: Option<usize>,
    oov_token: Option<String>,
    document_count: u64,
    #[serde(with = "ordered_counts")]
    word_counts: Vec<(String, u64)>,
}

/// The file as written: `tokenizers`' own fields, in its order, with our metadata added to the
/// model.
#[derive(Serialize)]
struct FileOut<'a> {
    version: &'static str,
    truncation: Option<&'a TruncationParams>,
    padding: Option<&'a PaddingParams>,
    added_tokens: &'a AddedVocabulary,
    normalizer: Option<&'a NormalizerWrapper>,
    pre_tokenizer: Option<&'a PreTokenizerWrapper>,
    post_processor: Option<&'a PostProcessorWrapper>,
    decoder: Option<&'a DecoderWrapper>,
    model: ModelOut<'a>,
}

#[derive(Serialize)]
struct ModelOut<'a> {
    #[serde(flatten)]
    model: &'a ModelWrapper,
    lstm_lm: &'a Metadata,
}

/// Just enough of a file to find our metadata.
#[derive(Deserialize)]
struct Probe {
    model: ProbeModel,
}

#[derive(Deserialize)]
struct ProbeModel {
    lstm_lm: Option<Metadata>,
}

impl TextTokenizer {
    /// Writes the tokenizer to `path` as a `tokenizer.json`, atomically (see
    /// [`write_atomic`](crate::write_atomic)).
    ///
    /// # Errors
    /// [`TextPrepError::Write`] naming the file, or [`TextPrepError::Tokenizers`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let json = self.to_json()?;
        write_atomic(path.as_ref(), json.as_bytes())
    }

    /// The `tokenizer.json` text, pretty-printed, ending with a newline.
    ///
    /// # Errors
    /// [`TextPrepError::Tokenizers`] if the pipeline cannot be built or serialized.
    pub fn to_json(&self) -> Result<String> {
        let hf = self.to_hf()?;
        let metadata = Metadata {
            format_version: TOKENIZER_FORMAT_VERSION,
            kind: self.kind(),
            preprocess: Some(self.preprocess()),
            keras: self.as_keras().map(|k| KerasMetadata {
                num_words: k.num_words(),
                oov_token: k.oov_token().map(str::to_owned),
                document_count: k.document_count(),
                word_counts: k.word_counts().map(|(w, c)| (w.to_owned(), c)).collect(),
            }),
        };
        let file = FileOut {
            version: "1.0",
            truncation: hf.get_truncation(),
            padding: hf.get_padding(),
            added_tokens: hf.get_added_vocabulary(),
            normalizer: hf.get_normalizer(),
            pre_tokenizer: hf.get_pre_tokenizer(),
            post_processor: hf.get_post_processor(),
            decoder: hf.get_decoder(),
            model: ModelOut {
                model: hf.get_model(),
                lstm_lm: &metadata,
            },
        };
        let mut json = serde_json::to_string_pretty(&file)
            .map_err(|e| TextPrepError::tokenizers("writing tokenizer.json", e))?;
        json.push('\n');
        Ok(json)
    }

    /// Reads a `tokenizer.json` written by [`save`](Self::save).
    ///
    /// # Errors
    /// [`TextPrepError::Read`] or [`TextPrepError::NotUtf8`] when the file cannot be read,
    /// [`TextPrepError::BadTokenizerFile`] when it is not one of ours or does not hold together.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = read_text_file(path)?;
        Self::from_json(&json, path)
    }

    /// Reads `tokenizer.json` text; `path` only names the file in errors.
    ///
    /// # Errors
    /// [`TextPrepError::BadTokenizerFile`] as for [`load`](Self::load).
    pub fn from_json(json: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| TextPrepError::bad_file(path, reason);
        let probe: Probe = serde_json::from_str(json)
            .map_err(|e| bad(format!("its JSON cannot be read ({e})")))?;
        let metadata = probe.model.lstm_lm.ok_or_else(|| {
            bad(format!(
                "its model has no \"{METADATA_KEY}\" metadata, so lstm-lm did not write it"
            ))
        })?;
        let version = metadata.format_version;
        if !(OLDEST_TOKENIZER_FORMAT_VERSION..=TOKENIZER_FORMAT_VERSION).contains(&version) {
            return Err(bad(format!(
                "it has format version {version} but this build reads versions \
                 {OLDEST_TOKENIZER_FORMAT_VERSION} to {TOKENIZER_FORMAT_VERSION}"
            )));
        }
        let pre = match (version, metadata.preprocess) {
            (1, None) => Preprocess::default(),
            (1, Some(_)) => {
                return Err(bad(
                    "its version-1 metadata has a \"preprocess\" entry, which came with version 2"
                        .into(),
                ));
            }
            (_, Some(pre)) => pre,
            (_, None) => return Err(bad("its metadata has no \"preprocess\" entry".into())),
        };
        let config = TokenizerConfig {
            segment: pre.segment,
            ..TokenizerConfig::new(metadata.kind)
        };
        config.validate().map_err(|e| bad(e.to_string()))?;
        let mut hf: Tokenizer = serde_json::from_str(json)
            .map_err(|e| bad(format!("the tokenizers library cannot read it ({e})")))?;
        let tokenizer: TextTokenizer = match metadata.kind {
            TokenizerKind::KerasWord => {
                // Ids far apart would make the comparison below serialize a vocabulary as
                // long as the largest id.
                vocab_by_id(&hf, false).map_err(&bad)?;
                let keras = metadata
                    .keras
                    .ok_or_else(|| bad("its keras-word metadata has no \"keras\" entry".into()))?;
                KerasTokenizer::from_counts(
                    keras.num_words,
                    keras.oov_token.as_deref(),
                    keras.document_count,
                    keras.word_counts,
                )
                .into()
            }
            TokenizerKind::Word => {
                WordTokenizer::from_tokens(vocab_by_id(&hf, false).map_err(&bad)?)
                    .map_err(&bad)?
                    .into()
            }
            TokenizerKind::Char => char_tokenizer(&hf).map_err(&bad)?.into(),
            TokenizerKind::Bpe => {
                // The file is not rebuilt and compared below, so check here that every id the
                // library can produce has a row in the model: ids exactly 0..vocab_size.
                vocab_by_id(&hf, true).map_err(&bad)?;
                // The cleaning normalizers are written for other readers of the file; ours
                // cleans before the library sees the text.
                let expected = crate::hf_pipeline::clean_normalizer(&pre.clean)?;
                if serialized_normalizer(hf.get_normalizer())?
                    != serialized_normalizer(expected.as_ref())?
                {
                    return Err(bad(
                        "its normalizer is not the one its cleaning metadata gives (was it edited?)"
                            .into(),
                    ));
                }
                hf.with_normalizer(None::<NormalizerWrapper>)
                    .map_err(|e| TextPrepError::tokenizers("removing the normalizer", e))?;
                let bpe: TextTokenizer = BpeTokenizer::from_hf(hf).map_err(bad)?.into();
                return Ok(bpe.with_preprocess(pre));
            }
        };
        let tokenizer = tokenizer.with_preprocess(pre);
        let rebuilt = tokenizer.to_hf()?;
        if serialized(&rebuilt)? != serialized(&hf)? {
            return Err(bad(format!(
                "its vocabulary or pipeline is not what lstm-lm writes for its {} metadata \
                 (was it edited?)",
                metadata.kind
            )));
        }
        Ok(tokenizer)
    }
}

fn serialized_normalizer(normalizer: Option<&NormalizerWrapper>) -> Result<String> {
    serde_json::to_string(&normalizer)
        .map_err(|e| TextPrepError::tokenizers("serializing a normalizer", e))
}

fn serialized(hf: &Tokenizer) -> Result<String> {
    serde_json::to_string(hf).map_err(|e| TextPrepError::tokenizers("serializing a tokenizer", e))
}

/// The model's tokens by id (with the added tokens if `with_added_tokens`); the ids must be
/// exactly 0..n.
fn vocab_by_id(hf: &Tokenizer, with_added_tokens: bool) -> Result<Vec<String>, String> {
    let mut pairs: Vec<(u32, String)> = hf
        .get_vocab(with_added_tokens)
        .into_iter()
        .map(|(token, id)| (id, token))
        .collect();
    pairs.sort_unstable();
    for (expected, (id, _)) in (0u32..).zip(&pairs) {
        if *id != expected {
            return Err(format!("its vocabulary has no token with id {expected}"));
        }
    }
    Ok(pairs.into_iter().map(|(_, token)| token).collect())
}

fn char_tokenizer(hf: &Tokenizer) -> Result<CharTokenizer, String> {
    let mut tokens = vocab_by_id(hf, false)?;
    if tokens.pop().as_deref() != Some(CHAR_UNK_TOKEN) {
        return Err(format!("its last token is not {CHAR_UNK_TOKEN:?}"));
    }
    let chars = tokens
        .iter()
        .map(|token| {
            let mut chars = token.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(format!("its token {token:?} is not a single character")),
            }
        })
        .collect::<Result<Vec<char>, String>>()?;
    CharTokenizer::from_chars(chars)
}

/// Word counts as a JSON object whose keys keep the order of the list.
mod ordered_counts {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        counts: &[(String, u64)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(counts.len()))?;
        for (word, count) in counts {
            map.serialize_entry(word, count)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, u64)>, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Vec<(String, u64)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of word counts")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut counts = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    counts.push(entry);
                }
                Ok(counts)
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CleanConfig, Segmentation, TokenizerConfig};
    use std::path::PathBuf;

    const CORPUS: &str = "The cat sat on the mat.\nthe dog, the cat!\n\nÜber café 🙂\r\n";

    /// Chinese with colour codes, full-width forms and odd spaces: a cleaning and segmentation
    /// case.
    const ZH_CORPUS: &str = "\x1b[32m《感遇》\x1b[m\r\n我来到北京清华大学，  ＬＳＴＭ模型。\n\u{3000}春眠不觉晓 The Cat\n";

    fn fitted(kind: TokenizerKind, num_words: Option<usize>, oov: Option<&str>) -> TextTokenizer {
        let config = TokenizerConfig {
            kind,
            vocab_size: (kind == TokenizerKind::Bpe).then_some(280),
            num_words,
            oov_token: oov.map(str::to_owned),
            ..TokenizerConfig::new(kind)
        };
        TextTokenizer::fit(&config, &[CORPUS]).unwrap()
    }

    fn every_kind() -> Vec<TextTokenizer> {
        vec![
            fitted(TokenizerKind::KerasWord, None, None),
            fitted(TokenizerKind::KerasWord, Some(4), Some("<OOV>")),
            fitted(TokenizerKind::KerasWord, Some(3), None),
            fitted(TokenizerKind::Word, None, None),
            fitted(TokenizerKind::Char, None, None),
            fitted(TokenizerKind::Bpe, None, None),
            prepared(
                TokenizerKind::Word,
                CleanConfig::STANDARD,
                Segmentation::Jieba,
            ),
            prepared(TokenizerKind::KerasWord, LOWER, Segmentation::Jieba),
            prepared(
                TokenizerKind::Char,
                CleanConfig::STANDARD,
                Segmentation::None,
            ),
            prepared(TokenizerKind::Bpe, LOWER, Segmentation::None),
        ]
    }

    const LOWER: CleanConfig = CleanConfig {
        lowercase: true,
        ..CleanConfig::STANDARD
    };

    fn prepared(kind: TokenizerKind, clean: CleanConfig, segment: Segmentation) -> TextTokenizer {
        let config = TokenizerConfig {
            vocab_size: (kind == TokenizerKind::Bpe).then_some(280),
            clean,
            segment,
            ..TokenizerConfig::new(kind)
        };
        TextTokenizer::fit(&config, &[CORPUS, ZH_CORPUS]).unwrap()
    }

    #[test]
    fn cleaning_and_segmentation_are_recorded_and_applied_after_loading() {
        let dir = tempfile::tempdir().unwrap();
        let t = prepared(
            TokenizerKind::Word,
            CleanConfig::STANDARD,
            Segmentation::Jieba,
        );
        let path = dir.path().join("zh.json");
        t.save(&path).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let meta = &json["model"][METADATA_KEY];
        assert_eq!(meta["format_version"], 2);
        assert_eq!(meta["preprocess"]["segment"], "jieba");
        assert_eq!(meta["preprocess"]["clean"]["nfkc"], true);
        assert_eq!(meta["preprocess"]["clean"]["lowercase"], false);
        let back = TextTokenizer::load(&path).unwrap();
        assert_eq!(back.preprocess(), t.preprocess());
        let ids = back.encode_line("\x1b[33m我来到北京\x1b[m").unwrap();
        let words: Vec<String> = ids.iter().map(|&i| back.id_to_token(i).unwrap()).collect();
        assert_eq!(words, ["我", "来到", "北京", "<eos>"]);
        assert_eq!(back.decode(&ids), "我来到北京\n");
    }

    #[test]
    fn a_version_1_file_loads_with_cleaning_and_segmentation_off() {
        for t in [
            fitted(TokenizerKind::Word, None, None),
            fitted(TokenizerKind::KerasWord, Some(4), Some("<OOV>")),
            fitted(TokenizerKind::Char, None, None),
            fitted(TokenizerKind::Bpe, None, None),
        ] {
            // Edited as text: a parsed `Value` would sort the Keras counts, whose order matters.
            let json = t
                .to_json()
                .unwrap()
                .replace("\"format_version\": 2", "\"format_version\": 1");
            let start = json.find("\"preprocess\"").unwrap();
            let segment = start + json[start..].find("\"segment\": \"none\"").unwrap();
            let close = segment + json[segment..].find('}').unwrap() + 1;
            let (before, after) = (json[..start].trim_end(), json[close..].trim_start());
            let v1 = match after.strip_prefix(',') {
                Some(rest) => format!("{before}\n{rest}"),
                None => format!("{}\n{after}", before.trim_end_matches(',')),
            };
            assert!(!v1.contains("preprocess"), "{v1}");
            let old = TextTokenizer::from_json(&v1, &PathBuf::from("old.json")).unwrap();
            assert!(old.preprocess().is_off());
            for text in [CORPUS, ZH_CORPUS] {
                assert_eq!(old.encode_text(text).unwrap(), t.encode_text(text).unwrap());
            }
            // Written again, it is a version-2 file.
            assert_eq!(old.to_json().unwrap(), t.to_json().unwrap());
            meta_with_preprocess_in_version_1(&t);
        }
    }

    fn meta_with_preprocess_in_version_1(t: &TextTokenizer) {
        let json = t
            .to_json()
            .unwrap()
            .replace("\"format_version\": 2", "\"format_version\": 1");
        assert_eq!(
            load_err(&json),
            "\"tok.json\" is not a usable tokenizer file: its version-1 metadata has a \"preprocess\" entry, which came with version 2; re-create it with `lstm-lm tokenize`"
        );
    }

    fn load_err(json: &str) -> String {
        TextTokenizer::from_json(json, &PathBuf::from("tok.json"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn round_trip_through_a_file_keeps_ids_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let texts = [CORPUS, "unseen words and ✓ symbols\n", "", "the\n\n"];
        for (i, t) in every_kind().into_iter().enumerate() {
            let path = dir.path().join(format!("tok{i}.json"));
            t.save(&path).unwrap();
            let back = TextTokenizer::load(&path).unwrap();
            assert_eq!(back.kind(), t.kind());
            assert_eq!(back.vocab_size(), t.vocab_size(), "{}", t.kind());
            for text in texts {
                assert_eq!(
                    back.encode_text(text).unwrap(),
                    t.encode_text(text).unwrap()
                );
                assert_eq!(
                    back.encode_line(text).unwrap(),
                    t.encode_line(text).unwrap()
                );
            }
            assert_eq!(
                back.to_json().unwrap(),
                std::fs::read_to_string(&path).unwrap()
            );
            if let (Some(a), Some(b)) = (back.as_keras(), t.as_keras()) {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn same_tokenizer_gives_same_bytes() {
        for t in every_kind() {
            let again = TextTokenizer::fit(
                &TokenizerConfig {
                    kind: t.kind(),
                    vocab_size: (t.kind() == TokenizerKind::Bpe).then_some(280),
                    num_words: t.as_keras().and_then(KerasTokenizer::num_words),
                    oov_token: t.as_keras().and_then(|k| k.oov_token().map(str::to_owned)),
                    clean: t.preprocess().clean,
                    segment: t.preprocess().segment,
                },
                if t.preprocess().is_off() {
                    &[CORPUS][..]
                } else {
                    &[CORPUS, ZH_CORPUS][..]
                },
            )
            .unwrap();
            assert_eq!(
                t.to_json().unwrap(),
                again.to_json().unwrap(),
                "{}",
                t.kind()
            );
        }
    }

    #[test]
    fn file_is_the_libraries_own_plus_metadata() {
        for t in every_kind() {
            let mut ours: serde_json::Value = serde_json::from_str(&t.to_json().unwrap()).unwrap();
            let meta = ours["model"]
                .as_object_mut()
                .and_then(|m| m.remove(METADATA_KEY))
                .unwrap();
            assert_eq!(meta["kind"], t.kind().name());
            assert_eq!(meta["format_version"], 2);
            let theirs: serde_json::Value =
                serde_json::from_str(&t.to_hf().unwrap().to_string(false).unwrap()).unwrap();
            assert_eq!(ours, theirs, "{}", t.kind());
        }
    }

    #[test]
    fn keras_metadata_keeps_counts_in_order() {
        let t = fitted(TokenizerKind::KerasWord, Some(4), Some("<OOV>"));
        let json: serde_json::Value = serde_json::from_str(&t.to_json().unwrap()).unwrap();
        let keras = &json["model"][METADATA_KEY]["keras"];
        assert_eq!(keras["num_words"], 4);
        assert_eq!(keras["oov_token"], "<OOV>");
        assert_eq!(keras["document_count"], 4);
        let text = t.to_json().unwrap();
        let the = text.find("\"the\": 4").unwrap();
        let cat = text.find("\"cat\": 2").unwrap();
        let sat = text.find("\"sat\": 1").unwrap();
        assert!(
            the < cat && cat < sat,
            "counts not in first-appearance order"
        );
    }

    #[test]
    fn top_level_extra_fields_break_the_library() {
        // Why the metadata lives inside "model": this is what the library does with a
        // top-level field it does not know.
        let json = fitted(TokenizerKind::Word, None, None).to_json().unwrap();
        let with_extra = json.replacen("{", "{\n  \"extra\": 1,", 1);
        assert!(serde_json::from_str::<Tokenizer>(&with_extra).is_err());
        assert!(serde_json::from_str::<Tokenizer>(&json).is_ok());
    }

    #[test]
    fn bad_files_are_explained() {
        let good = fitted(TokenizerKind::Word, None, None).to_json().unwrap();
        let prefix = "\"tok.json\" is not a usable tokenizer file: ";
        let suffix = "; re-create it with `lstm-lm tokenize`";
        let check = |json: &str, reason: &str| {
            assert_eq!(load_err(json), format!("{prefix}{reason}{suffix}"));
        };
        let err = load_err("{ not json");
        assert!(
            err.starts_with(&format!("{prefix}its JSON cannot be read (")),
            "{err}"
        );
        let plain = fitted(TokenizerKind::Word, None, None).to_hf().unwrap();
        check(
            &plain.to_string(false).unwrap(),
            "its model has no \"lstm_lm\" metadata, so lstm-lm did not write it",
        );
        check(
            &good.replace("\"format_version\": 2", "\"format_version\": 7"),
            "it has format version 7 but this build reads versions 1 to 2",
        );
        check(
            &good
                .replace("\"segment\": \"none\"", "\"segment\": \"jieba\"")
                .replace("\"kind\": \"word\"", "\"kind\": \"char\""),
            "segment does not apply to the char tokenizer; leave it out or choose word or keras-word",
        );
        check(
            &good.replace("\"WhitespaceSplit\"", "\"Whitespace\""),
            "its vocabulary or pipeline is not what lstm-lm writes for its word metadata (was it edited?)",
        );
        check(
            &good.replace("\"<unk>\"", "\"<UNK>\""),
            "the vocabulary has no \"<unk>\" token",
        );
        let err = load_err(&good.replace("\"kind\": \"word\"", "\"kind\": \"words\""));
        assert!(
            err.contains("its JSON cannot be read (unknown variant `words`"),
            "{err}"
        );
    }

    /// A BPE vocabulary whose ids skip some (so that an id reaches past the vocabulary size and
    /// the model's rows) is refused at load, naming the file.
    #[test]
    fn bpe_ids_must_be_exactly_zero_to_vocab_size() {
        let good = fitted(TokenizerKind::Bpe, None, None).to_json().unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&good).unwrap();
        let vocab = json["model"]["vocab"].as_object_mut().unwrap();
        let size = vocab.len() as u64;
        let (last, _) = vocab
            .iter()
            .find(|(_, id)| id.as_u64() == Some(size - 1))
            .map(|(t, id)| (t.clone(), id.clone()))
            .unwrap();
        vocab.insert(last, serde_json::json!(size + 1000));
        let err = load_err(&json.to_string());
        assert_eq!(
            err,
            format!(
                "\"tok.json\" is not a usable tokenizer file: its vocabulary has no token with id {}; re-create it with `lstm-lm tokenize`",
                size - 1
            )
        );
        assert!(TextTokenizer::from_json(&good, &PathBuf::from("tok.json")).is_ok());
    }

    #[test]
    fn load_names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = TextTokenizer::load(dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(err, TextPrepError::Read { .. }));
        assert!(err.to_string().contains("nope.json"));
    }
}
