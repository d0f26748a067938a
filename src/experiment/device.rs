//! Where a run computes: `--device` (cpu, cuda, cuda:N, auto) turned into a candle device, with
//! why `auto` chose what it chose and why CUDA cannot be had where it cannot.

use candle_core::Device;

use crate::error::{Error, Result};

/// The device `--device` names. `auto` takes the first CUDA device when this build has CUDA and
/// a GPU answers, else the CPU.
pub fn device(name: &str) -> Result<Device> {
    device_and_why(name).map(|(d, _)| d)
}

/// [`device`], with the line that says which device `auto` chose and why (None for a device
/// named outright).
pub fn device_and_why(name: &str) -> Result<(Device, Option<String>)> {
    let dev = match name {
        "cpu" => Device::Cpu,
        "auto" => {
            return Ok(match cuda_or_why() {
                Ok(dev) => (dev, Some("running on cuda:0 (--device auto: a CUDA device answered)".into())),
                Err(why) => (Device::Cpu, Some(format!("{why}: running on the CPU"))),
            })
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s
                .strip_prefix("cuda:")
                .map_or(Ok(0), |n| n.parse::<usize>())
                .map_err(|_| Error::Input(format!("bad --device {s}; use cpu, cuda or cuda:N")))?;
            if !cfg!(feature = "cuda") {
                return Err(Error::Input(format!("--device {s}: {}; use --device auto or cpu", no_cuda_build())));
            }
            let dev = Device::new_cuda(ordinal).map_err(|e| {
                Error::Input(format!(
                    "--device {s}: no usable CUDA device ({}); check the driver with nvidia-smi, or use --device \
                     auto or cpu",
                    crate::error::one_line(&e.to_string())
                ))
            })?;
            // Every tensor and kernel of a run lives on this device's one stream, so the
            // cross-stream events candle records around each op are pure cost here.
            #[cfg(feature = "cuda")]
            if let Ok(d) = dev.as_cuda_device() {
                // SAFETY: one stream only: nothing is used on another stream, so no ordering
                // between streams needs to be enforced.
                unsafe { d.disable_event_tracking() };
            }
            #[cfg(feature = "cuda")]
            crate::ops::cuda::keep_freed_memory(&dev);
            dev
        }
        s => return Err(Error::Input(format!("unknown --device {s}; use auto, cpu, cuda or cuda:N"))),
    };
    Ok((dev, None))
}

/// Why a build without CUDA cannot use the GPU. The Python package's `embgraft` command runs this
/// CPU engine when its CUDA engine cannot load, and says why in EMBGRAFT_NO_CUDA_ENGINE (say, no
/// driver), which is truer there than "built without CUDA" with its advice to install what is
/// installed.
pub(super) fn no_cuda_build() -> String {
    match std::env::var("EMBGRAFT_NO_CUDA_ENGINE") {
        Ok(why) if !why.trim().is_empty() => crate::error::one_line(&why),
        _ => "this embgraft was built without CUDA; on a GPU machine pip install 'embgraft[cuda13]', or build with \
              scripts/build-cuda.sh"
            .into(),
    }
}

/// The first CUDA device, or why there is none, in words for `auto`'s line.
pub(super) fn cuda_or_why() -> std::result::Result<Device, String> {
    if !cfg!(feature = "cuda") {
        return Err(no_cuda_build());
    }
    // A driver without a device, or a device that cannot be opened, is an error from cuInit or
    // the context; a library that misbehaves could panic inside the CUDA bindings, so that is
    // caught too and reported as a reason, never as a crash.
    match std::panic::catch_unwind(|| device("cuda")) {
        Ok(Ok(dev)) => Ok(dev),
        Ok(Err(e)) => Err(format!("no usable CUDA device: {e}")),
        Err(_) => Err("the CUDA libraries failed to start".into()),
    }
}
