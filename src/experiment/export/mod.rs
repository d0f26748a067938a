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
//! Both get `embgraft.json` (which run, what made it, its final test loss, the files written) and
//! `test-windows.safetensors` (the run's test windows as `input_ids` and `labels`, int64), so a
//! reader can check that the export scores what the run scored. Where it writes, and what it may
//! replace there, is the `dest` module's: an export that fails or is interrupted leaves nothing behind.

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

mod dest;
use dest::{Dest, RECORD};

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
    if !w.exists() && group.cfg.run.save_weights {
        return Err(Error::Input(format!(
            "{letter} seed {seed} in {} has no {}, though the run kept its weights (--save-weights): it was deleted \
             or moved; put it back, or delete {} and run `compare --resume {} --save-weights` to train that cell again",
            sub.display(),
            file_name(&w),
            file_name(&run_path),
            top.display()
        )));
    }
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
    check_shapes(&weights, &info, &w)?;
    Ok(Cell { group, run, weights, info, made })
}

/// Every tensor of a weights file against the run's model: the names and shapes it must have
/// (a header edited and its checksum recomputed passes the checksum, which proves integrity, not
/// origin). Nothing is exported or computed from a file that fails.
fn check_shapes(saved: &Saved, info: &InputSummary, path: &Path) -> Result<()> {
    let spec = saved.model.spec(info.vocab, info.dim).ok_or_else(|| {
        Error::Input(format!("{} does not record Model 5's sizes; delete it and run that cell again", path.display()))
    })?;
    // Every mismatch is the same finding: the file says something the run's model is not.
    let altered = |what: String| {
        Error::Input(format!("{} {what}: the file was altered; delete it and run that cell again", path.display()))
    };
    if spec.vocab() != info.vocab {
        return Err(altered(format!(
            "records a model with a vocabulary of {}, but the run's is {}",
            spec.vocab(),
            info.vocab
        )));
    }
    let want = spec.param_shapes();
    let have: Vec<(&str, &[usize])> = saved.tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect();
    for (name, shape) in &want {
        match have.iter().find(|(n, _)| n == name) {
            Some((_, s)) if s == shape => {}
            Some((_, s)) => {
                return Err(altered(format!("holds {name} of shape {s:?}, but the run's model has {shape:?}")))
            }
            None => return Err(altered(format!("has no {name}, which the run's model has"))),
        }
    }
    if let Some((extra, _)) = have.iter().find(|(n, _)| !want.iter().any(|(w, _)| w == n)) {
        return Err(altered(format!("holds {extra}, which the run's model does not have")));
    }
    Ok(())
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
    let Cell { group, run, weights: saved, info, made } = open_cell(req.dir, req.letter, req.seed)?;
    let mut dest = Dest::take(req.out, req.force, &run_inputs(req.dir, &info))?;
    let tensors = saved.read(req.donor)?;
    let mut notes = Vec::new();
    let tmp = dest.staging()?;
    let mut files = match saved.model.kind {
        ModelKind::Model1 => write_model1(&tmp, &tensors)?,
        ModelKind::Model5 => write_model5(&tmp, &saved.model, &tensors)?,
    };
    let (tokenizer, windows) = reread_inputs(&group, &info, &mut notes);
    if let Some(t) = &tokenizer {
        files.extend(copy_tokenizer(&tmp, t, &mut notes)?);
    }
    if let Some(data) = &windows {
        files.push(write_windows(&tmp, data)?);
    }
    if saved.model.kind == ModelKind::Model5 {
        let gpt2 = matches!(tokenizer, Some(crate::data::corpus::Tokenizer::Gpt2(_)));
        let gen = match gpt2 {
            true => json!({"bos_token_id": 50256, "eos_token_id": 50256}),
            false => json!({}),
        };
        files.push(write_json(&tmp, "generation_config.json", &gen)?);
    }
    let final_test_loss = run.points.last().map(|p| p.test_loss);
    files.sort();
    let record = provenance_json((&run, &group, &made), &saved.model, &info, &files);
    dest.place(&files, &record)?;
    files.push(RECORD.into());
    files.sort();
    Ok(Exported { files, model: saved.model.kind, final_test_loss, notes })
}

/// The run's tokenizer and test windows, read again for the export from what the run recorded
/// (its tokenizer and corpus by path and fingerprint). Only the donor is needed (for frozen
/// tensors, checked by their hashes when the weights are read): a tokenizer or corpus that
/// changed or went since the run leaves its part out, with a note saying so.
fn reread_inputs(
    group: &Group,
    info: &InputSummary,
    notes: &mut Vec<String>,
) -> (Option<crate::data::corpus::Tokenizer>, Option<crate::data::corpus::Dataset>) {
    use crate::data::corpus::{self, Tokenizer};
    const ONLY_DONOR: &str = "the weights need only the donor";
    let cap = group.cfg.data.max_input_size.0;
    let then = info.fingerprints.as_ref();
    let gpt2 = Tokenizer::gpt2().map(|t| t.name()).unwrap_or_default();
    let tokenizer = match info.tokenizer == gpt2 {
        true => Tokenizer::gpt2(),
        false => Tokenizer::from_file(Path::new(&info.tokenizer), cap),
    };
    let tokenizer = match tokenizer {
        Ok(t) if then.is_some_and(|f| !f.tokenizer.is_empty() && f.tokenizer != t.fingerprint()) => {
            notes.push(format!(
                "the tokenizer {} changed since the run: no tokenizer files or test windows ({ONLY_DONOR})",
                info.tokenizer
            ));
            return (None, None);
        }
        Ok(t) => t,
        Err(e) => {
            notes.push(format!(
                "the run's tokenizer cannot be read again ({e}): no tokenizer files or test windows ({ONLY_DONOR})"
            ));
            return (None, None);
        }
    };
    let corpus_path = Path::new(&info.corpus);
    if let Some(size) = std::fs::metadata(corpus_path).ok().filter(|m| m.len() > cap).map(|m| m.len()) {
        notes.push(format!(
            "the corpus {} is {} now, over the run's --max-input-size of {}: it is not the run's corpus, so no test \
             windows ({ONLY_DONOR})",
            info.corpus,
            bytesize::ByteSize(size),
            bytesize::ByteSize(cap)
        ));
        return (Some(tokenizer), None);
    }
    let text = match corpus::read_text(corpus_path, cap) {
        Ok(t) if then.is_some_and(|f| !f.corpus.is_empty() && f.corpus != provenance::fingerprint(t.as_bytes())) => {
            notes.push(format!("the corpus {} changed since the run: no test windows ({ONLY_DONOR})", info.corpus));
            return (Some(tokenizer), None);
        }
        Ok(t) => t,
        Err(e) => {
            notes.push(format!("the run's corpus cannot be read again ({e}): no test windows ({ONLY_DONOR})"));
            return (Some(tokenizer), None);
        }
    };
    match crate::experiment::inputs::cut_windows(&group.cfg, &tokenizer, &text, corpus_path) {
        Ok(data) if data.test.len() == info.test_windows => (Some(tokenizer), Some(data)),
        Ok(data) => {
            notes.push(format!(
                "the corpus cuts into {} test windows now, not the run's {}: no test windows",
                data.test.len(),
                info.test_windows
            ));
            (Some(tokenizer), None)
        }
        Err(e) => {
            notes.push(format!("the test windows cannot be cut again ({e}): none written"));
            (Some(tokenizer), None)
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
    let split = match (dir.parent(), dir.file_name()) {
        (Some(p), Some(n)) => Some((if p.as_os_str().is_empty() { Path::new(".") } else { p }, n.to_string_lossy())),
        _ => None,
    };
    // One group's folder of several holds a config.toml of its own (one group, unnamed): the
    // parent's says which group it is, and its cells are stamped with that name.
    if let Some((parent, name)) = &split {
        if let Some(cfg) = read(parent).ok().flatten() {
            if let Some(g) = groups(&cfg).into_iter().find(|g| !g.name.is_empty() && g.name == *name) {
                return Ok((parent.to_path_buf(), g));
            }
        }
    }
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
    Err(not_run())
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

/// What the run read, and its folder: an export never replaces any of them.
fn run_inputs(dir: &Path, info: &InputSummary) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        [&info.corpus, &info.tokenizer, &info.donor_weights, &info.donor].iter().map(PathBuf::from).collect();
    v.push(dir.to_path_buf());
    v
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
    (run, group, made): (&RunResult, &Group, &MadeUnder),
    model: &ModelRecord,
    info: &InputSummary,
    files: &[String],
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
        "files": files.iter().map(String::as_str).chain([RECORD]).collect::<Vec<_>>(),
    })
}
