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

/// Builds the device for `kind`; `index` picks the adapter for GPU backends, in the order of
/// [`wgpu_adapters`] (ignored on CPU). A wgpu device is opened and runs one kernel before it is
/// returned, so a missing or broken driver is a one-line [`ModelError::Backend`], not a panic.
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

/// The wgpu adapters this machine offers, in the order `--device N` indexes them (empty where
/// there is none, or in a build without the `wgpu` feature). Does not open them.
pub fn wgpu_adapters() -> Vec<Device> {
    #[cfg(feature = "wgpu")]
    {
        wgpu_probe::adapters()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        Vec::new()
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_index: usize) -> Result<Device, ModelError> {
    Err(ModelError::Backend(
        "this build of lstm-lm has no GPU backend: rebuild it with `--features wgpu` (cargo install --path crates/cli --features wgpu)"
            .into(),
    ))
}

#[cfg(feature = "wgpu")]
mod wgpu_probe {
    use std::sync::{Arc, Mutex};

    use burn::tensor::{Device, DeviceType};

    use crate::ModelError;

    /// Probed adapters by index, so that each is opened (and each failure reported) once per
    /// process; the lock also serialises the panic-hook swap below.
    static PROBED: Mutex<Vec<(usize, Result<Device, String>)>> = Mutex::new(Vec::new());

    /// The wgpu adapters burn sees, in wgpu's order (the graphics API with a hardware GPU wins:
    /// Vulkan, then Metal, DX12, OpenGL; a software rasterizer only where nothing else exists).
    pub fn adapters() -> Vec<Device> {
        quiet(|| Device::enumerate(DeviceType::Wgpu).into_iter().collect()).unwrap_or_default()
    }

    /// Picks the `index`-th wgpu adapter (0: the first, which is the GPU on a one-GPU machine),
    /// or fails with one line that says what was looked for and how to get a driver, instead of
    /// letting the first kernel launch panic.
    pub fn device(index: usize) -> Result<Device, ModelError> {
        let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, result)) = probed.iter().find(|(i, _)| *i == index) {
            return result.clone().map_err(ModelError::Backend);
        }
        let result = open(index);
        probed.push((index, result.clone()));
        result.map_err(ModelError::Backend)
    }

    fn open(index: usize) -> Result<Device, String> {
        let found = adapters();
        let Some(device) = found.get(index).cloned() else {
            return Err(if found.is_empty() {
                format!(
                    "no wgpu adapter found (looked for Vulkan, Metal, DX12 and OpenGL adapters): {INSTALL}"
                )
            } else {
                format!(
                    "no wgpu adapter {index}: this machine has {} ({}); pick --device {}",
                    found.len(),
                    names(&found),
                    match found.len() {
                        1 => "0".to_string(),
                        n => format!("0 to {}", n - 1),
                    }
                )
            });
        };
        // Touch the device so that device creation and the first kernel compile happen now.
        let touched = quiet(|| {
            let t = burn::tensor::Tensor::<1>::from_floats([1.0f32, 2.0], &device);
            let _: f32 = t.sum().into_scalar();
        });
        match touched {
            Some(()) => Ok(device),
            None => Err(format!(
                "wgpu adapter {index} ({}) was found but cannot run kernels: {INSTALL}",
                names(std::slice::from_ref(&device))
            )),
        }
    }

    const INSTALL: &str = "install the GPU vendor's driver with Vulkan support (NVIDIA: the \
        proprietary driver, which ships nvidia_icd.json; AMD/Intel: Mesa, Debian package \
        mesa-vulkan-drivers) plus the Vulkan loader (libvulkan1), or on a machine without a GPU \
        Mesa's software driver (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1), \
        or pick --backend flex";

    fn names(devices: &[Device]) -> String {
        devices
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Runs `f`, turning a panic into `None` without printing the panic message (wgpu and cubecl
    /// panic, on their own threads too, where no adapter or device can be had).
    ///
    /// Only panics on this thread or raised in the GPU stack's own code are silenced; any other
    /// thread's panic in the meantime still reaches the hook that was installed before.
    fn quiet<T>(f: impl FnOnce() -> T) -> Option<T> {
        type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
        static HOOK: Mutex<()> = Mutex::new(());
        let _guard = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        let probing = std::thread::current().id();
        let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
        let inner = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            let from_gpu_stack = info.location().is_some_and(|l| {
                ["wgpu", "cubecl", "/naga-", "/ash-"]
                    .iter()
                    .any(|name| l.file().contains(name))
            });
            if std::thread::current().id() != probing && !from_gpu_stack {
                inner(info);
            }
        }));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // Dropping the filter releases its reference, so the original hook goes back as it was.
        drop(std::panic::take_hook());
        match Arc::try_unwrap(previous) {
            Ok(hook) => std::panic::set_hook(hook),
            Err(shared) => std::panic::set_hook(Box::new(move |info| shared(info))),
        }
        result.ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// While a probe runs, its own panic is silenced but another thread's reaches the hook
        /// installed before, and that hook is back afterwards.
        #[test]
        fn a_probe_silences_only_its_own_panics() {
            static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
            let original = std::panic::take_hook();
            std::panic::set_hook(Box::new(|info| {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                SEEN.lock().unwrap().push(message);
            }));
            let result: Option<()> = quiet(|| {
                let other = std::thread::spawn(|| panic!("elsewhere"));
                assert!(other.join().is_err());
                panic!("probing");
            });
            assert!(result.is_none());
            let _ = std::panic::catch_unwind(|| panic!("after"));
            std::panic::set_hook(original);
            let seen = SEEN.lock().unwrap().clone();
            assert!(seen.contains(&"elsewhere".to_string()), "{seen:?}");
            assert!(seen.contains(&"after".to_string()), "{seen:?}");
            assert!(!seen.contains(&"probing".to_string()), "{seen:?}");
        }
    }
}
