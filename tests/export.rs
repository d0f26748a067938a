//! `--save-weights` and `embgraft export`: what a finished run keeps, what the export folder
//! holds, and the export scoring the run's test windows as the run scored them (recomputed
//! here from the exported tensors alone). The same folders loaded by PyTorch and transformers:
//! python/tests/test_export.py.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use common::fixture;

fn embgraft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embgraft")).args(args).output().unwrap()
}

/// What a successful command printed (stdout, where its result lines go, and stderr).
fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{}: {err}", o.status);
    String::from_utf8_lossy(&o.stdout).into_owned() + &err
}

/// A one-line error (exit 1) containing every one of `want`.
fn refused(o: &Output, want: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

/// (shape, f32 values or i64 values as f64) of every tensor in a safetensors file.
fn tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let vals: Vec<f64> = match v.dtype() {
                safetensors::Dtype::F32 => {
                    v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect()
                }
                safetensors::Dtype::I64 => {
                    v.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64).collect()
                }
                other => panic!("{n}: {other:?}"),
            };
            (n, (v.shape().to_vec(), vals))
        })
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Model 1's mean test loss from an export folder alone: logits = gelu(E[x]) · Uᵀ over every
/// position of every test window, in f64 (exact GELU by erf), cross-entropy on the labels.
fn model1_test_loss(dir: &Path) -> f64 {
    let w = tensors(&dir.join("model.safetensors"));
    let t = tensors(&dir.join("test-windows.safetensors"));
    let (e_shape, e) = &w["embedding.weight"];
    let (_, u) = &w["unembedding.weight"];
    let (vocab, dim) = (e_shape[0], e_shape[1]);
    let (xs, ys) = (&t["input_ids"].1, &t["labels"].1);
    let erf = |x: f64| libm_erf(x);
    let mut total = 0.0;
    for (&x, &y) in xs.iter().zip(ys) {
        let h: Vec<f64> =
            (0..dim).map(|j| e[x as usize * dim + j]).map(|v| 0.5 * v * (1.0 + erf(v / 2f64.sqrt()))).collect();
        let z: Vec<f64> = (0..vocab).map(|r| (0..dim).map(|j| u[r * dim + j] * h[j]).sum()).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - z[y as usize];
    }
    total / xs.len() as f64
}

/// erf to double precision (Abramowitz-Stegun 7.1.26 is too coarse for 1e-5 on a loss):
/// the series for small |x| and the continued fraction of erfc beyond.
fn libm_erf(x: f64) -> f64 {
    if x < 0.0 {
        return -libm_erf(-x);
    }
    if x < 2.5 {
        // erf x = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        return 2.0 / std::f64::consts::PI.sqrt() * sum;
    }
    // erfc x = exp(-x²)/sqrt(pi) · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
    let mut f = x;
    for k in (1..60).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    1.0 - (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

#[test]
fn saved_weights_export_to_a_folder_that_scores_the_runs_test_loss() {
    let f = fixture();
    let out = f.root.join("run");
    let (corpus, donor, o) = (f.corpus.to_str().unwrap(), f.donor.to_str().unwrap(), out.to_str().unwrap());
    let base = ["compare", "--corpus", corpus, "--donor", donor, "--seeds", "1", "--batch-size", "16"];
    ok(&embgraft(&[&base[..], &["--configs", "A,B", "--max-steps", "4", "--save-weights", "--out", o]].concat()));
    let (a, b) = (out.join("weights-A-0.safetensors"), out.join("weights-B-0.safetensors"));
    // B's wte is the donor's, frozen: referenced, not stored, so B's file holds only the head.
    let (sa, sb) = (std::fs::metadata(&a).unwrap().len(), std::fs::metadata(&b).unwrap().len());
    assert!(sb * 2 < sa + 4096 && sb < sa, "A {sa} B {sb}");
    assert_eq!(tensors(&b).keys().collect::<Vec<_>>(), vec!["lm_head"]);
    ok(&embgraft(&["report", o]));

    for (letter, frozen_equals_donor) in [("A", false), ("B", true)] {
        let dest = f.root.join(format!("export-{letter}"));
        let said = ok(&embgraft(&["export", o, "--config", letter, "--seed", "0", "--out", dest.to_str().unwrap()]));
        assert!(said.contains("embgraft.torch_model1"), "{said}");
        let w = tensors(&dest.join("model.safetensors"));
        assert_eq!(w["embedding.weight"].0, vec![50257, 8]);
        assert_eq!(w["unembedding.weight"].0, vec![50257, 8]);
        let donor_wte = tensors(&f.donor.join("model.safetensors")).remove("wte.weight").unwrap().1;
        assert_eq!(w["embedding.weight"].1 == donor_wte, frozen_equals_donor);
        let meta = json(&dest.join("embgraft.json"));
        let run = json(&out.join(format!("run-{letter}-0.json")));
        let final_test = run["points"].as_array().unwrap().last().unwrap()["test_loss"].as_f64().unwrap();
        assert_eq!(meta["final_test_loss"].as_f64(), Some(final_test));
        assert_eq!(json(&dest.join("config.json"))["hidden_size"], 8);
        let loss = model1_test_loss(&dest);
        assert!((loss - final_test).abs() < 1e-5, "{letter}: export scores {loss}, the run {final_test}");
    }

    // Nothing exported over a non-empty folder without --force; with it, the files are replaced.
    let dest = f.root.join("export-A");
    let again = ["export", o, "--config", "A", "--out", dest.to_str().unwrap()];
    refused(&embgraft(&again), &["is not empty", "--force"]);
    ok(&embgraft(&[&again[..], &["--force"]].concat()));

    // A cell the experiment does not have; a seed it did not run.
    let nowhere = f.root.join("nowhere");
    let n = nowhere.to_str().unwrap();
    refused(&embgraft(&["export", o, "--config", "C", "--out", n]), &["no cell C seed 0", "A,B"]);
    refused(&embgraft(&["export", o, "--config", "A", "--seed", "4", "--out", n]), &["no cell A seed 4"]);
    refused(&embgraft(&["export", o, "--config", "Q", "--out", n]), &["unknown configuration 'Q'"]);

    // A weights file renamed to another cell's name, and one from another experiment.
    std::fs::copy(&b, f.root.join("b-saved")).unwrap();
    std::fs::copy(&a, &b).unwrap();
    refused(&embgraft(&["export", o, "--config", "B", "--out", n]), &["weights-B-0.safetensors holds A seed 0"]);
    let other = f.root.join("other");
    let args = [&base[..], &["--configs", "B", "--max-steps", "2", "--save-weights", "--out", other.to_str().unwrap()]];
    ok(&embgraft(&args.concat()));
    std::fs::copy(other.join("weights-B-0.safetensors"), &b).unwrap();
    refused(&embgraft(&["export", o, "--config", "B", "--out", n]), &["weights-B-0.safetensors"]);
    std::fs::copy(f.root.join("b-saved"), &b).unwrap();
    // The donor the frozen wte is read from, changed: named, with what to do.
    let moved = f.root.join("donor-moved.safetensors");
    std::fs::rename(f.donor.join("model.safetensors"), &moved).unwrap();
    refused(&embgraft(&["export", o, "--config", "B", "--out", n]), &["donor", "cannot be read", "restore"]);
    ok(&embgraft(&["export", o, "--config", "B", "--out", n, "--donor", moved.to_str().unwrap()]));
    std::fs::rename(&moved, f.donor.join("model.safetensors")).unwrap();
    std::fs::remove_dir_all(&nowhere).unwrap();

    // A run made without --save-weights: the export says how to get them.
    let plain = f.root.join("plain");
    ok(&embgraft(&[&base[..], &["--configs", "A", "--max-steps", "2", "--out", plain.to_str().unwrap()]].concat()));
    refused(&embgraft(&["export", plain.to_str().unwrap(), "--config", "A", "--out", n]), &["--save-weights"]);
    assert!(!nowhere.exists());

    // --force clears the weights with the rest of the experiment's files.
    ok(&embgraft(&[&base[..], &["--configs", "A", "--max-steps", "2", "--out", o, "--force"]].concat()));
    assert!(!a.exists() && !b.exists());
}

#[test]
fn model5_exports_as_a_gpt2_folder() {
    let f = fixture();
    let out = f.root.join("m5");
    let o = out.to_str().unwrap();
    let args = ["compare", "--corpus", f.corpus.to_str().unwrap(), "--donor", f.donor.to_str().unwrap()];
    let m5 = ["--model", "model5", "--layers", "2", "--heads", "2", "--configs", "C", "--seeds", "1"];
    ok(&embgraft(
        &[&args[..], &m5, &["--max-steps", "3", "--batch-size", "16", "--save-weights", "--out", o]].concat(),
    ));
    let dest = f.root.join("gpt2-export");
    let said = ok(&embgraft(&["export", o, "--config", "C", "--out", dest.to_str().unwrap()]));
    assert!(said.contains("GPT2LMHeadModel.from_pretrained"), "{said}");
    let c = json(&dest.join("config.json"));
    assert_eq!(
        (c["model_type"].as_str(), c["n_embd"].as_u64(), c["n_layer"].as_u64()),
        (Some("gpt2"), Some(8), Some(2))
    );
    assert_eq!(c["tie_word_embeddings"], true);
    let w = tensors(&dest.join("model.safetensors"));
    // Conv1D's (in, out), as GPT-2 stores it; the head is tied, so not stored.
    assert_eq!(w["transformer.h.0.attn.c_attn.weight"].0, vec![8, 24]);
    assert_eq!(w["transformer.h.1.mlp.c_proj.weight"].0, vec![32, 8]);
    assert_eq!(w["transformer.wte.weight"].0, vec![50257, 8]);
    assert!(!w.contains_key("lm_head.weight"));
    assert_eq!(w.len(), 2 + 2 * 12 + 2);
    // The stored (out, in) projection, transposed back, equals the exported one.
    let saved = tensors(&out.join("weights-C-0.safetensors"));
    let (s, v) = &saved["h.0.attn.c_attn.weight"];
    let e = &w["transformer.h.0.attn.c_attn.weight"].1;
    assert!((0..s[0]).all(|r| (0..s[1]).all(|c| v[r * s[1] + c] == e[c * s[0] + r])));
    assert!(dest.join("generation_config.json").is_file() && dest.join("test-windows.safetensors").is_file());
}

/// Every file under `dir` with its bytes (hidden ones too), for "nothing here changed".
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

/// Names in `dir`, hidden ones too, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Trains `configs` for `steps` steps with `donor` on the fixture's corpus, weights kept, into `out`.
fn train_kept(f: &common::Fixture, donor: &Path, configs: &str, steps: &str, out: &Path) {
    let (corpus, donor, o) = (f.corpus.to_str().unwrap(), donor.to_str().unwrap(), out.to_str().unwrap());
    let run = ["compare", "--corpus", corpus, "--donor", donor, "--seeds", "1", "--batch-size", "16"];
    ok(&embgraft(&[&run[..], &["--configs", configs, "--max-steps", steps, "--save-weights", "--out", o]].concat()));
}

/// `embgraft export RUN --config LETTER --out OUT`, with `--force` where asked.
fn export_args<'a>(run: &'a str, letter: &'a str, out: &'a Path, force: bool) -> Vec<&'a str> {
    let mut a = vec!["export", run, "--config", letter, "--out", out.to_str().unwrap()];
    if force {
        a.push("--force");
    }
    a
}

/// A finished A,B experiment with its weights kept, in `root/run`.
fn finished(f: &common::Fixture) -> std::path::PathBuf {
    let out = f.root.join("run");
    train_kept(f, &f.donor, "A,B", "2", &out);
    out
}

#[test]
fn force_replaces_only_an_earlier_exports_own_files() {
    let f = fixture();
    let run = finished(&f);
    let r = run.to_str().unwrap();
    let export = |letter: &str, out: &Path, force: bool| embgraft(&export_args(r, letter, out, force));
    // The run's own donor folder, and a Hugging Face model folder: nothing there is an export's.
    let before = snapshot(&f.donor);
    refused(
        &export("B", &f.donor, true),
        &["holds model.safetensors, which no embgraft export wrote there", "--force"],
    );
    assert_eq!(snapshot(&f.donor), before);
    let hf = f.root.join("hf-model");
    std::fs::create_dir(&hf).unwrap();
    for n in ["config.json", "vocab.txt", "merges.txt", "tokenizer_config.json", "model.safetensors"] {
        std::fs::write(hf.join(n), n).unwrap();
    }
    let before = snapshot(&hf);
    refused(
        &export("A", &hf, true),
        &["holds config.json, merges.txt, model.safetensors, tokenizer_config.json, vocab.txt, which no embgraft"],
    );
    assert_eq!(snapshot(&hf), before);
    // The run folder itself.
    let before = snapshot(&run);
    refused(&export("A", &run, true), &["is a run folder; give a folder of the export's own"]);
    assert_eq!(snapshot(&run), before);

    // An earlier export: replaced with --force, a file of the user's beside it kept, one it
    // listed and this export does not write removed, and a file of the user's that an export
    // may write (but this one did not) refused by name.
    let dest = f.root.join("exported");
    ok(&export("A", &dest, false));
    let record = json(&dest.join("embgraft.json"));
    let listed: Vec<&str> = record["files"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(listed, ["config.json", "model.safetensors", "test-windows.safetensors", "embgraft.json"]);
    std::fs::write(dest.join("notes.md"), "mine").unwrap();
    refused(&export("B", &dest, false), &["is not empty (an earlier export: config.json", "--force"]);
    // A folder of other files only: --force writes beside them, touching none.
    let notes = f.root.join("notes-only");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("notes.md"), "mine").unwrap();
    refused(&export("A", &notes, false), &["is not empty (notes.md)"]);
    ok(&export("A", &notes, true));
    assert_eq!(std::fs::read_to_string(notes.join("notes.md")).unwrap(), "mine");
    std::fs::write(dest.join("vocab.txt"), "mine too").unwrap();
    let before = snapshot(&dest);
    refused(&export("B", &dest, true), &["holds vocab.txt, which no embgraft export wrote there"]);
    assert_eq!(snapshot(&dest), before);
    std::fs::remove_file(dest.join("vocab.txt")).unwrap();
    ok(&export("B", &dest, true));
    assert_eq!(json(&dest.join("embgraft.json"))["config"], "B");
    assert_eq!(std::fs::read_to_string(dest.join("notes.md")).unwrap(), "mine");
    assert_eq!(
        names(&dest),
        ["config.json", "embgraft.json", "model.safetensors", "notes.md", "test-windows.safetensors"]
    );

    // A record edited to claim files no export writes gives no claim on them; a folder where
    // an export writes a file is refused by name.
    let mut record = json(&dest.join("embgraft.json"));
    record["files"] = serde_json::json!([
        "notes.md",
        "..",
        "/etc/passwd",
        "config.json",
        "model.safetensors",
        "test-windows.safetensors"
    ]);
    std::fs::write(dest.join("embgraft.json"), record.to_string()).unwrap();
    ok(&export("A", &dest, true));
    assert_eq!(std::fs::read_to_string(dest.join("notes.md")).unwrap(), "mine");
    let folder_at = f.root.join("folder-at");
    std::fs::create_dir_all(folder_at.join("config.json")).unwrap();
    refused(&export("A", &folder_at, true), &["holds config.json, which is not a regular file"]);

    // An export whose record lists a file the run read (an export folder used as the donor,
    // say) never replaces it.
    let donor_like = f.root.join("donor-export");
    ok(&export("A", &donor_like, false));
    std::fs::copy(f.donor.join("model.safetensors"), donor_like.join("model.safetensors")).unwrap();
    let other = f.root.join("run2");
    train_kept(&f, &donor_like, "B", "2", &other);
    let before = snapshot(&donor_like);
    let o = embgraft(&export_args(other.to_str().unwrap(), "B", &donor_like, true));
    refused(&o, &["model.safetensors there is a file the run read"]);
    assert_eq!(snapshot(&donor_like), before);
}

#[test]
fn two_exports_at_once_never_leave_a_mixed_folder() {
    let f = fixture();
    let run = finished(&f);
    let r = run.to_str().unwrap();
    let spawn = |letter: &str, out: &Path, force: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_embgraft"));
        c.args(export_args(r, letter, out, force));
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    // Each of A's and B's files, exported alone, to tell whose a file is.
    let solo: HashMap<&str, Vec<(String, Vec<u8>)>> = ["A", "B"]
        .into_iter()
        .map(|l| {
            let d = f.root.join(format!("solo-{l}"));
            ok(&embgraft(&["export", r, "--config", l, "--out", d.to_str().unwrap()]));
            (l, snapshot(&d))
        })
        .collect();
    for (round, force) in [(0, false), (1, false), (2, true), (3, true), (4, true)] {
        let out = f.root.join(format!("race-{round}"));
        if force {
            ok(&embgraft(&["export", r, "--config", "A", "--out", out.to_str().unwrap()]));
        }
        let (a, b) = (spawn("A", &out, force), spawn("B", &out, force));
        let results: Vec<(bool, String)> = [a, b]
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
            })
            .collect();
        // The loser is refused: held by the other, or (when the other finished first) the folder
        // is another export's, which only --force replaces.
        for (success, err) in &results {
            let refused =
                err.contains("is being written by another embgraft") || (!force && err.contains("is not empty"));
            assert!(*success || refused, "{err}");
        }
        assert!(results.iter().any(|r| r.0), "{results:?}");
        // Whatever happened, the folder is one export whole: every file of one cell's.
        let record = json(&out.join("embgraft.json"));
        let whose = record["config"].as_str().unwrap();
        let mut got = snapshot(&out);
        got.retain(|(n, _)| n != "embgraft.json");
        let mut want = solo[whose].clone();
        want.retain(|(n, _)| n != "embgraft.json");
        assert_eq!(got, want, "round {round}: a mixed folder");
    }
}

/// Exports of a bigger model (width 192, 77 MB of weights) take long enough to interrupt.
fn wide_run(f: &common::Fixture) -> std::path::PathBuf {
    let donor = f.root.join("wide");
    std::fs::create_dir(&donor).unwrap();
    embgraft::fixtures::write_gpt2_layout(&donor.join("model.safetensors"), 192, 0.5, 2).unwrap();
    let out = f.root.join("wide-run");
    train_kept(f, &donor, "A", "1", &out);
    out
}

#[test]
fn an_interrupted_or_killed_export_leaves_nothing_behind() {
    let f = fixture();
    let run = wide_run(&f);
    // Two folders deep in one that exists: both are the export's to create, and to remove.
    let out = f.root.join("exports").join("deep").join("wide-A");
    std::fs::create_dir(f.root.join("exports")).unwrap();
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let child = Command::new(env!("CARGO_BIN_EXE_embgraft"))
            .args(["export", run.to_str().unwrap(), "--config", "A", "--out", out.to_str().unwrap(), "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Signalled while its files are being written (its staging folder exists).
        let started = std::time::Instant::now();
        let staging = || out.is_dir() && names(&out).iter().any(|n| n.starts_with(".embgraft-export-staging-"));
        while !staging() {
            assert!(started.elapsed().as_secs() < 60, "the export never started writing");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "the export finished before the signal: {err}");
        if err.contains("finished first") {
            // Signalled while its files were moving in: it finished them, whole.
            assert!(names(&out).contains(&"embgraft.json".to_string()), "{:?}", names(&out));
            continue;
        }
        if signal == libc::SIGINT {
            assert_eq!(o.status.code(), Some(130), "{err}");
            assert!(err.contains("interrupted: the export to") && err.contains("was not written"), "{err}");
            // The folders it created are gone, and nothing hides beside them.
            assert!(!f.root.join("exports").join("deep").exists(), "{:?}", names(&out));
        } else {
            // A kill leaves the folder (it cannot clean up); the next export takes it over.
            assert!(names(&out).iter().all(|n| n.starts_with('.')), "{:?}", names(&out));
        }
        assert_eq!(names(&f.root.join("exports")).iter().filter(|n| n.starts_with('.')).count(), 0);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    }
    // Over whatever a kill left (staging, or files half moved in with their pending list).
    ok(&embgraft(&["export", run.to_str().unwrap(), "--config", "A", "--out", out.to_str().unwrap(), "--force"]));
    assert_eq!(names(&out), ["config.json", "embgraft.json", "model.safetensors", "test-windows.safetensors"]);
}

#[test]
fn weights_files_altered_and_resealed_are_refused_by_shape() {
    use embgraft::train::weights;
    let f = fixture();
    let run = finished(&f);
    let path = run.join("weights-A-0.safetensors");
    let (saved, stamp) = weights::open(&path).unwrap();
    let n = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // A forger with the library: the same record and cell, the tensors of another shape, sealed.
    let forge = |wte: &[usize], head: &[usize]| {
        let var = |shape: &[usize]| {
            let len: usize = shape.iter().product();
            let t = candle_core::Tensor::from_vec(vec![0.25f32; len], shape, &candle_core::Device::Cpu).unwrap();
            candle_core::Var::from_tensor(&t).unwrap()
        };
        let mut p = embgraft::model::params::Params::default();
        p.insert("wte", var(wte));
        p.insert("lm_head", var(head));
        let t = weights::Trained { params: &p, model: saved.model.clone(), donor: None };
        weights::save(&path, &t, stamp.made.as_ref(), stamp.cell.as_ref().unwrap()).unwrap();
    };
    let dest = f.root.join("x");
    let d = dest.to_str().unwrap();
    for (wte, head, says) in [
        (&[0usize] as &[usize], &[50257usize, 8] as &[usize], "holds wte of shape [0]"),
        (&[50257, 16], &[50257, 8], "holds wte of shape [50257, 16], but the run's model has [50257, 8]"),
        (&[0, 8], &[0, 8], "holds wte of shape [0, 8]"),
        (&[50257, 8], &[464, 8], "holds lm_head of shape [464, 8]"),
    ] {
        forge(wte, head);
        let o = embgraft(&["export", run.to_str().unwrap(), "--config", "A", "--out", d]);
        refused(&o, &[says, "altered", "run that cell again"]);
        assert!(!dest.exists(), "{}", n(&o));
    }
}

#[test]
fn every_group_of_a_multi_group_experiment_exports() {
    let f = fixture();
    let second = f.root.join("second.txt");
    std::fs::write(&second, common::tiny_corpus().replace("Weena", "Filby")).unwrap();
    let donor = f.donor.to_str().unwrap();
    let plans: [(&str, Vec<&str>); 2] = [
        ("corpora", vec!["--corpus", f.corpus.to_str().unwrap(), "--corpus", second.to_str().unwrap()]),
        ("sized", vec!["--corpus", f.corpus.to_str().unwrap(), "--train-tokens", "2000,4000"]),
    ];
    for (name, flags) in plans {
        let out = f.root.join(name);
        let o = out.to_str().unwrap();
        let base = ["compare", "--donor", donor, "--seeds", "1", "--batch-size", "16", "--configs", "A"];
        ok(&embgraft(&[&base[..], &flags, &["--max-steps", "2", "--save-weights", "--out", o]].concat()));
        let groups: Vec<String> =
            names(&out).into_iter().filter(|g| out.join(g).join("config.toml").is_file()).collect();
        assert_eq!(groups.len(), 2, "{groups:?}");
        // The top folder names its groups; each group's folder exports its own cell.
        refused(&embgraft(&["export", o, "--config", "A", "--out", "unused"]), &["holds 2 groups", &groups[0]]);
        for g in &groups {
            let dest = f.root.join(format!("{name}-{g}"));
            let gdir = out.join(g);
            ok(&embgraft(&["export", gdir.to_str().unwrap(), "--config", "A", "--out", dest.to_str().unwrap()]));
            let record = json(&dest.join("embgraft.json"));
            assert_eq!(record["group"].as_str(), Some(g.as_str()));
            let run = json(&gdir.join("run-A-0.json"));
            let final_test = run["points"].as_array().unwrap().last().unwrap()["test_loss"].as_f64().unwrap();
            let loss = model1_test_loss(&dest);
            assert!((loss - final_test).abs() < 1e-5, "{name}/{g}: export scores {loss}, the run {final_test}");
        }
    }
}

#[test]
fn an_export_needs_the_donor_not_the_corpus_and_says_what_is_missing() {
    let f = fixture();
    let run = finished(&f);
    let r = run.to_str().unwrap();
    let export = |letter: &str, out: &str, more: &[&str]| {
        embgraft(&[&["export", r, "--config", letter, "--out", out][..], more].concat())
    };
    // The corpus changed, then went: the weights export whole, the test windows are left out, said why.
    let text = std::fs::read(&f.corpus).unwrap();
    std::fs::write(&f.corpus, [&text[..], b" More text."].concat()).unwrap();
    let dest = f.root.join("changed");
    let said = ok(&export("A", dest.to_str().unwrap(), &[]));
    assert!(said.contains("the corpus") && said.contains("changed since the run: no test windows"), "{said}");
    assert!(said.contains("need only the donor"), "{said}");
    assert_eq!(names(&dest), ["config.json", "embgraft.json", "model.safetensors"]);
    std::fs::remove_file(&f.corpus).unwrap();
    let said = ok(&export("A", f.root.join("gone").to_str().unwrap(), &[]));
    assert!(said.contains("corpus cannot be read again") && said.contains("no test windows"), "{said}");
    std::fs::write(&f.corpus, &text).unwrap();

    // The donor moved: B's frozen wte is read from it, named with --donor (no "start a new --out").
    let moved = f.root.join("moved.safetensors");
    std::fs::rename(f.donor.join("model.safetensors"), &moved).unwrap();
    refused(
        &export("B", f.root.join("b1").to_str().unwrap(), &[]),
        &["takes frozen tensors from the donor", "restore"],
    );
    let said = ok(&export("B", f.root.join("b2").to_str().unwrap(), &["--donor", moved.to_str().unwrap()]));
    assert!(!said.contains("--out"), "{said}");
    assert!(f.root.join("b2").join("test-windows.safetensors").is_file());
    std::fs::rename(&moved, f.donor.join("model.safetensors")).unwrap();

    // A weights file deleted from a run that kept them: not "made without --save-weights".
    std::fs::remove_file(run.join("weights-A-0.safetensors")).unwrap();
    let o = export("A", f.root.join("a3").to_str().unwrap(), &[]);
    refused(&o, &["has no weights-A-0.safetensors, though the run kept its weights", "deleted or moved"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("made without"));
}
