//! `lstm-lm tokenize`: fit a tokenizer on text files and save it.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use lstm_lm_model::LanguageModelConfig;
use lstm_lm_text_prep::{
    BYTE_SYMBOLS, CleanConfig, DEFAULT_BPE_VOCAB_SIZE, Segmentation, TextTokenizer,
    TokenizerConfig, TokenizerKind, text_lines,
};

use super::input::{quoted, read_all};

/// Fit a tokenizer on text files and save it as a Hugging Face tokenizer.json.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm tokenize --kind word --input corpus.txt --out tokenizer.json
  lstm-lm tokenize --kind keras-word --num-words 5000 --oov '<oov>' --input a.txt b.txt --out tok.json
  lstm-lm tokenize --kind bpe --vocab-size 8000 --input corpus.txt --out bpe.json
  lstm-lm tokenize --kind word --segment jieba --clean --input zh.txt --out zh.json
  lstm-lm tokenize --kind char --clean-steps escapes,whitespace --input poems.txt --out chars.json")]
pub struct TokenizeArgs {
    /// Kind of tokenizer.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Vocabulary size of a bpe tokenizer (at least 256) [default: 8000].
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// keras-word only: keep only ids below N, as Keras' num_words.
    #[arg(long, value_name = "N")]
    pub num_words: Option<usize>,
    /// keras-word only: token for unknown words, with id 1, as Keras' oov_token.
    #[arg(long, value_name = "TOKEN")]
    pub oov: Option<String>,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
    /// Text files to fit on (UTF-8; for keras-word, each line is one text).
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Where to write the tokenizer.json.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// The cleaning and segmentation flags, shared by `tokenize` and `train`.
#[derive(Debug, Clone, Default, Args)]
pub struct PreprocessArgs {
    /// Clean text before tokenizing it: remove terminal escape codes and control characters,
    /// NFKC-normalise (full-width to half-width), collapse whitespace runs and trim lines.
    /// Recorded in tokenizer.json and applied again whenever text is encoded.
    #[arg(long, conflicts_with = "clean_steps")]
    pub clean: bool,
    /// Cleaning steps one by one, comma-separated: escapes, nfkc, lowercase, whitespace
    /// (instead of --clean).
    #[arg(long, value_name = "STEPS")]
    pub clean_steps: Option<String>,
    /// Also lowercase the text (a cleaning step, with or without --clean).
    #[arg(long)]
    pub lowercase: bool,
    /// word and keras-word only: cut Chinese text into words with jieba (accurate mode,
    /// HMM on) before the tokenizer splits it. [default: none]
    #[arg(long, value_name = "none|jieba", value_parser = parse_segmentation)]
    pub segment: Option<Segmentation>,
}

fn parse_segmentation(value: &str) -> std::result::Result<Segmentation, String> {
    value
        .parse()
        .map_err(|e: lstm_lm_text_prep::TextPrepError| e.to_string())
}

impl PreprocessArgs {
    /// The cleaning the flags ask for; `None` when none of them is given.
    pub fn clean_config(&self) -> Result<Option<CleanConfig>> {
        let mut config = match (&self.clean_steps, self.clean) {
            (Some(list), _) => {
                CleanConfig::from_steps(list).map_err(|e| anyhow::anyhow!("--clean-steps: {e}"))?
            }
            (None, true) => CleanConfig::STANDARD,
            (None, false) if self.lowercase => CleanConfig::OFF,
            (None, false) => return Ok(None),
        };
        config.lowercase |= self.lowercase;
        Ok(Some(config))
    }
}

/// The `--kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Keras 2 Tokenizer: lowercase, punctuation removed, words by frequency, 0 is padding.
    KerasWord,
    /// PTB/WikiText words split on whitespace, `<eos>` after each line, `<unk>` for unknown words.
    Word,
    /// Unicode characters, newlines included.
    Char,
    /// Byte-level BPE trained with Hugging Face tokenizers.
    Bpe,
}

impl From<KindArg> for TokenizerKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::KerasWord => TokenizerKind::KerasWord,
            KindArg::Word => TokenizerKind::Word,
            KindArg::Char => TokenizerKind::Char,
            KindArg::Bpe => TokenizerKind::Bpe,
        }
    }
}

impl TokenizeArgs {
    /// Checks the flags against the kind, before any file is read.
    fn config(&self) -> Result<TokenizerConfig> {
        let kind = TokenizerKind::from(self.kind);
        let only = |flag: &str, applies_to: TokenizerKind| {
            anyhow::anyhow!(
                "{flag} applies only to --kind {applies_to}; leave it out for --kind {kind}"
            )
        };
        if self.vocab_size.is_some() && kind != TokenizerKind::Bpe {
            return Err(only("--vocab-size", TokenizerKind::Bpe));
        }
        if self.num_words.is_some() && kind != TokenizerKind::KerasWord {
            return Err(only("--num-words", TokenizerKind::KerasWord));
        }
        if self.oov.is_some() && kind != TokenizerKind::KerasWord {
            return Err(only("--oov", TokenizerKind::KerasWord));
        }
        if let Some(n) = self.vocab_size.filter(|&n| n < BYTE_SYMBOLS) {
            bail!(
                "--vocab-size {n} is too small: byte-level bpe needs at least {BYTE_SYMBOLS}, one per byte"
            );
        }
        if let Some(n) = self
            .vocab_size
            .filter(|&n| n > LanguageModelConfig::MAX_VOCAB_SIZE)
        {
            bail!(
                "--vocab-size {n} is above the limit of {}, the largest vocabulary a model can have",
                LanguageModelConfig::MAX_VOCAB_SIZE
            );
        }
        if self.oov.as_deref() == Some("") {
            bail!("--oov must not be empty; give a token such as '<OOV>'");
        }
        let segment = self.preprocess.segment.unwrap_or_default();
        if segment != Segmentation::None
            && !matches!(kind, TokenizerKind::Word | TokenizerKind::KerasWord)
        {
            bail!(
                "--segment {segment} applies only to --kind word or keras-word; leave it out for --kind {kind}"
            );
        }
        let vocab_size = match kind {
            TokenizerKind::Bpe => Some(self.vocab_size.unwrap_or(DEFAULT_BPE_VOCAB_SIZE)),
            _ => None,
        };
        Ok(TokenizerConfig {
            kind,
            vocab_size,
            num_words: self.num_words,
            oov_token: self.oov.clone(),
            clean: self.preprocess.clean_config()?.unwrap_or_default(),
            segment,
        })
    }
}

/// Runs `lstm-lm tokenize`.
pub fn run(args: TokenizeArgs) -> Result<()> {
    let config = args.config()?;
    let texts = read_all(&args.input)?;
    let tokenizer = TextTokenizer::fit(&config, &texts)?;
    tokenizer.save(&args.out).with_context(|| {
        format!(
            "cannot save the tokenizer given as --out {}",
            quoted(&args.out)
        )
    })?;

    let lines: usize = texts.iter().map(|t| text_lines(t).count()).sum();
    let mut counts: HashMap<u32, u64> = HashMap::new();
    let mut tokens = 0usize;
    for text in &texts {
        let ids = tokenizer.encode_text(text)?;
        tokens += ids.len();
        for id in ids {
            *counts.entry(id).or_default() += 1;
        }
    }
    let mut top: Vec<(u32, u64)> = counts.into_iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(10);

    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "saved {} tokenizer to {}",
        config.kind,
        quoted(&args.out)
    )?;
    let padding = if tokenizer.pad_id().is_some() {
        " (id 0 is padding)"
    } else {
        ""
    };
    writeln!(out, "vocabulary size: {}{padding}", tokenizer.vocab_size())?;
    let pre = tokenizer.preprocess();
    if !pre.is_off() {
        writeln!(
            out,
            "cleaning: {}; segmentation: {}",
            pre.clean.describe(),
            pre.segment
        )?;
    }
    let files = args.input.len();
    let plural = if files == 1 { "" } else { "s" };
    writeln!(
        out,
        "input: {files} file{plural}, {lines} lines, {tokens} tokens"
    )?;
    writeln!(out, "most frequent tokens:")?;
    writeln!(out, "{:>8}  {:>10}  token", "id", "count")?;
    for (id, count) in top {
        let shown = match tokenizer.kind() {
            TokenizerKind::Bpe => tokenizer.decode(&[id]),
            _ => tokenizer.id_to_token(id).unwrap_or_default(),
        };
        writeln!(out, "{id:>8}  {count:>10}  {shown:?}")?;
    }
    out.flush()?;
    Ok(())
}
