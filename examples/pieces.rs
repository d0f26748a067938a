//! Checks that encoding a corpus in pieces gives the same ids as encoding it whole, for GPT-2's
//! BPE and any tokenizer.json given, on the files named (the shared corpora, say):
//!
//!     cargo run --release --example pieces -- ../shared/data/corpora/*.txt ../shared/data/corpora/*.md \
//!         --tokenizer ../shared/data/donors/all-minilm-l6-v2/tokenizer.json
//!
//! Each file is also tried as one long line (its newlines made spaces). Exits 1 on any difference.

use embgraft::data::corpus::{cut_points, Tokenizer, PIECE};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut tokenizers = vec![Tokenizer::gpt2().expect("GPT-2 BPE")];
    if let Some(at) = args.iter().position(|a| a == "--tokenizer") {
        let path = args.remove(at + 1);
        args.remove(at);
        tokenizers.push(Tokenizer::from_file(std::path::Path::new(&path), 1 << 30).expect("tokenizer.json"));
    }
    let mut same = true;
    println!("| corpus | shape | tokenizer | bytes | pieces | tokens | same ids |");
    println!("|---|---|---|---|---|---|---|");
    for path in &args {
        let text = std::fs::read_to_string(path).expect("a UTF-8 corpus");
        let one_line = text.replace(['\n', '\r'], " ");
        for (shape, t) in [("as written", &text), ("one line", &one_line)] {
            for tok in &tokenizers {
                // Pieces of a tenth of the text at most, so every file is cut many times.
                let piece = (t.len() / 10).clamp(1 << 12, PIECE);
                let whole = tok.encode_in_pieces(t, usize::MAX).expect("encode");
                let pieces = tok.encode_in_pieces(t, piece).expect("encode");
                let name = std::path::Path::new(path).file_name().unwrap().to_string_lossy().into_owned();
                let n = if tok.encodes_whole() { 1 } else { cut_points(t, piece).len() + 1 };
                println!(
                    "| {name} | {shape} | {} | {} | {n} | {} | {} |",
                    tok.name(),
                    t.len(),
                    whole.ids.len(),
                    whole == pieces
                );
                same &= whole == pieces;
            }
        }
    }
    std::process::exit(if same { 0 } else { 1 });
}
