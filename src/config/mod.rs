//! The experiment's settings, declared once. Each section is plain data that derives clap's
//! `Args` (so every setting is a flag with its help and its default) and serde (so it is saved
//! as `config.toml` with every run). The command line, `--config-file`, `--resume` and the
//! Python front all go through [`ExperimentConfig::resolve`], which knows the settings only
//! through these types: a field added to a section is a flag, a saved value and a resume check
//! without further code.

pub mod grid;
pub mod provenance;
pub mod table;
mod validate;
pub mod values;

use clap::{Args, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::data::corpus::Split;
pub use crate::data::transplant::{VocabFallback, VocabMap};
use crate::error::{Error, Result};

pub use crate::config::table::{
    parse_letters, ConfigRow, Letter, Letters, ModelKind, ModelRow, Source, CONFIGS, MODELS,
};
use crate::config::values::finite;
pub use crate::config::values::{
    Axis, CheckpointInterval, GraftScale, LrGroup, ReadCap, Sweep, TrainingPoint, VocabMaps,
};

/// Named presets of the protocol values (`--protocol`); not a setting of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The lecture's: windows of 8, stride 2, random 90/10 split of the windows, batch 64,
    /// 10 epochs, AdamW lr 1e-3, wd 0.01. Test windows overlap training text.
    Course,
    /// The same, with the contiguous split: the last 10 % of the text is never trained on.
    Honest,
}

/// `Default` for a settings section is what clap gives when no flag is passed: the defaults
/// are written once, in the `#[arg(default_value = ...)]` attributes.
macro_rules! defaults_from_clap {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                let cmd = <$t as Args>::augment_args(clap::Command::new("defaults").no_binary_name(true));
                let m = cmd.try_get_matches_from(std::iter::empty::<String>()).expect("defaults parse");
                <$t as FromArgMatches>::from_arg_matches(&m).expect("defaults are valid")
            }
        }
    )*};
}

/// What is read: the corpus, the donor and how its tokens are cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Data {
    /// Corpus text file (UTF-8); give it several times to run the experiment on each corpus and
    /// compare the verdicts [default: The Time Machine, downloaded once and cached]
    #[arg(long = "corpus", value_name = "CORPUS", help_heading = "Data")]
    pub corpora: Vec<String>,
    /// gpt2 (Hugging Face Hub, cached), a .safetensors file or a model folder; give it several
    /// times to run the experiment with each donor and compare the verdicts side by side
    #[arg(long, default_value = "gpt2", help_heading = "Data")]
    #[serde(deserialize_with = "one_or_many")]
    pub donor: Vec<String>,
    /// Embedding tensor name in the donor [default: known names]
    #[arg(long, help_heading = "Data")]
    pub tensor: Option<String>,
    /// auto (the donor's tokenizer.json, else GPT-2), gpt2, or a tokenizer.json path
    #[arg(long, default_value = "auto", help_heading = "Data")]
    pub tokenizer: String,
    /// Largest corpus or tokenizer file read (1GiB, 500MB, 4G): a wrong path to a huge file
    /// or a device fails at once instead of filling memory
    #[arg(long, default_value = "1GiB", help_heading = "Data")]
    pub max_input_size: ReadCap,
    /// With a donor read through another tokenizer than its own: how a model token with no
    /// exact match gets its row, pieces (the mean of the rows of the pieces the donor's
    /// tokenizer cuts it into) or exact (the fallback); exact,pieces runs both, as groups
    #[arg(long, default_value = "pieces", help_heading = "Data")]
    pub vocab_map: VocabMaps,
    /// The row of a model token nothing maps: mean (of every donor row) or random (a seeded
    /// draw from each column's mean and standard deviation)
    #[arg(long, value_enum, default_value = "mean", help_heading = "Data")]
    pub vocab_fallback: VocabFallback,
}

impl Data {
    /// The donor of a one-donor experiment (each (donor, corpus) pair runs as one).
    pub fn first_donor(&self) -> &str {
        self.donor.first().map_or("gpt2", |d| d.as_str())
    }
}

/// A list written as one value (`donor = "gpt2"`, as config.toml files held before several
/// donors) or as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// How the token stream becomes batches, and for how long training goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Protocol {
    /// Tokens per window
    #[arg(long, default_value = "8", allow_negative_numbers = true, help_heading = "Protocol")]
    pub seq_len: usize,
    /// Tokens between window starts
    #[arg(long, default_value = "2", allow_negative_numbers = true, help_heading = "Protocol")]
    pub stride: usize,
    /// windows (the course: random split of windows) or contiguous (the last part of the text tests)
    #[arg(long, value_enum, default_value = "windows", help_heading = "Protocol")]
    pub split: Split,
    /// Share of the windows / text that tests
    #[arg(long, default_value = "0.1", allow_negative_numbers = true, value_parser = finite, help_heading = "Protocol")]
    pub test_fraction: f64,
    /// Train on the first N tokens of the training part only, the test part unchanged (several,
    /// like 20k,200k,1M, sweep the data size) [default: all of it]
    #[arg(long, value_name = "N", help_heading = "Protocol")]
    pub train_tokens: Option<Sweep>,
    /// Windows per batch
    #[arg(long, default_value = "64", allow_negative_numbers = true, help_heading = "Protocol")]
    pub batch_size: usize,
    #[arg(long, default_value = "10", allow_negative_numbers = true, help_heading = "Protocol")]
    pub epochs: usize,
    /// Cap on optimizer steps per run
    #[arg(long, allow_negative_numbers = true, help_heading = "Protocol")]
    pub max_steps: Option<usize>,
    /// Also evaluate every N steps [default: epoch ends; about 10 points for runs under 5 epochs]
    #[arg(long, allow_negative_numbers = true, help_heading = "Protocol")]
    pub eval_every: Option<usize>,
    /// Score the curve points before each run's last on a fixed sample of N test and N
    /// train-eval windows (drawn once per seed, the same for every configuration); the last
    /// point scores every window [default: every window at every point]
    #[arg(long, allow_negative_numbers = true, help_heading = "Protocol")]
    pub eval_windows: Option<usize>,
}

/// AdamW, as `torch.optim.AdamW` (the course's lr and weight decay).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// AdamW learning rate
    #[arg(
        long,
        default_value = "0.001",
        allow_negative_numbers = true,
        value_parser = finite,
        help_heading = "Optimizer"
    )]
    pub lr: f64,
    /// AdamW decoupled weight decay
    #[arg(
        long,
        default_value = "0.01",
        allow_negative_numbers = true,
        value_parser = finite,
        help_heading = "Optimizer"
    )]
    pub weight_decay: f64,
    #[arg(
        long,
        default_value = "0.9",
        allow_negative_numbers = true,
        value_parser = finite,
        help_heading = "Optimizer"
    )]
    pub beta1: f64,
    #[arg(
        long,
        default_value = "0.999",
        allow_negative_numbers = true,
        value_parser = finite,
        help_heading = "Optimizer"
    )]
    pub beta2: f64,
    #[arg(
        long,
        default_value = "1e-8",
        allow_negative_numbers = true,
        value_parser = finite,
        help_heading = "Optimizer"
    )]
    pub eps: f64,
}

/// Which network, and its sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Model {
    /// model1 (the course's: embedding -> GELU -> unembedding) or model5 (GPT-2-style decoder)
    #[arg(long = "model", value_enum, default_value = "model1", help_heading = "Model")]
    pub kind: ModelKind,
    /// Model 5: transformer blocks (several, like 1,2,4, sweep the model size)
    #[arg(long, default_value = "2", allow_negative_numbers = true, help_heading = "Model")]
    pub layers: Sweep,
    /// Model 5: attention heads [default: the donor's config.json, else width/64]
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub heads: Option<usize>,
    /// Model 5: width (several sweep it, where the grafted parts fit) [default: the donor
    /// embedding's]
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub dim: Option<Sweep>,
    /// Model 5: positions (rows of wpe) [default: --seq-len]
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub context: Option<usize>,
    /// Model 5: a separate lm_head instead of the head tied to wte
    #[arg(long, help_heading = "Model")]
    pub untied: bool,
}

/// What each configuration grafts and freezes, and when frozen parts thaw. A = (graft_base,
/// freeze_base), B = (graft, freeze), C = (graft, freeze_base), D = (graft_base, freeze): with
/// the defaults, exactly the course's A-D on `wte`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Graft {
    /// Configurations to run: letters A-H or all (E-H are the scale controls)
    #[arg(long, default_value = "A,B,C,D", help_heading = "Graft and schedule")]
    pub configs: Letters,
    /// keep (the donor's values), unit (rescaled to std 1) or init (to the random init's std)
    #[arg(long, value_enum, default_value = "keep", help_heading = "Graft and schedule")]
    pub graft_scale: GraftScale,
    /// What B and C graft, as patterns: wte,wpe,h.0-5,h.*.attn,ln_f, all
    #[arg(long, default_value = "wte", help_heading = "Graft and schedule")]
    pub graft: String,
    /// What B and D freeze, same patterns
    #[arg(long, default_value = "wte", help_heading = "Graft and schedule")]
    pub freeze: String,
    /// What A and D graft (the baseline of the graft axis)
    #[arg(long, default_value = "none", help_heading = "Graft and schedule")]
    pub graft_base: String,
    /// What A and C freeze (the baseline of the freeze axis)
    #[arg(long, default_value = "none", help_heading = "Graft and schedule")]
    pub freeze_base: String,
    /// Frozen parts thaw after N epochs (or Nsteps)
    #[arg(long, value_name = "N", help_heading = "Graft and schedule")]
    pub thaw_after: Option<TrainingPoint>,
    /// Thaw one layer group at a time, top first, every N epochs (or Nsteps) after --thaw-after
    #[arg(long, value_name = "N", help_heading = "Graft and schedule")]
    pub thaw_every: Option<TrainingPoint>,
    /// Learning rate for the parameters a pattern names, e.g. 'h.*=3e-4' (repeatable; the last match wins)
    #[arg(long = "lr-group", value_name = "PATTERN=LR", help_heading = "Graft and schedule")]
    pub lr_groups: Vec<LrGroup>,
}

/// Seeds, sampling and where it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Run {
    /// First seed
    #[arg(long, default_value = "0", help_heading = "Run")]
    pub seed: u64,
    /// Number of seeds, S..S+N-1, for every configuration
    #[arg(long, default_value = "3", allow_negative_numbers = true, help_heading = "Run")]
    pub seeds: usize,
    /// Tokens sampled per configuration for the report's text (stops after two sentences)
    #[arg(long, default_value = "60", allow_negative_numbers = true, help_heading = "Run")]
    pub sample_tokens: usize,
    /// auto (the GPU when this build has CUDA and a device answers, else the CPU; one line says
    /// which and why), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto", help_heading = "Run")]
    pub device: String,
    /// Save each run's checkpoint at least this often while it trains (30s, 10m, 2h, or off);
    /// Ctrl-C and SIGTERM (Slurm's preemption) always save one before stopping
    #[arg(long, default_value = "10m", help_heading = "Run")]
    pub checkpoint_every: CheckpointInterval,
    /// Also write TensorBoard event files under DIR/tensorboard/<config>-<seed>/ (losses by
    /// step, thaws, the copy and frozen checks, the verdicts): `tensorboard --logdir DIR`
    #[arg(long, help_heading = "Run")]
    pub tensorboard: bool,
    /// Also keep each finished run's trained parameters in DIR/weights-<config>-<seed>.safetensors
    /// (`embgraft export` turns them into a PyTorch or transformers folder); frozen tensors equal
    /// to the donor's are stored as a reference to it
    #[arg(long, help_heading = "Run")]
    pub save_weights: bool,
    /// Memory the run may use (8GiB, 500MB); a run estimated to need more is refused before it
    /// starts [default: what the system has available: MemAvailable, or the cgroup's limit]
    #[arg(long, value_name = "SIZE", help_heading = "Run")]
    pub max_memory: Option<ReadCap>,
}

defaults_from_clap!(Data, Protocol, AdamWConfig, Model, Graft, Run);

/// Everything that defines an experiment. Two runs with equal configs give equal numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    #[command(flatten)]
    pub data: Data,
    #[command(flatten)]
    pub protocol: Protocol,
    #[command(flatten)]
    pub optimizer: AdamWConfig,
    #[command(flatten)]
    pub model: Model,
    #[command(flatten)]
    pub graft: Graft,
    #[command(flatten)]
    pub run: Run,
}

/// Settings that may differ when an experiment is resumed: they change where it runs, not what
/// it computes.
/// The table of config.toml that records what a run folder's experiment was made from.
pub const FINGERPRINTS: &str = "fingerprints";

pub const RESUMABLE: &[&str] =
    &["device", "checkpoint_every", "max_input_size", "tensorboard", "save_weights", "max_memory"];

/// The flags of the [`RESUMABLE`] settings, in its order: what messages and the docs name
/// (tests/docs.rs checks every page that lists them against this).
pub fn resumable_flags() -> Vec<String> {
    let all = ExperimentConfig::settings();
    RESUMABLE
        .iter()
        .map(|id| all.iter().find(|(i, _)| i == id).map_or_else(|| format!("--{id}"), |(_, f)| f.clone()))
        .collect()
}

/// Settings that came after run folders recorded fingerprints: recorded (and hashed) only
/// where they differ from their default, so a folder made before them keeps its fingerprint.
pub const SINCE_FINGERPRINTS: &[&str] = &["vocab_map", "vocab_fallback"];

/// `--quick`'s sample for the curve points before a run's last (see [`ExperimentConfig::quick`]).
pub const QUICK_EVAL_WINDOWS: usize = 256;

impl ExperimentConfig {
    /// A reduced budget that still gives a complete report, intervals included: 60 steps per
    /// run, evaluated every 20, three seeds; the curve points before the last score a fixed
    /// sample of QUICK_EVAL_WINDOWS windows of each split (the seed's, so differences stay
    /// paired), the last point every window, so the answers are the full run's.
    pub fn quick(mut self) -> Self {
        self.protocol.max_steps = Some(60);
        self.protocol.eval_every = Some(20);
        self.protocol.eval_windows = Some(QUICK_EVAL_WINDOWS);
        self.run.seeds = 3;
        self
    }

    /// Sets every value of a protocol preset at once (flags given alongside still win).
    pub fn preset(mut self, p: Preset) -> Self {
        // The lecture's values; what the lecture does not fix (test fraction, step cap,
        // evaluation interval) keeps what the config file or defaults say.
        let d = ExperimentConfig::default();
        let (p0, o0) = (&mut self.protocol, &mut self.optimizer);
        (p0.seq_len, p0.stride, p0.batch_size, p0.epochs) =
            (d.protocol.seq_len, d.protocol.stride, d.protocol.batch_size, d.protocol.epochs);
        (o0.lr, o0.weight_decay) = (d.optimizer.lr, d.optimizer.weight_decay);
        p0.split = match p {
            Preset::Course => Split::Windows,
            Preset::Honest => Split::Contiguous,
        };
        self
    }

    /// Every setting as (keyword = config.toml key, flag, default, help), for other fronts'
    /// documentation (the Python package's keyword arguments).
    pub fn described() -> Vec<(String, String, String, String)> {
        let cmd = ExperimentConfig::augment_args(clap::Command::new("settings"));
        cmd.get_arguments()
            .map(|a| {
                let flag = format!("--{}", a.get_long().unwrap_or(a.get_id().as_str()));
                let keyword = flag.trim_start_matches("--").replace('-', "_");
                let default = a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",");
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                (keyword, flag, default, help)
            })
            .collect()
    }

    /// The keywords of the settings given once per value (`--corpus a --corpus b`): a list for
    /// any other setting is one comma-separated value. The Python front asks this instead of
    /// keeping its own list.
    pub fn repeated() -> Vec<String> {
        let cmd = ExperimentConfig::augment_args(clap::Command::new("settings"));
        cmd.get_arguments()
            .filter(|a| matches!(a.get_action(), clap::ArgAction::Append) && a.get_value_delimiter().is_none())
            .map(|a| a.get_long().unwrap_or(a.get_id().as_str()).replace('-', "_"))
            .collect()
    }

    /// Every setting as (clap id = config.toml key, flag), in declaration order.
    pub fn settings() -> Vec<(String, String)> {
        let cmd = ExperimentConfig::augment_args(clap::Command::new("settings"));
        cmd.get_arguments()
            .map(|a| (a.get_id().to_string(), format!("--{}", a.get_long().unwrap_or(a.get_id().as_str()))))
            .collect()
    }

    /// The experiment from its sources, in order of precedence: the flags the user gave
    /// (`given(id)` is true for those, `cli` holds their parsed values), then `base` (a saved
    /// config.toml, or the defaults with any presets applied). Settings are found by their
    /// names in the serialised sections, so no setting is listed here.
    pub fn resolve(base: &ExperimentConfig, cli: &ExperimentConfig, given: &dyn Fn(&str) -> bool) -> Result<Self> {
        let mut merged = serde_json::to_value(base).map_err(|e| Error::Input(e.to_string()))?;
        let from = serde_json::to_value(cli).map_err(|e| Error::Input(e.to_string()))?;
        let (Some(into), Some(from)) = (merged.as_object_mut(), from.as_object()) else {
            return Err(Error::Input("settings are not sections".into()));
        };
        for (section, values) in from {
            let (Some(values), Some(target)) =
                (values.as_object(), into.get_mut(section).and_then(|v| v.as_object_mut()))
            else {
                continue;
            };
            for (key, v) in values.iter().filter(|(k, _)| given(k)) {
                target.insert(key.clone(), v.clone());
            }
        }
        serde_json::from_value(merged).map_err(|e| Error::Input(format!("settings: {e}")))
    }

    /// The flags that rebuild this config from the defaults (settings left at their default are
    /// not written). `resolve` over these flags gives `self` back.
    pub fn to_args(&self) -> Vec<String> {
        let (me, dflt) = match (serde_json::to_value(self), serde_json::to_value(ExperimentConfig::default())) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Vec::new(),
        };
        let flags: std::collections::HashMap<String, String> = Self::settings().into_iter().collect();
        let mut args = Vec::new();
        for (section, values) in me.as_object().into_iter().flatten() {
            for (key, v) in values.as_object().into_iter().flatten() {
                if dflt.get(section).and_then(|s| s.get(key)) == Some(v) {
                    continue;
                }
                let Some(flag) = flags.get(key) else { continue };
                let text = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match v {
                    serde_json::Value::Bool(true) => args.push(flag.clone()),
                    serde_json::Value::Bool(false) | serde_json::Value::Null => {}
                    serde_json::Value::Array(items) => {
                        for item in items {
                            args.push(flag.clone());
                            args.push(text(item));
                        }
                    }
                    other => {
                        args.push(flag.clone());
                        args.push(text(other));
                    }
                }
            }
        }
        args
    }

    /// Steps between curve points besides epoch ends: `eval_every` if set; otherwise, for a
    /// run that ends before five epochs (a `--max-steps` run), about ten points over the run,
    /// so even a short run draws curves.
    pub fn eval_interval(&self, planned_steps: usize, steps_per_epoch: usize) -> Option<usize> {
        self.protocol
            .eval_every
            .or_else(|| (planned_steps < steps_per_epoch.saturating_mul(5)).then(|| planned_steps.div_ceil(10).max(1)))
    }

    /// The seeds of the experiment, `seed..seed+seeds`.
    pub fn seeds(&self) -> Vec<u64> {
        (0..self.run.seeds as u64).map(|k| self.run.seed.wrapping_add(k)).collect()
    }

    /// The values a sweepable setting takes (None: `--train-tokens` or `--dim` not given).
    pub fn axis_values(&self, a: Axis) -> Option<&Sweep> {
        match a {
            Axis::TrainTokens => self.protocol.train_tokens.as_ref(),
            Axis::Layers => Some(&self.model.layers),
            Axis::Dim => self.model.dim.as_ref(),
        }
    }

    /// The settings given several values, in the order groups nest (data size, then layers,
    /// then width).
    pub fn sweeps(&self) -> Vec<(Axis, Vec<usize>)> {
        Axis::ALL
            .into_iter()
            .filter_map(|a| self.axis_values(a).filter(|v| v.is_sweep()).map(|v| (a, v.values().to_vec())))
            .collect()
    }

    /// This config with one value of a swept setting.
    pub fn at(&self, a: Axis, v: usize) -> ExperimentConfig {
        let mut c = self.clone();
        match a {
            Axis::TrainTokens => c.protocol.train_tokens = Some(Sweep::one(v)),
            Axis::Layers => c.model.layers = Sweep::one(v),
            Axis::Dim => c.model.dim = Some(Sweep::one(v)),
        }
        c
    }

    /// Whether every cell trains exactly `--max-steps` steps, repeating epochs as needed: with
    /// `--train-tokens`, a step cap is the budget every data size gets, so a small training
    /// part is passed over more often (without `--max-steps`, every size gets `--epochs`).
    pub fn step_budget(&self) -> Option<usize> {
        self.protocol.train_tokens.as_ref().and(self.protocol.max_steps)
    }

    /// Whether configuration `l` grafts anything in this experiment.
    pub fn grafts(&self, l: Letter) -> bool {
        !matches!(self.cell(l).0.trim(), "none" | "")
    }

    /// Whether configuration `l` freezes anything in this experiment.
    pub fn freezes(&self, l: Letter) -> bool {
        !matches!(self.cell(l).1.trim(), "none" | "")
    }

    /// (graft patterns, freeze patterns) of a letter; E-H graft and freeze like C and B.
    pub fn cell(&self, l: Letter) -> (&str, &str) {
        let g = &self.graft;
        (if l.copied() { &g.graft } else { &g.graft_base }, if l.frozen() { &g.freeze } else { &g.freeze_base })
    }

    /// Parses `graft=none,wte freeze=none,wte` (each axis one or two values, the first the
    /// baseline) into the graft section.
    pub fn set_grid(&mut self, spec: &str) -> Result<()> {
        for axis in spec.split_whitespace() {
            let (key, vals) = axis
                .split_once('=')
                .ok_or_else(|| Error::Input(format!("--grid {axis}: write graft=A,B or freeze=A,B")))?;
            // Values are pattern lists themselves, so they are separated by ';' when a value
            // has several patterns (graft=none;wte,wpe), else by ','.
            let sep = if vals.contains(';') { ';' } else { ',' };
            let vals: Vec<String> = vals.split(sep).map(|v| v.trim().to_string()).collect();
            let (base, level) = match vals.as_slice() {
                [one] => (one.clone(), one.clone()),
                [a, b] => (a.clone(), b.clone()),
                _ => {
                    return Err(Error::Input(format!(
                        "--grid {axis}: give one or two values per axis (a 2x2 grid is configs A-D); for more, run \
                         compare again with other values"
                    )))
                }
            };
            let g = &mut self.graft;
            match key {
                "graft" => (g.graft_base, g.graft) = (base, level),
                "freeze" => (g.freeze_base, g.freeze) = (base, level),
                _ => return Err(Error::Input(format!("--grid {axis}: the axes are graft and freeze"))),
            }
        }
        Ok(())
    }

    /// What a letter means in this experiment, for plans, legends and tables.
    pub fn describe(&self, l: Letter) -> String {
        let d = Graft::default();
        let g = &self.graft;
        let default_grid = (&g.graft, &g.freeze, &g.graft_base, &g.freeze_base)
            == (&d.graft, &d.freeze, &d.graft_base, &d.freeze_base);
        if !self.model.kind.row().grafts_by_name || default_grid {
            return l.describe().to_string();
        }
        let (g, f) = self.cell(l);
        format!("graft {g}, freeze {f}")
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The settings of a config.toml; a run folder's also holds a `[fingerprints]` table (see
    /// `provenance`), which is not a setting. Errors name the line and what is wrong there.
    pub fn from_toml(text: &str) -> Result<Self> {
        let bad = |e: toml::de::Error| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let why = match e.message().trim() {
                "" => crate::error::one_line(&e.to_string()),
                m => crate::error::one_line(m),
            };
            Error::Input(match line {
                Some(l) => format!("line {l}: {why}"),
                None => why,
            })
        };
        let mut table: toml::Table = text.parse().map_err(bad)?;
        table.remove(FINGERPRINTS);
        // TOML has nan and inf; no setting takes them (and they would not survive the settings'
        // JSON form): named here, by key and line.
        for (section, values) in &table {
            for (key, v) in values.as_table().into_iter().flatten() {
                if let Some(x) = v.as_float().filter(|x| !x.is_finite()) {
                    let line = text.lines().position(|l| l.trim_start().starts_with(key.as_str())).map(|i| i + 1);
                    return Err(Error::Input(format!(
                        "{}[{section}] {key} = {x} is not a finite number; give a finite number",
                        line.map_or(String::new(), |l| format!("line {l}: "))
                    )));
                }
            }
        }
        toml::Value::Table(table).try_into().map_err(bad)
    }
}

/// Helpers the tests of several modules share.
#[cfg(test)]
pub mod tests_support {
    use super::*;
    use clap::CommandFactory;

    /// A command line holding only the settings.
    #[derive(clap::Parser, Debug)]
    #[command(name = "embgraft-settings", no_binary_name = true)]
    pub struct SettingsOnly {
        #[command(flatten)]
        pub settings: ExperimentConfig,
    }

    /// Setting flags alone (no presets) over `base`, resolved as the command line resolves them.
    pub fn parse_settings(base: &ExperimentConfig, args: &[String]) -> Result<ExperimentConfig> {
        let m = SettingsOnly::command()
            .try_get_matches_from(args)
            .map_err(|e| Error::Input(crate::error::one_line(&e.render().to_string())))?;
        let cli = SettingsOnly::from_arg_matches(&m).map_err(|e| Error::Input(e.to_string()))?.settings;
        let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        ExperimentConfig::resolve(base, &cli, &given)
    }

    /// A value for a setting that differs from its default and that clap accepts, found from a
    /// small pool: the settings themselves come from the type. Empty for a switch.
    pub fn non_default_value(id: &str, flag: &str) -> Option<String> {
        let d = ExperimentConfig::default();
        let pool = ["5", "5steps", "0.25", "x.txt", "A,C", "wte,wpe", "h.*=0.0003", "30s", "exact"];
        let cmd = ExperimentConfig::augment_args(clap::Command::new("t"));
        let arg = cmd.get_arguments().find(|a| a.get_id() == id)?;
        if !arg.get_action().takes_values() {
            return Some(String::new());
        }
        // Enumerated settings: a value clap lists that is not the default.
        let listed: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
        let candidates: Vec<String> =
            if listed.is_empty() { pool.iter().map(|s| s.to_string()).collect() } else { listed };
        candidates.into_iter().find(|v| parse_settings(&d, &[flag.to_string(), v.clone()]).is_ok_and(|c| c != d))
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{non_default_value, parse_settings};
    use super::*;

    #[test]
    fn the_settings_given_once_per_value_are_the_repeatable_flags() {
        let mut r = ExperimentConfig::repeated();
        r.sort();
        assert_eq!(r, ["corpus", "donor", "lr_group"]);
    }

    #[test]
    fn config_round_trips_through_toml() {
        let mut c = ExperimentConfig::default().quick();
        c.data.corpora = vec!["x.txt".into(), "y.txt".into()];
        c.model.kind = ModelKind::Model5;
        c.graft.thaw_after = Some(TrainingPoint::Steps(30));
        c.graft.lr_groups = vec!["h.*=3e-4".parse().unwrap()];
        c.set_grid("graft=none;wte,wpe freeze=none,wte").unwrap();
        assert_eq!(c.cell(Letter::B), ("wte,wpe", "wte"));
        assert_eq!(c.cell(Letter::D), ("none", "wte"));
        assert_eq!(ExperimentConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn defaults_are_the_course() {
        let c = ExperimentConfig::default();
        assert_eq!((c.protocol.seq_len, c.protocol.stride, c.protocol.batch_size, c.protocol.epochs), (8, 2, 64, 10));
        assert_eq!((c.optimizer.lr, c.optimizer.weight_decay, c.optimizer.beta2), (1e-3, 0.01, 0.999));
        assert_eq!(c.graft.configs.0, Letter::LECTURE.to_vec());
        assert_eq!((c.protocol.split, c.run.seeds, c.data.first_donor()), (Split::Windows, 3, "gpt2"));
        // A config.toml that names nothing is the defaults.
        assert_eq!(ExperimentConfig::from_toml("").unwrap(), c);
        assert!(ExperimentConfig::from_toml("[protocol]\nseq_lenn = 3").unwrap_err().to_string().contains("seq_lenn"));
    }

    /// The table is in the enum's order, every row parses back to its letter, and no two
    /// configurations share a colour.
    #[test]
    fn every_configuration_is_its_row() {
        for (i, r) in CONFIGS.iter().enumerate() {
            assert_eq!(r.letter as usize, i, "CONFIGS must follow the enum's order");
            assert_eq!(r.letter.to_string().parse::<Letter>().unwrap(), r.letter);
            assert_eq!((r.letter.frozen(), r.letter.describe()), (r.frozen, r.description));
        }
        assert_eq!(Letter::WITH_CONTROLS.to_vec(), CONFIGS.iter().map(|r| r.letter).collect::<Vec<_>>());
        for (i, m) in MODELS.iter().enumerate() {
            assert_eq!(m.kind as usize, i, "MODELS must follow ModelKind's order");
        }
        let colours: std::collections::BTreeSet<_> = CONFIGS.iter().map(|r| r.colour).collect();
        assert_eq!(colours.len(), CONFIGS.len());
    }

    #[test]
    fn letters_parse_and_reject() {
        assert_eq!(parse_letters("a, C,c").unwrap(), vec![Letter::A, Letter::C]);
        assert_eq!(parse_letters("all").unwrap().len(), 8);
        assert_eq!(parse_letters("h").unwrap(), vec![Letter::H]);
        let msg = parse_letters("A,Q").unwrap_err().to_string();
        assert!(msg.contains("unknown configuration 'Q'"), "{msg}");
    }

    /// Sweeps read `20k,200k,1M` (sorted, without repeats), show themselves the same way, are
    /// saved as a number when they hold one value (config.toml files from before sweeps read
    /// the same) and expand into one group per value.
    #[test]
    fn sweeps_parse_show_and_save() {
        let s: Sweep = "1M, 20k,200k,20000".parse().unwrap();
        assert_eq!(s.values(), [20_000, 200_000, 1_000_000]);
        assert_eq!(s.to_string(), "20k,200k,1M");
        assert_eq!("1.5M".parse::<Sweep>().unwrap().values(), [1_500_000]);
        assert_eq!("2500".parse::<Sweep>().unwrap().to_string(), "2500");
        for bad in ["", ",", "x", "1.5", "-3", "1e400k", "2kk"] {
            let e = bad.parse::<Sweep>().unwrap_err().to_string();
            assert!(e.contains("20k,200k,1M") && !e.contains('\n'), "{bad}: {e}");
        }
        let old = ExperimentConfig::from_toml("[model]\nlayers = 4\n").unwrap();
        assert_eq!(old.model.layers, Sweep::one(4));
        assert!(old.to_toml().contains("layers = 4"));
        let mut c = ExperimentConfig::default();
        c.model.kind = ModelKind::Model5;
        c.protocol.train_tokens = Some("20k,1M".parse().unwrap());
        c.model.layers = "1,2,4".parse().unwrap();
        assert!(c.to_toml().contains("train_tokens = \"20k,1M\""));
        assert_eq!(ExperimentConfig::from_toml(&c.to_toml()).unwrap(), c);
        assert_eq!(c.sweeps(), vec![(Axis::TrainTokens, vec![20_000, 1_000_000]), (Axis::Layers, vec![1, 2, 4])]);
        let groups = crate::experiment::groups(&c);
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names[..4],
            ["tokens-20k__layers-1", "tokens-20k__layers-2", "tokens-20k__layers-4", "tokens-1M__layers-1"]
        );
        assert!(groups.iter().all(|g| g.cfg.sweeps().is_empty() && g.point.len() == 2));
        assert_eq!(groups[3].cfg.model.layers, Sweep::one(1));
        assert_eq!(groups[3].cfg.protocol.train_tokens, Some(Sweep::one(1_000_000)));
        // A step cap is the budget of every size only with --train-tokens.
        c.protocol.max_steps = Some(300);
        assert_eq!(c.step_budget(), Some(300));
        c.protocol.train_tokens = None;
        assert_eq!(c.step_budget(), None);
    }

    #[test]
    fn spans_lr_groups_and_grids_parse_and_reject() {
        assert_eq!("3".parse::<TrainingPoint>().unwrap(), TrainingPoint::Epochs(3));
        assert_eq!("40steps".parse::<TrainingPoint>().unwrap(), TrainingPoint::Steps(40));
        assert_eq!("2 epochs".parse::<TrainingPoint>().unwrap(), TrainingPoint::Epochs(2));
        assert_eq!(TrainingPoint::Epochs(2).steps(7), 14);
        assert_eq!(TrainingPoint::Epochs(usize::MAX).steps(7), usize::MAX);
        assert!(
            "x".parse::<TrainingPoint>().is_err()
                && "0".parse::<TrainingPoint>().is_err()
                && "5min".parse::<TrainingPoint>().is_err()
        );
        assert_eq!("h.*.attn=1e-4".parse::<LrGroup>().unwrap(), LrGroup { pattern: "h.*.attn".into(), lr: 1e-4 });
        assert!("wte".parse::<LrGroup>().is_err() && "wte=-1".parse::<LrGroup>().is_err());
        let mut c = ExperimentConfig::default();
        c.set_grid("graft=none,all freeze=wte").unwrap();
        assert_eq!((c.cell(Letter::A), c.cell(Letter::C)), (("none", "wte"), ("all", "wte")));
        assert!(c.set_grid("graft=none,wte,all").unwrap_err().to_string().contains("one or two values"));
        assert!(c.set_grid("thaw=1").is_err());
    }

    /// Every setting (taken from the type) goes flags -> config.toml -> flags unchanged.
    #[test]
    fn every_setting_round_trips_through_flags_and_toml() {
        let d = ExperimentConfig::default();
        let settings = ExperimentConfig::settings();
        assert!(settings.len() >= 30, "{} settings", settings.len());
        for (id, flag) in settings {
            let v = non_default_value(&id, &flag).unwrap_or_else(|| panic!("no non-default value found for {flag}"));
            let args: Vec<String> = if v.is_empty() { vec![flag.clone()] } else { vec![flag.clone(), v.clone()] };
            let c = parse_settings(&d, &args).unwrap();
            assert_ne!(c, d, "{flag} {v} changed nothing");
            let back = ExperimentConfig::from_toml(&c.to_toml()).unwrap();
            assert_eq!(back, c, "{flag} through config.toml");
            let again = parse_settings(&d, &back.to_args()).unwrap();
            assert_eq!(again, c, "{flag} {v}: to_args gave {:?}", back.to_args());
            // A flag given over a saved config wins over it.
            let over = parse_settings(&c, &[]).unwrap();
            assert_eq!(over, c);
        }
    }
}
