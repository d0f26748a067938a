//! Results as plain data: what a run measured, what an experiment read and concluded. Written
//! by training and the experiment, read by the report, the statistics and `--resume`; this
//! module depends on none of them.

use serde::{Deserialize, Serialize};

use crate::config::Letter;
use crate::model::graft::{CopyCheck, FrozenCheck};

/// One point of the loss curves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Point {
    pub epoch: usize,
    pub step: usize,
    /// Mean of the batch losses since the previous point (the course's train loss).
    pub train_loss: f64,
    /// Mean loss over every test position, after the step, without gradients.
    pub test_loss: f64,
    /// A fixed training subset (as many windows as the test set) evaluated exactly as the test
    /// set: the like-for-like counterpart of `test_loss`.
    #[serde(default)]
    pub train_eval_loss: Option<f64>,
    /// Windows of each split this point scored when it used `--eval-windows`' sample; absent
    /// when it scored every window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_windows: Option<usize>,
    /// `test_loss` and `train_eval_loss` in bits per byte: the loss summed over the scored
    /// positions over ln 2 times the raw bytes their target tokens own (absent in folders
    /// written before bits per byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_bpb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_eval_bpb: Option<f64>,
}

/// Where a run stopped because its loss stopped being a number.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    pub step: usize,
    pub last_finite_loss: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub config: Letter,
    pub seed: u64,
    pub copied: bool,
    pub frozen: bool,
    pub total_params: usize,
    pub trainable_params: usize,
    pub steps: usize,
    pub points: Vec<Point>,
    /// What was grafted: the donor's tensor, and any permutation or rescaling.
    #[serde(default)]
    pub graft: Option<String>,
    pub copy_check: Option<CopyCheck>,
    pub frozen_check: Option<FrozenCheck>,
    /// For a trainable grafted embedding: how far its rows moved, by token frequency.
    #[serde(default)]
    pub drift: Option<crate::train::drift::Drift>,
    pub diverged: Option<Divergence>,
    /// Stopped by the user before its planned steps; `--resume` continues it.
    #[serde(default)]
    pub interrupted: bool,
    pub wall_seconds: f64,
    /// Text sampled from the trained model.
    pub sample: String,
    /// `model1`, or Model 5's sizes.
    #[serde(default)]
    pub model: String,
    /// One copy check per grafted tensor (`copy_check` sums them up).
    #[serde(default)]
    pub copy_checks: Vec<CopyCheck>,
    /// One bit-identity check per frozen parameter, taken when it thawed or at the end
    /// (`frozen_check` sums them up).
    #[serde(default)]
    pub frozen_checks: Vec<FrozenCheck>,
    /// When frozen parameters thawed.
    #[serde(default)]
    pub thaws: Vec<Thaw>,
    /// Facts the report repeats (a tied head frozen with wte, a cut wpe, transposes).
    #[serde(default)]
    pub notes: Vec<String>,
    /// What the cell was made under: written in its run file, so a file from another
    /// experiment is refused (summary.json states it once, in its inputs).
    /// What computed the run's matrix products: on the CPU a BLAS by its own name or the `gemm`
    /// crate with its kernels ([`crate::ops::gemm::kernels`]), else the device. Runs made with
    /// different ones agree to rounding, not bit for bit; absent in runs of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matmul: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_under: Option<crate::config::provenance::MadeUnder>,
    /// Which cell this is (its group, configuration and seed), so a run file under another
    /// cell's name is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<crate::config::provenance::CellId>,
    /// The run file's checksum: BLAKE3 of its JSON without this field ([`RunResult::checksum`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// Parameters that started training at a step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Thaw {
    /// Thawed before this many steps had been taken.
    pub step: usize,
    pub epoch: usize,
    pub params: Vec<String>,
}

impl RunResult {
    pub fn final_point(&self) -> Option<&Point> {
        self.points.last()
    }

    /// What the run file's `blake3` holds: the fingerprint of the file's JSON without it
    /// (fields in declaration order, maps sorted, floats written exactly, so reading the file
    /// back and hashing again gives the same text).
    pub fn checksum(&self) -> String {
        let unsealed = RunResult { blake3: None, ..self.clone() };
        crate::util::fingerprint(serde_json::to_string(&unsealed).unwrap_or_default().as_bytes())
    }
}

/// Facts about the inputs that go into the report.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct InputSummary {
    pub corpus: String,
    pub corpus_tokens: usize,
    pub tokenizer: String,
    pub donor: String,
    pub donor_weights: String,
    pub donor_tensor: String,
    pub donor_dtype: String,
    pub vocab: usize,
    pub dim: usize,
    pub unused_donor_rows: usize,
    pub split: String,
    pub train_windows: usize,
    pub test_windows: usize,
    pub test_positions: usize,
    /// Share of test-window positions that training windows also cover (0 for contiguous).
    pub test_positions_seen_in_training: f64,
    /// Count-based references: the train floor H(next | current) and the add-k bigram's test loss.
    pub bigram: crate::data::baseline::Bigram,
    pub steps_per_run: usize,
    #[serde(default)]
    pub model: String,
    /// `--train-tokens` (None: the whole training part) and the tokens the kept training
    /// windows cover.
    #[serde(default)]
    pub train_tokens_limit: Option<usize>,
    #[serde(default)]
    pub train_tokens: usize,
    /// The domain as far as it can be measured without the donor's pretraining data: words
    /// (split at white space) of the corpus, so tokens per word; the distinct token ids of
    /// the corpus and of the training windows (shares of the donor's rows used); the share of
    /// test targets whose token no training window holds.
    #[serde(default)]
    pub words: usize,
    #[serde(default)]
    pub distinct_tokens: usize,
    #[serde(default)]
    pub distinct_train_tokens: usize,
    #[serde(default)]
    pub test_targets_unseen_in_training: f64,
    /// What was read, by content, and the settings' fingerprint (absent in folders written
    /// before fingerprints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<crate::config::provenance::Fingerprints>,
    /// The raw bytes behind the scored positions, for bits per byte (absent in folders written
    /// before them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_bytes: Option<TextBytes>,
    /// How the donor's rows were mapped onto this tokenizer's vocabulary, when it is not the
    /// donor's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_map: Option<VocabMapSummary>,
}

/// Target positions and the raw bytes their tokens own, per split, counted as the losses
/// count them (a position once per window that scores it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TextBytes {
    pub corpus_bytes: u64,
    pub train_positions: u64,
    pub train_bytes: u64,
    pub test_positions: u64,
    pub test_bytes: u64,
}

impl TextBytes {
    fn bpb(nats: f64, positions: u64, bytes: u64) -> f64 {
        crate::data::corpus::per_byte(nats, positions, bytes.max(1))
    }

    /// A mean loss over the training windows' positions in bits per byte.
    pub fn train_bpb(&self, nats: f64) -> f64 {
        Self::bpb(nats, self.train_positions, self.train_bytes)
    }

    /// A mean loss over the test windows' positions in bits per byte.
    pub fn test_bpb(&self, nats: f64) -> f64 {
        Self::bpb(nats, self.test_positions, self.test_bytes)
    }
}

/// A vocabulary mapping as the report gives it: the donor's tokenizer, the settings, how many
/// model tokens took each class, the share of training and test target positions of each
/// class (what the experiment sees), and a few examples of each.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct VocabMapSummary {
    pub donor_tokenizer: String,
    pub map: String,
    pub fallback: String,
    /// exact, pieces, fallback: tokens of the model's vocabulary.
    pub tokens: [usize; 3],
    /// The same over the training and the test windows' target positions.
    pub train_positions: [u64; 3],
    pub test_positions: [u64; 3],
    /// Rows the independent proof checked: every exact row bit for bit, every pieces row as
    /// the mean of its pieces.
    pub proved: [usize; 2],
    /// Up to five per class: "model token → donor pieces".
    pub examples: [Vec<String>; 3],
}

impl InputSummary {
    /// The donor tokenizer's tokens per white-space-separated word of the corpus.
    pub fn tokens_per_word(&self) -> f64 {
        self.corpus_tokens as f64 / self.words.max(1) as f64
    }
}
