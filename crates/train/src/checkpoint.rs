//! Resumable checkpoints: weights, optimizer state, loop position and carried recurrent state.
//!
//! A checkpoint folder holds `model.bpk` and `optimizer.bpk` (burnpack), `trainer.json` (the
//! loop position, tagged [`TRAINER_FORMAT`]) and, when the stream recipe carries state into
//! the next batch, `state.safetensors` (tensors `layers.{k}.hidden` and `layers.{k}.cell`,
//! `[batch, hidden]` f32, tagged [`STATE_FORMAT`] in the safetensors metadata) and, once
//! NT-ASGD has averaged a step, `averaged.bpk` (the running mean of the weights).
//! `checkpoint.json` (tagged [`POINTER_FORMAT`]) names the newest complete folder.
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use lstm_lm_model::{LanguageModel, LanguageModelConfig, LayerState, RecurrentState};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::atomic::{sync_dir, write_atomic};
use crate::run_dir::{RunDir, check_format, load_weights, model_bytes};
use crate::schedule::ScheduleState;

/// Format tag of `trainer.json`.
pub const TRAINER_FORMAT: &str = "lstm-lm-trainer";
/// Current version of `trainer.json`. Version 2 added `valid_losses` and `asgd` (NT-ASGD);
/// version 1 files read with an empty history and no averaging.
pub const TRAINER_FORMAT_VERSION: u32 = 2;
/// Format tag of `checkpoint.json`.
pub const POINTER_FORMAT: &str = "lstm-lm-checkpoint-pointer";
/// Current version of `checkpoint.json`.
pub const POINTER_FORMAT_VERSION: u32 = 1;
/// Format tag in the metadata of `state.safetensors`.
pub const STATE_FORMAT: &str = "lstm-lm-carried-state";
/// Current version of `state.safetensors`.
pub const STATE_FORMAT_VERSION: u32 = 1;
/// The NT-ASGD running mean of the weights in a checkpoint folder (burnpack, as `model.bpk`),
/// present when the trainer state says averaging has started.
const AVERAGED_FILE: &str = "averaged.bpk";
/// The carried state's file in a checkpoint folder.
const STATE_FILE: &str = "state.safetensors";
/// Where checkpoints written before version 1 kept the carried state (not read any more).
const OLD_STATE_FILE: &str = "state.bin";

/// Where the loop stands: everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Epochs fully completed.
    pub epochs_done: usize,
    /// Batches done in the epoch in progress (0 at an epoch boundary).
    pub batches_done: usize,
    /// Optimizer steps since the start of the run.
    pub global_step: u64,
    /// Learning-rate schedule state.
    pub schedule: ScheduleState,
    /// Best validation loss so far.
    pub best_valid_loss: Option<f64>,
    /// Epochs since the validation loss last improved (early stopping).
    pub epochs_without_improvement: usize,
    /// Seconds of training before this checkpoint (across resumes).
    pub elapsed_s: f64,
    /// Sum of training loss and token count in the epoch in progress.
    pub epoch_loss_sum: f64,
    /// Tokens counted in `epoch_loss_sum`.
    pub epoch_tokens: u64,
    /// Whether `state.safetensors` holds the recurrent state carried into the next batch.
    pub has_carried_state: bool,
    /// Training tokens (targets) seen since the start of the run (0 in checkpoints written
    /// before lstm-lm counted them).
    #[serde(default)]
    pub tokens_seen: u64,
    /// Validation loss of every epoch so far (NT-ASGD's trigger reads it; empty before
    /// version 2).
    #[serde(default)]
    pub valid_losses: Vec<f64>,
    /// NT-ASGD: when averaging started and how many steps the mean in `averaged.bpk` holds;
    /// none while plain steps run.
    #[serde(default)]
    pub asgd: Option<crate::asgd::AsgdProgress>,
}

/// `trainer.json`: the format tag, then the loop position. Files written before the tag
/// existed read as version 0 (same fields).
#[derive(Debug, Serialize, Deserialize)]
struct TrainerFile {
    #[serde(default)]
    format: String,
    #[serde(default)]
    version: u32,
    #[serde(flatten)]
    state: TrainerState,
}

/// `checkpoint.json`. Files written before the tag existed read as version 0.
#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    #[serde(default)]
    format: String,
    #[serde(default)]
    version: u32,
    latest: String,
}

/// A checkpoint loaded back.
pub struct LoadedCheckpoint {
    /// The model.
    pub model: LanguageModel,
    /// Optimizer state bytes (burnpack), to apply to a freshly built optimizer.
    pub optimizer: Vec<u8>,
    /// Loop position.
    pub trainer: TrainerState,
    /// Carried recurrent state, if one was saved.
    pub carried: Option<RecurrentState>,
    /// NT-ASGD's running mean of the weights, when averaging has started.
    pub averaged: Option<LanguageModel>,
}

/// Saves and loads the run's checkpoints.
pub struct Checkpoint;

impl Checkpoint {
    /// Writes a complete checkpoint folder, then switches `checkpoint.json` to it and removes
    /// older folders. A crash at any point leaves the previous checkpoint loadable.
    pub fn save_atomic(
        run: &RunDir,
        model: &LanguageModel,
        optimizer: &ModuleOptimizer,
        trainer: &TrainerState,
        carried: Option<&RecurrentState>,
    ) -> Result<PathBuf, TrainError> {
        Self::save_with_fault(run, model, optimizer, trainer, carried, None, None)
    }

    /// As [`save_atomic`](Self::save_atomic), with NT-ASGD's running mean of the weights
    /// (`averaged.bpk`) when averaging has started.
    pub fn save_atomic_with_average(
        run: &RunDir,
        model: &LanguageModel,
        optimizer: &ModuleOptimizer,
        trainer: &TrainerState,
        carried: Option<&RecurrentState>,
        averaged: Option<&LanguageModel>,
    ) -> Result<PathBuf, TrainError> {
        Self::save_with_fault(run, model, optimizer, trainer, carried, averaged, None)
    }

    /// As [`save_atomic`](Self::save_atomic); `fail_after` stops after that many files, as a
    /// crash would (tests only).
    #[doc(hidden)]
    pub fn save_with_fault(
        run: &RunDir,
        model: &LanguageModel,
        optimizer: &ModuleOptimizer,
        trainer: &TrainerState,
        carried: Option<&RecurrentState>,
        averaged: Option<&LanguageModel>,
        fail_after: Option<usize>,
    ) -> Result<PathBuf, TrainError> {
        let parent = run.root().join("checkpoints");
        std::fs::create_dir_all(&parent).map_err(|e| TrainError::io(&parent, e))?;
        let name = format!("step-{:010}", trainer.global_step);
        let dir = parent.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let mut trainer = trainer.clone();
        trainer.has_carried_state = carried.is_some();
        let mut files: Vec<(&str, Vec<u8>)> = vec![
            ("model.bpk", model_bytes(model)?),
            (
                "optimizer.bpk",
                optimizer
                    .into_bytes()
                    .map_err(|e| {
                        TrainError::RunDir(format!("cannot serialize the optimizer state: {e}"))
                    })?
                    .to_vec(),
            ),
        ];
        if let Some(state) = carried {
            files.push((STATE_FILE, state_bytes(state)?));
        }
        if let Some(mean) = averaged {
            files.push((AVERAGED_FILE, model_bytes(mean)?));
        }
        let trainer_json = serde_json::to_vec_pretty(&TrainerFile {
            format: TRAINER_FORMAT.into(),
            version: TRAINER_FORMAT_VERSION,
            state: trainer,
        })
        .map_err(|e| TrainError::RunDir(format!("cannot serialize trainer state: {e}")))?;
        files.push(("trainer.json", trainer_json));
        for (i, (file, bytes)) in files.iter().enumerate() {
            if fail_after == Some(i) {
                return Err(TrainError::RunDir("simulated crash".into()));
            }
            write_atomic(&dir.join(file), bytes)?;
        }
        if fail_after == Some(files.len()) {
            return Err(TrainError::RunDir("simulated crash".into()));
        }
        let pointer = serde_json::to_vec(&Pointer {
            format: POINTER_FORMAT.into(),
            version: POINTER_FORMAT_VERSION,
            latest: format!("checkpoints/{name}"),
        })
        .map_err(|e| TrainError::RunDir(e.to_string()))?;
        write_atomic(&run.checkpoint_pointer(), &pointer)?;
        // Older folders are garbage once the pointer names the new one.
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                if entry.file_name() != name.as_str() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let _ = sync_dir(&parent);
        Ok(dir)
    }

    /// The folder `checkpoint.json` names, if the run has a checkpoint.
    pub fn latest(run: &RunDir) -> Result<Option<PathBuf>, TrainError> {
        let pointer = run.checkpoint_pointer();
        if !pointer.exists() {
            return Ok(None);
        }
        let text = std::fs::read(&pointer).map_err(|e| TrainError::io(&pointer, e))?;
        let p: Pointer = serde_json::from_slice(&text).map_err(|e| {
            TrainError::RunDir(format!("\"{}\" is corrupt ({e})", pointer.display()))
        })?;
        check_format(
            &pointer,
            &p.format,
            p.version,
            POINTER_FORMAT,
            POINTER_FORMAT_VERSION,
        )?;
        // Only a folder under checkpoints/ is a checkpoint: never follow a pointer elsewhere.
        let latest = Path::new(&p.latest);
        let parts: Vec<Component> = latest.components().collect();
        let inside = matches!(
            parts.as_slice(),
            [Component::Normal(a), Component::Normal(_)] if *a == "checkpoints"
        );
        if !inside {
            return Err(TrainError::RunDir(format!(
                "\"{}\" names {:?}, not a folder in checkpoints/: restore it",
                pointer.display(),
                p.latest
            )));
        }
        Ok(Some(run.root().join(latest)))
    }

    /// Loads the newest complete checkpoint.
    pub fn load(
        run: &RunDir,
        config: &LanguageModelConfig,
        device: &Device,
    ) -> Result<LoadedCheckpoint, TrainError> {
        let dir = Self::latest(run)?.ok_or_else(|| {
            TrainError::RunDir(format!(
                "\"{}\" has no checkpoint to resume from (no checkpoint.json): start a new run instead",
                run.root().display()
            ))
        })?;
        let model = load_weights(&dir.join("model.bpk"), config, device)?;
        let optimizer = read(&dir.join("optimizer.bpk"))?;
        let trainer_path = dir.join("trainer.json");
        let file: TrainerFile = serde_json::from_slice(&read(&trainer_path)?).map_err(|e| {
            TrainError::RunDir(format!("\"{}\" is corrupt ({e})", trainer_path.display()))
        })?;
        check_format(
            &trainer_path,
            &file.format,
            file.version,
            TRAINER_FORMAT,
            TRAINER_FORMAT_VERSION,
        )?;
        let trainer = file.state;
        let carried = if trainer.has_carried_state {
            if file.version == 0 {
                return Err(TrainError::RunDir(format!(
                    "\"{}\" holds its carried state in {OLD_STATE_FILE}, written by an older lstm-lm that this version does not read: resume it with that version, or train again",
                    dir.display()
                )));
            }
            let path = dir.join(STATE_FILE);
            Some(state_from_bytes(&read(&path)?, &path, config, device)?)
        } else {
            None
        };
        // Averaging may have been switched on at the end of the last epoch, before any step.
        let averaged = match trainer.asgd {
            Some(p) if p.averaged_steps > 0 => {
                Some(load_weights(&dir.join(AVERAGED_FILE), config, device)?)
            }
            _ => None,
        };
        Ok(LoadedCheckpoint {
            model,
            optimizer,
            trainer,
            carried,
            averaged,
        })
    }

    /// Applies saved optimizer bytes to a freshly built optimizer.
    pub fn restore_optimizer(
        optimizer: ModuleOptimizer,
        bytes: Vec<u8>,
    ) -> Result<ModuleOptimizer, TrainError> {
        // burn asserts on some malformed records (a tensor without a parameter id) instead of
        // returning an error: a damaged file must still be an error, not a crash.
        let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            optimizer.from_bytes(Bytes::from_bytes_vec(bytes))
        }))
        .map_err(|_| "its records do not hold together".to_owned());
        restored
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| TrainError::RunDir(format!("the saved optimizer state is corrupt: {e}")))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(|e| {
        TrainError::RunDir(format!(
            "\"{}\" cannot be read ({e}): the checkpoint is incomplete",
            path.display()
        ))
    })
}

/// The carried state as safetensors bytes: `layers.{k}.hidden` and `layers.{k}.cell` (LSTM),
/// `[batch, hidden]` f32 each, with the format tag and version in the metadata.
fn state_bytes(state: &RecurrentState) -> Result<Vec<u8>, TrainError> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, layer) in state.layers.iter().enumerate() {
        let parts = [
            ("hidden", Some(&layer.hidden)),
            ("cell", layer.cell.as_ref()),
        ];
        for (part, tensor) in parts {
            let Some(tensor) = tensor else { continue };
            let values = tensor
                .to_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| {
                    TrainError::RunDir(format!(
                        "cannot read the carried state (layer {k} {part}) back from the device: {e:?}"
                    ))
                })?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((format!("layers.{k}.{part}"), tensor.dims().to_vec(), bytes));
        }
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::RunDir(format!("cannot serialize the carried state: {e}")))?;
    let metadata = HashMap::from([
        ("format".to_string(), STATE_FORMAT.to_string()),
        ("version".to_string(), STATE_FORMAT_VERSION.to_string()),
    ]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| TrainError::RunDir(format!("cannot serialize the carried state: {e}")))
}

/// Reads `state.safetensors` back, checking its tag and every tensor's name, type and shape
/// against the model configuration before building any tensor.
fn state_from_bytes(
    bytes: &[u8],
    path: &Path,
    config: &LanguageModelConfig,
    device: &Device,
) -> Result<RecurrentState, TrainError> {
    let bad = |why: String| {
        TrainError::RunDir(format!(
            "\"{}\" {why}: the checkpoint is damaged; restore it, or pass --accept-changed-data to restart the epoch without it",
            path.display()
        ))
    };
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("is not a valid safetensors file ({e})")))?;
    let tags = header.metadata().clone().unwrap_or_default();
    let format = tags.get("format").map(String::as_str).unwrap_or("");
    let version = tags.get("version").map(String::as_str).unwrap_or("");
    let version: u32 = version
        .parse()
        .map_err(|_| bad(format!("has no valid format version ({version:?})")))?;
    if format.is_empty() {
        return Err(bad("has no format tag".into()));
    }
    check_format(path, format, version, STATE_FORMAT, STATE_FORMAT_VERSION)?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("is not a valid safetensors file ({e})")))?;
    let has_cell = config.cell.has_cell();
    let per_layer = if has_cell { 2 } else { 1 };
    let expected_count = config.num_layers.saturating_mul(per_layer);
    if file.len() != expected_count {
        return Err(bad(format!(
            "holds {} tensors, the model's state has {expected_count}",
            file.len()
        )));
    }
    let mut batch = None;
    // Per layer: the hidden and cell bytes and the layer's width.
    type LayerBytes<'a> = (&'a [u8], Option<&'a [u8]>, usize);
    let mut raw: Vec<LayerBytes> = Vec::with_capacity(config.num_layers);
    for k in 0..config.num_layers {
        let h = config.layer_hidden_size(k);
        let hidden = state_tensor(&file, &format!("layers.{k}.hidden"), h, &mut batch, &bad)?;
        let cell = if has_cell {
            let name = format!("layers.{k}.cell");
            Some(state_tensor(&file, &name, h, &mut batch, &bad)?)
        } else {
            None
        };
        raw.push((hidden, cell, h));
    }
    let batch = batch.unwrap_or(1);
    // Every shape is checked and backed by the file's bytes: build the tensors.
    let tensor = |data: &[u8], h: usize| {
        let values: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Tensor::<2>::from_data(TensorData::new(values, [batch, h]), device)
    };
    let layers = raw
        .into_iter()
        .map(|(hidden, cell, h)| LayerState {
            hidden: tensor(hidden, h),
            cell: cell.map(|c| tensor(c, h)),
        })
        .collect();
    Ok(RecurrentState { layers })
}

/// The bytes of tensor `name` once it is checked to be F32 `[batch, hidden]`, `batch` at least
/// 1 and the same for every tensor.
fn state_tensor<'a>(
    file: &SafeTensors<'a>,
    name: &str,
    hidden: usize,
    batch: &mut Option<usize>,
    bad: &dyn Fn(String) -> TrainError,
) -> Result<&'a [u8], TrainError> {
    let t = file
        .tensor(name)
        .map_err(|_| bad(format!("has no tensor {name}")))?;
    if t.dtype() != Dtype::F32 {
        return Err(bad(format!("{name} is {:?}, not F32", t.dtype())));
    }
    let b = match t.shape() {
        [b, h] if *h == hidden && *b >= 1 => *b,
        shape => {
            return Err(bad(format!(
                "{name} has shape {shape:?}, the model's state is [batch >= 1, {hidden}]"
            )));
        }
    };
    if *batch.get_or_insert(b) != b {
        return Err(bad(format!("{name} has {b} rows, other layers differ")));
    }
    Ok(t.data())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lstm_lm_model::CellKind;

    fn config(cell: CellKind) -> LanguageModelConfig {
        LanguageModelConfig::new(10)
            .with_cell(cell)
            .with_hidden_size(3)
            .with_num_layers(2)
    }

    fn state(cell: CellKind, batch: usize) -> RecurrentState {
        let device = Device::flex();
        let t = |seed: f32| {
            let values: Vec<f32> = (0..batch * 3).map(|i| seed + i as f32 * 0.5).collect();
            Tensor::<2>::from_data(TensorData::new(values, [batch, 3]), &device)
        };
        RecurrentState {
            layers: (0..2)
                .map(|k| LayerState {
                    hidden: t(k as f32),
                    cell: cell.has_cell().then(|| t(-(k as f32))),
                })
                .collect(),
        }
    }

    fn values(s: &RecurrentState) -> Vec<Vec<f32>> {
        s.layers
            .iter()
            .flat_map(|l| std::iter::once(&l.hidden).chain(l.cell.iter()))
            .map(|t| t.to_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    /// Writes tensors with the given names, shapes and metadata as safetensors bytes.
    fn crafted(tensors: &[(&str, Vec<usize>)], metadata: &[(&str, &str)]) -> Vec<u8> {
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    s.clone(),
                    vec![0u8; 4 * s.iter().product::<usize>()],
                )
            })
            .collect();
        let views: Vec<(&str, TensorView)> = data
            .iter()
            .map(|(n, s, b)| {
                (
                    n.as_str(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let metadata = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        safetensors::serialize(views, Some(metadata)).unwrap()
    }

    const TAGS: &[(&str, &str)] = &[("format", STATE_FORMAT), ("version", "1")];

    #[test]
    fn carried_state_round_trips_with_named_tensors_and_a_tag() {
        for cell in [CellKind::Lstm, CellKind::Gru] {
            let s = state(cell, 4);
            let bytes = state_bytes(&s).unwrap();
            let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
            let tags = header.metadata().clone().unwrap();
            assert_eq!(tags["format"], STATE_FORMAT);
            assert_eq!(tags["version"], "1");
            let file = SafeTensors::deserialize(&bytes).unwrap();
            assert_eq!(file.tensor("layers.1.hidden").unwrap().shape(), &[4, 3]);
            assert_eq!(file.tensor("layers.1.cell").is_ok(), cell.has_cell());
            let back =
                state_from_bytes(&bytes, Path::new("s"), &config(cell), &Device::flex()).unwrap();
            assert_eq!(values(&back), values(&s), "{cell:?}");
        }
    }

    #[test]
    fn crafted_state_files_are_errors_not_panics() {
        let gru = config(CellKind::Gru);
        let ok_names = ["layers.0.hidden", "layers.1.hidden"];
        let shaped = |shapes: [Vec<usize>; 2]| -> Vec<(&str, Vec<usize>)> {
            ok_names.iter().copied().zip(shapes).collect()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // Batch 0: once `chunks_exact(0)`.
            (
                crafted(&shaped([vec![0, 3], vec![0, 3]]), TAGS),
                "shape [0, 3]",
            ),
            (
                crafted(&shaped([vec![2, 4], vec![2, 4]]), TAGS),
                "shape [2, 4]",
            ),
            (crafted(&shaped([vec![2, 3], vec![5, 3]]), TAGS), "5 rows"),
            (
                crafted(&shaped([vec![2, 3, 1], vec![2, 3]]), TAGS),
                "shape [2, 3, 1]",
            ),
            (
                crafted(&shaped([vec![2, 3], vec![2, 3]]), &[]),
                "no valid format version",
            ),
            (
                crafted(
                    &shaped([vec![2, 3], vec![2, 3]]),
                    &[("format", "other"), ("version", "1")],
                ),
                "format 'other'",
            ),
            (
                crafted(
                    &shaped([vec![2, 3], vec![2, 3]]),
                    &[("format", STATE_FORMAT), ("version", "9")],
                ),
                "newer lstm-lm",
            ),
            (
                crafted(&[("layers.0.hidden", vec![2, 3])], TAGS),
                "holds 1 tensors",
            ),
            (
                crafted(&[("layers.0.hidden", vec![2, 3]), ("x", vec![2, 3])], TAGS),
                "no tensor layers.1.hidden",
            ),
            (
                b"\xff\xff\xff\xff\xff\xff\xff\x7f{}".to_vec(),
                "not a valid safetensors",
            ),
            (Vec::new(), "not a valid safetensors"),
        ];
        for (bytes, needle) in cases {
            let e = state_from_bytes(
                &bytes,
                Path::new("ck/state.safetensors"),
                &gru,
                &Device::flex(),
            )
            .err()
            .unwrap_or_else(|| panic!("accepted a file that should say {needle:?}"))
            .to_string();
            assert!(
                e.contains(needle) && e.contains("state.safetensors"),
                "{needle:?}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
