//! The command line. The experiment's settings come from [`ExperimentConfig`]'s sections,
//! flattened in as flags; what is here besides is about one invocation: presets that set
//! several settings at once, where results go, and resuming.

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::analysis::summary::Summary;
use crate::config::parse_letters;
use crate::experiment::Control;

use crate::config::{ExperimentConfig, Preset, RESUMABLE};
use crate::error::{Error, Result};

#[derive(Parser)]
#[command(
    name = "embgraft",
    version,
    about = "Graft pretrained embeddings (or any part of GPT-2) into Model 1 or a GPT-style Model 5, train frozen, \
             trainable or thawing, and report"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run configurations A (random, trainable), B (copied, frozen), C (copied, trainable) and D (random, frozen);
    /// with --model model5, what they graft and freeze is set by --graft/--freeze/--grid
    Compare(RunArgs),
    /// Run one configuration, writing the same files as compare
    Train {
        /// A-H
        #[arg(long = "config")]
        letter: String,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Time a model's training step and evaluation at one shape (bench/compare.sh and
    /// bench/model5_compare.sh run the PyTorch and transformers peers beside it)
    Bench(crate::bench::command::BenchArgs),
    /// Rebuild every result file of a run folder (reports, summaries, plots, metrics.csv) from
    /// the cells it holds, e.g. after sharded runs; names the cells still missing
    Report {
        /// The --out folder of a compare (or of its shards)
        dir: PathBuf,
        /// Fail (exit 1) unless every cell is finished
        #[arg(long)]
        complete: bool,
    },
    /// Write one finished run's saved weights (made with --save-weights) as a folder PyTorch loads:
    /// Model 5 as a Hugging Face GPT-2 folder for transformers' GPT2LMHeadModel.from_pretrained,
    /// Model 1 as model.safetensors for embgraft.torch_model1; with the run's test windows
    Export {
        /// The --out folder of a compare (or one group's folder in it)
        dir: PathBuf,
        /// The configuration (A-H)
        #[arg(long = "config")]
        letter: String,
        #[arg(long, default_value = "0")]
        seed: u64,
        /// The folder to write (new or empty)
        #[arg(long)]
        out: PathBuf,
        /// Replace an earlier export's files in a non-empty --out
        #[arg(long)]
        force: bool,
        /// Where the run's donor file is now, if it moved (frozen tensors equal to the donor's are
        /// read from it)
        #[arg(long, value_name = "FILE")]
        donor: Option<PathBuf>,
    },
    /// List a safetensors file's tensors and the embedding that would be grafted
    Inspect {
        /// A .safetensors file, a model folder, or gpt2
        path: String,
        #[arg(long)]
        tensor: Option<String>,
        /// Map the donor's rows onto this tokenizer's vocabulary (gpt2 or a tokenizer.json) and
        /// count what maps how: exact matches, means of pieces, fallbacks
        #[arg(long)]
        tokenizer: Option<String>,
        /// With --tokenizer: how a token without an exact match gets its row
        #[arg(long, value_enum, default_value = "pieces")]
        vocab_map: crate::data::transplant::VocabMap,
        /// With --tokenizer: write the mapped matrix here as safetensors (`wte` F32 and `class` U8:
        /// 0 exact, 1 pieces, 2 fallback, the fallback rows the donor's mean)
        #[arg(long, value_name = "FILE")]
        write_mapped: Option<PathBuf>,
        /// With --write-mapped: replace the regular file already there (never an input of this
        /// command, a device, a FIFO or a link)
        #[arg(long, requires = "write_mapped")]
        force: bool,
        /// Memory the mapping may use (8GiB); a tokenizer or mapping estimated to need more is
        /// refused before it is read [default: what the system has available]
        #[arg(long, value_name = "SIZE")]
        max_memory: Option<crate::config::ReadCap>,
    },
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub settings: ExperimentConfig,
    /// course (the lecture's values, random window split) or honest (the same, contiguous split)
    #[arg(long, value_enum, help_heading = "Presets")]
    pub protocol: Option<Preset>,
    /// Reduced budget with a complete report: 60 steps per run, evaluated every 20 (on 256 windows
    /// of each split before the last point, which scores them all), 3 seeds
    #[arg(long, help_heading = "Presets")]
    pub quick: bool,
    /// The 2x2 grid in one flag: --grid graft=none,wte freeze=none,wte (first value = A's; ';'
    /// separates values with commas)
    #[arg(long, num_args = 1..=2, value_name = "AXIS=V0,V1", help_heading = "Presets")]
    pub grid: Vec<String>,
    /// Start from a saved config.toml; flags given here override it
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// Output folder [default: runs/<UTC timestamp>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write into an existing non-empty --out folder
    #[arg(long)]
    pub force: bool,
    /// Continue an interrupted experiment in DIR (its config.toml; only --device, --checkpoint-every,
    /// --max-input-size, --tensorboard, --save-weights and --max-memory may change)
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Run only the K-th of N slices of the grid (cells balanced by planned steps) into an --out
    /// that the other shards share; `slurm` takes K and N from the job array. A shard keeps
    /// finished cells and continues checkpointed ones; `embgraft report DIR` merges the shards
    #[arg(long, value_name = "K/N|slurm")]
    pub shard: Option<String>,
}

/// The flag an argument id is written as (`lr_groups` -> `--lr-group`).
fn flag_of(id: &str) -> String {
    ExperimentConfig::settings()
        .into_iter()
        .find(|(i, _)| i == id)
        .map_or_else(|| format!("--{}", id.replace('_', "-")), |(_, flag)| flag)
}

impl RunArgs {
    /// The experiment these flags describe. `m` holds the subcommand's parsed arguments, which
    /// tell which flags the user gave (a setting not given keeps the saved or preset value).
    pub fn config(&self, m: &ArgMatches) -> Result<ExperimentConfig> {
        let given = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        if let Some(dir) = &self.resume {
            let p = dir.join("config.toml");
            // Anything given besides --resume and the settings that may change is refused, by
            // name: it would silently not apply.
            // Argument ids only (clap also records each flattened section as a group).
            let args = RunArgs::augment_args(clap::Command::new("args"));
            let is_arg = |id: &str| args.get_arguments().any(|a| a.get_id() == id);
            let mut ids: Vec<&str> = m.ids().map(|i| i.as_str()).filter(|i| given(i) && is_arg(i)).collect();
            ids.sort_unstable();
            if let Some(id) = ids.into_iter().find(|i| !["resume", "letter"].contains(i) && !RESUMABLE.contains(i)) {
                return Err(Error::Input(format!(
                    "--resume continues the experiment saved in {}; {} would change it, so drop it (only {} may \
                     change)",
                    p.display(),
                    flag_of(id),
                    crate::util::listed(&crate::config::resumable_flags())
                )));
            }
            let text = crate::util::read_small(&p).map_err(|e| {
                Error::Input(format!(
                    "--resume {}: cannot read {} ({e}); give the folder of an earlier run",
                    dir.display(),
                    p.display()
                ))
            })?;
            let saved = ExperimentConfig::from_toml(&text).map_err(|e| {
                Error::Input(format!(
                    "--resume {}: {} is damaged ({e}); restore it (a shard's folder has the same one), or start a new \
                     --out",
                    dir.display(),
                    p.display()
                ))
            })?;
            return ExperimentConfig::resolve(&saved, &self.settings, &given);
        }
        let mut base = match &self.config_file {
            Some(p) => {
                let text = crate::util::read_small(p)
                    .map_err(|e| Error::Input(format!("cannot read --config-file {} ({e})", p.display())))?;
                ExperimentConfig::from_toml(&text)
                    .map_err(|e| Error::Input(format!("--config-file {}: {e}; fix that line", p.display())))?
            }
            None => ExperimentConfig::default(),
        };
        if let Some(p) = self.protocol {
            base = base.preset(p);
        }
        if self.quick {
            base = base.quick();
        }
        if !self.grid.is_empty() {
            base.set_grid(&self.grid.join(" "))?;
        }
        let c = ExperimentConfig::resolve(&base, &self.settings, &given)?;
        c.validate()?;
        Ok(c)
    }

    pub fn out_dir(&self) -> PathBuf {
        self.resume.clone().or_else(|| self.out.clone()).unwrap_or_else(|| PathBuf::from("runs").join(utc_timestamp()))
    }
}

use crate::util::print_result;
pub use crate::util::utc_timestamp;

/// Set by the first Ctrl-C (or SIGTERM): the current step finishes, results are written.
static STOP: AtomicBool = AtomicBool::new(false);

fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        // Before training nothing is written (inputs are read, a download fills a resumable
        // partial file): stop at once, as `timeout` and Slurm expect of SIGTERM. A write that is
        // being committed (an export moving its files in) is let finish first; one that is not
        // is removed.
        if !crate::experiment::training() {
            let line = match crate::util::finish_or_remove_unfinished() {
                (Some(done), _) => format!("\ninterrupted: {done} finished first"),
                (None, removed) if !removed.is_empty() => format!("\ninterrupted: {}", removed.join("; ")),
                _ => "\ninterrupted before training began: nothing was written".to_string(),
            };
            crate::util::to_stderr(&line);
            quit(130);
        }
        if STOP.swap(true, Ordering::SeqCst) {
            crate::util::to_stderr("\nsecond interrupt: exiting now (result files are written whole or not at all)");
            quit(130);
        }
        crate::util::to_stderr(
            "\ninterrupt: finishing the current step and writing results; Ctrl-C again to quit at once",
        );
    });
}

/// Ends the process from the interrupt handler's thread without the exit handlers, which could
/// wait forever on a lock the interrupted thread holds (the dynamic loader's, inside a blocked
/// open); every result file is written whole or not at all, so none needs them.
fn quit(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; it is async-signal-safe and takes no lock.
    unsafe { libc::_exit(code) }
}

fn run_experiment(args: &RunArgs, cfg: &ExperimentConfig) -> anyhow::Result<()> {
    let stop = || STOP.load(Ordering::SeqCst);
    let shard = match &args.shard {
        Some(s) => Some(crate::experiment::Shard::parse(s, &|k| std::env::var(k).ok())?),
        None => None,
    };
    if shard.is_some() && args.out.is_none() {
        anyhow::bail!("--shard needs --out: the folder every shard writes into");
    }
    let ctl =
        Control { force: args.force, resume: args.resume.is_some(), should_stop: &stop, shard, ..Control::default() };
    let out = args.out_dir();
    let done: Vec<(String, Summary)> = crate::experiment::compare_groups(cfg, &out, &ctl)?;
    let runs: usize = done.iter().map(|(_, s)| s.runs.len()).sum();
    let secs: f64 = done.iter().map(|(_, s)| s.wall_seconds).sum();
    match shard {
        Some(sh) => print_result(&format!("shard {sh}: {runs} runs in {} ({secs:.1} s)", out.display())),
        None => print_result(&format!(
            "wrote {} ({runs} runs{}, {secs:.1} s): open report.md there",
            out.display(),
            if done.len() > 1 { format!(" in {} groups", done.len()) } else { String::new() }
        )),
    }
    Ok(())
}

fn report(dir: &std::path::Path, complete: bool) -> anyhow::Result<()> {
    let r = crate::experiment::rebuild_report(dir)?;
    if !r.missing.is_empty() {
        let msg = format!("{} of {} cells missing: {}", r.missing.len(), r.cells, r.missing.join(", "));
        if complete {
            anyhow::bail!("{msg}; run them (their --shard, or compare --resume) and report again, or drop --complete");
        }
        crate::util::to_stderr(&format!("report: {msg}; the report covers the rest"));
    }
    print_result(&format!(
        "wrote the report of {} ({} of {} cells): open report.md there",
        dir.display(),
        r.cells - r.missing.len(),
        r.cells
    ));
    Ok(())
}

/// `embgraft export`: one line naming what was written, and the notes on what could not be.
pub fn export(
    dir: &std::path::Path,
    letter: &str,
    seed: u64,
    (out, force): (&std::path::Path, bool),
    donor: Option<&std::path::Path>,
) -> Result<crate::experiment::export::Exported> {
    let letter: crate::config::Letter = letter.parse()?;
    let req = crate::experiment::export::Request { dir, letter, seed, out, force, donor };
    let done = crate::experiment::export::export(&req)?;
    for n in &done.notes {
        print_result(&format!("note: {n}"));
    }
    let load = done.model.row().loader;
    let loss = done.final_test_loss.map_or(String::new(), |l| format!("; the run's final test loss was {l:.4}"));
    print_result(&format!(
        "exported {letter} seed {seed} to {} ({}): load it with {load}{loss}",
        out.display(),
        done.files.join(", ")
    ));
    Ok(done)
}

fn run(cli: Cli, m: &clap::ArgMatches) -> anyhow::Result<()> {
    let sub = m.subcommand().map(|(_, s)| s).context("no subcommand")?;
    match cli.cmd {
        Command::Compare(args) => run_experiment(&args, &args.config(sub)?)?,
        Command::Train { letter, args } => run_experiment(&args, &train_config(&args, sub, &letter)?)?,
        Command::Bench(args) => crate::bench::command::bench(&args)?,
        Command::Report { dir, complete } => report(&dir, complete)?,
        Command::Export { dir, letter, seed, out, force, donor } => {
            export(&dir, &letter, seed, (&out, force), donor.as_deref())?;
        }
        Command::Inspect { path, tensor, tokenizer, vocab_map, write_mapped, force, max_memory } => {
            if tokenizer.is_none() && write_mapped.is_some() {
                anyhow::bail!("--write-mapped needs --tokenizer: the vocabulary to map the donor's rows onto");
            }
            let found = crate::experiment::inspect::Inspection::open(&path, tensor.as_deref())?;
            print_result(&found.lines().join("\n"));
            if let Some(t) = tokenizer {
                let out = write_mapped.as_deref().map(|path| crate::experiment::inspect::MappedOut { path, force });
                print_result(&found.map_onto(&t, vocab_map, max_memory.map(|m| m.0), out)?.join("\n"));
            }
        }
    }
    Ok(())
}

/// The `embgraft` command: parses `args` (the program name first), runs it, prints errors as
/// one line, and returns the exit status (0; 1 for an error, 2 for flags clap rejects, 130
/// when interrupted). The binary and the Python package's `embgraft` script both call this.
pub fn main_with(args: Vec<std::ffi::OsString>) -> i32 {
    let parsed = Cli::command().try_get_matches_from(args).and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)));
    let (cli, m) = match parsed {
        Ok(p) => p,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return 0;
        }
        Err(e) => {
            crate::util::to_stderr(&format!(
                "{}; see embgraft --help",
                crate::error::one_line(&e.render().to_string())
            ));
            return 2;
        }
    };
    install_interrupt_handler();
    match crate::util::start_threads().map_err(anyhow::Error::from).and_then(|()| run(cli, &m)) {
        Ok(()) => 0,
        Err(e) => {
            if let Some(crate::Error::Interrupted(msg)) = e.downcast_ref::<crate::Error>() {
                crate::util::to_stderr(msg);
                return 130;
            }
            crate::util::to_stderr(&format!("error: {e:#}"));
            1
        }
    }
}

/// `train --config L`: the experiment of one configuration. Resuming, `--config` must name the
/// configuration the folder was made with: any other would change the experiment, as every
/// other setting would, and is refused the same way.
fn train_config(args: &RunArgs, m: &ArgMatches, letter: &str) -> Result<ExperimentConfig> {
    let mut cfg = args.config(m)?;
    let letters = parse_letters(letter)?;
    if letters.len() != 1 {
        return Err(Error::Input(format!("train runs one configuration; use compare --configs {letter} for several")));
    }
    if let Some(dir) = &args.resume {
        if cfg.graft.configs.0 != letters {
            return Err(Error::Input(format!(
                "--resume continues the experiment saved in {} (configs {}); --config {letter} would change it, so \
                 give --config {} or drop --resume",
                dir.join("config.toml").display(),
                cfg.graft.configs,
                cfg.graft.configs
            )));
        }
    }
    cfg.graft.configs.0 = letters;
    Ok(cfg)
}

/// Parses an `embgraft` command line (without the program name) into the command and the
/// experiment it describes, as the binary does. For tests and other fronts.
pub fn parse_run(args: &[&str]) -> Result<(RunArgs, ExperimentConfig)> {
    let argv = std::iter::once("embgraft").chain(args.iter().copied());
    let m = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| Error::Input(crate::error::one_line(&e.render().to_string())))?;
    let cli = Cli::from_arg_matches(&m).map_err(|e| Error::Input(e.to_string()))?;
    let (_, sub) = m.subcommand().ok_or_else(|| Error::Input("no subcommand".into()))?;
    match cli.cmd {
        Command::Compare(a) => {
            let c = a.config(sub)?;
            Ok((a, c))
        }
        Command::Train { args: a, letter } => {
            let c = train_config(&a, sub, &letter)?;
            Ok((a, c))
        }
        _ => Err(Error::Input("parse_run takes compare or train".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting (taken from the type), given with `--resume`, is refused with one line
    /// that names its flag; `--device` alone may change.
    #[test]
    fn resume_refuses_every_setting_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        for (id, flag) in ExperimentConfig::settings() {
            if RESUMABLE.contains(&id.as_str()) {
                continue;
            }
            let v = crate::config::tests_support::non_default_value(&id, &flag).unwrap();
            let mut args = vec!["compare", "--resume", d, flag.as_str()];
            if !v.is_empty() {
                args.push(v.as_str());
            }
            let err = parse_run(&args).err().unwrap_or_else(|| panic!("{flag} accepted with --resume")).to_string();
            assert!(err.contains(&format!("{flag} would change it")) && !err.contains('\n'), "{flag}: {err}");
        }
        for extra in [&["--quick"][..], &["--protocol", "honest"], &["--grid", "graft=none,wte"], &["--force"]] {
            let mut args = vec!["compare", "--resume", d];
            args.extend(extra);
            assert!(parse_run(&args).is_err(), "{extra:?}");
        }
        // --device may change: it gets as far as reading the (missing) config.toml.
        let err = parse_run(&["compare", "--resume", d, "--device", "cuda"]).err().unwrap().to_string();
        assert!(err.contains("cannot read"), "{err}");
        std::fs::write(dir.path().join("config.toml"), ExperimentConfig::default().to_toml()).unwrap();
        let (_, c) = parse_run(&["compare", "--resume", d, "--device", "cuda:1"]).unwrap();
        assert_eq!(c.run.device, "cuda:1");
    }

    /// Parsing and validation never panic, whatever the values: every setting (from the type)
    /// drawn with numbers at 0, 1, their type's maximum and beyond, negative, non-finite and
    /// random, several at once, then the arithmetic that sizes a run on a small corpus.
    #[test]
    fn arbitrary_values_never_panic() {
        use rand::{Rng, SeedableRng};
        let settings = ExperimentConfig::settings();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let u = usize::MAX.to_string();
        let u64m = u64::MAX.to_string();
        let pool = [
            "0",
            "1",
            "2",
            "-1",
            &u,
            &u64m,
            "18446744073709551616",
            "1e308",
            "-1e308",
            "NaN",
            "inf",
            "0.5",
            "",
            "x",
            "A,B",
            "all",
            "wte",
            "none",
            "h.*=1e-3",
            "3steps",
            "5",
            "4096",
            "model5",
            "contiguous",
        ];
        let tokens: Vec<u32> = (0..500u32).map(|i| i % 37).collect();
        let mut accepted = 0;
        for _ in 0..3000 {
            let mut args: Vec<String> = vec!["compare".into()];
            for _ in 0..rng.random_range(1..6) {
                let (_, flag) = &settings[rng.random_range(0..settings.len())];
                args.push(flag.clone());
                let v = if rng.random_bool(0.3) {
                    rng.random::<u64>().to_string()
                } else {
                    pool[rng.random_range(0..pool.len())].to_string()
                };
                args.push(v);
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let outcome = std::panic::catch_unwind(|| {
                let Ok((_, cfg)) = parse_run(&argv) else { return false };
                let per_epoch = crate::train::steps_per_epoch(&cfg, 7);
                let steps = crate::train::planned_steps(&cfg, 7);
                let _ = cfg.eval_interval(steps, per_epoch);
                assert_eq!(cfg.seeds().len(), cfg.run.seeds);
                let p = &cfg.protocol;
                let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0);
                let data = crate::data::corpus::Dataset::new(
                    tokens.clone(),
                    p.seq_len,
                    p.stride,
                    p.split,
                    p.test_fraction,
                    &mut r,
                );
                if let (Ok(mut d), Some(n)) = (data, p.train_tokens.as_ref()) {
                    d.keep_train_tokens(n.first().min(d.train_part_tokens()));
                    let _ = (d.test_unseen_in_training(), d.distinct_tokens());
                }
                assert!(!crate::experiment::groups(&cfg).is_empty());
                let m = &cfg.model;
                let dim = m.dim.as_ref().map_or(16, |d| d.first());
                let c = crate::model::model5::Model5Config {
                    vocab: 37,
                    dim,
                    heads: m.heads.unwrap_or(1),
                    layers: m.layers.first(),
                    context: m.context.unwrap_or(p.seq_len),
                    tied: !m.untied,
                    activation: crate::model::model5::Activation::GeluNew,
                    layer_norm_eps: 1e-5,
                };
                let _ = c.validate();
                true
            });
            match outcome {
                Ok(ok) => accepted += ok as usize,
                Err(_) => panic!("panicked on {args:?}"),
            }
        }
        assert!(accepted > 100, "only {accepted} of the drawn command lines were valid: the draw tests too little");
    }

    /// A preset sets the lecture's values and leaves the rest of a saved config alone.
    #[test]
    fn preset_keeps_what_the_lecture_does_not_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut saved = ExperimentConfig::default();
        (saved.protocol.max_steps, saved.protocol.eval_every, saved.protocol.test_fraction) = (Some(40), Some(7), 0.2);
        (saved.protocol.seq_len, saved.optimizer.lr) = (32, 0.5);
        let file = dir.path().join("config.toml");
        std::fs::write(&file, saved.to_toml()).unwrap();
        let (_, c) = parse_run(&["compare", "--config-file", file.to_str().unwrap(), "--protocol", "honest"]).unwrap();
        assert_eq!((c.protocol.max_steps, c.protocol.eval_every, c.protocol.test_fraction), (Some(40), Some(7), 0.2));
        assert_eq!(
            (c.protocol.seq_len, c.optimizer.lr, c.protocol.split),
            (8, 1e-3, crate::data::corpus::Split::Contiguous)
        );
    }

    #[test]
    fn presets_then_flags_then_validation() {
        let (_, c) = parse_run(&["compare", "--protocol", "honest", "--quick", "--seq-len", "16"]).unwrap();
        assert_eq!(
            (c.protocol.split, c.protocol.seq_len, c.protocol.max_steps),
            (crate::data::corpus::Split::Contiguous, 16, Some(60))
        );
        let (_, c) = parse_run(&[
            "train",
            "--config",
            "C",
            "--grid",
            "graft=none;wte,wpe",
            "freeze=none,wte",
            "--model",
            "model5",
        ])
        .unwrap();
        assert_eq!(c.cell(crate::config::Letter::C), ("wte,wpe", "none"));
        let err = parse_run(&["compare", "--seed", &u64::MAX.to_string(), "--seeds", "2"]).err().unwrap().to_string();
        assert!(err.contains("--seed 18446744073709551615 with --seeds 2"), "{err}");
    }
}
