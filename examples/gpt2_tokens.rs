//! Writes GPT-2's vocabulary as the BPE built into embgraft holds it (tiktoken-rs's r50k_base,
//! OpenAI's own file): one line per token id, the token's bytes in hex. The transplant
//! reference (`reference/transplant_reference.py`) reads it, so that it maps the very
//! vocabulary embgraft maps without a network to fetch GPT-2's files.
//!
//!     cargo run --release --example gpt2_tokens -- gpt2_tokens.txt

use std::io::Write;

fn main() {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: gpt2_tokens OUT.txt");
        std::process::exit(2);
    };
    let bpe = tiktoken_rs::r50k_base().expect("r50k_base");
    let mut text = Vec::new();
    for id in 0..embgraft::data::corpus::GPT2_VOCAB as u32 {
        let bytes = bpe.decode_bytes(&[id]).unwrap_or_default();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(text, "{hex}").expect("write");
    }
    if let Err(e) = embgraft::util::write_atomic(std::path::Path::new(&out), &text) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
