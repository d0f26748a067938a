//! The command line: flags -> a typed [`ExperimentConfig`] (see `cli.rs`) -> the experiment.
//! Errors are printed as one line and exit with status 1 (2 for flags clap rejects).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use embgraft::cli::{BenchArgs, Cli, Command, RunArgs};
use embgraft::config::{parse_letters, ExperimentConfig};
use embgraft::donor::Donor;
use embgraft::experiment::Control;
use embgraft::results::Summary;

/// Set by the first Ctrl-C (or SIGTERM): the current step finishes, results are written.
static STOP: AtomicBool = AtomicBool::new(false);

fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting now (result files are written whole or not at all)");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step and writing results; Ctrl-C again to quit at once");
    });
}

fn run_experiment(args: &RunArgs, cfg: &ExperimentConfig) -> anyhow::Result<()> {
    let stop = || STOP.load(Ordering::SeqCst);
    let ctl = Control { force: args.force, resume: args.resume.is_some(), should_stop: &stop };
    let out = args.out_dir();
    let done: Vec<(String, Summary)> = embgraft::experiment::compare_corpora(cfg, &out, &ctl)?;
    let runs: usize = done.iter().map(|(_, s)| s.runs.len()).sum();
    let secs: f64 = done.iter().map(|(_, s)| s.wall_seconds).sum();
    println!("wrote {} ({runs} runs on {} corpus/corpora, {secs:.1} s): open report.md there", out.display(), done.len());
    Ok(())
}

fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    let (b, t) = a
        .shape
        .split_once('x')
        .and_then(|(b, t)| Some((b.parse::<usize>().ok()?, t.parse::<usize>().ok()?)))
        .filter(|&(b, t)| b > 0 && t > 0)
        .with_context(|| format!("--shape {} is not BATCHxSEQ_LEN, e.g. 64x8", a.shape))?;
    if !a.batches.exists() {
        let corpus = a.corpus.as_ref().context("--batches does not exist yet: give --corpus to make it")?;
        let tokens = embgraft::corpus::Tokenizer::gpt2()?.encode(&embgraft::corpus::read_text(corpus)?)?;
        let batches = embgraft::bench::make_batches(&tokens, a.steps + a.warmup, b, t, 0)?;
        embgraft::bench::save_batches(&a.batches, &batches, b, t)?;
    }
    let (batches, fb, ft) = embgraft::bench::load_batches(&a.batches)?;
    if (fb, ft) != (b, t) {
        anyhow::bail!("{} holds {fb}x{ft} batches, not {b}x{t}; use another --batches file", a.batches.display());
    }
    let spec = embgraft::bench::Spec {
        batch: b,
        seq_len: t,
        vocab: a.vocab,
        dim: a.dim,
        trainable: a.trainable,
        imp: a.implementation,
        warmup: a.warmup,
    };
    println!("{}", serde_json::to_string(&embgraft::bench::run(&batches, spec)?)?);
    Ok(())
}

fn inspect(path: &str, tensor: Option<&str>) -> anyhow::Result<()> {
    let files = embgraft::donor::locate(path)?;
    let donor = Donor::open(&files.weights)?;
    println!("{}", files.weights.display());
    for t in donor.tensors()? {
        println!("  {:<50} {:<5} {:?}", t.name, t.dtype, t.shape);
    }
    match donor.embedding_name(tensor) {
        Ok(name) => println!("embedding: {name}"),
        Err(e) => println!("embedding: none ({e})"),
    }
    match &files.tokenizer {
        Some(t) => println!("tokenizer: {}", t.display()),
        None => println!("tokenizer: none (GPT-2 BPE is used)"),
    }
    if let Some(c) = &files.config {
        let dc = embgraft::donor::DonorConfig::read(c)?;
        let show = |v: Option<usize>| v.map_or("?".to_string(), |v| v.to_string());
        println!(
            "config: {} (width {}, heads {}, layers {}, positions {}) — Model 5 takes width and heads from it",
            c.display(),
            show(dc.n_embd),
            show(dc.n_head),
            show(dc.n_layer),
            show(dc.n_positions)
        );
    }
    Ok(())
}

fn run(cli: Cli, m: &clap::ArgMatches) -> anyhow::Result<()> {
    let sub = m.subcommand().map(|(_, s)| s).context("no subcommand")?;
    match cli.cmd {
        Command::Compare(args) => run_experiment(&args, &args.config(sub)?)?,
        Command::Train { letter, args } => {
            let mut cfg = args.config(sub)?;
            cfg.graft.configs.0 = parse_letters(&letter)?;
            if cfg.graft.configs.0.len() != 1 {
                anyhow::bail!("train runs one configuration; use compare --configs {letter} for several");
            }
            run_experiment(&args, &cfg)?;
        }
        Command::Bench(args) => bench(&args)?,
        Command::Inspect { path, tensor } => inspect(&path, tensor.as_deref())?,
    }
    Ok(())
}

/// Parses the command line; a usage error becomes one line (clap's own spans several).
fn parse() -> (Cli, clap::ArgMatches) {
    let parsed = Cli::command().try_get_matches().and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)));
    match parsed {
        Ok(p) => p,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("{}; see embgraft --help", embgraft::error::one_line(&e.render().to_string()));
            std::process::exit(2);
        }
    }
}

fn main() {
    let (cli, m) = parse();
    install_interrupt_handler();
    if let Err(e) = run(cli, &m) {
        if let Some(embgraft::Error::Interrupted(msg)) = e.downcast_ref::<embgraft::Error>() {
            eprintln!("{msg}");
            std::process::exit(130);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
