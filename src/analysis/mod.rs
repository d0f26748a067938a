//! What the statistics say, from plain run results: the questions asked ([`questions`]) and
//! their outcomes ([`outcome`]), paired intervals and Holm-adjusted verdicts ([`stats`]), the
//! per-group summary written to summary.json ([`summary`]), the lecture's claims followed
//! across data and model sizes ([`sweep`]), and donors compared as paired questions ([`donors`]).

pub mod donors;
pub mod outcome;
pub mod questions;
pub mod stats;
pub mod summary;
pub mod sweep;
