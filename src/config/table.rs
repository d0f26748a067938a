//! The tables the rest of the code reads instead of matching on names: one row per
//! configuration (A-H) and one per model kind. Adding a configuration is one row of
//! [`CONFIGS`] (and its letter); adding a question about it is one row of
//! [`crate::analysis::stats::QUESTIONS`].

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// Every configuration, in the table's order.
    pub const WITH_CONTROLS: [Letter; CONFIGS.len()] = {
        let mut all = [Letter::A; CONFIGS.len()];
        let mut i = 0;
        while i < CONFIGS.len() {
            all[i] = CONFIGS[i].letter;
            i += 1;
        }
        all
    };

    /// This configuration's row of [`CONFIGS`].
    pub fn row(self) -> &'static ConfigRow {
        &CONFIGS[self as usize]
    }

    pub fn source(self) -> Source {
        self.row().source
    }

    pub fn copied(self) -> bool {
        self.source() != Source::Random
    }

    pub fn frozen(self) -> bool {
        self.row().frozen
    }

    pub fn describe(self) -> &'static str {
        self.row().description
    }

    /// Its colour in every plot (RGB).
    pub fn colour(self) -> (u8, u8, u8) {
        self.row().colour
    }
}

/// One configuration: where its embedding starts, whether it trains, how it is described and
/// drawn. Everything the code knows of a configuration is its row here (in the enum's order).
pub struct ConfigRow {
    pub letter: Letter,
    pub source: Source,
    pub frozen: bool,
    pub description: &'static str,
    pub colour: (u8, u8, u8),
}

pub const CONFIGS: &[ConfigRow] = &[
    row(Letter::A, Source::Random, TRAINS, "random, trainable", (31, 119, 180)),
    row(Letter::B, Source::Donor, FROZEN, "copied, frozen", (214, 39, 40)),
    row(Letter::C, Source::Donor, TRAINS, "copied, trainable", (44, 160, 44)),
    row(Letter::D, Source::Random, FROZEN, "random, frozen", (148, 103, 189)),
    row(Letter::E, Source::Permuted, TRAINS, "permuted donor, trainable", (255, 127, 14)),
    row(Letter::F, Source::Permuted, FROZEN, "permuted donor, frozen", (140, 86, 75)),
    row(Letter::G, Source::Unit, FROZEN, "donor at std 1, frozen", (227, 119, 194)),
    row(Letter::H, Source::Unit, TRAINS, "donor at std 1, trainable", (23, 190, 207)),
];

const FROZEN: bool = true;
const TRAINS: bool = false;

const fn row(
    letter: Letter,
    source: Source,
    frozen: bool,
    description: &'static str,
    colour: (u8, u8, u8),
) -> ConfigRow {
    ConfigRow { letter, source, frozen, description, colour }
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

/// A list of configurations, written `A,B,C,D` (or `all`) on the command line and in config.toml.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Letters(pub Vec<Letter>);

impl FromStr for Letters {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Letters(Letter::WITH_CONTROLS.to_vec()));
        }
        let mut out: Vec<Letter> = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let l: Letter = part.parse()?;
            if !out.contains(&l) {
                out.push(l);
            }
        }
        Ok(Letters(out))
    }
}

impl std::fmt::Display for Letters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","))
    }
}

/// Parses `A,B,C,D` or `all`.
pub fn parse_letters(s: &str) -> Result<Vec<Letter>> {
    Ok(s.parse::<Letters>()?.0)
}

/// Which network trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The course's Model 1: embedding -> GELU -> unembedding.
    #[default]
    Model1,
    /// A GPT-2-style decoder with attention (see `model/model5.rs`).
    Model5,
}

impl ModelKind {
    /// This model's row of [`MODELS`].
    pub const fn row(self) -> &'static ModelRow {
        &MODELS[self as usize]
    }
}

/// What the settings and the report know of a model, in [`ModelKind`]'s order. The model itself
/// is a [`crate::model::LanguageModel`]; this row is what is decided before one is built.
pub struct ModelRow {
    pub kind: ModelKind,
    /// As the report and messages name it.
    pub name: &'static str,
    /// Its `--model` value.
    pub flag: &'static str,
    /// The report's title; a sized model adds its sizes.
    pub title: &'static str,
    /// It has blocks: `--layers`, `--dim`, `--heads` and `--context` apply and sweep.
    pub sized: bool,
    /// It grafts any parameter by its GPT-2 name, not only `wte`.
    pub grafts_by_name: bool,
    /// It runs the controls E-H (permuted and rescaled donors).
    pub controls: bool,
    /// What loads its `embgraft export` folder in Python.
    pub loader: &'static str,
    /// How the report states the H(next | current) floor; `{:.4}` stands for its value.
    pub floor: &'static str,
}

pub const MODELS: [ModelRow; 2] = [
    ModelRow {
        kind: ModelKind::Model1,
        name: "Model 1",
        flag: "model1",
        title: "Model 1 with a grafted token embedding",
        sized: false,
        grafts_by_name: false,
        controls: true,
        loader: "embgraft.torch_model1",
        floor: "no Model 1 can get below H(next | current) = {:.4} on the training pairs \
                (the *floor*; Model 1 sees only the current token)",
    },
    ModelRow {
        kind: ModelKind::Model5,
        name: "Model 5",
        flag: "model5",
        title: "Model 5 (GPT-style decoder) with grafted parts",
        sized: true,
        grafts_by_name: true,
        controls: false,
        loader: "transformers.GPT2LMHeadModel.from_pretrained",
        floor: "H(next | current) = {:.4} on the training pairs bounds models that see only the current token; \
                Model 5 attends to the window, so it can go below this *floor*",
    },
];
