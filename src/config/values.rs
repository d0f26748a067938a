//! The small values settings are written in: spans of training (`30steps`), checkpoint
//! intervals (`10m`), byte sizes (`4GiB`), sweeps (`20k,200k,1M`), learning-rate groups
//! (`h.*=3e-4`), each parsed from and shown as the text its flag takes.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::table::Letters;
use crate::error::{Error, Result};

/// Settings written as text in config.toml: serde goes through their `Display` and `FromStr`,
/// so the file holds what the flag takes (`configs = "A,C"`, `thaw_after = "30steps"`).
macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }

        impl TryFrom<String> for $t {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                s.parse()
            }
        }
    )*};
}

serde_as_text!(Letters, TrainingPoint, LrGroup, CheckpointInterval, ReadCap, VocabMaps);

/// `--vocab-map`: one way of mapping a foreign vocabulary, or several (`exact,pieces`), each
/// run as a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct VocabMaps(pub Vec<crate::data::transplant::VocabMap>);

impl FromStr for VocabMaps {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        use clap::ValueEnum;
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let m = crate::data::transplant::VocabMap::from_str(part, true).map_err(|_| {
                Error::Input(format!("'{part}' is no vocabulary mapping; give pieces, exact or exact,pieces"))
            })?;
            if out.contains(&m) {
                return Err(Error::Input(format!("names {part} twice; give each mapping at most once")));
            }
            out.push(m);
        }
        Ok(VocabMaps(out))
    }
}

impl std::fmt::Display for VocabMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.iter().map(|m| m.name()).collect::<Vec<_>>().join(","))
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

/// A point in training: `N` epochs, or `Nsteps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum TrainingPoint {
    Epochs(usize),
    Steps(usize),
}

impl TrainingPoint {
    /// Steps from the start; saturates (a span past any run never comes).
    pub fn steps(self, steps_per_epoch: usize) -> usize {
        match self {
            TrainingPoint::Epochs(n) => n.saturating_mul(steps_per_epoch),
            TrainingPoint::Steps(n) => n,
        }
    }
}

impl FromStr for TrainingPoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: usize = num.parse().map_err(|_| Error::Input(format!("'{s}' is not N, Nepochs or Nsteps")))?;
        let span = match unit.trim() {
            "" | "e" | "epoch" | "epochs" => TrainingPoint::Epochs(n),
            "s" | "step" | "steps" => TrainingPoint::Steps(n),
            _ => return Err(Error::Input(format!("'{s}' is not N, Nepochs or Nsteps"))),
        };
        if n == 0 {
            return Err(Error::Input(format!("'{s}': give at least 1")));
        }
        Ok(span)
    }
}

impl std::fmt::Display for TrainingPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainingPoint::Epochs(n) => write!(f, "{n}epochs"),
            TrainingPoint::Steps(n) => write!(f, "{n}steps"),
        }
    }
}

/// How often a run saves its checkpoint while it trains: `30s`, `10m`, `2h`, or `off` (only
/// when interrupted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CheckpointInterval(pub Option<std::time::Duration>);

impl FromStr for CheckpointInterval {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        if t == "off" || t == "never" {
            return Ok(CheckpointInterval(None));
        }
        let bad = || Error::Input(format!("'{s}' is not a duration like 30s, 10m or 2h (or off)"));
        let secs = humantime::parse_duration(&t).map_err(|_| bad())?.as_secs();
        if secs == 0 {
            return Err(Error::Input(format!("'{s}': give at least 1s, or off")));
        }
        Ok(CheckpointInterval(Some(std::time::Duration::from_secs(secs))))
    }
}

impl std::fmt::Display for CheckpointInterval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.map(|d| d.as_secs()) {
            None => f.write_str("off"),
            Some(s) if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            Some(s) if s % 60 == 0 => write!(f, "{}m", s / 60),
            Some(s) => write!(f, "{s}s"),
        }
    }
}

/// The most bytes an input file (corpus, tokenizer) may hold: `1GiB`, `500MB`, `4G`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ReadCap(pub u64);

impl FromStr for ReadCap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let n = s
            .trim()
            .parse::<bytesize::ByteSize>()
            .map_err(|_| Error::Input(format!("'{s}' is not a size like 1GiB, 500MB or 4G")))?
            .as_u64();
        match n {
            0 => Err(Error::Input(format!("'{s}': give a size above 0"))),
            n => Ok(ReadCap(n)),
        }
    }
}

impl std::fmt::Display for ReadCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Exact, so a saved config.toml reads back the same number.
        let units = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1_000_000_000, "GB"), (1_000_000, "MB")];
        match units.iter().find(|(u, _)| self.0.is_multiple_of(*u)) {
            Some((u, name)) => write!(f, "{}{name}", self.0 / u),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A float flag's value, refused unless it is a number (clap takes `nan` and `inf` for f64).
pub(crate) fn finite(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err("give a finite number".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// One value or several, written `20k,200k,1M` (`k` = 1,000, `M` = 1,000,000). Several values
/// make a sweep: each value is a group of cells of its own, and the report follows the
/// questions' answers across the values. Kept sorted and without repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sweep(Vec<usize>);

impl Sweep {
    pub fn one(v: usize) -> Sweep {
        Sweep(vec![v])
    }

    pub fn values(&self) -> &[usize] {
        &self.0
    }

    /// The value of a one-value setting (a group's own config): the smallest, when several.
    pub fn first(&self) -> usize {
        self.0.first().copied().unwrap_or(0)
    }

    pub fn is_sweep(&self) -> bool {
        self.0.len() > 1
    }

    /// `20k,200k,1M`.
    pub fn show_all(values: &[usize]) -> String {
        values.iter().map(|&v| Sweep::show(v)).collect::<Vec<_>>().join(",")
    }

    /// `20000` as `20k`, `1000000` as `1M`.
    pub fn show(v: usize) -> String {
        match v {
            v if v >= 1_000_000 && v % 1_000_000 == 0 => format!("{}M", v / 1_000_000),
            v if v >= 1_000 && v % 1_000 == 0 => format!("{}k", v / 1_000),
            v => v.to_string(),
        }
    }
}

impl FromStr for Sweep {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |part: &str| {
            Error::Input(format!(
                "'{part}' in '{s}' is not a whole number (20000, 20k, 1.5M); give values like 20k,200k,1M"
            ))
        };
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (num, scale) = match part.char_indices().last() {
                Some((i, 'k' | 'K')) => (&part[..i], 1e3),
                Some((i, 'm' | 'M')) => (&part[..i], 1e6),
                _ => (part, 1.0),
            };
            let v = match num.parse::<usize>() {
                Ok(n) if scale == 1.0 => n,
                _ => {
                    let x: f64 = num.parse().map_err(|_| bad(part))?;
                    let v = x * scale;
                    if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 9.0e15) {
                        return Err(bad(part));
                    }
                    v as usize
                }
            };
            out.push(v);
        }
        if out.is_empty() {
            return Err(Error::Input(format!("'{s}' holds no value; give one or several, like 20k,200k,1M")));
        }
        out.sort_unstable();
        out.dedup();
        Ok(Sweep(out))
    }
}

impl std::fmt::Display for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&Sweep::show_all(&self.0))
    }
}

/// One value is saved as a number (`layers = 2`, as config.toml files held before sweeps),
/// several as their text (`train_tokens = "20k,200k,1M"`); both are read back.
impl Serialize for Sweep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_u64(*one as u64),
            _ => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Sweep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumberOrText {
            Number(u64),
            Text(String),
        }
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => Ok(Sweep::one(n as usize)),
            NumberOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// What a sweep varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Training tokens (`--train-tokens`): data size.
    TrainTokens,
    /// Model 5's blocks (`--layers`): model size.
    Layers,
    /// Model 5's width (`--dim`): model size.
    Dim,
}

impl Axis {
    pub const ALL: [Axis; 3] = [Axis::TrainTokens, Axis::Layers, Axis::Dim];

    pub fn flag(self) -> &'static str {
        match self {
            Axis::TrainTokens => "--train-tokens",
            Axis::Layers => "--layers",
            Axis::Dim => "--dim",
        }
    }

    /// Folder-name prefix and the words the report uses.
    pub fn short(self) -> &'static str {
        match self {
            Axis::TrainTokens => "tokens",
            Axis::Layers => "layers",
            Axis::Dim => "dim",
        }
    }

    /// "data size" or "model size": what a trend along this axis is a trend with.
    pub fn meaning(self) -> &'static str {
        match self {
            Axis::TrainTokens => "data size",
            Axis::Layers | Axis::Dim => "model size",
        }
    }

    /// The base whose logarithm trends are fitted on: a tenfold of data, a doubling of a model.
    pub fn log_base(self) -> f64 {
        match self {
            Axis::TrainTokens => 10.0,
            Axis::Layers | Axis::Dim => 2.0,
        }
    }

    /// "per tenfold" / "per doubling".
    pub fn per(self) -> &'static str {
        match self {
            Axis::TrainTokens => "per tenfold of training tokens",
            Axis::Layers => "per doubling of layers",
            Axis::Dim => "per doubling of width",
        }
    }
}

/// A learning rate for the parameters a pattern names (`--lr-group 'h.*=3e-4'`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
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

impl std::fmt::Display for LrGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.pattern, self.lr)
    }
}
