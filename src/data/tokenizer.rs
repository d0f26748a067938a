//! Tokenizers: GPT-2's BPE compiled in, or a Hugging Face `tokenizer.json`; text encoded whole or
//! in pieces cut where the tokenizer allows it, with the bytes each token owns (for bits per
//! byte). The corpus reads text and cuts windows from what these give (`corpus.rs`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A tokenizer: GPT-2's BPE (compiled in, works offline) or a donor's own `tokenizer.json`.
pub enum Tokenizer {
    Gpt2(Box<tiktoken_rs::CoreBPE>),
    HuggingFace {
        tok: Box<tokenizers::Tokenizer>,
        path: PathBuf,
        fingerprint: String,
        /// The file's size when it was read (under the caller's cap): a second reader of the
        /// same file (the vocabulary mapping) needs no cap of its own.
        size: u64,
        /// Whether running text may be encoded in pieces cut at single spaces and newlines
        /// with the same ids (see [`splits_at_whitespace`]).
        in_pieces: bool,
    },
}

/// Text is encoded in pieces of about this many bytes, so that a tokenizer's working memory
/// grows with a piece, not with the whole corpus.
pub const PIECE: usize = 4 << 20;

/// Whether a tokenizer.json's pipeline gives the same ids for a text cut at a single space or
/// newline that stands between two other characters: its normalizer acts character by
/// character, its pre-tokenizer splits at white space (BERT's, Whitespace, or the byte-level
/// GPT-2 pattern without an added prefix space), and no added token holds white space.
/// Anything else (SentencePiece's Metaspace, which marks a piece's first word, a custom split
/// pattern) is encoded whole.
fn splits_at_whitespace(json: &serde_json::Value) -> bool {
    fn all(v: &serde_json::Value, key: &str, ok: &dyn Fn(&serde_json::Value) -> bool) -> bool {
        match v.get("type").and_then(|t| t.as_str()) {
            Some("Sequence") => {
                v.get(key).and_then(|s| s.as_array()).is_some_and(|s| s.iter().all(|x| all(x, key, ok)))
            }
            _ => ok(v),
        }
    }
    let kind = |v: &serde_json::Value| v.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string();
    let normalizer = json.get("normalizer").unwrap_or(&serde_json::Value::Null);
    let local = |v: &serde_json::Value| {
        ["BertNormalizer", "Lowercase", "StripAccents", "NFC", "NFD", "NFKC", "NFKD"].contains(&kind(v).as_str())
    };
    let pre = json.get("pre_tokenizer").unwrap_or(&serde_json::Value::Null);
    let splits = |v: &serde_json::Value| match kind(v).as_str() {
        "BertPreTokenizer" | "Whitespace" | "WhitespaceSplit" | "Punctuation" | "Digits" => true,
        "ByteLevel" => {
            v.get("add_prefix_space").and_then(|b| b.as_bool()) == Some(false)
                && v.get("use_regex").and_then(|b| b.as_bool()) != Some(false)
        }
        _ => false,
    };
    let added_plain = json.get("added_tokens").and_then(|a| a.as_array()).is_none_or(|a| {
        a.iter()
            .all(|t| !t.get("content").and_then(|c| c.as_str()).unwrap_or_default().chars().any(char::is_whitespace))
    });
    (normalizer.is_null() || all(normalizer, "normalizers", &local))
        && !pre.is_null()
        && all(pre, "pretokenizers", &splits)
        && added_plain
}

/// Where to cut `text` into pieces of about `piece` bytes: before a single space or newline
/// that stands between two characters that are not white space. There every tokenizer this
/// cuts for (GPT-2's pattern, white-space pre-tokenizers) ends one pre-token and starts the
/// next, and its patterns look no further back than the piece they are in, so the pieces'
/// ids joined are the whole text's. A text with no such place goes whole.
pub fn cut_points(text: &str, piece: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut cuts = Vec::new();
    let mut at = piece.max(1);
    while at < bytes.len() {
        let found = (at..bytes.len().saturating_sub(1)).find(|&p| {
            (bytes[p] == b' ' || bytes[p] == b'\n')
                && text[..p].chars().next_back().is_some_and(|c| !c.is_whitespace())
                && text[p + 1..].chars().next().is_some_and(|c| !c.is_whitespace())
        });
        match found {
            Some(p) => {
                cuts.push(p);
                at = p + piece.max(1);
            }
            None => break,
        }
    }
    cuts
}

/// GPT-2's vocabulary: 50 000 merges + 256 bytes + `<|endoftext|>` (id 50256).
pub const GPT2_VOCAB: usize = 50257;

/// A text's tokens and the bytes of the text each owns (they sum to the text's length): what
/// bits per byte divide by.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub owned: Vec<u32>,
}

/// The byte length of every GPT-2 token, read once from the BPE.
fn gpt2_lengths(bpe: &tiktoken_rs::CoreBPE) -> &'static [u8] {
    static LENGTHS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    LENGTHS.get_or_init(|| {
        (0..GPT2_VOCAB as u32).map(|i| bpe.decode_bytes(&[i]).map_or(0, |b| b.len().min(255) as u8)).collect()
    })
}

impl Tokenizer {
    pub fn gpt2() -> Result<Self> {
        let bpe = tiktoken_rs::r50k_base().map_err(|e| Error::Tokenizer(format!("GPT-2 BPE: {e}")))?;
        Ok(Tokenizer::Gpt2(Box::new(bpe)))
    }

    /// Loads a Hugging Face `tokenizer.json`, with padding and truncation switched off: a corpus
    /// is one long stream, not a batch of 128-token sentences.
    pub fn from_file(path: &Path, cap: u64) -> Result<Self> {
        let bytes = crate::util::read_input(path, "tokenizer", cap, "raise it with --max-input-size")
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut tok = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            Error::Tokenizer(format!(
                "cannot read tokenizer {}: {e}; give a Hugging Face tokenizer.json",
                path.display()
            ))
        })?;
        tok.with_padding(None);
        tok.with_truncation(None).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let fingerprint = crate::util::fingerprint(&bytes);
        let in_pieces = serde_json::from_slice(&bytes).is_ok_and(|j| splits_at_whitespace(&j));
        let size = bytes.len() as u64;
        Ok(Tokenizer::HuggingFace { tok: Box::new(tok), path: path.to_path_buf(), fingerprint, size, in_pieces })
    }

    /// A `--tokenizer` value other than `auto`: `gpt2` (GPT-2's built-in BPE) or the path of a
    /// tokenizer.json. A value that is neither says which values there are.
    pub fn from_flag(value: &str, cap: u64) -> Result<Self> {
        let choices = "auto (the donor's own, else GPT-2's BPE), gpt2 or the path of a tokenizer.json";
        match value {
            "gpt2" => Tokenizer::gpt2(),
            "" => Err(Error::Tokenizer(format!("--tokenizer is empty: give {choices}"))),
            // Where `auto` means something the caller has resolved it; here there is no other.
            "auto" => Err(Error::Tokenizer(
                "--tokenizer auto is the donor's own tokenizer, so there is nothing to map its rows onto: give gpt2 \
                 or the path of another tokenizer.json"
                    .into(),
            )),
            v if !Path::new(v).exists() => {
                let near = v.trim().to_lowercase();
                let hint = match (near.as_str(), v.trim() == v) {
                    ("auto" | "gpt2", false) => " (without the spaces)",
                    ("auto" | "gpt2", true) => " (the names are lower-case)",
                    _ => "",
                };
                Err(Error::Tokenizer(format!(
                    "--tokenizer {v:?} is neither auto, gpt2 nor a file that exists: give {choices}{hint}"
                )))
            }
            v => Tokenizer::from_file(Path::new(v), cap)
                .map_err(|e| Error::Tokenizer(format!("--tokenizer: {e}, or gpt2 for GPT-2's BPE"))),
        }
    }

    /// Whether it encodes long text whole (its pipeline is not known to allow pieces).
    pub fn encodes_whole(&self) -> bool {
        matches!(self, Tokenizer::HuggingFace { in_pieces: false, .. })
    }

    pub fn name(&self) -> String {
        match self {
            Tokenizer::Gpt2(_) => "gpt2 (r50k_base BPE)".into(),
            Tokenizer::HuggingFace { path, .. } => path.display().to_string(),
        }
    }

    /// What the tokenizer is, by content: its tokenizer.json's bytes, or the built-in BPE's name.
    pub fn fingerprint(&self) -> String {
        match self {
            Tokenizer::Gpt2(_) => crate::util::fingerprint(b"tiktoken-rs r50k_base"),
            Tokenizer::HuggingFace { fingerprint, .. } => fingerprint.clone(),
        }
    }

    /// Number of ids the tokenizer can emit: the rows an embedding matrix needs.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Gpt2(_) => GPT2_VOCAB,
            Tokenizer::HuggingFace { tok, .. } => tok.get_vocab_size(true),
        }
    }

    /// Encodes running text. Special tokens are never added, and text that merely looks like
    /// `<|endoftext|>` is encoded as ordinary text. Long text goes in pieces of about
    /// [`PIECE`] bytes where the tokenizer gives the same ids that way ([`cut_points`]).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_owning(text)?.ids)
    }

    /// [`Tokenizer::encode`], with the bytes of `text` each token owns.
    pub fn encode_owning(&self, text: &str) -> Result<Encoded> {
        self.encode_in_pieces(text, PIECE)
    }

    /// [`Tokenizer::encode_owning`] with pieces of about `piece` bytes.
    pub fn encode_in_pieces(&self, text: &str, piece: usize) -> Result<Encoded> {
        let cuts = match self {
            Tokenizer::HuggingFace { in_pieces: false, .. } => Vec::new(),
            _ => cut_points(text, piece),
        };
        let mut out = Encoded { ids: Vec::with_capacity(text.len() / 4), owned: Vec::with_capacity(text.len() / 4) };
        let mut from = 0;
        for to in cuts.into_iter().chain(std::iter::once(text.len())) {
            let (ids, ends) = self.encode_whole(&text[from..to])?;
            // A token owns the bytes from the previous token's end to its own: the spaces a
            // WordPiece tokenizer drops go with the token after them, and whatever follows the
            // last token goes with it, so a text's tokens own exactly its bytes.
            let mut prev = 0;
            for (&id, &end) in ids.iter().zip(&ends) {
                let end = end.clamp(prev, to - from);
                out.ids.push(id);
                out.owned.push((end - prev) as u32);
                prev = end;
            }
            match out.owned.last_mut() {
                Some(last) => *last += (to - from - prev) as u32,
                None if to > from => {
                    return Err(Error::Tokenizer(format!(
                        "{} gives no token for {} bytes of text (from byte {from}); give a tokenizer that reads it",
                        self.name(),
                        to - from
                    )))
                }
                None => {}
            }
            from = to;
        }
        Ok(out)
    }

    /// A piece's ids and the byte offset in it where each token ends.
    fn encode_whole(&self, text: &str) -> Result<(Vec<u32>, Vec<usize>)> {
        match self {
            Tokenizer::Gpt2(bpe) => {
                // Byte-level BPE is lossless: each token is its own bytes, in order.
                let ids = bpe.encode_ordinary(text);
                let lengths = gpt2_lengths(bpe);
                let mut end = 0;
                let ends = ids.iter().map(|&i| {
                    end += lengths.get(i as usize).copied().unwrap_or(0) as usize;
                    end
                });
                let ends = ends.collect();
                Ok((ids, ends))
            }
            Tokenizer::HuggingFace { tok, .. } => {
                // Pieces keep every character (a cut is before a space or newline, which goes
                // with the next piece), so byte-level tokenizers keep their newline tokens.
                let enc = tok.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
                Ok((enc.get_ids().to_vec(), enc.get_offsets().iter().map(|o| o.1).collect()))
            }
        }
    }

    /// One id as its tokenizer spells it (`##ing`, `Ġthe`), for examples a person reads.
    pub fn decode_piece(&self, id: u32) -> String {
        match self {
            Tokenizer::Gpt2(bpe) => {
                bpe.decode_bytes(&[id]).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
            }
            Tokenizer::HuggingFace { tok, .. } => tok.id_to_token(id).unwrap_or_default(),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Gpt2(bpe) => bpe.decode(ids).unwrap_or_else(|_| "<undecodable>".into()),
            Tokenizer::HuggingFace { tok, .. } => tok.decode(ids, true).unwrap_or_default(),
        }
    }
}
