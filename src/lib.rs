//! embgraft: graft pretrained token embeddings into small language models, freeze or thaw
//! them, train, and report whether the graft helped and whether freezing hurt.
//!
//! The data path, one file per stage:
//! text -> tokens -> windows ([`corpus`]) -> donor matrix ([`donor`]) -> [`graft`] into the
//! [`model`] -> [`loss`] -> [`optim`] (AdamW) -> one run ([`train`], saved by [`checkpoint`])
//! -> the grid of runs ([`experiment`]) -> statistics ([`stats`], [`baseline`], [`drift`])
//! -> [`report`]. [`bench`] times the training step.

pub mod baseline;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod corpus;
pub mod donor;
pub mod drift;
pub mod error;
pub mod experiment;
pub mod graft;
pub mod loss;
pub mod model;
pub mod model5;
pub mod optim;
pub mod report;
pub mod rng;
pub mod stats;
pub mod train;
pub mod util;

pub use config::{ExperimentConfig, Letter};
pub use error::{Error, Result};
