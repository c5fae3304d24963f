//! The n-gram run folder: `tokenizer.json` (the same Hugging Face format as an LSTM run's)
//! and `ngram.bin` (the model, see [`crate::model_file`]). A folder holding `ngram.bin` is an
//! n-gram run; `lstm-lm eval`, `score` and `generate` recognise it by that file.
use std::path::{Path, PathBuf};

use lstm_lm_text_prep::{TextTokenizer, TokenizerConfig, TokenizerKind, read_text_file};

use crate::count::{NgramCounter, check_order};
use crate::error::{NgramError, Result};
use crate::estimate::estimate;
use crate::model::KneserNeyModel;
use crate::symbols::Symbols;

/// The model file of an n-gram run.
pub const MODEL_FILE: &str = "ngram.bin";
/// The tokenizer file of a run (n-gram or LSTM).
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The file that marks an LSTM run folder, which an n-gram run is never written into.
const LSTM_RUN_CONFIG: &str = "config.json";
/// The order `lstm-lm ngram train` uses when none is given.
pub const DEFAULT_ORDER: usize = 5;

/// What to train: the tokenizer and the order.
#[derive(Debug, Clone)]
pub struct NgramTrainConfig {
    /// The tokenizer to fit on the training text (default: the word tokenizer).
    pub tokenizer: TokenizerConfig,
    /// The order N (default [`DEFAULT_ORDER`]; 1 to [`MAX_ORDER`](crate::MAX_ORDER)).
    pub order: usize,
}

impl Default for NgramTrainConfig {
    fn default() -> Self {
        NgramTrainConfig {
            tokenizer: TokenizerConfig::new(TokenizerKind::Word),
            order: DEFAULT_ORDER,
        }
    }
}

/// Whether `dir` is an n-gram run folder (it holds [`MODEL_FILE`]).
pub fn is_ngram_run(dir: &Path) -> bool {
    dir.join(MODEL_FILE).is_file()
}

/// A tokenizer and the n-gram model over its ids.
#[derive(Debug, Clone)]
pub struct NgramRun {
    /// The tokenizer, fitted on the training text.
    pub tokenizer: TextTokenizer,
    /// The model.
    pub model: KneserNeyModel,
}

/// Per-token scores of a text under an n-gram run.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramScore {
    /// Each predicted token (the line's tokens, then the end of line) with its natural-log
    /// probability.
    pub tokens: Vec<(String, f64)>,
    /// Their ids: the tokenizer's, and for the end of line the model's `</s>` (the tokenizer's
    /// `<eos>` where it has one, the id after its vocabulary otherwise).
    pub ids: Vec<u32>,
}

impl NgramRun {
    /// Fits the tokenizer on `files`, counts every line's n-grams and estimates the model.
    ///
    /// # Errors
    /// A bad order (checked before anything is read), an unreadable file, an empty corpus.
    pub fn train(files: &[PathBuf], config: &NgramTrainConfig) -> Result<Self> {
        check_order(config.order)?;
        config.tokenizer.validate()?;
        let texts = files
            .iter()
            .map(read_text_file)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Self::train_on_texts(&texts, config)
    }

    /// As [`train`](Self::train), on texts in memory.
    pub fn train_on_texts<S: AsRef<str>>(texts: &[S], config: &NgramTrainConfig) -> Result<Self> {
        check_order(config.order)?;
        let tokenizer = TextTokenizer::fit(&config.tokenizer, texts)?;
        let symbols = Symbols::for_tokenizer(&tokenizer);
        let mut counter = NgramCounter::new(config.order, symbols.clone())?;
        for text in texts {
            for sentence in symbols.sentences(&tokenizer, text.as_ref()) {
                counter.add_sentence(&sentence?)?;
            }
        }
        let model = estimate(counter)?;
        Ok(NgramRun { tokenizer, model })
    }

    /// Checks that an n-gram run may be written into `dir` (before the work of training).
    ///
    /// # Errors
    /// [`NgramError::Input`] when `dir` holds an LSTM run (its `config.json`), whose
    /// tokenizer would be overwritten.
    pub fn check_destination(dir: &Path) -> Result<()> {
        if dir.join(LSTM_RUN_CONFIG).is_file() {
            return Err(NgramError::Input(format!(
                "\"{}\" holds an LSTM run ({LSTM_RUN_CONFIG}), whose tokenizer.json would be replaced: choose another --out folder",
                dir.display()
            )));
        }
        Ok(())
    }

    /// Writes `dir/tokenizer.json` and `dir/ngram.bin` (each atomically), creating `dir`.
    ///
    /// # Errors
    /// As [`check_destination`](Self::check_destination), and write errors.
    pub fn save(&self, dir: &Path) -> Result<()> {
        Self::check_destination(dir)?;
        std::fs::create_dir_all(dir).map_err(|source| NgramError::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        self.tokenizer.save(dir.join(TOKENIZER_FILE))?;
        self.model.save(&dir.join(MODEL_FILE))
    }

    /// Loads an n-gram run folder and checks that its tokenizer belongs to its model.
    pub fn load(dir: &Path) -> Result<Self> {
        if !is_ngram_run(dir) {
            return Err(NgramError::NotNgramRun {
                path: dir.to_path_buf(),
                file: MODEL_FILE,
            });
        }
        let model = KneserNeyModel::load(&dir.join(MODEL_FILE))?;
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let tokenizer = TextTokenizer::load(&tokenizer_path)?;
        let symbols = Symbols::for_tokenizer(&tokenizer);
        if &symbols != model.symbols() {
            return Err(NgramError::TokenizerMismatch {
                path: tokenizer_path,
                reason: format!(
                    "it has {} ids, the model was counted over {}",
                    symbols.tokenizer_size,
                    model.symbols().tokenizer_size
                ),
            });
        }
        Ok(NgramRun { tokenizer, model })
    }

    /// The name of every symbol, for ARPA: `<s>`, `</s>` and the tokenizer's tokens.
    pub fn symbol_names(&self) -> Vec<String> {
        let symbols = self.model.symbols();
        (0..symbols.len())
            .map(|id| symbols.name(&self.tokenizer, id))
            .collect()
    }

    /// The name a predicted token is shown with: the tokenizer's token (`<eos>` for the word
    /// tokenizer's end of line), `</s>` for an end of line the tokenizer has no token for.
    pub fn token_name(&self, id: u32) -> String {
        match self.tokenizer.id_to_token(id) {
            Some(t) if id < self.model.symbols().tokenizer_size => t,
            _ => self.model.symbols().name(&self.tokenizer, id),
        }
    }

    /// Scores one line: every token given the ones before it from `<s>`, then the end of the
    /// line. Natural logs.
    pub fn score_line(&self, line: &str) -> Result<NgramScore> {
        let ids = self.model.symbols().sentence(&self.tokenizer, line)?;
        let logs = self.model.sentence_log10(&ids);
        let eos = self.model.symbols().eos;
        let scored: Vec<u32> = ids.iter().copied().chain(std::iter::once(eos)).collect();
        let tokens = scored
            .iter()
            .zip(logs)
            .map(|(&id, lp)| (self.token_name(id), lp * std::f64::consts::LN_10))
            .collect();
        Ok(NgramScore {
            tokens,
            ids: scored,
        })
    }

    /// Natural-log probability of every token of every line of `text`, each line's end
    /// included: for the word tokenizer, exactly the tokens of
    /// [`TextTokenizer::encode_text`], in order.
    pub fn text_log_probs(&self, text: &str) -> Result<Vec<f64>> {
        let symbols = self.model.symbols();
        let mut out = Vec::new();
        for sentence in symbols.sentences(&self.tokenizer, text) {
            let logs = self.model.sentence_log10(&sentence?);
            out.extend(logs.into_iter().map(|lp| lp * std::f64::consts::LN_10));
        }
        Ok(out)
    }
}
