//! Memory refused before it is allocated. A run's big allocations (the tokenized corpus, the
//! donor's matrix, parameters with their gradients and AdamW moments, a batch's activations
//! and attention, the head's logits) are estimated from the sizes alone and compared with what
//! the machine can give (`MemAvailable`, or the cgroup's limit where one is set) or with
//! `--max-memory`, so a run that cannot fit stops with one line naming the setting to change,
//! before it writes anything, instead of being killed hours later or aborting mid-allocation.
//! The estimates count the large buffers only, so they err low: a refused run would not fit.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_what_they_count_and_refusals_name_the_fix() {
        let model1 = crate::model::spec::ModelSpec::Model1 { vocab: 50257, dim: 768 };
        let (gpt2, fix) = model1.training_memory(64, 8);
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
