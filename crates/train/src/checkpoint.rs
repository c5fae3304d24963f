//! Resumable checkpoints: weights, optimizer state, loop position and carried recurrent state.
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use lstm_lm_model::{LanguageModel, LanguageModelConfig, LayerState, RecurrentState};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::atomic::{sync_dir, write_atomic};
use crate::run_dir::{RunDir, load_weights, model_bytes};
use crate::schedule::ScheduleState;

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
    /// Whether `state.bin` holds the recurrent state carried into the next batch.
    pub has_carried_state: bool,
}

/// The pointer file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
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
        Self::save_with_fault(run, model, optimizer, trainer, carried, None)
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
            files.push(("state.bin", state_bytes(state)));
        }
        let trainer_json = serde_json::to_vec_pretty(&trainer)
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
        Ok(Some(run.root().join(p.latest)))
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
        let trainer: TrainerState = serde_json::from_slice(&read(&trainer_path)?).map_err(|e| {
            TrainError::RunDir(format!("\"{}\" is corrupt ({e})", trainer_path.display()))
        })?;
        let carried = if trainer.has_carried_state {
            Some(state_from_bytes(
                &read(&dir.join("state.bin"))?,
                config,
                device,
            )?)
        } else {
            None
        };
        Ok(LoadedCheckpoint {
            model,
            optimizer,
            trainer,
            carried,
        })
    }

    /// Applies saved optimizer bytes to a freshly built optimizer.
    pub fn restore_optimizer(
        optimizer: ModuleOptimizer,
        bytes: Vec<u8>,
    ) -> Result<ModuleOptimizer, TrainError> {
        optimizer
            .from_bytes(Bytes::from_bytes_vec(bytes))
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

/// Recurrent state as little-endian f32: per layer, hidden then cell (if any), `[batch, hidden]`
/// each, preceded by the batch size as u32.
fn state_bytes(state: &RecurrentState) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(state.batch_size() as u32).to_le_bytes());
    for layer in &state.layers {
        for t in std::iter::once(&layer.hidden).chain(layer.cell.iter()) {
            let values = t
                .to_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

fn state_from_bytes(
    bytes: &[u8],
    config: &LanguageModelConfig,
    device: &Device,
) -> Result<RecurrentState, TrainError> {
    let corrupt = || TrainError::RunDir("the checkpoint's state.bin is corrupt".into());
    if bytes.len() < 4 {
        return Err(corrupt());
    }
    let batch = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let h = config.hidden_size;
    let per = batch * h;
    let tensors_per_layer = if config.cell.has_cell() { 2 } else { 1 };
    let expected = 4 + 4 * per * tensors_per_layer * config.num_layers;
    if bytes.len() != expected {
        return Err(corrupt());
    }
    let floats: Vec<f32> = bytes[4..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut chunks = floats.chunks_exact(per);
    let mut next = || -> Result<Tensor<2>, TrainError> {
        let values = chunks.next().ok_or_else(corrupt)?;
        Ok(Tensor::from_data(
            TensorData::new(values.to_vec(), [batch, h]),
            device,
        ))
    };
    let mut layers = Vec::with_capacity(config.num_layers);
    for _ in 0..config.num_layers {
        let hidden = next()?;
        let cell = if config.cell.has_cell() {
            Some(next()?)
        } else {
            None
        };
        layers.push(LayerState { hidden, cell });
    }
    Ok(RecurrentState { layers })
}
