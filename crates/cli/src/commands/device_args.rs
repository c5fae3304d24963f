//! `--backend`, `--device` and `--threads`, shared by every command that runs a model.
use anyhow::Result;
use clap::Args;
use lstm_lm_model::{BackendKind, burn::tensor::Device};

/// Where the model runs.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Backend: flex (CPU, default), ndarray (CPU) or wgpu (GPU).
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: BackendKind,
    /// GPU adapter index for wgpu (0 = the default adapter).
    #[arg(long = "device", default_value_t = 0)]
    pub device_index: usize,
    /// CPU threads for the CPU backends (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse()
        .map_err(|e: lstm_lm_model::ModelError| e.to_string())
}

impl DeviceArgs {
    /// Sets up the thread pool and returns the device.
    pub fn device(&self) -> Result<Device> {
        Ok(lstm_lm_train::setup_device(
            self.backend,
            self.device_index,
            self.threads,
        )?)
    }
}
