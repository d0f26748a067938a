//! The experiment as plain data. Defaults are the course's protocol; the whole struct is saved
//! as `config.toml` next to every result, and `--config-file` reads one back to rerun it.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::corpus::Split;
use crate::error::{Error, Result};
use crate::optim::AdamWConfig;

/// The four configurations of the lecture (A-D) and four controls (E-H) that separate what the
/// donor's rows mean from how large they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Letter {
    /// Random embedding, trainable.
    A,
    /// Donor embedding, frozen.
    B,
    /// Donor embedding, trainable.
    C,
    /// Random embedding, frozen.
    D,
    /// Donor rows permuted across tokens (a fixed permutation per seed), trainable.
    E,
    /// Donor rows permuted across tokens, frozen.
    F,
    /// Donor rescaled to standard deviation 1, frozen.
    G,
    /// Donor rescaled to standard deviation 1, trainable.
    H,
}

/// Where a configuration's starting embedding comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Random,
    Donor,
    /// The donor's rows, shuffled across tokens: same values and scale, meaning destroyed.
    Permuted,
    /// The donor rescaled to standard deviation 1: same meaning, the random init's scale.
    Unit,
}

impl Letter {
    pub const LECTURE: [Letter; 4] = [Letter::A, Letter::B, Letter::C, Letter::D];
    pub const WITH_CONTROLS: [Letter; 8] =
        [Letter::A, Letter::B, Letter::C, Letter::D, Letter::E, Letter::F, Letter::G, Letter::H];

    pub fn source(self) -> Source {
        match self {
            Letter::A | Letter::D => Source::Random,
            Letter::B | Letter::C => Source::Donor,
            Letter::E | Letter::F => Source::Permuted,
            Letter::G | Letter::H => Source::Unit,
        }
    }

    pub fn copied(self) -> bool {
        self.source() != Source::Random
    }

    pub fn frozen(self) -> bool {
        matches!(self, Letter::B | Letter::D | Letter::F | Letter::G)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Letter::A => "random, trainable",
            Letter::B => "copied, frozen",
            Letter::C => "copied, trainable",
            Letter::D => "random, frozen",
            Letter::E => "permuted donor, trainable",
            Letter::F => "permuted donor, frozen",
            Letter::G => "donor at std 1, frozen",
            Letter::H => "donor at std 1, trainable",
        }
    }
}

impl std::fmt::Display for Letter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl FromStr for Letter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let up = s.trim().to_ascii_uppercase();
        Letter::WITH_CONTROLS.into_iter().find(|l| l.to_string() == up).ok_or_else(|| {
            Error::Input(format!(
                "unknown configuration '{s}'; use A (random, trainable), B (copied, frozen), C (copied, trainable), \
                 D (random, frozen), the controls E-H, or all"
            ))
        })
    }
}

/// The scale the donor's embedding is grafted at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GraftScale {
    /// The donor's own values.
    #[default]
    Keep,
    /// Rescaled to standard deviation 1.
    Unit,
    /// Rescaled to the random initialisation's standard deviation (N(0, 1): also 1 for Model 1).
    Init,
}

/// Named presets of the protocol values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// The lecture's: windows of 8, stride 2, random 90/10 split of the windows, batch 64,
    /// 10 epochs, AdamW lr 1e-3, wd 0.01. Test windows overlap training text.
    Course,
    /// The same, with the contiguous split: the last 10 % of the text is never trained on.
    Honest,
}

/// Everything that defines an experiment. Two runs with equal configs give equal numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExperimentConfig {
    /// Corpus text files, each run as its own experiment; empty = The Time Machine, downloaded
    /// once and cached.
    #[serde(default)]
    pub corpora: Vec<String>,
    /// `gpt2` (Hugging Face Hub, cached) or a path to a .safetensors file or model folder.
    pub donor: String,
    /// Embedding tensor name inside the donor; None = look up known names.
    pub tensor: Option<String>,
    /// `auto` (the donor's tokenizer.json if it has one, else GPT-2), `gpt2`, or a path.
    pub tokenizer: String,
    pub seq_len: usize,
    pub stride: usize,
    pub split: Split,
    pub test_fraction: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// Cap on optimizer steps per run (quick runs).
    pub max_steps: Option<usize>,
    /// Evaluate every this many steps as well as at each epoch's end (None: epochs only).
    pub eval_every: Option<usize>,
    pub optimizer: AdamWConfig,
    /// How the donor's values enter B, C, E and F (G and H are always rescaled to std 1).
    #[serde(default)]
    pub graft_scale: GraftScale,
    pub configs: Vec<Letter>,
    pub seed: u64,
    pub seeds: usize,
    /// Tokens sampled per config for the report's text (stops earlier after two sentences).
    pub sample_tokens: usize,
    /// `cpu` or `cuda` / `cuda:N`.
    pub device: String,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            corpora: Vec::new(),
            donor: "gpt2".into(),
            tensor: None,
            tokenizer: "auto".into(),
            seq_len: 8,
            stride: 2,
            split: Split::Windows,
            test_fraction: 0.1,
            batch_size: 64,
            epochs: 10,
            max_steps: None,
            eval_every: None,
            optimizer: AdamWConfig::default(),
            graft_scale: GraftScale::Keep,
            configs: Letter::LECTURE.to_vec(),
            seed: 0,
            seeds: 3,
            sample_tokens: 60,
            device: "cpu".into(),
        }
    }
}

impl ExperimentConfig {
    /// A reduced budget that still gives a complete report, intervals included: 60 steps per
    /// run, evaluated every 20, three seeds. With GPT-2 (768 x 50257) on a 2-core CPU the
    /// twelve runs take about 12 minutes.
    pub fn quick(mut self) -> Self {
        self.max_steps = Some(60);
        self.eval_every = Some(20);
        self.seeds = 3;
        self
    }

    /// Sets every value of a protocol at once (flags given alongside still override).
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.seq_len = 8;
        self.stride = 2;
        self.batch_size = 64;
        self.epochs = 10;
        self.optimizer.lr = 1e-3;
        self.optimizer.weight_decay = 0.01;
        self.split = match p {
            Protocol::Course => Split::Windows,
            Protocol::Honest => Split::Contiguous,
        };
        self
    }

    /// Steps between curve points besides epoch ends: `eval_every` if set; otherwise, for a
    /// run that ends before five epochs (a `--max-steps` run), about ten points over the run,
    /// so even a short run draws curves.
    pub fn eval_interval(&self, planned_steps: usize, steps_per_epoch: usize) -> Option<usize> {
        self.eval_every.or_else(|| (planned_steps < 5 * steps_per_epoch).then(|| planned_steps.div_ceil(10).max(1)))
    }

    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("--seq-len", self.seq_len),
            ("--stride", self.stride),
            ("--batch-size", self.batch_size),
            ("--epochs", self.epochs),
            ("--seeds", self.seeds),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(Error::Input(format!("{flag} must be at least 1")));
            }
        }
        if self.max_steps == Some(0) || self.eval_every == Some(0) {
            return Err(Error::Input("--max-steps and --eval-every must be at least 1".into()));
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Error::Input(format!("--test-fraction must be between 0 and 1, not {}", self.test_fraction)));
        }
        let o = &self.optimizer;
        let lr_ok = o.lr > 0.0 && o.lr.is_finite();
        let wd_ok = o.weight_decay >= 0.0 && o.weight_decay.is_finite();
        if !(lr_ok && wd_ok) {
            return Err(Error::Input("--lr must be positive and --weight-decay non-negative".into()));
        }
        if self.configs.is_empty() {
            return Err(Error::Input("--configs is empty; give letters from A,B,C,D".into()));
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Input(format!("cannot read config: {}", e.message())))
    }
}

/// Parses `A,B,C,D`.
pub fn parse_letters(s: &str) -> Result<Vec<Letter>> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(Letter::WITH_CONTROLS.to_vec());
    }
    let mut out: Vec<Letter> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let l: Letter = part.parse()?;
        if !out.contains(&l) {
            out.push(l);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_toml() {
        let mut c = ExperimentConfig::default().quick();
        c.corpora = vec!["x.txt".into(), "y.txt".into()];
        assert_eq!(ExperimentConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn letters_parse_and_reject() {
        assert_eq!(parse_letters("a, C,c").unwrap(), vec![Letter::A, Letter::C]);
        assert_eq!(parse_letters("all").unwrap().len(), 8);
        assert_eq!(parse_letters("h").unwrap(), vec![Letter::H]);
        let msg = parse_letters("A,Q").unwrap_err().to_string();
        assert!(msg.contains("unknown configuration 'Q'"), "{msg}");
    }
}
