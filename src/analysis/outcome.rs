//! What a paired difference or a trend says, as enums: summary.json and the report spell them as
//! they always have (`positive`, `not distinguishable`, `grows`, `no trend`, …), and code
//! compares variants, not strings.

use serde::{Deserialize, Serialize};

/// The answer to one question: the sign of a paired difference, when the seeds tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    #[serde(rename = "positive")]
    Positive,
    #[serde(rename = "negative")]
    Negative,
    #[serde(rename = "not distinguishable")]
    NotDistinguishable,
    #[serde(rename = "one seed")]
    OneSeed,
    #[serde(rename = "no data")]
    NoData,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Positive => "positive",
            Outcome::Negative => "negative",
            Outcome::NotDistinguishable => "not distinguishable",
            Outcome::OneSeed => "one seed",
            Outcome::NoData => "no data",
        }
    }
}

/// How a question's difference moves across a sweep's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trend {
    #[serde(rename = "grows")]
    Grows,
    #[serde(rename = "shrinks")]
    Shrinks,
    #[serde(rename = "no trend")]
    NoTrend,
    #[serde(rename = "one seed")]
    OneSeed,
}

impl Trend {
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Grows => "grows",
            Trend::Shrinks => "shrinks",
            Trend::NoTrend => "no trend",
            Trend::OneSeed => "one seed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Trend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_trends_are_spelled_as_summary_json_always_had_them() {
        for o in [Outcome::Positive, Outcome::Negative, Outcome::NotDistinguishable, Outcome::OneSeed, Outcome::NoData]
        {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.as_str()));
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
        }
        for t in [Trend::Grows, Trend::Shrinks, Trend::NoTrend, Trend::OneSeed] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<Trend>(&json).unwrap(), t);
        }
    }
}
