//! Writes a safetensors file in GPT-2's layout with seeded values: GPT-2's shapes without its
//! weights, for timing runs on machines that cannot download GPT-2.
//!
//!     cargo run --release --example fake_gpt2 -- /tmp/fake-gpt2/model.safetensors
//!         wte [50257, 768], wpe, one block's first tensors (Model 1 needs only wte)
//!     cargo run --release --example fake_gpt2 -- /tmp/fake-gpt2-2l/model.safetensors 2
//!         wte, wpe, 2 whole blocks, ln_f and a config.json (12 heads): Model 5 can graft `all`
//!     DIM=8 cargo run --release --example fake_gpt2 -- /tmp/tiny/model.safetensors
//!         the first layout at width 8: GPT-2's vocabulary, seconds per run on a CPU (scripts' tests)

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: fake_gpt2 OUT.safetensors [LAYERS]");
        std::process::exit(2);
    };
    let path = std::path::PathBuf::from(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create folder");
    }
    let dim = match std::env::var("DIM").map(|d| d.parse::<usize>()) {
        Err(_) => 768,
        Ok(Ok(d)) if d > 0 => d,
        Ok(_) => {
            eprintln!("error: DIM must be a positive number");
            std::process::exit(2);
        }
    };
    let written = match args.get(2).map(|l| l.parse::<usize>()) {
        None => embgraft::fixtures::write_gpt2_layout(&path, dim, 0.14, 0).map(|_| ()),
        Some(Ok(layers)) => embgraft::fixtures::write_gpt2_model(&path, dim, 12, layers, 0.14, 0),
        Some(Err(_)) => {
            eprintln!("error: LAYERS must be a number");
            std::process::exit(2);
        }
    };
    if let Err(e) = written {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    eprintln!("wrote {}", path.display());
}
