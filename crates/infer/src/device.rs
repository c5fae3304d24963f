//! Backend, adapter and CPU thread count to a device: what every front end (the `lstm-lm`
//! binary, `cargo xtask train`) does before training or evaluating.
use lstm_lm_model::burn::tensor::Device;
use lstm_lm_model::{BackendKind, device_for};

use crate::InferError;

/// Sets up rayon's global thread pool with `threads` threads when given (CPU backends use it;
/// default: one per core) and returns the device of `backend` (`index` picks the GPU adapter
/// for wgpu). The pool can be set up once per process: a second call with `threads` fails.
pub fn setup_device(
    backend: BackendKind,
    index: usize,
    threads: Option<usize>,
) -> Result<Device, InferError> {
    setup_threads(threads)?;
    Ok(device_for(backend, index)?)
}

/// Sets up rayon's global thread pool with `threads` threads when given (default: one per
/// core). Once per process: a second call with `threads` fails.
///
/// The pool's threads get the stack of a main thread (8 MiB), since [`on_pool`] runs whole
/// commands on them.
pub fn setup_threads(threads: Option<usize>) -> Result<(), InferError> {
    let builder = rayon::ThreadPoolBuilder::new().stack_size(POOL_STACK_BYTES);
    match threads {
        Some(0) => Err(InferError::Settings("--threads must be at least 1".into())),
        Some(n) => builder.num_threads(n).build_global().map_err(|e| {
            InferError::Settings(format!("cannot set up the thread pool for --threads: {e}"))
        }),
        // Without --threads an earlier setup (or use) of the pool is fine as it is.
        None => {
            let _ = builder.build_global();
            Ok(())
        }
    }
}

/// Stack size of the pool's threads.
const POOL_STACK_BYTES: usize = 8 << 20;

/// Runs `f` on a thread of rayon's global pool, the calling thread waiting for it.
///
/// The CPU kernels hand their parallel work to that pool. Run from a thread outside it, the
/// serial part of every step runs on one more thread than the pool has, beside pool threads
/// that are still spinning after the last parallel region, and on a machine with one core per
/// pool thread they take turns on the cores. Run from a pool thread, the serial work and the
/// kernels share the pool's threads. Already on a pool thread, `f` simply runs.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}
