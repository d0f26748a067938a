//! The overview of an experiment over several donors, corpora or swept values: one line per
//! group with a link to its own report, the domain table and, for a sweep, its claims and plots.

use std::path::Path;

use crate::analysis::summary::Summary;
use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::report::markdown::md_cell;
use crate::util::write_atomic;

/// The domain, as far as it is measured without the donor's pretraining data: how finely the
/// donor's tokenizer cuts the corpus, how much of the donor's vocabulary it uses, and how much
/// of the test text training never showed.
fn domain_table(done: &[(String, Summary)]) -> String {
    let mut md = String::from(
        "\n## Domain\n\n| group | tokens per word | donor rows the corpus uses | training tokens | donor rows the \
         training part uses | test targets unseen in training |\n|---|---|---|---|---|---|\n",
    );
    for (name, s) in done {
        let name = if name.is_empty() { "this run".into() } else { md_cell(name) };
        md.push_str(&format!("| {name} |{}\n", domain_cells(&s.inputs)));
    }
    md.push_str(
        "\nTokens per word: the donor tokenizer's tokens over white-space-separated words. Rows used: \
                 distinct token ids over the donor's rows. Unseen: test-window targets whose token no training window \
                 holds (only the donor's row can have taught them).\n",
    );
    md
}

fn domain_cells(i: &crate::train::results::InputSummary) -> String {
    let share = |n: usize| format!("{:.1} % ({n})", 100.0 * n as f64 / i.vocab.max(1) as f64);
    format!(
        " {:.3} | {} | {} | {} | {:.2} % |",
        i.tokens_per_word(),
        share(i.distinct_tokens),
        i.train_tokens,
        share(i.distinct_train_tokens),
        100.0 * i.test_targets_unseen_in_training
    )
}

/// Each question's verdict per group, side by side: the paired difference in nats, or in bits
/// per byte where the groups read different token streams.
fn verdicts_table(done: &[(String, Summary)], in_bpb: bool) -> String {
    let mut keys: Vec<(String, String)> = Vec::new();
    for (_, s) in done {
        for c in &s.analysis.comparisons {
            let label = format!("{} ({} − {})", c.key, c.minuend, c.subtrahend);
            if !keys.iter().any(|(k, _)| k == &c.key) {
                keys.push((c.key.clone(), label));
            }
        }
    }
    let mut md = String::from("\n## Verdicts side by side\n\n| question |");
    done.iter().for_each(|(name, _)| md.push_str(&format!(" {} |", md_cell(name))));
    md.push_str("\n|---|");
    done.iter().for_each(|_| md.push_str("---|"));
    md.push('\n');
    for (key, label) in &keys {
        md.push_str(&format!("| {label} |"));
        for (_, s) in done {
            let cell = s.analysis.comparisons.iter().find(|c| &c.key == key).map_or("–".to_string(), |c| {
                let d = match in_bpb {
                    true => c.difference_bpb,
                    false => c.difference,
                };
                format!("{}: {}", d.map_or("–".to_string(), |e| e.show()), c.finding)
            });
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    md.push_str(&format!(
        "\nEach cell: the paired difference (mean ± unadjusted 95 % CI) and the verdict after Holm's correction over \
         that group's questions; see each group's report for the full sentence.{}\n",
        match in_bpb {
            true =>
                " The groups read different token streams (their tokenizers or corpora differ), so the differences here are \
                     in bits per byte, which do not depend on how a text is cut into tokens.",
            false => "",
        }
    ));
    md
}

/// Each configuration's final test loss per group, in nats per token and, where measured, in
/// bits per byte (the column that compares groups on different token streams).
fn configs_table(done: &[(String, Summary)], in_bpb: bool) -> String {
    let mut letters: Vec<crate::config::Letter> =
        done.iter().flat_map(|(_, s)| s.analysis.configs.iter().map(|c| c.config)).collect();
    letters.sort();
    letters.dedup();
    let mut md = String::from("\n## Final test loss by group (mean ± 95 % CI over seeds)\n\n| config |");
    done.iter().for_each(|(name, _)| md.push_str(&format!(" {} |", md_cell(name))));
    md.push_str("\n|---|");
    done.iter().for_each(|_| md.push_str("---|"));
    md.push('\n');
    for l in letters {
        md.push_str(&format!("| {l} |"));
        for (_, s) in done {
            let cell = s.analysis.configs.iter().find(|c| c.config == l).map_or("–".to_string(), |c| {
                let nats = c.final_test.map_or("–".to_string(), |e| e.show());
                match c.final_test_bpb {
                    Some(b) => format!("{nats} nats; {} BPB", b.show()),
                    None => nats,
                }
            });
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    md.push_str(match in_bpb {
        true => {
            "\nNats are per token of each group's own token stream and do not compare across these groups; bits per \
                 byte (BPB) do: the summed loss over ln 2 times the raw bytes the scored tokens own.\n"
        }
        false => "\nBPB: the summed loss over ln 2 times the raw bytes of the corpus the scored tokens own.\n",
    });
    md
}

/// The donor questions: for each grafting configuration two groups on one token stream ran,
/// whether one's graft helped more than the other's, or why nothing is asked.
fn donors_section(q: &crate::analysis::donors::DonorQuestions) -> String {
    let mut md = String::from("\n## Donors compared, paired by seed\n\n");
    if let Some(why) = &q.not_asked {
        md.push_str(&format!("Not asked: {why}.\n"));
        return md;
    }
    md.push_str(
        "Groups on one token stream share every token id, window, split and batch per seed, so a graft's benefit \
         pairs across them: each line is (reference − graft) under the first group minus the same under the second, \
         positive when the first group's graft helped more.\n\n",
    );
    for d in &q.questions {
        let bpb = d
            .difference_bpb
            .map_or(String::new(), |b| format!("; in bits per byte {}", crate::report::markdown::show_difference(&b)));
        md.push_str(&format!("- {}{bpb}\n", d.verdict));
    }
    md.push_str(&format!("\nError control: {}.\n\n![donor questions](donor-questions.png)\n", q.correction));
    md
}

/// Text sampled from every trained model.
/// The top-level report of an experiment with several groups (donors, corpora, swept
/// values): the sweep's answers against size (when a setting is swept), each group's inputs
/// and domain, each question's verdict per group side by side, and links to each group's own
/// report.
pub fn write_overview(out: &Path, cfg: &ExperimentConfig, done: &[(String, Summary)]) -> Result<()> {
    let sweep = (!cfg.sweeps().is_empty())
        .then(|| crate::analysis::sweep::analyse(cfg, &crate::config::grid::groups(cfg), done));
    let mut md = String::from(match &sweep {
        Some(_) => {
            "# embgraft report: a sweep

"
        }
        None => {
            "# embgraft report: the same experiment with several donors or corpora

"
        }
    });
    let swept: Vec<String> =
        cfg.sweeps().iter().map(|(a, v)| format!("{} {}", a.flag(), crate::config::Sweep::show_all(v))).collect();
    md.push_str(&format!(
        "Donors {}; corpora {}{}; configs {}, {} seeds each. Each group (donor, corpus{}) has its own folder and \
         report; \
         a donor with its own tokenizer reads the corpus its own way (tokens below). Differences are of final test \
         loss, paired by seed; positive means the first configuration's loss is higher.\n",
        md_cell(&cfg.data.donor.join(", ")),
        if cfg.data.corpora.is_empty() {
            "The Time Machine".to_string()
        } else {
            md_cell(&cfg.data.corpora.join(", "))
        },
        if swept.is_empty() { String::new() } else { format!("; swept {}", swept.join(", ")) },
        cfg.graft.configs.0.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","),
        cfg.run.seeds,
        if swept.is_empty() { "" } else { ", swept values" },
    ));
    if let Some(a) = &sweep {
        crate::report::sweep::write_plots(out, a)?;
        crate::report::tables::write_trends(out, a)?;
        md.push_str(&crate::report::sweep::markdown(a, cfg));
    }
    md.push_str(
        "\n## Groups\n\n| group | donor | corpus | tokenizer | tokens | test text seen in training | bigram test loss \
         | report |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (name, s) in done {
        let i = &s.inputs;
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} % | {:.4} | [{}/report.md](<{name}/report.md>) |\n",
            md_cell(name),
            md_cell(&i.donor),
            md_cell(&i.corpus),
            md_cell(&i.tokenizer),
            i.corpus_tokens,
            100.0 * i.test_positions_seen_in_training,
            i.bigram.test_loss,
            md_cell(name),
        ));
    }
    md.push_str(&domain_table(done));
    // A token stream is a corpus read by a tokenizer: where groups read more than one, nats per
    // token do not compare across them and bits per byte do.
    let streams: std::collections::BTreeSet<(String, String)> = done
        .iter()
        .map(|(_, s)| match &s.inputs.fingerprints {
            Some(f) => (f.corpus.clone(), f.tokenizer.clone()),
            None => (s.inputs.corpus.clone(), s.inputs.tokenizer.clone()),
        })
        .collect();
    let in_bpb = streams.len() > 1 && done.iter().all(|(_, s)| s.inputs.text_bytes.is_some());
    md.push_str(&configs_table(done, in_bpb));
    md.push_str(&verdicts_table(done, in_bpb));
    let donors = crate::analysis::donors::analyse(done);
    md.push_str(&donors_section(&donors));
    if !donors.questions.is_empty() {
        crate::report::plots::write_donor_plots(out, &donors.questions)?;
    }
    let pairs: Vec<serde_json::Value> = done
        .iter()
        .map(|(name, s)| serde_json::json!({"name": name, "inputs": &s.inputs, "analysis": &s.analysis}))
        .collect();
    let json = serde_json::json!({
        "embgraft_version": env!("CARGO_PKG_VERSION"),
        "pairs": pairs,
        "sweep": sweep,
        "donor_questions": donors,
    });
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&json).map_err(|e| Error::Output(e.to_string()))?.as_bytes(),
    )?;
    write_atomic(&out.join("report.md"), md.as_bytes())
}
