//! report.md, section by section: the answers, the configurations, the runs, the drift, the
//! controls, the details, the samples and the setup.

use crate::analysis::summary::Summary;
use crate::config::ExperimentConfig;
use crate::report::plots::DriftTable;

fn fmt_loss(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.4}"))
}

fn millions(n: usize) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

/// Appends one line to a section.
/// Text from outside (a path, a group's name) made safe for one cell of a Markdown table: a
/// `|` would end the cell and a line break the table, so the first is escaped and the second
/// shown as `⏎`.
pub fn md_cell(text: &str) -> String {
    text.replace('\\', "\\\\").replace('|', "\\|").replace("\r\n", "⏎").replace(['\n', '\r'], "⏎")
}

fn push_line(md: &mut String, line: String) {
    md.push_str(&line);
    md.push('\n');
}

/// report.md: one section after another, each written by its own function.
pub(crate) fn markdown(cfg: &ExperimentConfig, s: &Summary, drift: &DriftTable) -> String {
    [
        answers_section(cfg, s),
        configs_section(cfg, s),
        vocab_map_section(s),
        runs_section(cfg, s),
        drift_section(drift),
        controls_section(cfg, s),
        details_section(s),
        samples_section(s),
        setup_section(cfg, s),
    ]
    .concat()
}

/// The title, the curves and the answers, as verdicts on paired differences.
fn answers_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let i = &s.inputs;
    let row = cfg.model.kind.row();
    let title = if row.sized { format!("{} — {}", row.title, i.model) } else { row.title.to_string() };
    push_line(&mut md, format!("# embgraft report: {title}\n"));
    push_line(&mut md, "![loss curves](loss-curves.png)\n".into());
    push_line(&mut md, "## Answers\n".into());
    push_line(
        &mut md,
        "Differences are of final test loss, paired by seed (same split, batches and initialisation); \
         positive means the first configuration's loss is higher.\n"
            .into(),
    );
    for line in answers(s) {
        push_line(&mut md, format!("- {line}"));
    }
    push_line(&mut md, String::new());
    if !s.analysis.comparisons.is_empty() {
        push_line(
            &mut md,
            format!(
                "Error control: {}. Each line shows the unadjusted 95 % interval beside the adjusted verdict.\n",
                s.analysis.correction
            ),
        );
    }
    push_line(
        &mut md,
        "For a paper: [tables/questions.tex](tables/questions.tex) and [tables/configs.tex](tables/configs.tex) \
         (booktabs `tabular`s to `\\input`), with the same numbers as CSV beside them.\n"
            .into(),
    );
    md
}

/// `+0.0123 (95 % CI +0.0045 to +0.0201)`, or the bare signed mean without an interval.
pub fn show_difference(e: &crate::analysis::stats::Estimate) -> String {
    match e.ci95 {
        Some(_) => format!("{:+.4} (95 % CI {:+.4} to {:+.4})", e.mean, e.low(), e.high()),
        None => format!("{:+.4}", e.mean),
    }
}

/// Each configuration's final losses over seeds, against the count-based references.
fn configs_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let i = &s.inputs;
    push_line(&mut md, "## Configurations (mean ± 95 % CI over seeds)\n".into());
    let refs = &i.bigram;
    let bpb = s.analysis.configs.iter().any(|c| c.final_test_bpb.is_some());
    push_line(
        &mut md,
        format!(
            "| config | copied? | frozen? | seeds | final train loss | final train loss, evaluated as test | final \
             test loss | best test loss (mean step) | train-eval − floor | test − bigram |{}",
            if bpb { " final test BPB | best test BPB |" } else { "" }
        ),
    );
    push_line(&mut md, format!("|---|---|---|---|---|---|---|---|---|---|{}", if bpb { "---|---|" } else { "" }));
    for c in &s.analysis.configs {
        let show = |e: &Option<crate::analysis::stats::Estimate>| e.map_or("–".to_string(), |e| e.show());
        let above = |e: &Option<crate::analysis::stats::Estimate>, floor: f64| {
            e.map_or("–".to_string(), |e| format!("{:+.4}", e.mean - floor))
        };
        let seeds = if c.diverged > 0 { format!("{} ({} diverged)", c.runs, c.diverged) } else { c.runs.to_string() };
        push_line(
            &mut md,
            format!(
                "| {} {}{} | {} | {} | {seeds} | {} | {} | {} | {} | {} | {} |",
                c.config,
                cfg.describe(c.config),
                if c.still_improving.is_some() { " (still improving)" } else { "" },
                if cfg.grafts(c.config) { "yes" } else { "no" },
                if cfg.freezes(c.config) { "yes" } else { "no" },
                show(&c.final_train),
                show(&c.final_train_eval),
                show(&c.final_test),
                match (&c.best_test, c.best_step) {
                    (Some(b), Some(step)) => format!("{} ({step:.0})", b.show()),
                    _ => "–".to_string(),
                },
                above(&c.final_train_eval, refs.train_entropy),
                above(&c.final_test, refs.test_loss)
            ) + &if bpb {
                format!(" {} | {} |", show(&c.final_test_bpb), show(&c.best_test_bpb))
            } else {
                String::new()
            },
        );
    }
    push_line(&mut md, String::new());
    let floor = cfg.model.kind.row().floor;
    push_line(
        &mut md,
        format!(
            "References: {}; an add-k bigram table (k = {:.2e}, chosen on training windows only) scores {:.4} on the \
             test split (*bigram*).\n",
            floor.replace("{:.4}", &format!("{:.4}", refs.train_entropy)),
            refs.k,
            refs.test_loss
        ),
    );
    if let Some(b) = &i.text_bytes {
        push_line(
            &mut md,
            format!(
                "In bits per byte (BPB: the loss summed over the scored positions, over ln 2 times the {} raw bytes \
                 of the corpus their target tokens own, so tokenizers compare): floor {:.4}, bigram {:.4}; the \
                 test positions' targets own {:.3} bytes each on average.\n",
                b.corpus_bytes,
                b.train_bpb(refs.train_entropy),
                b.test_bpb(refs.test_loss),
                b.test_bytes as f64 / b.test_positions.max(1) as f64
            ),
        );
    }
    md
}

/// How the donor's rows were mapped onto this tokenizer's vocabulary (empty on the donor's own
/// tokenizer): each class over the vocabulary and over the positions the experiment scores.
fn vocab_map_section(s: &Summary) -> String {
    let mut md = String::new();
    let Some(v) = &s.inputs.vocab_map else { return md };
    push_line(&mut md, "## The donor on this tokenizer's vocabulary\n".into());
    push_line(
        &mut md,
        format!(
            "The donor's rows follow its own tokenizer ({}); this experiment reads the corpus with {}, so each of \
             its tokens took donor rows (`--vocab-map {}`, `--vocab-fallback {}`): *exact*, the donor has that very \
             piece and its row is copied bit for bit; *pieces*, the mean of the rows of the pieces the donor's \
             tokenizer cuts its text into; *fallback*, {} (white space, part of a character, special tokens, or text \
             the donor cannot spell without its unknown token{}).\n",
            v.donor_tokenizer,
            s.inputs.tokenizer,
            v.map,
            v.fallback,
            match v.fallback.as_str() {
                "random" => "a seeded draw from each donor column's mean and standard deviation",
                _ => "the mean of every donor row",
            },
            if v.map == "exact" { "; with `exact`, every token without an exact match" } else { "" }
        ),
    );
    push_line(&mut md, "| class | vocabulary tokens | training target positions | test target positions | examples (most frequent in the corpus) |".into());
    push_line(&mut md, "|---|---|---|---|---|".into());
    let share = |c: &[u64; 3], k: usize| format!("{:.1} %", 100.0 * c[k] as f64 / c.iter().sum::<u64>().max(1) as f64);
    let vocab: u64 = v.tokens.iter().map(|&n| n as u64).sum();
    for (k, name) in ["exact", "pieces", "fallback"].iter().enumerate() {
        let examples: Vec<String> =
            v.examples[k].iter().map(|e| format!("`{}`", e.replace('`', "'").replace('|', "\\|"))).collect();
        push_line(
            &mut md,
            format!(
                "| {name} | {} ({:.1} %) | {} | {} | {} |",
                v.tokens[k],
                100.0 * v.tokens[k] as f64 / vocab.max(1) as f64,
                share(&v.train_positions, k),
                share(&v.test_positions, k),
                if examples.is_empty() { "–".to_string() } else { examples.join(", ") }
            ),
        );
    }
    push_line(
        &mut md,
        format!(
            "\nProved before training, by code apart from the mapping's: {} exact rows bit for bit the donor's, {} \
             pieces rows each the mean of its pieces' rows (summed in f64, rounded once).\n",
            v.proved[0], v.proved[1]
        ),
    );
    md
}

/// One row per run: checks, steps, losses, time; then what the curves mean.
fn runs_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let i = &s.inputs;
    push_line(&mut md, "## Runs\n".into());
    push_line(
        &mut md,
        "| config | copied? | frozen? | trainable params | steps | final train loss | final test loss | \
                   copy check | frozen check | wall time |"
            .into(),
    );
    push_line(&mut md, "|---|---|---|---|---|---|---|---|---|---|".into());
    for r in &s.runs {
        let p = r.final_point();
        let copy = r.copy_check.as_ref().map_or("–".into(), |c| {
            let tensors =
                if r.copy_checks.len() > 1 { format!(" in {} tensors", r.copy_checks.len()) } else { String::new() };
            if c.passed() {
                format!("pass (max Δ {}, {} elements{tensors})", c.max_abs_delta, c.elements)
            } else {
                format!("**FAIL** (max Δ {:e}, {} differ)", c.max_abs_delta, c.differing_bits)
            }
        });
        let frozen = r.frozen_check.as_ref().map_or("–".into(), |f| {
            if f.passed() && !r.thaws.is_empty() {
                let at: Vec<String> = r.thaws.iter().map(|t| t.step.to_string()).collect();
                format!("pass (bit-identical until thawed at step {})", at.join(", "))
            } else if f.passed() {
                "pass (bit-identical)".to_string()
            } else {
                format!("**FAIL** ({} elements changed)", f.changed_elements)
            }
        });
        let steps = match &r.diverged {
            Some(d) => format!("{} (diverged)", d.step),
            None if r.interrupted => format!("{} (interrupted)", r.steps),
            None => r.steps.to_string(),
        };
        push_line(
            &mut md,
            format!(
                "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
                r.config,
                if cfg.run.seeds > 1 { format!(" seed {}", r.seed) } else { String::new() },
                if r.copied { "yes" } else { "no" },
                if r.frozen { "yes" } else { "no" },
                millions(r.trainable_params),
                steps,
                fmt_loss(p.map(|p| p.train_loss)),
                fmt_loss(p.map(|p| p.test_loss)),
                copy,
                frozen,
                r.wall_seconds
            ),
        );
    }
    push_line(&mut md, String::new());
    push_line(
        &mut md,
        format!(
        "Curves: *train* (solid) is the mean of the batch losses since the previous point — the course's definition, \
         measured while the model improves, so it can sit above test; \
         *test* (dashed) is the mean over all {} test positions after the step, without gradients; *train, evaluated \
         as test* (dotted) is a fixed set of {} training windows scored exactly like the test set, the like-for-like \
         comparison. \
         The uniform guess scores ln {} = {:.3}.\n",
        i.test_positions, i.test_windows, i.vocab, (i.vocab as f64).ln()
    ),
    );
    md
}

/// How far trainable grafted embeddings moved, by token frequency (empty when none did).
fn drift_section(drift: &DriftTable) -> String {
    let mut md = String::new();
    if !drift.is_empty() {
        push_line(&mut md, "## Embedding drift (trainable grafted embeddings)\n".into());
        push_line(&mut md, "![drift](drift.png)\n".into());
        push_line(
            &mut md,
            "Rows grouped by how often the token is an input in the training windows; means over rows, then \
                       over seeds.\n"
                .into(),
        );
        push_line(
            &mut md,
            "| config | tokens seen | rows | mean ‖final − grafted‖ | mean cosine(final, grafted) | mean \
                       ‖final‖ / ‖grafted‖ |"
                .into(),
        );
        push_line(&mut md, "|---|---|---|---|---|---|".into());
        for (l, (rows, _, _)) in drift {
            for (name, n, l2, cos, ratio) in rows {
                push_line(&mut md, format!("| {l} | {name} | {n} | {l2:.4} | {cos:.4} | {ratio:.6} |"));
            }
        }
        for (l, (_, expected, worst)) in drift {
            push_line(
                &mut md,
                format!(
                    "\n{l}: rows never seen in training get no gradient, yet AdamW's decoupled weight decay shrinks \
                     them to (1 − lr·wd)^steps = {expected:.6} of their grafted length; measured: within \
                     {worst:.1e} of that for every such row."
                ),
            );
        }
        push_line(&mut md, String::new());
    }
    md
}

/// The matrices the scale controls grafted (Model 1).
fn controls_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let transformed: Vec<String> = s
        .runs
        .iter()
        .filter_map(|r| {
            r.graft.as_ref().filter(|g| g.contains(',')).map(|g| format!("- {} seed {}: {g}", r.config, r.seed))
        })
        .collect();
    if !transformed.is_empty() && cfg.model.kind.row().controls {
        push_line(&mut md, "## Grafted matrices of the controls\n".into());
        transformed.into_iter().for_each(|line| push_line(&mut md, line));
        push_line(&mut md, String::new());
    }
    md
}

/// Per configuration (first seed): notes, thaws and each grafted tensor's check.
fn details_section(s: &Summary) -> String {
    let mut md = String::new();
    // Per config (first seed): notes, thaws and each grafted tensor's check.
    let mut seen = Vec::new();
    let mut details = Vec::new();
    for r in &s.runs {
        if seen.contains(&r.config) {
            continue;
        }
        seen.push(r.config);
        for n in &r.notes {
            details.push(format!("- {}: {n}", r.config));
        }
        for t in &r.thaws {
            details.push(format!(
                "- {}: before step {} (epoch {}) thawed {} (AdamW moments start at zero)",
                r.config,
                t.step + 1,
                t.epoch,
                crate::model::params::summarise_names(&t.params)
            ));
        }
        if r.copy_checks.len() > 1 {
            for c in &r.copy_checks {
                let verdict =
                    if c.passed() { "pass".to_string() } else { format!("**FAIL** ({} differ)", c.differing_bits) };
                details.push(format!(
                    "- {}: copy check `{}`: {verdict}, {} elements, max Δ {}",
                    r.config, c.tensor, c.elements, c.max_abs_delta
                ));
            }
        }
    }
    if !details.is_empty() {
        push_line(&mut md, "## What was grafted, frozen and thawed\n".into());
        details.into_iter().for_each(|line| push_line(&mut md, line));
        push_line(&mut md, String::new());
    }
    md
}

fn samples_section(s: &Summary) -> String {
    let mut md = String::new();
    push_line(&mut md, "## Sampled text (prompt \"The\", two sentences at most)\n".into());
    for r in &s.runs {
        push_line(&mut md, format!("- **{}** (seed {}): {}", r.config, r.seed, r.sample.replace('|', "\\|")));
    }
    push_line(&mut md, String::new());
    md
}

/// Which curve points scored a sample of windows (`--eval-windows`) and which scored all.
fn curve_points(s: &Summary, test_windows: usize) -> String {
    let points = || s.runs.iter().flat_map(|r| &r.points);
    let sampled: Vec<usize> = points().filter_map(|p| p.eval_windows).collect();
    match sampled.iter().max() {
        None => "every point scores every test and train-eval window".into(),
        Some(n) => format!(
            "{} of {} points, all before their run's last, score a fixed sample of {n} test and {n} train-eval \
             windows per seed (--eval-windows), the same windows for every configuration; each run's last point, \
             which the tables and answers use, scores all {test_windows} test windows (the best test loss is the \
             lowest point, so it may be a sampled one)",
            sampled.len(),
            points().count()
        ),
    }
}

/// What was run, in a table.
fn setup_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let i = &s.inputs;
    push_line(&mut md, "## Setup\n".into());
    let split_note = match cfg.protocol.split {
        crate::data::corpus::Split::Windows => {
            "random split of the overlapping windows, as in the course: test \
                                                windows share text with training windows, so test loss is optimistic"
        }
        crate::data::corpus::Split::Contiguous => {
            "the first part of the text trains and the last part tests; no \
                                                   window crosses the cut"
        }
    };
    let rows = [
        ("corpus", format!("{} ({} tokens)", i.corpus, i.corpus_tokens)),
        ("tokenizer", i.tokenizer.clone()),
        ("donor", format!("{} → `{}` ({}, {} x {})", i.donor, i.donor_tensor, i.donor_dtype, i.vocab, i.dim)),
        ("unused donor rows", i.unused_donor_rows.to_string()),
        ("split", format!("{} — {split_note}", i.split)),
        (
            "test text seen in training",
            format!(
                "{:.1} % of test-window positions are covered by some training window at the same place in the text",
                100.0 * i.test_positions_seen_in_training
            ),
        ),
        (
            "windows",
            format!(
                "seq-len {}, stride {}: {} train, {} test",
                cfg.protocol.seq_len, cfg.protocol.stride, i.train_windows, i.test_windows
            ),
        ),
        (
            "training part",
            match i.train_tokens_limit {
                Some(n) => format!("its first {n} tokens (--train-tokens); the kept windows cover {}", i.train_tokens),
                None => format!("all of it: {} tokens", i.train_tokens),
            },
        ),
        (
            "domain",
            format!(
                "{:.3} tokens per word; the corpus uses {} donor rows, the training part {}; {:.2} % of test targets \
                 never occur in training",
                i.tokens_per_word(),
                i.distinct_tokens,
                i.distinct_train_tokens,
                100.0 * i.test_targets_unseen_in_training
            ),
        ),
        ("training", {
            let o = &cfg.optimizer;
            let length = match cfg.step_budget() {
                Some(m) => format!("{m} steps (--max-steps with --train-tokens: epochs repeat as needed)"),
                None => {
                    let cap = cfg.protocol.max_steps.map_or(String::new(), |m| format!(" capped at {m} steps"));
                    format!("{} epochs{cap}", cfg.protocol.epochs)
                }
            };
            format!(
                "batch {}, {length}, AdamW lr {} wd {} betas ({}, {}) eps {:e}",
                cfg.protocol.batch_size, o.lr, o.weight_decay, o.beta1, o.beta2, o.eps
            )
        }),
        ("curve points", curve_points(s, i.test_windows)),
        ("model", i.model.clone()),
        ("seeds", format!("{}..{}", cfg.run.seed, cfg.run.seed + cfg.run.seeds as u64 - 1)),
        ("device", cfg.run.device.clone()),
        ("matrix products", matmul_line(s)),
        ("wall time", format!("{:.1} s", s.wall_seconds)),
        (
            "start-up",
            format!(
                "inputs ready after {:.2} s (donor memory-mapped, corpus tokenized); first step done after {}",
                s.seconds_to_inputs,
                s.seconds_to_first_step.map_or("–".into(), |t| format!("{t:.2} s"))
            ),
        ),
    ];
    push_line(&mut md, "| | |\n|---|---|".into());
    for (k, v) in rows {
        push_line(&mut md, format!("| {k} | {} |", md_cell(&v)));
    }
    push_line(
        &mut md,
        "\nEverything needed to rerun is in `config.toml`; every curve point is in `metrics.csv`; all \
                   numbers are in `summary.json`."
            .into(),
    );
    md
}

/// What computed the runs' matrix products, and a warning where runs of this folder were made
/// with different ones (a resume on another machine, shards on other CPUs): their numbers agree
/// to rounding, not bit for bit.
fn matmul_line(s: &Summary) -> String {
    let mut seen: Vec<&str> = s.runs.iter().filter_map(|r| r.matmul.as_deref()).collect();
    seen.sort_unstable();
    seen.dedup();
    match seen.as_slice() {
        [] => "not recorded".into(),
        [one] => one.to_string(),
        many => format!(
            "**mixed**: {} (runs computed by different backends agree to rounding, not bit for bit; see each \
             run's `matmul` in summary.json)",
            many.join("; ")
        ),
    }
}

/// Plain-language answers: the paired comparisons' verdicts, then anything that went wrong.
fn answers(s: &Summary) -> Vec<String> {
    let mut out: Vec<String> = s
        .analysis
        .comparisons
        .iter()
        .map(|c| match &c.difference_bpb {
            Some(b) => format!("{}; in bits per byte {}", c.verdict, show_difference(b)),
            None => c.verdict.clone(),
        })
        .collect();
    if out.is_empty() {
        out.push("Run both configurations of a pair (B and C, A and C, D and B) to answer these questions.".into());
    }
    // Configurations still improving, grouped by reason (a quick run gives them all one).
    let mut early: Vec<(String, Vec<String>)> = Vec::new();
    for c in &s.analysis.configs {
        if let Some(why) = &c.still_improving {
            match early.iter_mut().find(|(w, _)| w == why) {
                Some((_, ls)) => ls.push(c.config.to_string()),
                None => early.push((why.clone(), vec![c.config.to_string()])),
            }
        }
    }
    if !early.is_empty() {
        let groups: Vec<String> = early.iter().map(|(why, ls)| format!("{} ({why})", ls.join(", "))).collect();
        out.push(format!(
            "**Still improving**: {}. These verdicts are about early training; a longer run may answer differently.",
            groups.join("; ")
        ));
    }
    for c in &s.analysis.comparisons {
        let f = crate::analysis::stats::flips(c);
        if !f.is_empty() {
            let steps: Vec<String> = f.iter().map(|(step, a, b)| format!("{a} → {b} at step {step}")).collect();
            out.push(format!(
                "{} ({} − {}) changed its answer over training: {} (answers-over-time.png).",
                c.key,
                c.minuend,
                c.subtrahend,
                steps.join(", ")
            ));
        }
    }
    for r in &s.runs {
        if let Some(d) = &r.diverged {
            out.push(format!(
                "Run {} seed {} diverged at step {} (last finite loss {}); it is left out of the statistics.",
                r.config,
                r.seed,
                d.step,
                fmt_loss(d.last_finite_loss)
            ));
        }
        if r.interrupted {
            out.push(format!(
                "Run {} seed {} was interrupted at step {}; continue with --resume.",
                r.config, r.seed, r.steps
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn outside_text_stays_in_its_table_cell() {
        assert_eq!(super::md_cell("a|b\nc\r\nd\\e"), "a\\|b⏎c⏎d\\\\e");
        assert_eq!(super::md_cell("plain/path.txt"), "plain/path.txt");
    }
}
