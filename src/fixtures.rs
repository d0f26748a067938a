//! Donor files for tests and examples (`--features fixtures`, which the crate's own tests and
//! examples turn on): safetensors in GPT-2's exact layout with seeded values, where GPT-2 itself
//! cannot be downloaded. Not part of the library a user builds.

use std::path::Path;

use safetensors::Dtype;

use crate::data::corpus::GPT2_VOCAB;
use crate::error::{Error, Result};

/// Writes a safetensors file in GPT-2's exact layout (names as in openai-community/gpt2, no
/// `transformer.` prefix; Conv1D weights stored (in, out)) with seeded N(0, std²) values and
/// any width. Tests and benchmarks use it where GPT-2 itself cannot be downloaded. Returns the
/// `wte` values written.
pub fn write_gpt2_layout(path: &Path, dim: usize, std: f32, seed: u64) -> Result<Vec<f32>> {
    let mut draw = normal_draws(std, seed)?;
    let wte = draw(GPT2_VOCAB * dim);
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        ("wte.weight".into(), vec![GPT2_VOCAB, dim], wte.clone()),
        ("wpe.weight".into(), vec![1024, dim], draw(1024 * dim)),
        ("h.0.ln_1.weight".into(), vec![dim], vec![1.0; dim]),
        ("h.0.attn.c_attn.weight".into(), vec![dim, 3 * dim], draw(3 * dim * dim)),
        ("h.0.attn.c_attn.bias".into(), vec![3 * dim], vec![0.0; 3 * dim]),
        ("ln_f.bias".into(), vec![dim], vec![0.0; dim]),
    ];
    write_f32_tensors(path, &tensors)?;
    Ok(wte)
}

/// Seeded N(0, std²) values, `n` at a time.
fn normal_draws(std: f32, seed: u64) -> Result<impl FnMut(usize) -> Vec<f32>> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0f32, std).map_err(|e| Error::Input(format!("std {std}: {e}")))?;
    Ok(move |n: usize| -> Vec<f32> { (0..n).map(|_| normal.sample(&mut rng)).collect() })
}

/// Writes (name, shape, values) as an F32 safetensors file, atomically: a donor of any
/// contents, for tests and examples.
pub fn write_f32_tensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<&[u8]> = tensors.iter().map(|t| crate::util::f32_bytes(&t.2)).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            let view = TensorView::new(Dtype::F32, t.1.clone(), b).map_err(|e| Error::Output(e.to_string()))?;
            Ok((t.0.clone(), view))
        })
        .collect::<Result<_>>()?;
    let data = safetensors::serialize(views, None).map_err(|e| Error::Output(e.to_string()))?;
    crate::util::write_atomic(path, &data)
}

/// Writes a whole GPT-2-layout model: `wte`, `wpe` (1024 positions), `layers` complete blocks
/// (LayerNorms, Conv1D projections stored (in, out), biases) and `ln_f`, with seeded N(0, std²)
/// weights, unit LayerNorm gains and zero biases, plus its `config.json` beside it. GPT-2's
/// shapes without its weights: for running Model 5's whole-model grafts offline.
pub fn write_gpt2_model(path: &Path, dim: usize, heads: usize, layers: usize, std: f32, seed: u64) -> Result<()> {
    let mut draw = normal_draws(std, seed)?;
    let d = dim;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        ("wte.weight".into(), vec![GPT2_VOCAB, d], draw(GPT2_VOCAB * d)),
        ("wpe.weight".into(), vec![1024, d], draw(1024 * d)),
    ];
    for i in 0..layers {
        let p = |s: &str| format!("h.{i}.{s}");
        tensors.extend([
            (p("ln_1.weight"), vec![d], vec![1.0; d]),
            (p("ln_1.bias"), vec![d], vec![0.0; d]),
            (p("attn.c_attn.weight"), vec![d, 3 * d], draw(3 * d * d)),
            (p("attn.c_attn.bias"), vec![3 * d], vec![0.0; 3 * d]),
            (p("attn.c_proj.weight"), vec![d, d], draw(d * d)),
            (p("attn.c_proj.bias"), vec![d], vec![0.0; d]),
            (p("ln_2.weight"), vec![d], vec![1.0; d]),
            (p("ln_2.bias"), vec![d], vec![0.0; d]),
            (p("mlp.c_fc.weight"), vec![d, 4 * d], draw(4 * d * d)),
            (p("mlp.c_fc.bias"), vec![4 * d], vec![0.0; 4 * d]),
            (p("mlp.c_proj.weight"), vec![4 * d, d], draw(4 * d * d)),
            (p("mlp.c_proj.bias"), vec![d], vec![0.0; d]),
        ]);
    }
    tensors.push(("ln_f.weight".into(), vec![d], vec![1.0; d]));
    tensors.push(("ln_f.bias".into(), vec![d], vec![0.0; d]));
    write_f32_tensors(path, &tensors)?;
    let config = format!(
        concat!(
            r#"{{"model_type": "gpt2", "n_embd": {d}, "n_head": {heads}, "n_layer": {layers}, "n_positions": 1024, "#,
            r#""activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "vocab_size": {}}}"#
        ),
        GPT2_VOCAB,
        d = d,
        heads = heads,
        layers = layers
    );
    let cfg_path = path.parent().unwrap_or(Path::new(".")).join("config.json");
    crate::util::write_atomic(&cfg_path, config.as_bytes())
}

/// Writes a small BERT-style WordPiece tokenizer.json (BERT's lower-casing normalizer and
/// pre-tokenizer, `[UNK]` 0 and `[CLS]` 1 special, every letter as a word start and as a
/// `##` continuation, then `words`) and returns its vocabulary size.
pub fn write_wordpiece_tokenizer(path: &Path, words: &[&str]) -> Result<usize> {
    let mut vocab = vec!["[UNK]".to_string(), "[CLS]".into()];
    for c in 'a'..='z' {
        vocab.push(c.to_string());
        vocab.push(format!("##{c}"));
    }
    vocab.extend(words.iter().map(|w| w.to_string()));
    let n = vocab.len();
    let vocab: serde_json::Map<String, serde_json::Value> =
        vocab.into_iter().enumerate().map(|(i, t)| (t, serde_json::Value::from(i))).collect();
    let special = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                           "normalized": false, "special": true})
    };
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "[UNK]"), special(1, "[CLS]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(path, json.to_string()).map_err(|e| Error::Output(format!("{}: {e}", path.display())))?;
    Ok(n)
}
