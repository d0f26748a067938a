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
