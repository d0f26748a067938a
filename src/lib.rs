//! embgraft: graft pretrained token embeddings into small language models, freeze or thaw
//! them, train, and report whether the graft helped and whether freezing hurt.
//!
//! The folders are the data path, each stage importing only the ones before it:
//!
//! - [`data`]: text -> tokens -> windows, (input, target) counts and their floors, donor
//!   matrices from a file or the Hub;
//! - [`config`]: the settings, declared once (turned into flags by [`cli`]), the table of
//!   configurations, the grid of groups and cells they make, and the fingerprints that say what
//!   made a result;
//! - [`ops`]: cross-entropy, AdamW and the GEMM wrapper, each fused op with its CPU and CUDA
//!   halves in one type;
//! - [`model`]: Model 1 and Model 5 behind one trait, parameters by name, the graft;
//! - [`train`]: one run as stages, its observers (metrics, checkpoints, progress, TensorBoard,
//!   stop), its checkpoints and its plain results;
//! - [`analysis`]: statistics, the summary, sweeps;
//! - [`report`]: report.md, plots and the overview;
//! - [`experiment`]: inputs, the grid of runs in a run folder, shards, resume and rebuilding.
//!
//! [`bench`] times the training step; [`cli`] is the command line; [`tfevents`] writes
//! TensorBoard's event files; [`util`] holds atomic writes, bounded reads and the message line.

pub mod analysis;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod experiment;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod model;
pub mod ops;
pub mod report;
pub mod rng;
pub mod tfevents;
pub mod train;
pub mod util;

pub use config::{ExperimentConfig, Letter};
pub use error::{Error, Result};
