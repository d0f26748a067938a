//! The command line: flags -> a typed [`ExperimentConfig`] -> `experiment::compare`.
//! Errors are printed as one line and exit with status 1.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use embgraft::config::{parse_letters, ExperimentConfig, Protocol};
use embgraft::corpus::Split;
use embgraft::donor::Donor;
use embgraft::experiment::Control;

#[derive(Parser)]
#[command(
    name = "embgraft",
    version,
    about = "Graft pretrained embeddings (or any part of GPT-2) into Model 1 or a GPT-style Model 5, train frozen, trainable or thawing, and report"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run configurations A (random, trainable), B (copied, frozen), C (copied, trainable) and D (random, frozen);
    /// with --model model5, what they graft and freeze is set by --graft/--freeze/--grid
    Compare(RunArgs),
    /// Run one configuration, writing the same files as compare
    Train {
        /// A, B, C or D
        #[arg(long = "config")]
        letter: String,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Time Model 1's training step at one shape (see bench/compare.sh for the PyTorch comparison)
    Bench(BenchArgs),
    /// List a safetensors file's tensors and the embedding that would be grafted
    Inspect {
        /// A .safetensors file, a model folder, or gpt2
        path: String,
        #[arg(long)]
        tensor: Option<String>,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// BATCHxSEQ_LEN
    #[arg(long, default_value = "64x8")]
    shape: String,
    /// Train the embedding too (default: frozen, only the unembedding trains)
    #[arg(long)]
    trainable: bool,
    #[arg(long = "impl", value_enum, default_value = "fused")]
    implementation: embgraft::bench::Impl,
    #[arg(long, default_value_t = 50257)]
    vocab: usize,
    #[arg(long, default_value_t = 768)]
    dim: usize,
    /// Timed steps
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Batches shared with bench/model1_bench.py; written from --corpus (GPT-2 BPE) when missing
    #[arg(long)]
    batches: PathBuf,
    #[arg(long)]
    corpus: Option<PathBuf>,
}

impl BenchArgs {
    fn run(&self) -> anyhow::Result<()> {
        let (b, t) = self
            .shape
            .split_once('x')
            .and_then(|(b, t)| Some((b.parse::<usize>().ok()?, t.parse::<usize>().ok()?)))
            .filter(|&(b, t)| b > 0 && t > 0)
            .with_context(|| format!("--shape {} is not BATCHxSEQ_LEN, e.g. 64x8", self.shape))?;
        if !self.batches.exists() {
            let corpus = self.corpus.as_ref().context("--batches does not exist yet: give --corpus to make it")?;
            let tokens = embgraft::corpus::Tokenizer::gpt2()?.encode(&embgraft::corpus::read_text(corpus)?)?;
            let batches = embgraft::bench::make_batches(&tokens, self.steps + self.warmup, b, t, 0);
            embgraft::bench::save_batches(&self.batches, &batches, b, t)?;
        }
        let (batches, fb, ft) = embgraft::bench::load_batches(&self.batches)?;
        if (fb, ft) != (b, t) {
            anyhow::bail!(
                "{} holds {fb}x{ft} batches, not {b}x{t}; use another --batches file",
                self.batches.display()
            );
        }
        let spec = embgraft::bench::Spec {
            batch: b,
            seq_len: t,
            vocab: self.vocab,
            dim: self.dim,
            trainable: self.trainable,
            imp: self.implementation,
            warmup: self.warmup,
        };
        let r = embgraft::bench::run(&batches, spec)?;
        println!("{}", serde_json::to_string(&r)?);
        Ok(())
    }
}

#[derive(Args)]
struct RunArgs {
    /// Corpus text file (UTF-8) [default: The Time Machine, downloaded once and cached]
    /// Give it several times to run the experiment on each corpus and compare the verdicts.
    #[arg(long = "corpus", value_name = "CORPUS")]
    corpora: Vec<String>,
    /// gpt2 (Hugging Face Hub, cached) or a .safetensors file / model folder [default: gpt2]
    #[arg(long)]
    donor: Option<String>,
    /// Embedding tensor name in the donor [default: known names]
    #[arg(long)]
    tensor: Option<String>,
    /// auto (the donor's tokenizer.json, else GPT-2), gpt2, or a tokenizer.json path [default: auto]
    #[arg(long)]
    tokenizer: Option<String>,
    /// Tokens per window [default: 8]
    #[arg(long, allow_negative_numbers = true)]
    seq_len: Option<usize>,
    /// Tokens between window starts [default: 2]
    #[arg(long, allow_negative_numbers = true)]
    stride: Option<usize>,
    /// windows (the course: random 90/10 split of windows) or contiguous (last 10 % of the text tests) [default: windows]
    #[arg(long, value_enum)]
    split: Option<Split>,
    /// Share of the windows / text that tests [default: 0.1]
    #[arg(long, allow_negative_numbers = true)]
    test_fraction: Option<f64>,
    /// Windows per batch [default: 64]
    #[arg(long, allow_negative_numbers = true)]
    batch_size: Option<usize>,
    /// [default: 10]
    #[arg(long, allow_negative_numbers = true)]
    epochs: Option<usize>,
    /// Cap on optimizer steps per run
    #[arg(long, allow_negative_numbers = true)]
    max_steps: Option<usize>,
    /// Also evaluate every N steps [default: epoch ends; about 10 points for runs under 5 epochs]
    #[arg(long, allow_negative_numbers = true)]
    eval_every: Option<usize>,
    /// AdamW learning rate [default: 0.001]
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// AdamW decoupled weight decay [default: 0.01]
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// Configurations to run: letters A-H or all (E-H are the scale controls) [default: A,B,C,D]
    #[arg(long)]
    configs: Option<String>,
    /// keep (the donor's values), unit (rescaled to std 1) or init (to the random init's std) [default: keep]
    #[arg(long, value_enum)]
    graft_scale: Option<embgraft::config::GraftScale>,
    /// model1 (the course's: embedding -> GELU -> unembedding) or model5 (GPT-2-style decoder) [default: model1]
    #[arg(long, value_enum)]
    model: Option<embgraft::config::ModelKind>,
    /// Model 5: transformer blocks [default: 2]
    #[arg(long, allow_negative_numbers = true)]
    layers: Option<usize>,
    /// Model 5: attention heads [default: the donor's config.json, else width/64]
    #[arg(long, allow_negative_numbers = true)]
    heads: Option<usize>,
    /// Model 5: width [default: the donor embedding's]
    #[arg(long, allow_negative_numbers = true)]
    dim: Option<usize>,
    /// Model 5: positions (rows of wpe) [default: --seq-len]
    #[arg(long, allow_negative_numbers = true)]
    context: Option<usize>,
    /// Model 5: a separate lm_head instead of the head tied to wte
    #[arg(long)]
    untied: bool,
    /// What B and C graft, as patterns: wte,wpe,h.0-5,h.*.attn,ln_f, all [default: wte]
    #[arg(long)]
    graft: Option<String>,
    /// What B and D freeze, same patterns [default: wte]
    #[arg(long)]
    freeze: Option<String>,
    /// The 2x2 grid in one flag: --grid graft=none,wte freeze=none,wte (first value = A's; ';' separates values with commas)
    #[arg(long, num_args = 1..=2, value_name = "AXIS=V0,V1")]
    grid: Vec<String>,
    /// Frozen parts thaw after N epochs (or Nsteps)
    #[arg(long, value_name = "N")]
    thaw_after: Option<String>,
    /// Thaw one layer group at a time, top first, every N epochs (or Nsteps) after --thaw-after
    #[arg(long, value_name = "N")]
    thaw_every: Option<String>,
    /// Learning rate for the parameters a pattern names, e.g. 'h.*=3e-4' (repeatable; the last match wins)
    #[arg(long = "lr-group", value_name = "PATTERN=LR")]
    lr_groups: Vec<String>,
    /// First seed [default: 0]
    #[arg(long)]
    seed: Option<u64>,
    /// Number of seeds, S..S+N-1, for every configuration [default: 3]
    #[arg(long, allow_negative_numbers = true)]
    seeds: Option<usize>,
    /// course (the lecture's values, random window split) or honest (the same, contiguous split)
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    /// Reduced budget with a complete report: 60 steps per run, evaluated every 20, 3 seeds
    #[arg(long)]
    quick: bool,
    /// cpu, cuda or cuda:N [default: cpu]
    #[arg(long)]
    device: Option<String>,
    /// Start from a saved config.toml; flags given here override it
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Output folder [default: runs/<UTC timestamp>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write into an existing non-empty --out folder
    #[arg(long)]
    force: bool,
    /// Continue an interrupted experiment in DIR (its config.toml; only --device may change)
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
}

impl RunArgs {
    fn config(&self) -> anyhow::Result<ExperimentConfig> {
        if let Some(dir) = &self.resume {
            let p = dir.join("config.toml");
            if self.changes_experiment() {
                anyhow::bail!(
                    "--resume continues the experiment saved in {}; drop the other flags (only --device may change)",
                    p.display()
                );
            }
            let text = std::fs::read_to_string(&p).with_context(|| {
                format!("--resume {}: cannot read {}; give the folder of an earlier run", dir.display(), p.display())
            })?;
            let mut c = ExperimentConfig::from_toml(&text)?;
            if let Some(d) = &self.device {
                c.device = d.clone();
            }
            return Ok(c);
        }
        let mut c = match &self.config_file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("cannot read --config-file {}", p.display()))?;
                ExperimentConfig::from_toml(&text)?
            }
            None => ExperimentConfig::default(),
        };
        if let Some(p) = self.protocol {
            c = c.protocol(p);
        }
        if self.quick {
            c = c.quick();
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { c.$field = v.clone(); } )* };
        }
        set!(
            seq_len,
            stride,
            split,
            test_fraction,
            batch_size,
            epochs,
            seed,
            seeds,
            device,
            donor,
            tokenizer,
            graft_scale
        );
        if !self.corpora.is_empty() {
            c.corpora = self.corpora.clone();
        }
        if self.tensor.is_some() {
            c.tensor = self.tensor.clone();
        }
        if self.max_steps.is_some() {
            c.max_steps = self.max_steps;
        }
        if self.eval_every.is_some() {
            c.eval_every = self.eval_every;
        }
        if let Some(lr) = self.lr {
            c.optimizer.lr = lr;
        }
        if let Some(wd) = self.weight_decay {
            c.optimizer.weight_decay = wd;
        }
        if let Some(s) = &self.configs {
            c.configs = parse_letters(s)?;
        }
        if let Some(m) = self.model {
            c.model = m;
        }
        if let Some(n) = self.layers {
            c.model5.layers = n;
        }
        for (v, field) in
            [(self.heads, &mut c.model5.heads), (self.dim, &mut c.model5.dim), (self.context, &mut c.model5.context)]
        {
            if v.is_some() {
                *field = v;
            }
        }
        if self.untied {
            c.model5.tied = false;
        }
        if !self.grid.is_empty() {
            c.grid.parse_into(&self.grid.join(" "))?;
        }
        if let Some(g) = &self.graft {
            c.grid.graft = g.clone();
        }
        if let Some(f) = &self.freeze {
            c.grid.freeze = f.clone();
        }
        if let Some(t) = &self.thaw_after {
            c.thaw_after = Some(t.parse().with_context(|| "--thaw-after".to_string())?);
        }
        if let Some(t) = &self.thaw_every {
            c.thaw_every = Some(t.parse().with_context(|| "--thaw-every".to_string())?);
        }
        if !self.lr_groups.is_empty() {
            c.lr_groups = self.lr_groups.iter().map(|g| g.parse()).collect::<Result<_, _>>()?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Whether any flag that defines the experiment was given.
    fn changes_experiment(&self) -> bool {
        let strings = [&self.donor, &self.tensor, &self.tokenizer, &self.configs];
        let sizes =
            [self.seq_len, self.stride, self.batch_size, self.epochs, self.max_steps, self.eval_every, self.seeds];
        !self.corpora.is_empty()
            || strings.iter().any(|s| s.is_some())
            || sizes.iter().any(|s| s.is_some())
            || self.split.is_some()
            || self.test_fraction.is_some()
            || self.lr.is_some()
            || self.weight_decay.is_some()
            || self.seed.is_some()
            || self.quick
            || self.protocol.is_some()
            || self.graft_scale.is_some()
            || self.config_file.is_some()
            || self.out.is_some()
            || self.force
            || self.model.is_some()
            || [self.layers, self.heads, self.dim, self.context].iter().any(|s| s.is_some())
            || self.untied
            || [&self.graft, &self.freeze, &self.thaw_after, &self.thaw_every].iter().any(|s| s.is_some())
            || !self.grid.is_empty()
            || !self.lr_groups.is_empty()
    }

    fn out_dir(&self) -> PathBuf {
        self.resume.clone().or_else(|| self.out.clone()).unwrap_or_else(|| PathBuf::from("runs").join(utc_timestamp()))
    }

    fn run(&self, cfg: &ExperimentConfig) -> anyhow::Result<Vec<(String, embgraft::experiment::Summary)>> {
        let stop = || STOP.load(Ordering::SeqCst);
        let ctl = Control { force: self.force, resume: self.resume.is_some(), should_stop: &stop };
        Ok(embgraft::experiment::compare_corpora(cfg, &self.out_dir(), &ctl)?)
    }
}

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

/// `YYYYMMDD-HHMMSS` in UTC, from the civil-from-days algorithm (no date crate needed).
fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn report_written(out: &std::path::Path, done: &[(String, embgraft::experiment::Summary)]) {
    let runs: usize = done.iter().map(|(_, s)| s.runs.len()).sum();
    let secs: f64 = done.iter().map(|(_, s)| s.wall_seconds).sum();
    println!(
        "wrote {} ({runs} runs on {} corpus/corpora, {secs:.1} s): open report.md there",
        out.display(),
        done.len()
    );
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Command::Compare(args) => {
            let cfg = args.config()?;
            report_written(&args.out_dir(), &args.run(&cfg)?);
        }
        Command::Train { letter, args } => {
            let mut cfg = args.config()?;
            cfg.configs = parse_letters(&letter)?;
            if cfg.configs.len() != 1 {
                anyhow::bail!("train runs one configuration; use compare --configs {letter} for several");
            }
            report_written(&args.out_dir(), &args.run(&cfg)?);
        }
        Command::Bench(args) => args.run()?,
        Command::Inspect { path, tensor } => {
            let files = embgraft::donor::locate(&path)?;
            let donor = Donor::open(&files.weights)?;
            println!("{}", files.weights.display());
            for t in donor.tensors()? {
                println!("  {:<50} {:<5} {:?}", t.name, t.dtype, t.shape);
            }
            match donor.embedding_name(tensor.as_deref()) {
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
        }
    }
    Ok(())
}

/// Parses the command line; a usage error becomes one line (clap's own spans several).
fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            let text = e.render().to_string();
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
                .collect();
            eprintln!("{}; see embgraft --help", parts.join(" ").trim_end_matches('.'));
            std::process::exit(2);
        }
    }
}

fn main() {
    let cli = parse();
    install_interrupt_handler();
    if let Err(e) = run(cli) {
        if let Some(embgraft::Error::Interrupted(msg)) = e.downcast_ref::<embgraft::Error>() {
            eprintln!("{msg}");
            std::process::exit(130);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
