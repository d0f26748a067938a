//! A donor's rows on another tokenizer's vocabulary (an embedding transplant). Each token of
//! the model's tokenizer is read as text, a word start or a continuation (GPT-2's byte-level
//! `Ġx` and SentencePiece's `▁x` start words, WordPiece's `##x` continues one), put through the
//! donor tokenizer's own normalizer, and given donor rows:
//!
//! - **exact**: the donor has that very piece (`x` for a word start, `##x` for a continuation;
//!   punctuation in its standalone form, since BERT's pre-tokenizer always splits it off and its
//!   `##.` rows never train): the row is copied bit for bit;
//! - **pieces** (FVT, Gee et al. 2022): the donor's tokenizer splits the text into pieces, none
//!   unknown: the row is their mean, summed in f64 and rounded once;
//! - **fallback**: text that is no text alone (part of a UTF-8 character), only white space or
//!   control characters, a special token, or text the donor cannot split without its unknown
//!   token: the mean of every donor row, or a seeded draw around it.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::corpus::Tokenizer;
use crate::data::donor::Embedding;
use crate::error::{Error, Result};

/// `--vocab-map`: how a token without an exact match gets its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VocabMap {
    /// The mean of the rows of the pieces the donor's tokenizer splits it into (FVT).
    Pieces,
    /// Only exact matches are copied; every other token takes the fallback.
    Exact,
}

impl VocabMap {
    pub fn name(self) -> &'static str {
        match self {
            VocabMap::Pieces => "pieces",
            VocabMap::Exact => "exact",
        }
    }
}

impl VocabFallback {
    pub fn name(self) -> &'static str {
        match self {
            VocabFallback::Mean => "mean",
            VocabFallback::Random => "random",
        }
    }
}

/// `--vocab-fallback`: the row of a token nothing maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VocabFallback {
    /// The mean of every donor row.
    Mean,
    /// A seeded draw from N(mean, std) of each column of the donor's rows.
    Random,
}

/// What a model token got: its class is stored as this byte (`class` in `--write-mapped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Class {
    Exact = 0,
    Pieces = 1,
    Fallback = 2,
}

/// How a tokenizer writes its tokens.
#[derive(Clone, Debug, PartialEq)]
enum Style {
    /// GPT-2's bytes as printable characters, `Ġ` for a space: a leading space starts a word.
    ByteLevel,
    /// WordPiece: the prefix (`##`) marks a continuation.
    WordPiece(String),
    /// SentencePiece: the replacement (`▁`) marks a word start.
    Metaspace(char),
    /// Anything else: every token taken as a word.
    Plain,
}

/// What a token of a byte-level vocabulary is: between two such vocabularies a token's bytes
/// are its surface form (a piece of a UTF-8 character matches the same piece), and a special
/// token is its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Bytes(Vec<u8>),
    Special(String),
}

/// A model token's text.
#[derive(Clone, Debug, PartialEq)]
pub enum Surface {
    Word(String),
    Cont(String),
    /// No text to map, and why.
    None(&'static str),
}

/// GPT-2's byte-to-character table (printable bytes stand for themselves, the others for the
/// characters from U+0100 on, in order) and its inverse, built once.
fn byte_tables() -> &'static ([char; 256], std::collections::HashMap<char, u8>) {
    static TABLES: std::sync::OnceLock<([char; 256], std::collections::HashMap<char, u8>)> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..256u32 {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            table[b as usize] = match printable {
                true => char::from_u32(b).unwrap_or('\0'),
                false => {
                    next += 1;
                    char::from_u32(next - 1).unwrap_or('\0')
                }
            };
        }
        let inverse = table.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        (table, inverse)
    })
}

/// A text's bytes written the byte-level way.
fn to_byte_level(text: &str) -> String {
    let (table, _) = byte_tables();
    text.bytes().map(|b| table[b as usize]).collect()
}

/// A byte-level token back to its bytes; None for a character outside the table.
fn from_byte_level(token: &str) -> Option<Vec<u8>> {
    let (_, inverse) = byte_tables();
    token.chars().map(|c| inverse.get(&c).copied()).collect()
}

/// The text of token bytes, split into a word start (leading space) or a continuation.
fn surface_of_bytes(bytes: &[u8]) -> Surface {
    let Ok(text) = std::str::from_utf8(bytes) else { return Surface::None("part of a UTF-8 character") };
    let (word, rest) = match text.strip_prefix(' ') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if rest.is_empty() || rest.chars().all(char::is_whitespace) {
        return Surface::None("white space");
    }
    if rest.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Surface::None("white space or control characters inside");
    }
    match word {
        true => Surface::Word(rest.to_string()),
        false => Surface::Cont(rest.to_string()),
    }
}

/// One side of a transplant: a tokenizer, how it writes tokens, and its special tokens.
struct Side<'a> {
    tok: &'a Tokenizer,
    style: Style,
    specials: HashSet<u32>,
    /// The unknown token's id, where the tokenizer has one.
    unk: Option<u32>,
}

impl<'a> Side<'a> {
    fn new(tok: &'a Tokenizer) -> Result<Self> {
        match tok {
            Tokenizer::Gpt2(_) => {
                let end = crate::data::corpus::GPT2_VOCAB as u32 - 1;
                Ok(Side { tok, style: Style::ByteLevel, specials: HashSet::from([end]), unk: None })
            }
            Tokenizer::HuggingFace { tok: hf, path, size, fingerprint, .. } => {
                // The file was read whole once, under --max-input-size: read again at that size.
                let bytes = crate::util::read_input(path, "tokenizer", *size, "it grew since it was read")?;
                if crate::util::fingerprint(&bytes) != *fingerprint {
                    return Err(Error::Tokenizer(format!(
                        "tokenizer {} changed while embgraft read it; run again once it is written",
                        path.display()
                    )));
                }
                let json: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Tokenizer(format!("tokenizer {} is not JSON ({e})", path.display())))?;
                let specials = hf.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(i, _)| i);
                let unk = json["model"]["unk_token"].as_str().and_then(|u| hf.token_to_id(u));
                Ok(Side { tok, style: style_of(&json), specials: specials.collect(), unk })
            }
        }
    }

    fn hf(&self) -> Option<&tokenizers::Tokenizer> {
        match self.tok {
            Tokenizer::HuggingFace { tok, .. } => Some(tok),
            Tokenizer::Gpt2(_) => None,
        }
    }

    /// Token `id`'s text as this tokenizer writes it.
    fn surface(&self, id: u32) -> Surface {
        if self.specials.contains(&id) {
            return Surface::None("special token");
        }
        match (self.tok, &self.style) {
            (Tokenizer::Gpt2(bpe), _) => match bpe.decode_bytes(&[id]) {
                Ok(b) => surface_of_bytes(&b),
                Err(_) => Surface::None("no such id"),
            },
            (Tokenizer::HuggingFace { tok, .. }, style) => {
                let Some(t) = tok.id_to_token(id) else { return Surface::None("no such id") };
                match style {
                    Style::ByteLevel => {
                        from_byte_level(&t).map_or(Surface::None("not byte-level text"), |b| surface_of_bytes(&b))
                    }
                    Style::WordPiece(prefix) => match t.strip_prefix(prefix.as_str()) {
                        Some(rest) => surface_of_bytes(rest.as_bytes()).continued(),
                        None => surface_of_bytes(format!(" {t}").as_bytes()),
                    },
                    Style::Metaspace(r) => match t.strip_prefix(*r) {
                        Some(rest) => surface_of_bytes(format!(" {rest}").as_bytes()),
                        None => surface_of_bytes(t.as_bytes()),
                    },
                    Style::Plain => surface_of_bytes(format!(" {t}").as_bytes()),
                }
            }
        }
    }

    /// Token `id` as a byte-level tokenizer knows it: its bytes (a partial UTF-8 character and
    /// white space included), or a special token's text. None for another style, or no such id.
    fn key(&self, id: u32) -> Option<Key> {
        if self.style != Style::ByteLevel {
            return None;
        }
        match self.tok {
            Tokenizer::Gpt2(bpe) => match self.specials.contains(&id) {
                true => Some(Key::Special(self.tok.decode_piece(id))),
                false => bpe.decode_bytes(&[id]).ok().map(Key::Bytes),
            },
            Tokenizer::HuggingFace { tok, .. } => {
                let t = tok.id_to_token(id)?;
                match self.specials.contains(&id) {
                    true => Some(Key::Special(t)),
                    false => from_byte_level(&t).map(Key::Bytes),
                }
            }
        }
    }

    /// The donor's own spelling of a word start or continuation `text`.
    fn form(&self, text: &str, word: bool) -> String {
        match (&self.style, word) {
            (Style::WordPiece(_), true) | (Style::Plain, _) => text.to_string(),
            (Style::WordPiece(prefix), false) => format!("{prefix}{text}"),
            (Style::ByteLevel, true) => to_byte_level(&format!(" {text}")),
            (Style::ByteLevel, false) => to_byte_level(text),
            (Style::Metaspace(r), true) => format!("{r}{text}"),
            (Style::Metaspace(_), false) => text.to_string(),
        }
    }

    /// `text` through this tokenizer's normalizer (lower-casing, accents), as its vocabulary is.
    fn normalize(&self, text: &str) -> Result<String> {
        use tokenizers::Normalizer;
        let Some(n) = self.hf().and_then(|t| t.get_normalizer()) else { return Ok(text.to_string()) };
        let mut s = tokenizers::NormalizedString::from(text);
        n.normalize(&mut s).map_err(|e| Error::Tokenizer(format!("normalizing {text:?}: {e}")))?;
        Ok(s.get().to_string())
    }
}

impl Surface {
    /// The same text as a continuation (a WordPiece `##x` read through the word-start rule).
    fn continued(self) -> Surface {
        match self {
            Surface::Word(t) | Surface::Cont(t) => Surface::Cont(t),
            none => none,
        }
    }
}

/// How a tokenizer.json writes tokens: from its model, pre-tokenizer and decoder.
fn style_of(json: &serde_json::Value) -> Style {
    fn find<'v>(v: &'v serde_json::Value, kind: &str) -> Option<&'v serde_json::Value> {
        match v {
            serde_json::Value::Object(o) if o.get("type").and_then(|t| t.as_str()) == Some(kind) => Some(v),
            serde_json::Value::Object(o) => o.values().find_map(|x| find(x, kind)),
            serde_json::Value::Array(a) => a.iter().find_map(|x| find(x, kind)),
            _ => None,
        }
    }
    let model = &json["model"];
    if model["type"] == "WordPiece" {
        return Style::WordPiece(model["continuing_subword_prefix"].as_str().unwrap_or("##").to_string());
    }
    let parts = [&json["pre_tokenizer"], &json["decoder"]];
    if parts.iter().any(|p| find(p, "ByteLevel").is_some()) {
        return Style::ByteLevel;
    }
    if let Some(m) = parts.iter().find_map(|p| find(p, "Metaspace")) {
        return Style::Metaspace(m["replacement"].as_str().and_then(|r| r.chars().next()).unwrap_or('▁'));
    }
    Style::Plain
}

/// Which donor rows each model token takes, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    pub class: Vec<Class>,
    /// The donor rows a token takes: one for an exact match, the pieces' for pieces, none for
    /// the fallback.
    pub sources: Vec<Vec<u32>>,
    /// Each token's text as read (for examples); for the fallback, quoted, with the reason.
    pub texts: Vec<String>,
}

impl Mapping {
    /// Tokens of each class: exact, pieces, fallback.
    pub fn counts(&self) -> [usize; 3] {
        let mut c = [0; 3];
        self.class.iter().for_each(|&k| c[k as usize] += 1);
        c
    }

    /// Model token `id` as a person reads it: `"machine" → machine`, `"times" → time + ##s`,
    /// `"Ċ" (white space)`.
    pub fn describe(&self, id: usize, donor: &Tokenizer) -> String {
        let pieces: Vec<String> = self.sources[id].iter().map(|&i| donor.decode_piece(i)).collect();
        match self.class[id] {
            Class::Fallback => format!("{id} {}", self.texts[id]),
            _ => format!("{} {:?} → {}", id, self.texts[id], pieces.join(" + ")),
        }
    }
}

/// Whether two tokenizers have one vocabulary: the same size, and every id the same text, word
/// start or continuation (GPT-2's built-in BPE and its tokenizer.json, say). A donor's rows
/// then follow either's ids as they are.
pub fn same_vocabulary(a: &Tokenizer, b: &Tokenizer) -> Result<bool> {
    if a.vocab_size() != b.vocab_size() {
        return Ok(false);
    }
    let (sa, sb) = (Side::new(a)?, Side::new(b)?);
    Ok((0..a.vocab_size() as u32).all(|id| match (sa.key(id), sb.key(id)) {
        (Some(ka), Some(kb)) => ka == kb,
        _ => sa.surface(id) == sb.surface(id),
    }))
}

/// Whether the donor's byte-level vocabulary holds the model's: every model id is the donor's
/// token of the same id, byte for byte (its added tokens past the model's vocabulary aside).
/// The donor's rows then follow the model's ids as they are, the rest unused. Returns the
/// donor's tokens past the model's.
pub fn holds_vocabulary(donor: &Tokenizer, model: &Tokenizer) -> Result<Option<usize>> {
    let (d, m) = (Side::new(donor)?, Side::new(model)?);
    if d.style != Style::ByteLevel || m.style != Style::ByteLevel || donor.vocab_size() < model.vocab_size() {
        return Ok(None);
    }
    let same = (0..model.vocab_size() as u32).all(|id| m.key(id).is_some() && m.key(id) == d.key(id));
    Ok(same.then(|| donor.vocab_size() - model.vocab_size()))
}

/// Maps every id of `model` to rows of `donor` (a tokenizer.json's, with `rows` rows).
/// Refused when nothing maps exactly: almost certainly the wrong tokenizer.
pub fn map(model: &Tokenizer, donor: &Tokenizer, rows: usize, how: VocabMap) -> Result<Mapping> {
    let (m, d) = (Side::new(model)?, Side::new(donor)?);
    let Some(dtok) = d.hf() else {
        return Err(Error::Input(
            "the donor's tokenizer must be a tokenizer.json to map another vocabulary onto".into(),
        ));
    };
    let unk = d.unk;
    let n = model.vocab_size();
    // Between two byte-level vocabularies a token is matched by its bytes first.
    let by_key: std::collections::HashMap<Key, u32> = match (&m.style, &d.style) {
        (Style::ByteLevel, Style::ByteLevel) => {
            (0..dtok.get_vocab_size(true).min(rows) as u32).filter_map(|i| d.key(i).map(|k| (k, i))).collect()
        }
        _ => std::collections::HashMap::new(),
    };
    let mut out =
        Mapping { class: Vec::with_capacity(n), sources: Vec::with_capacity(n), texts: Vec::with_capacity(n) };
    for id in 0..n as u32 {
        if let Some(&i) = m.key(id).and_then(|k| by_key.get(&k)) {
            out.class.push(Class::Exact);
            out.sources.push(vec![i]);
            out.texts.push(model.decode_piece(id));
            continue;
        }
        let (class, sources, text) = match m.surface(id) {
            Surface::None(why) => (Class::Fallback, Vec::new(), format!("{:?} ({why})", model.decode_piece(id))),
            Surface::Word(t) | Surface::Cont(t) if t.is_empty() => {
                (Class::Fallback, Vec::new(), format!("{t:?} (empty)"))
            }
            s => {
                let (text, word) = match &s {
                    Surface::Word(t) => (t.clone(), true),
                    Surface::Cont(t) => (t.clone(), false),
                    Surface::None(_) => unreachable!("handled above"),
                };
                let norm = d.normalize(&text)?;
                // BERT splits punctuation off words: its standalone form is the trained one.
                let punct = matches!(d.style, Style::WordPiece(_)) && norm.chars().all(|c| c.is_ascii_punctuation());
                let exact = dtok.token_to_id(&d.form(&norm, word || punct)).filter(|&i| (i as usize) < rows);
                match (exact, how) {
                    (Some(i), _) => (Class::Exact, vec![i], text),
                    (None, VocabMap::Exact) => (Class::Fallback, Vec::new(), format!("{text:?} (no exact match)")),
                    (None, VocabMap::Pieces) => {
                        let spaced =
                            if word && d.style == Style::ByteLevel { format!(" {text}") } else { text.clone() };
                        let ids = dtok.encode(spaced, false).map(|e| e.get_ids().to_vec()).unwrap_or_default();
                        let usable = !ids.is_empty() && ids.iter().all(|&i| Some(i) != unk && (i as usize) < rows);
                        match usable {
                            true => (Class::Pieces, ids, text),
                            false => (Class::Fallback, Vec::new(), format!("{text:?} (the donor cannot spell it)")),
                        }
                    }
                }
            }
        };
        out.class.push(class);
        out.sources.push(sources);
        out.texts.push(text);
    }
    if out.counts()[0] == 0 {
        return Err(Error::Input(format!(
            "no token of {} is in the vocabulary of {}: almost certainly the wrong tokenizer for this donor; give \
             the donor's own tokenizer.json with it",
            model.name(),
            donor.name()
        )));
    }
    Ok(out)
}

/// The mean of every donor row, per column, summed in f64.
fn column_means(donor: &Embedding) -> Vec<f64> {
    let mut mean = vec![0f64; donor.cols];
    for row in donor.data.chunks_exact(donor.cols) {
        mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
    }
    mean.iter_mut().for_each(|m| *m /= donor.rows.max(1) as f64);
    mean
}

/// The model vocabulary x donor width matrix `mapping` describes, from `donor`'s rows. The
/// random fallback draws from `rng` in token order, column by column.
pub fn apply(mapping: &Mapping, donor: &Embedding, fallback: VocabFallback, rng: &mut impl rand::Rng) -> Embedding {
    use rand_distr::Distribution;
    let d = donor.cols;
    let mean = column_means(donor);
    let std: Vec<f64> = {
        let mut var = vec![0f64; d];
        for row in donor.data.chunks_exact(d) {
            var.iter_mut().zip(row).zip(&mean).for_each(|((v, &x), m)| *v += (x as f64 - m).powi(2));
        }
        var.iter().map(|v| (v / donor.rows.max(1) as f64).sqrt()).collect()
    };
    let row = |i: u32| &donor.data[i as usize * d..(i as usize + 1) * d];
    let mut data = Vec::with_capacity(mapping.class.len() * d);
    for (class, sources) in mapping.class.iter().zip(&mapping.sources) {
        match class {
            Class::Exact => data.extend_from_slice(row(sources[0])),
            Class::Pieces => {
                let mut sum = vec![0f64; d];
                for &s in sources {
                    sum.iter_mut().zip(row(s)).for_each(|(a, &x)| *a += x as f64);
                }
                data.extend(sum.iter().map(|a| (a / sources.len() as f64) as f32));
            }
            Class::Fallback => match fallback {
                VocabFallback::Mean => data.extend(mean.iter().map(|&m| m as f32)),
                VocabFallback::Random => data.extend(mean.iter().zip(&std).map(|(&m, &s)| {
                    rand_distr::Normal::new(m, s.max(f64::MIN_POSITIVE)).map_or(m, |n| n.sample(rng)) as f32
                })),
            },
        }
    }
    Embedding {
        tensor: format!("{} mapped onto {} ids", donor.tensor, mapping.class.len()),
        source_dtype: donor.source_dtype.clone(),
        rows: mapping.class.len(),
        cols: d,
        data,
    }
}

/// Proves `mapped` is what `mapping` says of `donor`, without the code that built it: every
/// exact row bit for bit the donor's, every pieces row the mean of its pieces (summed here in
/// their own order, as f64). Returns the rows checked of each class.
pub fn verify(mapping: &Mapping, donor: &Embedding, mapped: &Embedding) -> Result<[usize; 2]> {
    let d = donor.cols;
    let mut checked = [0, 0];
    for (t, (class, sources)) in mapping.class.iter().zip(&mapping.sources).enumerate() {
        let got = &mapped.data[t * d..(t + 1) * d];
        let want: Vec<f32> = match class {
            Class::Exact => donor.data[sources[0] as usize * d..(sources[0] as usize + 1) * d].to_vec(),
            Class::Pieces => (0..d)
                .map(|c| {
                    let s: f64 = sources.iter().map(|&p| donor.data[p as usize * d + c] as f64).sum();
                    (s / sources.len() as f64) as f32
                })
                .collect(),
            Class::Fallback => continue,
        };
        if got.iter().zip(&want).any(|(a, b)| a.to_bits() != b.to_bits()) {
            return Err(Error::Donor(format!("the mapped row of token {t} is not its donor rows' ({class:?})")));
        }
        checked[*class as usize] += 1;
    }
    Ok(checked)
}

/// Writes the mapped matrix for PyTorch: `wte` [vocabulary, width] F32 and `class` [vocabulary]
/// U8 (0 exact, 1 pieces, 2 fallback), atomically, to a place [`crate::util::check_output_file`]
/// accepted (`force`: over the existing regular file there).
pub fn write_mapped(path: &Path, mapping: &Mapping, mapped: &Embedding, force: bool) -> Result<()> {
    use safetensors::tensor::TensorView;
    let fail = |e: String| Error::Output(format!("--write-mapped {}: {e}", path.display()));
    let class: Vec<u8> = mapping.class.iter().map(|&c| c as u8).collect();
    let wte =
        TensorView::new(safetensors::Dtype::F32, vec![mapped.rows, mapped.cols], crate::util::f32_bytes(&mapped.data))
            .map_err(|e| fail(e.to_string()))?;
    let cls = TensorView::new(safetensors::Dtype::U8, vec![class.len()], &class).map_err(|e| fail(e.to_string()))?;
    // Streamed from the matrix into the file: no second copy of it in memory.
    crate::util::write_output_with(path, "--write-mapped", force, |tmp| {
        safetensors::serialize_to_file(vec![("wte", wte), ("class", cls)], None, tmp.path())
            .map_err(|e| fail(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BERT-style WordPiece tokenizer.json.
    fn wordpiece(dir: &Path) -> Tokenizer {
        let p = dir.join("donor-tokenizer.json");
        let words = ["the", "time", "machine", "##ing", ",", ".", "!", "travel"];
        crate::fixtures::write_wordpiece_tokenizer(&p, &words).unwrap();
        Tokenizer::from_file(&p, 1 << 20).unwrap()
    }

    /// A tiny byte-level BPE tokenizer.json whose every token is hand-classified.
    fn small_bpe(dir: &Path) -> (Tokenizer, Vec<Class>) {
        let tokens = [
            ("Ġthe", Class::Exact),             // word "the"
            ("ĠMachine", Class::Exact),         // "machine" after lower-casing
            ("ing", Class::Exact),              // continuation "##ing"
            (",", Class::Exact),                // punctuation: the standalone ","
            ("Ġtimes", Class::Pieces),          // "times": time ##s
            ("ler", Class::Pieces),             // continuation, not a piece: l ##e ##r
            ("Ġ", Class::Fallback),             // white space only
            ("Ċ", Class::Fallback),             // a newline
            ("Ġ€", Class::Fallback),            // the donor has no piece for it: [UNK]
            ("<|endoftext|>", Class::Fallback), // special
        ];
        let vocab: serde_json::Map<String, serde_json::Value> =
            tokens.iter().enumerate().map(|(i, (t, _))| (t.to_string(), serde_json::Value::from(i))).collect();
        let n = tokens.len() - 1;
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{"id": n, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
        });
        let p = dir.join("model-tokenizer.json");
        std::fs::write(&p, json.to_string()).unwrap();
        (Tokenizer::from_file(&p, 1 << 20).unwrap(), tokens.iter().map(|t| t.1).collect())
    }

    /// A byte-level BPE tokenizer.json of `tokens` in id order (the last `specials` of them
    /// special added tokens), written as `name` in `dir`.
    fn byte_level(dir: &Path, name: &str, tokens: &[&str], specials: usize) -> Tokenizer {
        let vocab: serde_json::Map<String, serde_json::Value> =
            tokens.iter().enumerate().map(|(i, t)| (t.to_string(), serde_json::Value::from(i))).collect();
        let added: Vec<serde_json::Value> = (tokens.len() - specials..tokens.len())
            .map(|i| {
                serde_json::json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                                   "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
        });
        let p = dir.join(name);
        std::fs::write(&p, json.to_string()).unwrap();
        Tokenizer::from_file(&p, 1 << 20).unwrap()
    }

    /// Between two byte-level vocabularies a token's bytes are its surface: the pieces of a
    /// UTF-8 character (`Ã` is the byte 0xC3 alone, `©` 0xA9), white space and special tokens
    /// match exactly, at whatever id the donor has them; and a donor that holds the model's
    /// vocabulary under the same ids is told apart from one that does not.
    #[test]
    fn byte_level_pairs_match_on_bytes_partial_characters_included() {
        let dir = tempfile::tempdir().unwrap();
        let model_tokens = ["Ġthe", "Ã", "©", "Ġ", "Ċ", "ĠÃ", "Ġzebra", "<|endoftext|>"];
        let model = byte_level(dir.path(), "model.json", &model_tokens, 1);
        // The donor: the same tokens in another order, the zebra missing, two more of its own.
        let donor_tokens = ["©", "Ċ", "Ġthe", "Ġ", "ĠÃ", "Ã", "Ġze", "bra", "<|endoftext|>", "<|nospeech|>"];
        let donor_tok = byte_level(dir.path(), "donor.json", &donor_tokens, 2);
        let m = map(&model, &donor_tok, donor_tokens.len(), VocabMap::Pieces).unwrap();
        let at = |t: &str| donor_tokens.iter().position(|d| *d == t).unwrap() as u32;
        for (id, t) in model_tokens.iter().enumerate() {
            match *t {
                // Not in the donor: spelled from its pieces, as before.
                "Ġzebra" => assert_eq!(m.class[id], Class::Pieces, "{t}: {:?}", m.texts[id]),
                _ => assert_eq!((m.class[id], m.sources[id].clone()), (Class::Exact, vec![at(t)]), "{t}"),
            }
        }
        let donor = donor_rows(donor_tokens.len(), 4);
        let mapped = apply(&m, &donor, VocabFallback::Mean, &mut rand::rng());
        assert_eq!(verify(&m, &donor, &mapped).unwrap(), [7, 1]);
        assert_eq!(holds_vocabulary(&donor_tok, &model).unwrap(), None);

        // A donor holding the model's ids as they are, with tokens of its own past them.
        let mut same: Vec<&str> = model_tokens.to_vec();
        same.extend(["<|nospeech|>", "<|notimestamps|>"]);
        let holder = byte_level(dir.path(), "holder.json", &same, 3);
        assert_eq!(holds_vocabulary(&holder, &model).unwrap(), Some(2));
        // One partial character another byte (0xC3 -> 0xC2, `Â`): no longer the same vocabulary,
        // though both are "part of a UTF-8 character" read as text.
        let mut other = same.clone();
        other[1] = "Â";
        let near = byte_level(dir.path(), "near.json", &other, 3);
        assert_eq!(holds_vocabulary(&near, &model).unwrap(), None);
        let mut seven = model_tokens.to_vec();
        seven[1] = "Â";
        let near_same = byte_level(dir.path(), "near-same.json", &seven, 1);
        assert!(same_vocabulary(&model, &model).unwrap());
        assert!(!same_vocabulary(&model, &near_same).unwrap());
    }

    fn donor_rows(rows: usize, cols: usize) -> Embedding {
        let data = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5).collect();
        Embedding { tensor: "word_embeddings".into(), source_dtype: "F32".into(), rows, cols, data }
    }

    #[test]
    fn byte_level_table_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let text = all.iter().map(|&b| byte_tables().0[b as usize]).collect::<String>();
        assert_eq!(from_byte_level(&text).unwrap(), all);
        assert_eq!(to_byte_level(" the\n"), "ĠtheĊ");
    }

    #[test]
    fn a_small_bpe_vocabulary_maps_as_counted_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let donor_tok = wordpiece(dir.path());
        let (model, want) = small_bpe(dir.path());
        let donor = donor_rows(donor_tok.vocab_size(), 4);
        let m = map(&model, &donor_tok, donor.rows, VocabMap::Pieces).unwrap();
        assert_eq!(m.class, want, "{:?}", m.texts);
        assert_eq!(m.counts(), [4, 2, 4]);
        let pieces: Vec<String> = m.sources[4].iter().map(|&i| donor_tok.decode_piece(i)).collect();
        assert_eq!(pieces, ["time", "##s"]);
        let mapped = apply(&m, &donor, VocabFallback::Mean, &mut rand::rng());
        assert_eq!(verify(&m, &donor, &mapped).unwrap(), [4, 2]);
        // The fallback row is the mean of every donor row.
        let means = column_means(&donor);
        assert_eq!(&mapped.data[6 * 4..7 * 4], means.iter().map(|&x| x as f32).collect::<Vec<_>>().as_slice());
        // --vocab-map exact sends the pieces tokens to the fallback.
        let exact = map(&model, &donor_tok, donor.rows, VocabMap::Exact).unwrap();
        assert_eq!(exact.counts(), [4, 0, 6]);
        // A row changed after mapping is caught by the proof.
        let mut bad = mapped.clone();
        bad.data[4 * 4] = f32::from_bits(bad.data[4 * 4].to_bits() ^ 1);
        assert!(verify(&m, &donor, &bad).unwrap_err().to_string().contains("token 4"));
    }

    /// GPT-2's built-in BPE and a tokenizer.json with its vocabulary are one vocabulary (a
    /// donor's rows follow either as they are); two ids swapped are not.
    #[test]
    fn the_same_vocabulary_is_told_apart_from_another() {
        let gpt2 = Tokenizer::gpt2().unwrap();
        let Tokenizer::Gpt2(bpe) = &gpt2 else { unreachable!() };
        let write = |swap: bool| {
            let mut vocab = serde_json::Map::new();
            for id in 0..crate::data::corpus::GPT2_VOCAB as u32 - 1 {
                let at = match (swap, id) {
                    (true, 262) => 11,
                    (true, 11) => 262,
                    _ => id,
                };
                let bytes = bpe.decode_bytes(&[at]).unwrap();
                vocab.insert(bytes.iter().map(|&b| byte_tables().0[b as usize]).collect::<String>(), id.into());
            }
            vocab.insert("<|endoftext|>".into(), 50256.into());
            let json = serde_json::json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                                  "rstrip": false, "normalized": false, "special": true}],
                "normalizer": null,
                "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
                "post_processor": null,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab,
                          "merges": []}
            });
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("tokenizer.json");
            std::fs::write(&p, json.to_string()).unwrap();
            (Tokenizer::from_file(&p, 1 << 24).unwrap(), dir)
        };
        let (same, _d1) = write(false);
        assert!(same_vocabulary(&gpt2, &same).unwrap());
        let (swapped, _d2) = write(true);
        assert!(!same_vocabulary(&gpt2, &swapped).unwrap());
    }

    #[test]
    fn gpt2_onto_a_wordpiece_donor_copies_exact_rows_and_averages_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let donor_tok = wordpiece(dir.path());
        let gpt2 = Tokenizer::gpt2().unwrap();
        let donor = donor_rows(donor_tok.vocab_size(), 3);
        let m = map(&gpt2, &donor_tok, donor.rows, VocabMap::Pieces).unwrap();
        assert_eq!(m.class.len(), crate::data::corpus::GPT2_VOCAB);
        let id = |t: &str| gpt2.encode(t).unwrap()[0] as usize;
        let Tokenizer::HuggingFace { tok: hf, .. } = &donor_tok else { unreachable!() };
        let the = hf.token_to_id("the").unwrap();
        assert_eq!((m.class[id(" the")], m.sources[id(" the")].clone()), (Class::Exact, vec![the]));
        assert_eq!(m.class[id(",")], Class::Exact);
        assert_eq!(m.class[50256], Class::Fallback, "<|endoftext|>");
        assert_eq!(m.class[id("\n")], Class::Fallback);
        let mapped = apply(&m, &donor, VocabFallback::Random, &mut rand::rng());
        let [exact, pieces] = verify(&m, &donor, &mapped).unwrap();
        let c = m.counts();
        assert_eq!((exact, pieces), (c[0], c[1]));
        assert!(c[1] > 10_000, "most GPT-2 tokens are spelled from letters: {c:?}");
        // Written for PyTorch: wte and class.
        let p = dir.path().join("mapped.safetensors");
        write_mapped(&p, &m, &mapped, false).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("wte").unwrap().shape(), [50257, 3]);
        assert_eq!(st.tensor("class").unwrap().data()[id(" the")], 0);
    }
}
