//! The models: Model 1 ([`model1`]) and Model 5 ([`model5`]) behind one trait,
//! [`LanguageModel`]; their parameters by checkpoint name ([`params`]); the graft that copies a
//! donor into them ([`graft`]). [`spec::ModelSpec`] is the one place a configured kind becomes a type.

use std::collections::HashMap;

use candle_core::{Tensor, Var, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{GraftScale, Source};
use crate::data::corpus::Dataset;
use crate::data::counts::TokenCounts;
use crate::data::donor::{Donor, Embedding};
use crate::error::Result;
use crate::model::params::{Names, Params};
use crate::ops::Grad;

pub mod graft;
pub mod model1;
pub mod model5;
pub mod params;
pub mod spec;

/// What a run needs of a network: its parameters by name, the loss and gradients of the live
/// ones, evaluation, next-token logits, the graft, and a description.
pub trait LanguageModel {
    /// Every parameter by its checkpoint name, in a fixed order.
    fn params(&self) -> Params;

    /// Mean loss over the windows and a gradient for each live parameter, by name.
    fn loss_and_grads(&self, data: &Dataset, windows: &[usize], live: &Names) -> Result<(f64, HashMap<String, Grad>)>;

    /// Mean loss over every position of `windows` (whose pairs are `counts`), no gradients.
    fn eval(&self, data: &Dataset, counts: &TokenCounts, windows: &[usize]) -> Result<f64>;

    /// The next token's logits (V,) after `seq`.
    fn next_logits(&self, seq: &[u32]) -> Result<Tensor>;

    /// Copies the donor into the parameters named in `grafted` and checks every element.
    fn graft(&self, donor: &mut GraftDonor, grafted: &Names, frozen: &Names) -> Result<graft::Grafted>;

    /// One line for results and the report.
    fn describe(&self) -> String;

    /// The grafted embedding whose rows, when no batch uses them, only decay: the drift
    /// check's closed form holds for it (Model 1's `wte`; Model 5's tied head moves every row).
    fn decaying_embedding(&self) -> Option<&Var> {
        None
    }

    /// Samples up to `max_tokens` ids after `prompt`, stopping after `sentences` ends of
    /// sentence (see [`sample_with`]).
    fn sample(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        stop: &dyn Fn(u32) -> bool,
        sentences: usize,
        rng: &mut dyn rand::RngCore,
    ) -> Result<Vec<u32>> {
        let mut rng = rng;
        sample_with(prompt, max_tokens, stop, sentences, &mut rng, |seq| self.next_logits(seq))
    }
}

/// What a graft copies from: the donor's embedding, its file (for Model 5's other tensors),
/// how the configuration transforms the embedding, and the stream a permutation draws from.
pub struct GraftDonor<'a> {
    pub embedding: &'a Embedding,
    pub file: Option<&'a Donor>,
    pub source: Source,
    pub scale: GraftScale,
    pub permute: &'a mut ChaCha8Rng,
}

/// Draws up to `max_tokens` ids after `prompt` (an empty prompt starts from id 0), each from
/// the softmax of `next_logits(sequence so far)` (V,), stopping after `sentences` tokens for
/// which `stop` holds. Returns the drawn ids only.
pub fn sample_with(
    prompt: &[u32],
    max_tokens: usize,
    stop: &dyn Fn(u32) -> bool,
    sentences: usize,
    rng: &mut impl Rng,
    mut next_logits: impl FnMut(&[u32]) -> Result<Tensor>,
) -> Result<Vec<u32>> {
    let mut seq: Vec<u32> = if prompt.is_empty() { vec![0] } else { prompt.to_vec() };
    let start = seq.len();
    let mut ends = 0;
    for _ in 0..max_tokens {
        let probs = candle_nn::ops::softmax(&next_logits(&seq)?, D::Minus1)?.to_vec1::<f32>()?;
        // Inverse CDF: the first id whose cumulative probability passes a uniform draw.
        let mut r: f32 = rng.random();
        let mut next = probs.len() - 1;
        for (i, p) in probs.iter().enumerate() {
            if r < *p {
                next = i;
                break;
            }
            r -= p;
        }
        seq.push(next as u32);
        if stop(next as u32) {
            ends += 1;
            if ends == sentences {
                break;
            }
        }
    }
    Ok(seq[start..].to_vec())
}
