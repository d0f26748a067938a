//! Whole experiments on a tiny corpus and a GPT-2-layout donor the tests write themselves:
//! no network, no ../shared, seconds each.

use std::path::Path;
use std::process::Command;

use embgraft::config::{ExperimentConfig, Letter};
use embgraft::experiment;

mod common;
use common::{fixture, tiny_corpus, Fixture};

fn small_config(f: &Fixture) -> ExperimentConfig {
    let mut c = ExperimentConfig::default();
    c.data.corpora = vec![f.corpus.display().to_string()];
    c.data.donor = vec![f.donor.display().to_string()];
    (c.protocol.batch_size, c.protocol.epochs, c.protocol.max_steps, c.protocol.eval_every) =
        (16, 2, Some(12), Some(4));
    // Large decay, so a frozen parameter handed to AdamW would visibly move.
    (c.optimizer.lr, c.optimizer.weight_decay) = (1e-2, 0.1);
    (c.run.sample_tokens, c.run.seeds) = (10, 1);
    c
}

#[test]
fn compare_writes_every_file_with_checks_passing() {
    let f = fixture();
    let out = f.root.join("run");
    let s = experiment::compare(&small_config(&f), &out, &Default::default()).unwrap();
    for file in ["config.toml", "metrics.csv", "summary.json", "loss-curves.svg", "loss-curves.png", "report.md"] {
        let len = std::fs::metadata(out.join(file)).unwrap_or_else(|_| panic!("{file} missing")).len();
        assert!(len > 0, "{file} is empty");
    }
    assert_eq!(s.runs.len(), 4);
    for r in &s.runs {
        assert_eq!(r.steps, 12);
        // Step 0 first: the initial state, scored before any batch.
        assert_eq!(r.points.iter().map(|p| p.step).collect::<Vec<_>>(), vec![0, 4, 8, 12]);
        assert_eq!((r.points[0].epoch, Some(r.points[0].train_loss)), (0, r.points[0].train_eval_loss));
        assert_eq!(r.copy_check.as_ref().map(|c| c.passed()), r.config.copied().then_some(true), "{:?}", r.config);
        assert_eq!(r.frozen_check.as_ref().map(|c| c.passed()), r.config.frozen().then_some(true), "{:?}", r.config);
        assert!(r.points.iter().all(|p| p.test_loss.is_finite()));
        assert!(!r.sample.is_empty());
    }
    // Frozen configs train only the head: half the parameters.
    let b = s.runs.iter().find(|r| r.config == Letter::B).unwrap();
    assert_eq!(b.trainable_params * 2, b.total_params);
    // The random configs learn this repetitive text fast: loss falls well below uniform (10.8).
    let a = s.runs.iter().find(|r| r.config == Letter::A).unwrap();
    assert!(a.points.last().unwrap().test_loss < a.points[0].test_loss);

    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(csv.starts_with("config,seed,epoch,step,split,loss,bpb\n"));
    assert_eq!(csv.lines().count(), 1 + 4 * 4 * 3, "train, test and train_eval rows per point (step 0 too)");
    assert!(csv.contains("\nB,0,1,4,test,"));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "| B | yes | yes |",
        "pass (bit-identical)",
        "pass (max Δ 0",
        "B − C = ",
        "from one seed: no interval, so no verdict",
        // 12 steps are less than an epoch: every config is early training, and the report says so.
        "| B copied, frozen (still improving) | yes | yes | 1 |",
        "**Still improving**: A, B, C, D (12 steps, less than one epoch of",
        "Error control: Holm's step-down",
        "loss-curves.png",
    ] {
        assert!(report.contains(needle), "report lacks {needle}:\n{report}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 4);
    assert_eq!(json["inputs"]["donor_tensor"], "wte.weight");
    let svg = std::fs::read_to_string(out.join("loss-curves.svg")).unwrap();
    assert!(svg.contains("A: random, trainable") && svg.contains("D: random, frozen"));
    assert_eq!(svg.matches("<circle").count(), 4 * 4, "one marker per test point, step 0 included");
    let png = std::fs::read(out.join("loss-curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // config.toml reruns the same experiment.
    let back = ExperimentConfig::from_toml(&std::fs::read_to_string(out.join("config.toml")).unwrap()).unwrap();
    assert_eq!(back, small_config(&f));
}

#[test]
fn same_seed_gives_identical_metrics_and_configs_are_paired() {
    let f = fixture();
    let mut c = small_config(&f);
    c.graft.configs.0 = vec![Letter::A, Letter::D];
    c.protocol.max_steps = Some(3);
    c.protocol.eval_every = Some(1);
    let read = |p: &Path| std::fs::read_to_string(p.join("metrics.csv")).unwrap();
    experiment::compare(&c, &f.root.join("one"), &Default::default()).unwrap();
    experiment::compare(&c, &f.root.join("two"), &Default::default()).unwrap();
    assert_eq!(read(&f.root.join("one")), read(&f.root.join("two")));
    c.run.seed = 1;
    experiment::compare(&c, &f.root.join("three"), &Default::default()).unwrap();
    assert_ne!(read(&f.root.join("one")), read(&f.root.join("three")));
    // A and D start from the same random embedding and see the same batches, so their first
    // step's loss is identical (they differ only from the update on).
    let csv = read(&f.root.join("one"));
    let first = |l: &str| {
        csv.lines()
            .find(|r| r.starts_with(&format!("{l},0,1,1,train")))
            .unwrap()
            .rsplit(',')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(first("A"), first("D"));
}

#[test]
fn contiguous_split_runs_and_is_reported() {
    let f = fixture();
    let mut c = small_config(&f);
    c.protocol.split = embgraft::data::corpus::Split::Contiguous;
    c.graft.configs.0 = vec![Letter::C];
    c.protocol.max_steps = Some(2);
    let out = f.root.join("contig");
    let s = experiment::compare(&c, &out, &Default::default()).unwrap();
    assert_eq!(s.inputs.split, "contiguous");
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("| split | contiguous"));
}

fn embgraft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_embgraft")).args(args).output().unwrap()
}

#[test]
fn cli_train_runs_one_config_and_refuses_to_overwrite() {
    let f = fixture();
    let out = f.root.join("cli");
    let args = [
        "train",
        "--config",
        "B",
        "--corpus",
        f.corpus.to_str().unwrap(),
        "--donor",
        f.donor.to_str().unwrap(),
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--seeds",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = embgraft(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("plan: 1 runs"), "{stderr}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["runs"][0]["config"], "B");
    assert_eq!(s["runs"][0]["steps"], 3);

    let o = embgraft(&args);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already holds files") && err.contains("--force"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
}

/// Writes a safetensors file with one F32 tensor per (name, shape), zero-filled.
fn write_tensors(path: &Path, tensors: &[(&str, Vec<usize>)]) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()]).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s), b)| {
            (n.to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn cli_bad_input_is_one_line_and_writes_nothing() {
    let f = fixture();
    let r = &f.root;
    let out = r.join("never");
    let p = |name: &str| r.join(name).display().to_string();
    // Donors and corpora that are wrong in one way each.
    std::fs::write(r.join("text.safetensors"), "this is not a safetensors file").unwrap();
    let valid = std::fs::read(f.donor.join("model.safetensors")).unwrap();
    std::fs::write(r.join("truncated.safetensors"), &valid[..40]).unwrap();
    write_tensors(&r.join("unnamed.safetensors"), &[("foo", vec![50257, 8]), ("bar", vec![8])]);
    write_tensors(&r.join("small.safetensors"), &[("wte.weight", vec![1000, 8])]);
    std::fs::write(r.join("empty.txt"), "\n\n").unwrap();
    std::fs::write(r.join("latin1.txt"), b"The Time Traveller \xe9tait\n").unwrap();
    std::fs::write(r.join("a-file"), "").unwrap();
    std::fs::create_dir(r.join("full")).unwrap();
    std::fs::write(r.join("full/old.txt"), "keep me").unwrap();
    let hf_home = r.join("empty-hf-home");

    let corpus = f.corpus.to_str().unwrap().to_string();
    let donor = f.donor.to_str().unwrap().to_string();
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["--donor".to_string(), donor.clone(), "--corpus".to_string(), corpus.clone()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--donor".into(), p("missing"), "--corpus".into(), corpus.clone()], "does not exist"),
        (
            vec!["--donor".into(), p("text.safetensors"), "--corpus".into(), corpus.clone()],
            "is not a valid safetensors file",
        ),
        (
            vec!["--donor".into(), p("truncated.safetensors"), "--corpus".into(), corpus.clone()],
            "is not a valid safetensors file",
        ),
        (
            vec!["--donor".into(), p("unnamed.safetensors"), "--corpus".into(), corpus.clone()],
            "2-D tensors: [foo [50257, 8]]; pick one with --tensor",
        ),
        (with(&["--tensor", "h.0.ln_1.weight"]), "has shape [8], not 2-D"),
        (with(&["--tensor", "nope"]), "has no tensor named nope"),
        (
            vec!["--donor".into(), p("small.safetensors"), "--corpus".into(), corpus.clone()],
            "has 50257 ids but the donor has 1000 rows and no tokenizer of its own",
        ),
        (vec!["--donor".into(), donor.clone(), "--corpus".into(), p("missing.txt")], "cannot read corpus"),
        (vec!["--donor".into(), donor.clone(), "--corpus".into(), p("empty.txt")], "is empty"),
        (
            vec!["--donor".into(), donor.clone(), "--corpus".into(), p("latin1.txt")],
            "is not valid UTF-8 (byte 19, line 1)",
        ),
        (with(&["--seq-len", "100000"]), "corpus too short"),
        (with(&["--seq-len", "0"]), "--seq-len must be at least 1"),
        (with(&["--batch-size", "0"]), "--batch-size must be at least 1"),
        (with(&["--epochs", "-2"]), "invalid value '-2' for '--epochs"),
        (with(&["--lr", "-0.1"]), "--lr must be positive"),
        (with(&["--configs", "A,X"]), "unknown configuration 'X'"),
        (with(&["--split", "random"]), "invalid value 'random' for '--split"),
        (with(&["--device", "tpu"]), "unknown --device tpu"),
        (
            with(&["--device", "cuda"]),
            "--device cuda: this embgraft was built without CUDA; on a GPU machine pip install",
        ),
        (with(&["--out", &p("a-file/run")]), "cannot create --out"),
        (with(&["--out", &p("full")]), "already holds files; choose another folder or pass --force"),
        (vec!["--resume".into(), p("missing-run")], "--resume"),
        (with(&["--resume", &p("full")]), "would change it, so drop it"),
        (vec!["--corpus".into(), corpus.clone()], "cannot download openai-community/gpt2"),
        (with(&["--graft", "wpe"]), "Model 1 can graft only wte; use --model model5"),
        (with(&["--model", "model5", "--configs", "E"]), "config E is a Model 1 control"),
        (
            with(&["--model", "model5", "--graft", "h.3"]),
            "--graft h.3 names no parameter; the model has wte, wpe, h.0-1.*, ln_f",
        ),
        (with(&["--model", "model5", "--freeze", "h.*.mlp,nope"]), "--freeze nope names no parameter"),
        (with(&["--model", "model5", "--graft", "h.0.mlp"]), "has no tensor for h.0.mlp.c_fc.weight"),
        (
            with(&["--model", "model5", "--graft", "wte", "--dim", "16", "--heads", "2"]),
            "cannot graft donor wte.weight of shape [50257, 8] into wte.weight of shape [50257, 16]",
        ),
        (with(&["--model", "model5", "--dim", "8", "--heads", "3"]), "--dim 8 is not divisible by --heads 3"),
        (with(&["--model", "model5", "--context", "4"]), "--context 4 is shorter than --seq-len 8"),
        (with(&["--model", "model5", "--lr-group", "h.*"]), "--lr-group h.* is not PATTERN=LR"),
        (with(&["--thaw-after", "3min"]), "'3min' is not N, Nepochs or Nsteps"),
        // Numbers at their type's maximum, and products that would overflow.
        (with(&["--seed", &u64::MAX.to_string(), "--seeds", "2"]), "runs past the largest seed"),
        (with(&["--seq-len", &usize::MAX.to_string()]), "is longer than 1048576 tokens"),
        (with(&["--sample-tokens", &usize::MAX.to_string()]), "--sample-tokens 18446744073709551615 is over"),
        (with(&["--model", "model5", "--layers", &usize::MAX.to_string()]), "parameters"),
        (with(&["--model", "model5", "--dim", &usize::MAX.to_string(), "--heads", "1"]), "parameters"),
        (with(&["--model", "model5", "--context", &usize::MAX.to_string()]), "parameters"),
        (with(&["--model", "model5", "--heads", &usize::MAX.to_string()]), "does not divide the width 8"),
        (with(&["--model", "model5", "--layers", "4000", "--dim", "8192", "--heads", "64"]), "parameters"),
        (with(&["--beta2", "1"]), "--beta2 must be in [0, 1), not 1"),
        (with(&["--thaw-every", "2"]), "--thaw-every needs --thaw-after"),
        (with(&["--grid", "graft=none,wte,all"]), "one or two values per axis"),
        (with(&["--grid", "graft=none,wte", "freeze=none,wte", "--configs", "Q"]), "unknown configuration 'Q'"),
        (with(&["--grid", "graft=none,wpe", "freeze=none,wte"]), "Model 1 can graft only wte"),
    ];
    for (args, want) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_embgraft"));
        cmd.arg("compare").args(&args);
        if !args.iter().any(|a| a == "--out" || a == "--resume") {
            cmd.args(["--out", out.to_str().unwrap()]);
        }
        // The hub case: an empty cache and an endpoint that refuses at once.
        cmd.env("HF_HOME", &hf_home).env("HF_ENDPOINT", "http://127.0.0.1:9");
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(matches!(o.status.code(), Some(1 | 2)), "{args:?}: status {:?}, {err}", o.status);
        let last = err.trim().lines().last().unwrap_or("");
        assert!(last.contains(want), "{args:?}: expected '{want}' in {err}");
        assert!(last.starts_with("error: "), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} left {}", out.display());
        assert!(!r.join("a-file/run").exists());
    }
    assert_eq!(std::fs::read_to_string(r.join("full/old.txt")).unwrap(), "keep me");
    assert_eq!(std::fs::read_dir(r.join("full")).unwrap().count(), 1);
    // A matrix-product backend the environment asks for and cannot have: refused before anything
    // is written.
    let missing_blas = p("missing-libopenblas.so");
    for (env, want) in [
        (vec![("EMBGRAFT_GEMM", "fastest")], "EMBGRAFT_GEMM=fastest is not auto, blas or gemm"),
        (vec![("EMBGRAFT_GEMM", "blas"), ("EMBGRAFT_BLAS", missing_blas.as_str())], "no BLAS could be loaded ("),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_embgraft"))
            .arg("compare")
            .args(with(&["--out", out.to_str().unwrap()]))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{env:?}: {err}");
        let last = err.trim().lines().last().unwrap_or("");
        assert!(
            last.starts_with("error: ") && last.contains(want) && err.trim().lines().count() == 1,
            "{env:?}: {err}"
        );
        assert!(!out.exists(), "{env:?} left {}", out.display());
    }
    // The hub error names the cache and the way out.
    let o = Command::new(env!("CARGO_BIN_EXE_embgraft"))
        .args(["compare", "--corpus", &corpus, "--out", out.to_str().unwrap()])
        .env("HF_HOME", &hf_home)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&hf_home.join("hub").display().to_string()) && err.contains("--donor PATH"), "{err}");
}

#[test]
fn gpt2_comes_from_an_existing_hub_cache_offline() {
    let f = fixture();
    // The Hugging Face cache layout: refs/main names a snapshot that holds the file.
    let repo = f.root.join("hf/hub/models--openai-community--gpt2");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    std::fs::create_dir_all(repo.join("snapshots/0123abcd")).unwrap();
    std::fs::copy(f.donor.join("model.safetensors"), repo.join("snapshots/0123abcd/model.safetensors")).unwrap();
    let out = f.root.join("from-cache");
    let o = Command::new(env!("CARGO_BIN_EXE_embgraft"))
        .args(["compare", "--corpus", f.corpus.to_str().unwrap(), "--configs", "B", "--max-steps", "2"])
        .args(["--out", out.to_str().unwrap()])
        .env("HF_HOME", f.root.join("hf"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["inputs"]["donor"], "gpt2");
    assert!(s["inputs"]["donor_weights"].as_str().unwrap().ends_with("snapshots/0123abcd/model.safetensors"));
}

#[test]
fn donor_with_more_rows_than_the_tokenizer_says_how_many_are_unused() {
    let f = fixture();
    write_tensors(&f.root.join("wide.safetensors"), &[("wte.weight", vec![50300, 8])]);
    let out = f.root.join("wide");
    let o = Command::new(env!("CARGO_BIN_EXE_embgraft"))
        .args(["compare", "--corpus", f.corpus.to_str().unwrap(), "--configs", "C", "--max-steps", "1"])
        .args(["--donor", f.root.join("wide.safetensors").to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("the tokenizer reaches 50257 of the donor's 50300 rows; 43 rows are never used"), "{err}");
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("| unused donor rows | 43 |"));
}

#[test]
fn inspect_lists_tensors_and_the_embedding() {
    let f = fixture();
    let o = embgraft(&["inspect", f.donor.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(
        text.contains("wte.weight") && text.contains("[50257, 8]") && text.contains("embedding: wte.weight"),
        "{text}"
    );
}

#[test]
fn frozen_embedding_is_bit_identical_while_trainable_one_moves() {
    let f = fixture();
    let mut cfg = small_config(&f);
    cfg.optimizer.weight_decay = 0.5;
    cfg.protocol.max_steps = Some(5);
    let inputs = experiment::load_inputs(&cfg).unwrap();
    let shared = inputs.shared(&candle_core::Device::Cpu);
    let values = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let donor = &inputs.embedding.data;

    let (b, model_b) =
        embgraft::train::run(&cfg, Letter::B, 0, &shared, None, &mut embgraft::train::NoObserver).unwrap();
    assert!(b.frozen_check.unwrap().passed());
    assert_eq!(bits(&values(model_b.params().get("wte").unwrap().as_tensor())), bits(donor));
    // The head, which trains, did move: the optimizer ran.
    let (_, fresh) = embgraft::train::run(
        &{
            let mut one = cfg.clone();
            one.protocol.max_steps = Some(1);
            one
        },
        Letter::B,
        0,
        &shared,
        None,
        &mut embgraft::train::NoObserver,
    )
    .unwrap();
    assert_ne!(
        values(model_b.params().get("lm_head").unwrap().as_tensor()),
        values(fresh.params().get("lm_head").unwrap().as_tensor())
    );

    let (c, model_c) =
        embgraft::train::run(&cfg, Letter::C, 0, &shared, None, &mut embgraft::train::NoObserver).unwrap();
    assert!(c.frozen_check.is_none());
    let moved =
        values(model_c.params().get("wte").unwrap().as_tensor()).iter().zip(donor).filter(|(a, b)| a != b).count();
    // Decoupled weight decay shrinks every row, seen in the batches or not.
    assert_eq!(moved, donor.iter().filter(|&&x| x != 0.0).count());
}

#[test]
fn interrupted_then_resumed_equals_uninterrupted() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let f = fixture();
    let mut c = small_config(&f);
    (c.protocol.max_steps, c.protocol.eval_every, c.protocol.epochs) = (None, None, 3);
    let per_run = experiment::load_inputs(&c).unwrap().summary(&c).steps_per_run;
    let full = experiment::compare(&c, &f.root.join("full"), &Default::default()).unwrap();

    // Stop inside the second run (B), after its first epoch's checkpoint.
    let part = f.root.join("part");
    let steps = AtomicUsize::new(0);
    // Asked before each run and after each step: A's run and steps, B's run, half B's steps.
    let stop_at = 1 + per_run + 1 + per_run / 2;
    let stop = || steps.fetch_add(1, Ordering::SeqCst) + 1 >= stop_at;
    let err =
        experiment::compare(&c, &part, &experiment::Control { should_stop: &stop, ..Default::default() }).unwrap_err();
    assert!(matches!(err, embgraft::Error::Interrupted(_)), "{err}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(part.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["runs"].as_array().unwrap().len(), 2);
    assert_eq!(s["runs"][1]["interrupted"], true);
    assert_eq!(s["runs"][1]["steps"], per_run / 2);
    assert!(part.join("run-A-0.json").is_file() && part.join("checkpoint-B-0.safetensors").is_file());
    assert!(std::fs::read_to_string(part.join("report.md")).unwrap().contains("interrupted"));
    // Saved where it stopped, inside its second epoch, not at the last epoch's end.
    let (ck, stamp) = embgraft::train::checkpoint::load(&part.join("checkpoint-B-0.safetensors")).unwrap();
    assert!(stamp.made.is_some() && stamp.sealed, "a checkpoint says what it was made under, under its checksum");
    let cell = stamp.cell.expect("a checkpoint says which cell it is");
    assert_eq!((cell.config, cell.seed, cell.group.as_str()), (embgraft::config::Letter::B, 0, ""));
    let per_epoch = per_run / 3;
    assert_eq!((ck.step, ck.epoch, ck.batch), (per_run / 2, 1, per_run / 2 - per_epoch));

    let resumed = experiment::compare(&c, &part, &experiment::Control { resume: true, ..Default::default() }).unwrap();
    assert!(!part.join("checkpoint-B-0.safetensors").exists(), "a finished run's checkpoint is removed");
    let read = |p: &Path| std::fs::read_to_string(p.join("metrics.csv")).unwrap();
    assert_eq!(read(&part), read(&f.root.join("full")));
    for (a, b) in full.runs.iter().zip(&resumed.runs) {
        assert_eq!((a.config, &a.points, a.steps), (b.config, &b.points, b.steps));
        assert_eq!(a.frozen_check, b.frozen_check);
        assert_eq!(a.sample, b.sample);
    }
}

/// Checkpoints taken inside epochs (`--checkpoint-every`) and a run resumed from each: the
/// uninterrupted run's curve and final parameters, bit for bit (Model 1, trainable embedding,
/// weight decay on; batch 16, so every third step falls at a different place in an epoch).
#[test]
fn resuming_from_any_mid_epoch_checkpoint_gives_the_same_bytes() {
    use embgraft::train::checkpoint::Checkpoint;
    use embgraft::train::{self, Observer};
    struct EveryThird(Vec<Checkpoint>, usize);
    impl Observer for EveryThird {
        fn on_step(&mut self, step: usize, _: f64) {
            self.1 = step;
        }
        fn checkpoint_due(&mut self) -> bool {
            self.1.is_multiple_of(3)
        }
        fn on_checkpoint(&mut self, _: (Letter, u64), c: &Checkpoint) -> embgraft::Result<()> {
            self.0.push(c.clone());
            Ok(())
        }
    }
    let f = fixture();
    let mut c = small_config(&f);
    (c.protocol.max_steps, c.protocol.eval_every, c.protocol.epochs) = (None, Some(5), 2);
    let inputs = experiment::load_inputs(&c).unwrap();
    let shared = inputs.shared(&candle_core::Device::Cpu);
    let bits = |net: &dyn embgraft::model::LanguageModel| -> Vec<Vec<u32>> {
        let p = net.params();
        p.iter()
            .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    let mut obs = EveryThird(Vec::new(), 0);
    let (full, net) = train::run(&c, Letter::C, 0, &shared, None, &mut obs).unwrap();
    let per_epoch = full.steps / 2;
    let saved: Vec<usize> = obs.0.iter().map(|k| k.step).collect();
    assert_eq!(saved, (1..).map(|k| 3 * k).take_while(|&s| s < full.steps).collect::<Vec<_>>());
    assert!(obs.0.iter().any(|k| k.batch > 0 && k.epoch == 1), "no checkpoint inside the second epoch");
    for k in obs.0 {
        let at = (k.step, k.epoch, k.batch);
        assert_eq!(k.epoch * per_epoch + k.batch, k.step);
        let (r, resumed) = train::run(&c, Letter::C, 0, &shared, Some(k), &mut train::NoObserver).unwrap();
        assert_eq!((&r.points, r.steps), (&full.points, full.steps), "resumed from {at:?}");
        assert!(bits(resumed.as_ref()) == bits(net.as_ref()), "parameters differ after resuming from {at:?}");
    }
}

/// Summary JSON without what depends on when and how fast it ran.
fn without_wall_times(mut v: serde_json::Value) -> serde_json::Value {
    for key in ["wall_seconds", "seconds_to_inputs", "seconds_to_first_step"] {
        v.as_object_mut().unwrap().remove(key);
    }
    for r in v["runs"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("wall_seconds");
    }
    v
}

/// A 2-donor x 2-corpus grid run as 3 shards into one folder and merged by `report` gives the
/// one-process run's metrics.csv byte for byte and its summary.json but for wall times; a
/// shard with other settings is refused before it trains; a partial folder names its missing
/// cells; `report` needs no donor or corpus and is idempotent.
#[test]
fn shards_merge_into_the_one_process_report() {
    use embgraft::experiment::{compare_groups, groups, rebuild_report, Control, Shard};
    let f = fixture();
    let second = f.root.join("second.txt");
    std::fs::write(&second, tiny_corpus().replace("machine", "garden").replace("Weena", "Filby")).unwrap();
    let donor2 = f.root.join("other-donor");
    std::fs::create_dir(&donor2).unwrap();
    embgraft::fixtures::write_gpt2_layout(&donor2.join("model.safetensors"), 8, 0.3, 7).unwrap();
    let mut c = small_config(&f);
    c.data.corpora = vec![f.corpus.display().to_string(), second.display().to_string()];
    c.data.donor = vec![f.donor.display().to_string(), donor2.display().to_string()];
    (c.graft.configs.0, c.run.seeds, c.run.sample_tokens) = (vec![Letter::A, Letter::B], 2, 5);
    (c.protocol.max_steps, c.protocol.eval_every) = (Some(6), Some(3));

    let one = f.root.join("one");
    assert_eq!(compare_groups(&c, &one, &Default::default()).unwrap().len(), 4);
    let sharded = f.root.join("sharded");
    let shard = |k| Control { shard: Some(Shard { k, n: 3 }), ..Default::default() };
    for k in [1, 2] {
        compare_groups(&c, &sharded, &shard(k)).unwrap();
    }
    assert!(!sharded.join("report.md").exists(), "a shard writes no report");
    let partial = rebuild_report(&sharded).unwrap();
    assert_eq!(partial.cells, 16);
    assert!(!partial.missing.is_empty() && partial.missing.len() < 16, "{:?}", partial.missing);
    let any_missing = partial.missing[0].split(' ').next().unwrap().to_string();
    let md = std::fs::read_to_string(sharded.join(&any_missing).join("report.md")).unwrap();
    assert!(md.contains("## Missing cells") && md.contains("(not started)"), "{md}");
    let o = Command::new(env!("CARGO_BIN_EXE_embgraft"))
        .args(["report", sharded.to_str().unwrap(), "--complete"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("cells missing") && err.trim().lines().count() == 1, "{err}");

    let mut other = c.clone();
    other.optimizer.lr = 0.5;
    let err = compare_groups(&other, &sharded, &shard(3)).unwrap_err().to_string();
    assert!(err.contains("lr = 0.5") && err.contains("same settings") && !err.contains('\n'), "{err}");

    compare_groups(&c, &sharded, &shard(3)).unwrap();
    // The donors and corpora are not needed any more.
    std::fs::remove_dir_all(&donor2).unwrap();
    std::fs::remove_file(&second).unwrap();
    let full = rebuild_report(&sharded).unwrap();
    assert!(full.missing.is_empty(), "{:?}", full.missing);
    let read = |p: &Path| std::fs::read(p).unwrap();
    let json = |p: &Path| without_wall_times(serde_json::from_slice(&read(p)).unwrap());
    for p in groups(&c) {
        let (a, b) = (one.join(&p.name), sharded.join(&p.name));
        assert!(read(&a.join("metrics.csv")) == read(&b.join("metrics.csv")), "{}: metrics.csv differs", p.name);
        assert_eq!(json(&a.join("summary.json")), json(&b.join("summary.json")), "{}", p.name);
    }
    let overview = std::fs::read_to_string(sharded.join("report.md")).unwrap();
    assert!(
        overview.contains(
            "| question | gpt2-tiny__corpus | gpt2-tiny__second | other-donor__corpus | other-donor__second |"
        ),
        "{overview}"
    );
    let first = std::fs::read(sharded.join("gpt2-tiny__corpus").join("report.md")).unwrap();
    rebuild_report(&sharded).unwrap();
    assert!(
        first == std::fs::read(sharded.join("gpt2-tiny__corpus").join("report.md")).unwrap(),
        "report is idempotent"
    );
}

#[test]
fn report_refuses_what_is_not_a_run_folder_or_is_corrupt() {
    let f = fixture();
    let bin = env!("CARGO_BIN_EXE_embgraft");
    let o = Command::new(bin).args(["report", f.root.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("is not a run folder") && err.trim().lines().count() == 1, "{err}");
    let mut c = small_config(&f);
    (c.graft.configs.0, c.run.seeds) = (vec![Letter::A], 1);
    let out = f.root.join("run");
    experiment::compare(&c, &out, &Default::default()).unwrap();
    let run = out.join("run-A-0.json");
    let text = std::fs::read_to_string(&run).unwrap();
    std::fs::write(&run, &text[..text.len() / 2]).unwrap();
    let o = Command::new(bin).args(["report", out.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("corrupt or truncated") && err.trim().lines().count() == 1, "{err}");
    // Outside Slurm, --shard slurm stops before anything is written.
    let o = Command::new(bin)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .args(["compare", "--shard", "slurm", "--out", f.root.join("s").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("SLURM_ARRAY_TASK_ID") && !f.root.join("s").exists(), "{err}");
}

#[test]
fn diverging_run_is_stopped_and_reported_while_others_go_on() {
    let f = fixture();
    let mut c = small_config(&f);
    c.graft.configs.0 = vec![Letter::A, Letter::B];
    c.optimizer.lr = 1e37; // one step sends the weights past f32's range
    let out = f.root.join("nan");
    let s = experiment::compare(&c, &out, &Default::default()).unwrap();
    assert_eq!(s.runs.len(), 2);
    for r in &s.runs {
        let d = r.diverged.as_ref().unwrap_or_else(|| panic!("{:?} did not diverge", r.config));
        assert!(d.step >= 2 && d.step <= 12, "{d:?}");
        assert!(d.last_finite_loss.unwrap().is_finite());
        assert_eq!(r.steps, d.step - 1);
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("(diverged)") && report.contains("diverged at step"), "{report}");
    assert!(out.join("loss-curves.png").is_file());
}

#[test]
fn metrics_do_not_depend_on_the_thread_count() {
    let f = fixture();
    let run = |threads: &str, model: &[&str]| {
        let out = f.root.join(format!("threads-{threads}-{}", model.len()));
        let o = Command::new(env!("CARGO_BIN_EXE_embgraft"))
            .env("RAYON_NUM_THREADS", threads)
            .args(["compare", "--corpus", f.corpus.to_str().unwrap(), "--donor", f.donor.to_str().unwrap()])
            .args(["--configs", "A,C", "--max-steps", "6", "--batch-size", "32", "--out", out.to_str().unwrap()])
            .args(model)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out.join("metrics.csv")).unwrap()
    };
    assert_eq!(run("1", &[]), run("3", &[]));
    // Model 5's fused decoder: GEMMs split only their outputs, cross-row sums go by fixed blocks.
    let model5 = ["--model", "model5", "--layers", "2", "--heads", "2"];
    assert_eq!(run("1", &model5), run("3", &model5));
}

#[test]
fn eval_windows_samples_every_point_but_the_last_without_touching_training() {
    let f = fixture();
    let mut c = small_config(&f);
    c.graft.configs.0 = vec![Letter::A, Letter::C];
    c.run.seeds = 2;
    let full = experiment::compare(&c, &f.root.join("eval-all"), &Default::default()).unwrap();
    c.protocol.eval_windows = Some(5);
    let out = f.root.join("eval-sampled");
    let sampled = experiment::compare(&c, &out, &Default::default()).unwrap();
    for (a, b) in full.runs.iter().zip(&sampled.runs) {
        let (last_a, last_b) = (a.points.last().unwrap(), b.points.last().unwrap());
        assert_eq!(last_a, last_b, "the last point scores every window, after the same training");
        assert!(a.points.iter().all(|p| p.eval_windows.is_none()));
        let (before, _) = b.points.split_at(b.points.len() - 1);
        assert!(before.iter().all(|p| p.eval_windows == Some(5)), "{:?}", b.points);
        // Training is untouched: the batch losses agree; the scores differ. (Step 0's train loss is
        // a score too, of the train-eval windows, since no batch has run.)
        assert!(before.iter().zip(&a.points).all(|(p, q)| p.test_loss != q.test_loss));
        assert!(before.iter().zip(&a.points).all(|(p, q)| (p.step == 0) != (p.train_loss == q.train_loss)));
    }
    // The sample is the seed's: both configurations of a seed score the same windows, so the
    // sampled differences are paired (a second run draws them again).
    let again = experiment::compare(&c, &f.root.join("eval-again"), &Default::default()).unwrap();
    assert_eq!(
        again.runs.iter().map(|r| r.points.clone()).collect::<Vec<_>>(),
        sampled.runs.iter().map(|r| r.points.clone()).collect::<Vec<_>>()
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("score a fixed sample of 5 test and 5 train-eval windows per seed"), "{report}");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"eval_windows\": 5") || summary.contains("\"eval_windows\":5"));
}

#[test]
fn ctrl_c_writes_results_and_exits_nonzero() {
    let f = fixture();
    let out = f.root.join("sigint");
    let child = Command::new(env!("CARGO_BIN_EXE_embgraft"))
        .args(["compare", "--corpus", f.corpus.to_str().unwrap(), "--donor", f.donor.to_str().unwrap()])
        .args(["--epochs", "100000", "--eval-every", "5", "--out", out.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let csv = out.join("metrics.csv");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&csv).map_or(0, |s| s.lines().count()) < 5 {
        assert!(std::time::Instant::now() < deadline, "no metrics within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("continue with --resume"), "{err}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["runs"][0]["interrupted"], true);
    assert!(out.join("report.md").is_file() && out.join("loss-curves.png").is_file());
}

#[test]
fn several_seeds_give_intervals_bands_and_verdicts() {
    let f = fixture();
    let mut c = small_config(&f);
    (c.run.seeds, c.protocol.max_steps) = (3, Some(8));
    let out = f.root.join("seeds");
    let s = experiment::compare(&c, &out, &Default::default()).unwrap();
    assert_eq!(s.runs.len(), 12);
    let keys: Vec<&str> = s.analysis.comparisons.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["freeze_cost", "graft_benefit_trainable", "graft_benefit_frozen"]);
    for cmp in &s.analysis.comparisons {
        let d = cmp.difference.unwrap();
        assert_eq!(d.n, 3);
        assert!(d.ci95.unwrap() > 0.0);
        let known = ["hurt", "helped", "not distinguishable at 3 seeds"];
        assert!(known.iter().any(|k| cmp.verdict.contains(k)), "{}", cmp.verdict);
    }
    // The paired difference is the mean of per-seed differences of final test losses.
    let fin = |l: Letter, seed: u64| {
        s.runs.iter().find(|r| r.config == l && r.seed == seed).unwrap().points.last().unwrap().test_loss
    };
    let mean: f64 = (0..3).map(|k| fin(Letter::B, k) - fin(Letter::C, k)).sum::<f64>() / 3.0;
    assert!((s.analysis.comparisons[0].difference.unwrap().mean - mean).abs() < 1e-12);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains(" ± "), "{report}");
    // One shaded band per curve: 4 configs x (train, test).
    let svg = std::fs::read_to_string(out.join("loss-curves.svg")).unwrap();
    assert_eq!(svg.matches("<polygon").count(), 8, "bands");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["analysis"]["comparisons"][0]["key"], "freeze_cost");
    assert!(json["analysis"]["configs"][0]["final_test"]["ci95"].as_f64().unwrap() > 0.0);

    // The paper's tables: the same numbers as summary.json, rounded as report.md rounds them.
    let q = common::read_csv(&out.join("tables/questions.csv"));
    assert_eq!(
        q[0][..10],
        ["question", "minuend", "subtrahend", "difference", "ci_low", "ci_high", "p", "p_holm", "verdict", "seeds"]
    );
    assert_eq!(q.len(), 1 + 3);
    for (row, cmp) in q[1..].iter().zip(&s.analysis.comparisons) {
        let d = cmp.difference.unwrap();
        assert_eq!(row[0], cmp.key);
        assert_eq!(row[3], format!("{:+.4}", d.mean));
        assert_eq!(
            (row[4].as_str(), row[5].as_str()),
            (format!("{:+.4}", d.low()).as_str(), format!("{:+.4}", d.high()).as_str())
        );
        let p = cmp.p_adjusted.unwrap();
        assert_eq!(row[7], if p < 1e-4 { "<0.0001".to_string() } else { format!("{p:.4}") });
        assert_eq!((row[8].as_str(), row[9].as_str()), (cmp.finding.as_str(), "3"));
        assert!(report.contains(&format!("{:+.4}", d.mean)), "report.md shows {}", row[3]);
    }
    let c = common::read_csv(&out.join("tables/configs.csv"));
    assert_eq!(c.len(), 1 + 4);
    let final_b = s.analysis.configs.iter().find(|c| c.config == Letter::B).unwrap().final_test.unwrap();
    let row_b = c.iter().find(|r| r[0] == "B").unwrap();
    assert_eq!(
        (row_b[3].clone(), row_b[4].clone()),
        (format!("{:.4}", final_b.mean), format!("{:.4}", final_b.ci95.unwrap()))
    );
    assert!(report.contains(&final_b.show()));
    for name in ["questions", "configs"] {
        let tex = std::fs::read_to_string(out.join(format!("tables/{name}.tex"))).unwrap();
        assert!(tex.starts_with("% Made by embgraft ") && tex.contains("\\toprule") && tex.contains("\\bottomrule"));
        let rows = tex.lines().filter(|l| l.ends_with(" \\\\")).count();
        assert_eq!(rows, 1 + if name == "questions" { 3 } else { 4 }, "{tex}");
        common::compiles_with_latex(&out.join(format!("tables/{name}.tex")));
    }
}

#[test]
fn controls_drift_and_references() {
    let f = fixture();
    let mut c = small_config(&f);
    (c.graft.configs.0, c.run.seeds) = (Letter::WITH_CONTROLS.to_vec(), 2);
    let out = f.root.join("controls");
    let s = experiment::compare(&c, &out, &Default::default()).unwrap();
    assert_eq!(s.runs.len(), 16);
    for r in &s.runs {
        assert_eq!(r.copy_check.as_ref().map(|c| c.passed()), r.config.copied().then_some(true), "{:?}", r.config);
        assert_eq!(r.frozen_check.as_ref().map(|c| c.passed()), r.config.frozen().then_some(true), "{:?}", r.config);
        // Drift is measured exactly for the trainable grafted configs: C, E, H.
        assert_eq!(r.drift.is_some(), matches!(r.config, Letter::C | Letter::E | Letter::H), "{:?}", r.config);
        if let Some(d) = &r.drift {
            // Rows never seen shrink by exactly the weight decay's closed form.
            assert!(d.buckets[0].tokens > 40_000, "most of GPT-2's vocabulary is unseen here");
            assert!(d.unseen_max_deviation < 1e-6, "{d:?}");
            assert!((d.unseen_expected_ratio - (1.0 - 1e-2 * 0.1f64).powi(12)).abs() < 1e-12);
            // Rows that train move further than rows that only decay.
            assert!(d.buckets[2].mean_l2 > d.buckets[0].mean_l2, "{d:?}");
        }
    }
    let g = s.runs.iter().find(|r| r.config == Letter::G).unwrap().graft.clone().unwrap();
    assert!(g.contains("to 1"), "{g}");

    // The closed form follows wte's own rate (an lr group) and the steps it trained (a frozen
    // wte thawed after 5 of 12 steps trains 7).
    let mut c = small_config(&f);
    c.graft.configs.0 = vec![Letter::B, Letter::C];
    c.graft.lr_groups = vec!["wte=0.05".parse().unwrap()];
    c.graft.thaw_after = Some("5steps".parse().unwrap());
    let own = experiment::compare(&c, &f.root.join("own-rate"), &Default::default()).unwrap();
    for (l, steps) in [(Letter::B, 7), (Letter::C, 12)] {
        let d = own.runs.iter().find(|r| r.config == l).unwrap().drift.clone().unwrap();
        assert!((d.unseen_expected_ratio - (1.0 - 0.05 * 0.1f64).powi(steps)).abs() < 1e-12, "{l:?}: {d:?}");
        assert!(d.unseen_max_deviation < 1e-5, "{l:?}: {d:?}");
    }
    let e = s.runs.iter().find(|r| r.config == Letter::E).unwrap().graft.clone().unwrap();
    assert!(e.contains("permuted"), "{e}");
    let keys: Vec<&str> = s.analysis.comparisons.iter().map(|c| c.key.as_str()).collect();
    for k in [
        "content_benefit_trainable",
        "content_benefit_frozen",
        "unit_scale_effect_frozen",
        "unit_scale_effect_trainable",
    ] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    // References: the windows split leaks, and the floor is below every train evaluation.
    assert!(s.inputs.test_positions_seen_in_training > 0.5);
    assert!(s.inputs.bigram.train_entropy >= 0.0 && s.inputs.bigram.test_loss > 0.0);
    for file in ["drift.png", "drift.svg", "loss-curves.png"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## Embedding drift",
        "(1 − lr·wd)^steps",
        "H(next | current)",
        "test text seen in training",
        "E permuted donor",
    ] {
        assert!(report.contains(needle), "report lacks {needle}");
    }
}

#[test]
fn several_corpora_get_their_own_folders_and_a_side_by_side_table() {
    let f = fixture();
    let second = f.root.join("second.txt");
    std::fs::write(&second, tiny_corpus().replace("machine", "garden").replace("Weena", "Filby")).unwrap();
    let corpora = vec![f.corpus.display().to_string(), second.display().to_string()];
    let mut c = small_config(&f);
    (c.data.corpora, c.graft.configs.0, c.run.seeds) = (corpora.clone(), vec![Letter::B, Letter::C], 2);

    // A bad corpus anywhere in the list stops everything before a file is written.
    let mut bad = c.clone();
    bad.data.corpora = vec![corpora[0].clone(), f.root.join("nope.txt").display().to_string()];
    let out_bad = f.root.join("bad");
    assert!(experiment::compare_groups(&bad, &out_bad, &Default::default()).is_err());
    assert!(!out_bad.exists());

    let out = f.root.join("many");
    let done = experiment::compare_groups(&c, &out, &Default::default()).unwrap();
    assert_eq!(done.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["corpus", "second"]);
    for name in ["corpus", "second"] {
        assert!(out.join(name).join("report.md").is_file() && out.join(name).join("loss-curves.png").is_file());
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| question | corpus | second |"), "{report}");
    assert!(report.contains("| freeze_cost (B − C) |"), "{report}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["pairs"][1]["name"], "second");
    assert_eq!(json["pairs"][0]["analysis"]["comparisons"][0]["key"], "freeze_cost");
    // The CLI takes --corpus several times.
    let o = Command::new(env!("CARGO_BIN_EXE_embgraft"))
        .args(["compare", "--corpus", &corpora[0], "--corpus", &corpora[1], "--donor", f.donor.to_str().unwrap()])
        .args([
            "--configs",
            "A",
            "--seeds",
            "1",
            "--max-steps",
            "2",
            "--out",
            f.root.join("cli-many").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("in 2 groups"));
}

/// Model 5 on the GPT-2-layout donor: B grafts wte and wpe (the donor's 1024 positions cut to
/// the context) and freezes wte, which also freezes the tied head; with weight decay on, wte
/// stays bit-identical until the scheduled thaw, then trains.
#[test]
fn model5_grafts_freezes_the_tied_head_and_thaws_on_schedule() {
    use embgraft::config::{ModelKind, TrainingPoint};
    let f = fixture();
    let mut cfg = small_config(&f);
    cfg.model.kind = ModelKind::Model5;
    cfg.model.layers = embgraft::config::Sweep::one(1);
    cfg.model.heads = Some(2);
    cfg.graft.graft = "wte,wpe".into();
    cfg.graft.configs.0 = vec![Letter::B, Letter::C];
    let inputs = experiment::load_inputs(&cfg).unwrap();
    let shared = inputs.shared(&candle_core::Device::Cpu);
    let values = |v: candle_core::Var| v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let donor_wte = bits(&inputs.embedding.data);

    // Frozen throughout: wte (and so the head) bit-identical; the blocks trained.
    let (b, net) = embgraft::train::run(&cfg, Letter::B, 0, &shared, None, &mut embgraft::train::NoObserver).unwrap();
    assert_eq!(b.copy_checks.len(), 2);
    assert!(b.copy_check.as_ref().unwrap().passed() && b.frozen_check.as_ref().unwrap().passed(), "{b:?}");
    assert_eq!(bits(&values(net.params().get("wte").unwrap().clone())), donor_wte);
    assert!(b.notes.iter().any(|n| n.contains("tied to wte")), "{:?}", b.notes);
    assert!(b.notes.iter().any(|n| n.contains("1024 positions; the first 8")), "{:?}", b.notes);
    assert!(b.trainable_params > 0 && b.trainable_params < b.total_params);
    assert!(b.thaws.is_empty());

    // Thawed after 6 steps: checked bit-identical up to then, moving afterwards.
    let mut thawing = cfg.clone();
    thawing.graft.thaw_after = Some(TrainingPoint::Steps(6));
    let (t, net) =
        embgraft::train::run(&thawing, Letter::B, 0, &shared, None, &mut embgraft::train::NoObserver).unwrap();
    assert_eq!(t.thaws.len(), 1);
    assert_eq!((t.thaws[0].step, t.thaws[0].params.clone()), (6, vec!["wte.weight".to_string()]));
    assert!(t.frozen_check.as_ref().unwrap().passed());
    assert_ne!(bits(&values(net.params().get("wte").unwrap().clone())), donor_wte);
    assert_eq!(t.trainable_params, t.total_params);
    // The first six steps are those of the frozen run.
    assert_eq!(t.points[0], b.points[0]);
    assert_ne!(t.points.last(), b.points.last());

    // Through compare: the report says what was frozen, tied and thawed.
    let out = f.root.join("m5");
    let s = experiment::compare(&thawing, &out, &Default::default()).unwrap();
    assert_eq!(s.runs.len(), 2);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Model 5") && md.contains("tied to wte") && md.contains("thawed wte"), "{md}");
    assert!(md.contains("bit-identical until thawed at step 6"), "{md}");
    let c = s.runs.iter().find(|r| r.config == Letter::C).unwrap();
    assert!(c.thaws.is_empty() && c.frozen_check.is_none());
}

/// Model 5 with a gradual thaw, interrupted after its first epoch's checkpoint and resumed:
/// the same curve, thaws and checks as an uninterrupted run (thawed optimizer slots, their
/// step counts and the thaws so far travel in the checkpoint).
#[test]
fn model5_thawing_run_resumes_exactly() {
    use embgraft::config::{ModelKind, TrainingPoint};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let f = fixture();
    let mut c = small_config(&f);
    (c.protocol.max_steps, c.protocol.eval_every, c.protocol.epochs) = (None, None, 2);
    c.model.kind = ModelKind::Model5;
    c.model.layers = embgraft::config::Sweep::one(1);
    c.model.heads = Some(2);
    c.graft.graft = "wte,wpe".into();
    c.graft.freeze = "wte,wpe,h.0".into();
    c.graft.configs.0 = vec![Letter::B];
    c.graft.thaw_after = Some(TrainingPoint::Steps(2));
    c.graft.thaw_every = Some(TrainingPoint::Epochs(1));
    let per_run = experiment::load_inputs(&c).unwrap().summary(&c).steps_per_run;
    let per_epoch = per_run / 2;
    assert!(per_epoch >= 6, "the thaws must straddle the checkpoint ({per_epoch} steps per epoch)");
    let full = experiment::compare(&c, &f.root.join("full"), &Default::default()).unwrap();
    let thaws: Vec<usize> = full.runs[0].thaws.iter().map(|t| t.step).collect();
    assert_eq!(thaws, vec![2, 2 + per_epoch]);

    let part = f.root.join("part");
    let steps = AtomicUsize::new(0);
    let stop = || steps.fetch_add(1, Ordering::SeqCst) + 1 >= per_epoch + per_epoch / 2;
    let err =
        experiment::compare(&c, &part, &experiment::Control { should_stop: &stop, ..Default::default() }).unwrap_err();
    assert!(matches!(err, embgraft::Error::Interrupted(_)), "{err}");
    assert!(part.join("checkpoint-B-0.safetensors").is_file());
    let resumed = experiment::compare(&c, &part, &experiment::Control { resume: true, ..Default::default() }).unwrap();
    let (a, b) = (&full.runs[0], &resumed.runs[0]);
    assert_eq!((&a.points, &a.thaws, a.steps), (&b.points, &b.thaws, b.steps));
    assert_eq!(a.frozen_checks, b.frozen_checks);
    assert!(a.frozen_check.as_ref().unwrap().passed());
    assert_eq!(a.sample, b.sample);
}

#[test]
fn inspect_maps_a_donor_onto_another_tokenizer_and_writes_the_matrix() {
    let f = fixture();
    let donor = f.root.join("wordpiece");
    std::fs::create_dir(&donor).unwrap();
    let words = ["the", "time", "machine", "##ing", ",", ".", "traveller"];
    let n = embgraft::fixtures::write_wordpiece_tokenizer(&donor.join("tokenizer.json"), &words).unwrap();
    let rows: Vec<f32> = (0..n * 4).map(|i| (i % 13) as f32 - 6.0).collect();
    let weights = [("embeddings.word_embeddings.weight".to_string(), vec![n, 4], rows)];
    embgraft::fixtures::write_f32_tensors(&donor.join("model.safetensors"), &weights).unwrap();
    let out = f.root.join("mapped.safetensors");
    let o =
        embgraft(&["inspect", donor.to_str().unwrap(), "--tokenizer", "gpt2", "--write-mapped", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("mapped onto gpt2 (r50k_base BPE) (50257 ids):") && text.contains("proved:"), "{text}");
    assert!(text.contains("  exact: 11 \",\" → ,") && text.contains("  pieces: "), "{text}");
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        (st.tensor("wte").unwrap().shape(), st.tensor("class").unwrap().shape()),
        (&[50257, 4][..], &[50257][..])
    );

    // One line each: no tokenizer to map onto, a donor without its own, an unwritable place.
    let bad = [
        (
            vec!["inspect", donor.to_str().unwrap(), "--write-mapped", "x.safetensors"],
            "--write-mapped needs --tokenizer",
        ),
        (vec!["inspect", f.donor.to_str().unwrap(), "--tokenizer", "gpt2"], "has no tokenizer.json of its own"),
        (
            vec![
                "inspect",
                donor.to_str().unwrap(),
                "--tokenizer",
                "gpt2",
                "--write-mapped",
                "/nonexistent/m.safetensors",
            ],
            "--write-mapped /nonexistent/m.safetensors",
        ),
    ];
    for (args, want) in bad {
        let o = embgraft(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.trim().lines().last().unwrap_or_default().contains(want), "{args:?}: {e}");
    }
    assert!(!f.root.join("x.safetensors").exists());
}
