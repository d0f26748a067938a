//! What a resumed (or shared) folder already holds of each cell, checked against the experiment
//! taking it up: finished cells, checkpoints, the inputs it recorded, the backend a checkpoint
//! was made under.

use std::path::Path;

use crate::config::provenance;
use crate::config::Letter;
use crate::error::{Error, Result};
use crate::experiment::rebuild;
use crate::train::results::{InputSummary, RunResult};
use crate::train::sinks::{cell_file as run_file, checkpoint_file, weights_file};

/// What was already done in a folder being resumed, in the grid's order.
pub(super) enum Prior {
    Finished(Box<RunResult>),
    Checkpoint(Box<crate::train::checkpoint::Checkpoint>),
    Nothing,
}

/// What a folder holds of one cell, checked against what this experiment makes it under.
/// `legacy` is set when the cell's file has no fingerprints (an older embgraft's).
pub(super) fn prior(
    out: &Path,
    letter: Letter,
    seed: u64,
    expected: &rebuild::Expected,
    legacy: &mut bool,
) -> Result<Prior> {
    let done = run_file(out, letter, seed);
    if done.exists() {
        let r = expected.run_file(&done, letter, seed, legacy)?;
        let w = weights_file(out, letter, seed);
        if w.exists() {
            expected.weights(&w, letter, seed)?;
        }
        return Ok(Prior::Finished(Box::new(r)));
    }
    let ckpt = checkpoint_file(out, letter, seed);
    if ckpt.exists() {
        return Ok(Prior::Checkpoint(Box::new(expected.checkpoint(&ckpt, letter, seed, legacy)?)));
    }
    Ok(Prior::Nothing)
}

/// A cell interrupted under one matrix-product backend is not continued under another: its
/// numbers would equal neither uninterrupted run's, and the run file could record only one.
pub(super) fn check_resumed_backend(out: &Path, grid: &[(u64, Letter)], priors: &[Prior], now: &str) -> Result<()> {
    for (&(seed, letter), prior) in grid.iter().zip(priors) {
        let Prior::Checkpoint(c) = prior else { continue };
        match &c.matmul {
            Some(then) if then != now => {
                return Err(Error::Input(format!(
                    "{letter} seed {seed} in {} was interrupted with its matrix products computed by {then}, and \
                     would continue with {now}: its numbers would equal neither uninterrupted run's. Resume it \
                     under the same backend (EMBGRAFT_GEMM, EMBGRAFT_BLAS and --device as then), or delete {} \
                     to train that cell again from step 0",
                    out.display(),
                    checkpoint_file(out, letter, seed).display()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A resumed or shared group folder: the inputs read now must be the ones its inputs.json
/// recorded when it started (for a `shard`, the ones the shards before it read).
pub(super) fn check_folder_inputs(out: &Path, info: &InputSummary, shard: bool) -> Result<()> {
    let path = out.join("inputs.json");
    if !path.exists() {
        return Ok(());
    }
    let text =
        crate::util::read_small(&path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let then: InputSummary = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{} is damaged ({e}); delete it and run again", path.display())))?;
    match (&then.fingerprints, &info.fingerprints) {
        (Some(a), Some(b)) => provenance::check_inputs(a, b, [&info.corpus, &info.donor, &info.tokenizer], shard),
        _ => Ok(()),
    }
}
