//! Sweeps end to end, on a synthetic language whose answers are known by construction: a
//! donor that carries what rare tokens mean gives a graft benefit that shrinks as the data
//! grows, and a donor that carries only part of what the model needs gives a freeze cost that
//! grows with it. Also: a sweep's cells shard and merge like any other cells, and bad sweeps
//! are refused in one line.

use std::path::{Path, PathBuf};
use std::process::Command;

use embgraft::config::{ExperimentConfig, Letter};
use embgraft::experiment::{compare_groups, groups, rebuild_report, Control, Shard};

mod common;

/// Words `w0`..`w99` in ten clusters of ten. The next word is, half the time, the current
/// word's own successor (a fixed permutation), else a uniform word of the next cluster: a
/// model must learn every word's own row, but the cluster alone already predicts half of it.
const WORDS: usize = 100;
const DIM: usize = 24;

fn successor(t: usize) -> usize {
    (t * 37 + 11) % WORDS
}

/// A deterministic stream of draws in [0, 1) (SplitMix64): no RNG crate needed here.
fn draws(mut state: u64) -> impl FnMut() -> f64 {
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Synthetic {
    _dir: tempfile::TempDir,
    root: PathBuf,
    corpus: PathBuf,
    donor: PathBuf,
}

/// The corpus (`words` words), a WordLevel tokenizer.json and a donor folder whose rows hold
/// each word's cluster (one-hot, scaled to the random init's spread) plus a little noise:
/// the cluster, not the word's own successor.
fn synthetic(words: usize) -> Synthetic {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut u = draws(17);
    let (mut t, mut text) = (0usize, String::new());
    for _ in 0..words {
        text.push_str(&format!("w{t} "));
        t = match u() < 0.5 {
            true => successor(t),
            false => ((t / 10 + 1) % 10) * 10 + (u() * 10.0) as usize % 10,
        };
    }
    let corpus = root.join("language.txt");
    std::fs::write(&corpus, text).unwrap();
    let donor = root.join("cluster-donor");
    std::fs::create_dir(&donor).unwrap();
    let vocab: Vec<String> = (0..WORDS).map(|i| format!("\"w{i}\": {i}")).collect();
    let tokenizer = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": null, "decoder": null,
            "model": {{"type": "WordLevel", "unk_token": "[UNK]", "vocab": {{{}, "[UNK]": {WORDS}}}}}}}"#,
        vocab.join(", ")
    );
    std::fs::write(donor.join("tokenizer.json"), tokenizer).unwrap();
    let mut rows = vec![0f32; (WORDS + 1) * DIM];
    for w in 0..WORDS {
        for d in 0..DIM {
            let noise = (u() as f32 - 0.5) * 0.2;
            rows[w * DIM + d] = if d == w / 10 { 3.0 } else { 0.0 } + noise;
        }
    }
    let tensors = vec![("wte.weight".to_string(), vec![WORDS + 1, DIM], rows)];
    embgraft::fixtures::write_f32_tensors(&donor.join("model.safetensors"), &tensors).unwrap();
    Synthetic { _dir: dir, root, corpus, donor }
}

fn sweep_config(s: &Synthetic, sizes: &str, seeds: usize) -> ExperimentConfig {
    let mut c = ExperimentConfig::default();
    c.data.corpora = vec![s.corpus.display().to_string()];
    c.data.donor = vec![s.donor.display().to_string()];
    c.protocol.split = embgraft::data::corpus::Split::Contiguous;
    (c.protocol.seq_len, c.protocol.stride, c.protocol.batch_size, c.protocol.epochs) = (8, 4, 32, 4);
    c.protocol.train_tokens = Some(sizes.parse().unwrap());
    c.optimizer.lr = 1e-2;
    c.graft.configs.0 = vec![Letter::A, Letter::B, Letter::C];
    (c.run.seeds, c.run.sample_tokens) = (seeds, 3);
    c
}

fn overview(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn trend<'a>(v: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    v["sweep"]["series"].as_array().unwrap().iter().find(|s| s["key"] == key).unwrap_or_else(|| panic!("no {key}"))
}

/// The language is built so that a donor knowing the clusters helps most where training saw
/// each word least, and so that freezing it costs more the more data could have taught the
/// words' own successors. The sweep must say so.
#[test]
fn a_synthetic_sweep_finds_the_trends_built_into_it() {
    let s = synthetic(60_000);
    let c = sweep_config(&s, "500,5k,50k", 4);
    let out = s.root.join("sweep");
    let done = compare_groups(&c, &out, &Default::default()).unwrap();
    assert_eq!(done.len(), 3);
    let v = overview(&out);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let benefit = trend(&v, "graft_benefit_trainable");
    let cost = trend(&v, "freeze_cost");
    let show = |s: &serde_json::Value| {
        format!(
            "{}: {:?} slope {}",
            s["key"],
            s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["difference"]["mean"].as_f64().unwrap())
                .collect::<Vec<_>>(),
            s["trend"]["slope"]
        )
    };
    assert_eq!(benefit["trend"]["outcome"], "shrinks", "{}\n{report}", show(benefit));
    assert_eq!(cost["trend"]["outcome"], "grows", "{}\n{report}", show(cost));
    // At the smallest size the graft helps (A − C > 0).
    assert!(benefit["points"][0]["difference"]["mean"].as_f64().unwrap() > 0.0, "{}", show(benefit));
    assert!(
        report.contains("the freeze cost (B − C) grows with data size") && report.contains("as the lecture says"),
        "{report}"
    );
    assert!(report.contains("![data size](sweep-tokens.png)") && out.join("sweep-tokens.png").is_file());
    // The trends as a paper's table: one row per series, its slope and verdict as summary.json has them.
    let t = common::read_csv(&out.join("tables/trends.csv"));
    let series = v["sweep"]["series"].as_array().unwrap();
    assert_eq!(t.len(), 1 + series.len());
    let row = t.iter().find(|r| r[0] == "freeze_cost").unwrap();
    assert_eq!(row[6], format!("{:+.4}", cost["trend"]["slope"]["mean"].as_f64().unwrap()));
    assert_eq!(row[12], "grows");
    common::compiles_with_latex(&out.join("tables/trends.tex"));
    // The domain table: the smallest size leaves test words unseen, the largest none.
    let unseen: Vec<f64> = ["tokens-500", "tokens-5k", "tokens-50k"]
        .iter()
        .map(|g| {
            let i: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join(g).join("inputs.json")).unwrap()).unwrap();
            assert_eq!(
                i["test_windows"], v["pairs"][0]["inputs"]["test_windows"],
                "every size tests on the same windows"
            );
            i["test_targets_unseen_in_training"].as_f64().unwrap()
        })
        .collect();
    assert!(unseen[0] > 0.0 && unseen[0] >= unseen[1] && unseen[2] == 0.0, "{unseen:?}");
}

/// A sweep run as shards into one folder and merged by `report` gives the one-process run's
/// files: each group's metrics.csv byte for byte, the overview's sweep series exactly.
#[test]
fn a_sweep_shards_and_merges_like_any_grid() {
    let s = synthetic(12_000);
    let mut c = sweep_config(&s, "1k,4k", 2);
    c.protocol.max_steps = Some(20);
    let one = s.root.join("one");
    compare_groups(&c, &one, &Default::default()).unwrap();
    let sharded = s.root.join("sharded");
    for k in 1..=3 {
        compare_groups(&c, &sharded, &Control { shard: Some(Shard { k, n: 3 }), ..Default::default() }).unwrap();
    }
    let rebuilt = rebuild_report(&sharded).unwrap();
    assert!(rebuilt.missing.is_empty() && rebuilt.cells == 12, "{:?}", rebuilt.missing);
    for g in groups(&c) {
        let read = |d: &Path| std::fs::read(d.join(&g.name).join("metrics.csv")).unwrap();
        assert!(read(&one) == read(&sharded), "{}: metrics.csv differs", g.name);
    }
    assert_eq!(overview(&one)["sweep"]["series"], overview(&sharded)["sweep"]["series"]);
    // The donor as an array in memory (the Python front's) sweeps the same way.
    let emb = embgraft::data::donor::Donor::open(&s.donor.join("model.safetensors")).unwrap().embedding(None).unwrap();
    let mut m = c.clone();
    m.data.tokenizer = s.donor.join("tokenizer.json").display().to_string();
    let memory = s.root.join("memory");
    compare_groups(&m, &memory, &Control { donor: Some(&emb), ..Default::default() }).unwrap();
    for g in groups(&c) {
        let read = |d: &Path| std::fs::read(d.join(&g.name).join("metrics.csv")).unwrap();
        assert!(read(&one) == read(&memory), "{}: metrics.csv differs with the donor in memory", g.name);
    }
    // Every cell trained the same 20 steps at both sizes: the budget is the step cap.
    for g in ["tokens-1k", "tokens-4k"] {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(one.join(g).join("run-C-0.json")).unwrap()).unwrap();
        assert_eq!(r["steps"], 20, "{g}");
    }
}

fn embgraft(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_embgraft")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Sizes past the training part or under one batch, and model-size sweeps of Model 1, stop
/// in one line before anything is written; a one-seed sweep says it has no bands.
#[test]
fn bad_sweeps_are_refused_in_one_line() {
    let s = synthetic(3_000);
    let out = s.root.join("out");
    let (corpus, donor, o) = (s.corpus.to_str().unwrap(), s.donor.to_str().unwrap(), out.to_str().unwrap());
    let base = ["compare", "--corpus", corpus, "--donor", donor, "--protocol", "honest", "--out", o];
    for (extra, expect) in [
        (&["--train-tokens", "1k,1M"][..], "--train-tokens 1M: the training part"),
        (&["--train-tokens", "40,1k"], "fewer than one batch of 64"),
        (&["--train-tokens", "0"], "--train-tokens must be at least 1"),
        (&["--train-tokens", "1k,x"], "'x' in '1k,x' is not a whole number"),
        (&["--layers", "1,2"], "Model 1 has no blocks"),
        (&["--model", "model5", "--layers", "1,0"], "--layers must be at least 1"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (ok, err) = embgraft(&args);
        assert!(!ok && err.contains(expect) && err.trim().lines().count() == 1, "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?} left files");
    }
    let args: Vec<&str> = base
        .iter()
        .chain(&["--train-tokens", "500,1k", "--seeds", "1", "--configs", "B,C", "--max-steps", "3", "--seq-len", "4"])
        .copied()
        .collect();
    let (ok, err) = embgraft(&args);
    assert!(ok, "{err}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("**One seed**: no bands") && report.contains("no interval and no verdict"), "{report}");
}

/// Every row of the configuration table and of the question table reaches what a user reads:
/// a configuration's letter and description in each group's report.md and its colour in the
/// plot; each question, asked when its two configurations ran, in summary.json (key, the two
/// configurations, a verdict in report.md); each question a sweep follows as a series of the
/// overview, and each of its lecture claims on that size in the overview's report. A row added
/// to either table is walked here without a new line of test.
#[test]
fn every_configuration_and_question_row_reaches_the_report_summary_and_sweep() {
    use embgraft::analysis::stats::QUESTIONS;
    use embgraft::config::CONFIGS;
    let s = synthetic(6_000);
    let mut c = sweep_config(&s, "1k,3k", 2);
    c.graft.configs.0 = CONFIGS.iter().map(|r| r.letter).collect();
    (c.protocol.epochs, c.run.sample_tokens) = (1, 2);
    let out = s.root.join("tables");
    let done = compare_groups(&c, &out, &Default::default()).unwrap();
    assert_eq!(done.len(), 2);
    for (group, summary) in &done {
        let dir = out.join(group);
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        let svg = std::fs::read_to_string(dir.join("loss-curves.svg")).unwrap().to_ascii_uppercase();
        for row in CONFIGS {
            let line = format!("| {} {}", row.letter, row.description);
            assert!(report.contains(&line), "{group}: no row `{line}` in report.md");
            let (r, g, b) = row.colour;
            assert!(
                svg.contains(&format!("#{r:02X}{g:02X}{b:02X}")),
                "{group}: {} not drawn in its colour",
                row.letter
            );
        }
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        let asked = json["analysis"]["comparisons"].as_array().unwrap();
        assert_eq!(asked.len(), QUESTIONS.len(), "{group}: every question is asked when all configurations ran");
        for (q, a) in QUESTIONS.iter().zip(asked) {
            assert_eq!(a["key"], q.key);
            assert_eq!(
                (a["minuend"].as_str(), a["subtrahend"].as_str()),
                (Some(&*q.minuend.to_string()), Some(&*q.subtrahend.to_string()))
            );
            let verdict = a["verdict"].as_str().unwrap();
            assert!(report.contains(verdict), "{group}: the verdict of {} is not in report.md", q.key);
        }
        assert_eq!(summary.analysis.comparisons.len(), QUESTIONS.len());
    }
    let v = overview(&out);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let series: Vec<&str> =
        v["sweep"]["series"].as_array().unwrap().iter().map(|s| s["key"].as_str().unwrap()).collect();
    let followed: Vec<&str> = QUESTIONS.iter().filter(|q| q.followed_as.is_some()).map(|q| q.key).collect();
    assert_eq!(series, followed, "one series per followed question, in the table's order");
    for q in QUESTIONS {
        for claim in q.claims.iter().filter(|c| c.size == "data size") {
            assert!(report.contains(claim.words), "the claim of {} is not in the overview:\n{report}", q.key);
        }
    }
    let claims = v["sweep"]["claims"].as_array().unwrap().len();
    let on_data: usize = QUESTIONS.iter().map(|q| q.claims.iter().filter(|c| c.size == "data size").count()).sum();
    assert!(claims >= on_data, "{claims} claims for {on_data} rows");
}
