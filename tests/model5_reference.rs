//! A tiny GPT-2 checkpoint in GPT-2's exact layout (Hugging Face names, Conv1D weights stored
//! (in, out)), written here, grafted whole into Model 5: its logits and loss must equal those
//! PyTorch computes independently (reference/model5_reference.py -> model5_golden.json).

use candle_core::{Device, Tensor};
use embgraft::data::donor::Donor;
use embgraft::model::graft::graft_by_name;
use embgraft::model::model5::{Activation, Model5, Model5Config};
use embgraft::model::params::Names;
use rand::SeedableRng;
use safetensors::{tensor::TensorView, Dtype};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/model5_golden.json");
const VOCAB: usize = 37;
const DIM: usize = 16;
const LAYERS: usize = 2;
const POSITIONS: usize = 12;

/// GPT-2's names and stored shapes, in the order the reference's formula numbers them.
fn names_and_shapes() -> Vec<(String, Vec<usize>)> {
    let d = DIM;
    let mut out = vec![("wte.weight".to_string(), vec![VOCAB, d]), ("wpe.weight".to_string(), vec![POSITIONS, d])];
    for i in 0..LAYERS {
        let p = |s: &str| format!("h.{i}.{s}");
        out.extend([
            (p("ln_1.weight"), vec![d]),
            (p("ln_1.bias"), vec![d]),
            (p("attn.c_attn.weight"), vec![d, 3 * d]),
            (p("attn.c_attn.bias"), vec![3 * d]),
            (p("attn.c_proj.weight"), vec![d, d]),
            (p("attn.c_proj.bias"), vec![d]),
            (p("ln_2.weight"), vec![d]),
            (p("ln_2.bias"), vec![d]),
            (p("mlp.c_fc.weight"), vec![d, 4 * d]),
            (p("mlp.c_fc.bias"), vec![4 * d]),
            (p("mlp.c_proj.weight"), vec![4 * d, d]),
            (p("mlp.c_proj.bias"), vec![d]),
        ]);
    }
    out.push(("ln_f.weight".into(), vec![d]));
    out.push(("ln_f.bias".into(), vec![d]));
    out
}

/// The reference's `value`: exact dyadic numbers, identical in both languages.
fn value(k: usize, i: usize, name: &str) -> f32 {
    let v = ((i * 7 + k * 13) % 17) as f32 / 16.0 - 8.0 / 16.0;
    if name.ends_with("ln_1.weight") || name.ends_with("ln_2.weight") || name == "ln_f.weight" {
        1.0 + v / 4.0
    } else {
        v
    }
}

/// Writes the checkpoint (with a `transformer.` prefix, as some GPT-2 exports have) and its
/// config.json into `dir`.
fn write_donor(dir: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = names_and_shapes()
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let n = shape.iter().product();
            let data = (0..n).map(|i| value(k, i, &name)).collect();
            (name, shape, data)
        })
        .collect();
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.2.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| (format!("transformer.{}", t.0), TensorView::new(Dtype::F32, t.1.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"n_embd": 16, "n_head": 4, "n_layer": 2, "n_positions": 12, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}"#,
    )
    .unwrap();
    tensors
}

fn model(dim: usize, context: usize) -> Model5 {
    let cfg = Model5Config {
        vocab: VOCAB,
        dim,
        heads: 4,
        layers: LAYERS,
        context,
        tied: true,
        activation: Activation::GeluNew,
        layer_norm_eps: 1e-5,
    };
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    Model5::random(cfg, &mut r.clone(), &mut r, &Device::Cpu).unwrap()
}

#[test]
fn whole_gpt2_graft_gives_pytorchs_logits_and_loss() {
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(GOLDEN).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let written = write_donor(dir.path());
    let donor = Donor::open(&dir.path().join("model.safetensors")).unwrap();
    let emb = donor.embedding(None).unwrap();
    assert_eq!(emb.tensor, "transformer.wte.weight");

    // Context 8 < the donor's 12 positions: wpe is cut to its first 8 rows.
    let m = model(DIM, 8);
    let everything: Names = m.names().into_iter().collect();
    let (checks, notes) = graft_by_name(&m.params, Some(&donor), &emb, &everything).unwrap();
    assert_eq!(checks.len(), 2 + 12 * LAYERS + 2);
    assert!(checks.iter().all(|c| c.passed()), "{checks:?}");
    assert!(notes.iter().any(|n| n.contains("12 positions; the first 8")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("8 Conv1D weights transposed")), "{notes:?}");

    // Conv1D: the stored (16, 48) weight sits in the model as its (48, 16) transpose.
    let stored = &written.iter().find(|t| t.0 == "h.1.attn.c_attn.weight").unwrap().2;
    let param = m.params.get("h.1.attn.c_attn.weight").unwrap();
    assert_eq!(param.dims(), &[3 * DIM, DIM]);
    let p = param.to_vec2::<f32>().unwrap();
    for i in 0..DIM {
        for j in 0..3 * DIM {
            assert_eq!(p[j][i].to_bits(), stored[i * 3 * DIM + j].to_bits());
        }
    }

    let ids: Vec<u32> = golden["ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32))
        .collect();
    let ys: Vec<u32> = golden["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32))
        .collect();
    let x = Tensor::from_vec(ids, (2, 8), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(ys, (2, 8), &Device::Cpu).unwrap();
    let none = Names::new();
    let logits = m.logits(&x, &none).unwrap().to_vec2::<f32>().unwrap();
    let want = golden["logits"].as_array().unwrap();
    let mut worst = 0f64;
    for (row, w) in logits.iter().zip(want) {
        for (a, b) in row.iter().zip(w.as_array().unwrap()) {
            worst = worst.max((*a as f64 - b.as_f64().unwrap()).abs());
        }
    }
    eprintln!("largest logit difference from PyTorch: {worst:e}");
    assert!(worst < 2e-5, "logits differ from PyTorch's by up to {worst:e}");

    // The donor's loss on this batch, reproduced before any training (with gradients on, the
    // training path; without, the evaluation path).
    let golden_loss = golden["loss"].as_f64().unwrap();
    let (loss, grads) = m.loss_and_grads(&x, &y, &everything).unwrap();
    assert!((loss - golden_loss).abs() < 1e-5, "loss {loss} vs PyTorch {golden_loss}");
    assert_eq!(grads.len(), m.params.len(), "every parameter has a gradient");
    let eval = m.loss_sum(&x, &y).unwrap() / 16.0;
    assert!((eval - golden_loss).abs() < 1e-5, "eval loss {eval} vs PyTorch {golden_loss}");
}

#[test]
fn wrong_shapes_are_errors_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    write_donor(dir.path());
    let donor = Donor::open(&dir.path().join("model.safetensors")).unwrap();
    let emb = donor.embedding(None).unwrap();
    // A wider context than the donor has positions.
    let m = model(DIM, 16);
    let names = m.names();
    let only = |p: &str| names.iter().filter(|n| n.starts_with(p)).cloned().collect::<Names>();
    let msg = graft_by_name(&m.params, Some(&donor), &emb, &only("wpe")).unwrap_err().to_string();
    assert!(msg.contains("[12, 16]") && msg.contains("[16, 16]"), "{msg}");
    // A narrower model.
    let m = model(8, 8);
    let msg = graft_by_name(&m.params, Some(&donor), &emb, &only("h.0.attn.c_attn.weight")).unwrap_err().to_string();
    assert!(msg.contains("[16, 48]") && msg.contains("[24, 8]"), "{msg}");
}

/// The offline stand-in for GPT-2 (`examples/fake_gpt2.rs … LAYERS`) is a whole GPT-2-layout
/// model: every Model 5 parameter grafts from it, and its config.json gives the head count.
#[test]
fn written_gpt2_layout_models_graft_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    embgraft::fixtures::write_gpt2_model(&path, 16, 2, 2, 0.1, 3).unwrap();
    let cfg = embgraft::data::donor::DonorConfig::read(&dir.path().join("config.json")).unwrap();
    assert_eq!((cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.n_positions), (Some(16), Some(2), Some(2), Some(1024)));
    let donor = Donor::open(&path).unwrap();
    let emb = donor.embedding(None).unwrap();
    let m = Model5::random(
        Model5Config {
            vocab: emb.rows,
            dim: 16,
            heads: 2,
            layers: 2,
            context: 8,
            tied: true,
            activation: Activation::GeluNew,
            layer_norm_eps: 1e-5,
        },
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(0),
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(1),
        &Device::Cpu,
    )
    .unwrap();
    let (checks, _) = graft_by_name(&m.params, Some(&donor), &emb, &m.names().into_iter().collect()).unwrap();
    assert_eq!(checks.len(), 28);
    assert!(checks.iter().all(|c| c.passed()));
}

const TRANSFORMERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/model5_transformers_golden.json");

/// llm.c's test_gpt2 for Model 5: the same tensors in `transformers.GPT2LMHeadModel` (float32,
/// reference/model5_transformers.py) and, grafted whole, in Model 5 give the same logits, loss
/// and gradient of every parameter, and the same losses and parameter sums over 10 AdamW
/// steps.
#[test]
fn matches_transformers_gpt2_logits_every_gradient_and_ten_adamw_steps() {
    use embgraft::ops::adamw::{AdamW, AdamWConfig};
    use embgraft::ops::Grad;
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(TRANSFORMERS).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_donor(dir.path());
    let donor = Donor::open(&dir.path().join("model.safetensors")).unwrap();
    let emb = donor.embedding(None).unwrap();
    let m = model(DIM, 8);
    let all: Names = m.names().into_iter().collect();
    graft_by_name(&m.params, Some(&donor), &emb, &all).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        let mut out = Vec::new();
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Array(a) => stack.extend(a.iter().rev()),
                x => out.push(x.as_f64().unwrap()),
            }
        }
        out
    };
    let batch = |k: usize| {
        let b = &g["batches"][k];
        let ids: Vec<u32> = floats(&b[0]).iter().map(|&x| x as u32).collect();
        let ys: Vec<u32> = floats(&b[1]).iter().map(|&x| x as u32).collect();
        (Tensor::from_vec(ids, (2, 8), &Device::Cpu).unwrap(), Tensor::from_vec(ys, (2, 8), &Device::Cpu).unwrap())
    };
    let worst = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);

    let (x, y) = batch(0);
    let logits: Vec<f64> = m
        .logits(&x, &Names::new())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let d_logits = worst(&logits, &floats(&g["logits"]));
    let (loss, grads) = m.loss_and_grads(&x, &y, &all).unwrap();
    let d_loss = (loss - g["loss"].as_f64().unwrap()).abs();
    let mut d_grad = 0f64;
    for (name, want) in g["grads"].as_object().unwrap() {
        let t = grads.get(name).unwrap_or_else(|| panic!("no gradient for {name}"));
        let mut got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        if embgraft::model::graft::is_conv1d(name) {
            let (o, i) = t.dims2().unwrap();
            got = embgraft::model::graft::transpose(&got, o, i); // back to GPT-2's (in, out)
        }
        let want = floats(want);
        assert_eq!(got.len(), want.len(), "{name}");
        let scale = want.iter().fold(1e-3f64, |a, v| a.max(v.abs()));
        let d = worst(&got.iter().map(|&v| v as f64).collect::<Vec<_>>(), &want) / scale;
        assert!(d < 1e-5, "{name}: gradient differs from transformers' by {d:e} of its largest element");
        d_grad = d_grad.max(d);
    }
    assert_eq!(grads.len(), g["grads"].as_object().unwrap().len(), "one gradient per parameter");

    let c = AdamWConfig {
        lr: g["adamw"]["lr"].as_f64().unwrap(),
        weight_decay: g["adamw"]["weight_decay"].as_f64().unwrap(),
        ..Default::default()
    };
    let mut opt = AdamW::new(Vec::new(), c).unwrap();
    for (name, v) in m.params.iter() {
        opt.add(name, v.clone(), c.lr).unwrap();
    }
    let mut d_losses = 0f64;
    for (k, want) in floats(&g["losses"]).into_iter().enumerate() {
        let (x, y) = batch(k);
        let (loss, grads) = m.loss_and_grads(&x, &y, &all).unwrap();
        d_losses = d_losses.max((loss - want).abs());
        assert!((loss - want).abs() < 1e-5, "step {k}: loss {loss} vs transformers {want}");
        let mut grads: std::collections::HashMap<String, Grad> =
            grads.into_iter().map(|(n, t)| (n, Grad::Dense(t))).collect();
        opt.step_named(&mut grads).unwrap();
    }
    let mut d_sum = 0f64;
    for (name, want) in g["sums"].as_object().unwrap() {
        let mut v: Vec<f32> = m.params.get(name).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        if name.ends_with("attn.c_attn.bias") {
            v.drain(DIM..2 * DIM); // the key bias: see `summed` in the reference script
        }
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let d = (sum - want.as_f64().unwrap()).abs();
        assert!(d < 1e-4, "{name}: sum after 10 steps {sum} vs transformers {want}");
        d_sum = d_sum.max(d);
    }
    eprintln!(
        "largest differences from transformers {}: logits {d_logits:e}, loss {d_loss:e}, gradients {d_grad:e} (relative to each tensor's largest), 10-step losses {d_losses:e}, parameter sums {d_sum:e}",
        g["transformers"]
    );
    assert!(d_logits < 1e-5 && d_loss < 1e-5, "logits {d_logits:e}, loss {d_loss:e}");
}
