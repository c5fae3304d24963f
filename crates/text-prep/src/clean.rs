//! The cleaning stage: text as it comes from real corpora made regular before it is tokenized.
//!
//! Each step is optional and off by default, so a tokenizer without cleaning reads text exactly
//! as before (Keras parity). The steps run in this order, one line at a time (a `\n` is never
//! removed, added or moved, so a text has the same lines before and after):
//!
//! 1. `escapes`: terminal escape sequences are removed: CSI (`ESC [ … final`, colour codes such
//!    as `ESC[32m` among them, and the one-character CSI U+009B), OSC (`ESC ] … BEL` or
//!    `… ESC \`, or to the end of the line when unterminated) and the other `ESC` sequences
//!    (`ESC`, intermediates, one final character); then the control characters that are not
//!    whitespace (C0 and C1 controls other than tab, vertical tab, form feed, carriage return
//!    and U+0085, plus DEL and the byte-order mark U+FEFF) are removed.
//! 2. `nfkc`: Unicode normalisation form NFKC (full-width letters, digits and punctuation to
//!    their ASCII forms, ligatures and other compatibility forms to plain letters).
//! 3. `lowercase`: every character lowercased on its own (`char::to_lowercase`), as the Hugging
//!    Face `Lowercase` normalizer does; there is no final-sigma rule.
//! 4. `whitespace`: each run of whitespace other than `\n` (tabs, carriage returns, no-break
//!    and ideographic spaces…) becomes one space, and each line loses its leading and trailing
//!    spaces.
//!
//! The same steps are written into `tokenizer.json` as the pipeline's normalizers (see
//! [`CleanConfig::hf_normalizers`]) with the very regular expressions used here, so Python's
//! `tokenizers` cleans a line the way lstm-lm does.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use tokenizers::NormalizerWrapper;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFKC, Replace, Strip};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Result, TextPrepError};

/// Terminal escape sequences (step 1). No alternative can match a `\n`.
pub(crate) const ESCAPE_PATTERN: &str = concat!(
    r"\x1b\[[0-?]*[ -/]*[@-~]",
    r"|\x{9b}[0-?]*[ -/]*[@-~]",
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?",
    r"|\x1b[ -/]*[0-~]?",
);

/// Control characters that are not whitespace, DEL, C1 controls and the byte-order mark
/// (step 1). Tab, `\n`, vertical tab, form feed, `\r` and U+0085 are whitespace: step 4 handles
/// them.
pub(crate) const CONTROL_PATTERN: &str = r"[\x00-\x08\x0e-\x1f\x7f-\x{84}\x{86}-\x{9f}\x{feff}]+";

/// Runs of Unicode whitespace other than `\n` (step 4).
pub(crate) const SPACE_RUN_PATTERN: &str = concat!(
    r"[\t\x0b\x0c\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}",
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]+",
);

static ESCAPES: LazyLock<Regex> = LazyLock::new(|| compiled(ESCAPE_PATTERN));
static CONTROLS: LazyLock<Regex> = LazyLock::new(|| compiled(CONTROL_PATTERN));
static SPACE_RUNS: LazyLock<Regex> = LazyLock::new(|| compiled(SPACE_RUN_PATTERN));

fn compiled(pattern: &str) -> Regex {
    // The patterns are constants, checked by the unit tests: failing here is a bug.
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("cleaning pattern {pattern:?}: {e}"))
}

/// Which cleaning steps a tokenizer applies before it reads text. Default: none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanConfig {
    /// Remove terminal escape sequences and non-whitespace control characters. Default off.
    pub escapes: bool,
    /// Unicode NFKC normalisation. Default off.
    pub nfkc: bool,
    /// Lowercase every character. Default off.
    pub lowercase: bool,
    /// Collapse whitespace runs to one space and trim each line. Default off.
    pub whitespace: bool,
}

impl CleanConfig {
    /// What `--clean` turns on: escapes and controls, NFKC and whitespace (not lowercasing,
    /// which is asked for on its own).
    pub const STANDARD: CleanConfig = CleanConfig {
        escapes: true,
        nfkc: true,
        lowercase: false,
        whitespace: true,
    };

    /// No step at all (the default).
    pub const OFF: CleanConfig = CleanConfig {
        escapes: false,
        nfkc: false,
        lowercase: false,
        whitespace: false,
    };

    /// The steps named in `list` (comma-separated: `escapes`, `nfkc`, `lowercase`,
    /// `whitespace`; `off` or nothing for none).
    ///
    /// # Errors
    /// [`TextPrepError::UnknownCleanStep`] for a name that is not a step.
    pub fn from_steps(list: &str) -> Result<Self> {
        let mut config = Self::OFF;
        for step in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match step {
                "escapes" => config.escapes = true,
                "nfkc" => config.nfkc = true,
                "lowercase" => config.lowercase = true,
                "whitespace" => config.whitespace = true,
                "off" => {}
                _ => {
                    return Err(TextPrepError::UnknownCleanStep {
                        value: step.to_owned(),
                    });
                }
            }
        }
        Ok(config)
    }

    /// Whether no step is on.
    pub fn is_off(&self) -> bool {
        *self == Self::OFF
    }

    /// The names of the steps that are on, in the order they run (`escapes`, `nfkc`,
    /// `lowercase`, `whitespace`); `off` when none is.
    pub fn describe(&self) -> String {
        let steps: Vec<&str> = [
            (self.escapes, "escapes"),
            (self.nfkc, "nfkc"),
            (self.lowercase, "lowercase"),
            (self.whitespace, "whitespace"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if steps.is_empty() {
            "off".to_owned()
        } else {
            steps.join(",")
        }
    }

    /// Cleans a text line by line (its `\n`s stay where they are); borrows it when nothing
    /// changes.
    pub fn clean<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.is_off() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            self.clean_line_into(line, &mut out);
        }
        if out == text {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(out)
        }
    }

    /// Appends the cleaned `line` (which holds no `\n`) to `out`.
    pub(crate) fn clean_line_into(&self, line: &str, out: &mut String) {
        let mut text = Cow::Borrowed(line);
        if self.escapes {
            text = replaced(text, &ESCAPES, "");
            text = replaced(text, &CONTROLS, "");
        }
        if self.nfkc && !text.is_ascii() {
            text = Cow::Owned(text.nfkc().collect());
        }
        if self.lowercase {
            text = Cow::Owned(text.chars().flat_map(char::to_lowercase).collect());
        }
        if self.whitespace {
            text = replaced(text, &SPACE_RUNS, " ");
            out.push_str(text.trim_matches(' '));
        } else {
            out.push_str(&text);
        }
    }

    /// The Hugging Face normalizers that clean a line as [`clean`](Self::clean) does, in order;
    /// empty when cleaning is off.
    ///
    /// # Errors
    /// [`TextPrepError::Tokenizers`] if the library rejects a pattern.
    pub(crate) fn hf_normalizers(&self) -> Result<Vec<NormalizerWrapper>> {
        let replace = |pattern: &str, with: &str| {
            Replace::new(ReplacePattern::Regex(pattern.to_owned()), with)
                .map(NormalizerWrapper::Replace)
                .map_err(|e| TextPrepError::tokenizers("building the cleaning normalizers", e))
        };
        let mut steps = Vec::new();
        if self.escapes {
            steps.push(replace(ESCAPE_PATTERN, "")?);
            steps.push(replace(CONTROL_PATTERN, "")?);
        }
        if self.nfkc {
            steps.push(NormalizerWrapper::NFKC(NFKC));
        }
        if self.lowercase {
            steps.push(NormalizerWrapper::Lowercase(Lowercase));
        }
        if self.whitespace {
            steps.push(replace(SPACE_RUN_PATTERN, " ")?);
            steps.push(NormalizerWrapper::StripNormalizer(Strip::new(true, true)));
        }
        Ok(steps)
    }
}

fn replaced<'a>(text: Cow<'a, str>, pattern: &Regex, with: &str) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(s) => pattern.replace_all(s, with),
        Cow::Owned(s) => Cow::Owned(pattern.replace_all(&s, with).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: CleanConfig, text: &str, expected: &str) {
        assert_eq!(config.clean(text), expected, "{config:?} on {text:?}");
    }

    #[test]
    fn off_changes_nothing_and_borrows() {
        let text = "\x1b[32m《感遇》\x1b[m\r\n  Ａ１ ";
        assert!(matches!(CleanConfig::OFF.clean(text), Cow::Borrowed(_)));
        assert!(matches!(
            CleanConfig::STANDARD.clean("plain text\nline two"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn nfkc_makes_full_width_half_width() {
        let nfkc = CleanConfig {
            nfkc: true,
            ..CleanConfig::OFF
        };
        check(nfkc, "ＡＢＣ１２３，你好！", "ABC123,你好!");
        check(nfkc, "ﬁne ㎏ ①", "fine kg 1");
        // The ideographic full stop has no compatibility form: it stays.
        check(nfkc, "春眠不觉晓。", "春眠不觉晓。");
        check(nfkc, "\u{3000}空格", " 空格");
    }

    #[test]
    fn escapes_and_controls_are_removed() {
        let escapes = CleanConfig {
            escapes: true,
            ..CleanConfig::OFF
        };
        check(escapes, "\x1b[32m《感遇・其一》\x1b[m", "《感遇・其一》");
        check(escapes, "\x1b[1;33;40mbold\x1b[0m text", "bold text");
        check(escapes, "\x1b]0;title\x07after", "after");
        check(escapes, "\x1b]8;;http://x\x1b\\link", "link");
        check(escapes, "a\x1b(Bb\x1bMc", "abc");
        check(
            escapes,
            "nul\0bell\x07del\x7f bom\u{feff}",
            "nulbelldel bom",
        );
        check(escapes, "\u{9b}31mred", "red");
        // Whitespace controls are left to the whitespace step; newlines are never touched.
        check(escapes, "tab\there\r\nnext\x1b[m\n", "tab\there\r\nnext\n");
        // An unterminated sequence at the end of a line ends there.
        check(escapes, "x\x1b]unterminated\ny", "x\ny");
    }

    #[test]
    fn whitespace_runs_collapse_and_lines_are_trimmed() {
        let ws = CleanConfig {
            whitespace: true,
            ..CleanConfig::OFF
        };
        check(ws, "  a \t b\u{a0}\u{3000}c  \r\n\n d\r", "a b c\n\nd");
        check(ws, "\n\n", "\n\n");
        check(ws, "", "");
    }

    #[test]
    fn steps_parse_from_a_list() {
        assert_eq!(
            CleanConfig::from_steps("escapes, nfkc,whitespace").unwrap(),
            CleanConfig::STANDARD
        );
        assert_eq!(CleanConfig::from_steps("off").unwrap(), CleanConfig::OFF);
        assert_eq!(CleanConfig::from_steps("").unwrap(), CleanConfig::OFF);
        let all = CleanConfig::from_steps("lowercase,escapes,nfkc,whitespace").unwrap();
        assert_eq!(all.describe(), "escapes,nfkc,lowercase,whitespace");
        assert_eq!(
            CleanConfig::from_steps("nfkc,nfc").unwrap_err().to_string(),
            "unknown cleaning step \"nfc\"; choose from escapes, nfkc, lowercase, whitespace"
        );
    }

    #[test]
    fn lowercase_is_per_character() {
        let lower = CleanConfig {
            lowercase: true,
            ..CleanConfig::OFF
        };
        check(lower, "The CAT Über ΣΟΦΟΣ 中文", "the cat über σοφοσ 中文");
    }

    #[test]
    fn standard_cleaning_of_a_fortune_entry() {
        let entry = "\x1b[32m《梦李白・其二》\x1b[m\r\n\x1b[33m作者：杜甫\x1b[m\r\n\u{3000}\u{3000}浮云终日行，  游子久不至。\r\n%\r\n";
        check(
            CleanConfig::STANDARD,
            entry,
            "《梦李白・其二》\n作者:杜甫\n浮云终日行, 游子久不至。\n%\n",
        );
        assert_eq!(CleanConfig::STANDARD.describe(), "escapes,nfkc,whitespace");
        assert_eq!(CleanConfig::OFF.describe(), "off");
    }

    #[test]
    fn hf_normalizers_clean_like_we_do() {
        use tokenizers::{NormalizedString, Normalizer};
        let all = CleanConfig {
            lowercase: true,
            ..CleanConfig::STANDARD
        };
        for config in [CleanConfig::STANDARD, all] {
            let steps = config.hf_normalizers().unwrap();
            for line in [
                "\x1b[32m《感遇・其一》\x1b[m",
                "  ＡＢＣ\t１２３ \u{3000}，Hello\x07 World\r",
                "\x1b]0;t\x07x\u{feff}y\u{9b}1mz",
                "plain",
                "",
            ] {
                let mut normalized = NormalizedString::from(line);
                for step in &steps {
                    step.normalize(&mut normalized).unwrap();
                }
                assert_eq!(normalized.get(), config.clean(line), "{line:?}");
            }
        }
        assert!(CleanConfig::OFF.hf_normalizers().unwrap().is_empty());
    }
}
