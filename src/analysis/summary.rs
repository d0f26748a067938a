//! Everything an experiment measured and concluded, as `summary.json` holds it: the plain
//! results ([`crate::train::results`]) with their analysis ([`crate::analysis::stats`]). Above both, so neither
//! needs the other.

use serde::{Deserialize, Serialize};

use crate::train::results::{InputSummary, RunResult};

/// Everything `compare` measured, as written to `summary.json`.
#[derive(Serialize, Deserialize, Debug)]
pub struct Summary {
    pub embgraft_version: String,
    pub inputs: InputSummary,
    pub runs: Vec<RunResult>,
    /// Per-config means with 95 % intervals, and the paired comparisons with verdicts.
    pub analysis: crate::analysis::stats::Analysis,
    pub wall_seconds: f64,
    /// Start-up: from the command's start to the inputs being ready (donor mapped and read,
    /// corpus tokenized and cut) and to the first optimizer step done.
    pub seconds_to_inputs: f64,
    pub seconds_to_first_step: Option<f64>,
}
