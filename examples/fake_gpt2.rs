//! Writes a safetensors file in GPT-2's layout (`wte.weight` [50257, 768], `wpe.weight`, a
//! block's tensors) with seeded N(0, 0.14²) values: GPT-2's shapes without its weights, for
//! timing runs on machines that cannot download GPT-2.
//!
//!     cargo run --release --example fake_gpt2 -- /tmp/fake-gpt2/model.safetensors

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: fake_gpt2 OUT.safetensors");
        std::process::exit(2);
    };
    let path = std::path::PathBuf::from(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create folder");
    }
    if let Err(e) = embgraft::donor::write_gpt2_layout(&path, 768, 0.14, 0) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    eprintln!("wrote {}", path.display());
}
