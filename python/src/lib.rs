//! The Python module `embgraft._embgraft`: the engine's command line, run in-process with the
//! GIL released, with an optional donor matrix from memory and a progress callback. The
//! Python side (`python/embgraft/`) turns keyword arguments into the same flags, so defaults
//! and validation are the command line's own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use embgraft::data::donor::Embedding;
use embgraft::experiment::{Control, Progress};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::import_exception;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

// The error classes live in the Python package (embgraft/_errors.py), so the CPU engine and the
// CUDA engine (another extension module) raise the same ones.
import_exception!(embgraft._errors, Error);
import_exception!(embgraft._errors, InputError);
import_exception!(embgraft._errors, DonorError);
import_exception!(embgraft._errors, DownloadError);
import_exception!(embgraft._errors, OutputError);

fn to_py(e: embgraft::Error) -> PyErr {
    use embgraft::Error as E;
    match e {
        E::Input(m) | E::Tokenizer(m) => InputError::new_err(m),
        E::Donor(m) => DonorError::new_err(m),
        E::Download(m) => DownloadError::new_err(m),
        E::Output(m) => OutputError::new_err(m),
        E::Interrupted(m) => PyKeyboardInterrupt::new_err(m),
        other => Error::new_err(other.to_string()),
    }
}

/// Runs `compare` or `train` with these command-line arguments (`argv[0]` is the subcommand)
/// and returns the run folder. `donor` is (float32 bytes, rows, cols, source dtype) of an
/// in-memory embedding. `progress` is called, on this thread between steps, with
/// ("start", run, config, seed, done, steps), ("step", step, loss), ("point", run, config, seed,
/// epoch, step, train, test, train_eval or None), ("end", run, config, seed, result as JSON) and
/// ("log", line) for the engine's messages (the plan, a run done). An exception it raises stops
/// the experiment as Ctrl-C does (files whole, resumable) and is raised again here.
#[pyfunction]
#[pyo3(signature = (argv, donor=None, progress=None))]
fn run(
    py: Python<'_>,
    argv: Vec<String>,
    donor: Option<(Bound<'_, PyBytes>, usize, usize, String)>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    embgraft::util::start_threads().map_err(to_py)?;
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (args, mut cfg) = embgraft::cli::parse_run(&refs).map_err(to_py)?;
    let memory = match donor {
        Some((bytes, rows, cols, dtype)) => {
            let b = bytes.as_bytes();
            if rows.checked_mul(cols).and_then(|n| n.checked_mul(4)) != Some(b.len()) || rows == 0 || cols == 0 {
                return Err(InputError::new_err(format!(
                    "donor array of {} bytes is not a float32 matrix of {rows} x {cols}; pass a 2-D array",
                    b.len()
                )));
            }
            let e = Embedding {
                tensor: "array".into(),
                source_dtype: dtype,
                rows,
                cols,
                data: embgraft::util::f32_from_bytes(b),
            };
            cfg.data.donor = vec![format!("in-memory array [{rows} x {cols}]")];
            Some(e)
        }
        None => None,
    };
    let out = args.out_dir();
    let front = Arc::new(Front { callback: progress, stop: AtomicBool::new(false), raised: Mutex::new(None) });
    let result = py.detach(|| {
        // Ctrl-C in a terminal, the stop button in a notebook: Python's signal handler runs
        // here, between steps; the run then finishes its step and writes what it measured.
        let stop = || {
            front.stop.load(Ordering::SeqCst)
                || Python::attach(|py| {
                    let hit = py.check_signals().is_err();
                    if hit {
                        front.stop.store(true, Ordering::SeqCst);
                    }
                    hit
                })
        };
        let report = |p: &Progress| front.call(|py, cb| progress_call(py, cb, p));
        let shard = match &args.shard {
            Some(s) => Some(embgraft::experiment::Shard::parse(s, &|k| std::env::var(k).ok())?),
            None => None,
        };
        let ctl = Control {
            force: args.force,
            resume: args.resume.is_some(),
            should_stop: &stop,
            donor: memory.as_ref(),
            progress: front.callback.as_ref().map(|_| &report as &dyn Fn(&Progress)),
            shard,
        };
        match front.callback.is_some() {
            true => embgraft::util::messages_to(Arc::clone(&front).log_hook(), || {
                embgraft::experiment::compare_groups(&cfg, &out, &ctl)
            }),
            false => embgraft::experiment::compare_groups(&cfg, &out, &ctl),
        }
    });
    // The front's own exception, if it raised one, is what the caller sees.
    if let Some(e) = front.raised.lock().ok().and_then(|mut r| r.take()) {
        return Err(e);
    }
    match result {
        Ok(_) => Ok(out.display().to_string()),
        Err(e) => Err(to_py(e)),
    }
}

/// The Python side of a run: its callable, the stop it can ask for, and the first exception it
/// raised (kept to raise again once the run has written its files).
struct Front {
    callback: Option<Py<PyAny>>,
    stop: AtomicBool,
    raised: Mutex<Option<PyErr>>,
}

impl Front {
    fn call(&self, f: impl FnOnce(Python<'_>, &Py<PyAny>) -> PyResult<Py<PyAny>>) {
        let Some(cb) = &self.callback else { return };
        Python::attach(|py| {
            if let Err(e) = f(py, cb) {
                self.stop.store(true, Ordering::SeqCst);
                // Ctrl-C landing inside the callback is Ctrl-C: the engine's own interrupt,
                // with its "continue with resume" message, is what the caller gets.
                if !e.is_instance_of::<PyKeyboardInterrupt>(py) {
                    if let Ok(mut slot) = self.raised.lock() {
                        slot.get_or_insert(e);
                    }
                }
            }
        })
    }

    fn log_hook(self: Arc<Self>) -> std::rc::Rc<dyn Fn(&str)> {
        std::rc::Rc::new(move |line: &str| self.call(|py, cb| cb.call1(py, ("log", line))))
    }
}

fn progress_call(py: Python<'_>, cb: &Py<PyAny>, p: &Progress) -> PyResult<Py<PyAny>> {
    match p {
        Progress::Start { run, cell: (l, seed), done, steps } => {
            cb.call1(py, ("start", run.as_str(), l.to_string(), *seed, *done, *steps))
        }
        Progress::Step { step, loss } => cb.call1(py, ("step", *step, *loss)),
        Progress::Point { run, cell: (l, seed), point: pt } => cb.call1(
            py,
            (
                "point",
                run.as_str(),
                l.to_string(),
                *seed,
                pt.epoch,
                pt.step,
                pt.train_loss,
                pt.test_loss,
                pt.train_eval_loss,
            ),
        ),
        Progress::Finish { run, cell: (l, seed), result } => {
            let json = serde_json::to_string(result.as_ref()).unwrap_or_else(|_| "{}".into());
            cb.call1(py, ("end", run.as_str(), l.to_string(), *seed, json))
        }
    }
}

/// The `embgraft` command line, in-process: the Python package's `embgraft` script.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| embgraft::cli::main_with(argv.into_iter().map(Into::into).collect()))
}

/// A donor file's tensors and what would be grafted, as JSON.
#[pyfunction]
fn inspect(path: &str) -> PyResult<String> {
    let found = embgraft::experiment::inspect::Inspection::open(path, None).map_err(to_py)?;
    Ok(found.to_json().to_string())
}

/// A finished run's saved weights (`save_weights=True`): the model ("model1" or "model5"), and
/// for each tensor (name, shape, file, byte offset) of its f32 values, for numpy to map: the
/// weights file, or the donor file for frozen tensors stored as a reference to it. Every file
/// is verified first (checksum, cell, experiment, donor tensor hashes).
#[pyfunction]
#[pyo3(signature = (run_dir, config, seed, donor=None))]
fn weights(
    py: Python<'_>,
    run_dir: std::path::PathBuf,
    config: &str,
    seed: u64,
    donor: Option<std::path::PathBuf>,
) -> PyResult<(String, Vec<(String, Vec<usize>, String, usize)>)> {
    embgraft::util::start_threads().map_err(to_py)?;
    let letter: embgraft::config::Letter = config.parse().map_err(to_py)?;
    py.detach(|| {
        let cell = embgraft::experiment::export::open_cell(&run_dir, letter, seed)?;
        let located = cell.weights.locate(donor.as_deref())?;
        let kind = format!("{:?}", cell.weights.model.kind).to_lowercase();
        Ok((kind, located.into_iter().map(|l| (l.name, l.shape, l.file.display().to_string(), l.offset)).collect()))
    })
    .map_err(to_py)
}

/// The logits of a finished run's saved weights for `windows` rows of token ids (`ids`, u32
/// little-endian bytes, row-major), as f32 little-endian bytes of (windows · length, vocabulary).
#[pyfunction]
#[pyo3(signature = (run_dir, config, seed, ids, windows, donor=None))]
fn logits<'py>(
    py: Python<'py>,
    run_dir: std::path::PathBuf,
    config: &str,
    seed: u64,
    ids: Bound<'py, PyBytes>,
    windows: usize,
    donor: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyBytes>> {
    embgraft::util::start_threads().map_err(to_py)?;
    let letter: embgraft::config::Letter = config.parse().map_err(to_py)?;
    let ids: Vec<u32> = ids.as_bytes().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let z = py
        .detach(|| {
            let cell = embgraft::experiment::export::open_cell(&run_dir, letter, seed)?;
            cell.logits(&ids, windows, donor.as_deref())
        })
        .map_err(to_py)?;
    Ok(PyBytes::new(py, embgraft::util::f32_bytes(&z)))
}

/// `embgraft export`: writes one finished run's weights as a PyTorch / transformers folder;
/// returns the files written and the notes on what could not be.
#[pyfunction]
#[pyo3(signature = (run_dir, config, seed, out, force=false, donor=None))]
fn export(
    py: Python<'_>,
    run_dir: std::path::PathBuf,
    config: &str,
    seed: u64,
    out: std::path::PathBuf,
    force: bool,
    donor: Option<std::path::PathBuf>,
) -> PyResult<(Vec<String>, Vec<String>)> {
    embgraft::util::start_threads().map_err(to_py)?;
    let letter: embgraft::config::Letter = config.parse().map_err(to_py)?;
    py.detach(|| {
        let req = embgraft::experiment::export::Request {
            dir: &run_dir,
            letter,
            seed,
            out: &out,
            force,
            donor: donor.as_deref(),
        };
        embgraft::experiment::export::export(&req).map(|d| (d.files, d.notes))
    })
    .map_err(to_py)
}

/// The keywords of the settings given once per value (`corpus`, `donor`, `lr_group`); a list for
/// any other is one comma-separated value.
#[pyfunction]
fn repeated() -> Vec<String> {
    embgraft::config::ExperimentConfig::repeated()
}

/// Every setting: (keyword, flag, default, help), from the engine's settings types.
#[pyfunction]
fn settings() -> Vec<(String, String, String, String)> {
    embgraft::config::ExperimentConfig::described()
}

#[pymodule]
fn _embgraft(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(settings, m)?)?;
    m.add_function(wrap_pyfunction!(repeated, m)?)?;
    m.add_function(wrap_pyfunction!(weights, m)?)?;
    m.add_function(wrap_pyfunction!(export, m)?)?;
    m.add_function(wrap_pyfunction!(logits, m)?)?;
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("DonorError", py.get_type::<DonorError>())?;
    m.add("DownloadError", py.get_type::<DownloadError>())?;
    m.add("OutputError", py.get_type::<OutputError>())?;
    Ok(())
}
