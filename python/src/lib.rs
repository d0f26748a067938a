//! The Python module `embgraft._embgraft`: the engine's command line, run in-process with the
//! GIL released, with an optional donor matrix from memory and a progress callback. The
//! Python side (`python/embgraft/`) turns keyword arguments into the same flags, so defaults
//! and validation are the command line's own.

use std::sync::atomic::{AtomicBool, Ordering};

use embgraft::data::donor::Embedding;
use embgraft::experiment::{Control, Progress};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

create_exception!(_embgraft, Error, PyException, "An embgraft error; the message names the cause and what to do.");
create_exception!(_embgraft, InputError, Error, "Bad input: a flag value, a corpus, a config file.");
create_exception!(_embgraft, DonorError, Error, "A donor that cannot be used.");
create_exception!(_embgraft, DownloadError, Error, "A download that failed.");
create_exception!(_embgraft, OutputError, Error, "An output folder or file that cannot be written.");

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
/// in-memory embedding; `progress` is called with ("start", run, done, steps), ("step",
/// step, loss), ("point", run, epoch, step, train, test) and ("finish", run).
#[pyfunction]
#[pyo3(signature = (argv, donor=None, progress=None))]
fn run(
    py: Python<'_>,
    argv: Vec<String>,
    donor: Option<(Bound<'_, PyBytes>, usize, usize, String)>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
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
    let interrupted = AtomicBool::new(false);
    let result = py.detach(|| {
        // Ctrl-C in a terminal, the stop button in a notebook: Python's signal handler runs
        // here, between steps; the run then finishes its step and writes what it measured.
        let stop = || {
            interrupted.load(Ordering::SeqCst)
                || Python::attach(|py| {
                    let hit = py.check_signals().is_err();
                    if hit {
                        interrupted.store(true, Ordering::SeqCst);
                    }
                    hit
                })
        };
        let report = |p: &Progress| {
            let Some(cb) = &progress else { return };
            Python::attach(|py| {
                let called = match p {
                    Progress::Start { run, done, steps } => cb.call1(py, ("start", run.as_str(), *done, *steps)),
                    Progress::Step { step, loss } => cb.call1(py, ("step", *step, *loss)),
                    Progress::Point { run, epoch, step, train, test } => {
                        cb.call1(py, ("point", run.as_str(), *epoch, *step, *train, *test))
                    }
                    Progress::Finish { run } => cb.call1(py, ("finish", run.as_str())),
                };
                if let Err(e) = called {
                    if e.is_instance_of::<PyKeyboardInterrupt>(py) {
                        interrupted.store(true, Ordering::SeqCst);
                    }
                }
            })
        };
        let shard = match &args.shard {
            Some(s) => Some(embgraft::experiment::Shard::parse(s, &|k| std::env::var(k).ok())?),
            None => None,
        };
        let ctl = Control {
            force: args.force,
            resume: args.resume.is_some(),
            should_stop: &stop,
            donor: memory.as_ref(),
            progress: progress.as_ref().map(|_| &report as &dyn Fn(&Progress)),
            shard,
        };
        embgraft::experiment::compare_groups(&cfg, &out, &ctl)
    });
    match result {
        Ok(_) => Ok(out.display().to_string()),
        Err(e) => Err(to_py(e)),
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
    let files = embgraft::data::donor::locate(path).map_err(to_py)?;
    let donor = embgraft::data::donor::Donor::open(&files.weights).map_err(to_py)?;
    let tensors: Vec<serde_json::Value> = donor
        .tensors()
        .map_err(to_py)?
        .into_iter()
        .map(|t| serde_json::json!({"name": t.name, "dtype": t.dtype.to_string(), "shape": t.shape}))
        .collect();
    let embedding = donor.embedding_name(None).ok();
    let json = serde_json::json!({
        "weights": files.weights.display().to_string(),
        "tensors": tensors,
        "embedding": embedding,
        "tokenizer": files.tokenizer.map(|t| t.display().to_string()),
        "config": files.config.map(|t| t.display().to_string()),
    });
    Ok(json.to_string())
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
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("DonorError", py.get_type::<DonorError>())?;
    m.add("DownloadError", py.get_type::<DownloadError>())?;
    m.add("OutputError", py.get_type::<OutputError>())?;
    Ok(())
}
