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

impl Error {
    /// The same error, its message led by where it happened (`dim-128: ...`): which group of
    /// a sweep or a grid of donors and corpora could not be set up.
    pub fn within(self, place: &str) -> Error {
        let lead = |m: String| format!("{place}: {m}");
        match self {
            Error::Input(m) => Error::Input(lead(m)),
            Error::Donor(m) => Error::Donor(lead(m)),
            Error::Tokenizer(m) => Error::Tokenizer(lead(m)),
            Error::Download(m) => Error::Download(lead(m)),
            Error::Output(m) => Error::Output(lead(m)),
            Error::Interrupted(m) => Error::Interrupted(lead(m)),
            e @ Error::Candle(_) => e,
        }
    }
}

/// Folds a multi-line message (clap's usage errors span several lines) into one line.
pub fn one_line(text: &str) -> String {
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
        .collect();
    parts.join(" ").trim_end_matches('.').to_string()
}
