//! Donor files from the Hugging Face Hub, into its standard cache (`hf_hub::Cache`'s layout:
//! `models--org--name/{blobs,snapshots,refs}`), as its own tools do, with bounds: connect and
//! idle-read timeouts, a minimum rate, at most a handful of redirects, never more bytes than
//! announced, the announced size checked against the cache's free disk, and the token sent to
//! the `HF_ENDPOINT` host only (dropped on a redirect to any other host, as `huggingface_hub`
//! does). A dropped connection resumes where it stopped (a Range request), in this run or the
//! next.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Redirects followed per request: the Hub answers with one or two.
const MAX_REDIRECTS: usize = 5;
/// Attempts per file within one run; the partial file stays for the next run after that.
const ATTEMPTS: usize = 3;
/// Headroom kept free on the cache's disk beyond the file itself.
const DISK_MARGIN: u64 = 64 << 20;
/// A download must bring at least this much in every window of `RATE_WINDOWS` idle timeouts,
/// or it is dropped (a server that drips a byte a second never times out a read).
const MIN_BYTES_PER_WINDOW: u64 = 32 << 10;
const RATE_WINDOWS: u32 = 4;

/// The Hub as its own tools use it: the cache in `HF_HUB_CACHE`, else `HF_HOME`/hub, else
/// ~/.cache/huggingface/hub; `HF_ENDPOINT` for a mirror; `HF_TOKEN` (else the token file
/// `huggingface-cli login` writes) for gated models; `HF_HUB_OFFLINE=1` for the cache alone;
/// `HF_HUB_DOWNLOAD_TIMEOUT` (seconds, default 10) for connecting and for each read. The
/// token is sent to the endpoint's host only and never printed or saved.
pub struct Hub {
    pub cache: hf_hub::Cache,
    /// Where requests go, credentials included when `HF_ENDPOINT` holds them.
    endpoint: String,
    /// The endpoint as messages show it: without a user name or password.
    pub shown: String,
    pub offline: bool,
    token: Option<String>,
    timeout: Duration,
    agent: ureq::Agent,
}

impl Hub {
    pub fn from_env() -> Result<Hub> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let root = match (var("HF_HUB_CACHE"), var("HF_HOME")) {
            (Some(c), _) => PathBuf::from(c),
            (None, Some(h)) => Path::new(&h).join("hub"),
            (None, None) => dirs::home_dir()
                .ok_or_else(|| Error::Download("no home folder to keep the Hub cache in; set HF_HUB_CACHE".into()))?
                .join(".cache/huggingface/hub"),
        };
        let cache = hf_hub::Cache::new(root);
        let token = match var("HF_TOKEN") {
            Some(t) => Some(t),
            None => read_token_file(&cache.token_path())?,
        };
        let token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        if token.as_deref().is_some_and(|t| !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(Error::Download(
                "HF_TOKEN (or the token file) holds a character an HTTP header cannot carry (a space, a line break \
                 inside, or a non-ASCII letter); copy the token again"
                    .into(),
            ));
        }
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        if url::Url::parse(&endpoint).map_or(true, |u| u.host_str().is_none()) {
            return Err(Error::Download(format!(
                "HF_ENDPOINT {} is not a URL like https://huggingface.co",
                without_credentials(&endpoint)
            )));
        }
        let shown = without_credentials(&endpoint);
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| ["1", "true", "yes", "on"].contains(&v.trim().to_ascii_lowercase().as_str()));
        let timeout = match var("HF_HUB_DOWNLOAD_TIMEOUT") {
            None => Duration::from_secs(10),
            Some(v) => v.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0).map_or_else(
                || Err(Error::Download(format!("HF_HUB_DOWNLOAD_TIMEOUT={v} is not a number of seconds (0 to 3600)"))),
                |s| Ok(Duration::from_secs_f64(s)),
            )?,
        };
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .timeout_write(timeout)
            .user_agent(concat!("embgraft/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Hub { cache, endpoint, shown, offline, token, timeout, agent })
    }

    /// `file` of `repo` from the cache, downloaded (resuming a partial download) when missing.
    /// None when the repository has no such file and it is not `required`.
    pub fn get(&self, repo: &str, file: &str, required: bool) -> Result<Option<PathBuf>> {
        if let Some(p) = self.cache.model(repo.to_string()).get(file) {
            match self.intact(&p) {
                Ok(()) => return Ok(Some(p)),
                // A damaged blob is fetched again once, where the Hub can be asked.
                Err(_) if !self.offline => self.forget(&p),
                Err(e) => return Err(e),
            }
        }
        if !required && self.known_missing(repo, file) {
            return Ok(None);
        }
        if self.offline {
            return match required {
                false => Ok(None),
                true => Err(Error::Download(format!(
                    "HF_HUB_OFFLINE is set and {repo}/{file} is not in the cache {}; unset it to download, or give \
                     --donor a local path",
                    self.cache.path().display()
                ))),
            };
        }
        let url = format!("{}/{repo}/resolve/main/{file}", self.endpoint);
        let meta = match self.metadata(&url) {
            Ok(m) => m,
            Err(Failure::Status(404, code)) if code.as_deref() != Some("RepositoryNotFound") && !required => {
                return Ok(None)
            }
            Err(f) => return Err(self.explain(repo, file, f)),
        };
        let label = format!("{repo}/{file}");
        let got = self.download(repo, file, &meta, &label).map_err(|f| self.explain(repo, file, f))?;
        self.intact(&got)?;
        Ok(Some(got))
    }

    /// Whether a cached file's blob holds the bytes its name (the Hub's ETag) says: for a large
    /// file that is the SHA-256 of its content. A blob checked once is remembered (by size and
    /// modification time, in embgraft's own cache folder) and not hashed again. Small files'
    /// ETags are git object ids, not checked here.
    fn intact(&self, pointer: &Path) -> Result<()> {
        let Ok(blob) = std::fs::canonicalize(pointer) else { return Ok(()) };
        let etag = blob.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if etag.len() != 64 || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(());
        }
        let Ok(meta) = std::fs::metadata(&blob) else { return Ok(()) };
        let stamp = format!("{} {:?}", meta.len(), meta.modified().ok());
        let marker = dirs::cache_dir().map(|c| c.join("embgraft").join("verified-blobs").join(&etag));
        if marker.as_ref().and_then(|m| std::fs::read_to_string(m).ok()).as_deref() == Some(stamp.as_str()) {
            return Ok(());
        }
        let damaged = |why: String| {
            Error::Download(format!(
                "the cached file {} is damaged ({why}); delete {} and {} to have it fetched again",
                pointer.display(),
                blob.display(),
                pointer.display()
            ))
        };
        let sum = sha256_file(&blob).map_err(|e| damaged(format!("cannot read it: {e}")))?;
        if !sum.eq_ignore_ascii_case(&etag) {
            return Err(damaged(format!(
                "its bytes hash to sha256 {}…, not the {}… it was stored as",
                &sum[..12],
                &etag[..12]
            )));
        }
        if let Some(m) = marker {
            if m.parent().is_some_and(|d| std::fs::create_dir_all(d).is_ok()) {
                let _ = crate::util::write_atomic(&m, stamp.as_bytes());
            }
        }
        Ok(())
    }

    /// Drops a damaged cached file (its snapshot pointer and its blob), so it is fetched anew.
    fn forget(&self, pointer: &Path) {
        if let Ok(blob) = std::fs::canonicalize(pointer) {
            crate::util::say(&format!("note: {} is damaged; fetching it again", pointer.display()));
            let _ = std::fs::remove_file(&blob);
        }
        let _ = std::fs::remove_file(pointer);
    }

    /// A request for `url` (bytes from `from` on), following at most [`MAX_REDIRECTS`]
    /// redirects; the token goes only to the endpoint's own host, scheme and port.
    fn request(&self, url: &str, range: Option<&str>, whole_within: Option<Duration>) -> Result<Answer, Failure> {
        let mut url =
            url::Url::parse(url).map_err(|e| Failure::Other(format!("bad URL {}: {e}", without_credentials(url))))?;
        let home = url::Url::parse(&self.endpoint).ok().map(|u| u.origin());
        let mut seen = Headers::default();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(url.as_str());
            if let Some(t) = whole_within {
                req = req.timeout(t);
            }
            if let (Some(token), true) = (&self.token, home.as_ref() == Some(&url.origin())) {
                req = req.set("Authorization", &format!("Bearer {token}"));
            }
            if let Some(r) = range {
                req = req.set("Range", r);
            }
            let resp = match req.call() {
                Ok(r) => r,
                Err(ureq::Error::Status(code, r)) => {
                    return Err(Failure::Status(code, r.header("x-error-code").map(str::to_string)))
                }
                Err(ureq::Error::Transport(t)) => return Err(Failure::Network(self.transport_text(&t, whole_within))),
            };
            seen.take(&resp);
            if !(300..400).contains(&resp.status()) {
                return Ok(Answer { resp, headers: seen, url: url.to_string() });
            }
            let loc = resp.header("location").ok_or_else(|| Failure::Other("a redirect without a Location".into()))?;
            url = url.join(loc).map_err(|_| Failure::Other("a redirect to a malformed Location".into()))?;
        }
        Err(Failure::Other(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// What the Hub says of a file before it is fetched: its commit, ETag and size (a request
    /// for its first byte, as `huggingface_hub` asks).
    fn metadata(&self, url: &str) -> Result<Meta, Failure> {
        let a = self.request(url, Some("bytes=0-0"), Some(self.timeout * 3))?;
        let size = a
            .headers
            .linked_size
            .or_else(|| {
                let range = a.resp.header("content-range")?;
                range.rsplit_once('/')?.1.trim().parse().ok()
            })
            .or_else(|| (a.resp.status() == 200).then(|| a.resp.header("content-length")?.parse().ok()).flatten())
            .ok_or_else(|| Failure::Other("the server gave no size for it".into()))?;
        let etag = a.headers.etag.clone().ok_or_else(|| Failure::Other("the server gave no ETag".into()))?;
        let commit =
            a.headers.commit.clone().ok_or_else(|| Failure::Other("the server gave no X-Repo-Commit".into()))?;
        let safe = |s: &str| {
            !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        };
        if !safe(&etag) || !safe(&commit) {
            return Err(Failure::Other("the server's ETag or commit is not a plain name".into()));
        }
        // Drain the one byte asked for (bounded), so the connection ends cleanly.
        let _ = a.resp.into_reader().take(1 << 16).read_to_end(&mut Vec::new());
        Ok(Meta { size, etag, commit, url: a.url })
    }

    fn download(&self, repo: &str, file: &str, meta: &Meta, label: &str) -> Result<PathBuf, Failure> {
        let io = |what: &str, e: std::io::Error| Failure::Local(format!("{what}: {e}"));
        let repo_dir = self.repo_dir(repo);
        let blobs = repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| io(&blobs.display().to_string(), e))?;
        let blob = blobs.join(&meta.etag);
        // One download of a blob at a time (shards of an array share the cache): the second
        // waits, then finds the blob there.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(blobs.join(format!("{}.lock", meta.etag)))
            .map_err(|e| io("the cache's lock file", e))?;
        lock.lock().map_err(|e| io("the cache's lock file", e))?;
        if std::fs::metadata(&blob).map(|m| m.len()).ok() != Some(meta.size) {
            let part = blobs.join(format!("{}.part", meta.etag));
            self.fetch_into(&part, meta, label)?;
            std::fs::rename(&part, &blob).map_err(|e| io(&blob.display().to_string(), e))?;
        }
        let snapshot = repo_dir.join("snapshots").join(&meta.commit);
        std::fs::create_dir_all(&snapshot).map_err(|e| io(&snapshot.display().to_string(), e))?;
        let pointer = snapshot.join(file);
        let _ = std::fs::remove_file(&pointer);
        #[cfg(unix)]
        let linked = std::os::unix::fs::symlink(Path::new("../../blobs").join(&meta.etag), &pointer);
        #[cfg(not(unix))]
        let linked = std::fs::copy(&blob, &pointer).map(|_| ());
        linked.map_err(|e| io(&pointer.display().to_string(), e))?;
        self.cache.model(repo.to_string()).create_ref(&meta.commit).map_err(|e| io("the cache's refs/main", e))?;
        Ok(pointer)
    }

    /// Fills `part` up to the announced size: resumed from what it holds, retried on a dropped
    /// connection, never written past the size.
    fn fetch_into(&self, part: &Path, meta: &Meta, label: &str) -> Result<(), Failure> {
        let io = |e: std::io::Error| Failure::Local(format!("{}: {e}", part.display()));
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(part).map_err(io)?;
        let mut have = out.metadata().map_err(io)?.len();
        if have > meta.size {
            out.set_len(0).map_err(io)?;
            have = 0;
        }
        let need = meta.size - have;
        let free = free_bytes(part.parent().unwrap_or(Path::new(".")));
        if let Some(free) = free.filter(|&f| f < need.saturating_add(DISK_MARGIN)) {
            return Err(Failure::Disk { need, free });
        }
        let big = meta.size > 1 << 20;
        if big {
            crate::util::say(&format!(
                "downloading {label} ({}) from {} into {}",
                bytesize::ByteSize(meta.size),
                self.shown,
                self.cache.path().display()
            ));
        }
        let bar = (big && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let b = indicatif::ProgressBar::new(meta.size);
            if let Ok(s) = indicatif::ProgressStyle::with_template("[{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}") {
                b.set_style(s.progress_chars("=> "));
            }
            b.set_position(have);
            b
        });
        let mut last = Failure::Other("no attempt".into());
        for attempt in 0..ATTEMPTS {
            if have == meta.size {
                break;
            }
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(300 << attempt));
            }
            match self.fetch_part(&mut out, meta, have, bar.as_ref()) {
                Ok(()) => {}
                Err(f @ (Failure::OverSent | Failure::Local(_))) => {
                    let _ = std::fs::remove_file(part);
                    return Err(f);
                }
                Err(f) => last = f,
            }
            have = out.metadata().map_err(io)?.len();
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match have == meta.size {
            true => out.sync_all().map_err(io),
            false => Err(last),
        }
    }

    /// One request for the bytes from `have` on, appended to `out`.
    fn fetch_part(
        &self,
        out: &mut std::fs::File,
        meta: &Meta,
        have: u64,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<(), Failure> {
        let range = format!("bytes={have}-");
        let a = self.request(&meta.url, (have > 0).then_some(range.as_str()), None)?;
        let mut from = have;
        if a.resp.status() == 200 && have > 0 {
            // The server ignored the Range: start again from the first byte.
            out.set_len(0).map_err(|e| Failure::Local(e.to_string()))?;
            from = 0;
        }
        let rest = meta.size - from;
        let announced = a.resp.header("content-length").and_then(|l| l.parse::<u64>().ok());
        if announced.is_some_and(|n| n > rest) {
            return Err(Failure::OverSent);
        }
        let mut body = a.resp.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let (mut got, mut window_start, mut window_bytes) = (0u64, Instant::now(), 0u64);
        let window = self.timeout * RATE_WINDOWS;
        while got < rest {
            let want = buf.len().min((rest - got) as usize);
            let n = match body.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Failure::Network(format!(
                        "the connection closed after {} of {} bytes",
                        from + got,
                        meta.size
                    )))
                }
                Ok(n) => n,
                Err(e) if timed_out(&e) => return Err(Failure::Network(self.silent(None))),
                Err(e) => return Err(Failure::Network(e.to_string())),
            };
            out.write_all(&buf[..n]).map_err(|e| Failure::Local(e.to_string()))?;
            got += n as u64;
            window_bytes += n as u64;
            if let Some(b) = bar {
                b.inc(n as u64);
            }
            if window_start.elapsed() >= window {
                if window_bytes < MIN_BYTES_PER_WINDOW && got < rest {
                    return Err(Failure::Network(format!(
                        "it sent {window_bytes} bytes in {:.0} s, too slow to finish",
                        window.as_secs_f64()
                    )));
                }
                (window_start, window_bytes) = (Instant::now(), 0);
            }
        }
        // Anything past the announced size means the server and the file disagree.
        match body.read(&mut buf[..1]) {
            Ok(0) | Err(_) => Ok(()),
            Ok(_) => Err(Failure::OverSent),
        }
    }

    fn explain(&self, repo: &str, file: &str, f: Failure) -> Error {
        let has_token = self.token.is_some();
        Error::Download(match f {
            Failure::Status(401 | 403 | 404, Some(code)) if code == "RepositoryNotFound" => {
                self.not_found(repo, has_token)
            }
            Failure::Status(401 | 403, _) => self.not_found(repo, has_token),
            Failure::Status(404, _) => format!("donor {repo} has no {file} on {}", self.shown),
            Failure::Disk { need, free } => format!(
                "{repo}/{file} needs {} more but the cache {} has {} free; free some space, or set HF_HUB_CACHE to a \
                 larger disk",
                bytesize::ByteSize(need),
                self.cache.path().display(),
                bytesize::ByteSize(free)
            ),
            Failure::OverSent => format!(
                "{} sent more bytes for {repo}/{file} than it announced; the partial file is removed: rerun, or pass \
                 --donor PATH with a local model.safetensors",
                self.shown
            ),
            Failure::Local(why) => format!(
                "cannot write {repo}/{file} into the cache {} \
                                            ({why})",
                self.cache.path().display()
            ),
            other => format!(
                "cannot download {repo}/{file} from {} ({}); rerun to resume it, set HF_HUB_OFFLINE=1 to use the \
                 cache {} only, \
                 or pass --donor PATH with a local model.safetensors",
                self.shown,
                other.reason(),
                self.cache.path().display()
            ),
        })
    }

    fn not_found(&self, repo: &str, has_token: bool) -> String {
        format!(
            "donor {repo}: no such repository on {}, or it is private or gated{}; check the name{}",
            self.shown,
            if has_token { " and your token has no access" } else { "" },
            if has_token { "" } else { ", or set HF_TOKEN" }
        )
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache.path().join(format!("models--{}", repo.replace('/', "--")))
    }

    fn commit(&self, repo: &str) -> Option<String> {
        let c = crate::util::read_small(&self.repo_dir(repo).join("refs").join("main")).ok()?;
        Some(c.trim().to_string()).filter(|c| !c.is_empty() && !c.contains(['/', '.']))
    }

    /// Whether an earlier download found that the cached revision has no `file`.
    fn known_missing(&self, repo: &str, file: &str) -> bool {
        self.commit(repo).is_some_and(|c| self.repo_dir(repo).join(".no_exist").join(c).join(file).exists())
    }

    /// Records that the cached revision has none of `files` (as huggingface_hub's `.no_exist`
    /// markers do), so a later run without the network does not need to ask again.
    pub fn remember_missing(&self, repo: &str, files: &[&str]) {
        let Some(c) = self.commit(repo) else { return };
        let dir = self.repo_dir(repo).join(".no_exist").join(c);
        if std::fs::create_dir_all(&dir).is_ok() {
            for f in files {
                let _ = std::fs::File::create(dir.join(f));
            }
        }
    }
}

/// The token file `huggingface-cli login` writes, read with bounds (it is only a line).
fn read_token_file(path: &Path) -> Result<Option<String>> {
    if !path.exists() {
        return Ok(None);
    }
    crate::util::read_small(path).map(Some).map_err(|e| {
        Error::Download(format!("cannot read the Hub token file {} ({e}); fix or remove it", path.display()))
    })
}

/// Free bytes for an unprivileged writer on the file system holding `dir`, where it can be told.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid C string and a zeroed struct that statvfs fills.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0).then(|| (s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

impl Hub {
    /// A transport error in words, without anything a request carried; a server that never
    /// answered is said to have timed out, and after how long.
    fn transport_text(&self, t: &ureq::Transport, whole_within: Option<Duration>) -> String {
        let io = std::error::Error::source(t).and_then(|s| s.downcast_ref::<std::io::Error>());
        if io.is_some_and(timed_out) || t.message().is_some_and(|m| m.contains("timed out")) {
            return self.silent(whole_within);
        }
        let mut s = t.kind().to_string();
        if let Some(m) = t.message() {
            s.push_str(": ");
            s.push_str(m);
        }
        s.lines().next().unwrap_or_default().to_string()
    }

    /// What a server that stopped answering gets called.
    fn silent(&self, whole_within: Option<Duration>) -> String {
        let secs = whole_within.unwrap_or(self.timeout).as_secs_f64();
        format!("timed out after {secs:.0} s with no answer; HF_HUB_DOWNLOAD_TIMEOUT sets how long to wait")
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
}

/// A URL as messages may show it: any user name and password in it taken out.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL: cut whatever stands between the scheme and an '@'.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(a), Some(b)) if b > a => format!("{}://…@{}", &url[..a], &url[b + 1..]),
            _ => url.to_string(),
        },
    }
}

/// The SHA-256 of a file's bytes, as lowercase hex, read a megabyte at a time.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

struct Meta {
    size: u64,
    etag: String,
    commit: String,
    /// Where the bytes are, after the redirects.
    url: String,
}

struct Answer {
    resp: ureq::Response,
    headers: Headers,
    url: String,
}

/// The Hub's identifying headers, from whichever response of a redirect chain carries them
/// (its own 302 does; a CDN's answer may not).
#[derive(Default)]
struct Headers {
    etag: Option<String>,
    commit: Option<String>,
    linked_size: Option<u64>,
}

impl Headers {
    fn take(&mut self, r: &ureq::Response) {
        let clean = |v: &str| v.trim().trim_start_matches("W/").trim_matches('"').to_string();
        if self.etag.is_none() {
            self.etag = r.header("x-linked-etag").or_else(|| r.header("etag")).map(clean);
        }
        if self.commit.is_none() {
            self.commit = r.header("x-repo-commit").map(clean);
        }
        if self.linked_size.is_none() {
            self.linked_size = r.header("x-linked-size").and_then(|s| s.trim().parse().ok());
        }
    }
}

enum Failure {
    Status(u16, Option<String>),
    Network(String),
    OverSent,
    Disk { need: u64, free: u64 },
    Local(String),
    Other(String),
}

impl Failure {
    fn reason(&self) -> String {
        match self {
            Failure::Status(code, _) => format!("HTTP {code}"),
            Failure::Network(s) | Failure::Other(s) | Failure::Local(s) => s.clone(),
            Failure::OverSent => "it sent more than it announced".into(),
            Failure::Disk { .. } => "not enough disk".into(),
        }
    }
}
