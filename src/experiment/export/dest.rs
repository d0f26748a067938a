//! Where an export writes: its `--out` folder taken, checked, held and filled so that it never
//! replaces a file that is not an earlier export's own, never mixes two exports, and leaves
//! nothing when it fails or is interrupted.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::write_json;
use crate::error::{Error, Result};
use crate::experiment::folder::{self, Mode};

/// The files an export may write (an earlier export whose `embgraft.json` does not list its
/// files, from before the list, is taken to own these).
const FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "embgraft.json",
    "test-windows.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
];

/// The record of an export in its folder: `embgraft.json` lists the files it wrote, so a later
/// `--force` export replaces those and nothing else. While files are being moved in, the list
/// (the earlier export's and the new one's) is kept under [`PENDING`] instead, so an export
/// stopped halfway still says which files are its own.
pub(super) const RECORD: &str = "embgraft.json";
const PENDING: &str = ".embgraft-export-pending.json";
/// Where an export is staged: a hidden folder inside `--out`, removed when the export ends, is
/// interrupted, or (after a kill) by the next export into that folder.
const STAGING: &str = ".embgraft-export-staging-";

/// The folder an export writes: created if new, held (as run folders are) for the whole export
/// so two exports never write it at once, and checked to hold nothing this export may not
/// replace.
pub(super) struct Dest {
    out: PathBuf,
    /// Files of an earlier export there (replaced, or removed when this one does not write them).
    earlier: Vec<String>,
    /// The folder this export created (`--out` or the first of its parents that was missing).
    created: Option<(crate::util::Unfinished, PathBuf)>,
    staging: Option<(tempfile::TempDir, crate::util::Unfinished)>,
    _claim: folder::Claim,
}

impl Dest {
    /// Takes `out` for an export; `inputs` are files the run read (its donor, corpus,
    /// tokenizer) and the run folder, none of which an export may replace.
    pub(super) fn take(out: &Path, force: bool, inputs: &[PathBuf]) -> Result<Dest> {
        let shown = out.display();
        let created = match std::fs::symlink_metadata(out) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => {
                return Err(Error::Output(format!(
                    "--out {shown} is not a folder; give a new or empty folder for the export"
                )))
            }
            Err(_) => {
                // The first folder that does not exist yet: what this export creates, and removes
                // again if it fails or is interrupted.
                let first = out
                    .ancestors()
                    .take_while(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_err())
                    .last()
                    .unwrap_or(out)
                    .to_path_buf();
                let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::Output(format!("cannot create {}: {e}", parent.display())))?;
                let what = format!("the export to {shown} was not written");
                match std::fs::create_dir(out) {
                    Ok(()) => Some((crate::util::Unfinished::new(&first, &what), first)),
                    // Made by another export a moment ago: the lock below decides.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && first == out => None,
                    Err(e) => return Err(Error::Output(format!("cannot create --out {shown}: {e}"))),
                }
            }
        };
        let mut dest =
            Dest { out: out.to_path_buf(), earlier: Vec::new(), created, staging: None, _claim: claim_out(out)? };
        dest.check(force, inputs)?;
        Ok(dest)
    }

    /// What `out` holds (bookkeeping aside), and whether this export may write there.
    fn check(&mut self, force: bool, inputs: &[PathBuf]) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let shown = self.out.display().to_string();
        let fail = |e: std::io::Error| Error::Output(format!("cannot read --out {shown}: {e}"));
        let mut held = Vec::new();
        for entry in std::fs::read_dir(&self.out).map_err(fail)? {
            let name = entry.map_err(fail)?.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING) {
                // An export killed before it could clean up (this one holds the folder now).
                let _ = std::fs::remove_dir_all(self.out.join(&name));
            } else if !folder::is_bookkeeping(&name) && name != PENDING {
                held.push(name);
            }
        }
        held.sort();
        if held.is_empty() {
            return Ok(());
        }
        let odd = held.iter().find(|n| {
            is_export_file(n) && std::fs::symlink_metadata(self.out.join(n)).is_ok_and(|m| !m.file_type().is_file())
        });
        if let Some(n) = odd {
            return Err(Error::Output(format!(
                "--out {shown} holds {n}, which is not a regular file, where an export writes one: move it away or \
                 give an empty or new folder"
            )));
        }
        if held.iter().any(|n| n == "config.toml" || n == "inputs.json") {
            return Err(Error::Output(format!(
                "--out {shown} is a run folder; give a folder of the export's own (new or empty)"
            )));
        }
        let earlier = earlier_export(&self.out);
        if !force {
            let what = if earlier.is_some() { "an earlier export: " } else { "" };
            return Err(Error::Output(format!(
                "--out {shown} is not empty ({what}{}); give an empty or new folder, or --force to replace an \
                 earlier export's files there",
                some_names(&held)
            )));
        }
        // A file an export may write that no earlier export wrote there (a donor's weights, a
        // model's vocab.txt, one put beside an export since) is not this export's to replace.
        let earlier = earlier.unwrap_or_default();
        let foreign: Vec<String> =
            held.iter().filter(|n| FILES.contains(&n.as_str()) && !earlier.contains(n)).cloned().collect();
        if !foreign.is_empty() {
            return Err(Error::Output(format!(
                "--out {shown} holds {}, which no embgraft export wrote there and an export writes; --force \
                 replaces only an earlier export's own files: move them away or give an empty or new folder",
                some_names(&foreign)
            )));
        }
        // The earlier export's files this one replaces or removes: never a file the run read.
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let inputs: Vec<(u64, u64)> = inputs.iter().filter_map(|p| id(p)).collect();
        let touched: Vec<String> = earlier.into_iter().filter(|n| held.contains(n)).collect();
        if let Some(n) = touched.iter().find(|n| id(&self.out.join(n)).is_some_and(|i| inputs.contains(&i))) {
            return Err(Error::Output(format!(
                "--out {shown}: {n} there is a file the run read; an export never replaces it: give another folder"
            )));
        }
        self.earlier = touched;
        Ok(())
    }

    /// A hidden folder inside `out` where the files are written before they are moved in.
    pub(super) fn staging(&mut self) -> Result<PathBuf> {
        let tmp = tempfile::Builder::new()
            .prefix(STAGING)
            .tempdir_in(&self.out)
            .map_err(|e| Error::Output(format!("cannot write in {}: {e}", self.out.display())))?;
        let path = tmp.path().to_path_buf();
        let what = format!("the export to {} was not written", self.out.display());
        self.staging = Some((tmp, crate::util::Unfinished::new(&path, &what)));
        Ok(path)
    }

    /// Moves the staged `files` in, `embgraft.json` (`record`) last: first the list of every
    /// file this export and the earlier one own (pending), then the earlier export's record and
    /// the files this one does not write removed, then each file renamed over its old self.
    pub(super) fn place(mut self, files: &[String], record: &serde_json::Value) -> Result<()> {
        let out = self.out.clone();
        let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", out.display()));
        let tmp = match &self.staging {
            Some((t, _)) => t.path().to_path_buf(),
            None => return Err(Error::Output(format!("nothing was staged for {}", out.display()))),
        };
        let commit = crate::util::Committing::new(&format!("the export to {}", out.display()));
        let mut owned: Vec<String> = self.earlier.iter().chain(files).cloned().collect();
        owned.push(RECORD.into());
        owned.sort();
        owned.dedup();
        write_json(&out, PENDING, &json!({"embgraft_version": env!("CARGO_PKG_VERSION"), "files": owned}))?;
        let gone = |name: &str| match std::fs::remove_file(out.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(e)),
            _ => Ok(()),
        };
        gone(RECORD)?;
        for name in self.earlier.iter().filter(|n| !files.contains(n)) {
            gone(name)?;
        }
        for f in files {
            std::fs::rename(tmp.join(f), out.join(f)).map_err(fail)?;
        }
        write_json(&out, RECORD, record)?;
        gone(PENDING)?;
        // The export is whole: nothing of it is to be removed any more.
        self.created = None;
        self.staging = None;
        commit.done();
        Ok(())
    }
}

impl Drop for Dest {
    /// An export that failed leaves nothing: its staging folder goes (with its own guard), and
    /// so does `--out` when this export created it.
    fn drop(&mut self) {
        self.staging = None;
        if let Some((_, first)) = self.created.take() {
            let _ = std::fs::remove_dir_all(first);
        }
    }
}

/// Holds `out` for one export, as a run holds its folder: a second export into it (or a run
/// that has it as its folder) is refused, naming the holder.
fn claim_out(out: &Path) -> Result<folder::Claim> {
    folder::claim(out, Mode::Exclusive)
}

/// The files an earlier export in `dir` wrote, from its record (or the pending list of one
/// stopped while moving its files in); None when `dir` holds no export's record.
fn earlier_export(dir: &Path) -> Option<Vec<String>> {
    let read = |name: &str| -> Option<Vec<String>> {
        let text = crate::util::read_small(&dir.join(name)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get("embgraft_version")?;
        // Exports from before the list wrote only FILES.
        // Only names an export writes count: a record naming anything else (edited, or not
        // ours) gives no claim on it.
        let mut listed: Vec<String> = match v.get("files").and_then(|f| f.as_array()) {
            Some(a) => a.iter().filter_map(|f| f.as_str()).filter(|f| is_export_file(f)).map(String::from).collect(),
            None => FILES.iter().map(|f| f.to_string()).collect(),
        };
        listed.push(RECORD.into());
        Some(listed)
    };
    let mut all: Vec<String> = [RECORD, PENDING].iter().filter_map(|n| read(n)).flatten().collect();
    all.sort();
    all.dedup();
    (!all.is_empty()).then_some(all)
}

/// A name an export writes (its record included).
fn is_export_file(name: &str) -> bool {
    name == RECORD || FILES.contains(&name)
}

/// Up to six names, then how many more.
fn some_names(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(6).map(String::as_str).collect();
    match names.len().saturating_sub(6) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}
