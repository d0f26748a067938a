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

/// Which network trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The course's Model 1: embedding -> GELU -> unembedding.
    #[default]
    Model1,
    /// A GPT-2-style decoder with attention (see `model5.rs`).
    Model5,
}

/// Sizes of Model 5; None = from the donor (`config.json`, else the embedding's width) or the
/// protocol (`context` = `seq_len`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model5Sizes {
    pub layers: usize,
    pub heads: Option<usize>,
    pub dim: Option<usize>,
    pub context: Option<usize>,
    /// Head tied to `wte`, as GPT-2.
    pub tied: bool,
}

impl Default for Model5Sizes {
    fn default() -> Self {
        Model5Sizes { layers: 2, heads: None, dim: None, context: None, tied: true }
    }
}

/// A point in training: `N` epochs, or `Nsteps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Span {
    Epochs(usize),
    Steps(usize),
}

impl Span {
    pub fn steps(self, steps_per_epoch: usize) -> usize {
        match self {
            Span::Epochs(n) => n * steps_per_epoch,
            Span::Steps(n) => n,
        }
    }
}

impl FromStr for Span {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: usize = num.parse().map_err(|_| Error::Input(format!("'{s}' is not N, Nepochs or Nsteps")))?;
        let span = match unit.trim() {
            "" | "e" | "epoch" | "epochs" => Span::Epochs(n),
            "s" | "step" | "steps" => Span::Steps(n),
            _ => return Err(Error::Input(format!("'{s}' is not N, Nepochs or Nsteps"))),
        };
        if n == 0 {
            return Err(Error::Input(format!("'{s}': give at least 1")));
        }
        Ok(span)
    }
}

/// A learning rate for the parameters a pattern names (`--lr-group 'h.*=3e-4'`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrGroup {
    pub pattern: String,
    pub lr: f64,
}

impl FromStr for LrGroup {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Input(format!("--lr-group {s} is not PATTERN=LR, e.g. 'h.*=3e-4'"));
        let (p, lr) = s.rsplit_once('=').ok_or_else(bad)?;
        let lr: f64 = lr.trim().parse().map_err(|_| bad())?;
        if !(lr >= 0.0 && lr.is_finite()) || p.trim().is_empty() {
            return Err(bad());
        }
        Ok(LrGroup { pattern: p.trim().into(), lr })
    }
}

/// What a configuration letter grafts and freezes: the lecture's 2x2 design over any parts.
/// A = (graft_base, freeze_base), B = (graft, freeze), C = (graft, freeze_base),
/// D = (graft_base, freeze). With the defaults that is exactly the course's A-D on `wte`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub graft: String,
    pub freeze: String,
    pub graft_base: String,
    pub freeze_base: String,
}

impl Default for Grid {
    fn default() -> Self {
        Grid { graft: "wte".into(), freeze: "wte".into(), graft_base: "none".into(), freeze_base: "none".into() }
    }
}

impl Grid {
    /// (graft patterns, freeze patterns) of a letter; E-H graft and freeze like C and B.
    pub fn cell(&self, l: Letter) -> (&str, &str) {
        let g = if l.copied() { &self.graft } else { &self.graft_base };
        let f = if l.frozen() { &self.freeze } else { &self.freeze_base };
        (g, f)
    }

    /// Parses `graft=none,wte freeze=none,wte` (each axis one or two values, the first the
    /// baseline) into `self`.
    pub fn parse_into(&mut self, spec: &str) -> Result<()> {
        for axis in spec.split_whitespace() {
            let (key, vals) = axis
                .split_once('=')
                .ok_or_else(|| Error::Input(format!("--grid {axis}: write graft=A,B or freeze=A,B")))?;
            // Values are pattern lists themselves, so they are separated by ';' when a value
            // has several patterns (graft=none;wte,wpe), else by ','.
            let vals: Vec<String> = if vals.contains(';') {
                vals.split(';').map(|v| v.trim().to_string()).collect()
            } else {
                vals.split(',').map(|v| v.trim().to_string()).collect()
            };
            let (base, level) = match vals.as_slice() {
                [one] => (one.clone(), one.clone()),
                [a, b] => (a.clone(), b.clone()),
                _ => {
                    return Err(Error::Input(format!(
                        "--grid {axis}: give one or two values per axis (a 2x2 grid is configs A-D);                          for more, run compare again with other values"
                    )))
                }
            };
            match key {
                "graft" => (self.graft_base, self.graft) = (base, level),
                "freeze" => (self.freeze_base, self.freeze) = (base, level),
                _ => return Err(Error::Input(format!("--grid {axis}: the axes are graft and freeze"))),
            }
        }
        Ok(())
    }
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
    #[serde(default)]
    pub model: ModelKind,
    #[serde(default)]
    pub model5: Model5Sizes,
    /// What each letter grafts and freezes (patterns over parameter names).
    #[serde(default)]
    pub grid: Grid,
    /// Frozen parameters thaw after this long (None: frozen throughout).
    #[serde(default)]
    pub thaw_after: Option<Span>,
    /// Thaw one layer group at a time, top first, this far apart (ULMFiT's gradual unfreezing).
    #[serde(default)]
    pub thaw_every: Option<Span>,
    #[serde(default)]
    pub lr_groups: Vec<LrGroup>,
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
            model: ModelKind::Model1,
            model5: Model5Sizes::default(),
            grid: Grid::default(),
            thaw_after: None,
            thaw_every: None,
            lr_groups: Vec::new(),
        }
    }
}

impl ExperimentConfig {
    /// A reduced budget that still gives a complete report, intervals included: 60 steps per
    /// run, evaluated every 20, three seeds. With GPT-2 (768 x 50257) on a 2-core CPU the
    /// twelve runs take about 6 minutes.
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
        if self.thaw_every.is_some() && self.thaw_after.is_none() {
            return Err(Error::Input("--thaw-every needs --thaw-after (when the first group thaws)".into()));
        }
        match self.model {
            ModelKind::Model1 => {
                let g = &self.grid;
                for (flag, v) in [("--graft", &g.graft), ("--graft", &g.graft_base)] {
                    if !matches!(v.trim(), "wte" | "none" | "") {
                        return Err(Error::Input(format!(
                            "{flag} {v}: Model 1 can graft only wte; use --model model5 to graft other parts"
                        )));
                    }
                }
            }
            ModelKind::Model5 => {
                if let Some(l) = self.configs.iter().find(|l| !Letter::LECTURE.contains(l)) {
                    return Err(Error::Input(format!(
                        "config {l} is a Model 1 control; with --model model5 use A-D (set what they graft with --graft/--freeze/--grid)"
                    )));
                }
                if self.model5.layers == 0 {
                    return Err(Error::Input("--layers must be at least 1".into()));
                }
                if let Some(c) = self.model5.context {
                    if c < self.seq_len {
                        return Err(Error::Input(format!(
                            "--context {c} is shorter than --seq-len {}; the model must see a whole window",
                            self.seq_len
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether configuration `l` grafts anything in this experiment.
    pub fn grafts(&self, l: Letter) -> bool {
        !matches!(self.grid.cell(l).0.trim(), "none" | "")
    }

    /// Whether configuration `l` freezes anything in this experiment.
    pub fn freezes(&self, l: Letter) -> bool {
        !matches!(self.grid.cell(l).1.trim(), "none" | "")
    }

    /// What a letter means in this experiment, for plans, legends and tables.
    pub fn describe(&self, l: Letter) -> String {
        let default = self.grid == Grid::default();
        if self.model == ModelKind::Model1 || default {
            return l.describe().to_string();
        }
        let (g, f) = self.grid.cell(l);
        format!("graft {}, freeze {}", g, f)
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
        c.model = ModelKind::Model5;
        c.thaw_after = Some(Span::Steps(30));
        c.lr_groups = vec!["h.*=3e-4".parse().unwrap()];
        c.grid.parse_into("graft=none;wte,wpe freeze=none,wte").unwrap();
        assert_eq!(c.grid.cell(Letter::B), ("wte,wpe", "wte"));
        assert_eq!(c.grid.cell(Letter::D), ("none", "wte"));
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

    #[test]
    fn spans_lr_groups_and_grids_parse_and_reject() {
        assert_eq!("3".parse::<Span>().unwrap(), Span::Epochs(3));
        assert_eq!("40steps".parse::<Span>().unwrap(), Span::Steps(40));
        assert_eq!("2 epochs".parse::<Span>().unwrap(), Span::Epochs(2));
        assert_eq!(Span::Epochs(2).steps(7), 14);
        assert!("x".parse::<Span>().is_err() && "0".parse::<Span>().is_err() && "5min".parse::<Span>().is_err());
        assert_eq!("h.*.attn=1e-4".parse::<LrGroup>().unwrap(), LrGroup { pattern: "h.*.attn".into(), lr: 1e-4 });
        assert!("wte".parse::<LrGroup>().is_err() && "wte=-1".parse::<LrGroup>().is_err());
        let mut g = Grid::default();
        g.parse_into("graft=none,all freeze=wte").unwrap();
        assert_eq!((g.cell(Letter::A), g.cell(Letter::C)), (("none", "wte"), ("all", "wte")));
        assert!(g.parse_into("graft=none,wte,all").unwrap_err().to_string().contains("one or two values"));
        assert!(g.parse_into("thaw=1").is_err());
    }
}
