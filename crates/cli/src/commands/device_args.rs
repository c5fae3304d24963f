//! `--backend`, `--device` and `--threads`, shared by every command that runs a model.
use anyhow::Result;
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

/// Makes the CPU backend the process's default device too, unless `BURN_DEVICE` says otherwise.
///
/// burn builds some tensors on its default device: restoring a checkpoint's optimizer state
/// does. In a build with the `wgpu` feature that default is the GPU, so a CPU run would start the
/// whole GPU stack (and its driver's messages on stderr) for state it then moves back.
fn prefer_as_default(backend: BackendKind) {
    if matches!(backend, BackendKind::Flex | BackendKind::Ndarray)
        && std::env::var_os("BURN_DEVICE").is_none()
    {
        // SAFETY: the commands call this on the main thread before they start any other thread
        // (the thread pool, signal handlers and progress bars come after the device), so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("BURN_DEVICE", backend.to_string()) };
    }
}

impl DeviceArgs {
    /// Sets up the thread pool and returns the device.
    pub fn device(&self) -> Result<Device> {
        prefer_as_default(self.backend);
        Ok(lstm_lm_infer::setup_device(
            self.backend,
            self.device_index,
            self.threads,
        )?)
    }

    /// Sets up the thread pool and returns the devices for data-parallel training (`--devices`),
    /// the main device first.
    pub fn devices(&self, spec: &DevicesSpec) -> Result<Vec<Device>> {
        let indices: Vec<usize> = match (spec, self.backend) {
            (DevicesSpec::Count(0), _) => anyhow::bail!("--devices must be at least 1"),
            (DevicesSpec::Count(n), _) => (0..*n).collect(),
            (DevicesSpec::List(_), BackendKind::Flex | BackendKind::Ndarray) => anyhow::bail!(
                "--backend {} has a single CPU device, so --devices takes a count there (it splits each batch into that many shards trained in parallel threads); adapter lists are for --backend wgpu",
                self.backend
            ),
            (DevicesSpec::List(list), BackendKind::Wgpu) => {
                for (k, i) in list.iter().enumerate() {
                    if list[..k].contains(i) {
                        anyhow::bail!("--devices lists adapter {i} twice");
                    }
                }
                list.clone()
            }
        };
        prefer_as_default(self.backend);
        lstm_lm_infer::setup_threads(self.threads)?;
        indices
            .into_iter()
            .map(|i| Ok(device_for(self.backend, i)?))
            .collect()
    }
}

/// `--devices`: how many devices, or which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicesSpec {
    /// A count: wgpu adapters `0..n`; on the CPU backends, `n` shards on the one CPU device.
    Count(usize),
    /// wgpu adapter indices, the main device first.
    List(Vec<usize>),
}

/// Parses `--devices`: `N` (a count) or `I,J,...` (adapter indices).
pub fn parse_devices(s: &str) -> Result<DevicesSpec, String> {
    let bad =
        || format!("--devices takes a count (2) or a list of adapter indices (0,1), not '{s}'");
    if s.contains(',') {
        s.split(',')
            .map(|p| p.trim().parse::<usize>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()
            .map(DevicesSpec::List)
    } else {
        s.trim().parse().map(DevicesSpec::Count).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::{DevicesSpec, parse_devices};

    #[test]
    fn devices_flag_takes_a_count_or_a_list() {
        assert_eq!(parse_devices("2"), Ok(DevicesSpec::Count(2)));
        assert_eq!(parse_devices("0,2"), Ok(DevicesSpec::List(vec![0, 2])));
        assert!(parse_devices("two").is_err());
        assert!(parse_devices("0,x").is_err());
    }
}
