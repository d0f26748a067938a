//! With `--features cuda`: compiles kernels/*.cu to PTX with nvcc (found as candle's own kernels
//! find it: $NVCC, then $CUDA_HOME/bin/nvcc, then nvcc on the PATH), for compute capability
//! $CUDA_COMPUTE_CAP (default 80; the driver compiles PTX on to any newer card). Without the
//! feature it does nothing. `--fmad=false` keeps a*b+c rounded twice, as the CPU path computes it.

use std::path::PathBuf;
use std::process::Command;

const KERNELS: &[&str] = &["model1"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["NVCC", "CUDA_HOME", "CUDA_COMPUTE_CAP"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("bin").join("nvcc")))
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let cap: String = cap.chars().filter(|c| c.is_ascii_digit()).collect();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for k in KERNELS {
        let src = format!("kernels/{k}.cu");
        println!("cargo::rerun-if-changed={src}");
        let ptx = out.join(format!("{k}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "--fmad=false", "-std=c++17"])
            .arg(format!("-arch=compute_{cap}"))
            .arg("-o")
            .arg(&ptx)
            .arg(&src)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => fail(&format!("{} failed on {src} ({s}); see its messages above", nvcc.display())),
            Err(e) => fail(&format!(
                "cannot run {} ({e}): --features cuda needs nvcc; scripts/build-cuda.sh installs one from PyPI, or set NVCC",
                nvcc.display()
            )),
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
