//! Crash-safe file writes with this crate's error type: a thin wrapper over
//! [`lstm_lm_text_prep::atomic_file`], the one implementation (and its fault injection for
//! tests) that every crate uses.
use std::path::Path;

use crate::InferError;

/// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the
/// new one, never a torn mix; the error names the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InferError> {
    lstm_lm_text_prep::atomic_file::write(path, bytes).map_err(|e| InferError::io(path, e))
}
