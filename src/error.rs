//! The library's errors. Each message is one line that names the cause and what to do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Bad user input: paths, sizes, flags, corpora.
    #[error("{0}")]
    Input(String),
    /// A donor file that cannot be used.
    #[error("{0}")]
    Donor(String),
    #[error("{0}")]
    Tokenizer(String),
    #[error("{0}")]
    Download(String),
    #[error("{0}")]
    Output(String),
    /// The user stopped the experiment; what was measured is written.
    #[error("{0}")]
    Interrupted(String),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Folds a multi-line message (clap's usage errors span several lines) into one line.
pub fn one_line(text: &str) -> String {
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
        .collect();
    parts.join(" ").trim_end_matches('.').to_string()
}
