//! `--backend`, `--device` and `--threads`, shared by every command that runs a model.
use anyhow::{Context, Result};
use clap::Args;
use lstm_lm_model::{BackendKind, burn::tensor::Device, device_for};

/// Where the model runs.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Backend: flex (CPU, default), ndarray (CPU) or wgpu (GPU).
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: BackendKind,
    /// wgpu adapter, by its index in the list wgpu reports (0 = the first; on a one-GPU machine,
    /// that GPU). Ignored by the CPU backends.
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
        if let Some(n) = self.threads {
            if n == 0 {
                anyhow::bail!("--threads must be at least 1");
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("cannot set up the thread pool for --threads")?;
        }
        Ok(device_for(self.backend, self.device_index)?)
    }
}
