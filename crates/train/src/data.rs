//! From text files to batches: reading, tokenizer fitting, splits and the two recipes.
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use lstm_lm_text_prep::{
    NgramDataset, TbpttBatcher, TextTokenizer, TokenizerConfig, TokenizerKind, read_text_file,
    split_by_fraction, split_text_by_fraction, text_lines,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::TrainError;
use crate::run_dir::DataFiles;
use crate::settings::{DataSettings, Recipe, TokenizerChoice};

/// The text of each split.
#[derive(Debug, Clone)]
pub struct Texts {
    /// Training text.
    pub train: String,
    /// Validation text.
    pub valid: Option<String>,
    /// Test text.
    pub test: Option<String>,
}

/// One split, ready to batch.
#[derive(Debug, Clone)]
pub enum Split {
    /// Pre-padded prefixes of each line; `width` is the model input width.
    Ngram {
        /// The prefixes.
        dataset: NgramDataset,
        /// Input width every batch is padded to.
        width: usize,
    },
    /// One id stream.
    Stream {
        /// The ids.
        ids: Vec<u32>,
    },
}

/// One batch, row-major.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Input ids `[batch, width]`.
    pub inputs: Vec<u32>,
    /// Targets: `[batch]` for the n-gram recipe, `[batch, width]` for the stream.
    pub targets: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Columns of `inputs`.
    pub width: usize,
    /// N-gram recipe: the position of each row's last real token (rows are left-aligned and
    /// padded on the right, so the prediction at this position ignores padding exactly).
    /// Empty for the stream recipe.
    pub positions: Vec<u32>,
}

/// All splits of a run.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Training split.
    pub train: Split,
    /// Validation split.
    pub valid: Option<Split>,
    /// Test split.
    pub test: Option<Split>,
    /// Input width of the n-gram recipe.
    pub ngram_width: Option<usize>,
}

/// Reads a UTF-8 text file, naming it in errors.
pub fn read_file(path: &Path) -> Result<String, TrainError> {
    Ok(read_text_file(path)?)
}

fn join_files(paths: &[PathBuf]) -> Result<String, TrainError> {
    if paths.is_empty() {
        return Err(TrainError::Data(
            "no training file given: pass --data FILE".into(),
        ));
    }
    let mut out = String::new();
    for p in paths {
        let text = read_file(p)?;
        out.push_str(&text);
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Reads the split texts. With `data.split` and one file, the file is cut contiguously: by
/// characters for the char tokenizer (as the PyTorch reference's `--split-single`), by lines
/// otherwise, so that no line is cut in two.
pub fn load_texts(d: &DataSettings, files: &DataFiles) -> Result<Texts, TrainError> {
    let train = join_files(&files.train)?;
    let read_opt = |p: &Option<PathBuf>| p.as_deref().map(read_file).transpose();
    let texts = match d.split {
        None => Texts {
            train,
            valid: read_opt(&files.valid)?,
            test: read_opt(&files.test)?,
        },
        Some([_, v, t]) => {
            if d.tokenizer == TokenizerChoice::Char {
                let s = split_text_by_fraction(&train, v, t)?;
                Texts {
                    train: s.train.to_string(),
                    valid: (v > 0.0).then(|| s.valid.to_string()),
                    test: (t > 0.0).then(|| s.test.to_string()),
                }
            } else {
                let lines: Vec<&str> = text_lines(&train).collect();
                let s = split_by_fraction(&lines, v, t)?;
                let join = |l: &[&str]| {
                    let mut x = l.join("\n");
                    x.push('\n');
                    x
                };
                Texts {
                    train: join(s.train),
                    valid: (v > 0.0).then(|| join(s.valid)),
                    test: (t > 0.0).then(|| join(s.test)),
                }
            }
        }
    };
    if texts.train.trim().is_empty() {
        return Err(TrainError::Data(format!(
            "the training text is empty ({}): give a file with some text",
            files
                .train
                .iter()
                .map(|p| format!("\"{}\"", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(texts)
}

/// Fits the tokenizer the settings name on the training text (each line is one text, as
/// Keras' `fit_on_texts` sees it).
pub fn fit_tokenizer(d: &DataSettings, train_text: &str) -> Result<TextTokenizer, TrainError> {
    let kind = match d.tokenizer {
        TokenizerChoice::KerasWord => TokenizerKind::KerasWord,
        TokenizerChoice::Word => TokenizerKind::Word,
        TokenizerChoice::Char => TokenizerKind::Char,
        TokenizerChoice::Bpe => TokenizerKind::Bpe,
    };
    let mut config = TokenizerConfig::new(kind);
    if kind == TokenizerKind::Bpe {
        config.vocab_size = Some(d.vocab_size);
    }
    if kind == TokenizerKind::KerasWord {
        config.num_words = d.num_words;
        config.oov_token = d.oov_token.clone();
    }
    let tokenizer = if kind == TokenizerKind::Char || kind == TokenizerKind::Bpe {
        TextTokenizer::fit(&config, &[train_text])?
    } else {
        let lines: Vec<&str> = text_lines(train_text).collect();
        TextTokenizer::fit(&config, &lines)?
    };
    Ok(tokenizer)
}

/// Encodes one text into a split for `recipe`; n-gram splits are padded to `width` when given.
pub fn prepare_split(
    d: &DataSettings,
    tokenizer: &TextTokenizer,
    text: &str,
    width: Option<usize>,
) -> Result<Split, TrainError> {
    match d.recipe {
        Recipe::Stream => Ok(Split::Stream {
            ids: tokenizer.encode_text(text)?,
        }),
        Recipe::Ngram => {
            let pad = tokenizer.pad_id().unwrap_or(0);
            let lines = text_lines(text)
                .map(|l| tokenizer.encode_line(l))
                .collect::<Result<Vec<_>, _>>()?;
            let cap = width.or(d.max_len);
            let dataset = NgramDataset::new(&lines, cap, pad)?;
            let width = width.unwrap_or(dataset.width());
            Ok(Split::Ngram { dataset, width })
        }
    }
}

/// Encodes every split.
pub fn prepare(
    d: &DataSettings,
    tokenizer: &TextTokenizer,
    texts: &Texts,
) -> Result<PreparedData, TrainError> {
    let train = prepare_split(d, tokenizer, &texts.train, None)?;
    let width = match &train {
        Split::Ngram { width, .. } => {
            if *width == 0 {
                return Err(TrainError::Data(
                    "no training line has two tokens: the n-gram recipe needs lines of at least two words"
                        .into(),
                ));
            }
            Some(*width)
        }
        Split::Stream { .. } => None,
    };
    let other = |t: &Option<String>| -> Result<Option<Split>, TrainError> {
        t.as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(|t| prepare_split(d, tokenizer, t, width))
            .transpose()
    };
    Ok(PreparedData {
        valid: other(&texts.valid)?,
        test: other(&texts.test)?,
        train,
        ngram_width: width,
    })
}

impl Split {
    /// Batches per pass with `batch_size` rows (`width` steps per window for streams).
    pub fn num_batches(&self, batch_size: usize, width: usize) -> usize {
        match self {
            Split::Ngram { dataset, .. } => dataset.len().div_ceil(batch_size.max(1)),
            Split::Stream { ids } => {
                let rows = ids.len() / batch_size.max(1);
                if rows < 2 {
                    0
                } else {
                    (rows - 1).div_ceil(width.max(1))
                }
            }
        }
    }

    /// Target tokens in one pass.
    pub fn num_targets(&self, batch_size: usize) -> usize {
        match self {
            Split::Ngram { dataset, .. } => dataset.len(),
            Split::Stream { ids } => {
                let rows = ids.len() / batch_size.max(1);
                rows.saturating_sub(1) * batch_size
            }
        }
    }

    /// One pass over the split. N-gram batches are shuffled with `shuffle` as seed when given;
    /// stream windows always come in order (the state is carried between them).
    pub fn batches(
        &self,
        batch_size: usize,
        bptt: usize,
        shuffle: Option<u64>,
    ) -> Box<dyn Iterator<Item = Batch> + '_> {
        match self {
            Split::Ngram { dataset, width } => {
                let width = *width;
                let mut rng = shuffle.map(ChaCha8Rng::seed_from_u64);
                match dataset.batches(batch_size, rng.as_mut()) {
                    Ok(batches) => Box::new(batches.map(move |b| {
                        let (inputs, positions) = left_align(&b.inputs, &b.lengths, b.width, width);
                        Batch {
                            inputs,
                            targets: b.targets,
                            batch: b.batch,
                            width,
                            positions,
                        }
                    })),
                    Err(_) => Box::new(std::iter::empty()),
                }
            }
            Split::Stream { ids } => match TbpttBatcher::new(ids.clone(), batch_size, bptt) {
                Ok(batcher) => Box::new((0..batcher.num_windows()).filter_map(move |k| {
                    batcher.window(k).map(|w| Batch {
                        inputs: w.inputs,
                        targets: w.targets,
                        batch: w.batch,
                        width: w.seq_len,
                        positions: Vec::new(),
                    })
                })),
                Err(_) => Box::new(std::iter::empty()),
            },
        }
    }
}

/// Moves each pre-padded row's real tokens (the last `lengths[r]` of `from` columns) to the
/// left of a row of `to` columns, padding on the right with 0. Returns the rows and the
/// position of each row's last real token.
fn left_align(inputs: &[u32], lengths: &[usize], from: usize, to: usize) -> (Vec<u32>, Vec<u32>) {
    let rows = lengths.len();
    let mut out = vec![0u32; rows * to];
    let mut positions = Vec::with_capacity(rows);
    for (r, &len) in lengths.iter().enumerate() {
        let len = len.min(to).max(1);
        let src = &inputs[r * from + from - len..(r + 1) * from];
        out[r * to..r * to + len].copy_from_slice(src);
        positions.push((len - 1) as u32);
    }
    (out, positions)
}

/// Ids as an int tensor `[batch, width]`.
pub fn ids_tensor(ids: &[u32], batch: usize, width: usize, device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(data, [batch, width]), device)
}

/// Targets as an int tensor `[n]`.
pub fn targets_tensor(ids: &[u32], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(data, [ids.len()]), device)
}
