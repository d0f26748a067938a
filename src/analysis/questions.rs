//! The questions a report asks, one row each: the key scripts read, the two configurations whose
//! paired difference answers it, what a positive and a negative difference mean, the name a
//! sweep follows it by, and the lecture's claims its trend tests. Adding a question is a row.

use crate::analysis::outcome::Trend;
use crate::config::Letter;

/// One question the report asks: the paired difference `minuend − subtrahend` of final test
/// loss, what a positive and a negative difference mean, and, for a question a sweep follows
/// across sizes, its name there. A question is asked when both configurations ran; adding one
/// is a row here.
pub struct Question {
    pub key: &'static str,
    pub minuend: Letter,
    pub subtrahend: Letter,
    pub positive: &'static str,
    pub negative: &'static str,
    pub followed_as: Option<&'static str>,
    /// The lecture's claims a sweep tests on this question's trend.
    pub claims: &'static [Claim],
}

/// One of the lecture's claims as a sweep tests it: the kind of size it speaks of (an axis's
/// meaning), the direction it expects the question's difference to go, and its words.
pub struct Claim {
    pub lecture: Lecture,
    pub size: &'static str,
    pub expects: Trend,
    pub words: &'static str,
}

/// The lecture's closing advice, in its order: the sweep's claims are reported in this order,
/// then in the order of the questions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lecture {
    /// "Freeze when the data is small and similar and the model large."
    Freezing,
    /// "A pretrained embedding matters most when data is scarce."
    Grafting,
}

const fn ask(
    key: &'static str,
    (minuend, subtrahend): (Letter, Letter),
    positive: &'static str,
    negative: &'static str,
    followed_as: Option<&'static str>,
    claims: &'static [Claim],
) -> Question {
    Question { key, minuend, subtrahend, positive, negative, followed_as, claims }
}

const fn claim(lecture: Lecture, size: &'static str, expects: Trend, words: &'static str) -> Claim {
    Claim { lecture, size, expects, words }
}

pub const QUESTIONS: &[Question] = &[
    ask(
        "freeze_cost",
        (Letter::B, Letter::C),
        "freezing the grafted embedding hurt",
        "freezing the grafted embedding helped",
        Some("the freeze cost"),
        &[
            claim(
                Lecture::Freezing,
                "data size",
                Trend::Grows,
                "freezing works when the new data is small and hurts \
                when it is large: the freeze cost (B − C) should grow with data size",
            ),
            claim(
                Lecture::Freezing,
                "model size",
                Trend::Shrinks,
                "freezing works when the model is large: the \
                freeze cost (B − C) should shrink with model size",
            ),
        ],
    ),
    ask(
        "graft_benefit_trainable",
        (Letter::A, Letter::C),
        "the graft helped (trainable)",
        "the graft hurt (trainable)",
        Some("the graft benefit (trainable)"),
        &[claim(
            Lecture::Grafting,
            "data size",
            Trend::Shrinks,
            "a pretrained embedding matters most when the data is \
            small: the graft benefit (A − C) should shrink with data size",
        )],
    ),
    ask(
        "graft_benefit_frozen",
        (Letter::D, Letter::B),
        "the graft helped (frozen)",
        "the graft hurt (frozen)",
        Some("the graft benefit (frozen)"),
        &[],
    ),
    ask(
        "graft_benefit_matched_trainable",
        (Letter::A, Letter::H),
        "the graft at the random init's scale helped (trainable)",
        "the graft at the random init's scale hurt (trainable)",
        Some("the graft benefit at matched scale (trainable)"),
        &[claim(
            Lecture::Grafting,
            "data size",
            Trend::Shrinks,
            "the same at the random init's scale: the graft \
            benefit (A − H) should shrink with data size",
        )],
    ),
    ask(
        "graft_benefit_matched_frozen",
        (Letter::D, Letter::G),
        "the graft at the random init's scale helped (frozen)",
        "the graft at the random init's scale hurt (frozen)",
        Some("the graft benefit at matched scale (frozen)"),
        &[],
    ),
    ask(
        "freeze_cost_matched",
        (Letter::G, Letter::H),
        "freezing the donor at the random init's scale hurt",
        "freezing the donor at the random init's scale helped",
        Some("the freeze cost at matched scale"),
        &[
            claim(
                Lecture::Freezing,
                "data size",
                Trend::Grows,
                "the same with the donor at the random init's scale: \
                the freeze cost (G − H) should grow with data size",
            ),
            claim(
                Lecture::Freezing,
                "model size",
                Trend::Shrinks,
                "the same with the donor at the random init's \
                scale: the freeze cost (G − H) should shrink with model size",
            ),
        ],
    ),
    ask(
        "content_benefit_trainable",
        (Letter::E, Letter::C),
        "the donor's rows in their own places helped (trainable): content, not only the values' distribution",
        "the permuted donor did better (trainable): the values' distribution, not their meaning, helped",
        None,
        &[],
    ),
    ask(
        "content_benefit_frozen",
        (Letter::F, Letter::B),
        "the donor's rows in their own places helped (frozen): content, not only the values' distribution",
        "the permuted donor did better (frozen): the values' distribution, not their meaning, helped",
        None,
        &[],
    ),
    ask(
        "unit_scale_effect_frozen",
        (Letter::B, Letter::G),
        "rescaling the donor to std 1 helped (frozen)",
        "rescaling the donor to std 1 hurt (frozen)",
        None,
        &[],
    ),
    ask(
        "unit_scale_effect_trainable",
        (Letter::C, Letter::H),
        "rescaling the donor to std 1 helped (trainable)",
        "rescaling the donor to std 1 hurt (trainable)",
        None,
        &[],
    ),
];
