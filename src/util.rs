//! Small helpers shared by the readers and writers: bounded reads, atomic files, checksums.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Creates `path` with `data` unless it exists: atomically (a temporary file, fsynced, then
/// linked into place only if the name is free), so of several processes racing to create it
/// exactly one wins and no reader sees it half-written. Ok(false) when it already existed.
pub fn write_new(path: &Path, data: &[u8]) -> Result<bool> {
    let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", path.display()));
    place_through_temp(path, false, |tmp| tmp.as_file_mut().write_all(data).map_err(fail))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, fsynced, then
/// renamed over `path`: a reader (or a crash) never sees half a file, and a failed write
/// leaves the old file intact and no temporary file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", path.display()));
    write_atomic_with(path, |tmp| tmp.as_file_mut().write_all(bytes).map_err(fail))
}

/// As [`write_atomic`], with the temporary file filled by `fill`, through its handle or by its
/// path (a PNG encoder writes by path; the temporary name keeps `path`'s extension for it).
/// Whatever `fill` wrote is fsynced before the rename; if it fails, the temporary file goes.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut tempfile::NamedTempFile) -> Result<()>) -> Result<()> {
    place_through_temp(path, true, fill).map(|_| ())
}

/// The one way every file is written: a temporary file beside `path` filled by `fill`, fsynced,
/// then renamed over `path` (`replace`) or linked into place only if the name is free. Ok(false)
/// when not replacing and `path` already existed (the temporary file then goes).
fn place_through_temp(
    path: &Path,
    replace: bool,
    fill: impl FnOnce(&mut tempfile::NamedTempFile) -> Result<()>,
) -> Result<bool> {
    let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", path.display()));
    let mut tmp = temp_beside(path).map_err(fail)?;
    fill(&mut tmp)?;
    // fsync is per file, not per descriptor: it also flushes what was written by path.
    tmp.as_file().sync_all().map_err(fail)?;
    let placed = match replace {
        true => tmp.persist(path).map(|_| ()),
        false => tmp.persist_noclobber(path).map(|_| ()),
    };
    match placed {
        Ok(()) => Ok(true),
        Err(e) if !replace && e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(fail(e.error)),
    }
}

/// A hidden temporary file in `path`'s folder, named after it and keeping its extension. Its
/// permissions are the ones a plain file gets (0666 less the umask, usually 0644), not
/// tempfile's private 0600: a run folder on a cluster's shared file system stays readable to
/// whoever the user's umask lets read it.
fn temp_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map_or(String::new(), |e| format!(".{}", e.to_string_lossy()));
    let (prefix, suffix) = (format!(".{name}."), format!(".tmp{ext}"));
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(&suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
}

/// Reads `path` whole when it is a regular file of at most `cap` bytes: a FIFO, a device or a
/// folder is refused at once (reading one could block forever or never end), and so is a file
/// over the cap (the flag or setting that raises it is named by the caller's `raise`).
pub fn read_input(path: &Path, what: &str, cap: u64, raise: &str) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::Input(format!("cannot read {what} {}: {e}", path.display())))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a folder" } else { "not a regular file (a FIFO, socket or device)" };
        return Err(Error::Input(format!("{what} {} is {kind}; give a regular file", path.display())));
    }
    let too_big = |n: u64| {
        Error::Input(format!(
            "{what} {} holds {} or more, over the {} cap on reads; {raise}",
            path.display(),
            bytesize::ByteSize(n),
            bytesize::ByteSize(cap)
        ))
    };
    if meta.len() > cap {
        return Err(too_big(meta.len()));
    }
    let file =
        std::fs::File::open(path).map_err(|e| Error::Input(format!("cannot read {what} {}: {e}", path.display())))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::io::Read::take(file, cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Input(format!("cannot read {what} {}: {e}", path.display())))?;
    // A file that grew while it was read.
    if bytes.len() as u64 > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Checks, before any work, that `path` may take a file this command writes of its own
/// (`--write-mapped`, `--tokens-out`): a new name, or with `force` an existing regular file that
/// is none of `inputs` (the files the same command reads). A device, FIFO, socket, folder or
/// symbolic link is refused by name (renaming a file over `/dev/null` would replace the device),
/// and so is an existing file without `force`. Write it afterwards with [`write_output`].
pub fn check_output_file(path: &Path, flag: &str, force: bool, inputs: &[&Path]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let found = std::fs::symlink_metadata(path);
    let meta = found.as_ref().ok();
    // An input, by inode where both exist (a hard link, a linked folder), or as the same place
    // under another spelling (`./b`, `dir/../b`: bench's --batches, written first when missing).
    let same_file = |i: &Path| {
        meta.as_ref().is_some_and(|m| {
            m.is_file() && std::fs::metadata(i).is_ok_and(|n| (n.dev(), n.ino()) == (m.dev(), m.ino()))
        })
    };
    if let Some(input) = inputs.iter().find(|i| same_place(path, i) || same_file(i)) {
        return Err(Error::Output(format!(
            "{flag} {shown} is {}, which this command reads; give another file path",
            input.display()
        )));
    }
    let meta = match found {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(Error::Output(format!(
                    "{flag} {shown}: its folder {} does not exist; create it or give another path",
                    dir.display()
                )));
            }
            return Ok(());
        }
        Err(e) => return Err(Error::Output(format!("{flag} {shown}: {e}; give a new file path"))),
    };
    let t = meta.file_type();
    if !t.is_file() {
        let kind = match () {
            _ if t.is_symlink() => "a symbolic link",
            _ if t.is_dir() => "a folder",
            _ => "not a regular file (a device, FIFO or socket)",
        };
        return Err(Error::Output(format!(
            "{flag} {shown} is {kind}; embgraft writes only a new regular file there: give a new file path"
        )));
    }
    if !force {
        return Err(Error::Output(format!("{flag} {shown} exists; give a new file path, or --force to replace it")));
    }
    Ok(())
}

/// Whether two paths name one place: their folders resolved (links followed) and the same name
/// in them. Paths whose folder does not exist are compared as written.
fn same_place(a: &Path, b: &Path) -> bool {
    let place = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dir.canonicalize().ok().map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    match (place(a), place(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Writes a file checked by [`check_output_file`]: atomically, and without `force` only if the
/// name is still free (a file that appeared meanwhile is not overwritten).
pub fn write_output(path: &Path, flag: &str, force: bool, bytes: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", path.display()));
    write_output_with(path, flag, force, |tmp| tmp.as_file_mut().write_all(bytes).map_err(fail))
}

/// As [`write_output`], the temporary file filled by `fill` (through its handle or by its path,
/// so a large file can be streamed instead of built in memory first).
pub fn write_output_with(
    path: &Path,
    flag: &str,
    force: bool,
    fill: impl FnOnce(&mut tempfile::NamedTempFile) -> Result<()>,
) -> Result<()> {
    match place_through_temp(path, force, fill)? {
        true => Ok(()),
        false => Err(Error::Output(format!(
            "{flag} {} appeared while this command ran; nothing was written over it: give a new file path",
            path.display()
        ))),
    }
}

/// Largest small file (config.toml, config.json, a token, an index) read whole.
pub const SMALL_FILE: u64 = 64 << 20;

/// A small text file (a config, an index, a token), bounded as [`read_input`].
pub fn read_small(path: &Path) -> std::io::Result<String> {
    let bytes = read_input(path, "file", SMALL_FILE, "it is not a file embgraft wrote")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8 text"))
}

/// `YYYYMMDD-HHMMSS` in UTC: a run folder's default name, and when a lock was taken.
pub fn utc_timestamp() -> String {
    // RFC 3339 (`2026-12-01T20:50:07Z`) with its separators dropped.
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8], &digits[8..14])
}

/// A float slice's bytes as stored on disk (little-endian, as every supported target is).
pub fn f32_bytes(values: &[f32]) -> &[u8] {
    bytemuck::cast_slice(values)
}

/// Floats from little-endian bytes (any alignment; a trailing partial float is dropped).
pub fn f32_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&bytes[..bytes.len() / 4 * 4])
}

/// This machine's physical memory in bytes, where the system says (Linux: /proc/meminfo).
pub fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// What memory this process can still take, in bytes, and who says so: the kernel's
/// `MemAvailable`, or the cgroup's limit less its use where that is smaller (a Slurm job, a
/// container). None where neither can be read.
pub fn available_memory() -> Option<(u64, String)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok();
    let kb = |key: &str| -> Option<u64> {
        let line = info.as_deref()?.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()?.checked_mul(1024)
    };
    let num = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    // cgroup v2 (a value of "max" is no limit), then v1 (a huge value is no limit).
    let cgroup = match (num("/sys/fs/cgroup/memory.max"), num("/sys/fs/cgroup/memory.current")) {
        (Some(max), Some(used)) => Some(max.saturating_sub(used)),
        _ => match (
            num("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            num("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        ) {
            (Some(max), Some(used)) if max < 1 << 60 => Some(max.saturating_sub(used)),
            _ => None,
        },
    };
    // An address-space limit (`ulimit -v`, some batch systems) less what this process maps.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    let limited = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } == 0 && lim.rlim_cur != libc::RLIM_INFINITY;
    let mapped = || {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()?.checked_mul(1024)
    };
    let address = limited.then(|| lim.rlim_cur.saturating_sub(mapped().unwrap_or(0)));
    [
        (kb("MemAvailable:"), "MemAvailable"),
        (cgroup, "the cgroup's memory limit less its use"),
        (address, "the address-space limit (ulimit -v) less what is mapped"),
    ]
    .into_iter()
    .filter_map(|(n, who)| n.map(|n| (n, who.to_string())))
    .min_by_key(|(n, _)| *n)
}

/// A content fingerprint: BLAKE3, its first 128 bits as hex (plenty to tell files apart, and
/// short in messages and files).
pub fn fingerprint(bytes: &[u8]) -> String {
    hex128(blake3::hash(bytes).as_bytes())
}

/// A streaming [`fingerprint`], for inputs that come in pieces.
pub struct Hasher(blake3::Hasher);

impl Default for Hasher {
    fn default() -> Self {
        Hasher(blake3::Hasher::new())
    }
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    pub fn finish(&self) -> String {
        hex128(self.0.finalize().as_bytes())
    }
}

fn hex128(bytes: &[u8]) -> String {
    bytes[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// FNV-1a, 64-bit: a cheap fingerprint that any change of one byte alters.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// FNV-1a over the bit patterns of a float slice: equal checksums for bit-identical data,
/// and a cheap way to record in a report which matrix a run started from.
pub fn checksum(values: &[f32]) -> u64 {
    fnv1a(f32_bytes(values).iter().copied())
}

/// The empty file written and removed to learn that a folder takes files (a run folder's
/// bookkeeping, never a result).
pub const WRITE_PROBE: &str = ".embgraft-write-test";

/// Writes and removes [`WRITE_PROBE`] in `dir` (which must exist), through the same temporary
/// file and rename every result takes: a folder that fails here would fail hours later.
pub fn probe_writable(dir: &Path) -> Result<()> {
    write_atomic(&dir.join(WRITE_PROBE), b"")?;
    std::fs::remove_file(dir.join(WRITE_PROBE)).ok();
    Ok(())
}

/// The most compute threads embgraft runs per core this process may use. Past the cores a
/// thread only waits for one, and past a point the waiting costs more than the work: measured
/// on a 2-core AMD EPYC (issue 43's note), a 20-step run of A and B at width 8 took 8.8-10 s at
/// 2 to 64 threads, 11.3 s at 128, 17.7 s at 256 and over 90 s at 1000 (at 100000 the process
/// did nothing but create threads). 32 per core keeps every count that costs little and
/// refuses the ones that only hurt.
pub const THREADS_PER_CORE: usize = 32;

/// Checks `RAYON_NUM_THREADS` (rayon reads it once, for the pool every parallel loop runs on)
/// and builds that pool, once per process, before any parallel work: a value that is not a
/// count, or more than [`THREADS_PER_CORE`] per core this process may use, is refused with one
/// line instead of spawning threads without bound.
pub fn start_threads() -> Result<()> {
    static STARTED: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let asked = threads_asked(std::env::var_os("RAYON_NUM_THREADS"), cores)?;
        // Already built (a test harness, a front that ran rayon first): its count stands.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(asked.unwrap_or(0)).build_global();
        Ok(())
    });
    started.clone().map_err(Error::Input)
}

/// The thread count `RAYON_NUM_THREADS` asks for (None: unset or 0, rayon's one per core), or
/// why it is refused.
fn threads_asked(var: Option<std::ffi::OsString>, cores: usize) -> std::result::Result<Option<usize>, String> {
    let Some(var) = var else { return Ok(None) };
    let text = var.to_string_lossy();
    let cap = THREADS_PER_CORE * cores;
    match text.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(n) if n <= cap as u64 => Ok(Some(n as usize)),
        Ok(n) => Err(format!(
            "RAYON_NUM_THREADS={n} is more than the {cap} threads embgraft runs on this process's {cores} {} \
             (at most {THREADS_PER_CORE} per core: past that threads only wait): set it to {cores} or unset it",
            if cores == 1 { "core" } else { "cores" }
        )),
        Err(_) => Err(format!(
            "RAYON_NUM_THREADS={text:?} is not a thread count: set it to a whole number such as {cores}, or unset it"
        )),
    }
}

/// What an unfinished write leaves that an interrupt must take away before the process exits
/// (an export's staging folder, the `--out` it created), with what to say of it.
static UNFINISHED: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

/// While alive, `path` (a file or folder this process is writing and owns whole) is removed if
/// the process is interrupted, and `what` is said instead of the usual line.
pub struct Unfinished(std::path::PathBuf);

impl Unfinished {
    pub fn new(path: &Path, what: &str) -> Unfinished {
        let mut list = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner());
        list.push((path.to_path_buf(), what.to_string()));
        Unfinished(path.to_path_buf())
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let mut list = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = list.iter().rposition(|(p, _)| *p == self.0) {
            list.remove(i);
        }
    }
}

/// A write being committed now (an export moving its staged files in), or one that has been,
/// with whether it is done: an interrupt waits for it and says which.
static COMMITTING: std::sync::Mutex<Option<(String, bool)>> = std::sync::Mutex::new(None);

/// While alive, a write is being committed (renames that take moments): an interrupt lets it
/// finish instead of removing half of it. [`Committing::done`] marks it whole.
pub struct Committing;

impl Committing {
    pub fn new(what: &str) -> Committing {
        // Taken under the list's lock, so an interrupt either removes the unfinished write
        // before this begins or waits for it to end.
        let _list = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner());
        *COMMITTING.lock().unwrap_or_else(|e| e.into_inner()) = Some((what.to_string(), false));
        Committing
    }

    /// The write is whole: an interrupt from now on says so instead of removing anything.
    pub fn done(self) {
        if let Some(c) = COMMITTING.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            c.1 = true;
        }
        std::mem::forget(self);
    }
}

impl Drop for Committing {
    /// A commit that failed: nothing is being committed any more.
    fn drop(&mut self) {
        *COMMITTING.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// For the interrupt handler: waits (up to a minute) for a commit in progress and returns what it
/// finished; else removes every [`Unfinished`] path, newest first, and returns what they were.
pub fn finish_or_remove_unfinished() -> (Option<String>, Vec<String>) {
    let started = std::time::Instant::now();
    loop {
        // Under the list's lock no commit can begin (see `Committing::new`).
        let mut list = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner());
        let now = COMMITTING.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match now {
            Some((_, false)) if started.elapsed() < std::time::Duration::from_secs(60) => {
                drop(list);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            // Done, or still moving after a minute: either way its pending list says what it owns.
            Some((what, _)) => return (Some(what), Vec::new()),
            None => {
                let mut said = Vec::new();
                while let Some((path, what)) = list.pop() {
                    let gone = match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                        Ok(_) => std::fs::remove_file(&path),
                        Err(_) => Ok(()),
                    };
                    if gone.is_ok() && !said.contains(&what) {
                        said.push(what);
                    }
                }
                return (None, said);
            }
        }
    }
}

/// This machine's name (lock holders, event file names), or "this host" when it has none.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match ok {
        true => String::from_utf8_lossy(&buf[..end]).into_owned(),
        false => "this host".into(),
    }
}

/// Where [`say`] sends a line on this thread, when a front (the Python package) shows them itself.
type Hook = std::rc::Rc<dyn Fn(&str)>;

thread_local! {
    static MESSAGES: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// A line for the person running the experiment (the plan, a run done, a note): to the front
/// that asked for them on this thread ([`messages_to`]), else to stderr.
pub fn say(line: &str) {
    match MESSAGES.with(|m| m.borrow().clone()) {
        Some(hook) => hook(line),
        None => to_stderr(line),
    }
}

/// Names joined as a sentence lists them: `a`, `a and b`, `a, b and c`.
pub fn listed(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Prints a command's result (a JSON line, an inspection, "wrote …") to stdout, where scripts
/// read it; a reader that went away (`embgraft inspect M | head`) ends the output quietly
/// instead of a panic. Messages about the run go through [`say`] instead.
pub fn print_result(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}").and_then(|_| o.flush());
}

/// Writes a line to stderr, if it can: a closed or full stderr (`2>&1 | head -1`,
/// `2>/dev/full`) loses the message, never the run (`eprintln!` would panic there).
pub fn to_stderr(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Sends this thread's [`say`] lines to `hook` while `f` runs (a notebook cell shows them
/// where the kernel's stderr would not), then puts back what was there.
pub fn messages_to<R>(hook: Hook, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Hook>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            MESSAGES.with(|m| *m.borrow_mut() = before);
        }
    }
    let _restore = Restore(MESSAGES.with(|m| m.borrow_mut().replace(hook)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_past_the_cap_or_not_counts_are_refused() {
        let var = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(threads_asked(None, 2), Ok(None));
        assert_eq!(threads_asked(var("0"), 2), Ok(None));
        assert_eq!(threads_asked(var(" 3 "), 2), Ok(Some(3)));
        assert_eq!(threads_asked(var("64"), 2), Ok(Some(64)));
        let e = threads_asked(var("65"), 2).unwrap_err();
        assert!(e.contains("RAYON_NUM_THREADS=65 is more than the 64 threads") && e.contains("set it to 2"), "{e}");
        assert!(threads_asked(var("100000"), 16).is_err());
        assert!(threads_asked(var("-1"), 2).unwrap_err().contains("is not a thread count"));
        assert!(threads_asked(var("four"), 2).unwrap_err().contains("\"four\" is not a thread count"));
    }

    #[test]
    fn floats_from_bytes_at_any_alignment_and_a_timestamp() {
        let v = [1.5f32, -0.0, f32::MIN_POSITIVE];
        let mut bytes = vec![9u8];
        bytes.extend_from_slice(f32_bytes(&v));
        bytes.push(1); // a partial float
        let back = f32_from_bytes(&bytes[1..]);
        assert_eq!(back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), v.map(f32::to_bits));
        let t = utc_timestamp();
        assert!(t.len() == 15 && t.as_bytes()[8] == b'-' && t.starts_with("20"), "{t}");
    }

    #[test]
    fn checksum_sees_one_bit() {
        let a = vec![1.0f32, 2.0, 3.0];
        let mut b = a.clone();
        assert_eq!(checksum(&a), checksum(&b));
        b[1] = f32::from_bits(b[1].to_bits() ^ 1);
        assert_ne!(checksum(&a), checksum(&b));
        // -0.0 and 0.0 compare equal as floats but are different bits.
        assert_ne!(checksum(&[0.0]), checksum(&[-0.0]));
    }

    /// A full disk: the write fails with an error, and the previous file and folder are as
    /// they were. Needs a small tmpfs, so it runs where mounting is allowed (root, as in CI).
    #[test]
    fn full_disk_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("small");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mnt)
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            eprintln!("skipped: cannot mount a small tmpfs here (not root?)");
            return;
        }
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _guard = Unmount(&mnt);
        let p = mnt.join("report.md");
        write_atomic(&p, b"good report").unwrap();
        let err = write_atomic(&p, &vec![b'x'; 1 << 20]).unwrap_err().to_string();
        assert!(err.contains("cannot write") && err.contains("report.md"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"good report");
        assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 1, "the temporary file is removed");
    }

    /// Result files get a plain file's permissions (what the umask allows), not 0600; the
    /// create-once writer keeps the first file.
    #[cfg(unix)]
    #[test]
    fn result_files_get_plain_permissions_and_write_new_keeps_the_first() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.toml"));
        write_atomic(&a, b"{}").unwrap();
        assert!(write_new(&b, b"first").unwrap());
        assert_eq!((mode(&a), mode(&b)), (mode(&plain), mode(&plain)));
        assert!(!write_new(&b, b"second").unwrap());
        assert_eq!(std::fs::read(&b).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "no temporary file left");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
