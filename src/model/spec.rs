//! One resolved model: which kind, its sizes from the settings and the donor, and everything a
//! kind's code needs outside its own file (the names and shapes of its parameters, building it,
//! its memory estimate, its one-line description), so the rest of embgraft carries one value
//! instead of matching on the kind. Adding a model kind is its row in `config/table.rs`, its
//! file here beside `model1.rs` and `model5.rs`, its arm in each method below, and its loader
//! in `experiment/export/` and the Python package (docs/layout.md keeps the list).

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, ModelKind, Sweep};
use crate::data::donor::{DonorConfig, DonorFiles, Embedding};
use crate::error::Result;
use crate::model::model1::{self, InitCache};
use crate::model::model5::{self, Activation, Model5Config};
use crate::model::params::Params;
use crate::model::LanguageModel;
use crate::rng::{stream, Stream};

/// The model a run trains, with every size resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelSpec {
    /// The course's model: `vocab` x `dim` embedding -> exact GELU -> `vocab` x `dim` unembedding.
    Model1 { vocab: usize, dim: usize },
    /// A GPT-2-style decoder.
    Model5(Model5Config),
}

impl ModelSpec {
    /// The model `cfg` asks for over the donor's matrix (`emb`, already on the tokenizer's
    /// vocabulary), its sizes taken from the settings, else the donor's config.json, else the
    /// matrix.
    pub fn resolve(cfg: &ExperimentConfig, files: &DonorFiles, emb: &Embedding) -> Result<ModelSpec> {
        match cfg.model.kind {
            ModelKind::Model1 => Ok(ModelSpec::Model1 { vocab: emb.rows, dim: emb.cols }),
            ModelKind::Model5 => Ok(ModelSpec::Model5(model5_sizes(cfg, files, emb)?)),
        }
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            ModelSpec::Model1 { .. } => ModelKind::Model1,
            ModelSpec::Model5(_) => ModelKind::Model5,
        }
    }

    /// The vocabulary: rows of the embedding and of the head.
    pub fn vocab(&self) -> usize {
        match self {
            ModelSpec::Model1 { vocab, .. } => *vocab,
            ModelSpec::Model5(c) => c.vocab,
        }
    }

    /// Model 5's sizes, for what only a decoder has (the export's GPT-2 layout).
    pub fn model5(&self) -> Option<&Model5Config> {
        match self {
            ModelSpec::Model5(c) => Some(c),
            ModelSpec::Model1 { .. } => None,
        }
    }

    /// The one-line description of the model before it is built.
    pub fn describe(&self) -> String {
        match self {
            ModelSpec::Model1 { .. } => model1::LABEL.to_string(),
            ModelSpec::Model5(c) => c.describe(),
        }
    }

    /// Every parameter by its checkpoint name, with its shape, in the model's order.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            ModelSpec::Model1 { vocab, dim } => {
                vec![("wte".into(), vec![*vocab, *dim]), ("lm_head".into(), vec![*vocab, *dim])]
            }
            ModelSpec::Model5(c) => c.param_shapes().into_iter().map(|(n, s, _)| (n, s)).collect(),
        }
    }

    /// Builds the network from the seed's init streams. Every configuration draws both streams,
    /// so what a configuration does not graft starts identical across configurations (the
    /// random embedding of A and D, the head, Model 5's blocks).
    pub fn build(&self, seed: u64, cache: &InitCache, device: &Device) -> Result<Box<dyn LanguageModel>> {
        let (emb, rest) = (&mut stream(seed, Stream::InitEmbedding), &mut stream(seed, Stream::InitHead));
        Ok(match self {
            ModelSpec::Model1 { vocab: v, dim: d } => {
                let (v, d) = (*v, *d);
                let values = cache.get_or_draw((seed, v, d), || model1::Model1::random_values(v, d, emb, rest))?;
                Box::new(model1::Model1::from_values(values.0.clone(), values.1.clone(), v, d, device)?)
            }
            ModelSpec::Model5(c) => Box::new(model5::Model5::random(c.clone(), emb, rest, device)?),
        })
    }

    /// Parameters with every name the model has, to check a plan's patterns against before
    /// anything is built for real: Model 1's as one-element stand-ins, Model 5's drawn (its
    /// names depend on its sizes).
    pub fn probe_params(&self) -> Result<Params> {
        match self {
            ModelSpec::Model1 { .. } => {
                let mut p = Params::default();
                for (name, _) in self.param_shapes() {
                    p.insert(name, candle_core::Var::zeros(1, candle_core::DType::F32, &Device::Cpu)?);
                }
                Ok(p)
            }
            ModelSpec::Model5(c) => {
                let mut r = stream(0, Stream::InitHead);
                Ok(model5::Model5::random(c.clone(), &mut r.clone(), &mut r, &Device::Cpu)?.params.clone())
            }
        }
    }

    /// Whether [`ModelSpec::probe_params`] are the model's own shapes, so a plan's grafts can be
    /// tried on them against the donor file (Model 5's; Model 1's stand-ins only name).
    pub fn probe_grafts(&self) -> bool {
        self.kind().row().grafts_by_name
    }

    /// One run's training memory at `batch` x `seq_len`, and the setting that shrinks its
    /// largest part. Model 1 (vocabulary V, width d): its two V x d matrices, their gradients
    /// and moments and the copies a run keeps (initial values, the frozen check), and the logits
    /// of a batch's distinct tokens. Model 5: every parameter four times (value, gradient, two
    /// moments), the activations a batch keeps for its backward pass (about 16 floats per
    /// position, layer and width, and the attention's T x T per head), and the head's logits
    /// 1024 rows at a time.
    pub fn training_memory(&self, batch: usize, seq_len: usize) -> (u64, &'static str) {
        let (b, t) = (batch as u64, seq_len as u64);
        let f = |x: u64| x.saturating_mul(4);
        match self {
            ModelSpec::Model1 { vocab, dim } => {
                let (v, d) = (*vocab as u64, *dim as u64);
                let params = f(v.saturating_mul(d).saturating_mul(8));
                let logits = f(b.saturating_mul(t).min(v).saturating_mul(v).saturating_mul(2));
                match params >= logits {
                    true => (params.saturating_add(logits), "a donor with fewer rows or a narrower one"),
                    false => (params.saturating_add(logits), "a smaller --batch-size or --seq-len"),
                }
            }
            ModelSpec::Model5(c) => {
                let (l, h, d, v) = (c.layers as u64, c.heads as u64, c.dim as u64, c.vocab as u64);
                let params = f(c.parameter_count().map_or(u64::MAX / 8, |n| n as u64).saturating_mul(4));
                let positions = b.saturating_mul(t);
                let attention = f(positions.saturating_mul(t).saturating_mul(h).saturating_mul(2));
                let acts =
                    f(positions.saturating_mul(d).saturating_mul(16)).saturating_add(attention).saturating_mul(l);
                let logits = f(positions.min(1024).saturating_mul(v).saturating_mul(2));
                let need = params.saturating_add(acts).saturating_add(logits);
                match params >= acts {
                    true => (need, "a smaller --dim or fewer --layers"),
                    false => (need, "a smaller --batch-size or --seq-len"),
                }
            }
        }
    }
}

/// Model 5's sizes: `--dim`, `--heads`, `--layers`, `--context` where given, else the donor's
/// config.json, else the donor's width, about 64 per head.
fn model5_sizes(cfg: &ExperimentConfig, files: &DonorFiles, emb: &Embedding) -> Result<Model5Config> {
    let dc = match &files.config {
        Some(p) => DonorConfig::read(p)?,
        None => DonorConfig::default(),
    };
    let s = &cfg.model;
    let dim = s.dim.as_ref().map(Sweep::first).or(dc.n_embd).unwrap_or(emb.cols);
    let heads = match (s.heads, dc.n_head) {
        (Some(h), _) => h,
        (None, Some(h)) if dc.n_embd == Some(dim) => h,
        _ => {
            // About 64 wide per head, as GPT-2, and dividing the width (at most 1024 heads, so
            // the search is short whatever the width).
            let mut h = (dim / 64).clamp(1, 1024);
            while !dim.is_multiple_of(h) {
                h -= 1;
            }
            h
        }
    };
    let activation = match dc.activation_function.as_deref() {
        Some("gelu") => Activation::Gelu,
        _ => Activation::GeluNew,
    };
    let c = Model5Config {
        vocab: emb.rows,
        dim,
        heads,
        layers: s.layers.first(),
        context: s.context.unwrap_or(cfg.protocol.seq_len),
        tied: !s.untied,
        activation,
        layer_norm_eps: dc.layer_norm_epsilon.unwrap_or(1e-5),
    };
    c.validate()?;
    Ok(c)
}
