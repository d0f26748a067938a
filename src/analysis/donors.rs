//! Donors as paired questions. Groups that read one token stream (the same corpus through the
//! same tokenizer, at the same swept values) share every token id, window, split and batch per
//! seed, so their runs pair by seed across groups as a group's configurations do within it.
//! For each grafting configuration both ran, the question is whether one group's graft helps
//! more than the other's: the difference of their graft benefits, (R − L) under X minus (R − L)
//! under Y, where R is the configuration L is measured against (A for C and H, D for B and G).
//! Holm's adjustment runs over these questions together with every group's own.

use serde::{Deserialize, Serialize};

use crate::analysis::outcome::Outcome;
use crate::analysis::stats::{holm, paired_final, paired_final_bpb, paired_p, seeds_for_power, Estimate, ALPHA};
use crate::analysis::summary::Summary;
use crate::config::Letter;

/// The grafting configurations a donor question asks about, each with the configuration its
/// benefit is measured against: the question table's graft-benefit rows (A − C, D − B, A − H,
/// D − G), in its order.
pub fn grafts() -> Vec<(Letter, Letter)> {
    crate::analysis::questions::QUESTIONS
        .iter()
        .filter(|q| q.key.starts_with("graft_benefit_"))
        .map(|q| (q.subtrahend, q.minuend))
        .collect()
}

/// One donor question: does `first`'s graft in `config` help more than `second`'s?
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DonorQuestion {
    /// `graft_benefit_C`, …: stable for scripts, with the two groups beside it.
    pub key: String,
    pub config: Letter,
    pub reference: Letter,
    pub first: String,
    pub second: String,
    /// Per seed, (R − L) under `first` minus (R − L) under `second`, in nats per token.
    pub per_seed: Vec<(u64, f64)>,
    pub difference: Option<Estimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference_bpb: Option<Estimate>,
    pub p_value: Option<f64>,
    pub p_adjusted: Option<f64>,
    pub outcome: Outcome,
    pub verdict: String,
}

/// What the overview asks across groups, or why it asks nothing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DonorQuestions {
    pub questions: Vec<DonorQuestion>,
    /// Why no question is asked (groups on different token streams, one group per stream, no
    /// grafting configuration), when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_asked: Option<String>,
    /// How the verdicts control the error rate.
    pub correction: String,
}

/// What makes two groups' token streams one: the corpus and tokenizer by content, the
/// protocol (windows, split, batches, seeds) and the swept values. Groups that differ only in
/// their donor or its vocabulary mapping match.
fn stream_key(s: &Summary) -> Option<(String, String, String)> {
    let f = s.inputs.fingerprints.as_ref()?;
    let point = format!(
        "{} {} {} {} {}",
        s.inputs.split, s.inputs.train_windows, s.inputs.test_windows, s.inputs.train_tokens, s.inputs.steps_per_run
    );
    Some((f.corpus.clone(), f.tokenizer.clone(), point))
}

/// The donor questions of an overview's groups (in their order), Holm-adjusted together with
/// every group's own questions.
pub fn analyse(done: &[(String, Summary)]) -> DonorQuestions {
    let mut asked = Vec::new();
    for (i, (x, sx)) in done.iter().enumerate() {
        for (y, sy) in &done[i + 1..] {
            if stream_key(sx).is_none() || stream_key(sx) != stream_key(sy) {
                continue;
            }
            for (l, r) in grafts() {
                let ran = |s: &Summary, k: Letter| s.runs.iter().any(|run| run.config == k);
                if !(ran(sx, l) && ran(sx, r) && ran(sy, l) && ran(sy, r)) {
                    continue;
                }
                asked.push(question(x, sx, y, sy, l, r));
            }
        }
    }
    if asked.is_empty() {
        let why = match done.iter().filter_map(|(_, s)| stream_key(s)).collect::<std::collections::BTreeSet<_>>().len()
        {
            n if n == done.len() && n > 1 => {
                "every group reads its own token stream (its own tokenizer or corpus), so their runs do not pair by \
                 seed; give the donors one --tokenizer to compare them"
            }
            _ => "no two groups on one token stream both ran a grafting configuration and its reference",
        };
        return DonorQuestions { questions: asked, not_asked: Some(why.into()), correction: String::new() };
    }
    // The family: these questions and every group's own, all with an interval.
    let own: Vec<f64> =
        done.iter().flat_map(|(_, s)| s.analysis.comparisons.iter().filter_map(|c| c.p_value)).collect();
    let mine: Vec<f64> = asked.iter().filter_map(|q| q.p_value).collect();
    let adjusted = holm(&[mine.clone(), own.clone()].concat());
    let family = mine.len() + own.len();
    let mut next = adjusted.into_iter();
    for q in asked.iter_mut() {
        if q.p_value.is_some() {
            q.p_adjusted = next.next();
        }
        q.outcome = crate::analysis::stats::adjusted_outcome(q.difference, q.p_adjusted);
        q.verdict = verdict(q, family);
    }
    let correction = match family {
        0 => "no question has an interval here (one seed), so there is nothing to correct".to_string(),
        n => format!(
            "Holm's step-down over the {n} questions of this overview with an interval ({} across groups, {} within \
             them): a verdict needs its adjusted p-value below {ALPHA}",
            mine.len(),
            own.len()
        ),
    };
    DonorQuestions { questions: asked, not_asked: None, correction }
}

/// The paired differences of one question, before the adjustment.
fn question(x: &str, sx: &Summary, y: &str, sy: &Summary, l: Letter, r: Letter) -> DonorQuestion {
    let seeds: Vec<u64> = {
        let mut s: Vec<u64> = sx.runs.iter().map(|run| run.seed).collect();
        s.sort();
        s.dedup();
        s
    };
    let across = |fx: Vec<(u64, f64)>, fy: Vec<(u64, f64)>| -> Vec<(u64, f64)> {
        fx.into_iter().filter_map(|(s, a)| fy.iter().find(|(t, _)| *t == s).map(|(_, b)| (s, a - b))).collect()
    };
    let per_seed = across(paired_final(&sx.runs, r, l, &seeds), paired_final(&sy.runs, r, l, &seeds));
    let bpb = across(paired_final_bpb(&sx.runs, r, l, &seeds), paired_final_bpb(&sy.runs, r, l, &seeds));
    let difference = Estimate::of(&per_seed.iter().map(|d| d.1).collect::<Vec<_>>());
    let difference_bpb =
        Estimate::of(&bpb.iter().map(|d| d.1).collect::<Vec<_>>()).filter(|_| bpb.len() == per_seed.len());
    DonorQuestion {
        key: format!("graft_benefit_{l}"),
        config: l,
        reference: r,
        first: x.to_string(),
        second: y.to_string(),
        per_seed,
        difference,
        difference_bpb,
        p_value: difference.as_ref().and_then(paired_p),
        p_adjusted: None,
        outcome: Outcome::NoData,
        verdict: String::new(),
    }
}

/// The sentence a question's line gives.
fn verdict(q: &DonorQuestion, family: usize) -> String {
    let (l, r, x, y) = (q.config, q.reference, &q.first, &q.second);
    let what = format!("({r} − {l}) under {x} − ({r} − {l}) under {y}");
    let Some(e) = q.difference else { return format!("{what}: no seed finished all four runs") };
    let Some(_) = e.ci95 else {
        return format!("{what} = {:+.4} from one seed: no interval, so no verdict; run --seeds 3 or more", e.mean);
    };
    let ps = match (q.p_value, q.p_adjusted) {
        (Some(p), Some(pa)) => {
            format!("p {}, Holm-adjusted p {}", crate::analysis::stats::show_p(p), crate::analysis::stats::show_p(pa))
        }
        _ => String::new(),
    };
    let interval = format!("{:+.4} (95 % CI {:+.4} to {:+.4}, {} seeds; {ps})", e.mean, e.low(), e.high(), e.n);
    match q.outcome {
        Outcome::Positive => format!("{x}'s graft helped more than {y}'s ({l}): {what} = {interval}"),
        Outcome::Negative => format!("{y}'s graft helped more than {x}'s ({l}): {what} = {interval}"),
        _ => {
            let power = seeds_for_power(e.mean, e.sd, ALPHA / family.max(1) as f64, 0.8)
                .map_or(String::new(), |n| format!("; about {n} seeds would detect {:+.4} with 80 % power", e.mean));
            format!(
                "{x} and {y} not distinguishable ({l}): {what} = {interval}; the seeds rule out differences beyond \
                 ±{:.4}{power}",
                e.low().abs().max(e.high().abs())
            )
        }
    }
}
