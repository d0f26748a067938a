//! `embgraft export DIR --config C --seed S --out FOLDER`: one finished cell's saved weights
//! (`--save-weights`) as a folder PyTorch and transformers load as it is.
//!
//! - Model 5: a Hugging Face GPT-2 folder (`config.json` as `GPT2Config`, `model.safetensors`
//!   in GPT-2's layout with the projections transposed back to `Conv1D`'s (in, out), the run's
//!   tokenizer files where it read a `tokenizer.json`, `generation_config.json`):
//!   `GPT2LMHeadModel.from_pretrained(FOLDER)`.
//! - Model 1: `model.safetensors` (`embedding.weight`, `unembedding.weight`) and `config.json`,
//!   for the dozen-line PyTorch module in docs/weights.md (`embgraft.torch_model1(FOLDER)`).
//!
//! Both get `embgraft.json` (which run, what made it, its final test loss) and
//! `test-windows.safetensors` (the run's test windows as `input_ids` and `labels`, int64), so a
//! reader can check that the export scores what the run scored. The folder is written beside
//! its place and moved there whole: an export that fails leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{tensor::TensorView, Dtype};
use serde_json::json;

use crate::config::grid::{grid, groups, Group};
use crate::config::provenance::{self, MadeUnder};
use crate::config::{ExperimentConfig, Letter, ModelKind};
use crate::error::{Error, Result};
use crate::experiment::folder::{self, Mode};
use crate::experiment::rebuild::{self, Expected};
use crate::model::model5::{Activation, Model5Config};
use crate::train::results::{InputSummary, RunResult};
use crate::train::sinks::{cell_file, weights_file};
use crate::train::weights::{ModelRecord, NamedTensor, Saved};

/// What to export: the cell, where to, and (for a donor that moved) where its file is now.
pub struct Request<'a> {
    pub dir: &'a Path,
    pub letter: Letter,
    pub seed: u64,
    pub out: &'a Path,
    pub force: bool,
    pub donor: Option<&'a Path>,
}

/// What was written, for the one line the command prints.
pub struct Exported {
    pub files: Vec<String>,
    pub model: ModelKind,
    pub final_test_loss: Option<f64>,
    /// Why a part could not be written (the tokenizer files, the test windows); the rest was.
    pub notes: Vec<String>,
}

/// The files an export writes (a `--force` export replaces these in a non-empty folder).
const FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "embgraft.json",
    "test-windows.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
];

/// A finished cell with its saved weights, each checked against the folder it is in.
pub struct Cell {
    pub group: Group,
    pub run: RunResult,
    pub weights: Saved,
    info: InputSummary,
    made: MadeUnder,
}

/// Finds cell `letter`-`seed` in the run folder `dir` (a one-group experiment's, or one group's
/// folder of several) and verifies its run file and weights file.
pub fn open_cell(dir: &Path, letter: Letter, seed: u64) -> Result<Cell> {
    let (top, group) = find_group(dir)?;
    let sub = match group.name.is_empty() {
        true => top.clone(),
        false => top.join(&group.name),
    };
    let _claim = folder::claim(&top, Mode::Shared)?;
    let cells = grid(&group.cfg);
    if !cells.contains(&(seed, letter)) {
        return Err(Error::Input(format!(
            "{} has no cell {letter} seed {seed} (configurations {}, seeds {}); pick one of those",
            sub.display(),
            group.cfg.graft.configs,
            describe_seeds(&cells)
        )));
    }
    let run_path = cell_file(&sub, letter, seed);
    if !run_path.exists() {
        return Err(Error::Input(format!(
            "{letter} seed {seed} has not finished in {} (no {}); finish it with --resume, then export",
            sub.display(),
            file_name(&run_path)
        )));
    }
    let info = read_inputs_json(&sub)?;
    let made = MadeUnder {
        fingerprints: info.fingerprints.clone().unwrap_or_default(),
        settings: provenance::settings_of(&group.cfg),
    };
    let expected = Expected { made: &made, group: &group.name, strict: rebuild::records_fingerprints(&sub) };
    let run = expected.run_file(&run_path, letter, seed, &mut false)?;
    let w = weights_file(&sub, letter, seed);
    if !w.exists() {
        return Err(Error::Input(format!(
            "{letter} seed {seed} in {} was made without --save-weights, so it has no {}; delete {} and run `compare \
             --resume {} --save-weights` to train that cell again with its weights kept",
            sub.display(),
            file_name(&w),
            file_name(&run_path),
            top.display()
        )));
    }
    let weights = expected.weights(&w, letter, seed)?;
    Ok(Cell { group, run, weights, info, made })
}

impl Cell {
    /// The trained network's logits, on the CPU, for `windows` rows of token ids (`ids`,
    /// row-major, `ids.len() / windows` each): (windows · length, vocabulary), row-major.
    pub fn logits(&self, ids: &[u32], windows: usize, donor: Option<&Path>) -> Result<Vec<f32>> {
        let len = ids.len().checked_div(windows).filter(|l| l * windows == ids.len() && *l > 0).ok_or_else(|| {
            Error::Input(format!("{} token ids do not make {windows} windows of one length", ids.len()))
        })?;
        let tensors = self.weights.read(donor)?;
        let dev = candle_core::Device::Cpu;
        let vocab = tensors.first().map_or(0, |t| t.1[0]);
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::Input(format!("token id {bad} is outside the model's vocabulary of {vocab}")));
        }
        let x = candle_core::Tensor::from_slice(ids, (windows, len), &dev)?;
        let z = match self.weights.model.kind {
            ModelKind::Model1 => {
                let (wte, head) = (find(&tensors, "wte")?, find(&tensors, "lm_head")?);
                let m =
                    crate::model::model1::Model1::from_values(wte.2.clone(), head.2.clone(), vocab, wte.1[1], &dev)?;
                m.forward(&x)?.flatten_to(1)?
            }
            ModelKind::Model5 => {
                let cfg = self.weights.model.model5.clone().ok_or_else(|| {
                    Error::Input("the weights file does not record Model 5's sizes; run that cell again".into())
                })?;
                if len > cfg.context {
                    return Err(Error::Input(format!(
                        "windows of {len} tokens are longer than the context {}",
                        cfg.context
                    )));
                }
                let mut params = crate::model::params::Params::default();
                for (name, shape, v) in tensors {
                    let t = candle_core::Tensor::from_vec(v, shape, &dev)?;
                    params.insert(name, candle_core::Var::from_tensor(&t)?);
                }
                let m = crate::model::model5::Model5::from_params(cfg, params)?;
                m.logits(&x, &crate::model::params::Names::new())?
            }
        };
        Ok(z.flatten_all()?.to_vec1::<f32>()?)
    }
}

pub fn export(req: &Request) -> Result<Exported> {
    check_out(req.out, req.force)?;
    let Cell { group, run, weights: saved, info, made } = open_cell(req.dir, req.letter, req.seed)?;
    let tensors = saved.read(req.donor)?;
    let mut notes = Vec::new();
    let tmp = staging(req.out)?;
    let mut files = match saved.model.kind {
        ModelKind::Model1 => write_model1(tmp.path(), &tensors)?,
        ModelKind::Model5 => write_model5(tmp.path(), &saved.model, &tensors)?,
    };
    let (tokenizer, windows) = match crate::experiment::inputs::load_inputs(&group.cfg) {
        Ok(inputs) => {
            if let (Some(then), now) = (&info.fingerprints, &inputs.prints) {
                let paths = [info.corpus.as_str(), info.donor.as_str(), info.tokenizer.as_str()];
                provenance::check_inputs(then, now, paths, false)?;
            }
            (Some(inputs.tokenizer), Some(inputs.data))
        }
        Err(e) => {
            notes.push(format!("the run's inputs cannot be read again ({e}): no tokenizer files or test windows"));
            (None, None)
        }
    };
    if let Some(t) = &tokenizer {
        files.extend(copy_tokenizer(tmp.path(), t, &mut notes)?);
    }
    if let Some(data) = &windows {
        files.push(write_windows(tmp.path(), data)?);
    }
    if saved.model.kind == ModelKind::Model5 {
        let gpt2 = matches!(tokenizer, Some(crate::data::corpus::Tokenizer::Gpt2(_)));
        let gen = match gpt2 {
            true => json!({"bos_token_id": 50256, "eos_token_id": 50256}),
            false => json!({}),
        };
        files.push(write_json(tmp.path(), "generation_config.json", &gen)?);
    }
    let final_test_loss = run.points.last().map(|p| p.test_loss);
    files.push(write_json(tmp.path(), "embgraft.json", &provenance_json(&run, &group, &made, &saved.model, &info))?);
    place(tmp, req.out, &files)?;
    files.sort();
    Ok(Exported { files, model: saved.model.kind, final_test_loss, notes })
}

/// Refuses a place that is a file, or a non-empty folder without `--force`, before anything.
fn check_out(out: &Path, force: bool) -> Result<()> {
    match std::fs::symlink_metadata(out) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => {
            Err(Error::Output(format!("--out {} is a file, not a folder; give a folder for the export", out.display())))
        }
        Ok(_) => {
            let full = std::fs::read_dir(out)
                .map_err(|e| Error::Output(format!("cannot read --out {}: {e}", out.display())))?
                .next()
                .is_some();
            match full && !force {
                true => Err(Error::Output(format!(
                    "--out {} is not empty; give an empty or new folder, or --force to replace an earlier export's \
                     files there",
                    out.display()
                ))),
                false => Ok(()),
            }
        }
    }
}

/// The run folder holding `dir` and the group `dir` is: a one-group experiment's folder, or
/// one group's folder of several (whose parent holds config.toml).
fn find_group(dir: &Path) -> Result<(PathBuf, Group)> {
    let read = |top: &Path| -> Result<Option<ExperimentConfig>> {
        let p = top.join("config.toml");
        if !p.is_file() {
            return Ok(None);
        }
        let text =
            crate::util::read_small(&p).map_err(|e| Error::Input(format!("cannot read {}: {e}", p.display())))?;
        let cfg = ExperimentConfig::from_toml(&text)
            .map_err(|e| Error::Input(format!("{} is damaged or not an embgraft config ({e})", p.display())))?;
        rebuild::check_saved_settings(top, &cfg)?;
        Ok(Some(cfg))
    };
    if let Some(cfg) = read(dir)? {
        let mut all = groups(&cfg);
        return match all.len() {
            1 => Ok((dir.to_path_buf(), all.remove(0))),
            _ => Err(Error::Input(format!(
                "{} holds {} groups; export from one of them: {}",
                dir.display(),
                all.len(),
                all.iter().map(|g| dir.join(&g.name).display().to_string()).collect::<Vec<_>>().join(", ")
            ))),
        };
    }
    let not_run = || {
        Error::Input(format!(
            "{} is not a run folder (no config.toml); give the --out folder of a compare",
            dir.display()
        ))
    };
    let (parent, name) = match (dir.parent(), dir.file_name()) {
        (Some(p), Some(n)) => (if p.as_os_str().is_empty() { Path::new(".") } else { p }, n.to_string_lossy()),
        _ => return Err(not_run()),
    };
    let cfg = read(parent)?.ok_or_else(not_run)?;
    let group = groups(&cfg).into_iter().find(|g| g.name == name).ok_or_else(not_run)?;
    Ok((parent.to_path_buf(), group))
}

fn describe_seeds(cells: &[(u64, Letter)]) -> String {
    let (lo, hi) = (cells.iter().map(|c| c.0).min(), cells.iter().map(|c| c.0).max());
    match (lo, hi) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "none".into(),
    }
}

fn read_inputs_json(sub: &Path) -> Result<InputSummary> {
    let p = sub.join("inputs.json");
    let text = crate::util::read_small(&p).map_err(|e| {
        Error::Input(format!("cannot read {} ({e}); the run folder is incomplete: restore it or rerun", p.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Input(format!("{} is corrupt ({e})", p.display())))
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A fresh hidden folder beside `out`, where the export is written before it is moved there.
fn staging(out: &Path) -> Result<tempfile::TempDir> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::Output(format!("cannot create {}: {e}", parent.display())))?;
    tempfile::Builder::new()
        .prefix(".embgraft-export-")
        .tempdir_in(parent)
        .map_err(|e| Error::Output(format!("cannot write in {}: {e}", parent.display())))
}

/// Moves the staged files to `out`: the whole folder when `out` is new or empty, else file by
/// file over an earlier export's (whose files this export does not write are removed).
fn place(tmp: tempfile::TempDir, out: &Path, files: &[String]) -> Result<()> {
    let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", out.display()));
    if out.is_dir() && std::fs::read_dir(out).map_err(fail)?.next().is_none() {
        std::fs::remove_dir(out).map_err(fail)?;
    }
    if !out.exists() {
        let staged = tmp.keep();
        return std::fs::rename(&staged, out).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            fail(e)
        });
    }
    for name in FILES.iter().filter(|n| !files.iter().any(|f| f == *n)) {
        let p = out.join(name);
        if p.is_file() {
            std::fs::remove_file(&p).map_err(fail)?;
        }
    }
    for f in files {
        std::fs::rename(tmp.path().join(f), out.join(f)).map_err(fail)?;
    }
    Ok(())
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Output(e.to_string()))? + "\n";
    crate::util::write_atomic(&dir.join(name), text.as_bytes())?;
    Ok(name.to_string())
}

type Tensors = [NamedTensor];

/// Writes `model.safetensors` from (name, shape, values), all f32.
fn write_safetensors(dir: &Path, named: &[(String, Vec<usize>, &[f32])]) -> Result<String> {
    let path = dir.join("model.safetensors");
    let fail = |e: String| Error::Output(format!("cannot write {}: {e}", path.display()));
    let views: Vec<(String, TensorView)> = named
        .iter()
        .map(|(n, s, v)| {
            let view =
                TensorView::new(Dtype::F32, s.clone(), crate::util::f32_bytes(v)).map_err(|e| fail(e.to_string()))?;
            Ok((n.clone(), view))
        })
        .collect::<Result<_>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| fail(e.to_string()))?;
    crate::util::write_atomic(&path, &bytes)?;
    Ok("model.safetensors".into())
}

fn find<'a>(tensors: &'a Tensors, name: &str) -> Result<&'a NamedTensor> {
    tensors
        .iter()
        .find(|t| t.0 == name)
        .ok_or_else(|| Error::Input(format!("the weights file has no {name}; delete it and run that cell again")))
}

/// Model 1: `embedding.weight` and `unembedding.weight`, both (V, d), and its sizes.
fn write_model1(dir: &Path, tensors: &Tensors) -> Result<Vec<String>> {
    let (wte, head) = (find(tensors, "wte")?, find(tensors, "lm_head")?);
    let (vocab, dim) = (wte.1[0], wte.1[1]);
    let st = write_safetensors(
        dir,
        &[("embedding.weight".into(), wte.1.clone(), &wte.2), ("unembedding.weight".into(), head.1.clone(), &head.2)],
    )?;
    let config = json!({
        "architectures": ["EmbgraftModel1"],
        "model_type": "embgraft-model1",
        "vocab_size": vocab,
        "hidden_size": dim,
        "hidden_act": "gelu",
        "note": "token embedding -> exact GELU -> unembedding (no bias); load with embgraft.torch_model1(folder)",
    });
    Ok(vec![st, write_json(dir, "config.json", &config)?])
}

/// The projections GPT-2 stores as `Conv1D` weights, (in, out); the model keeps them (out, in).
fn is_conv1d(name: &str) -> bool {
    name.ends_with(".weight")
        && ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].iter().any(|p| name.contains(p))
}

/// Model 5: GPT-2's tensors under `transformer.`, projections transposed back, and the head
/// (only when untied: a tied head is `wte`, which `GPT2LMHeadModel` ties itself).
fn write_model5(dir: &Path, model: &ModelRecord, tensors: &Tensors) -> Result<Vec<String>> {
    let cfg = model.model5.as_ref().ok_or_else(|| {
        Error::Input("the weights file does not record Model 5's sizes; delete it and run that cell again".into())
    })?;
    let transposed: Vec<NamedTensor> = tensors
        .iter()
        .map(|(n, shape, v)| match (is_conv1d(n), shape.as_slice()) {
            (true, &[rows, cols]) => (n.clone(), vec![cols, rows], crate::ops::decoder::transpose(v, rows, cols)),
            _ => (n.clone(), shape.clone(), v.clone()),
        })
        .collect();
    let named: Vec<(String, Vec<usize>, &[f32])> = transposed
        .iter()
        .map(|(n, s, v)| {
            let hf = if n == "lm_head.weight" { n.clone() } else { format!("transformer.{n}") };
            (hf, s.clone(), &v[..])
        })
        .collect();
    let st = write_safetensors(dir, &named)?;
    Ok(vec![st, write_json(dir, "config.json", &gpt2_config(cfg))?])
}

/// `GPT2Config` for Model 5's sizes: no dropout (the run trained without), attention scaled
/// by 1/sqrt(head width) as Model 5 scales it.
fn gpt2_config(c: &Model5Config) -> serde_json::Value {
    let act = match c.activation {
        Activation::GeluNew => "gelu_new",
        Activation::Gelu => "gelu",
    };
    json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab,
        "n_positions": c.context,
        "n_ctx": c.context,
        "n_embd": c.dim,
        "n_layer": c.layers,
        "n_head": c.heads,
        "n_inner": null,
        "activation_function": act,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "summary_first_dropout": 0.0,
        "layer_norm_epsilon": c.layer_norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "tie_word_embeddings": c.tied,
        "use_cache": true,
        "torch_dtype": "float32",
    })
}

/// The run's tokenizer files: its tokenizer.json and the Hugging Face files beside it. The
/// built-in GPT-2 BPE has no file here; a note says to load GPT-2's.
fn copy_tokenizer(dir: &Path, t: &crate::data::corpus::Tokenizer, notes: &mut Vec<String>) -> Result<Vec<String>> {
    let crate::data::corpus::Tokenizer::HuggingFace { path, .. } = t else {
        notes.push(
            "the run used GPT-2's built-in BPE: load its tokenizer with AutoTokenizer.from_pretrained(\"gpt2\")".into(),
        );
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let beside = path.parent().unwrap_or(Path::new("."));
    let sources: Vec<(PathBuf, &str)> = std::iter::once((path.clone(), "tokenizer.json"))
        .chain(
            ["tokenizer_config.json", "special_tokens_map.json", "vocab.json", "vocab.txt", "merges.txt"]
                .into_iter()
                .map(|n| (beside.join(n), n)),
        )
        .collect();
    for (src, name) in sources {
        if !src.is_file() {
            continue;
        }
        let bytes = crate::util::read_input(&src, "tokenizer file", 1 << 30, "it should be far smaller")
            .map_err(|e| Error::Input(e.to_string()))?;
        crate::util::write_atomic(&dir.join(name), &bytes)?;
        out.push(name.to_string());
    }
    Ok(out)
}

/// The test windows as int64 `input_ids` and `labels`, (windows, sequence length) each.
fn write_windows(dir: &Path, data: &crate::data::corpus::Dataset) -> Result<String> {
    let name = "test-windows.safetensors";
    let fail = |e: String| Error::Output(format!("cannot write {name}: {e}"));
    let (xs, ys) = data.pairs(&data.test);
    let bytes = |v: &[u32]| v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect::<Vec<u8>>();
    let (xb, yb) = (bytes(&xs), bytes(&ys));
    let shape = vec![data.test.len(), data.seq_len];
    let views = vec![
        ("input_ids".to_string(), TensorView::new(Dtype::I64, shape.clone(), &xb).map_err(|e| fail(e.to_string()))?),
        ("labels".to_string(), TensorView::new(Dtype::I64, shape, &yb).map_err(|e| fail(e.to_string()))?),
    ];
    let out = safetensors::serialize(views, None).map_err(|e| fail(e.to_string()))?;
    crate::util::write_atomic(&dir.join(name), &out)?;
    Ok(name.into())
}

/// `embgraft.json`: which run this is and what made it.
fn provenance_json(
    run: &RunResult,
    group: &Group,
    made: &MadeUnder,
    model: &ModelRecord,
    info: &InputSummary,
) -> serde_json::Value {
    let last = run.points.last();
    let settings: BTreeMap<&String, serde_json::Value> =
        made.settings.iter().map(|(k, v)| (k, serde_json::from_str(v).unwrap_or(json!(v)))).collect();
    json!({
        "embgraft_version": env!("CARGO_PKG_VERSION"),
        "config": run.config.to_string(),
        "seed": run.seed,
        "group": group.name,
        "model": model.describe,
        "steps": run.steps,
        "final_test_loss": last.map(|p| p.test_loss),
        "final_test_bpb": last.and_then(|p| p.test_bpb),
        "test_windows": info.test_windows,
        "corpus": Path::new(&info.corpus).file_name().map(|n| n.to_string_lossy().into_owned()),
        "tokenizer": info.tokenizer,
        "fingerprints": made.fingerprints,
        "settings": settings,
    })
}
