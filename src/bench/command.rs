//! `embgraft bench`: its flags and what the command does with them (the timing itself is
//! [`crate::bench::run`] and [`crate::bench::model5::run`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::error::Result;
use crate::util::print_result;

#[derive(Args)]
pub struct BenchArgs {
    /// BATCHxSEQ_LEN
    #[arg(long, default_value = "64x8")]
    pub shape: String,
    /// model1, or model5 (every parameter trains; --layers, --heads and --dim size it)
    #[arg(long, value_enum, default_value = "model1")]
    pub model: crate::config::ModelKind,
    /// Model 5's blocks
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Model 5's attention heads (default: width / 64, as GPT-2)
    #[arg(long)]
    pub heads: Option<usize>,
    /// Model 1: train the embedding too (default: frozen, only the unembedding trains)
    #[arg(long)]
    pub trainable: bool,
    #[arg(long = "impl", value_enum, default_value = "fused")]
    pub implementation: crate::bench::Impl,
    #[arg(long, default_value_t = 50257)]
    pub vocab: usize,
    #[arg(long, default_value_t = 768)]
    pub dim: usize,
    /// Timed steps
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Batches shared with bench/model1_bench.py; written from --corpus (GPT-2 BPE) when missing
    #[arg(long, required_unless_present = "gemm")]
    pub batches: Option<PathBuf>,
    /// Time the matrix products of both models' steps at their shapes instead (one JSON line
    /// per shape and backend; bench/gemm_compare.sh adds numpy's and PyTorch's), --steps
    /// timed calls each
    #[arg(long)]
    pub gemm: bool,
    /// With --gemm: only the shapes whose name contains this (`head.`, `d768`, `16x64`)
    #[arg(long, requires = "gemm")]
    pub only: Option<String>,
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Also write --corpus's GPT-2 token ids here (an I64 safetensors tensor `tokens`), for
    /// bench/course_protocol.py, the lecture's loop in PyTorch
    #[arg(long)]
    pub tokens_out: Option<PathBuf>,
    /// With --tokens-out: replace the regular file already there (never --corpus or --batches)
    #[arg(long, requires = "tokens_out")]
    pub force: bool,
    /// cpu, cuda or cuda:N (cuda needs the CUDA build: scripts/build-cuda.sh)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also time each part of the fused step (Model 1: the device synchronised after each;
    /// Model 5: milliseconds per step in each kind of kernel)
    #[arg(long)]
    pub profile: bool,
    /// On CUDA, let the GEMMs use TF32 tensor cores (less exact; PyTorch's allow_tf32)
    #[arg(long)]
    pub tf32: bool,
    /// Memory the bench may use (8GiB); shapes estimated to need more are refused before
    /// anything is built [default: what the system has available]
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<crate::config::ReadCap>,
}

pub fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    if a.gemm {
        crate::bench::gemm::run(a.steps.max(1), a.only.as_deref(), |r| {
            print_result(&serde_json::to_string(r).unwrap_or_default())
        })?;
        return Ok(());
    }
    let batches_path = a.batches.as_deref().context("--batches FILE is needed (or --gemm)")?;
    let (b, t) = a
        .shape
        .split_once('x')
        .and_then(|(b, t)| Some((b.parse::<usize>().ok()?, t.parse::<usize>().ok()?)))
        .filter(|&(b, t)| b > 0 && t > 0)
        .with_context(|| format!("--shape {} is not BATCHxSEQ_LEN, e.g. 64x8", a.shape))?;
    let spec5 = (a.model == crate::config::ModelKind::Model5).then(|| crate::bench::model5::Spec5 {
        batch: b,
        seq_len: t,
        vocab: a.vocab,
        dim: a.dim,
        heads: a.heads.unwrap_or((a.dim / 64).max(1)),
        layers: a.layers,
        imp: a.implementation,
        warmup: a.warmup,
        profile: a.profile,
    });
    bench_fits(a, (b, t), spec5.as_ref().map(|s| s.config()).as_ref())?;
    if let Some(out) = &a.tokens_out {
        let inputs: Vec<&std::path::Path> = [Some(batches_path), a.corpus.as_deref()].into_iter().flatten().collect();
        crate::util::check_output_file(out, "--tokens-out", a.force, &inputs)?;
    }
    let tokens = match &a.corpus {
        Some(corpus) if !batches_path.exists() || a.tokens_out.is_some() => Some(
            crate::data::corpus::Tokenizer::gpt2()?
                .encode(&crate::data::corpus::read_text(corpus, crate::config::Data::default().max_input_size.0)?)?,
        ),
        _ => None,
    };
    if let Some(out) = &a.tokens_out {
        let tokens = tokens.as_ref().context("--tokens-out needs --corpus")?;
        crate::bench::save_tokens(out, tokens, a.force)?;
    }
    if !batches_path.exists() {
        let tokens = tokens.as_ref().context("--batches does not exist yet: give --corpus to make it")?;
        let batches = crate::bench::make_batches(tokens, a.steps + a.warmup, b, t, 0)?;
        crate::bench::save_batches(batches_path, &batches, b, t)?;
    }
    let (batches, fb, ft) = crate::bench::load_batches(batches_path)?;
    if (fb, ft) != (b, t) {
        anyhow::bail!("{} holds {fb}x{ft} batches, not {b}x{t}; use another --batches file", batches_path.display());
    }
    if let Some(&top) = batches.iter().flatten().max().filter(|&&top| top as usize >= a.vocab) {
        anyhow::bail!(
            "--vocab {} is too small for {}: it holds token id {top}; give --vocab {} or more",
            a.vocab,
            batches_path.display(),
            top as u64 + 1
        );
    }
    if let Some(spec) = spec5 {
        if a.device != "cpu" {
            anyhow::bail!("--model model5 times the CPU path; leave out --device {}", a.device);
        }
        spec.config().validate()?;
        print_result(&serde_json::to_string(&crate::bench::model5::run(&batches, spec)?)?);
        return Ok(());
    }
    let spec = crate::bench::Spec {
        batch: b,
        seq_len: t,
        vocab: a.vocab,
        dim: a.dim,
        trainable: a.trainable,
        imp: a.implementation,
        warmup: a.warmup,
        profile: a.profile,
        tf32: a.tf32,
    };
    let device = crate::experiment::device(&a.device)?;
    print_result(&serde_json::to_string(&crate::bench::run(&batches, spec, &device)?)?);
    Ok(())
}

/// A bench whose shapes cannot fit in memory is refused before anything is built or written.
fn bench_fits(a: &BenchArgs, (b, t): (usize, usize), m5: Option<&crate::model::model5::Model5Config>) -> Result<()> {
    let spec = match m5 {
        Some(c) => crate::model::spec::ModelSpec::Model5(c.clone()),
        None => crate::model::spec::ModelSpec::Model1 { vocab: a.vocab, dim: a.dim },
    };
    let (need, _) = spec.training_memory(b, t);
    let what = format!("bench at vocabulary {} x width {}", a.vocab, a.dim);
    let fix = "give a smaller --vocab, --dim or --shape";
    crate::experiment::memory::check(need, &what, fix, a.max_memory.map(|m| m.0))
}
