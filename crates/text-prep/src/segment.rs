//! Word segmentation for scripts written without spaces: Chinese with jieba.
//!
//! A word-level tokenizer splits a line into chunks by its own separators (whitespace for
//! `word`, the space and Keras' filters for `keras-word`). With [`Segmentation::Jieba`], each
//! chunk that holds a Han character is cut by [`jieba_rs`] (its embedded dictionary, accurate
//! mode, HMM for unknown words on: Python's `jieba.cut(chunk, HMM=True)`), and its words are
//! written with a space between them; other chunks are left as they are. The tokenizer then
//! reads the spaced line with its usual rules.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};

use crate::error::TextPrepError;

/// The jieba segmenter with its default dictionary, loaded once, on first use (a fraction of a
/// second).
static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// How a word-level tokenizer finds words in text without spaces. Default: it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Segmentation {
    /// Words are what the tokenizer's separators delimit.
    #[default]
    None,
    /// Chinese (Han) runs are cut into words by jieba.
    Jieba,
}

impl Segmentation {
    /// Every value, as the command line spells them.
    pub const ALL: [Segmentation; 2] = [Self::None, Self::Jieba];

    /// `none` or `jieba`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Jieba => "jieba",
        }
    }

    /// Appends `line` to `out` with a space between the words of every chunk that holds a Han
    /// character; `is_separator` says which characters delimit chunks (they are copied as they
    /// are).
    pub(crate) fn segment_line_into(
        self,
        line: &str,
        is_separator: impl Fn(char) -> bool,
        out: &mut String,
    ) {
        if self == Self::None || !line.chars().any(is_han) {
            out.push_str(line);
            return;
        }
        let mut rest = line;
        while !rest.is_empty() {
            let chunk_end = rest.find(&is_separator).unwrap_or(rest.len());
            let (chunk, after) = rest.split_at(chunk_end);
            push_chunk(chunk, out);
            let separators_end = after
                .find(|c: char| !is_separator(c))
                .unwrap_or(after.len());
            out.push_str(&after[..separators_end]);
            rest = &after[separators_end..];
        }
    }
}

fn push_chunk(chunk: &str, out: &mut String) {
    if !chunk.chars().any(is_han) {
        out.push_str(chunk);
        return;
    }
    let mut first = true;
    for token in JIEBA.cut(chunk, true) {
        // A chunk holds no separator, but jieba yields other whitespace (a no-break space in a
        // Keras chunk) as tokens of its own: they are not words.
        if token.word.trim().is_empty() {
            continue;
        }
        if !first {
            out.push(' ');
        }
        out.push_str(token.word);
        first = false;
    }
}

/// The words jieba finds in `text` (accurate mode, HMM on), whitespace left out: what
/// `--segment jieba` makes of a chunk with Chinese characters.
pub fn jieba_words(text: &str) -> Vec<&str> {
    JIEBA
        .cut(text, true)
        .into_iter()
        .map(|t| t.word)
        .filter(|w| !w.trim().is_empty())
        .collect()
}

/// Whether `c` is a Han (Chinese) ideograph: CJK Unified Ideographs and their extensions,
/// compatibility ideographs, and 〇.
pub fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3007}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{323AF}')
}

/// Whether `c` is written without spaces around it in Chinese text: Han ideographs, CJK
/// symbols and punctuation (U+3000–U+303F), kana, full-width forms (U+FF00–U+FFEF) and the CJK
/// compatibility forms (U+FE30–U+FE4F). Decoding a segmented tokenizer's words puts no space
/// next to such a character.
pub fn is_cjk(c: char) -> bool {
    is_han(c)
        || matches!(c,
            '\u{3000}'..='\u{30FF}'
            | '\u{FE30}'..='\u{FE4F}'
            | '\u{FF00}'..='\u{FFEF}')
}

impl fmt::Display for Segmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Segmentation {
    type Err = TextPrepError;

    fn from_str(s: &str) -> Result<Self, TextPrepError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| TextPrepError::UnknownSegmentation {
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segmented(line: &str) -> String {
        let mut out = String::new();
        Segmentation::Jieba.segment_line_into(line, char::is_whitespace, &mut out);
        out
    }

    #[test]
    fn known_sentences_are_cut_as_jieba_cuts_them() {
        assert_eq!(
            jieba_words("我来到北京清华大学"),
            ["我", "来到", "北京", "清华大学"]
        );
        assert_eq!(
            jieba_words("他来到了网易杭研大厦"),
            ["他", "来到", "了", "网易", "杭研", "大厦"]
        );
        assert_eq!(
            jieba_words("小明硕士毕业于中国科学院计算所"),
            ["小明", "硕士", "毕业", "于", "中国科学院", "计算所"]
        );
        assert_eq!(segmented("我来到北京清华大学"), "我 来到 北京 清华大学");
    }

    #[test]
    fn other_scripts_and_separators_are_left_alone() {
        assert_eq!(segmented("hello  world\t!"), "hello  world\t!");
        assert_eq!(
            segmented("用 LSTM 模型，生成文本"),
            "用 LSTM 模型 ， 生成 文本"
        );
        assert_eq!(segmented(""), "");
        let mut out = String::new();
        Segmentation::None.segment_line_into("我来到北京", char::is_whitespace, &mut out);
        assert_eq!(out, "我来到北京");
    }

    #[test]
    fn names_parse() {
        for s in Segmentation::ALL {
            assert_eq!(s.name().parse::<Segmentation>().unwrap(), s);
        }
        assert_eq!(
            "pkuseg".parse::<Segmentation>().unwrap_err().to_string(),
            "unknown segmentation \"pkuseg\"; choose none or jieba"
        );
    }

    #[test]
    fn cjk_classes() {
        for c in ['中', '〇', '。', '，', '「', 'Ａ', 'か', '𠀀'] {
            assert!(is_cjk(c), "{c}");
        }
        for c in ['a', ',', ' ', 'é', '🙂'] {
            assert!(!is_cjk(c), "{c}");
        }
        assert!(is_han('中') && !is_han('。'));
    }
}
