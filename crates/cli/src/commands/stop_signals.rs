//! The signals that stop `lstm-lm train` cleanly: Ctrl-C (SIGINT) and, on Unix, SIGTERM (what
//! `kill`, systemd, container runtimes and batch schedulers send). Either one raises the stop
//! flag: the trainer saves a checkpoint at the next batch and returns, and the process exits
//! with 128 + the signal number, as shells report a process ended by that signal: 130 after
//! Ctrl-C, 143 after SIGTERM. SIGHUP keeps its default (and `nohup` keeps ignoring it).
//!
//! A handler that cannot be registered (the OS refuses, or one is registered already) is
//! reported as a one-line warning, not an error: training itself is unaffected and its periodic
//! checkpoints still bound what a stop can lose, while refusing to train would lose more.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit status after SIGTERM (128 + SIGTERM).
pub const EXIT_TERMINATED: i32 = 143;

/// The stop flag handed to the trainer, and which signal raised it.
pub struct StopSignals {
    /// Raised by either signal.
    pub stop: Arc<AtomicBool>,
    /// Raised by SIGTERM only.
    terminated: Arc<AtomicBool>,
}

impl StopSignals {
    /// Registers the handlers; returns them with a one-line warning for each signal whose
    /// handler could not be registered.
    pub fn install() -> (StopSignals, Vec<String>) {
        let stop = Arc::new(AtomicBool::new(false));
        let terminated = Arc::new(AtomicBool::new(false));
        let mut warnings = Vec::new();
        {
            let stop = stop.clone();
            // A second Ctrl-C while the checkpoint is written is ignored on purpose: the save
            // is short and atomic, and killing it would only lose the newest state.
            if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)) {
                warnings.push(format!(
                    "warning: Ctrl-C cannot be caught ({e}): it will stop training without saving a checkpoint"
                ));
            }
        }
        #[cfg(unix)]
        {
            use signal_hook::consts::SIGTERM;
            // `terminated` first: whoever sees `stop` raised also sees which signal raised it.
            let registered = signal_hook::flag::register(SIGTERM, terminated.clone())
                .and_then(|_| signal_hook::flag::register(SIGTERM, stop.clone()));
            if let Err(e) = registered {
                warnings.push(format!(
                    "warning: SIGTERM cannot be caught ({e}): it will stop training without saving a checkpoint"
                ));
            }
        }
        (StopSignals { stop, terminated }, warnings)
    }

    /// The exit status for a run the stop flag ended.
    pub fn exit_status(&self) -> i32 {
        if self.terminated.load(Ordering::SeqCst) {
            EXIT_TERMINATED
        } else {
            EXIT_INTERRUPTED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_that_cannot_be_registered_gives_a_one_line_warning() {
        let (_, warnings) = StopSignals::install();
        assert!(warnings.is_empty(), "{warnings:?}");
        // The Ctrl-C handler is one per process: a second registration fails.
        let (signals, warnings) = StopSignals::install();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("warning: Ctrl-C cannot be caught"));
        assert!(!warnings[0].contains('\n'));
        assert_eq!(signals.exit_status(), EXIT_INTERRUPTED);
        #[cfg(unix)]
        {
            // SAFETY: raise(3) on this process; SIGTERM has a handler now, so the process
            // goes on.
            assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
            assert!(signals.stop.load(Ordering::SeqCst));
            assert_eq!(signals.exit_status(), EXIT_TERMINATED);
        }
    }
}
