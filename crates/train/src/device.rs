//! Backend, adapter and CPU thread count to a device: what every front end (the `lstm-lm`
//! binary, `cargo xtask train`) does before training or evaluating.
use lstm_lm_model::burn::tensor::Device;
use lstm_lm_model::{BackendKind, device_for};

use crate::TrainError;

/// Sets up rayon's global thread pool with `threads` threads when given (CPU backends use it;
/// default: one per core) and returns the device of `backend` (`index` picks the GPU adapter
/// for wgpu). The pool can be set up once per process: a second call with `threads` fails.
pub fn setup_device(
    backend: BackendKind,
    index: usize,
    threads: Option<usize>,
) -> Result<Device, TrainError> {
    setup_threads(threads)?;
    Ok(device_for(backend, index)?)
}

/// Sets up rayon's global thread pool with `threads` threads when given (default: one per
/// core). Once per process: a second call with `threads` fails.
pub fn setup_threads(threads: Option<usize>) -> Result<(), TrainError> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(TrainError::Settings("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| {
                TrainError::Settings(format!("cannot set up the thread pool for --threads: {e}"))
            })?;
    }
    Ok(())
}
