//! Model 5's training step and evaluation on the CPU without candle's graph: the forward keeps
//! what the backward reads (and recomputes the MLP's GELU instead of keeping it), the backward
//! runs the blocks in reverse with the pieces in [`crate::ops::decoder`], and a frozen
//! parameter never gets a gradient computed. The graph path ([`Model5::loss_and_grads_autograd`])
//! computes the same thing through candle's autograd; the tests hold the two together.

use std::collections::HashMap;

use candle_core::{CpuStorage, Device, Storage, Tensor};
use rayon::prelude::*;

use super::{Activation, Model5, Param};
use crate::error::{Error, Result};
use crate::model::params::Names;
use crate::ops::decoder::profile::Lap;
use crate::ops::decoder::{self, Gelu, Shape};

/// Parameters per block, in [`Model5::walk_order`]'s order: ln_1 (w, b), c_attn (w, b),
/// attn.c_proj (w, b), ln_2 (w, b), c_fc (w, b), mlp.c_proj (w, b).
const PER_BLOCK: usize = 12;

/// One block's parameter values, borrowed.
struct BlockValues<'a>([&'a [f32]; PER_BLOCK]);

/// What a block's forward keeps for its backward.
struct Kept {
    x: Vec<f32>,
    ln_1: (Vec<f32>, Vec<f32>),
    a: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    y: Vec<f32>,
    mid: Vec<f32>,
    ln_2: (Vec<f32>, Vec<f32>),
    m: Vec<f32>,
    pre: Vec<f32>,
}

/// A gradient buffer for each parameter in walk order; None for a frozen one.
type Grads = Vec<Option<Vec<f32>>>;

impl Model5 {
    /// Every parameter in the order the fused pass reads them: wte, wpe, the blocks, ln_f,
    /// lm_head (untied only).
    fn walk_order(&self) -> Vec<&Param> {
        let mut order = vec![&self.wte, &self.wpe];
        for b in &self.blocks {
            for a in [&b.ln_1, &b.c_attn, &b.attn_proj, &b.ln_2, &b.c_fc, &b.mlp_proj] {
                order.extend([&a.weight, &a.bias]);
            }
        }
        order.extend([&self.ln_f.weight, &self.ln_f.bias]);
        order.extend(self.lm_head.as_ref());
        order
    }

    /// Where ln_f's weight sits in [`Self::walk_order`] (its bias follows).
    fn ln_f_at(&self) -> usize {
        block_at(self.blocks.len())
    }

    /// Where the head's weight sits in [`Self::walk_order`]: `wte` when tied, else `lm_head`.
    fn head_at(&self) -> usize {
        if self.lm_head.is_none() {
            0
        } else {
            self.ln_f_at() + 2
        }
    }

    fn gelu(&self) -> Gelu {
        match self.cfg.activation {
            Activation::GeluNew => Gelu::Tanh,
            Activation::Gelu => Gelu::Erf,
        }
    }

    fn shape(&self, batch: usize, seq: usize) -> Result<Shape> {
        if seq > self.cfg.context {
            return Err(Error::Input(format!(
                "sequence of {seq} tokens is longer than --context {}; raise --context or lower --seq-len",
                self.cfg.context
            )));
        }
        Ok(Shape { batch, seq, dim: self.cfg.dim, heads: self.cfg.heads })
    }

    /// Mean cross-entropy of `batch` windows of `seq` ids (`ids` and `targets` row-major), and
    /// the gradient of every live parameter, by name.
    pub(super) fn fused_loss_and_grads(
        &self,
        ids: &[u32],
        targets: &[u32],
        batch: usize,
        live: &Names,
    ) -> Result<(f64, HashMap<String, Tensor>)> {
        let s = self.shape(batch, ids.len() / batch.max(1))?;
        let order = self.walk_order();
        let mut grads: Grads =
            order.iter().map(|p| live.contains(&p.name).then(|| vec![0f32; p.var.elem_count()])).collect();
        let n = ids.len();
        let loss = with_values(&order, |v| {
            let (kept, last) = self.forward(v, ids, s, true)?;
            let (xf, ln_f) = self.final_norm(v, &last);
            let head_at = self.head_at();
            if grads.iter().all(Option::is_none) {
                return Ok(decoder::head_cross_entropy(&xf, v[head_at], targets, 1.0, None)? / n as f64);
            }
            let mut dxf = vec![0f32; n * s.dim];
            let mut dhead = grads[head_at].take();
            let grad = Some((dxf.as_mut_slice(), dhead.as_deref_mut()));
            let loss = decoder::head_cross_entropy(&xf, v[head_at], targets, 1.0 / n as f32, grad)?;
            grads[head_at] = dhead;
            let lnf = self.ln_f_at();
            let mut dres = vec![0f32; n * s.dim];
            let (dw, db) = pair(&mut grads, lnf);
            decoder::layer_norm_backward(&mut dres, dw, db, &dxf, &last, &ln_f.0, &ln_f.1, v[lnf]);
            // Below the lowest live parameter no gradient is wanted: stop there.
            let embeddings_live = grads[0].is_some() || grads[1].is_some();
            let lowest =
                (0..self.blocks.len()).find(|&i| grads[block_at(i)..block_at(i + 1)].iter().any(Option::is_some));
            for (i, k) in kept.iter().enumerate().rev() {
                if !embeddings_live && lowest.is_none_or(|l| i < l) {
                    break;
                }
                let bv = block_values(v, i);
                dres = self.block_backward(k, dres, &bv, &mut grads[block_at(i)..block_at(i + 1)], s)?;
            }
            if embeddings_live {
                let _lap = Lap::new("embeddings backward");
                let d = s.dim;
                for (r, &id) in ids.iter().enumerate() {
                    let g = &dres[r * d..(r + 1) * d];
                    if let Some(w) = grads[0].as_mut() {
                        w[id as usize * d..(id as usize + 1) * d].iter_mut().zip(g).for_each(|(a, b)| *a += b);
                    }
                    if let Some(p) = grads[1].as_mut() {
                        let t = r % s.seq;
                        p[t * d..(t + 1) * d].iter_mut().zip(g).for_each(|(a, b)| *a += b);
                    }
                }
            }
            Ok(loss / n as f64)
        })?;
        let mut out = HashMap::new();
        for (p, g) in order.iter().zip(grads) {
            if let Some(g) = g {
                out.insert(p.name.clone(), Tensor::from_vec(g, p.var.dims(), &Device::Cpu)?);
            }
        }
        Ok((loss, out))
    }

    /// Sum of the per-position losses of `batch` windows, no gradients and nothing kept.
    pub(super) fn fused_loss_sum(&self, ids: &[u32], targets: &[u32], batch: usize) -> Result<f64> {
        let s = self.shape(batch, ids.len() / batch.max(1))?;
        let order = self.walk_order();
        with_values(&order, |v| {
            let (_, last) = self.forward(v, ids, s, false)?;
            let (xf, _) = self.final_norm(v, &last);
            decoder::head_cross_entropy(&xf, v[self.head_at()], targets, 1.0, None)
        })
    }

    /// The embeddings and every block: what each block kept (when `keep`), and the last
    /// block's output.
    fn forward(&self, v: &[&[f32]], ids: &[u32], s: Shape, keep: bool) -> Result<(Vec<Kept>, Vec<f32>)> {
        let (d, vocab) = (s.dim, self.cfg.vocab);
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Input(format!("token id {bad} is outside Model 5's {vocab} embeddings")));
        }
        let lap = Lap::new("embeddings");
        let mut x = vec![0f32; ids.len() * d];
        x.par_chunks_mut(d).zip(ids.par_iter()).enumerate().for_each(|(r, (row, &id))| {
            let (tok, pos) =
                (&v[0][id as usize * d..(id as usize + 1) * d], &v[1][(r % s.seq) * d..(r % s.seq + 1) * d]);
            row.iter_mut().zip(tok.iter().zip(pos)).for_each(|(o, (a, b))| *o = a + b);
        });
        drop(lap);
        let mut kept = Vec::new();
        for i in 0..self.blocks.len() {
            let (k, out) = self.block_forward(x, &block_values(v, i), s)?;
            if keep {
                kept.push(k);
            }
            x = out;
        }
        Ok((kept, x))
    }

    fn final_norm(&self, v: &[&[f32]], last: &[f32]) -> (Vec<f32>, (Vec<f32>, Vec<f32>)) {
        let at = self.ln_f_at();
        let rows = last.len() / self.cfg.dim;
        let (mut xf, mut mean, mut rstd) = (vec![0f32; last.len()], vec![0f32; rows], vec![0f32; rows]);
        decoder::layer_norm(&mut xf, &mut mean, &mut rstd, last, v[at], v[at + 1], self.cfg.layer_norm_eps as f32);
        (xf, (mean, rstd))
    }

    fn block_forward(&self, x: Vec<f32>, w: &BlockValues, s: Shape) -> Result<(Kept, Vec<f32>)> {
        let (n, d, eps) = (s.batch * s.seq, s.dim, self.cfg.layer_norm_eps as f32);
        let [ln1_w, ln1_b, attn_w, attn_b, aproj_w, aproj_b, ln2_w, ln2_b, fc_w, fc_b, mproj_w, mproj_b] = w.0;
        let norm = |x: &[f32], w: &[f32], b: &[f32]| {
            let (mut out, mut mean, mut rstd) = (vec![0f32; n * d], vec![0f32; n], vec![0f32; n]);
            decoder::layer_norm(&mut out, &mut mean, &mut rstd, x, w, b, eps);
            (out, (mean, rstd))
        };
        let (a, ln_1) = norm(&x, ln1_w, ln1_b);
        let mut qkv = vec![0f32; n * 3 * d];
        decoder::linear(&mut qkv, &a, attn_w, attn_b)?;
        let (mut y, mut att) = (vec![0f32; n * d], vec![0f32; s.batch * s.heads * s.seq * s.seq]);
        decoder::attention(&mut y, &mut att, &qkv, s)?;
        let mut mid = vec![0f32; n * d];
        decoder::linear(&mut mid, &y, aproj_w, aproj_b)?;
        add_into(&mut mid, &x);
        let (m, ln_2) = norm(&mid, ln2_w, ln2_b);
        let mut pre = vec![0f32; n * 4 * d];
        decoder::linear(&mut pre, &m, fc_w, fc_b)?;
        let act = self.activated(&pre);
        let mut out = vec![0f32; n * d];
        decoder::linear(&mut out, &act, mproj_w, mproj_b)?;
        add_into(&mut out, &mid);
        Ok((Kept { x, ln_1, a, qkv, att, y, mid, ln_2, m, pre }, out))
    }

    fn activated(&self, pre: &[f32]) -> Vec<f32> {
        let mut act = vec![0f32; pre.len()];
        self.gelu().forward(&mut act, pre);
        act
    }

    /// One block backwards: from the gradient at its output to the gradient at its input,
    /// filling the gradients of its live parameters (`g`, in walk order) on the way.
    fn block_backward(
        &self,
        k: &Kept,
        dout: Vec<f32>,
        w: &BlockValues,
        g: &mut [Option<Vec<f32>>],
        s: Shape,
    ) -> Result<Vec<f32>> {
        let (n, d) = (s.batch * s.seq, s.dim);
        let [ln1_w, _, attn_w, _, aproj_w, _, ln2_w, _, fc_w, _, mproj_w, _] = w.0;
        let act = self.activated(&k.pre);
        let mut dact = vec![0f32; n * 4 * d];
        let (dw, db) = pair(g, 10);
        decoder::linear_backward(Some(&mut dact), dw, db, &dout, &act, mproj_w, d)?;
        self.gelu().backward(&mut dact, &k.pre);
        let mut dm = vec![0f32; n * d];
        let (dw, db) = pair(g, 8);
        decoder::linear_backward(Some(&mut dm), dw, db, &dact, &k.m, fc_w, 4 * d)?;
        let mut dmid = dout;
        let (dw, db) = pair(g, 6);
        decoder::layer_norm_backward(&mut dmid, dw, db, &dm, &k.mid, &k.ln_2.0, &k.ln_2.1, ln2_w);
        let mut dy = vec![0f32; n * d];
        let (dw, db) = pair(g, 4);
        decoder::linear_backward(Some(&mut dy), dw, db, &dmid, &k.y, aproj_w, d)?;
        let mut dqkv = vec![0f32; n * 3 * d];
        decoder::attention_backward(&mut dqkv, &dy, &k.att, &k.qkv, s)?;
        let mut da = vec![0f32; n * d];
        let (dw, db) = pair(g, 2);
        decoder::linear_backward(Some(&mut da), dw, db, &dqkv, &k.a, attn_w, 3 * d)?;
        let mut dx = dmid;
        let (dw, db) = pair(g, 0);
        decoder::layer_norm_backward(&mut dx, dw, db, &da, &k.x, &k.ln_1.0, &k.ln_1.1, ln1_w);
        Ok(dx)
    }
}

fn block_at(i: usize) -> usize {
    2 + PER_BLOCK * i
}

fn block_values<'a>(v: &[&'a [f32]], i: usize) -> BlockValues<'a> {
    let at = block_at(i);
    BlockValues(std::array::from_fn(|j| v[at + j]))
}

fn add_into(out: &mut [f32], x: &[f32]) {
    out.par_iter_mut().zip(x.par_iter()).for_each(|(a, b)| *a += b);
}

/// The buffers of the weight at `i` and its bias at `i + 1`.
fn pair(g: &mut [Option<Vec<f32>>], i: usize) -> (Option<&mut [f32]>, Option<&mut [f32]>) {
    let (w, b) = g[i..].split_at_mut(1);
    (w[0].as_deref_mut(), b[0].as_deref_mut())
}

/// Runs `f` over the f32 values of `params` borrowed in place (a read lock on each; the
/// optimizer writes only after `f` returns).
fn with_values<R>(params: &[&Param], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = params.iter().map(|p| p.var.as_tensor().storage_and_layout()).collect();
    let mut values = Vec::with_capacity(guards.len());
    for ((storage, layout), p) in guards.iter().zip(params) {
        let Storage::Cpu(CpuStorage::F32(all)) = &**storage else {
            return Err(Error::Input(format!("the fused CPU path needs {} as f32 on the CPU", p.name)));
        };
        let start = layout.start_offset();
        match (layout.is_contiguous(), all.get(start..start + layout.shape().elem_count())) {
            (true, Some(v)) => values.push(v),
            _ => return Err(Error::Input(format!("{} is not one contiguous block of values", p.name))),
        }
    }
    f(&values)
}
