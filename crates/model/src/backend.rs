use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::ModelError;

/// The execution backends a run can pick at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend (SIMD and multi-threaded); the default.
    Flex,
    /// burn's ndarray CPU backend (deprecated upstream, kept selectable).
    Ndarray,
    /// The wgpu GPU backend (Vulkan, Metal, DX12 or WebGPU).
    Wgpu,
}

impl BackendKind {
    /// Every backend name, as accepted by [`FromStr`].
    pub const NAMES: [&'static str; 3] = ["flex", "ndarray", "wgpu"];

    /// The lower-case name used on the command line and in config files.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" => Ok(BackendKind::Flex),
            "ndarray" => Ok(BackendKind::Ndarray),
            "wgpu" => Ok(BackendKind::Wgpu),
            other => Err(ModelError::Backend(format!(
                "unknown backend '{other}': use one of flex, ndarray, wgpu"
            ))),
        }
    }
}

/// Builds the device for `kind`; `index` picks the adapter for GPU backends (ignored on CPU).
///
/// The returned device has no autodiff: call `.autodiff()` on it for training.
pub fn device_for(kind: BackendKind, index: usize) -> Result<Device, ModelError> {
    match kind {
        BackendKind::Flex => Ok(Device::flex()),
        // Deprecated upstream in favour of flex; the design keeps it selectable.
        #[allow(deprecated)]
        BackendKind::Ndarray => Ok(Device::ndarray()),
        BackendKind::Wgpu => wgpu_device(index),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device(index: usize) -> Result<Device, ModelError> {
    crate::backend::wgpu_probe::device(index)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_index: usize) -> Result<Device, ModelError> {
    Err(ModelError::Backend(
        "this build has no wgpu backend: rebuild with the `wgpu` feature (it is on by default for the lstm-lm binary)"
            .into(),
    ))
}

#[cfg(feature = "wgpu")]
mod wgpu_probe {
    use burn::tensor::{Device, DeviceKind};

    use crate::ModelError;

    /// Picks the `index`-th GPU adapter, or fails with a message that says how to get a driver,
    /// instead of letting the first kernel launch panic.
    pub fn device(index: usize) -> Result<Device, ModelError> {
        let kind = if index == 0 {
            DeviceKind::DefaultDevice
        } else {
            DeviceKind::DiscreteGpu(index)
        };
        let probe = std::panic::catch_unwind(|| {
            let device = Device::wgpu(kind.clone());
            // Touch the device so that adapter selection happens now, inside the guard.
            let t = burn::tensor::Tensor::<1>::from_floats([1.0f32], &device);
            let _: f32 = t.into_scalar();
            device
        });
        probe.map_err(|_| {
            ModelError::Backend(format!(
                "no wgpu adapter found (looked for {kind:?} through Vulkan, Metal, DX12 and GL): \
                 install a GPU driver, or on a CPU-only Linux machine Mesa's software Vulkan driver \
                 (Debian/Ubuntu: apt-get install mesa-vulkan-drivers), or pick --backend flex"
            ))
        })
    }
}
