//! Model 1 of the course: token embedding -> GELU -> unembedding, nothing else.
//!
//!   h = GELU(wte[x])          (N, d)     exact erf GELU, PyTorch's default
//!   z = h · lm_headᵀ          (N, V)     nn.Linear(d, V, bias=False)
//!   loss = mean_N CE(z, y)
//!
//! Parameter names follow GPT-2's checkpoint (`wte`) and Hugging Face's head (`lm_head`), so a
//! graft is a name lookup plus a shape check.
//!
//! Training uses hand-derived gradients over the distinct tokens of a batch (see
//! [`crate::ops::loss`]): the logits of Model 1 depend only on the current token, so this is exact.
//! [`Model1::loss_and_grads_autograd`] computes the same thing the plain way through candle's
//! autograd; tests hold the two together.

use candle_core::{Device, Tensor, Var};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};

use std::collections::HashMap;

use crate::config::Source;
use crate::data::corpus::Dataset;
use crate::data::counts::TokenCounts;
use crate::error::Result;
use crate::model::graft::Grafted;
use crate::model::params::{Names, Params};
use crate::model::{GraftDonor, LanguageModel};
use crate::ops::gemm::tensor_product;
use crate::ops::loss::cross_entropy_sum;
use crate::ops::Grad;

pub struct Model1 {
    /// Token embedding (V, d): nn.Embedding's weight, GPT-2's `wte`.
    pub wte: Var,
    /// Unembedding (V, d): nn.Linear(d, V, bias=False).weight.
    pub lm_head: Var,
}

/// Gradients of the mean loss; `wte` is None when the embedding is frozen.
pub struct Grads {
    pub wte: Option<Grad>,
    pub lm_head: Grad,
}

impl Grads {
    /// The gradients in [`Model1::trainable`]'s order, as the optimizer takes them.
    pub fn into_list(self) -> Vec<Grad> {
        self.wte.into_iter().chain([self.lm_head]).collect()
    }

    /// The gradients by parameter name, as [`Model1::params`] names them.
    pub fn into_named(self) -> std::collections::HashMap<String, Grad> {
        let wte = self.wte.map(|g| ("wte".to_string(), g));
        wte.into_iter().chain([("lm_head".to_string(), self.lm_head)]).collect()
    }
}

impl Model1 {
    /// PyTorch's default initialisation: Embedding ~ N(0, 1); Linear ~ U(±1/sqrt(d)) (kaiming
    /// uniform with a = sqrt(5) reduces to this bound). Each draws from its own stream, so A
    /// and D start from the same random embedding and all configs from the same head.
    pub fn random(
        vocab: usize,
        dim: usize,
        emb_rng: &mut impl Rng,
        head_rng: &mut impl Rng,
        device: &Device,
    ) -> Result<Self> {
        let (wte, head) = Self::random_values(vocab, dim, emb_rng, head_rng)?;
        Self::from_values(wte, head, vocab, dim, device)
    }

    /// The values [`Model1::random`] starts from: the embedding's (V·d, row-major), then the head's.
    pub fn random_values(
        vocab: usize,
        dim: usize,
        emb_rng: &mut impl Rng,
        head_rng: &mut impl Rng,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let wte: Vec<f32> = (0..vocab * dim).map(|_| StandardNormal.sample(emb_rng)).collect();
        let bound = 1.0 / (dim as f32).sqrt();
        let u = Uniform::new(-bound, bound)
            .map_err(|e| crate::error::Error::Input(format!("head init bound {bound}: {e}")))?;
        let head: Vec<f32> = (0..vocab * dim).map(|_| u.sample(head_rng)).collect();
        Ok((wte, head))
    }

    pub fn from_values(wte: Vec<f32>, head: Vec<f32>, vocab: usize, dim: usize, device: &Device) -> Result<Self> {
        Ok(Model1 {
            wte: Var::from_tensor(&Tensor::from_vec(wte, (vocab, dim), device)?)?,
            lm_head: Var::from_tensor(&Tensor::from_vec(head, (vocab, dim), device)?)?,
        })
    }

    /// The parameters AdamW gets: the head always, the embedding only when it trains (a
    /// frozen parameter is never handed to the optimizer).
    pub fn trainable(&self, train_wte: bool) -> Vec<Var> {
        let wte = train_wte.then(|| self.wte.clone());
        wte.into_iter().chain([self.lm_head.clone()]).collect()
    }

    /// The parameters by their checkpoint names, `wte` and `lm_head`.
    pub fn params(&self) -> Params {
        let mut p = Params::default();
        p.insert("wte", self.wte.clone());
        p.insert("lm_head", self.lm_head.clone());
        p
    }

    pub fn vocab(&self) -> usize {
        self.wte.dims()[0]
    }

    pub fn dim(&self) -> usize {
        self.wte.dims()[1]
    }

    /// Logits for a batch of token ids of any shape `(..)` -> `(.., V)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let shape = x.dims().to_vec();
        let h = self.wte.as_tensor().index_select(&x.flatten_all()?, 0)?.gelu_erf()?; // (N, d)
        let z = tensor_product(&h, self.lm_head.as_tensor(), true)?; // (N, V), as the loss computes them
        let mut out = shape;
        out.push(self.vocab());
        Ok(z.reshape(out)?)
    }

    /// Mean loss and gradients over a batch of positions, through the distinct tokens.
    pub fn loss_and_grads(&self, batch: &TokenCounts, train_wte: bool) -> Result<(f64, Grads)> {
        let device = self.wte.device();
        let ids = Tensor::from_slice(&batch.tokens, batch.rows(), device)?;
        let e = self.wte.as_tensor().index_select(&ids, 0)?; // (U, d)
        let h = e.gelu_erf()?; // (U, d)
        let z = tensor_product(&h, self.lm_head.as_tensor(), true)?; // (U, V)
        let (loss_sum, g) = cross_entropy_sum(z, batch, true)?;
        let g = g.expect("gradient requested"); // (U, V) = dloss/dz
                                                // The input gradient is computed only when someone needs it.
        let d_wte = if train_wte {
            let dh = tensor_product(&g, self.lm_head.as_tensor(), false)?; // (U, d)
            let rows = (dh * gelu_erf_derivative(&e)?)?;
            Some(Grad::Rows { ids: batch.tokens.clone(), rows })
        } else {
            None
        };
        let d_head = Grad::Outer { g, h }; // (V, d) = gᵀ·h, left to the optimizer
        Ok((loss_sum / batch.positions as f64, Grads { wte: d_wte, lm_head: d_head }))
    }

    /// The same mean loss and gradients computed the plain way: candle's autograd over every
    /// position, `cross_entropy` on the full (N, V) logits. Slow; kept as the reference.
    pub fn loss_and_grads_autograd(&self, xs: &[u32], ys: &[u32], train_wte: bool) -> Result<(f64, Grads)> {
        let device = self.wte.device();
        let x = Tensor::from_slice(xs, xs.len(), device)?;
        let y = Tensor::from_slice(ys, ys.len(), device)?;
        let wte = if train_wte { self.wte.as_tensor().clone() } else { self.wte.as_tensor().detach() };
        let h = wte.index_select(&x, 0)?.gelu_erf()?; // (N, d)
        let z = h.matmul(&self.lm_head.as_tensor().t()?)?; // (N, V)
        let loss = candle_nn::loss::cross_entropy(&z, &y)?;
        let grads = loss.backward()?;
        let lm_head = Grad::Dense(grads.get(self.lm_head.as_tensor()).expect("head gradient").clone());
        let wte = if train_wte {
            Some(Grad::Dense(grads.get(self.wte.as_tensor()).expect("wte gradient").clone()))
        } else {
            None
        };
        Ok((loss.to_scalar::<f32>()? as f64, Grads { wte, lm_head }))
    }

    /// Mean loss over many positions, no gradient, in chunks of distinct tokens so the logits
    /// never take more than `chunk` x V floats.
    pub fn eval_loss(&self, counts: &TokenCounts, chunk: usize) -> Result<f64> {
        let device = self.wte.device();
        let mut total = 0f64;
        let mut lo = 0;
        while lo < counts.rows() {
            let hi = (lo + chunk).min(counts.rows());
            let part = counts.slice_rows(lo, hi);
            let ids = Tensor::from_slice(&part.tokens, part.rows(), device)?;
            let h = self.wte.as_tensor().index_select(&ids, 0)?.gelu_erf()?;
            let z = tensor_product(&h, self.lm_head.as_tensor(), true)?;
            total += cross_entropy_sum(z, &part, false)?.0;
            lo = hi;
        }
        Ok(total / counts.positions as f64)
    }

    /// The next token's logits (V,) after `seq`: Model 1 sees only the last token.
    pub fn next_logits(&self, seq: &[u32]) -> Result<Tensor> {
        let x = Tensor::new(&[seq[seq.len() - 1]], self.wte.device())?;
        Ok(self.forward(&x)?.flatten_all()?)
    }
}

/// Model 1's description in results and the report.
pub const LABEL: &str = "model1";

/// Test-set logits are computed this many distinct tokens at a time.
const EVAL_CHUNK: usize = 512;

impl LanguageModel for Model1 {
    fn params(&self) -> Params {
        Model1::params(self)
    }

    fn loss_and_grads(&self, data: &Dataset, windows: &[usize], live: &Names) -> Result<(f64, HashMap<String, Grad>)> {
        let (xs, ys) = data.pairs(windows);
        let counts = TokenCounts::from_pairs(&xs, &ys);
        if live.is_empty() {
            return Ok((self.eval_loss(&counts, EVAL_CHUNK)?, HashMap::new()));
        }
        let (loss, g) = Model1::loss_and_grads(self, &counts, live.contains("wte"))?;
        Ok((loss, g.into_named().into_iter().filter(|(n, _)| live.contains(n)).collect()))
    }

    fn eval(&self, _data: &Dataset, counts: &TokenCounts, _windows: &[usize]) -> Result<f64> {
        self.eval_loss(counts, EVAL_CHUNK)
    }

    fn next_logits(&self, seq: &[u32]) -> Result<Tensor> {
        Model1::next_logits(self, seq)
    }

    /// The (perhaps permuted or rescaled) donor embedding into `wte`; a random configuration
    /// that grafts `wte` takes the donor as it is.
    fn graft(&self, donor: &mut GraftDonor, grafted: &Names, _frozen: &Names) -> Result<Grafted> {
        let mut g = Grafted::default();
        if grafted.contains("wte") {
            let source = if donor.source == Source::Random { Source::Donor } else { donor.source };
            let (emb, what) = crate::model::graft::prepare(donor.embedding, source, donor.scale, 1.0, donor.permute);
            g.checks.push(crate::model::graft::graft(&self.wte, &emb)?);
            (g.what, g.start) = (Some(what), Some(emb));
        }
        Ok(g)
    }

    fn describe(&self) -> String {
        LABEL.into()
    }

    fn decaying_embedding(&self) -> Option<&Var> {
        Some(&self.wte)
    }
}

/// Model 1's initial values for the last (seed, vocabulary, width) built: every configuration
/// of a seed starts from the same draws, so they are drawn once per seed, not once per run
/// (about a second on a CPU at GPT-2's size, next to a run of seconds on a GPU).
#[derive(Default)]
pub struct InitCache(std::sync::Mutex<Option<InitValues>>);

type InitValues = ((u64, usize, usize), std::sync::Arc<(Vec<f32>, Vec<f32>)>);

impl InitCache {
    pub(crate) fn get_or_draw(
        &self,
        key: (u64, usize, usize),
        draw: impl FnOnce() -> Result<(Vec<f32>, Vec<f32>)>,
    ) -> Result<std::sync::Arc<(Vec<f32>, Vec<f32>)>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, v)) = slot.as_ref() {
            if *k == key {
                return Ok(v.clone());
            }
        }
        *slot = None; // the old seed's values go before the new ones are drawn
        let v = std::sync::Arc::new(draw()?);
        *slot = Some((key, v.clone()));
        Ok(v)
    }
}

/// d/dx [x · Φ(x)] = Φ(x) + x · φ(x), the derivative of the exact GELU.
pub(crate) fn gelu_erf_derivative(x: &Tensor) -> Result<Tensor> {
    let cdf = (((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)? * 0.5)?;
    let pdf = ((x.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))?;
    Ok((cdf + (x * pdf)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn init_matches_pytorch_defaults() {
        let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let m = Model1::random(2000, 64, &mut r1, &mut r2, &Device::Cpu).unwrap();
        let e = m.wte.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let n = e.len() as f64;
        let mean = e.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = e.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "N(0,1): mean {mean} var {var}");
        let h = m.lm_head.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bound = 1.0 / 8.0;
        assert!(h.iter().all(|&x| x.abs() <= bound));
        let var = h.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / h.len() as f64;
        assert!((var - bound as f64 * bound as f64 / 3.0).abs() < 1e-3, "U(±1/8) variance {var}");
    }

    #[test]
    fn gelu_derivative_matches_finite_difference() {
        let x = Tensor::new(&[-3.0f64, -1.0, -0.1, 0.0, 0.5, 2.0], &Device::Cpu).unwrap();
        let d = gelu_erf_derivative(&x).unwrap().to_vec1::<f64>().unwrap();
        let h = 1e-6;
        let fd = (((&x + h).unwrap().gelu_erf().unwrap() - (&x - h).unwrap().gelu_erf().unwrap()).unwrap() / (2.0 * h))
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for (a, b) in d.iter().zip(&fd) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn fused_gradients_match_autograd() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (v, d) = (97, 16);
        let m = Model1::random(v, d, &mut r.clone(), &mut r, &Device::Cpu).unwrap();
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        // Few distinct inputs, so tokens repeat as in real text.
        let xs: Vec<u32> = (0..64).map(|_| r.random_range(0..12)).collect();
        let ys: Vec<u32> = (0..64).map(|_| r.random_range(0..v as u32)).collect();
        let counts = TokenCounts::from_pairs(&xs, &ys);
        for train_wte in [true, false] {
            let (l1, g1) = m.loss_and_grads(&counts, train_wte).unwrap();
            let (l2, g2) = m.loss_and_grads_autograd(&xs, &ys, train_wte).unwrap();
            assert!((l1 - l2).abs() < 1e-5, "loss {l1} vs {l2}");
            let dense = |g: &Grad| g.to_dense(&[v, d], &Device::Cpu).unwrap();
            assert!(max_abs_diff(&dense(&g1.lm_head), &dense(&g2.lm_head)) < 1e-6);
            assert_eq!(g1.wte.is_some(), train_wte);
            if let (Some(a), Some(b)) = (g1.wte, g2.wte) {
                let a = a.to_dense(&[v, d], &Device::Cpu).unwrap();
                let b = b.to_dense(&[v, d], &Device::Cpu).unwrap();
                assert!(max_abs_diff(&a, &b) < 1e-6);
            }
            let eval = m.eval_loss(&counts, 5).unwrap();
            assert!((eval - l2).abs() < 1e-5, "chunked eval {eval} vs {l2}");
        }
    }
}
