//! Crash-safe file writes with the trainer's error type: a thin wrapper over
//! [`lstm_lm_text_prep::atomic_file`], the one implementation (and its fault injection for
//! tests) that every crate uses.
use std::path::Path;

pub use lstm_lm_text_prep::atomic_file::{remove_stale_temporaries, sync_dir};

use crate::TrainError;

/// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the
/// new one, never a torn mix; the error names the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    lstm_lm_text_prep::atomic_file::write(path, bytes).map_err(|e| TrainError::io(path, e))
}
