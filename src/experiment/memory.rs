//! Memory refused before it is allocated. A run's big allocations (the tokenized corpus, the
//! donor's matrix, parameters with their gradients and AdamW moments, a batch's activations
//! and attention, the head's logits) are estimated from the sizes alone and compared with what
//! the machine can give (`MemAvailable`, or the cgroup's limit where one is set) or with
//! `--max-memory`, so a run that cannot fit stops with one line naming the setting to change,
//! before it writes anything, instead of being killed hours later or aborting mid-allocation.
//! The estimates count the large buffers only, so they err low: a refused run would not fit.

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};

/// What a run may use: `--max-memory`, else what the system says is available now.
pub fn budget(max: Option<u64>) -> Option<(u64, String)> {
    match max {
        Some(m) => Some((m, "--max-memory".into())),
        None => crate::util::available_memory(),
    }
}

fn show(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

/// Refuses `need` bytes for `what` where the budget is smaller, naming `fix` (the setting to
/// change). Where the system cannot say what is available, nothing is refused.
pub fn check(need: u64, what: &str, fix: &str, max: Option<u64>) -> Result<()> {
    let Some((have, source)) = budget(max) else { return Ok(()) };
    if need <= have {
        return Ok(());
    }
    let raise = match max {
        Some(_) => "or raise --max-memory".to_string(),
        None => "or give --max-memory SIZE if more will be free when it runs".to_string(),
    };
    Err(Error::Input(format!(
        "{what} needs about {} but {} is available ({source}); {fix}, {raise}",
        show(need),
        show(have)
    )))
}

/// Reading and tokenizing a corpus file of `bytes`, and cutting it into windows: the text,
/// its ids and the bytes each owns (about one token per 3 bytes of English, on the high side),
/// the windows' start offsets,
/// one counting pass over the text (16 bytes a position, see `TokenCounts::from_windows`),
/// and the tokenizer's own working memory, about 100 bytes per byte of text it encodes at once
/// (measured: a 100 MB corpus peaked at 13.5 GB encoded whole by a WordPiece tokenizer.json,
/// 2.4 GB in pieces), one piece at a time where the tokenizer allows it.
pub fn corpus(bytes: u64, whole: bool, stride: usize) -> u64 {
    let tokens = bytes / 3;
    let at_once = if whole { bytes } else { bytes.min(crate::data::corpus::PIECE as u64) };
    let windows = tokens / stride.max(1) as u64 * 8;
    bytes + tokens * 8 + windows + tokens * 17 + at_once.saturating_mul(100)
}

/// Loading a tokenizer.json file of `bytes`: the parsed JSON and the tokenizer's tables, about
/// 24 times the file (measured on WordLevel files of 500,000 and 2,000,000 entries, 10 and
/// 43 MB: peaks of 240 and 950 MB).
pub fn tokenizer(bytes: u64) -> u64 {
    bytes.saturating_mul(24)
}

/// Mapping a donor's rows of width `cols` onto a vocabulary of `ids` tokens: the mapped
/// matrix in f32 and, per token, its class, donor rows and text (about 160 bytes; measured:
/// 500,000 tokens at width 384 peaked at 1.0 GB with the tokenizers loaded).
pub fn mapping(ids: u64, cols: u64) -> u64 {
    ids.saturating_mul(cols.saturating_mul(4).saturating_add(160))
}

/// A donor matrix of `elements` read into f32.
pub fn donor(elements: u64) -> u64 {
    elements.saturating_mul(4)
}

/// One run's training, on inputs already read: its largest part and the flag that shrinks it.
/// Model 1 (vocabulary V, width d): its two V x d matrices, their gradients and moments and
/// the copies a run keeps (initial values, the frozen check), and the logits of a batch's
/// distinct tokens. Model 5: every parameter four times (value, gradient, two moments), the
/// activations a batch keeps for its backward pass (about 16 floats per position, layer and
/// width, and the attention's T x T per head), and the head's logits 1024 rows at a time.
pub fn training(
    cfg: &ExperimentConfig,
    vocab: usize,
    dim: usize,
    m5: Option<&crate::model::model5::Model5Config>,
) -> (u64, &'static str) {
    let (b, t) = (cfg.protocol.batch_size as u64, cfg.protocol.seq_len as u64);
    let (v, d) = (vocab as u64, dim as u64);
    let f = |x: u64| x.saturating_mul(4);
    match m5 {
        None => {
            let params = f(v.saturating_mul(d).saturating_mul(8));
            let logits = f(b.saturating_mul(t).min(v).saturating_mul(v).saturating_mul(2));
            match params >= logits {
                true => (params.saturating_add(logits), "a donor with fewer rows or a narrower one"),
                false => (params.saturating_add(logits), "a smaller --batch-size or --seq-len"),
            }
        }
        Some(c) => {
            let (l, h, d) = (c.layers as u64, c.heads as u64, c.dim as u64);
            let params = f(c.parameter_count().map_or(u64::MAX / 8, |n| n as u64).saturating_mul(4));
            let positions = b.saturating_mul(t);
            let attention = f(positions.saturating_mul(t).saturating_mul(h).saturating_mul(2));
            let acts = f(positions.saturating_mul(d).saturating_mul(16)).saturating_add(attention).saturating_mul(l);
            let logits = f(positions.min(1024).saturating_mul(v).saturating_mul(2));
            let need = params.saturating_add(acts).saturating_add(logits);
            match params >= acts {
                true => (need, "a smaller --dim or fewer --layers"),
                false => (need, "a smaller --batch-size or --seq-len"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_what_they_count_and_refusals_name_the_fix() {
        let cfg = ExperimentConfig::default();
        let (gpt2, fix) = training(&cfg, 50257, 768, None);
        // GPT-2's matrix is 154 MB; a run keeps several of it (measured peak 1.86 GB).
        assert!((1_000_000_000..2_000_000_000).contains(&gpt2), "{gpt2}");
        assert!(fix.contains("donor"));
        // A 100 MB corpus peaked at 2.4-2.5 GB read in pieces, at 13.5 GB through a WordPiece
        // tokenizer.json encoding it whole: the estimates stay at or under what was measured.
        let (pieces, whole) = (corpus(100 << 20, false, 2), corpus(100 << 20, true, 2));
        assert!((1_200_000_000..2_500_000_000).contains(&pieces), "{pieces}");
        assert!((10_000_000_000..13_500_000_000).contains(&whole), "{whole}");
        let err = check(gpt2, "Model 1 at 50257 x 768", fix, Some(1 << 20)).unwrap_err().to_string();
        assert!(err.contains("needs about 1.3 GiB but 1.0 MiB is available (--max-memory)"), "{err}");
        assert!(err.contains("narrower one, or raise --max-memory") && !err.contains('\n'), "{err}");
        check(gpt2, "x", fix, Some(u64::MAX)).unwrap();
    }
}
