//! embgraft: graft pretrained token embeddings into small language models, freeze or thaw
//! them, train, and report whether the graft helped and whether freezing hurt.
//!
//! Settings are declared once ([`config`], turned into flags by [`cli`]). The data path, one
//! file per stage: text -> tokens -> windows ([`corpus`]) -> donor matrix ([`donor`]) ->
//! (from a file or the [`hub`]) [`graft`] into the [`model`] or [`model5`] (parameters by name: [`params`]) -> [`loss`] ->
//! [`optim`] (AdamW; [`kernels`] wraps the raw GEMM) -> one run ([`train`], saved by
//! [`checkpoint`]) -> the grid of runs ([`experiment`], in a run [`folder`] whose every file says what
//! made it: [`provenance`]) -> plain [`results`] -> statistics
//! ([`stats`], [`baseline`], [`drift`]; across sizes, [`sweep`]) -> [`report`]. [`bench`] times the training step; with `--features cuda`, [`cuda`] holds Model 1's
//! fused step for the GPU.

pub mod baseline;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod corpus;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod donor;
pub mod drift;
pub mod error;
pub mod experiment;
pub mod folder;
pub mod graft;
pub mod grid;
pub mod hub;
pub mod inputs;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod model5;
pub mod optim;
pub mod params;
pub mod provenance;
pub mod rebuild;
pub mod report;
pub mod results;
pub mod rng;
pub mod sinks;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod train;
pub mod util;

pub use config::{ExperimentConfig, Letter};
pub use error::{Error, Result};
