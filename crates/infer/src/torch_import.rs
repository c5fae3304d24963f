//! `lstm-lm import`: a run folder from a PyTorch word_language_model state dict in a
//! safetensors file (names and layout in [`crate::torch_export`]) and a tokenizer.json.
//!
//! The model's shape comes from the tensors: `encoder.weight` gives vocabulary and embedding
//! width, `rnn.weight_hh_l0` the hidden width and the cell (4, 3 or 1 gate blocks: LSTM, GRU,
//! RNN), the `rnn.*_l{k}` names the number of layers, and a missing `decoder.weight` means tied
//! weights. Every name and shape is checked before anything is built; a file that does not fit
//! is refused with the missing, unexpected and misshapen tensors listed. A file written by
//! `lstm-lm export` also brings its run's settings (recipe, n-gram width, dropout...).
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lstm_lm_model::{CellKind, LanguageModelConfig, NamedTensor};
use lstm_lm_text_prep::{TextTokenizer, TokenizerKind};
use safetensors::{Dtype, SafeTensors};

use crate::atomic::write_atomic;
use crate::run_dir::{DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir, check_format};
use crate::settings::{Recipe, TokenizerChoice};
use crate::torch_export::{TORCH_EXPORT_FORMAT, TORCH_EXPORT_FORMAT_VERSION, cell_name};
use crate::{InferError, TrainSettings, model_bytes};

/// The `backend` an imported run's `config.json` names (it was trained elsewhere).
pub const IMPORTED_BACKEND: &str = "imported";

/// What `lstm-lm import` is given.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The safetensors file holding the state dict.
    pub weights: PathBuf,
    /// A tokenizer.json written by lstm-lm (`lstm-lm tokenize` or a run folder's).
    pub tokenizer: PathBuf,
    /// The run folder to create; it must not exist yet or be empty.
    pub out: PathBuf,
    /// The cell the weights are expected to be; `None` takes what the shapes say.
    pub cell: Option<CellKind>,
}

/// The model shape read from the tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    vocab: usize,
    embedding: usize,
    hidden: usize,
    layers: usize,
    cell: CellKind,
    tied: bool,
}

/// Creates the run folder `opts.out` from the state dict and tokenizer; returns its
/// `config.json`.
pub fn import_torch(opts: &ImportOptions) -> Result<RunConfig, InferError> {
    let tokenizer = TextTokenizer::load(&opts.tokenizer)?;
    let bytes = std::fs::read(&opts.weights).map_err(|e| InferError::io(&opts.weights, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| {
        bad_weights(
            &opts.weights,
            format!("is not a safetensors file ({e}); save the state dict with safetensors.torch.save_file"),
        )
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad_weights(&opts.weights, format!("is not a safetensors file ({e})")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let ours = read_tag(&opts.weights, &metadata)?;
    let shapes: BTreeMap<String, (Vec<usize>, Dtype)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.shape().to_vec(), view.dtype())))
        .collect();
    let shape = infer_shape(&opts.weights, &shapes, opts.cell)?;
    if shape.vocab != tokenizer.vocab_size() {
        return Err(InferError::Input(format!(
            "encoder.weight in \"{}\" has {} rows but the tokenizer \"{}\" has {} ids: give the tokenizer the model was trained with",
            opts.weights.display(),
            shape.vocab,
            opts.tokenizer.display(),
            tokenizer.vocab_size()
        )));
    }
    let mut settings = match ours.then(|| metadata.get("settings")).flatten() {
        Some(json) => serde_json::from_str::<TrainSettings>(json).map_err(|e| {
            bad_weights(
                &opts.weights,
                format!("has settings in its metadata that cannot be read ({e})"),
            )
        })?,
        None => TrainSettings {
            description: format!("imported from {}", opts.weights.display()),
            ..TrainSettings::default()
        },
    };
    let ngram_width = if ours {
        metadata.get("ngram_width").and_then(|w| w.parse().ok())
    } else {
        None
    };
    settings.data.tokenizer = match tokenizer.kind() {
        TokenizerKind::KerasWord => TokenizerChoice::KerasWord,
        TokenizerKind::Word => TokenizerChoice::Word,
        TokenizerKind::Char => TokenizerChoice::Char,
        TokenizerKind::Bpe => TokenizerChoice::Bpe,
    };
    if settings.data.tokenizer != TokenizerChoice::KerasWord {
        settings.data.num_words = None;
        settings.data.oov_token = None;
    }
    if settings.data.recipe == Recipe::Ngram && ngram_width.is_none() {
        settings.data.recipe = Recipe::Stream;
    }
    let m = &mut settings.model;
    m.cell = shape.cell;
    m.embedding_size = shape.embedding;
    m.hidden_size = shape.hidden;
    m.num_layers = shape.layers;
    m.tie_weights = shape.tied;
    settings.validate().map_err(|e| {
        bad_weights(
            &opts.weights,
            format!("gives settings that cannot be used: {e}"),
        )
    })?;
    let model_config: LanguageModelConfig = settings.model.model_config(shape.vocab);
    model_config
        .validate()
        .map_err(|e| bad_weights(&opts.weights, e.to_string()))?;
    let tensors = named_tensors(&file, &opts.weights)?;
    let device = Device::flex();
    let model = model_config
        .init(&device)?
        .load_torch_state_dict(&tensors, &device)?;
    let config = RunConfig {
        format: RUN_FORMAT.to_string(),
        version: RUN_FORMAT_VERSION,
        settings,
        model: model_config,
        ngram_width,
        data: DataFiles::default(),
        data_digests: Vec::new(),
        backend: IMPORTED_BACKEND.to_string(),
    };
    write_run(&opts.out, &config, &tokenizer, &model_bytes(&model)?)?;
    Ok(config)
}

/// Whether the file is one of our exports (a newer version of it is an error; another tag,
/// such as the `"pt"` PyTorch writes, is not ours and fine).
fn read_tag(path: &Path, metadata: &HashMap<String, String>) -> Result<bool, InferError> {
    let format = metadata.get("format").map(String::as_str).unwrap_or("");
    if format != TORCH_EXPORT_FORMAT {
        return Ok(false);
    }
    let version = metadata.get("version").map(String::as_str).unwrap_or("");
    let version: u32 = version.parse().map_err(|_| {
        bad_weights(
            path,
            format!("has format {TORCH_EXPORT_FORMAT} without a valid version ({version:?})"),
        )
    })?;
    check_format(
        path,
        format,
        version,
        TORCH_EXPORT_FORMAT,
        TORCH_EXPORT_FORMAT_VERSION,
    )?;
    Ok(true)
}

fn bad_weights(path: &Path, why: String) -> InferError {
    InferError::Input(format!("\"{}\" {why}", path.display()))
}

/// The model shape the tensors describe, after checking every name and shape.
fn infer_shape(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Dtype)>,
    cell: Option<CellKind>,
) -> Result<Shape, InferError> {
    let dims = |name: &str| tensors.get(name).map(|(s, _)| s.as_slice());
    let not_a_state_dict = |why: String| {
        bad_weights(
            path,
            format!("is not a word_language_model state dict: {why}"),
        )
    };
    let (vocab, embedding) = match dims("encoder.weight") {
        Some(&[v, e]) => (v, e),
        Some(other) => {
            return Err(not_a_state_dict(format!(
                "encoder.weight has shape {other:?}, expected [vocab, embedding]"
            )));
        }
        None => return Err(names_error(path, tensors, &expected_names(1, true))),
    };
    let layers = (0..)
        .take_while(|k| tensors.contains_key(&format!("rnn.weight_ih_l{k}")))
        .count();
    let (hidden, gates) = match dims("rnn.weight_hh_l0") {
        Some(&[rows, h]) if h > 0 && rows % h == 0 => (h, rows / h),
        Some(other) => {
            return Err(not_a_state_dict(format!(
                "rnn.weight_hh_l0 has shape {other:?}, expected [gates x hidden, hidden]"
            )));
        }
        None => {
            return Err(names_error(
                path,
                tensors,
                &expected_names(layers.max(1), true),
            ));
        }
    };
    let found = match gates {
        4 => CellKind::Lstm,
        3 => CellKind::Gru,
        1 => CellKind::Rnn,
        g => {
            return Err(not_a_state_dict(format!(
                "rnn.weight_hh_l0 has {g} gate blocks of {hidden} rows; LSTM has 4, GRU 3, RNN 1"
            )));
        }
    };
    if let Some(asked) = cell
        && asked != found
    {
        return Err(bad_weights(
            path,
            format!(
                "holds {} weights (rnn.weight_hh_l0 has {gates} gate blocks) but --cell says {}",
                cell_name(found),
                cell_name(asked)
            ),
        ));
    }
    let tied = !tensors.contains_key("decoder.weight");
    if tied && embedding != hidden {
        return Err(not_a_state_dict(format!(
            "there is no decoder.weight, so the output layer would be tied to encoder.weight, but the embedding size {embedding} is not the hidden size {hidden}: add decoder.weight [vocab, {hidden}]"
        )));
    }
    let expected = expected_names(layers.max(1), tied);
    let names_fit = expected.len() == tensors.len()
        && expected
            .iter()
            .all(|(n, _)| tensors.contains_key(n.as_str()));
    if !names_fit {
        return Err(names_error(path, tensors, &expected));
    }
    let shape = Shape {
        vocab,
        embedding,
        hidden,
        layers,
        cell: found,
        tied,
    };
    let mut wrong = Vec::new();
    for (name, want) in expected_shapes(&shape) {
        let (have, dtype) = &tensors[&name];
        if *have != want {
            wrong.push(format!("{name} is {have:?}, expected {want:?}"));
        }
        if !matches!(dtype, Dtype::F32 | Dtype::F64) {
            return Err(bad_weights(
                path,
                format!(
                    "holds {name} as {dtype:?}: save the state dict as float32 (model.float()) and export again"
                ),
            ));
        }
    }
    if !wrong.is_empty() {
        return Err(not_a_state_dict(format!(
            "shapes do not fit one model with vocab {vocab}, embedding {embedding}, hidden {hidden}, {layers} {} layer(s): {}",
            cell_name(found),
            wrong.join("; ")
        )));
    }
    Ok(shape)
}

/// The names a state dict of `layers` layers has, without shapes (`()` placeholders).
fn expected_names(layers: usize, tied: bool) -> Vec<(String, ())> {
    let mut names = vec![("encoder.weight".to_string(), ())];
    for k in 0..layers {
        for part in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            names.push((format!("rnn.{part}_l{k}"), ()));
        }
    }
    if !tied {
        names.push(("decoder.weight".to_string(), ()));
    }
    names.push(("decoder.bias".to_string(), ()));
    names
}

/// Every tensor's name and the shape the model described by `s` needs.
fn expected_shapes(s: &Shape) -> Vec<(String, Vec<usize>)> {
    let rows = s.cell.gates() * s.hidden;
    let mut out = vec![("encoder.weight".to_string(), vec![s.vocab, s.embedding])];
    for k in 0..s.layers {
        let input = if k == 0 { s.embedding } else { s.hidden };
        out.push((format!("rnn.weight_ih_l{k}"), vec![rows, input]));
        out.push((format!("rnn.weight_hh_l{k}"), vec![rows, s.hidden]));
        out.push((format!("rnn.bias_ih_l{k}"), vec![rows]));
        out.push((format!("rnn.bias_hh_l{k}"), vec![rows]));
    }
    if !s.tied {
        out.push(("decoder.weight".to_string(), vec![s.vocab, s.hidden]));
    }
    out.push(("decoder.bias".to_string(), vec![s.vocab]));
    out
}

/// The error for names that do not fit: the missing and the unexpected ones, each sorted.
fn names_error(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Dtype)>,
    expected: &[(String, ())],
) -> InferError {
    let missing: Vec<&str> = expected
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !tensors.contains_key(*n))
        .collect();
    let unexpected: Vec<&str> = tensors
        .keys()
        .map(String::as_str)
        .filter(|n| !expected.iter().any(|(e, _)| e == n))
        .collect();
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    bad_weights(
        path,
        format!(
            "is not a word_language_model state dict (encoder.*, rnn.*_l{{k}}, decoder.*): missing {}; unexpected {}",
            list(&missing),
            list(&unexpected)
        ),
    )
}

/// Every tensor as f32 values, once names, types and shapes are checked.
fn named_tensors(file: &SafeTensors<'_>, path: &Path) -> Result<Vec<NamedTensor>, InferError> {
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| {
                        let b: [u8; 8] = c.try_into().unwrap_or_default();
                        f64::from_le_bytes(b) as f32
                    })
                    .collect(),
                other => {
                    return Err(bad_weights(
                        path,
                        format!("holds {name} as {other:?}: save it as float32"),
                    ));
                }
            };
            if let Some(bad) = data.iter().find(|v| !v.is_finite()) {
                return Err(bad_weights(
                    path,
                    format!("holds {name} with a value that is not a finite number ({bad})"),
                ));
            }
            Ok(NamedTensor {
                name,
                shape: view.shape().to_vec(),
                data,
            })
        })
        .collect()
}

/// Writes the run folder: tokenizer and weights first, `config.json` last, so that a folder
/// cut short is never taken for a run.
fn write_run(
    out: &Path,
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    weights: &[u8],
) -> Result<(), InferError> {
    let occupied = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => true,
    };
    if occupied {
        return Err(InferError::Input(format!(
            "--out \"{}\" already exists and is not an empty folder: give a new folder",
            out.display()
        )));
    }
    let run = RunDir::new(out);
    run.create()?;
    run.save_tokenizer(tokenizer)?;
    write_atomic(&run.model_path(), weights)?;
    run.save_config(config)
}
