//! Model 5: a GPT-2-style decoder, small enough to train on a laptop.
//!
//!   x = wte[ids] + wpe[0..T]                        (B·T, d)
//!   per block i:  x += c_proj(attn(ln_1(x)))        causal multi-head self-attention
//!                 x += c_proj(gelu(c_fc(ln_2(x))))  4x MLP
//!   logits = ln_f(x) · wteᵀ                         (B·T, V)   head tied to wte (or lm_head)
//!
//! Parameter names are Hugging Face's GPT-2 names, so a graft is a name lookup plus a shape
//! check. GPT-2 stores its projections as `Conv1D` weights, shaped (in, out); here every
//! projection is kept as `nn.Linear` keeps it, (out, in), and the graft transposes (and the copy
//! check compares against the transposed donor). Training uses candle's autograd; a frozen
//! parameter enters the graph detached, so no gradient is ever computed for it.

use candle_core::{Device, Module, Tensor, Var, D};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::data::corpus::Dataset;
use crate::data::counts::TokenCounts;
use crate::error::{Error, Result};
use crate::model::graft::Grafted;
use crate::model::params::{Names, Params};
use crate::model::{GraftDonor, LanguageModel};
use crate::ops::Grad;

mod fused;

/// GPT-2's MLP activation: `gelu_new`, the tanh approximation; `gelu` is the exact erf form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    GeluNew,
    Gelu,
}

/// Sizes of a Model 5. Plain data; the run's config.toml records the values used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model5Config {
    pub vocab: usize,
    pub dim: usize,
    pub heads: usize,
    pub layers: usize,
    /// Longest sequence the model sees: the rows of `wpe`.
    pub context: usize,
    /// The head reuses `wte` (GPT-2); false gives a separate `lm_head.weight`.
    pub tied: bool,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

impl Model5Config {
    /// The sizes as one line, for results and the report.
    pub fn describe(&self) -> String {
        format!(
            "model5: {} layers, {} heads, width {}, context {}, head {}",
            self.layers,
            self.heads,
            self.dim,
            self.context,
            if self.tied { "tied to wte" } else { "untied" }
        )
    }

    /// Parameters of the model, or None when the count does not fit in a usize.
    pub fn parameter_count(&self) -> Option<usize> {
        let (v, d, c, l) = (self.vocab, self.dim, self.context, self.layers);
        let block = d.checked_mul(d)?.checked_mul(12)?.checked_add(d.checked_mul(13)?)?;
        let embeddings =
            v.checked_mul(d)?.checked_mul(if self.tied { 1 } else { 2 })?.checked_add(c.checked_mul(d)?)?;
        embeddings.checked_add(block.checked_mul(l)?)?.checked_add(2 * d)
    }

    /// Every parameter in GPT-2's names and order, with its shape and how it starts.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>, Init)> {
        let cfg = self;
        let (v, d, c) = (cfg.vocab, cfg.dim, cfg.context);
        let proj_std = 0.02 / (2.0 * cfg.layers as f32).sqrt();
        let mut specs: Vec<(String, Vec<usize>, Init)> = vec![
            ("wte.weight".into(), vec![v, d], Init::Normal(0.02)),
            ("wpe.weight".into(), vec![c, d], Init::Normal(0.02)),
        ];
        for i in 0..cfg.layers {
            let p = |s: &str| format!("h.{i}.{s}");
            specs.extend([
                (p("ln_1.weight"), vec![d], Init::Ones),
                (p("ln_1.bias"), vec![d], Init::Zeros),
                (p("attn.c_attn.weight"), vec![3 * d, d], Init::Normal(0.02)),
                (p("attn.c_attn.bias"), vec![3 * d], Init::Zeros),
                (p("attn.c_proj.weight"), vec![d, d], Init::Normal(proj_std)),
                (p("attn.c_proj.bias"), vec![d], Init::Zeros),
                (p("ln_2.weight"), vec![d], Init::Ones),
                (p("ln_2.bias"), vec![d], Init::Zeros),
                (p("mlp.c_fc.weight"), vec![4 * d, d], Init::Normal(0.02)),
                (p("mlp.c_fc.bias"), vec![4 * d], Init::Zeros),
                (p("mlp.c_proj.weight"), vec![d, 4 * d], Init::Normal(proj_std)),
                (p("mlp.c_proj.bias"), vec![d], Init::Zeros),
            ]);
        }
        specs.push(("ln_f.weight".into(), vec![d], Init::Ones));
        specs.push(("ln_f.bias".into(), vec![d], Init::Zeros));
        if !cfg.tied {
            specs.push(("lm_head.weight".into(), vec![v, d], Init::Normal(0.02)));
        }
        specs
    }

    /// Sizes that make a model, named by their flags, and one that fits this machine's memory
    /// (parameters, gradients and AdamW's two moments: 16 bytes per parameter).
    pub fn validate(&self) -> Result<()> {
        for (flag, v) in
            [("--layers", self.layers), ("--context", self.context), ("--dim", self.dim), ("--heads", self.heads)]
        {
            if v == 0 {
                return Err(Error::Input(format!("{flag} must be at least 1")));
            }
        }
        if !self.dim.is_multiple_of(self.heads) {
            return Err(Error::Input(format!(
                "--heads {} does not divide the width {} (--dim or the donor's); pick a head count that divides it",
                self.heads, self.dim
            )));
        }
        let sizes = format!(
            "Model 5 with {} layers, width {}, context {} and {} tokens",
            self.layers, self.dim, self.context, self.vocab
        );
        let n = self.parameter_count().ok_or_else(|| {
            Error::Input(format!(
                "{sizes} has more parameters than can be counted; use fewer --layers or a smaller --dim or --context"
            ))
        })?;
        let need = (n as f64) * 16.0;
        if let Some(have) = crate::util::memory_bytes() {
            if need > have as f64 {
                return Err(Error::Input(format!(
                    "{sizes} has {n} parameters: {:.1} GB to train with AdamW, more than this machine's {:.1} GB; use \
                     fewer --layers or a smaller --dim or --context",
                    need / 1e9,
                    have as f64 / 1e9
                )));
            }
        }
        Ok(())
    }
}

/// How a parameter starts (GPT-2's `_init_weights`).
pub enum Init {
    Normal(f32),
    Zeros,
    Ones,
}

pub struct Model5 {
    pub cfg: Model5Config,
    /// Every parameter by its Hugging Face name, in a fixed order: wte, wpe, blocks, ln_f,
    /// lm_head (untied only).
    pub params: Params,
    /// The same parameters as the forward pass walks them, looked up once.
    wte: Param,
    wpe: Param,
    blocks: Vec<Block>,
    ln_f: Affine,
    lm_head: Option<Param>,
}

/// A parameter with its name: it enters a forward pass live (differentiated) or detached, as
/// the run's live set says, so backward never reaches a frozen one.
struct Param {
    name: String,
    var: Var,
}

impl Param {
    fn get(&self, live: &Names) -> Tensor {
        let t = self.var.as_tensor();
        if live.contains(&self.name) {
            t.clone()
        } else {
            t.detach()
        }
    }
}

/// A weight and its bias: a projection (as `nn.Linear`, (out, in)) or a LayerNorm's gain and
/// shift.
struct Affine {
    weight: Param,
    bias: Param,
}

impl Affine {
    fn linear(&self, live: &Names) -> candle_nn::Linear {
        candle_nn::Linear::new(self.weight.get(live), Some(self.bias.get(live)))
    }
}

/// One decoder block, `h.{i}`.
struct Block {
    ln_1: Affine,
    c_attn: Affine,
    attn_proj: Affine,
    ln_2: Affine,
    c_fc: Affine,
    mlp_proj: Affine,
}

/// Parameters found by dotted prefix, in the manner of candle's `VarBuilder::pp("h.0")`.
struct Prefix<'a> {
    params: &'a Params,
    path: String,
}

impl<'a> Prefix<'a> {
    fn root(params: &'a Params) -> Self {
        Prefix { params, path: String::new() }
    }

    fn pp(&self, s: impl std::fmt::Display) -> Prefix<'a> {
        let path = if self.path.is_empty() { s.to_string() } else { format!("{}.{s}", self.path) };
        Prefix { params: self.params, path }
    }

    fn param(&self, s: &str) -> Result<Param> {
        let name = self.pp(s).path;
        let var = self.params.get(&name).ok_or_else(|| Error::Input(format!("Model 5 has no parameter {name}")))?;
        Ok(Param { var: var.clone(), name })
    }

    fn affine(&self, s: &str) -> Result<Affine> {
        let p = self.pp(s);
        Ok(Affine { weight: p.param("weight")?, bias: p.param("bias")? })
    }
}

impl Block {
    fn new(p: &Prefix) -> Result<Self> {
        Ok(Block {
            ln_1: p.affine("ln_1")?,
            c_attn: p.pp("attn").affine("c_attn")?,
            attn_proj: p.pp("attn").affine("c_proj")?,
            ln_2: p.affine("ln_2")?,
            c_fc: p.pp("mlp").affine("c_fc")?,
            mlp_proj: p.pp("mlp").affine("c_proj")?,
        })
    }
}

impl Model5 {
    /// GPT-2's initialisation: weights N(0, 0.02), the residual projections N(0, 0.02/√(2L)),
    /// biases 0, LayerNorm gains 1. `wte` draws from its own stream (so configs that keep it
    /// random share it), everything else from `rest_rng` in parameter order.
    pub fn random(cfg: Model5Config, wte_rng: &mut impl Rng, rest_rng: &mut impl Rng, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let specs = cfg.param_shapes();
        let mut params = Params::default();
        for (name, shape, init) in specs {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = match init {
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
                Init::Normal(std) => {
                    let dist = Normal::new(0.0f32, std).map_err(|e| Error::Input(format!("init of {name}: {e}")))?;
                    let rng: &mut dyn rand::RngCore = if name == "wte.weight" { &mut *wte_rng } else { &mut *rest_rng };
                    (0..n).map(|_| dist.sample(rng)).collect()
                }
            };
            params.insert(name, Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?);
        }
        Self::from_params(cfg, params)
    }

    /// The model over named parameters (GPT-2's names), each looked up once.
    pub fn from_params(cfg: Model5Config, params: Params) -> Result<Self> {
        let root = Prefix::root(&params);
        let blocks = (0..cfg.layers).map(|i| Block::new(&root.pp("h").pp(i))).collect::<Result<_>>()?;
        let lm_head = if cfg.tied { None } else { Some(root.param("lm_head.weight")?) };
        Ok(Model5 {
            wte: root.param("wte.weight")?,
            wpe: root.param("wpe.weight")?,
            ln_f: root.affine("ln_f")?,
            blocks,
            lm_head,
            cfg,
            params,
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.params.names()
    }

    pub fn device(&self) -> &Device {
        self.wte.var.device()
    }

    /// Logits for token ids `x` (B, T) -> (B·T, V). Only the parameters named in `live` are
    /// differentiated; the others enter detached, so backward never reaches them.
    pub fn logits(&self, x: &Tensor, live: &Names) -> Result<Tensor> {
        let (xs, head) = self.hidden(x, live)?;
        Ok(xs.matmul(&head.t()?)?) // (B·T, V)
    }

    /// The final hidden states (B·T, d) after ln_f, and the head (V, d) they multiply.
    fn hidden(&self, x: &Tensor, live: &Names) -> Result<(Tensor, Tensor)> {
        let (b, t) = x.dims2()?;
        if t > self.cfg.context {
            return Err(Error::Input(format!(
                "sequence of {t} tokens is longer than --context {}; raise --context or lower --seq-len",
                self.cfg.context
            )));
        }
        let (d, h) = (self.cfg.dim, self.cfg.heads);
        let hd = d / h;
        let n = b * t;
        let wte = self.wte.get(live);
        let tok = wte.index_select(&x.flatten_all()?, 0)?.reshape((b, t, d))?; // (B, T, d)
        let pos = self.wpe.get(live).narrow(0, 0, t)?; // (T, d)
        let mut xs = tok.broadcast_add(&pos)?.reshape((n, d))?; // (B·T, d)
        let mask = causal_mask(t, x.device())?; // (T, T): 0 on and below the diagonal, -inf above
        let scale = 1.0 / (hd as f64).sqrt();
        for blk in &self.blocks {
            let a = self.layer_norm(&xs, &blk.ln_1, live)?;
            let qkv = blk.c_attn.linear(live).forward(&a)?.reshape((b, t, 3, h, hd))?; // (B, T, 3, H, hd)
            let head = |k: usize| -> Result<Tensor> {
                Ok(qkv.narrow(2, k, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?)
                // (B, H, T, hd)
            };
            let (q, k, v) = (head(0)?, head(1)?, head(2)?);
            let att = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * scale)?; // (B, H, T, T)
            let att = candle_nn::ops::softmax(&att.broadcast_add(&mask)?, D::Minus1)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((n, d))?; // (B·T, d)
            xs = (xs + blk.attn_proj.linear(live).forward(&y)?)?;
            let m = self.layer_norm(&xs, &blk.ln_2, live)?;
            let m = self.activate(&blk.c_fc.linear(live).forward(&m)?)?; // (B·T, 4d)
            xs = (xs + blk.mlp_proj.linear(live).forward(&m)?)?;
        }
        let xs = self.layer_norm(&xs, &self.ln_f, live)?;
        let head = match &self.lm_head {
            None => wte,
            Some(p) => p.get(live),
        };
        Ok((xs, head))
    }

    fn activate(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.cfg.activation {
            Activation::GeluNew => x.gelu()?,
            Activation::Gelu => x.gelu_erf()?,
        })
    }

    /// LayerNorm over the last dimension (biased variance, as torch), from differentiable ops:
    /// candle-nn's `LayerNorm` takes a fused path on contiguous input that has no backward.
    fn layer_norm(&self, x: &Tensor, ln: &Affine, live: &Names) -> Result<Tensor> {
        let (w, b) = (ln.weight.get(live), ln.bias.get(live));
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.cfg.layer_norm_eps)?.sqrt()?)?;
        Ok(xn.broadcast_mul(&w)?.broadcast_add(&b)?)
    }

    /// Mean cross-entropy over every position of windows `x` (B, T) with targets `y` (B, T),
    /// and the gradient of each live parameter, by name: on the CPU by the fused decoder
    /// (`fused.rs`), elsewhere through candle's autograd.
    pub fn loss_and_grads(&self, x: &Tensor, y: &Tensor, live: &Names) -> Result<(f64, HashMap<String, Tensor>)> {
        if self.device().is_cpu() {
            let (ids, targets) = (x.flatten_all()?.to_vec1::<u32>()?, y.flatten_all()?.to_vec1::<u32>()?);
            return self.fused_loss_and_grads(&ids, &targets, x.dim(0)?, live);
        }
        self.loss_and_grads_autograd(x, y, live)
    }

    /// The same through candle's autograd, with the fused head op at the end: the path on
    /// devices without the fused decoder, and what it is tested against.
    pub fn loss_and_grads_autograd(
        &self,
        x: &Tensor,
        y: &Tensor,
        live: &Names,
    ) -> Result<(f64, HashMap<String, Tensor>)> {
        let (xs, head) = self.hidden(x, live)?;
        let loss = crate::ops::loss::head_cross_entropy_mean(&xs, &head, &y.flatten_all()?.to_vec1::<u32>()?)?;
        self.backward(loss, live)
    }

    /// The same through candle's own ops: logits, then `cross_entropy`. The reference the
    /// fused head is tested against.
    pub fn loss_and_grads_plain(&self, x: &Tensor, y: &Tensor, live: &Names) -> Result<(f64, HashMap<String, Tensor>)> {
        let logits = self.logits(x, live)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y.flatten_all()?)?;
        self.backward(loss, live)
    }

    fn backward(&self, loss: Tensor, live: &Names) -> Result<(f64, HashMap<String, Tensor>)> {
        let value = loss.to_scalar::<f32>()? as f64;
        if live.is_empty() {
            return Ok((value, HashMap::new()));
        }
        let store = loss.backward()?;
        let grads = self
            .params
            .iter()
            .filter(|(n, _)| live.contains(*n))
            .filter_map(|(n, v)| Some((n.clone(), store.get(v.as_tensor())?.clone())))
            .collect();
        Ok((value, grads))
    }

    /// Sum of the per-position losses of windows `x`/`y`, without gradients (on the CPU,
    /// without a graph or anything kept between blocks).
    pub fn loss_sum(&self, x: &Tensor, y: &Tensor) -> Result<f64> {
        if self.device().is_cpu() {
            let (ids, targets) = (x.flatten_all()?.to_vec1::<u32>()?, y.flatten_all()?.to_vec1::<u32>()?);
            return self.fused_loss_sum(&ids, &targets, x.dim(0)?);
        }
        let logits = self.logits(x, &Names::new())?;
        let counts = TokenCounts::per_position(&y.flatten_all()?.to_vec1::<u32>()?);
        Ok(crate::ops::loss::cross_entropy_sum(logits, &counts, false)?.0)
    }

    /// The next token's logits (V,) after `seq`, conditioned on its last `context` tokens.
    pub fn next_logits(&self, seq: &[u32]) -> Result<Tensor> {
        let window = &seq[seq.len().saturating_sub(self.cfg.context)..];
        let x = Tensor::from_slice(window, (1, window.len()), self.device())?;
        Ok(self.logits(&x, &Names::new())?.get(window.len() - 1)?) // (V,)
    }
}

/// Model 5 evaluates about this many positions at a time (in windows): large enough for full
/// GEMMs, small enough that one block's activations stay in memory.
const EVAL_POSITIONS: usize = 4096;

impl LanguageModel for Model5 {
    fn params(&self) -> Params {
        self.params.clone()
    }

    fn loss_and_grads(&self, data: &Dataset, windows: &[usize], live: &Names) -> Result<(f64, HashMap<String, Grad>)> {
        let (loss, g) = if self.device().is_cpu() {
            let (xs, ys) = data.pairs(windows);
            self.fused_loss_and_grads(&xs, &ys, windows.len(), live)?
        } else {
            let (x, y) = batch_tensors(data, windows, self.device())?;
            self.loss_and_grads_autograd(&x, &y, live)?
        };
        Ok((loss, g.into_iter().map(|(n, g)| (n, Grad::Dense(g))).collect()))
    }

    fn eval(&self, data: &Dataset, _counts: &TokenCounts, windows: &[usize]) -> Result<f64> {
        let mut sum = 0.0;
        for chunk in windows.chunks((EVAL_POSITIONS / data.seq_len.max(1)).max(1)) {
            sum += if self.device().is_cpu() {
                let (xs, ys) = data.pairs(chunk);
                self.fused_loss_sum(&xs, &ys, chunk.len())?
            } else {
                let (x, y) = batch_tensors(data, chunk, self.device())?;
                self.loss_sum(&x, &y)?
            };
        }
        Ok(sum / (windows.len() * data.seq_len) as f64)
    }

    fn next_logits(&self, seq: &[u32]) -> Result<Tensor> {
        Model5::next_logits(self, seq)
    }

    /// Every selected tensor by its GPT-2 name (projections transposed from Conv1D).
    fn graft(&self, donor: &mut GraftDonor, grafted: &Names, frozen: &Names) -> Result<Grafted> {
        let mut g = Grafted::default();
        if !grafted.is_empty() {
            let file = donor.file;
            let (checks, notes) = crate::model::graft::graft_by_name(&self.params, file, donor.embedding, grafted)?;
            let names: Vec<String> = self.params.names().into_iter().filter(|n| grafted.contains(n)).collect();
            g.what = Some(format!(
                "{} tensors from {}: {}",
                checks.len(),
                file.map_or("the donor in memory".to_string(), |f| f.path().display().to_string()),
                crate::model::params::summarise_names(&names)
            ));
            (g.checks, g.notes) = (checks, notes);
        }
        if self.cfg.tied && frozen.contains("wte.weight") {
            g.notes.push("the head is tied to wte: freezing wte freezes the head too".into());
        }
        Ok(g)
    }

    fn describe(&self) -> String {
        self.cfg.describe()
    }
}

fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..t * t).map(|k| if k % t > k / t { f32::NEG_INFINITY } else { 0.0 }).collect();
    Ok(Tensor::from_vec(m, (t, t), device)?)
}

/// Token ids of windows as (B, T) tensors of inputs and targets.
pub fn batch_tensors(data: &Dataset, windows: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
    let (xs, ys) = data.pairs(windows);
    let shape = (windows.len(), data.seq_len);
    Ok((Tensor::from_vec(xs, shape, device)?, Tensor::from_vec(ys, shape, device)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    pub fn tiny(tied: bool) -> Model5 {
        let cfg = Model5Config {
            vocab: 50,
            dim: 16,
            heads: 4,
            layers: 2,
            context: 6,
            tied,
            activation: Activation::GeluNew,
            layer_norm_eps: 1e-5,
        };
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        Model5::random(cfg, &mut r.clone(), &mut r, &Device::Cpu).unwrap()
    }

    #[test]
    fn attention_is_causal() {
        let m = tiny(true);
        let live = Names::new();
        let a = Tensor::new(&[[1u32, 2, 3, 4, 5]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[1u32, 2, 3, 9, 7]], &Device::Cpu).unwrap();
        let la = m.logits(&a, &live).unwrap().to_vec2::<f32>().unwrap();
        let lb = m.logits(&b, &live).unwrap().to_vec2::<f32>().unwrap();
        // Positions 0-2 see the same prefix: identical logits; position 3 differs.
        assert_eq!(la[..3], lb[..3]);
        assert_ne!(la[3], lb[3]);
    }

    #[test]
    fn frozen_parameters_get_no_gradient_and_tied_head_freezes_with_wte() {
        for tied in [true, false] {
            let m = tiny(tied);
            let x = Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 7, 8]], &Device::Cpu).unwrap();
            let y = Tensor::new(&[[2u32, 3, 4, 5], [6, 7, 8, 9]], &Device::Cpu).unwrap();
            let mut live: Names = m.params.names().into_iter().collect();
            live.remove("wte.weight"); // frozen
            let (_, grads) = m.loss_and_grads(&x, &y, &live).unwrap();
            assert!(!grads.contains_key("wte.weight"));
            assert!(live.iter().all(|n| grads.contains_key(n)), "every live parameter has a gradient");
            assert_eq!(m.params.get("lm_head.weight").is_some(), !tied);
        }
    }

    #[test]
    fn fused_decoder_gives_the_plain_loss_and_gradients() {
        let x = Tensor::new(&[[1u32, 2, 3, 4, 5], [5, 6, 7, 8, 1]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[[2u32, 3, 4, 5, 9], [6, 7, 8, 9, 49]], &Device::Cpu).unwrap();
        for tied in [true, false] {
            let m = tiny(tied);
            let all: Names = m.params.names().into_iter().collect();
            let without = |drop: &dyn Fn(&str) -> bool| all.iter().filter(|n| !drop(n)).cloned().collect::<Names>();
            let live_sets = [
                all.clone(),
                without(&|n| n == "wte.weight"),
                // Only the upper block and the head's side: backward stops above block 0.
                without(&|n| !(n.starts_with("h.1.") || n.starts_with("ln_f"))),
                // A weight without its bias, and a bias without its weight.
                without(&|n| n != "h.0.attn.c_attn.weight" && n != "h.1.ln_2.bias"),
                Names::new(),
            ];
            for live in live_sets {
                let (l1, g1) = m.loss_and_grads(&x, &y, &live).unwrap();
                let (l2, g2) = m.loss_and_grads_plain(&x, &y, &live).unwrap();
                let (l3, _) = m.loss_and_grads_autograd(&x, &y, &live).unwrap();
                assert!((l1 - l2).abs() < 1e-5 && (l1 - l3).abs() < 1e-5, "{l1} vs {l2} vs {l3}");
                for name in m.params.names() {
                    let (a, b) = (g1.get(&name), g2.get(&name));
                    assert_eq!(a.is_some(), live.contains(&name), "{name}: a gradient exactly when live");
                    assert_eq!(a.is_some(), b.is_some(), "{name}");
                    if let (Some(a), Some(b)) = (a, b) {
                        assert_eq!(a.dims(), b.dims(), "{name}");
                        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                        assert!(d < 1e-5, "{name} (tied {tied}): gradients differ by {d}");
                    }
                }
            }
            // Evaluation without the graph: the same sum as candle's logits and cross-entropy.
            let fused = m.loss_sum(&x, &y).unwrap();
            let logits = m.logits(&x, &Names::new()).unwrap();
            let plain = candle_nn::loss::cross_entropy(&logits, &y.flatten_all().unwrap()).unwrap();
            let plain = plain.to_scalar::<f32>().unwrap() as f64 * 10.0;
            assert!((fused - plain).abs() < 1e-4, "{fused} vs {plain}");
        }
    }

    #[test]
    fn fused_decoder_refuses_what_it_cannot_index() {
        let m = tiny(true);
        let long = Tensor::new(&[[1u32, 2, 3, 4, 5, 6, 7]], &Device::Cpu).unwrap();
        assert!(m.loss_and_grads(&long, &long, &Names::new()).is_err(), "longer than the context");
        let bad = Tensor::new(&[[1u32, 50]], &Device::Cpu).unwrap();
        let ok = Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap();
        assert!(m.loss_and_grads(&bad, &ok, &Names::new()).is_err(), "an id past the vocabulary");
        assert!(m.loss_sum(&ok, &bad).is_err(), "a target past the vocabulary");
    }
}
