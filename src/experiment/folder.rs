//! The run folder as one experiment's: one writer at a time (an advisory lock on a file in it,
//! released by the system when its process ends, so a killed run never leaves a lock that
//! blocks), shards claiming cells instead of the folder, no leftovers of interrupted writes,
//! and `--force` clearing the previous experiment's files instead of mixing with them.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folder's lock file: held exclusively by a run or resume, shared by shards and `report`.
pub const LOCK: &str = ".embgraft.lock";

/// Files of ours that say nothing about the experiment: a folder holding only these is empty.
pub fn is_bookkeeping(name: &str) -> bool {
    name == LOCK || (name.starts_with(".cell-") && name.ends_with(".lock")) || name == crate::util::WRITE_PROBE
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// A run or resume: nobody else writes the folder meanwhile.
    Exclusive,
    /// Shards of one experiment (each claims its cells) and `report` (which reads cells and
    /// writes only the report files that no shard writes).
    Shared,
}

/// A held lock; dropping it releases it (an exclusive holder first clears its name from the
/// file, so the next holder knows the last one ended cleanly).
pub struct Claim {
    file: File,
    exclusive: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.exclusive {
            let _ = self.file.set_len(0);
        }
    }
}

/// Who holds a lock, as written into its file: the process, its host and when it started.
fn holder() -> String {
    format!("pid {} on {}, started {} UTC", std::process::id(), crate::util::hostname(), crate::util::utc_timestamp())
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.take(1024).read_to_string(&mut text);
    text.trim().to_string()
}

fn open_lock(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::Output(format!("cannot create the lock file {}: {e}", path.display())))
}

/// Takes the folder `dir` (which exists) for `mode`. Refused, naming the holder, when another
/// process holds it in a way that excludes this one.
pub fn claim(dir: &Path, mode: Mode) -> Result<Claim> {
    let path = dir.join(LOCK);
    let mut file = open_lock(&path)?;
    let got = match mode {
        Mode::Exclusive => file.try_lock(),
        Mode::Shared => file.try_lock_shared(),
    };
    match got {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let who = read_holder(&mut file);
            let who = if who.is_empty() { "shards of an array run or a report".to_string() } else { who };
            return Err(Error::Output(format!(
                "{} is being written by another embgraft ({who}); wait for it to end or stop it, or give another --out",
                dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            // Some network file systems have no locks: say so and go on, as the user asked.
            crate::util::say(&format!(
                "note: cannot lock {} ({e}); make sure only one embgraft writes this folder at a time",
                path.display()
            ));
            return Ok(Claim { file, exclusive: false });
        }
    }
    if mode == Mode::Exclusive {
        let before = read_holder(&mut file);
        if !before.is_empty() {
            crate::util::say(&format!(
                "note: {} was held by {before}, which ended without releasing it; taking it over",
                dir.display()
            ));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(holder().as_bytes());
        let _ = file.sync_all();
    }
    Ok(Claim { file, exclusive: mode == Mode::Exclusive })
}

/// The lock file of one cell, in its group's folder.
pub fn cell_lock(dir: &Path, cell: &str) -> PathBuf {
    dir.join(format!(".cell-{cell}.lock"))
}

/// A shard's hold on one cell (`B-1`): two tasks never train the same cell. Refused, naming the
/// holder, when another task trains it now.
pub fn claim_cell(dir: &Path, cell: &str) -> Result<Claim> {
    let path = cell_lock(dir, cell);
    let mut file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Output(format!(
                "cell {cell} in {} is being trained by another task ({}); two tasks run the same shard: cancel one, \
                 the other goes on",
                dir.display(),
                read_holder(&mut file)
            )))
        }
        Err(TryLockError::Error(_)) => return Ok(Claim { file, exclusive: false }),
    }
    let _ = file.set_len(0);
    let _ = file.write_all(holder().as_bytes());
    Ok(Claim { file, exclusive: true })
}

/// The file a temporary file of ours stands in for: `util::write_atomic` names them
/// `.{name}.{random}.tmp{.ext}`.
fn temp_target(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix('.')?;
    let at = rest.rfind(".tmp")?;
    let (stem, tail) = rest.split_at(at);
    let tail = &tail[4..];
    if !(tail.is_empty() || tail.starts_with('.')) {
        return None;
    }
    let (target, random) = stem.rsplit_once('.')?;
    (random.len() >= 6 && random.chars().all(|c| c.is_ascii_alphanumeric())).then_some(target)
}

/// Removes temporary files that interrupted writes left in `dir` (a checkpoint killed while
/// being written, a plot whose writer was stopped), those of files `owned` accepts. Returns
/// how many bytes went.
pub fn remove_leftovers(dir: &Path, owned: &dyn Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut freed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if temp_target(&name).is_some_and(owned) && e.file_type().is_ok_and(|t| t.is_file()) {
            let size = e.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(e.path()).is_ok() {
                freed += size;
            }
        }
    }
    freed
}

/// Result files a cell writes (its run file and checkpoint); shards write only these.
pub fn is_cell_file(name: &str) -> bool {
    (name.starts_with("run-") && name.ends_with(".json"))
        || (name.starts_with("checkpoint-") && name.ends_with(".safetensors"))
}

/// Every file an experiment writes into its folder (a group's or the overview's).
pub fn is_result_file(name: &str) -> bool {
    const FIXED: &[&str] =
        &["config.toml", "inputs.json", "metrics.csv", "summary.json", "report.md", "overview.md", "overview.json"];
    let plot = [".png", ".svg"].iter().any(|x| name.ends_with(x))
        && ["loss-curves", "drift", "answers-over-time", "sweep-"].iter().any(|p| name.starts_with(p));
    FIXED.contains(&name) || plot || is_cell_file(name) || is_bookkeeping(name) && name != LOCK
}

/// `--force`: removes the previous experiment's result files from `dir` and from its group
/// folders (subfolders holding a config.toml or inputs.json), and those folders once empty, and
/// the event files embgraft wrote under `tensorboard/`. Other files are left alone. Returns how
/// many files went.
pub fn clear_previous(dir: &Path) -> Result<usize> {
    let fail = |e: std::io::Error| Error::Output(format!("--force: cannot clear {}: {e}", dir.display()));
    let mut removed = crate::tfevents::clear(&dir.join("tensorboard"))?;
    for e in std::fs::read_dir(dir).map_err(fail)?.flatten() {
        let (name, path) = (e.file_name().to_string_lossy().into_owned(), e.path());
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && (path.join("config.toml").is_file() || path.join("inputs.json").is_file()) {
            removed += clear_previous(&path)?;
            let _ = std::fs::remove_dir(&path); // only if nothing else is in it
        } else if !is_dir && (is_result_file(&name) || temp_target(&name).is_some_and(is_result_file)) {
            std::fs::remove_file(&path).map_err(fail)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether `dir` holds anything but our bookkeeping files.
pub fn holds_files(dir: &Path) -> Result<bool> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::Output(format!("cannot read --out {}: {e}", dir.display())))?;
    Ok(entries.flatten().any(|e| !is_bookkeeping(&e.file_name().to_string_lossy())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_recognised_and_only_they() {
        assert_eq!(
            temp_target(".checkpoint-B-1.safetensors.a1B2c3.tmp.safetensors"),
            Some("checkpoint-B-1.safetensors")
        );
        assert_eq!(temp_target(".loss-curves.png.Xy12Zq.tmp.png"), Some("loss-curves.png"));
        assert_eq!(temp_target(".report.md.abcdef.tmp.md"), Some("report.md"));
        assert_eq!(temp_target(".metrics.csv.abcdef.tmp.csv"), Some("metrics.csv"));
        assert_eq!(temp_target(".config.abcdef.tmp"), Some("config"));
        for other in ["report.md", ".embgraft.lock", ".hidden.tmp", ".notes.tmp.txt", "x.tmp"] {
            assert_eq!(temp_target(other), None, "{other}");
        }
    }

    #[test]
    fn one_exclusive_holder_and_a_named_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path(), Mode::Exclusive).unwrap();
        let err = claim(dir.path(), Mode::Exclusive).err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())) && err.contains("another embgraft"), "{err}");
        assert!(claim(dir.path(), Mode::Shared).is_err());
        drop(first);
        let shared = claim(dir.path(), Mode::Shared).unwrap();
        let _also = claim(dir.path(), Mode::Shared).unwrap();
        assert!(claim(dir.path(), Mode::Exclusive).is_err());
        drop((shared, _also));
        let cell = claim_cell(dir.path(), "B-1").unwrap();
        assert!(claim_cell(dir.path(), "B-1").err().unwrap().to_string().contains("cell B-1"));
        let _other = claim_cell(dir.path(), "C-1").unwrap();
        drop(cell);
        claim_cell(dir.path(), "B-1").unwrap();
    }

    #[test]
    fn force_clears_only_what_an_experiment_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["config.toml", "report.md", "run-C-2.json", "drift.png", "notes.txt", ".drift.png.abcdef.tmp.png"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir(d.join("book")).unwrap();
        std::fs::write(d.join("book").join("inputs.json"), b"{}").unwrap();
        std::fs::create_dir(d.join("mine")).unwrap();
        std::fs::write(d.join("mine").join("report.md"), b"keep").unwrap();
        assert_eq!(clear_previous(d).unwrap(), 6);
        let mut left: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["mine", "notes.txt"]);
        assert!(d.join("mine").join("report.md").exists());
    }
}
