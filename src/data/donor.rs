//! Finding and reading a donor: the pretrained model whose token embedding gets grafted.
//!
//! A donor is `gpt2` (fetched from the Hugging Face Hub into its standard cache, reused when
//! already there), a `.safetensors` file, or a folder holding `model.safetensors` and perhaps
//! its own `tokenizer.json`. The file is memory-mapped; only the embedding is converted to f32.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

use crate::error::{Error, Result};

pub const GPT2_REPO: &str = "openai-community/gpt2";

/// Embedding tensor names of common checkpoints, tried in this order. A name also matches
/// with any prefix (`bert.embeddings.word_embeddings.weight`).
pub const EMBEDDING_NAMES: &[&str] = &[
    "wte.weight",
    "transformer.wte.weight",
    "model.embed_tokens.weight",
    "embeddings.word_embeddings.weight",
    "gpt_neox.embed_in.weight",
    "transformer.word_embeddings.weight",
    "model.decoder.embed_tokens.weight",
    "tok_embeddings.weight",
    "token_embedding.weight",
    "shared.weight",
];

/// Where a donor's files are on disk.
#[derive(Debug, Clone, Serialize)]
pub struct DonorFiles {
    /// `gpt2` or the path the user gave.
    pub spec: String,
    pub weights: PathBuf,
    pub tokenizer: Option<PathBuf>,
    /// The model's `config.json` (GPT-2's `n_embd`, `n_head`, …), when it has one.
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// Resolves `--donor`: `gpt2` and Hub ids (`org/name`) go through the Hugging Face cache
/// (downloading what is missing), anything else is a local path.
pub fn locate(spec: &str) -> Result<DonorFiles> {
    if let Some(repo) = hub_id(spec) {
        return locate_hub(spec, &repo);
    }
    let path = Path::new(spec);
    if !path.exists() {
        let here =
            std::env::current_dir().map_or_else(|_| String::new(), |d| format!(" (looked from {})", d.display()));
        return Err(Error::Donor(format!(
            "donor {spec} does not exist{here}; pass --donor gpt2, a Hub id like org/name, a .safetensors file, or a \
             folder with model.safetensors"
        )));
    }
    if path.is_dir() {
        let weights = path.join("model.safetensors");
        if !weights.is_file() {
            return Err(Error::Donor(format!(
                "donor folder {spec} has no model.safetensors; pass the .safetensors file itself with --donor"
            )));
        }
        let tok = path.join("tokenizer.json");
        let config = Some(path.join("config.json")).filter(|c| c.is_file());
        return Ok(DonorFiles { spec: spec.into(), weights, tokenizer: tok.is_file().then_some(tok), config });
    }
    let near = |f: &str| path.parent().map(|p| p.join(f)).filter(|t| t.is_file());
    Ok(DonorFiles {
        spec: spec.into(),
        weights: path.to_path_buf(),
        tokenizer: near("tokenizer.json"),
        config: near("config.json"),
    })
}

/// The Hub repository a `--donor` names: `gpt2` (GPT-2's short name) or `org/name` that is
/// not a local path.
fn hub_id(spec: &str) -> Option<String> {
    if spec == "gpt2" {
        return Some(GPT2_REPO.to_string());
    }
    let ok = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let (org, name) = spec.split_once('/')?;
    // A path is never asked of the Hub: it exists, starts with `.`, names a file type, or its
    // folder exists here (`donors/tiny` beside a `donors/` folder is a mistyped path).
    let local =
        Path::new(spec).exists() || spec.starts_with('.') || spec.ends_with(".safetensors") || Path::new(org).is_dir();
    (!local && ok(org) && ok(name) && !name.contains('/')).then(|| spec.to_string())
}

/// A Hub donor: its safetensors weights (`model.safetensors`, or of a sharded model only the
/// shard that holds the embedding, found through `model.safetensors.index.json`), and its
/// tokenizer.json and config.json when it has them. Never a pickle file.
fn locate_hub(spec: &str, repo: &str) -> Result<DonorFiles> {
    let hub = crate::data::hub::Hub::from_env()?;
    // Files the repository turned out not to have, remembered for runs without the network.
    let mut missing = Vec::new();
    let weights = match hub.get(repo, "model.safetensors", false)? {
        Some(w) => w,
        None => {
            missing.push("model.safetensors");
            let Some(index) = hub.get(repo, "model.safetensors.index.json", false)? else {
                return Err(match hub.offline {
                    true => Error::Download(format!(
                        "HF_HUB_OFFLINE is set and {repo} is not in the cache {}; unset it to download, or give \
                         --donor a local path",
                        hub.cache.path().display()
                    )),
                    false => Error::Donor(format!(
                        "donor {repo} has no safetensors weights on {} (neither model.safetensors nor \
                         model.safetensors.index.json); \
                         embgraft reads safetensors only, never pickle files: pick a repository with safetensors",
                        hub.shown
                    )),
                });
            };
            let shard = embedding_shard(repo, &index)?;
            hub.get(repo, &shard, true)?
                .ok_or_else(|| Error::Download(format!("{repo}/{shard} could not be fetched")))?
        }
    };
    // GPT-2's BPE is compiled in; other models bring their tokenizer.json (when they have one).
    let tokenizer = if repo == GPT2_REPO { None } else { hub.get(repo, "tokenizer.json", false)? };
    // config.json only refines Model 5's head count: without the network, go on without it.
    let (config, unreachable) = match hub.get(repo, "config.json", false) {
        Ok(c) => (c, false),
        Err(e) => {
            crate::util::say(&format!("note: {e}; going on without config.json"));
            (None, true)
        }
    };
    if tokenizer.is_none() && repo != GPT2_REPO {
        missing.push("tokenizer.json");
    }
    if config.is_none() && !unreachable {
        missing.push("config.json");
    }
    if !hub.offline {
        hub.remember_missing(repo, &missing);
    }
    Ok(DonorFiles { spec: spec.into(), weights, tokenizer, config })
}

/// The file of a sharded checkpoint that holds the token embedding, from its index.
fn embedding_shard(repo: &str, index: &Path) -> Result<String> {
    let bad = |why: String| Error::Donor(format!("{repo}: {} is unusable ({why})", index.display()));
    let text = crate::util::read_small(index).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| bad("no weight_map".into()))?;
    let file = EMBEDDING_NAMES
        .iter()
        .find_map(|n| map.get(*n).and_then(|f| f.as_str()))
        .ok_or_else(|| bad(format!("none of the known embedding names ({}) is in it", EMBEDDING_NAMES.join(", "))))?;
    if file.contains('/') || file.contains("..") || !file.ends_with(".safetensors") {
        return Err(bad(format!("it points at {file}, not a safetensors file beside it")));
    }
    Ok(file.to_string())
}

/// A memory-mapped safetensors file.
pub struct Donor {
    path: PathBuf,
    mmap: memmap2::Mmap,
}

/// One tensor's header entry, for `inspect` and for error messages.
#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// The donor's embedding matrix, converted to f32, row-major (rows = vocabulary).
#[derive(Debug, Clone)]
pub struct Embedding {
    pub tensor: String,
    pub source_dtype: String,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Donor {
    pub fn open(path: &Path) -> Result<Self> {
        // Opening a FIFO blocks and mapping a device reads without end: regular files only.
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => {
                return Err(Error::Donor(format!(
                    "donor {} is not a regular file (a FIFO, device or folder); pass a .safetensors file",
                    path.display()
                )))
            }
            _ => {}
        }
        let file = std::fs::File::open(path)
            .map_err(|e| Error::Donor(format!("cannot open donor {}: {e}", path.display())))?;
        // SAFETY: the map is read-only; a file changed underneath us would give wrong numbers,
        // which the graft's copy checksum records.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| {
            Error::Donor(format!(
                "cannot map donor {}: {e}; it needs its size in address space: raise the limit (ulimit -v) or \
                     free memory",
                path.display()
            ))
        })?;
        let donor = Donor { path: path.to_path_buf(), mmap };
        donor.parse()?; // validate the header now, so later errors are about content
        Ok(donor)
    }

    fn parse(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.mmap).map_err(|e| {
            Error::Donor(format!(
                "{} is not a valid safetensors file ({e}); pass a .safetensors file, re-download it if truncated",
                self.path.display()
            ))
        })
    }

    pub fn tensors(&self) -> Result<Vec<TensorInfo>> {
        let st = self.parse()?;
        let mut out: Vec<TensorInfo> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| TensorInfo { name, dtype: format!("{:?}", view.dtype()), shape: view.shape().to_vec() })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The tensor that would be grafted: `explicit` if given, else the first known name.
    pub fn embedding_name(&self, explicit: Option<&str>) -> Result<String> {
        let infos = self.tensors()?;
        if let Some(name) = explicit {
            let info = infos.iter().find(|t| t.name == name).ok_or_else(|| {
                Error::Donor(format!(
                    "{} has no tensor named {name}; run `embgraft inspect {}` to list them",
                    self.path.display(),
                    self.path.display()
                ))
            })?;
            if info.shape.len() != 2 {
                return Err(Error::Donor(format!(
                    "tensor {name} has shape {:?}, not 2-D (vocabulary x width); pass an embedding matrix with \
                     --tensor",
                    info.shape
                )));
            }
            return Ok(name.to_string());
        }
        for known in EMBEDDING_NAMES {
            let suffix = format!(".{known}");
            if let Some(t) =
                infos.iter().find(|t| t.shape.len() == 2 && (t.name == *known || t.name.ends_with(&suffix)))
            {
                return Ok(t.name.clone());
            }
        }
        let two_d: Vec<String> =
            infos.iter().filter(|t| t.shape.len() == 2).map(|t| format!("{} {:?}", t.name, t.shape)).collect();
        Err(Error::Donor(format!(
            "no embedding tensor with a known name in {}; 2-D tensors: [{}]; pick one with --tensor NAME",
            self.path.display(),
            if two_d.is_empty() { "none".to_string() } else { two_d.join(", ") }
        )))
    }

    /// Reads one 2-D tensor as f32 (F32, F16 and BF16 are accepted).
    pub fn embedding(&self, explicit: Option<&str>) -> Result<Embedding> {
        let name = self.embedding_name(explicit)?;
        let t = self.read(&name)?;
        let (rows, cols) = (t.shape[0], t.shape[1]);
        if rows == 0 || cols == 0 {
            return Err(Error::Donor(format!("tensor {name} is empty ({rows} x {cols})")));
        }
        Ok(Embedding { tensor: name, source_dtype: t.dtype, rows, cols, data: t.data })
    }

    /// Reads any tensor by its exact name, converted to f32.
    pub fn read(&self, name: &str) -> Result<DonorTensor> {
        let st = self.parse()?;
        let view = st.tensor(name).map_err(|e| Error::Donor(format!("{name}: {e}")))?;
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => crate::util::f32_from_bytes(bytes),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(Error::Donor(format!(
                    "tensor {name} is {other:?}; only F32, F16 and BF16 tensors can be grafted"
                )))
            }
        };
        check_finite(name, view.shape().get(1).copied().unwrap_or(1), &data)?;
        Ok(DonorTensor { name: name.into(), dtype: format!("{:?}", view.dtype()), shape: view.shape().to_vec(), data })
    }

    /// The donor tensor standing for a model parameter named as in Hugging Face's GPT-2
    /// (`h.0.attn.c_attn.weight`): that name with any prefix (`transformer.`), or, for the
    /// position embedding, BERT's `position_embeddings.weight`. None when the donor has none.
    pub fn find(&self, param: &str) -> Result<Option<String>> {
        let infos = self.tensors()?;
        let mut wanted = vec![param.to_string()];
        if param == "wpe.weight" {
            wanted.push("embeddings.position_embeddings.weight".into());
        }
        for w in &wanted {
            let suffix = format!(".{w}");
            let hits: Vec<&TensorInfo> = infos.iter().filter(|t| t.name == *w || t.name.ends_with(&suffix)).collect();
            match hits.as_slice() {
                [] => continue,
                [one] => return Ok(Some(one.name.clone())),
                many => {
                    return Err(Error::Donor(format!(
                        "{} has several tensors for {param}: {}; graft fewer parts",
                        self.path.display(),
                        many.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
        Ok(None)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file's bytes (mapped, not read ahead).
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }
}

/// Refuses values that are not numbers: a NaN or infinity grafted in would make every loss NaN,
/// and a frozen one would stay so.
pub fn check_finite(name: &str, cols: usize, data: &[f32]) -> Result<()> {
    let Some(first) = data.iter().position(|v| !v.is_finite()) else { return Ok(()) };
    let count = data.iter().filter(|v| !v.is_finite()).count();
    Err(Error::Donor(format!(
        "donor tensor {name} holds {count} NaN or infinite values (the first in row {}); embgraft grafts finite \
         values only: repair or re-export the donor",
        first / cols.max(1)
    )))
}

/// Any donor tensor, converted to f32, row-major.
#[derive(Debug, Clone)]
pub struct DonorTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The sizes a GPT-2-style `config.json` gives (any field may be missing).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DonorConfig {
    #[serde(alias = "hidden_size")]
    pub n_embd: Option<usize>,
    #[serde(alias = "num_attention_heads")]
    pub n_head: Option<usize>,
    #[serde(alias = "num_hidden_layers")]
    pub n_layer: Option<usize>,
    #[serde(alias = "max_position_embeddings")]
    pub n_positions: Option<usize>,
    pub activation_function: Option<String>,
    pub layer_norm_epsilon: Option<f64>,
}

impl DonorConfig {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            crate::util::read_small(path).map_err(|e| Error::Donor(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Donor(format!("{} is not a model config.json ({e}); remove it or fix it", path.display()))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use std::collections::HashMap;

    /// Writes a safetensors file with the given (name, dtype, shape, raw bytes).
    pub fn write_safetensors(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: HashMap<String, TensorView> =
            tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
        crate::util::f32_bytes(v).to_vec()
    }

    #[test]
    fn finds_gpt2_wte_among_other_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.safetensors");
        let wte = crate::fixtures::write_gpt2_layout(&p, 8, 0.1, 0).unwrap();
        let files = locate(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(files.weights, p);
        assert!(files.tokenizer.is_none());
        let donor = Donor::open(&files.weights).unwrap();
        let emb = donor.embedding(None).unwrap();
        assert_eq!(emb.tensor, "wte.weight");
        assert_eq!((emb.rows, emb.cols), (50257, 8));
        assert_eq!(emb.data, wte);
        assert_eq!(donor.tensors().unwrap().len(), 6);
    }

    #[test]
    fn prefixed_names_and_half_precision_are_converted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let vals = [0.5f32, -1.25, 3.0, 0.0, 256.0, -2.0]; // exact in f16 and bf16
        let f16: Vec<u8> = vals.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
        let bf16: Vec<u8> = vals.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
        write_safetensors(
            &p,
            &[
                ("bert.embeddings.word_embeddings.weight", Dtype::F16, vec![3, 2], f16),
                ("other", Dtype::BF16, vec![2, 3], bf16),
            ],
        );
        let donor = Donor::open(&p).unwrap();
        let emb = donor.embedding(None).unwrap();
        assert_eq!(emb.tensor, "bert.embeddings.word_embeddings.weight");
        assert_eq!(emb.source_dtype, "F16");
        assert_eq!(emb.data, vals);
        let other = donor.embedding(Some("other")).unwrap();
        assert_eq!((other.rows, other.cols, other.source_dtype.as_str()), (2, 3, "BF16"));
        assert_eq!(other.data, vals);
    }

    #[test]
    fn unknown_names_list_the_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        write_safetensors(
            &p,
            &[
                ("foo", Dtype::F32, vec![4, 2], f32_bytes(&[0.0; 8])),
                ("bar", Dtype::F32, vec![3], f32_bytes(&[0.0; 3])),
            ],
        );
        let donor = Donor::open(&p).unwrap();
        let msg = donor.embedding(None).unwrap_err().to_string();
        assert!(msg.contains("foo [4, 2]") && msg.contains("--tensor"), "{msg}");
        let msg = donor.embedding(Some("bar")).unwrap_err().to_string();
        assert!(msg.contains("not 2-D"), "{msg}");
    }

    /// Random files, bit flips, truncations and absurd header lengths: every one is read as
    /// an error or as a valid file, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        write_safetensors(
            &p,
            &[
                ("wte.weight", Dtype::F32, vec![5, 3], f32_bytes(&[0.25; 15])),
                ("h.0.x", Dtype::F16, vec![2, 2], vec![0; 8]),
                ("scalar", Dtype::F32, vec![], f32_bytes(&[1.0])),
            ],
        );
        let valid = std::fs::read(&p).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        for case in 0..1500 {
            let bytes: Vec<u8> = match case % 4 {
                0 => (0..rng.random_range(0..120)).map(|_| rng.random()).collect(),
                1 => {
                    let mut b = valid.clone();
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(0..b.len());
                        b[i] ^= 1 << rng.random_range(0..8);
                    }
                    b
                }
                2 => valid[..rng.random_range(0..valid.len())].to_vec(),
                _ => {
                    let mut b = valid.clone();
                    b[..8].copy_from_slice(&rng.random_range(0u64..1 << 40).to_le_bytes());
                    b
                }
            };
            std::fs::write(&p, &bytes).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                if let Ok(d) = Donor::open(&p) {
                    let _ = d.tensors();
                    let _ = d.embedding(None);
                    let _ = d.embedding(Some("h.0.x"));
                    let _ = d.embedding(Some("scalar"));
                }
            });
            assert!(outcome.is_ok(), "case {case} panicked on {} bytes", bytes.len());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        std::fs::write(&p, b"this is not a safetensors file at all").unwrap();
        let msg = Donor::open(&p).err().unwrap().to_string();
        assert!(msg.contains("not a valid safetensors"), "{msg}");
        let msg = locate(dir.path().join("nope").to_str().unwrap()).unwrap_err().to_string();
        assert!(msg.contains("does not exist"), "{msg}");
    }
}
