//! From text files to batches: reading, tokenizer fitting, splits and the two recipes.
//!
//! Without `data.split`, files are read in pieces ([`TextPieces`]): fitting the tokenizer and
//! encoding hold one piece and one line at a time, so the stream recipe needs the `u32` ids and
//! a bounded amount besides, however large the corpus ([`prepare_files`]). With `data.split`
//! the one file is read whole, to cut it by lines or characters.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Device, Int, Tensor, TensorData};
use lstm_lm_text_prep::{
    NgramDataset, READ_PIECE_BYTES, TbpttBatcher, TextPieces, TextPrepError, TextTokenizer,
    TokenizerConfig, TokenizerKind, read_text_file, split_by_fraction, split_text_by_fraction,
    text_lines,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::InferError;
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
pub fn read_file(path: &Path) -> Result<String, InferError> {
    Ok(read_text_file(path)?)
}

fn no_training_file() -> InferError {
    InferError::Data("no training file given: pass --data FILE".into())
}

fn join_files(paths: &[PathBuf]) -> Result<String, InferError> {
    if paths.is_empty() {
        return Err(no_training_file());
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
pub fn load_texts(d: &DataSettings, files: &DataFiles) -> Result<Texts, InferError> {
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
        return Err(empty_training_text(files));
    }
    Ok(texts)
}

fn empty_training_text(files: &DataFiles) -> InferError {
    InferError::Data(format!(
        "the training text is empty ({}): give a file with some text",
        files
            .train
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Files read one after the other in pieces as one text: the text [`load_texts`] reads
/// (a file that does not end with `\n` is followed by one, unless nothing came before).
#[derive(Debug)]
pub struct JoinedPieces {
    paths: Vec<PathBuf>,
    next_file: usize,
    current: Option<TextPieces>,
    piece_bytes: usize,
    /// Whether anything was handed out, and whether it ended with `\n`.
    any: bool,
    ends_with_newline: bool,
    /// Whether a file not ending with `\n` gets one (training files do, as in [`load_texts`]).
    add_newlines: bool,
    failed: bool,
}

impl JoinedPieces {
    /// Training files `paths` read in pieces of about `piece_bytes` bytes.
    pub fn new(paths: &[PathBuf], piece_bytes: usize) -> Self {
        Self {
            paths: paths.to_vec(),
            next_file: 0,
            current: None,
            piece_bytes,
            any: false,
            ends_with_newline: false,
            add_newlines: true,
            failed: false,
        }
    }

    /// One file read as it is (a validation or test file), in pieces of about `piece_bytes`.
    pub fn one(path: &Path, piece_bytes: usize) -> Self {
        Self {
            add_newlines: false,
            ..Self::new(&[path.to_path_buf()], piece_bytes)
        }
    }
}

impl Iterator for JoinedPieces {
    type Item = Result<String, TextPrepError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            let Some(current) = self.current.as_mut() else {
                let path = self.paths.get(self.next_file)?;
                self.next_file += 1;
                match TextPieces::open(path, self.piece_bytes) {
                    Ok(pieces) => self.current = Some(pieces),
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
                continue;
            };
            match current.next() {
                Some(Ok(piece)) => {
                    self.any = true;
                    self.ends_with_newline = piece.ends_with('\n');
                    return Some(Ok(piece));
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                None => {
                    self.current = None;
                    if self.add_newlines && self.any && !self.ends_with_newline {
                        self.ends_with_newline = true;
                        return Some(Ok("\n".to_owned()));
                    }
                }
            }
        }
        None
    }
}

/// Fits the tokenizer the settings name on the training files, as [`fit_tokenizer`] on the
/// text [`load_texts`] reads. Without `data.split` the files are read in pieces, never whole.
pub fn fit_tokenizer_on_files(
    d: &DataSettings,
    files: &DataFiles,
) -> Result<TextTokenizer, InferError> {
    fit_tokenizer_in_pieces(d, files, READ_PIECE_BYTES)
}

fn fit_tokenizer_in_pieces(
    d: &DataSettings,
    files: &DataFiles,
    piece_bytes: usize,
) -> Result<TextTokenizer, InferError> {
    if d.split.is_some() {
        let texts = load_texts(d, files)?;
        return fit_tokenizer(d, &texts.train);
    }
    if files.train.is_empty() {
        return Err(no_training_file());
    }
    let saw_text = AtomicBool::new(false);
    let pieces = JoinedPieces::new(&files.train, piece_bytes).inspect(|piece| {
        if piece.as_ref().is_ok_and(|p| !p.trim().is_empty()) {
            saw_text.store(true, Ordering::Relaxed);
        }
    });
    let fitted = TextTokenizer::fit_pieces(&tokenizer_config(d)?, pieces);
    // Reading errors first; then an empty text, whatever fitting made of it.
    match fitted {
        Err(e @ (TextPrepError::Read { .. } | TextPrepError::NotUtf8 { .. })) => Err(e.into()),
        _ if !saw_text.load(Ordering::Relaxed) => Err(empty_training_text(files)),
        other => Ok(other?),
    }
}

fn tokenizer_config(d: &DataSettings) -> Result<TokenizerConfig, InferError> {
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
    config.clean = d.clean_config()?;
    config.segment = d.segment;
    Ok(config)
}

/// Fits the tokenizer the settings name on the training text (each line is one text, as
/// Keras' `fit_on_texts` sees it).
pub fn fit_tokenizer(d: &DataSettings, train_text: &str) -> Result<TextTokenizer, InferError> {
    let config = tokenizer_config(d)?;
    let kind = config.kind;
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
) -> Result<Split, InferError> {
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

/// Reads and encodes every split of `files` for the recipe, as [`prepare`] on the texts of
/// [`load_texts`].
///
/// Without `data.split`, files are read in pieces. The stream recipe counts the ids of each
/// split first, calls `note` with one line saying how many there are and how much memory they
/// take, allocates exactly that and reads the files again to fill it: memory beyond the ids
/// stays bounded (a piece and a line), however large the corpus.
pub fn prepare_files(
    d: &DataSettings,
    tokenizer: &TextTokenizer,
    files: &DataFiles,
    note: &mut dyn FnMut(&str),
) -> Result<PreparedData, InferError> {
    prepare_files_in_pieces(d, tokenizer, files, note, READ_PIECE_BYTES)
}

fn prepare_files_in_pieces(
    d: &DataSettings,
    tokenizer: &TextTokenizer,
    files: &DataFiles,
    note: &mut dyn FnMut(&str),
    piece_bytes: usize,
) -> Result<PreparedData, InferError> {
    let prepared = if d.split.is_some() {
        prepare(d, tokenizer, &load_texts(d, files)?)?
    } else {
        if files.train.is_empty() {
            return Err(no_training_file());
        }
        let sources = [files.train.clone(), one(&files.valid), one(&files.test)];
        // Split 0 is the training files joined, 1 and 2 one file each, read as they are.
        let read = |k: usize| match k {
            0 => JoinedPieces::new(&sources[0], piece_bytes),
            _ => JoinedPieces::one(&sources[k][0], piece_bytes),
        };
        match d.recipe {
            Recipe::Stream => {
                let mut counts = [0usize; 3];
                let mut has_text = [false; 3];
                for (k, paths) in sources.iter().enumerate() {
                    if !paths.is_empty() {
                        (counts[k], has_text[k]) = encode_stream(tokenizer, read(k), None)?;
                    }
                }
                if !has_text[0] {
                    return Err(empty_training_text(files));
                }
                note(&stream_memory_note(counts, has_text));
                let mut splits = Vec::with_capacity(3);
                for (k, paths) in sources.iter().enumerate() {
                    if !has_text[k] {
                        splits.push(None);
                        continue;
                    }
                    let mut ids = Vec::with_capacity(counts[k]);
                    encode_stream(tokenizer, read(k), Some(&mut ids))?;
                    if ids.len() != counts[k] {
                        return Err(InferError::Data(format!(
                            "{} changed while it was read (two passes gave {} and {} tokens): train when it no longer changes",
                            quoted(paths),
                            counts[k],
                            ids.len()
                        )));
                    }
                    splits.push(Some(Split::Stream { ids }));
                }
                let [train, valid, test] = <[Option<Split>; 3]>::try_from(splits)
                    .map_err(|_| InferError::Data("three splits expected".into()))?;
                PreparedData {
                    train: train.ok_or_else(|| empty_training_text(files))?,
                    valid,
                    test,
                    ngram_width: None,
                }
            }
            Recipe::Ngram => {
                let train = ngram_split(d, tokenizer, read(0), None)?
                    .ok_or_else(|| empty_training_text(files))?;
                let width = ngram_width(&train)?;
                let other = |k: usize| -> Result<Option<Split>, InferError> {
                    if sources[k].is_empty() {
                        return Ok(None);
                    }
                    ngram_split(d, tokenizer, read(k), width)
                };
                PreparedData {
                    valid: other(1)?,
                    test: other(2)?,
                    train,
                    ngram_width: width,
                }
            }
        }
    };
    check_evaluation_splits(d, &prepared, files)?;
    Ok(prepared)
}

fn one(path: &Option<PathBuf>) -> Vec<PathBuf> {
    path.iter().cloned().collect()
}

fn quoted(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line on the memory the stream recipe's ids take.
fn stream_memory_note(counts: [usize; 3], has_text: [bool; 3]) -> String {
    let mut parts = vec![format!("{} training", counts[0])];
    for (k, name) in [(1, "validation"), (2, "test")] {
        if has_text[k] {
            parts.push(format!("{} {name}", counts[k]));
        }
    }
    let total: usize = counts.iter().sum();
    let mib = (total * std::mem::size_of::<u32>()) as f64 / (1024.0 * 1024.0);
    format!(
        "stream recipe: {total} tokens ({}), {mib:.1} MiB of ids",
        parts.join(", ")
    )
}

/// Encodes a text given in pieces as one stream: appends its ids to `ids` when given, else
/// only counts them. Returns the count and whether the text has any non-space character (a
/// text without is no split, as in [`prepare`]).
fn encode_stream<I>(
    tokenizer: &TextTokenizer,
    pieces: I,
    mut ids: Option<&mut Vec<u32>>,
) -> Result<(usize, bool), InferError>
where
    I: Iterator<Item = Result<String, TextPrepError>>,
{
    let mut encoder = tokenizer.stream_encoder();
    let mut scratch = Vec::new();
    let mut count = 0;
    let mut has_text = false;
    for piece in pieces {
        let piece = piece?;
        has_text |= !piece.trim().is_empty();
        let out = ids.as_deref_mut().unwrap_or(&mut scratch);
        let before = out.len();
        encoder.push(&piece, out)?;
        count += out.len() - before;
        scratch.clear();
    }
    let out = ids.unwrap_or(&mut scratch);
    let before = out.len();
    encoder.finish(out)?;
    count += out.len() - before;
    Ok((count, has_text))
}

/// Calls `f` with each line of a text given in pieces, as [`text_lines`] cuts the whole text.
fn for_each_line<I>(
    pieces: I,
    mut f: impl FnMut(&str) -> Result<(), InferError>,
) -> Result<(), InferError>
where
    I: Iterator<Item = Result<String, TextPrepError>>,
{
    let mut pending = String::new();
    for piece in pieces {
        pending.push_str(&piece?);
        // `pending` held no `\n` before this piece: whole lines were taken.
        let Some(last) = pending.rfind('\n') else {
            continue;
        };
        for line in pending[..last].split('\n') {
            f(line)?;
        }
        pending.drain(..=last);
    }
    if !pending.is_empty() {
        f(&pending)?;
    }
    Ok(())
}

/// The n-gram split of a text given in pieces (`None` when it has no non-space character).
fn ngram_split<I>(
    d: &DataSettings,
    tokenizer: &TextTokenizer,
    pieces: I,
    width: Option<usize>,
) -> Result<Option<Split>, InferError>
where
    I: Iterator<Item = Result<String, TextPrepError>>,
{
    let mut lines = Vec::new();
    let mut has_text = false;
    for_each_line(pieces, |line| {
        has_text |= !line.trim().is_empty();
        lines.push(tokenizer.encode_line(line)?);
        Ok(())
    })?;
    if !has_text {
        return Ok(None);
    }
    let pad = tokenizer.pad_id().unwrap_or(0);
    let dataset = NgramDataset::new(&lines, width.or(d.max_len), pad)?;
    let width = width.unwrap_or(dataset.width());
    Ok(Some(Split::Ngram { dataset, width }))
}

fn ngram_width(train: &Split) -> Result<Option<usize>, InferError> {
    match train {
        Split::Ngram { width: 0, .. } => Err(InferError::Data(
            "no training line has two tokens: the n-gram recipe needs lines of at least two words"
                .into(),
        )),
        Split::Ngram { width, .. } => Ok(Some(*width)),
        Split::Stream { .. } => Ok(None),
    }
}

/// Validation and test splits must hold one evaluation batch: found now, not after the first
/// epoch.
fn check_evaluation_splits(
    d: &DataSettings,
    prepared: &PreparedData,
    files: &DataFiles,
) -> Result<(), InferError> {
    let width = prepared.ngram_width.unwrap_or(d.bptt);
    for (split, name, path) in [
        (&prepared.valid, "validation", &files.valid),
        (&prepared.test, "test", &files.test),
    ] {
        let Some(split) = split else { continue };
        let rows = match split {
            Split::Stream { .. } => d.eval_batch_size,
            Split::Ngram { .. } => d.batch_size,
        };
        if split.num_batches(rows, width) == 0 {
            let origin = match path {
                Some(p) if d.split.is_none() => format!("\"{}\"", p.display()),
                _ => format!("the {name} part of data.split"),
            };
            return Err(InferError::Data(format!(
                "the {name} text ({origin}) is too short for one batch of {rows} sequences: give more {name} text or a smaller data.eval_batch_size"
            )));
        }
    }
    Ok(())
}

/// Encodes every split.
pub fn prepare(
    d: &DataSettings,
    tokenizer: &TextTokenizer,
    texts: &Texts,
) -> Result<PreparedData, InferError> {
    let train = prepare_split(d, tokenizer, &texts.train, None)?;
    let width = ngram_width(&train)?;
    let other = |t: &Option<String>| -> Result<Option<Split>, InferError> {
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
    /// stream windows always come in order (the state is carried between them), read from the
    /// split's ids without copying them.
    ///
    /// # Errors
    /// A zero `batch_size` or `bptt`, or a stream too short for two rows of `batch_size`.
    pub fn batches(
        &self,
        batch_size: usize,
        bptt: usize,
        shuffle: Option<u64>,
    ) -> Result<Box<dyn Iterator<Item = Batch> + '_>, InferError> {
        Ok(match self {
            Split::Ngram { dataset, width } => {
                let width = *width;
                let mut rng = shuffle.map(ChaCha8Rng::seed_from_u64);
                let batches = dataset.batches(batch_size, rng.as_mut())?;
                Box::new(batches.map(move |b| {
                    let (inputs, positions) = left_align(&b.inputs, &b.lengths, b.width, width);
                    Batch {
                        inputs,
                        targets: b.targets,
                        batch: b.batch,
                        width,
                        positions,
                    }
                }))
            }
            Split::Stream { ids } => {
                let batcher = TbpttBatcher::new(ids.as_slice(), batch_size, bptt)?;
                let windows = batcher.num_windows();
                Box::new((0..windows).map_while(move |k| {
                    batcher.window(k).map(|w| Batch {
                        inputs: w.inputs,
                        targets: w.targets,
                        batch: w.batch,
                        width: w.seq_len,
                        positions: Vec::new(),
                    })
                }))
            }
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles . \n\
        First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\
        tabs\tand  spaces \t\n\t indented\n\u{3000}ideographic\n🙂 emoji\n\n\nlone\rcr\r\nthe cat sat on the mat\n";

    fn settings(tokenizer: TokenizerChoice, recipe: Recipe) -> DataSettings {
        DataSettings {
            tokenizer,
            recipe,
            batch_size: 2,
            eval_batch_size: 2,
            bptt: 3,
            vocab_size: 280,
            ..DataSettings::default()
        }
    }

    fn every_setting() -> Vec<DataSettings> {
        let mut all = Vec::new();
        for tokenizer in [
            TokenizerChoice::KerasWord,
            TokenizerChoice::Word,
            TokenizerChoice::Char,
            TokenizerChoice::Bpe,
        ] {
            for recipe in [Recipe::Stream, Recipe::Ngram] {
                all.push(settings(tokenizer, recipe));
            }
        }
        let mut keras = settings(TokenizerChoice::KerasWord, Recipe::Ngram);
        keras.num_words = Some(6);
        keras.oov_token = Some("<OOV>".into());
        all.push(keras);
        all
    }

    /// Every batch of a split, for comparing two preparations.
    fn all_batches(split: &Split, rows: usize, width: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
        split
            .batches(rows, width, Some(3))
            .unwrap()
            .map(|b| (b.inputs, b.targets))
            .collect()
    }

    fn write_files(dir: &Path) -> DataFiles {
        // Two training files, the first without a final newline; validation without one too.
        let (a, b) = SAMPLE.split_at(SAMPLE.find("First").unwrap());
        let a = a.trim_end_matches('\n');
        std::fs::write(dir.join("a.txt"), a).unwrap();
        std::fs::write(dir.join("b.txt"), b.repeat(3)).unwrap();
        std::fs::write(dir.join("valid.txt"), "the cat sat on\nthe mat ok 🙂 then").unwrap();
        DataFiles {
            train: vec![dir.join("a.txt"), dir.join("b.txt")],
            valid: Some(dir.join("valid.txt")),
            test: None,
        }
    }

    #[test]
    fn files_read_in_pieces_smaller_than_a_line_give_the_whole_text_results() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path());
        for d in every_setting() {
            let texts = load_texts(&d, &files).unwrap();
            let whole = fit_tokenizer(&d, &texts.train).unwrap();
            let expected = prepare(&d, &whole, &texts).unwrap();
            for piece_bytes in [1, 5, 64, READ_PIECE_BYTES] {
                let what = format!(
                    "{:?} {:?} in pieces of {piece_bytes}",
                    d.tokenizer, d.recipe
                );
                let streamed = fit_tokenizer_in_pieces(&d, &files, piece_bytes).unwrap();
                assert_eq!(
                    streamed.to_json().unwrap(),
                    whole.to_json().unwrap(),
                    "{what}"
                );
                let mut notes = Vec::new();
                let got = prepare_files_in_pieces(
                    &d,
                    &streamed,
                    &files,
                    &mut |l| notes.push(l.to_owned()),
                    piece_bytes,
                )
                .unwrap();
                assert_eq!(got.ngram_width, expected.ngram_width, "{what}");
                let width = expected.ngram_width.unwrap_or(d.bptt);
                for (g, e) in [
                    (Some(&got.train), Some(&expected.train)),
                    (got.valid.as_ref(), expected.valid.as_ref()),
                ] {
                    let (g, e) = (g.unwrap(), e.unwrap());
                    if let (Split::Stream { ids: gi }, Split::Stream { ids: ei }) = (g, e) {
                        assert_eq!(gi, ei, "{what}");
                    }
                    assert_eq!(all_batches(g, 2, width), all_batches(e, 2, width), "{what}");
                }
                assert_eq!(
                    notes.len(),
                    usize::from(d.recipe == Recipe::Stream),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn the_stream_recipe_says_how_many_ids_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path());
        let d = settings(TokenizerChoice::Word, Recipe::Stream);
        let tokenizer = fit_tokenizer_on_files(&d, &files).unwrap();
        let mut notes = Vec::new();
        let prepared =
            prepare_files(&d, &tokenizer, &files, &mut |l| notes.push(l.to_owned())).unwrap();
        let (Split::Stream { ids: train }, Some(Split::Stream { ids: valid })) =
            (&prepared.train, &prepared.valid)
        else {
            panic!("stream splits expected");
        };
        let total = train.len() + valid.len();
        let mib = (total * 4) as f64 / (1024.0 * 1024.0);
        assert_eq!(
            notes,
            [format!(
                "stream recipe: {total} tokens ({} training, {} validation), {mib:.1} MiB of ids",
                train.len(),
                valid.len()
            )]
        );
        assert_eq!(train.capacity(), train.len(), "allocated once, exactly");
    }

    #[test]
    fn batcher_errors_are_reported_not_dropped() {
        let short = Split::Stream { ids: vec![1, 2, 3] };
        let err = short.batches(2, 3, None).err().unwrap().to_string();
        assert!(err.contains("too short for batch size 2"), "{err}");
        let ids = Split::Stream {
            ids: (0..20).collect(),
        };
        assert!(ids.batches(0, 3, None).is_err());
        assert!(ids.batches(2, 0, None).is_err());
        assert_eq!(ids.batches(2, 3, None).unwrap().count(), 3);
        let dataset = NgramDataset::new(&[vec![1u32, 2, 3]], None, 0).unwrap();
        let ngram = Split::Ngram { dataset, width: 3 };
        let err = ngram.batches(0, 3, None).err().unwrap().to_string();
        assert!(err.contains("batch size"), "{err}");
    }

    #[test]
    fn a_validation_file_too_short_for_one_batch_is_refused_before_training() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = write_files(dir.path());
        let valid = dir.path().join("short.txt");
        std::fs::write(&valid, "the cat\n").unwrap();
        files.valid = Some(valid);
        let d = settings(TokenizerChoice::Word, Recipe::Stream);
        let tokenizer = fit_tokenizer_on_files(&d, &files).unwrap();
        let err = prepare_files(&d, &tokenizer, &files, &mut |_| {})
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("short.txt") && err.contains("too short for one batch of 2"),
            "{err}"
        );
    }

    #[test]
    fn reading_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("latin1.txt");
        std::fs::write(&bad, b"ok line\nna\xefve\n").unwrap();
        let files = DataFiles {
            train: vec![bad],
            valid: None,
            test: None,
        };
        for d in every_setting() {
            let err = fit_tokenizer_in_pieces(&d, &files, 3)
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("latin1.txt\" is not valid UTF-8 at byte 10"),
                "{err}"
            );
        }
        let missing = DataFiles {
            train: vec![dir.path().join("missing.txt")],
            valid: None,
            test: None,
        };
        let d = settings(TokenizerChoice::Word, Recipe::Stream);
        let err = fit_tokenizer_on_files(&d, &missing)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing.txt"), "{err}");
        let blank = dir.path().join("blank.txt");
        std::fs::write(&blank, " \n\n\t\n").unwrap();
        let blank = DataFiles {
            train: vec![blank],
            valid: None,
            test: None,
        };
        for d in every_setting() {
            let err = fit_tokenizer_on_files(&d, &blank)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("the training text is empty"), "{err}");
        }
    }
}
