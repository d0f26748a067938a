//! Only for the CUDA engine (`--features cuda`, the embgraft-cuda13 wheel).
//!
//! candle-kernels builds its MoE kernels as `libmoe.a` and asks for them with a bare
//! `rustc-link-lib=moe`, which rustc passes after `-Bdynamic`. GNU ld then falls back to the
//! archive; zig's linker (maturin --zig, for a manylinux2014 wheel) does not, and stops with
//! "unable to find dynamic system library moe". A `libmoe.so` that is a linker script naming
//! `libmoe.a` satisfies the dynamic lookup and links the archive itself, found on the search
//! path candle-kernels already gives; nothing called libmoe is needed at run time.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("libmoe.so"), "INPUT(libmoe.a)\n").expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search=native={}", out.display());
}
