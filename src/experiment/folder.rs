//! The run folder as one experiment's: one writer at a time, shards claiming cells instead of
//! the folder, no leftovers of interrupted writes, and `--force` clearing the previous
//! experiment's files instead of mixing with them.
//!
//! The folder's lock is the folder itself: its directory is opened and `flock`ed, so nobody can
//! delete or redirect the lock while a run lives (removing the folder would take the run's
//! files with it, and the holder notices that). The lock is released by the system when its
//! process ends, so a killed run never leaves a lock that blocks. Who holds it is only a note
//! beside it (`.embgraft.lock`), replaced by a rename and read without following links, so a
//! link or FIFO there can neither redirect a write nor hang a run. A cell's lock is a file of its
//! own (a shard holds its cells inside a folder others share), opened without following links
//! and checked to be the very file its name points to; the holder checks that again before it
//! writes, and stops if the lock was deleted or replaced.

use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::Letter;
use crate::error::{Error, Result};
use crate::train::checkpoint::Checkpoint;
use crate::train::results::{Point, RunResult, Thaw};
use crate::train::Observer;

/// The note naming who holds the folder (the lock itself is the folder's directory).
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

/// Where a lock lives and which file (device, inode) it is: a lock whose name no longer leads
/// to it was deleted or replaced, and its holder may no longer be the only writer.
#[derive(Clone, Debug)]
pub struct Watch {
    path: PathBuf,
    id: (u64, u64),
    /// The lock is the folder itself (else a cell's lock file).
    folder: bool,
}

impl Watch {
    /// Ok while `path` still names the locked file or folder; else the error that stops the run
    /// before it writes beside another writer.
    pub fn verify(&self) -> Result<()> {
        let now = match self.folder {
            true => std::fs::metadata(&self.path),
            false => std::fs::symlink_metadata(&self.path),
        };
        if now.is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            return Ok(());
        }
        Err(Error::Output(match self.folder {
            true => format!(
                "the run folder {} was moved, deleted or replaced while this run wrote it; stopped before writing \
                 more: put it back (or use the folder it was moved to) and --resume it",
                self.path.display()
            ),
            false => format!(
                "the cell lock {} was deleted or replaced while this task held it, so another task may be training \
                 that cell now; stopped before writing more: make sure one task is left on it, then run this shard \
                 again",
                self.path.display()
            ),
        }))
    }
}

/// The locks a run holds (its folder's, a shard's cells'), checked before every write: a lock
/// deleted or replaced stops the run before it writes beside another writer. First in the
/// fan-out, so its refusal comes before any other sink writes.
pub struct Guard(pub Vec<Watch>);

impl Guard {
    fn verify(&self) -> Result<()> {
        self.0.iter().try_for_each(|w| w.verify())
    }
}

impl Observer for Guard {
    fn on_point(&mut self, _run: (Letter, u64), _p: &Point) -> Result<()> {
        self.verify()
    }

    fn on_thaw(&mut self, _run: (Letter, u64), _t: &Thaw) -> Result<()> {
        self.verify()
    }

    fn on_checkpoint(&mut self, _run: (Letter, u64), _c: &Checkpoint) -> Result<()> {
        self.verify()
    }

    fn on_finish(&mut self, _run: (Letter, u64), _result: &RunResult) -> Result<()> {
        self.verify()
    }

    fn on_kept(&mut self, _run: (Letter, u64), _result: &RunResult) -> Result<()> {
        self.verify()
    }
}

/// A held lock; dropping it releases it (an exclusive holder first removes its note, so the
/// next holder knows the last one ended cleanly).
pub struct Claim {
    _file: File,
    watch: Watch,
    /// The note and the text this holder wrote into it.
    note: Option<(PathBuf, String)>,
}

impl Claim {
    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some((path, mine)) = &self.note {
            if read_note(path).as_deref() == Some(mine.as_str()) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Who holds a lock, as written into its note: the process, its host and when it started.
fn holder() -> String {
    format!("pid {} on {}, started {} UTC", std::process::id(), crate::util::hostname(), crate::util::utc_timestamp())
}

/// Opens `path` for reading and writing (`create`: creating it) without following a symbolic
/// link and without blocking on a FIFO, and only if it is a regular file.
fn open_plain(path: &Path, create: bool) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    match file.metadata()?.is_file() {
        true => Ok(file),
        false => Err(std::io::Error::other("not a regular file")),
    }
}

/// A lock file's or note's text (at most 1 KiB), read without following links or blocking;
/// None when there is none, or it is not a regular file.
fn read_note(path: &Path) -> Option<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(1024).read_to_string(&mut text).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// A note left by a holder that ended without removing it: what to say of it. On this host
/// the lock being free proves the holder ended; of another host's process only the lock
/// speaks, and only where the file system shares locks between hosts.
fn stale_note(dir: &Path, before: &str) -> String {
    let host = crate::util::hostname();
    match before.contains(&format!(" on {host}, ")) {
        true => {
            format!("note: {} was held by {before}, which ended without releasing it; taking it over", dir.display())
        }
        false => format!(
            "note: {} was last held by {before}; its lock is free, so that run has ended, unless this file system does \
             not share locks between hosts (then make sure it has); taking it over",
            dir.display()
        ),
    }
}

/// Takes the folder `dir` (which exists) for `mode`. Refused, naming the holder, when another
/// process holds it in a way that excludes this one.
pub fn claim(dir: &Path, mode: Mode) -> Result<Claim> {
    let file =
        File::open(dir).map_err(|e| Error::Output(format!("cannot open the run folder {}: {e}", dir.display())))?;
    let meta = file.metadata().map_err(|e| Error::Output(format!("cannot read {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::Output(format!("--out {} is a file; give a folder path", dir.display())));
    }
    let watch = Watch { path: dir.to_path_buf(), id: (meta.dev(), meta.ino()), folder: true };
    let note = dir.join(LOCK);
    // Refused only while the holder is still there: a holder that has just taken the lock
    // writes its note at once, and one that has just ended frees it, so a requester that finds
    // the lock taken and no note looks again for a moment before it says who holds it.
    let mut tries = 0;
    loop {
        let got = match mode {
            Mode::Exclusive => file.try_lock(),
            Mode::Shared => file.try_lock_shared(),
        };
        match got {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let who = read_note(&note);
                tries += 1;
                if who.is_none() && tries < 40 {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                    continue;
                }
                let who = who.unwrap_or_else(|| match mode {
                    // An exclusive holder writes its note at once: none means shards or a report.
                    Mode::Exclusive => {
                        format!("shards of an array run or a report, or a run whose note {LOCK} was removed")
                    }
                    Mode::Shared => format!("a run whose note {LOCK} was removed"),
                });
                return Err(Error::Output(format!(
                    "{} is being written by another embgraft ({who}); wait for it to end or stop it, or give another \
                     --out",
                    dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                // Some network file systems have no locks: say so and go on, as the user asked.
                crate::util::say(&format!(
                    "note: cannot lock {} ({e}); make sure only one embgraft writes this folder at a time",
                    dir.display()
                ));
                return Ok(Claim { _file: file, watch, note: None });
            }
        }
    }
    if mode == Mode::Shared {
        return Ok(Claim { _file: file, watch, note: None });
    }
    if let Some(before) = read_note(&note) {
        crate::util::say(&stale_note(dir, &before));
    }
    // A rename puts the note in place: whatever held its name (a link, a FIFO) is replaced,
    // never written through.
    let mine = holder();
    crate::util::write_atomic(&note, mine.as_bytes())?;
    Ok(Claim { _file: file, watch, note: Some((note, mine)) })
}

/// The lock file of one cell, in its group's folder.
pub fn cell_lock(dir: &Path, cell: &str) -> PathBuf {
    dir.join(format!(".cell-{cell}.lock"))
}

/// A shard's hold on one cell (`B-1`): two tasks never train the same cell. Refused, naming the
/// holder, when another task trains it now; a lock file that is a link, a FIFO or anything but
/// a plain file is refused by name, never followed.
pub fn claim_cell(dir: &Path, cell: &str) -> Result<Claim> {
    let path = cell_lock(dir, cell);
    let refuse = |why: String| {
        Error::Output(format!(
            "the cell lock {} {why}; it is not one embgraft made: delete it and run the shard again",
            path.display()
        ))
    };
    // A lock file swapped between opening and locking it is opened again (a few times at most).
    for _ in 0..8 {
        let mut file = match open_plain(&path, true) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(refuse("is a symbolic link".into())),
            Err(e) if e.to_string() == "not a regular file" => {
                return Err(refuse("is not a regular file (a FIFO, socket or device)".into()))
            }
            Err(e) => return Err(Error::Output(format!("cannot create the lock file {}: {e}", path.display()))),
        };
        let meta = file.metadata().map_err(|e| Error::Output(format!("cannot read {}: {e}", path.display())))?;
        let watch = Watch { path: path.clone(), id: (meta.dev(), meta.ino()), folder: false };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Output(format!(
                    "cell {cell} in {} is being trained by another task ({}); two tasks run the same shard: cancel \
                     one, the other goes on",
                    dir.display(),
                    read_note(&path).unwrap_or_else(|| "it has not said who".into())
                )))
            }
            Err(TryLockError::Error(_)) => return Ok(Claim { _file: file, watch, note: None }),
        }
        if watch.verify().is_err() {
            continue;
        }
        let _ = file.set_len(0);
        let _ = file.write_all(holder().as_bytes());
        return Ok(Claim { _file: file, watch, note: None });
    }
    Err(Error::Output(format!(
        "the cell lock {} keeps being replaced while it is taken; stop whatever rewrites it and run the shard again",
        path.display()
    )))
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

/// Result files a cell writes (its run file, checkpoint and weights); shards write only these.
pub fn is_cell_file(name: &str) -> bool {
    crate::train::sinks::CellFile::ALL.iter().any(|f| f.matches(name))
}

/// The report files an experiment writes into a folder (a group's or the overview), by name.
fn is_report_file(name: &str) -> bool {
    const FIXED: &[&str] =
        &["config.toml", "inputs.json", "metrics.csv", "summary.json", "report.md", "overview.md", "overview.json"];
    let plot = [".png", ".svg"].iter().any(|x| name.ends_with(x))
        && ["loss-curves", "drift", "answers-over-time", "sweep-"].iter().any(|p| name.starts_with(p));
    FIXED.contains(&name) || plot
}

/// What `--force` removed: the files (relative to the folder) and the group folders emptied.
#[derive(Debug, Default)]
pub struct Cleared {
    pub files: Vec<String>,
    /// Event files under the folders' `tensorboard/`.
    pub events: usize,
    pub groups: Vec<String>,
}

impl Cleared {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.events == 0 && self.groups.is_empty()
    }

    /// `N files (a, b, c, …) and the group folders x/, y/`, for the one line that says what went.
    pub fn describe(&self) -> String {
        let mut names: Vec<&str> = self.files.iter().map(String::as_str).take(6).collect();
        if self.files.len() > names.len() {
            names.push("…");
        }
        let mut s = format!("{} files ({})", self.files.len(), names.join(", "));
        if self.events > 0 {
            s.push_str(&format!(", {} event files under tensorboard/", self.events));
        }
        if !self.groups.is_empty() {
            let g: Vec<String> = self.groups.iter().map(|g| format!("{g}/")).collect();
            s.push_str(&format!(" and the group folders {}", g.join(", ")));
        }
        s
    }
}

/// `--force`: removes what the previous experiment in `dir` wrote, as its config.toml names it:
/// the report files of the folder and of each of its groups' folders, each group's cells (run
/// files, checkpoints, their locks) and embgraft's event files under `tensorboard/`, and the
/// group folders once empty. Anything else stays: a subfolder the config does not name, a
/// file of the user's, a cell file of a cell the experiment did not have. A folder without a
/// config.toml has only its report files cleared; one whose config.toml is not embgraft's is
/// refused, since what it wrote cannot be told.
pub fn clear_previous(dir: &Path) -> Result<Cleared> {
    let cfg_path = dir.join("config.toml");
    let previous = match cfg_path.is_file() {
        true => {
            let text = crate::util::read_small(&cfg_path)
                .map_err(|e| Error::Output(format!("--force: cannot read {}: {e}", cfg_path.display())))?;
            let cfg = crate::config::ExperimentConfig::from_toml(&text).map_err(|e| {
                Error::Output(format!(
                    "--force: {} is not an embgraft config ({e}), so what the previous experiment wrote cannot be \
                     told; empty the folder yourself, or give another --out",
                    cfg_path.display()
                ))
            })?;
            crate::config::grid::groups(&cfg)
        }
        false => Vec::new(),
    };
    let mut cleared = Cleared::default();
    let top_cells = previous.iter().find(|g| g.name.is_empty()).map(|g| crate::config::grid::grid(&g.cfg));
    clear_folder(dir, "", top_cells.as_deref().unwrap_or(&[]), &mut cleared)?;
    for g in previous.iter().filter(|g| !g.name.is_empty()) {
        let sub = dir.join(&g.name);
        if !sub.is_dir() || sub.is_symlink() {
            continue;
        }
        clear_folder(&sub, &format!("{}/", g.name), &crate::config::grid::grid(&g.cfg), &mut cleared)?;
        if std::fs::remove_dir(&sub).is_ok() {
            cleared.groups.push(g.name.clone());
        }
    }
    Ok(cleared)
}

/// One folder's share of [`clear_previous`]: its report files, the cells of `cells`, the
/// leftovers of interrupted writes of either, its event files and its paper tables.
fn clear_folder(dir: &Path, prefix: &str, cells: &[(u64, Letter)], cleared: &mut Cleared) -> Result<()> {
    let names: Vec<String> = cells
        .iter()
        .flat_map(|&(seed, l)| {
            let files = crate::train::sinks::CellFile::ALL.map(|f| f.name(l, seed));
            files.into_iter().chain([format!(".cell-{l}-{seed}.lock")])
        })
        .collect();
    let ours = |name: &str| is_report_file(name) || names.iter().any(|n| n == name);
    cleared.events += crate::tfevents::clear(&dir.join("tensorboard"))?;
    remove_files(dir, prefix, &ours, cleared)?;
    // The paper tables, and their folder once nothing of the user's is left in it.
    let tables = dir.join(crate::report::tables::DIR);
    if tables.is_dir() && !tables.is_symlink() {
        let prefix = format!("{prefix}{}/", crate::report::tables::DIR);
        remove_files(&tables, &prefix, &crate::report::tables::is_table_file, cleared)?;
        let _ = std::fs::remove_dir(&tables);
    }
    Ok(())
}

/// Removes the files (and links) of `dir` that `ours` names, and the leftovers of interrupted
/// writes of them, listing each in `cleared` under `prefix`.
fn remove_files(dir: &Path, prefix: &str, ours: &dyn Fn(&str) -> bool, cleared: &mut Cleared) -> Result<()> {
    let fail = |p: &Path, e: std::io::Error| Error::Output(format!("--force: cannot remove {}: {e}", p.display()));
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut doomed: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| ours(name) || temp_target(name).is_some_and(ours))
        .collect();
    doomed.sort();
    for (name, path) in doomed {
        std::fs::remove_file(&path).map_err(|err| fail(&path, err))?;
        if !name.starts_with('.') {
            cleared.files.push(format!("{prefix}{name}"));
        }
    }
    Ok(())
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
    fn force_clears_only_what_the_previous_experiment_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A two-corpus experiment: groups named after the corpora, cells A and B of seed 0.
        let mut cfg = crate::config::ExperimentConfig::default();
        cfg.data.corpora = vec!["/x/book.txt".into(), "/x/other.txt".into()];
        cfg.graft.configs.0 = vec![crate::config::Letter::A, crate::config::Letter::B];
        cfg.run.seeds = 1;
        let names: Vec<String> = crate::config::grid::groups(&cfg).into_iter().map(|g| g.name).collect();
        assert_eq!(names.len(), 2);
        std::fs::write(d.join("config.toml"), cfg.to_toml()).unwrap();
        for f in ["overview.md", "notes.txt", ".overview.md.abcdef.tmp.md"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        for g in &names {
            std::fs::create_dir(d.join(g)).unwrap();
            for f in ["config.toml", "report.md", "run-A-0.json", "checkpoint-B-0.safetensors", "loss-curves.png"] {
                std::fs::write(d.join(g).join(f), b"x").unwrap();
            }
        }
        // The paper tables under each group's tables/, and a user's file beside the second's.
        for g in &names {
            std::fs::create_dir(d.join(g).join("tables")).unwrap();
            std::fs::write(d.join(g).join("tables/questions.csv"), b"x").unwrap();
        }
        std::fs::write(d.join(&names[0]).join("tables/configs.tex"), b"x").unwrap();
        std::fs::write(d.join(&names[1]).join("tables/mine.tex"), b"x").unwrap();
        // Beside them: a cell the experiment never had, a user's file, a backup of another run.
        std::fs::write(d.join(&names[1]).join("run-C-2.json"), b"x").unwrap();
        std::fs::write(d.join(&names[1]).join("mine.txt"), b"x").unwrap();
        std::fs::create_dir(d.join("backup")).unwrap();
        for f in ["config.toml", "summary.json"] {
            std::fs::write(d.join("backup").join(f), b"keep").unwrap();
        }
        let cleared = clear_previous(d).unwrap();
        assert_eq!(cleared.files.len(), 2 + 2 * 5 + 3, "{cleared:?}");
        assert!(cleared.files.contains(&format!("{}/tables/configs.tex", names[0])), "{cleared:?}");
        assert_eq!(cleared.groups, [names[0].clone()], "the group holding a user's files stays");
        let mut left: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut want = vec!["backup".to_string(), names[1].clone(), "notes.txt".into()];
        want.sort();
        assert_eq!(left, want);
        assert_eq!(std::fs::read_dir(d.join("backup")).unwrap().count(), 2);
        assert!(d.join(&names[1]).join("mine.txt").exists() && d.join(&names[1]).join("run-C-2.json").exists());
        assert!(d.join(&names[1]).join("tables/mine.tex").exists());
        assert!(!d.join(&names[1]).join("tables/questions.csv").exists());
        assert!(
            cleared.describe().starts_with("15 files (config.toml, overview.md, book/checkpoint-B-0"),
            "{}",
            cleared.describe()
        );
        // A config.toml that is not embgraft's: nothing is removed.
        std::fs::write(d.join("config.toml"), "[app]\nname = 1\n").unwrap();
        assert!(clear_previous(d).unwrap_err().to_string().contains("cannot be told"));
        assert!(d.join("config.toml").exists());
    }
}
