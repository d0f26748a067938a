//! The whole experiment: read every input (so bad input fails before anything is written), run
//! the grid of configurations x seeds, stream metrics, and write the report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Axis, ExperimentConfig, Letter, Sweep};
use crate::corpus::{self, Dataset, Tokenizer};
use crate::donor::{self, Donor, Embedding};
use crate::error::{Error, Result};
use crate::folder::{self, Mode};
use crate::loss::TokenCounts;
use crate::provenance::{self, Fingerprints, MadeUnder};
use crate::results::{InputSummary, Point, RunResult, Summary};
use crate::rng::{stream, Stream};
use crate::train::{self, Observer};

/// Everything read from disk and derived before training.
pub struct Inputs {
    pub corpus_path: PathBuf,
    /// Words of the corpus (split at white space).
    pub words: usize,
    pub tokenizer: Tokenizer,
    pub donor_files: donor::DonorFiles,
    /// The donor file, memory-mapped: Model 5 grafts more of it than the embedding. None for a
    /// donor handed over in memory (the Python front's array), which holds the embedding only.
    pub donor: Option<Donor>,
    pub embedding: Embedding,
    /// Model 5's sizes, resolved against the donor (None for Model 1).
    pub model5: Option<crate::model5::Model5Config>,
    pub data: Dataset,
    pub test_counts: TokenCounts,
    /// The fixed training subset evaluated like the test set, and its (input, target) counts.
    pub train_eval_windows: Vec<usize>,
    pub train_eval_counts: TokenCounts,
    pub input_freq: Vec<u32>,
    pub bigram: crate::baseline::Bigram,
    /// Donor rows no token id can reach (tokenizer smaller than the donor's vocabulary).
    pub unused_rows: usize,
    /// Model 1's initial values, drawn once per seed for all its configurations.
    pub init: train::InitCache,
    /// The corpus, donor and tokenizer by content (the settings' fingerprint is the config's).
    pub prints: Fingerprints,
}

pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s
                .strip_prefix("cuda:")
                .map_or(Ok(0), |n| n.parse::<usize>())
                .map_err(|_| Error::Input(format!("bad --device {s}; use cpu, cuda or cuda:N")))?;
            let dev = Device::new_cuda(ordinal).map_err(|e| {
                Error::Input(format!(
                    "cannot use {s} ({e}); build with --features cuda on a machine with a GPU, or use --device cpu"
                ))
            })?;
            // Every tensor and kernel of a run lives on this device's one stream, so the
            // cross-stream events candle records around each op are pure cost here.
            #[cfg(feature = "cuda")]
            if let Ok(d) = dev.as_cuda_device() {
                // SAFETY: one stream only: nothing is used on another stream, so no ordering
                // between streams needs to be enforced.
                unsafe { d.disable_event_tracking() };
            }
            #[cfg(feature = "cuda")]
            crate::cuda::keep_freed_memory(&dev);
            Ok(dev)
        }
        s => Err(Error::Input(format!("unknown --device {s}; use cpu, cuda or cuda:N"))),
    }
}

/// Reads the donor, tokenizer and corpus and cuts the windows. Nothing is written.
pub fn load_inputs(cfg: &ExperimentConfig) -> Result<Inputs> {
    load_inputs_with(cfg, None)
}

/// As [`load_inputs`], with the donor's embedding given in memory instead of read from
/// `--donor` (whose value then only names it in the report).
pub fn load_inputs_with(cfg: &ExperimentConfig, memory: Option<&Embedding>) -> Result<Inputs> {
    cfg.validate()?;
    let (donor_files, donor, embedding) = open_donor(cfg, memory)?;
    let model5 = match cfg.model.kind {
        crate::config::ModelKind::Model5 => Some(model5_sizes(cfg, &donor_files, &embedding)?),
        crate::config::ModelKind::Model1 => None,
    };

    let tokenizer = tokenizer_for(cfg, &donor_files)?;
    let cap = cfg.data.max_input_size.0;
    let ids = tokenizer.vocab_size();
    if ids > embedding.rows {
        return Err(Error::Input(format!(
            "tokenizer {} has {ids} ids but donor tensor {} has {} rows: ids would index past the matrix; use the donor's own tokenizer",
            tokenizer.name(),
            embedding.tensor,
            embedding.rows
        )));
    }

    let corpus_path = match cfg.data.corpora.as_slice() {
        [] => corpus::time_machine()?,
        [one] => PathBuf::from(one),
        _ => unreachable!("one corpus at a time: compare splits the list"),
    };
    let text = corpus::read_text(&corpus_path, cap)?;
    let prints = Fingerprints {
        settings: String::new(),
        corpus: provenance::fingerprint(text.as_bytes()),
        donor: donor_fingerprint(cfg, donor.as_ref(), &embedding),
        tokenizer: tokenizer.fingerprint(),
    };
    let words = text.split_whitespace().count();
    let tokens = tokenizer.encode(&text)?;
    let mut data = Dataset::new(
        tokens,
        cfg.protocol.seq_len,
        cfg.protocol.stride,
        cfg.protocol.split,
        cfg.protocol.test_fraction,
        &mut stream(cfg.run.seed, Stream::Split),
    )?;
    if let Some(n) = cfg.protocol.train_tokens.as_ref().map(Sweep::first) {
        cut_training_part(cfg, &mut data, n, &corpus_path)?;
    }
    if data.max_token() as usize >= embedding.rows {
        return Err(Error::Input(format!("token id {} is past the donor's {} rows", data.max_token(), embedding.rows)));
    }
    let (xs, ys) = data.pairs(&data.test);
    let test_counts = TokenCounts::from_pairs(&xs, &ys);
    let train_eval_windows = data.train_eval_windows();
    let (xs, ys) = data.pairs(&train_eval_windows);
    let train_eval_counts = TokenCounts::from_pairs(&xs, &ys);
    let bigram = crate::baseline::bigram(&data, embedding.rows);
    let mut input_freq = vec![0u32; embedding.rows];
    for &w in &data.train {
        data.inputs(w).iter().for_each(|&t| input_freq[t as usize] += 1);
    }
    check_plan(cfg, donor.as_ref(), &embedding, model5.as_ref())?;
    Ok(Inputs {
        corpus_path,
        words,
        tokenizer,
        unused_rows: embedding.rows - ids,
        init: Default::default(),
        donor_files,
        donor,
        embedding,
        model5,
        data,
        test_counts,
        train_eval_windows,
        train_eval_counts,
        input_freq,
        bigram,
        prints,
    })
}

/// The donor by content: the embedding's values; for Model 5, which grafts more of it, the
/// whole weights file too.
fn donor_fingerprint(cfg: &ExperimentConfig, donor: Option<&Donor>, emb: &Embedding) -> String {
    let mut h = provenance::Hasher::default();
    h.update(crate::util::f32_bytes(&emb.data));
    if let (crate::config::ModelKind::Model5, Some(d)) = (cfg.model.kind, donor) {
        h.update(d.bytes());
    }
    h.finish()
}

/// `--train-tokens N`: only the training part's first N tokens train; refused when the
/// training part is shorter, or when what is left does not fill one batch.
fn cut_training_part(cfg: &ExperimentConfig, data: &mut Dataset, n: usize, corpus: &Path) -> Result<()> {
    let part = data.train_part_tokens();
    if n > part {
        return Err(Error::Input(format!(
            "--train-tokens {}: the training part of {} holds {part} tokens ({} split); use at most {part}, or a longer corpus",
            Sweep::show(n),
            corpus.display(),
            data.split
        )));
    }
    data.keep_train_tokens(n);
    let (p, b) = (&cfg.protocol, cfg.protocol.batch_size);
    if data.train.len() < b {
        let need = b.saturating_sub(1).saturating_mul(p.stride).saturating_add(p.seq_len + 1);
        let need = match data.split {
            corpus::Split::Windows => (need as f64 / (1.0 - p.test_fraction)).ceil() as usize,
            corpus::Split::Contiguous => need,
        };
        return Err(Error::Input(format!(
            "--train-tokens {} leaves {} training windows, fewer than one batch of {b}; give at least about {need} tokens, or a smaller --batch-size",
            Sweep::show(n),
            data.train.len()
        )));
    }
    Ok(())
}

/// The donor's files, its memory-mapped weights and the embedding to graft; a donor given in
/// memory has no files and no map.
fn open_donor(
    cfg: &ExperimentConfig,
    memory: Option<&Embedding>,
) -> Result<(donor::DonorFiles, Option<Donor>, Embedding)> {
    Ok(match memory {
        Some(e) => {
            donor::check_finite(&e.tensor, e.cols, &e.data)?;
            let files = donor::DonorFiles {
                spec: cfg.data.the_donor().to_string(),
                weights: PathBuf::from("(in memory)"),
                tokenizer: None,
                config: None,
            };
            (files, None, e.clone())
        }
        None => {
            let files = donor::locate(cfg.data.the_donor())?;
            let donor = Donor::open(&files.weights)?;
            let embedding = donor.embedding(cfg.data.tensor.as_deref())?;
            (files, Some(donor), embedding)
        }
    })
}

/// `--tokenizer`: auto (the donor's own, else GPT-2's BPE), gpt2 (refused when the donor brings
/// its own: its rows follow that tokenizer's ids), or a tokenizer.json path.
fn tokenizer_for(cfg: &ExperimentConfig, donor_files: &donor::DonorFiles) -> Result<Tokenizer> {
    Ok(match cfg.data.tokenizer.as_str() {
        "auto" => match &donor_files.tokenizer {
            Some(p) => Tokenizer::from_file(p, cfg.data.max_input_size.0)?,
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
        path => Tokenizer::from_file(Path::new(path), cfg.data.max_input_size.0)?,
    })
}

/// Every pattern of every configuration names something, and every graft fits: found in the
/// donor with the right shape. Checked on a throwaway model before anything is written.
fn check_plan(
    cfg: &ExperimentConfig,
    donor: Option<&Donor>,
    emb: &Embedding,
    m5: Option<&crate::model5::Model5Config>,
) -> Result<()> {
    let probe = match m5 {
        Some(c) => {
            let mut r = stream(0, Stream::InitHead);
            Some(crate::model5::Model5::random(c.clone(), &mut r.clone(), &mut r, &Device::Cpu)?)
        }
        None => None,
    };
    let params = match &probe {
        Some(m) => m.params.clone(),
        None => {
            let mut p = crate::params::Params::default();
            let tiny = || candle_core::Var::zeros(1, candle_core::DType::F32, &Device::Cpu);
            p.insert("wte", tiny()?);
            p.insert("lm_head", tiny()?);
            p
        }
    };
    let mut union = crate::params::Names::new();
    for &l in &cfg.graft.configs.0 {
        let (g, f) = cfg.cell(l);
        union.extend(params.select(g, "--graft")?);
        params.select(f, "--freeze")?;
    }
    for g in &cfg.graft.lr_groups {
        params.select(&g.pattern, "--lr-group")?;
    }
    if probe.is_some() && !union.is_empty() {
        crate::graft::graft_by_name(&params, donor, emb, &union)?;
    }
    Ok(())
}

/// Model 5's sizes: flags first, then the donor's `config.json` (width and heads), then the
/// embedding's width; the context defaults to the window length.
fn model5_sizes(
    cfg: &ExperimentConfig,
    files: &donor::DonorFiles,
    emb: &Embedding,
) -> Result<crate::model5::Model5Config> {
    use crate::model5::{Activation, Model5Config};
    let dc = match &files.config {
        Some(p) => donor::DonorConfig::read(p)?,
        None => donor::DonorConfig::default(),
    };
    let s = &cfg.model;
    let dim = s.dim.as_ref().map(Sweep::first).or(dc.n_embd).unwrap_or(emb.cols);
    let heads = match (s.heads, dc.n_head) {
        (Some(h), _) => h,
        (None, Some(h)) if dc.n_embd == Some(dim) => h,
        _ => {
            // About 64 wide per head, as GPT-2, and dividing the width (at most 1024 heads, so
            // the search is short whatever the width).
            let mut h = (dim / 64).clamp(1, 1024);
            while !dim.is_multiple_of(h) {
                h -= 1;
            }
            h
        }
    };
    let activation = match dc.activation_function.as_deref() {
        Some("gelu") => Activation::Gelu,
        _ => Activation::GeluNew,
    };
    let c = Model5Config {
        vocab: emb.rows,
        dim,
        heads,
        layers: s.layers.first(),
        context: s.context.unwrap_or(cfg.protocol.seq_len),
        tied: !s.untied,
        activation,
        layer_norm_eps: dc.layer_norm_epsilon.unwrap_or(1e-5),
    };
    c.validate()?;
    Ok(c)
}

impl Inputs {
    /// What every run on these inputs shares.
    pub fn shared<'a>(&'a self, device: &'a Device) -> train::Shared<'a> {
        train::Shared {
            data: &self.data,
            test: &self.test_counts,
            train_eval: &self.train_eval_counts,
            train_eval_windows: &self.train_eval_windows,
            input_freq: &self.input_freq,
            donor: &self.embedding,
            device,
            donor_file: self.donor.as_ref(),
            model5: self.model5.as_ref(),
            init: &self.init,
        }
    }

    pub fn summary(&self, cfg: &ExperimentConfig) -> InputSummary {
        let (distinct_tokens, distinct_train_tokens) = self.data.distinct_tokens();
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
            test_positions_seen_in_training: self.data.leakage(),
            bigram: self.bigram.clone(),
            steps_per_run: train::planned_steps(cfg, self.data.train.len()),
            model: train::model_label(cfg, self.model5.as_ref()),
            train_tokens_limit: cfg.protocol.train_tokens.as_ref().map(Sweep::first),
            train_tokens: self.data.train_part_tokens(),
            words: self.words,
            distinct_tokens,
            distinct_train_tokens,
            test_targets_unseen_in_training: self.data.test_unseen_in_training(),
            fingerprints: Some(Fingerprints {
                settings: provenance::settings_fingerprint(&provenance::settings_of(cfg)),
                ..self.prints.clone()
            }),
        }
    }
}

/// What a cell of this group is made under: its settings and the inputs' fingerprints.
fn made_under(cfg: &ExperimentConfig, info: &InputSummary) -> MadeUnder {
    MadeUnder { fingerprints: info.fingerprints.clone().unwrap_or_default(), settings: provenance::settings_of(cfg) }
}

/// Refuses an existing non-empty folder unless `force`. Creates nothing.
pub fn check_out_dir(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::Output(format!("--out {} is a file; give a folder path", out.display())));
        }
        if folder::holds_files(out)? && !force {
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

/// How `compare` treats the output folder and when it stops.
pub struct Control<'a> {
    /// Write into an existing non-empty folder.
    pub force: bool,
    /// Continue the experiment already in the folder: finished runs are kept, an unfinished
    /// one continues from its last checkpoint.
    pub resume: bool,
    /// Asked after every step; true stops the experiment (Ctrl-C).
    pub should_stop: &'a dyn Fn() -> bool,
    /// The donor's embedding in memory (the Python front's array) instead of `--donor`'s file.
    pub donor: Option<&'a Embedding>,
    /// Progress goes here instead of the terminal (a notebook's bar).
    pub progress: Option<&'a dyn Fn(&Progress)>,
    /// Run only this shard's cells of the grid, into a folder other shards share.
    pub shard: Option<Shard>,
}

impl Default for Control<'_> {
    fn default() -> Self {
        Control { force: false, resume: false, should_stop: &|| false, donor: None, progress: None, shard: None }
    }
}

/// What a run reports while it trains, for a front that shows progress its own way.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A run starts (or continues from `done` steps) and will take `steps`.
    Start {
        run: String,
        done: usize,
        steps: usize,
    },
    Step {
        step: usize,
        loss: f64,
    },
    Point {
        run: String,
        epoch: usize,
        step: usize,
        train: f64,
        test: f64,
    },
    Finish {
        run: String,
    },
}

fn csv_rows(letter: Letter, seed: u64, p: &Point) -> String {
    let (e, s) = (p.epoch, p.step);
    let mut rows =
        format!("{letter},{seed},{e},{s},train,{:.6}\n{letter},{seed},{e},{s},test,{:.6}\n", p.train_loss, p.test_loss);
    if let Some(l) = p.train_eval_loss {
        rows.push_str(&format!("{letter},{seed},{e},{s},train_eval,{l:.6}\n"));
    }
    rows
}

fn run_file(out: &Path, letter: Letter, seed: u64) -> PathBuf {
    out.join(format!("run-{letter}-{seed}.json"))
}

fn checkpoint_file(out: &Path, letter: Letter, seed: u64) -> PathBuf {
    out.join(format!("checkpoint-{letter}-{seed}.safetensors"))
}

/// Streams metrics.csv (one line per curve point, flushed), saves checkpoints and shows
/// progress.
struct Recorder<'a> {
    out: PathBuf,
    /// metrics.csv as it grows; none for a shard (`embgraft report` writes it from the cells).
    csv: Option<std::fs::File>,
    bar: Option<ProgressBar>,
    run_label: String,
    should_stop: &'a dyn Fn() -> bool,
    /// A front's own progress display; the terminal bar and lines are off then.
    progress: Option<&'a dyn Fn(&Progress)>,
    started: Instant,
    /// Seconds from the start to the first optimizer step done.
    first_step: Option<f64>,
    /// `--checkpoint-every`, and when the current run last saved (or started).
    checkpoint_every: Option<std::time::Duration>,
    last_checkpoint: Instant,
    /// What this group's cells are made under: written into each run file and checkpoint.
    made: MadeUnder,
}

impl<'a> Recorder<'a> {
    /// Saves config.toml and inputs.json (a shard checked them already) and starts metrics.csv
    /// with what the kept runs and checkpoints measured, so a resumed experiment's file equals
    /// an uninterrupted one's.
    fn open(
        out: &Path,
        cfg: &ExperimentConfig,
        grid: &[(u64, Letter)],
        priors: &[Prior],
        should_stop: &'a dyn Fn() -> bool,
        started: Instant,
        info: &InputSummary,
        shared_folder: bool,
    ) -> Result<Self> {
        if !shared_folder {
            let prints = info.fingerprints.clone().unwrap_or_default();
            crate::util::write_atomic(&out.join("config.toml"), provenance::config_toml(cfg, &prints).as_bytes())?;
            crate::util::write_atomic(&out.join("inputs.json"), inputs_json(info)?.as_bytes())?;
        }
        let csv = match shared_folder {
            true => None,
            false => {
                let mut head = String::new();
                for (&(seed, letter), p) in grid.iter().zip(priors) {
                    match p {
                        Prior::Finished(r) => head.push_str(&metrics_rows(letter, seed, &r.points)),
                        Prior::Checkpoint(c) => head.push_str(&metrics_rows(letter, seed, &c.points)),
                        Prior::Nothing => {}
                    }
                }
                let csv_path = out.join("metrics.csv");
                crate::util::write_atomic(&csv_path, format!("{METRICS_HEADER}{head}").as_bytes())?;
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&csv_path)
                    .map_err(|e| Error::Output(format!("cannot open {}: {e}", csv_path.display())))?;
                Some(f)
            }
        };
        Ok(Recorder {
            out: out.to_path_buf(),
            csv,
            bar: None,
            run_label: String::new(),
            should_stop,
            progress: None,
            started,
            first_step: None,
            checkpoint_every: cfg.run.checkpoint_every.0,
            last_checkpoint: Instant::now(),
            made: made_under(cfg, info),
        })
    }
}

impl Observer for Recorder<'_> {
    fn on_step(&mut self, step: usize, loss: f64) {
        if let Some(f) = self.progress {
            f(&Progress::Step { step, loss });
        }
        if self.first_step.is_none() {
            let t = self.started.elapsed().as_secs_f64();
            self.first_step = Some(t);
            let line = format!("first step done {t:.2} s after start");
            match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {loss:.3}"));
            bar.inc(1);
        }
    }

    fn on_point(&mut self, (letter, seed): (Letter, u64), p: &Point) -> Result<()> {
        let fail =
            |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", self.out.join("metrics.csv").display()));
        if let Some(csv) = &mut self.csv {
            csv.write_all(csv_rows(letter, seed, p).as_bytes()).map_err(fail)?;
            csv.flush().map_err(fail)?;
        }
        if let Some(f) = self.progress {
            let (run, epoch, step, train, test) = (self.run_label.clone(), p.epoch, p.step, p.train_loss, p.test_loss);
            f(&Progress::Point { run, epoch, step, train, test });
            return Ok(());
        }
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

    fn on_checkpoint(&mut self, (letter, seed): (Letter, u64), c: &crate::checkpoint::Checkpoint) -> Result<()> {
        crate::checkpoint::save(&checkpoint_file(&self.out, letter, seed), c, Some(&self.made))?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn should_stop(&self) -> bool {
        (self.should_stop)()
    }

    fn checkpoint_due(&mut self) -> bool {
        self.checkpoint_every.is_some_and(|every| self.last_checkpoint.elapsed() >= every)
    }
}

/// What was already done in a folder being resumed, in the grid's order.
enum Prior {
    Finished(Box<RunResult>),
    Checkpoint(Box<crate::checkpoint::Checkpoint>),
    Nothing,
}

/// What a folder holds of one cell, checked against what this experiment makes it under
/// (`made`). `legacy` is set when the cell's file has no fingerprints (an older embgraft's).
fn prior(out: &Path, letter: Letter, seed: u64, made: &MadeUnder, legacy: &mut bool) -> Result<Prior> {
    let mut check = |found: Option<MadeUnder>, file: &Path| {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match found {
            Some(f) => provenance::check_cell(made, &f, &name, "config.toml"),
            None => {
                *legacy = true;
                Ok(())
            }
        }
    };
    let done = run_file(out, letter, seed);
    if done.exists() {
        let mut r = read_run_file(&done)?;
        check(r.made_under.take(), &done)?;
        return Ok(Prior::Finished(Box::new(r)));
    }
    let ckpt = checkpoint_file(out, letter, seed);
    if ckpt.exists() {
        let (c, found) = crate::checkpoint::load(&ckpt)?;
        check(found, &ckpt)?;
        return Ok(Prior::Checkpoint(Box::new(c)));
    }
    Ok(Prior::Nothing)
}

fn read_run_file(path: &Path) -> Result<RunResult> {
    let text =
        crate::util::read_small(path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Input(format!(
            "{} is corrupt or truncated ({e}); delete it and run that cell again (its --shard, or --resume)",
            path.display()
        ))
    })
}

/// A resumed or shared group folder: the inputs read now must be the ones its inputs.json
/// recorded when it started.
fn check_folder_inputs(out: &Path, info: &InputSummary) -> Result<()> {
    let path = out.join("inputs.json");
    if !path.exists() {
        return Ok(());
    }
    let text =
        crate::util::read_small(&path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let then: InputSummary = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{} is damaged ({e}); delete it and run again", path.display())))?;
    match (&then.fingerprints, &info.fingerprints) {
        (Some(a), Some(b)) => provenance::check_inputs(a, b, [&info.corpus, &info.donor, &info.tokenizer]),
        _ => Ok(()),
    }
}

/// Runs every configuration and seed of `cfg` and writes the run folder `out`. Stopped by
/// `ctl.should_stop`, it writes everything measured so far and returns
/// [`Error::Interrupted`]; `ctl.resume` then continues where it stopped.
pub fn compare(cfg: &ExperimentConfig, out: &Path, ctl: &Control) -> Result<Summary> {
    if groups(cfg).len() > 1 {
        return Err(Error::Input(
            "compare takes one donor, one corpus and no sweep; use compare_corpora for several".into(),
        ));
    }
    compare_corpora(cfg, out, ctl)?
        .pop()
        .map(|(_, s)| s)
        .ok_or_else(|| Error::Input(format!("no cell of this experiment falls to this shard ({out:?})")))
}

/// The (seed, config) cells of a one-group experiment, in the order they run: seed by seed.
pub fn grid(cfg: &ExperimentConfig) -> Vec<(u64, Letter)> {
    cfg.seeds().into_iter().flat_map(|s| cfg.graft.configs.0.iter().map(move |&l| (s, l))).collect()
}

/// The grid of runs on inputs already read and checked: announce the plan, find what a
/// resumed folder already holds, open the folder and its metrics stream, run each cell, and
/// write the results. With `only` (a shard's cells) it runs just those, in a folder other
/// shards share, and writes no report: `embgraft report` builds it from every shard's cells.
fn run_grid(
    cfg: &ExperimentConfig,
    inputs: &Inputs,
    dev: &Device,
    out: &Path,
    ctl: &Control,
    started: Instant,
    only: Option<&[(u64, Letter)]>,
) -> Result<Summary> {
    let info = inputs.summary(cfg);
    let seconds_to_inputs = started.elapsed().as_secs_f64();
    // A shard's cells come in the grid's order already (see `shard_cells`).
    let grid: Vec<(u64, Letter)> = only.map_or_else(|| grid(cfg), <[_]>::to_vec);
    announce(cfg, &info, inputs.unused_rows, grid.len());
    create_out_dir(out)?;
    // A shard claims its cells (two tasks never train one) and clears only their leftovers;
    // the folder's one writer clears them all.
    let cells: Vec<String> = grid.iter().map(|(seed, l)| format!("{l}-{seed}")).collect();
    let _claims = match only {
        Some(_) => cells.iter().map(|c| folder::claim_cell(out, c)).collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let mine = |name: &str| match only {
        Some(_) => {
            cells.iter().any(|c| name == format!("run-{c}.json") || name == format!("checkpoint-{c}.safetensors"))
        }
        None => true,
    };
    folder::remove_leftovers(out, &mine);
    // A shard always takes up what its folder holds: a finished cell is kept, an unfinished one
    // continues from its checkpoint (a requeued or preempted array task). What it takes up must
    // have been made from these inputs and settings.
    let take_up = ctl.resume || only.is_some();
    if take_up {
        check_folder_inputs(out, &info)?;
    }
    if only.is_some() {
        write_once_or_check_config(out, cfg, &info)?;
        write_once_or_check_inputs(out, &info)?;
    }
    let made = made_under(cfg, &info);
    let mut legacy = false;
    let priors = grid
        .iter()
        .map(|&(seed, letter)| match take_up {
            true => prior(out, letter, seed, &made, &mut legacy),
            false => Ok(Prior::Nothing),
        })
        .collect::<Result<Vec<_>>>()?;
    if legacy {
        eprintln!(
            "note: {} holds cells written by an embgraft without fingerprints; they are taken up without checking what made them",
            out.display()
        );
    }
    let mut rec = Recorder::open(out, cfg, &grid, &priors, ctl.should_stop, started, &info, only.is_some())?;
    rec.progress = ctl.progress;

    let shared = inputs.shared(dev);
    let mut results = Vec::new();
    for (&(seed, letter), prior) in grid.iter().zip(priors) {
        rec.run_label =
            format!("[{}/{}] {letter} ({}) seed {seed}", results.len() + 1, grid.len(), cfg.describe(letter));
        let resume = match prior {
            Prior::Finished(r) => {
                eprintln!("{} kept from the earlier run", rec.run_label);
                results.push(*r);
                continue;
            }
            Prior::Checkpoint(c) => {
                eprintln!("{} continues from its checkpoint at step {}", rec.run_label, c.step);
                Some(*c)
            }
            Prior::Nothing => None,
        };
        let result = run_cell(cfg, inputs, &shared, (letter, seed), resume, &mut rec, info.steps_per_run)?;
        let interrupted = result.interrupted;
        results.push(result);
        if interrupted {
            break;
        }
    }

    let interrupted = results.last().is_some_and(|r| r.interrupted);
    let summary = Summary {
        embgraft_version: env!("CARGO_PKG_VERSION").to_string(),
        inputs: info,
        analysis: crate::stats::analyse(&results, train::steps_per_epoch(cfg, inputs.data.train.len())),
        runs: results,
        wall_seconds: started.elapsed().as_secs_f64(),
        seconds_to_inputs,
        seconds_to_first_step: rec.first_step,
    };
    if only.is_none() {
        crate::report::write_all(out, cfg, &summary)?;
    }
    if interrupted {
        return Err(Error::Interrupted(format!(
            "interrupted: results so far are in {}; continue with {} {}",
            out.display(),
            if only.is_some() { "the same --shard, or --resume" } else { "--resume" },
            out.display()
        )));
    }
    Ok(summary)
}

/// What will run, on what, before anything does.
fn announce(cfg: &ExperimentConfig, info: &InputSummary, unused_rows: usize, runs: usize) {
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
    eprintln!("model: {}", info.model);
    eprintln!(
        "plan: {runs} runs (configs {} x seeds {:?}), {} steps each of batch {}, {} steps in all",
        cfg.graft.configs,
        cfg.seeds(),
        info.steps_per_run,
        cfg.protocol.batch_size,
        info.steps_per_run.saturating_mul(runs)
    );
    if unused_rows > 0 {
        eprintln!(
            "note: the tokenizer reaches {} of the donor's {} rows; {unused_rows} rows are never used",
            info.vocab - unused_rows,
            info.vocab
        );
    }
}

/// Trains one cell of the grid (from its checkpoint, if any), samples its text, and saves its
/// result file unless it was interrupted.
fn run_cell(
    cfg: &ExperimentConfig,
    inputs: &Inputs,
    shared: &train::Shared,
    (letter, seed): (Letter, u64),
    resume: Option<crate::checkpoint::Checkpoint>,
    rec: &mut Recorder,
    steps: usize,
) -> Result<RunResult> {
    if let Some(f) = rec.progress {
        f(&Progress::Start { run: rec.run_label.clone(), done: resume.as_ref().map_or(0, |c| c.step), steps });
    }
    rec.bar = (std::io::stderr().is_terminal() && rec.progress.is_none()).then(|| {
        let bar = ProgressBar::new(steps as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, ETA {eta} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(rec.run_label.clone());
        bar.set_position(resume.as_ref().map_or(0, |c| c.step as u64));
        bar
    });
    if rec.bar.is_none() && rec.progress.is_none() {
        eprintln!("{} ...", rec.run_label);
    }
    rec.last_checkpoint = Instant::now();
    let (mut result, model) = train::run(cfg, letter, seed, shared, resume, rec)?;
    result.sample = sample_text(&model, &inputs.tokenizer, cfg, seed, letter)?;
    if let Some(bar) = rec.bar.take() {
        bar.finish_and_clear();
    }
    if let Some(f) = rec.progress {
        f(&Progress::Finish { run: rec.run_label.clone() });
    }
    if result.interrupted {
        eprintln!("{} interrupted at step {}", rec.run_label, result.steps);
    } else {
        let stamped = RunResult { made_under: Some(rec.made.clone()), ..result.clone() };
        let json = serde_json::to_string_pretty(&stamped).map_err(|e| Error::Output(e.to_string()))?;
        crate::util::write_atomic(&run_file(&rec.out, letter, seed), json.as_bytes())?;
        let _ = std::fs::remove_file(checkpoint_file(&rec.out, letter, seed));
        eprintln!("{} done in {:.1} s", rec.run_label, result.wall_seconds);
    }
    Ok(result)
}

/// One group of an experiment's cells: a (donor, corpus) pair at one value of each swept
/// setting. Each group is one-donor, one-corpus, one-value config and a folder of its own.
pub struct Group {
    /// The folder it writes, relative to `--out`: empty for an experiment of one group (it
    /// writes into `--out` itself), else its pair's and swept values' names joined by `__`
    /// (`minilm__shakespeare__tokens-20k`).
    pub name: String,
    /// The pair's part of the name (empty for one pair): the groups of a sweep that share it
    /// and the other swept values form one series.
    pub pair: String,
    /// The swept settings' values at this group, in [`ExperimentConfig::sweeps`] order.
    pub point: Vec<(Axis, usize)>,
    pub cfg: ExperimentConfig,
}

/// Every group, donor by donor, then corpus, then swept values (data size, layers, width).
/// Pair folders are named after the corpus (one donor), the donor (one corpus) or both
/// (`donor__corpus`), made unique with `-2`, `-3`, …; swept values add `tokens-20k`,
/// `layers-2`, `dim-256`.
pub fn groups(cfg: &ExperimentConfig) -> Vec<Group> {
    let donors: Vec<String> = if cfg.data.donor.is_empty() { vec!["gpt2".into()] } else { cfg.data.donor.clone() };
    let corpora: Vec<Option<String>> =
        if cfg.data.corpora.is_empty() { vec![None] } else { cfg.data.corpora.iter().cloned().map(Some).collect() };
    let mut pairs: Vec<(String, ExperimentConfig)> = Vec::new();
    for d in &donors {
        for c in &corpora {
            let corpus = c.as_deref().map_or("timemachine".to_string(), corpus_name);
            let base = match (donors.len() > 1, corpora.len() > 1) {
                (true, true) => format!("{}__{corpus}", donor_name(d)),
                (true, false) => donor_name(d),
                (false, true) => corpus,
                (false, false) => String::new(),
            };
            let mut name = base.clone();
            let mut k = 2;
            while pairs.iter().any(|(n, _)| *n == name) {
                name = format!("{base}-{k}");
                k += 1;
            }
            let mut one = cfg.clone();
            one.data.donor = vec![d.clone()];
            one.data.corpora = c.iter().cloned().collect();
            pairs.push((name, one));
        }
    }
    let mut out = Vec::new();
    for (pair, one) in pairs {
        // Every combination of the swept values, the last setting varying fastest.
        let mut points: Vec<Vec<(Axis, usize)>> = vec![Vec::new()];
        for (axis, values) in cfg.sweeps() {
            points = points
                .into_iter()
                .flat_map(|p| values.iter().map(move |&v| [p.clone(), vec![(axis, v)]].concat()))
                .collect();
        }
        for point in points {
            let cfg = point.iter().fold(one.clone(), |c, &(a, v)| c.at(a, v));
            let parts = std::iter::once(pair.clone())
                .filter(|p| !p.is_empty())
                .chain(point.iter().map(|&(a, v)| format!("{}-{}", a.short(), Sweep::show(v))));
            out.push(Group { name: parts.collect::<Vec<_>>().join("__"), pair: pair.clone(), point, cfg });
        }
    }
    out
}

/// A folder name for a donor: `gpt2`, a Hub id's `org_name`, a model folder's name, or a
/// .safetensors file's stem (its folder's name when the file is `model.safetensors`).
fn donor_name(spec: &str) -> String {
    let p = Path::new(spec);
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let is_file = spec.ends_with(".safetensors");
    let name = if !is_file && !p.exists() && spec.matches('/').count() == 1 {
        spec.replace('/', "_") // a Hub id
    } else if is_file && stem == "model" {
        p.parent().and_then(|d| d.file_name()).map_or(stem, |d| d.to_string_lossy().into_owned())
    } else {
        stem
    };
    corpus_name(&name)
}

/// The K-th of N slices of an experiment's cells (K from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl Shard {
    /// `K/N`, or `slurm`: K and N from the Slurm job array this runs in (`SLURM_ARRAY_TASK_ID`
    /// and `SLURM_ARRAY_TASK_COUNT`, or MIN/MAX/STEP), read through `env`.
    pub fn parse(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        if s.trim() == "slurm" {
            return Self::from_slurm(env);
        }
        let bad = || Error::Input(format!("--shard {s} is not K/N with 1 <= K <= N (e.g. 2/4), or slurm"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }

    fn from_slurm(env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        let num = |name: &str| -> Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| Error::Input(format!("--shard slurm: {name}={v} is not a number")))
                })
                .transpose()
        };
        let id = num("SLURM_ARRAY_TASK_ID")?.ok_or_else(|| {
            Error::Input(
                "--shard slurm needs SLURM_ARRAY_TASK_ID: run it in an sbatch --array job, or give --shard K/N".into(),
            )
        })?;
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let n =
            match (num("SLURM_ARRAY_TASK_COUNT")?, num("SLURM_ARRAY_TASK_MAX")?) {
                (Some(c), _) => c,
                (None, Some(max)) if max >= min => (max - min) / step + 1,
                _ => return Err(Error::Input(
                    "--shard slurm: neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is set; give --shard K/N"
                        .into(),
                )),
            };
        if id < min || (id - min) % step != 0 || (id - min) / step >= n {
            return Err(Error::Input(format!(
                "--shard slurm: task {id} is not in the array ({n} tasks from {min} by {step}); give --shard K/N"
            )));
        }
        Ok(Shard { k: (id - min) / step + 1, n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// Which shard (from 0) runs each cell, given each cell's planned steps: the longest cells
/// first (ties in grid order), each to the shard with the fewest steps so far (ties: the
/// lowest). Deterministic, so every shard computes the same assignment on its own.
pub fn assign_shards(steps: &[usize], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by(|&a, &b| steps[b].cmp(&steps[a]).then(a.cmp(&b)));
    let mut load = vec![0usize; n.max(1)];
    let mut shard = vec![0; steps.len()];
    for i in order {
        let least = (0..load.len()).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        shard[i] = least;
        load[least] = load[least].saturating_add(steps[i]);
    }
    shard
}

/// Runs the experiment for every group (each (donor, corpus) pair at each swept value), each
/// into its own subfolder of `out` (see [`groups`]), then writes a top-level report that puts
/// the verdicts side by side (and a sweep's answers against size). One group is a plain
/// [`compare`] into `out`. With `ctl.shard`, only that shard's cells run and
/// no report is written (`embgraft report` merges the shards).
pub fn compare_corpora(cfg: &ExperimentConfig, out: &Path, ctl: &Control) -> Result<Vec<(String, Summary)>> {
    // Paths are saved absolute, so a resume from another working folder reads the same files.
    let cfg = &with_absolute_paths(cfg);
    let all = groups(cfg);
    let started = Instant::now();
    let dev = device(&cfg.run.device)?;
    if ctl.resume && !out.join("config.toml").is_file() {
        return Err(Error::Input(format!(
            "--resume {}: no config.toml there; give the folder of an earlier compare",
            out.display()
        )));
    }
    if !ctl.resume && ctl.shard.is_none() {
        check_out_dir(out, ctl.force)?;
    }
    // The array stands in for every group's donor: one donor, any number of swept values.
    if all.iter().any(|g| !g.pair.is_empty()) && ctl.donor.is_some() {
        return Err(Error::Input("an in-memory donor runs alone; give one donor".into()));
    }
    // Every donor and corpus is read and cut before anything is written: bad input leaves no files.
    let all_inputs = all
        .iter()
        .map(|p| {
            // A sweep's group is named unless the message starts with the flag and value.
            load_inputs_with(&p.cfg, ctl.donor).map_err(|e| {
                if p.point.is_empty() || e.to_string().starts_with("--") {
                    e
                } else {
                    e.within(&p.name)
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mine: Option<Vec<Vec<(u64, Letter)>>> = ctl.shard.map(|sh| shard_cells(&all, &all_inputs, sh));
    if let (Some(sh), Some(m)) = (ctl.shard, &mine) {
        let cells: usize = m.iter().map(|c| c.len()).sum();
        let cells_all: usize = all.iter().map(|p| grid(&p.cfg).len()).sum();
        eprintln!("shard {sh}: {cells} of the {cells_all} cells");
    }
    create_out_dir(out)?;
    let _claim = claim_out(out, ctl)?;
    let _training = Training::begin();
    if all.len() > 1 {
        let prints = Fingerprints {
            settings: provenance::settings_fingerprint(&provenance::settings_of(cfg)),
            ..Default::default()
        };
        match ctl.shard {
            Some(_) => write_once_or_check_top_config(out, cfg)?,
            None => {
                crate::util::write_atomic(&out.join("config.toml"), provenance::config_toml(cfg, &prints).as_bytes())?
            }
        }
    }
    let mut done = Vec::new();
    for (i, (p, inputs)) in all.iter().zip(&all_inputs).enumerate() {
        let only = mine.as_ref().map(|m| m[i].as_slice());
        if only.is_some_and(|o| o.is_empty()) {
            continue;
        }
        let sub = if p.name.is_empty() { out.to_path_buf() } else { out.join(&p.name) };
        if !p.name.is_empty() {
            eprintln!("== {} (donor {}, corpus {}) ==", p.name, p.cfg.data.the_donor(), inputs.corpus_path.display());
        }
        // A group not started before an interruption starts fresh when resuming.
        let resume = ctl.resume && sub.join("config.toml").is_file();
        let sub_ctl = Control { force: true, resume, ..*ctl };
        let start = if p.name.is_empty() { started } else { Instant::now() };
        match run_grid(&p.cfg, inputs, &dev, &sub, &sub_ctl, start, only) {
            Ok(s) => done.push((p.name.clone(), s)),
            Err(e @ Error::Interrupted(_)) if all.len() > 1 => {
                if ctl.shard.is_none() {
                    crate::report::write_corpora(out, cfg, &done)?;
                }
                return Err(Error::Interrupted(format!("{e}; the whole comparison continues the same way")));
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(sh) = ctl.shard {
        eprintln!("shard {sh} done; when every shard is, `embgraft report {}` writes the report", out.display());
    } else if all.len() > 1 {
        crate::report::write_corpora(out, cfg, &done)?;
    }
    Ok(done)
}

/// The run folder for this process: a run or resume holds it alone (a fresh one must find it
/// empty, or clear it with `--force`); shards share it, each claiming its cells. Leftovers of
/// interrupted writes go.
fn claim_out(out: &Path, ctl: &Control) -> Result<folder::Claim> {
    let mode = if ctl.shard.is_some() { Mode::Shared } else { Mode::Exclusive };
    let claim = folder::claim(out, mode)?;
    if mode == Mode::Exclusive && !ctl.resume && folder::holds_files(out)? {
        // Checked again under the lock: another run may have written it since the first look.
        if !ctl.force {
            return Err(Error::Output(format!(
                "--out {} already holds files; choose another folder or pass --force to overwrite",
                out.display()
            )));
        }
        let n = folder::clear_previous(out)?;
        if n > 0 {
            eprintln!("--force: removed the previous experiment's {n} files from {}", out.display());
        }
    }
    if mode == Mode::Exclusive {
        folder::remove_leftovers(out, &|_| true);
    }
    Ok(claim)
}

/// Whether training has begun: before it, Ctrl-C or SIGTERM (setup, a download) ends the
/// process at once, as nothing is written yet; during it, the current step finishes and what
/// was measured is written.
static TRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn training() -> bool {
    TRAINING.load(std::sync::atomic::Ordering::SeqCst)
}

struct Training;

impl Training {
    fn begin() -> Training {
        TRAINING.store(true, std::sync::atomic::Ordering::SeqCst);
        Training
    }
}

impl Drop for Training {
    fn drop(&mut self) {
        TRAINING.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `cfg` with its corpus, donor and tokenizer paths absolute where they name existing files.
fn with_absolute_paths(cfg: &ExperimentConfig) -> ExperimentConfig {
    let abs = |p: &str| {
        let path = Path::new(p);
        match path.exists() && !path.is_absolute() {
            true => std::path::absolute(path).map_or_else(|_| p.to_string(), |a| a.display().to_string()),
            false => p.to_string(),
        }
    };
    let mut c = cfg.clone();
    c.data.corpora = c.data.corpora.iter().map(|p| abs(p)).collect();
    c.data.donor = c.data.donor.iter().map(|d| if d == "gpt2" { d.clone() } else { abs(d) }).collect();
    if !["auto", "gpt2"].contains(&c.data.tokenizer.as_str()) {
        c.data.tokenizer = abs(&c.data.tokenizer);
    }
    c
}

/// Each group's cells that shard `sh` runs.
fn shard_cells(groups: &[Group], inputs: &[Inputs], sh: Shard) -> Vec<Vec<(u64, Letter)>> {
    let cells: Vec<(usize, (u64, Letter))> =
        groups.iter().enumerate().flat_map(|(i, p)| grid(&p.cfg).into_iter().map(move |c| (i, c))).collect();
    let steps: Vec<usize> =
        cells.iter().map(|(i, _)| train::planned_steps(&groups[*i].cfg, inputs[*i].data.train.len())).collect();
    let owner = assign_shards(&steps, sh.n);
    let mut mine = vec![Vec::new(); groups.len()];
    for ((i, cell), o) in cells.into_iter().zip(owner) {
        if o + 1 == sh.k {
            mine[i].push(cell);
        }
    }
    mine
}

/// config.toml in a folder shards share: written by the first shard (create-new, atomic), and
/// every other shard's settings checked equal to it (where it runs, how often it saves and the
/// input paths may differ: the inputs are checked by content), so a shard with other settings
/// stops before it trains.
fn write_once_or_check_config(out: &Path, cfg: &ExperimentConfig, info: &InputSummary) -> Result<()> {
    let prints = info.fingerprints.clone().unwrap_or_default();
    check_shared_config(out, cfg, &provenance::config_toml(cfg, &prints))
}

/// The overview's config.toml of a several-group experiment that shards share.
fn write_once_or_check_top_config(out: &Path, cfg: &ExperimentConfig) -> Result<()> {
    let settings = provenance::settings_of(cfg);
    let prints = Fingerprints { settings: provenance::settings_fingerprint(&settings), ..Default::default() };
    check_shared_config(out, cfg, &provenance::config_toml(cfg, &prints))
}

fn check_shared_config(out: &Path, cfg: &ExperimentConfig, text: &str) -> Result<()> {
    let path = out.join("config.toml");
    if crate::util::write_new(&path, text.as_bytes())? {
        return Ok(());
    }
    let text =
        crate::util::read_small(&path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let theirs = ExperimentConfig::from_toml(&text)
        .map_err(|e| Error::Input(format!("{} is not an embgraft config ({e}); use another --out", path.display())))?;
    let names = |c: &ExperimentConfig| groups(c).into_iter().map(|g| g.name).collect::<Vec<_>>();
    let (a, b) = (provenance::settings_of(&theirs), provenance::settings_of(cfg));
    if a == b && names(&theirs) == names(cfg) {
        return Ok(());
    }
    let diff = a.iter().find(|(k, v)| b.get(*k) != Some(v)).map_or_else(
        || "its donors or corpora".to_string(),
        |(k, v)| {
            let name = k.rsplit_once('.').map_or(k.as_str(), |(_, n)| n);
            format!("`{name} = {v}` there, `{name} = {}` here", b.get(k).map_or("absent", String::as_str))
        },
    );
    Err(Error::Input(format!(
        "{} holds another experiment's settings ({diff}); give every shard the same settings, or another --out",
        path.display()
    )))
}

/// inputs.json beside it: what every shard read (tokens, windows, vocabulary) must agree.
fn write_once_or_check_inputs(out: &Path, info: &InputSummary) -> Result<()> {
    let path = out.join("inputs.json");
    let text = inputs_json(info)?;
    if crate::util::write_new(&path, text.as_bytes())? {
        return Ok(());
    }
    let old =
        std::fs::read_to_string(&path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let (a, b): (serde_json::Value, serde_json::Value) = match (serde_json::from_str(&old), serde_json::from_str(&text))
    {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(Error::Input(format!("{} is unreadable; delete it and rerun", path.display()))),
    };
    // Where the files were read from may differ between machines; what was read may not.
    let key = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("corpus");
            o.remove("donor_weights");
        }
        v
    };
    match key(&a) == key(&b) {
        true => Ok(()),
        false => Err(Error::Input(format!(
            "{}: this shard read other inputs than the shards before it ({} tokens, vocabulary {} here); every shard must read the same donor and corpus",
            path.display(),
            info.corpus_tokens,
            info.vocab
        ))),
    }
}

fn inputs_json(info: &InputSummary) -> Result<String> {
    serde_json::to_string_pretty(info).map_err(|e| Error::Output(e.to_string()))
}

const METRICS_HEADER: &str = "config,seed,epoch,step,split,loss\n";

fn metrics_rows(letter: Letter, seed: u64, points: &[Point]) -> String {
    points.iter().map(|p| csv_rows(letter, seed, p)).collect()
}

/// What `embgraft report` found: each group's summary (of the cells present) and the cells
/// missing, named.
pub struct Rebuilt {
    pub pairs: Vec<(String, Summary)>,
    pub missing: Vec<String>,
    pub cells: usize,
}

/// Rebuilds every result file of the run folder `dir` (each group's report.md, summary.json,
/// plots and metrics.csv, and the several-groups overview) from its config.toml, inputs.json
/// and the cells' run files: no donor or corpus needed. Cells without a run file are named in
/// `missing` and in each group's report.
pub fn rebuild_report(dir: &Path) -> Result<Rebuilt> {
    let cfg_path = dir.join("config.toml");
    let text = crate::util::read_small(&cfg_path).map_err(|e| {
        Error::Input(format!(
            "{} is not a run folder (cannot read config.toml: {e}); give the --out folder of a compare",
            dir.display()
        ))
    })?;
    let cfg = ExperimentConfig::from_toml(&text).map_err(|e| {
        Error::Input(format!(
            "{} is damaged or not an embgraft config ({e}); restore it from a copy (every shard's is the same)",
            cfg_path.display()
        ))
    })?;
    // Shards may still be running (the report names what they have not finished); a run or
    // resume writing the folder is waited for.
    let _claim = folder::claim(dir, Mode::Shared)?;
    folder::remove_leftovers(dir, &report_owned);
    let all = groups(&cfg);
    let (mut done, mut missing) = (Vec::new(), Vec::new());
    for p in &all {
        let (summary, absent) = rebuild_group(dir, p)?;
        missing.extend(absent);
        if let Some(s) = summary {
            done.push((p.name.clone(), s));
        }
    }
    if all.len() > 1 {
        crate::report::write_corpora(dir, &cfg, &done)?;
    }
    let cells = all.iter().map(|p| grid(&p.cfg).len()).sum();
    Ok(Rebuilt { pairs: done, missing, cells })
}

/// The files only a report writes (a shard writes cells, config.toml and inputs.json), whose
/// leftovers `report` may clear while shards run.
fn report_owned(name: &str) -> bool {
    !folder::is_cell_file(name) && name != "config.toml" && name != "inputs.json"
}

/// One group's result files from its folder's inputs.json and run files; the summary (None
/// when no shard has started the group) and the group's cells without a run file, named.
fn rebuild_group(dir: &Path, p: &Group) -> Result<(Option<Summary>, Vec<String>)> {
    let sub = if p.name.is_empty() { dir.to_path_buf() } else { dir.join(&p.name) };
    let label = |l: Letter, seed: u64| match p.name.is_empty() {
        true => format!("{l} seed {seed}"),
        false => format!("{} {l} seed {seed}", p.name),
    };
    let grid = grid(&p.cfg);
    folder::remove_leftovers(&sub, &report_owned);
    let info_path = sub.join("inputs.json");
    let Ok(info_text) = crate::util::read_small(&info_path) else {
        let done: Vec<String> = grid
            .iter()
            .filter(|&&(s, l)| run_file(&sub, l, s).exists())
            .map(|&(s, l)| format!("run-{l}-{s}.json"))
            .collect();
        if !done.is_empty() {
            return Err(Error::Input(format!(
                "{} is missing but {} cells have finished ({}); restore it, or resume or rerun one shard to write it again",
                info_path.display(),
                done.len(),
                done.join(", ")
            )));
        }
        return Ok((None, grid.iter().map(|&(s, l)| format!("{} (not started)", label(l, s))).collect()));
    };
    let info: InputSummary = serde_json::from_str(&info_text).map_err(|e| {
        Error::Input(format!(
            "{} is corrupt ({e}); rerun one shard of that group to write it again",
            info_path.display()
        ))
    })?;
    let (mut runs, mut missing) = (Vec::new(), Vec::new());
    // Every cell must come from this experiment: its settings (config.toml) and its inputs
    // (inputs.json's fingerprints, where the folder has them).
    let expected = MadeUnder {
        fingerprints: info.fingerprints.clone().unwrap_or_default(),
        settings: provenance::settings_of(&p.cfg),
    };
    let mut legacy = false;
    for &(seed, l) in &grid {
        let f = run_file(&sub, l, seed);
        match f.exists() {
            true => {
                let mut r = read_run_file(&f)?;
                match r.made_under.take() {
                    Some(m) => provenance::check_cell(&expected, &m, &format!("run-{l}-{seed}.json"), "config.toml")?,
                    None => legacy = true,
                }
                runs.push(r);
            }
            false if checkpoint_file(&sub, l, seed).exists() => {
                missing.push(format!("{} (unfinished: has a checkpoint)", label(l, seed)))
            }
            false => missing.push(format!("{} (not started)", label(l, seed))),
        }
    }
    if legacy {
        eprintln!(
            "note: {} holds cells written by an embgraft without fingerprints; they are reported without checking what made them",
            sub.display()
        );
    }
    // The runs are in the grid's order, as a one-process run appends them.
    let metrics: String = runs.iter().map(|r| metrics_rows(r.config, r.seed, &r.points)).collect();
    let steps_per_epoch = info.train_windows.div_ceil(p.cfg.protocol.batch_size.max(1));
    let summary = Summary {
        embgraft_version: env!("CARGO_PKG_VERSION").to_string(),
        inputs: info,
        analysis: crate::stats::analyse(&runs, steps_per_epoch),
        wall_seconds: runs.iter().map(|r| r.wall_seconds).sum(),
        runs,
        seconds_to_inputs: 0.0,
        seconds_to_first_step: None,
    };
    let note = match missing.is_empty() {
        true => String::new(),
        false => format!(
            "\n## Missing cells\n\nThis report covers {} of {} cells; not finished yet: {}. Rerun `embgraft report` when they are.\n",
            grid.len() - missing.len(),
            grid.len(),
            missing.join(", ")
        ),
    };
    crate::report::write_all_with(&sub, &p.cfg, &summary, &note)?;
    crate::util::write_atomic(&sub.join("metrics.csv"), format!("{METRICS_HEADER}{metrics}").as_bytes())?;
    Ok((Some(summary), missing))
}

/// A folder name for a corpus: its file name without extension, in safe characters.
pub(crate) fn corpus_name(path: &str) -> String {
    let stem = Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() {
        "corpus".into()
    } else {
        clean
    }
}

/// Two sentences (at most `cfg.run.sample_tokens` tokens) from the trained model, after "The".
fn sample_text(
    model: &train::Net,
    tok: &Tokenizer,
    cfg: &ExperimentConfig,
    seed: u64,
    letter: Letter,
) -> Result<String> {
    let prompt = tok.encode("The")?;
    let mut rng = stream(seed.wrapping_add(1000 * letter as u64), Stream::Sample);
    let ends_sentence = |id: u32| {
        let s = tok.decode(&[id]);
        s.contains('.') || s.contains('!') || s.contains('?')
    };
    let ids = model.sample(&prompt, cfg.run.sample_tokens, &ends_sentence, 2, &mut rng)?;
    let mut all = prompt;
    all.extend(ids);
    Ok(tok.decode(&all).split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_from_flags_and_slurm() {
        let none = |_: &str| None;
        assert_eq!(Shard::parse("2/4", &none).unwrap(), Shard { k: 2, n: 4 });
        for bad in ["3/2", "0/0", "0/3", "a/2", "2/b", "2", "", "1/2/3", "-1/2"] {
            let e = Shard::parse(bad, &none).unwrap_err().to_string();
            assert!(e.contains("is not K/N") && !e.contains('\n'), "{bad}: {e}");
        }
        let e = Shard::parse("slurm", &none).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID") && e.contains("--shard K/N"), "{e}");
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        // --array=4-6: task 5 is the second of three.
        let e1 = env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "4"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(Shard::parse("slurm", &e1).unwrap(), Shard { k: 2, n: 3 });
        // --array=0-8:4 without COUNT: tasks 0, 4, 8.
        let e2 = env(&[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
        ]);
        assert_eq!(Shard::parse("slurm", &e2).unwrap(), Shard { k: 3, n: 3 });
        let e3 = env(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert!(Shard::parse("slurm", &e3).unwrap_err().to_string().contains("is not a number"));
        let e4 = env(&[("SLURM_ARRAY_TASK_ID", "3")]);
        assert!(Shard::parse("slurm", &e4).unwrap_err().to_string().contains("neither"));
    }

    #[test]
    fn shards_get_every_cell_once_balanced_by_steps() {
        let steps = [300, 300, 100, 100, 100, 100, 50, 50];
        let owner = assign_shards(&steps, 3);
        let load = |s: usize| owner.iter().zip(steps).filter(|(o, _)| **o == s).map(|(_, t)| t).sum::<usize>();
        assert_eq!((load(0), load(1), load(2)), (400, 350, 350));
        assert_eq!(assign_shards(&steps, 3), owner, "the same on every call");
        // More shards than cells: the extra shards get nothing.
        assert_eq!(assign_shards(&[5, 5], 4), vec![0, 1]);
    }

    #[test]
    fn pairs_name_their_folders() {
        let mut c = ExperimentConfig::default();
        assert_eq!(groups(&c).len(), 1);
        assert!(groups(&c)[0].name.is_empty());
        c.data.corpora = vec!["a/book.txt".into(), "b/book.txt".into()];
        assert_eq!(groups(&c).iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["book", "book-2"]);
        c.data.donor = vec!["gpt2".into(), "EleutherAI/pythia-70m".into(), "/m/minilm/model.safetensors".into()];
        let names: Vec<String> = groups(&c).into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "gpt2__book",
                "gpt2__book-2",
                "EleutherAI_pythia-70m__book",
                "EleutherAI_pythia-70m__book-2",
                "minilm__book",
                "minilm__book-2"
            ]
        );
        assert!(groups(&c).iter().all(|p| p.cfg.data.donor.len() == 1 && p.cfg.data.corpora.len() == 1));
    }
}
