//! The whole experiment: read every input (so bad input fails before anything is written), run
//! the grid of configurations x seeds, stream metrics, and write the report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::config::{ExperimentConfig, Letter};
use crate::corpus::{self, Dataset, Tokenizer};
use crate::donor::{self, Donor, Embedding};
use crate::error::{Error, Result};
use crate::loss::TokenCounts;
use crate::rng::{stream, Stream};
use crate::train::{self, Observer, Point, RunResult};

/// Everything read from disk and derived before training.
pub struct Inputs {
    pub corpus_path: PathBuf,
    pub tokenizer: Tokenizer,
    pub donor_files: donor::DonorFiles,
    pub embedding: Embedding,
    pub data: Dataset,
    pub test_counts: TokenCounts,
    /// Donor rows no token id can reach (tokenizer smaller than the donor's vocabulary).
    pub unused_rows: usize,
}

/// Facts about the inputs that go into the report.
#[derive(Serialize, Clone, Debug)]
pub struct InputSummary {
    pub corpus: String,
    pub corpus_tokens: usize,
    pub tokenizer: String,
    pub donor: String,
    pub donor_weights: String,
    pub donor_tensor: String,
    pub donor_dtype: String,
    pub vocab: usize,
    pub dim: usize,
    pub unused_donor_rows: usize,
    pub split: String,
    pub train_windows: usize,
    pub test_windows: usize,
    pub test_positions: usize,
    pub steps_per_run: usize,
}

pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s
                .strip_prefix("cuda:")
                .map_or(Ok(0), |n| n.parse::<usize>())
                .map_err(|_| Error::Input(format!("bad --device {s}; use cpu, cuda or cuda:N")))?;
            Device::new_cuda(ordinal).map_err(|e| {
                Error::Input(format!(
                    "cannot use {s} ({e}); build with --features cuda on a machine with a GPU, or use --device cpu"
                ))
            })
        }
        s => Err(Error::Input(format!("unknown --device {s}; use cpu, cuda or cuda:N"))),
    }
}

/// Reads the donor, tokenizer and corpus and cuts the windows. Nothing is written.
pub fn load_inputs(cfg: &ExperimentConfig) -> Result<Inputs> {
    cfg.validate()?;
    let donor_files = donor::locate(&cfg.donor)?;
    let embedding = Donor::open(&donor_files.weights)?.embedding(cfg.tensor.as_deref())?;

    let tokenizer = match cfg.tokenizer.as_str() {
        "auto" => match &donor_files.tokenizer {
            Some(p) => Tokenizer::from_file(p)?,
            None => Tokenizer::gpt2()?,
        },
        "gpt2" => {
            if let Some(own) = &donor_files.tokenizer {
                return Err(Error::Input(format!(
                    "--tokenizer gpt2 but the donor brings its own tokenizer ({}); its rows are indexed by that tokenizer's ids, so drop --tokenizer or use --tokenizer auto",
                    own.display()
                )));
            }
            Tokenizer::gpt2()?
        }
        path => Tokenizer::from_file(Path::new(path))?,
    };
    let ids = tokenizer.vocab_size();
    if ids > embedding.rows {
        return Err(Error::Input(format!(
            "tokenizer {} has {ids} ids but donor tensor {} has {} rows: ids would index past the matrix; use the donor's own tokenizer",
            tokenizer.name(),
            embedding.tensor,
            embedding.rows
        )));
    }

    let corpus_path = match &cfg.corpus {
        Some(p) => PathBuf::from(p),
        None => corpus::time_machine()?,
    };
    let text = corpus::read_text(&corpus_path)?;
    let tokens = tokenizer.encode(&text)?;
    let data = Dataset::new(
        tokens,
        cfg.seq_len,
        cfg.stride,
        cfg.split,
        cfg.test_fraction,
        &mut stream(cfg.seed, Stream::Split),
    )?;
    if data.max_token() as usize >= embedding.rows {
        return Err(Error::Input(format!("token id {} is past the donor's {} rows", data.max_token(), embedding.rows)));
    }
    let (xs, ys) = data.pairs(&data.test);
    let test_counts = TokenCounts::from_pairs(&xs, &ys);
    Ok(Inputs { corpus_path, tokenizer, unused_rows: embedding.rows - ids, donor_files, embedding, data, test_counts })
}

impl Inputs {
    pub fn summary(&self, cfg: &ExperimentConfig) -> InputSummary {
        InputSummary {
            corpus: self.corpus_path.display().to_string(),
            corpus_tokens: self.data.tokens.len(),
            tokenizer: self.tokenizer.name(),
            donor: self.donor_files.spec.clone(),
            donor_weights: self.donor_files.weights.display().to_string(),
            donor_tensor: self.embedding.tensor.clone(),
            donor_dtype: self.embedding.source_dtype.clone(),
            vocab: self.embedding.rows,
            dim: self.embedding.cols,
            unused_donor_rows: self.unused_rows,
            split: self.data.split.to_string(),
            train_windows: self.data.train.len(),
            test_windows: self.data.test.len(),
            test_positions: self.test_counts.positions,
            steps_per_run: train::planned_steps(cfg, self.data.train.len()),
        }
    }
}

/// Refuses an existing non-empty folder unless `force`. Creates nothing.
pub fn check_out_dir(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::Output(format!("--out {} is a file; give a folder path", out.display())));
        }
        let non_empty = std::fs::read_dir(out)
            .map_err(|e| Error::Output(format!("cannot read --out {}: {e}", out.display())))?
            .next()
            .is_some();
        if non_empty && !force {
            return Err(Error::Output(format!(
                "--out {} already holds files; choose another folder or pass --force to overwrite",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Creates the output folder and makes sure it can be written, before hours of training.
pub fn create_out_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::Output(format!("cannot create --out {}: {e}", out.display())))?;
    crate::util::write_atomic(&out.join(".embgraft-write-test"), b"")?;
    std::fs::remove_file(out.join(".embgraft-write-test")).ok();
    Ok(())
}

/// Streams metrics.csv (one line per curve point, flushed) and shows progress.
struct Recorder {
    csv: std::fs::File,
    path: PathBuf,
    bar: Option<ProgressBar>,
    run_label: String,
}

impl Observer for Recorder {
    fn on_step(&mut self, _step: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {loss:.3}"));
            bar.inc(1);
        }
    }

    fn on_point(&mut self, (letter, seed): (Letter, u64), p: &Point) -> Result<()> {
        let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", self.path.display()));
        writeln!(self.csv, "{letter},{seed},{},{},train,{:.6}", p.epoch, p.step, p.train_loss).map_err(fail)?;
        writeln!(self.csv, "{letter},{seed},{},{},test,{:.6}", p.epoch, p.step, p.test_loss).map_err(fail)?;
        self.csv.flush().map_err(fail)?;
        let line = format!(
            "{} epoch {} step {}: train {:.4}, test {:.4}",
            self.run_label, p.epoch, p.step, p.train_loss, p.test_loss
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
        Ok(())
    }
}

/// Everything `compare` measured, as written to `summary.json`.
#[derive(Serialize)]
pub struct Summary {
    pub embgraft_version: &'static str,
    pub inputs: InputSummary,
    pub runs: Vec<RunResult>,
    pub wall_seconds: f64,
}

/// Runs every configuration and seed of `cfg` and writes the run folder `out`.
pub fn compare(cfg: &ExperimentConfig, out: &Path, force: bool) -> Result<Summary> {
    let started = Instant::now();
    // Every input is checked before the output folder is created: bad input leaves no files.
    let dev = device(&cfg.device)?;
    check_out_dir(out, force)?;
    let inputs = load_inputs(cfg)?;
    let info = inputs.summary(cfg);

    let seeds: Vec<u64> = (cfg.seed..cfg.seed + cfg.seeds as u64).collect();
    let runs = seeds.len() * cfg.configs.len();
    eprintln!(
        "embgraft: {} tokens of {} ({}), donor {} {} [{} x {}], split {}: {} train / {} test windows",
        info.corpus_tokens,
        info.corpus,
        info.tokenizer,
        info.donor,
        info.donor_tensor,
        info.vocab,
        info.dim,
        info.split,
        info.train_windows,
        info.test_windows
    );
    eprintln!(
        "plan: {runs} runs (configs {} x seeds {:?}), {} steps each of batch {}, {} steps in all",
        cfg.configs.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","),
        seeds,
        info.steps_per_run,
        cfg.batch_size,
        runs * info.steps_per_run
    );
    if inputs.unused_rows > 0 {
        eprintln!(
            "note: the tokenizer reaches {} of the donor's {} rows; {} rows are never used",
            info.vocab - inputs.unused_rows,
            info.vocab,
            inputs.unused_rows
        );
    }

    create_out_dir(out)?;
    crate::util::write_atomic(&out.join("config.toml"), cfg.to_toml().as_bytes())?;
    let csv_path = out.join("metrics.csv");
    let mut csv = std::fs::File::create(&csv_path)
        .map_err(|e| Error::Output(format!("cannot create {}: {e}", csv_path.display())))?;
    writeln!(csv, "config,seed,epoch,step,split,loss").map_err(|e| Error::Output(e.to_string()))?;
    let mut rec = Recorder { csv, path: csv_path, bar: None, run_label: String::new() };

    let shared =
        train::Shared { data: &inputs.data, test: &inputs.test_counts, donor: &inputs.embedding, device: &dev };
    let mut results = Vec::new();
    for &seed in &seeds {
        for (i, &letter) in cfg.configs.iter().enumerate() {
            rec.run_label = format!("[{}/{}] {letter} ({}) seed {seed}", results.len() + 1, runs, letter.describe());
            rec.bar = std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::new(info.steps_per_run as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, ETA {eta} {msg}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                );
                bar.set_prefix(rec.run_label.clone());
                bar
            });
            if rec.bar.is_none() {
                eprintln!("{} ...", rec.run_label);
            }
            let (mut result, model) = train::run(cfg, letter, seed, &shared, &mut rec)?;
            result.sample = sample_text(&model, &inputs.tokenizer, cfg, seed, i)?;
            if let Some(bar) = rec.bar.take() {
                bar.finish_and_clear();
            }
            eprintln!("{} done in {:.1} s", rec.run_label, result.wall_seconds);
            results.push(result);
        }
    }

    let summary = Summary {
        embgraft_version: env!("CARGO_PKG_VERSION"),
        inputs: info,
        runs: results,
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    crate::report::write_all(out, cfg, &summary)?;
    Ok(summary)
}

/// Two sentences (at most `cfg.sample_tokens` tokens) from the trained model, after "The".
fn sample_text(
    model: &crate::model::Model1,
    tok: &Tokenizer,
    cfg: &ExperimentConfig,
    seed: u64,
    config_index: usize,
) -> Result<String> {
    let prompt = tok.encode("The")?;
    let mut rng = stream(seed.wrapping_add(1000 * config_index as u64), Stream::Sample);
    let ends_sentence = |id: u32| {
        let s = tok.decode(&[id]);
        s.contains('.') || s.contains('!') || s.contains('?')
    };
    let ids = model.sample(&prompt, cfg.sample_tokens, &ends_sentence, 2, &mut rng)?;
    let mut all = prompt;
    all.extend(ids);
    Ok(tok.decode(&all).split_whitespace().collect::<Vec<_>>().join(" "))
}
