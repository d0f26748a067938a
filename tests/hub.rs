//! `--donor org/name` against a server on 127.0.0.1 that answers the way the Hugging Face Hub
//! does: `/{repo}/resolve/main/{file}` redirects (relatively) to the file, with `ETag`,
//! `X-Repo-Commit`, `Content-Length` and `Range` support; unknown repositories and files get
//! the Hub's 401/404 with `X-Error-Code`; one repository is gated behind a token. The server
//! is started by each test, serves a bounded number of connections and stops itself.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_test_secret_token_5c9d";

struct Hub {
    addr: String,
    /// (method, path, Range header) of every request, in order.
    log: Arc<Mutex<Vec<(String, String, Option<String>)>>>,
    /// While set, every download of a `model.safetensors` is cut off halfway (a connection
    /// that keeps failing: the client's own retries resume and fail again).
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    /// Serves `files` (repo -> file name -> bytes); `tiny-org/gated` needs the test token.
    fn start(files: HashMap<String, HashMap<String, Vec<u8>>>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (log, cut, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (l, c, s) = (Arc::clone(&log), Arc::clone(&cut), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &files, &l, &c),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hub { addr, log, cut, stop, thread: Some(thread) }
    }

    fn requests(&self) -> Vec<(String, String, Option<String>)> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    files: &HashMap<String, HashMap<String, Vec<u8>>>,
    log: &Mutex<Vec<(String, String, Option<String>)>>,
    cut: &AtomicBool,
) {
    let Some((mut reader, method, path, headers)) = read_request(&stream, 10) else { return };
    log.lock().unwrap().push((method.clone(), path.clone(), headers.get("range").cloned()));
    let reply = |stream: &mut TcpStream, status: &str, extra: &[(&str, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    // /{org}/{name}/resolve/main/{file} -> /cdn/{org}/{name}/{file}
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (cdn, repo, file) = match seg.as_slice() {
        [org, name, "resolve", "main", file] => (false, format!("{org}/{name}"), file.to_string()),
        ["cdn", org, name, file] => (true, format!("{org}/{name}"), file.to_string()),
        _ => return reply(&mut stream, "404 Not Found", &[], b"not found"),
    };
    let authorised = headers.get("authorization").is_some_and(|a| a == &format!("Bearer {TOKEN}"));
    let Some(repo_files) = files.get(&repo).filter(|_| repo != "tiny-org/gated" || authorised) else {
        let code = ("X-Error-Code", "RepositoryNotFound".to_string());
        return reply(&mut stream, "401 Unauthorized", &[code], b"Repository not found");
    };
    let Some(data) = repo_files.get(&file) else {
        return reply(&mut stream, "404 Not Found", &[("X-Error-Code", "EntryNotFound".into())], b"Entry not found");
    };
    // As the Hub: a large (LFS) file's ETag is its SHA-256, a small file's a git object id.
    let etag = match file.ends_with(".safetensors") {
        true => format!("\"{}\"", sha256(data)),
        false => format!("\"{:016x}{:08x}\"", fnv(data), data.len()),
    };
    let ids = [("ETag", etag), ("X-Repo-Commit", COMMIT.to_string()), ("Accept-Ranges", "bytes".to_string())];
    if !cdn {
        let mut h = ids.to_vec();
        h.push(("Location", format!("/cdn/{repo}/{file}")));
        return reply(&mut stream, "302 Found", &h, b"");
    }
    let (start, end) = match headers.get("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.split_once('-'))
    {
        Some((a, b)) => {
            (a.parse::<usize>().unwrap_or(0), b.parse::<usize>().map_or(data.len() - 1, |e| e.min(data.len() - 1)))
        }
        None => (0, data.len() - 1),
    };
    let body = &data[start..=end];
    let mut h = ids.to_vec();
    h.push(("Content-Range", format!("bytes {start}-{end}/{}", data.len())));
    let status = if headers.contains_key("range") { "206 Partial Content" } else { "200 OK" };
    if file == "model.safetensors" && body.len() > 1 && cut.load(Ordering::SeqCst) {
        // Promise the whole body, send half, hang up.
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in &h {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body[..body.len() / 2]);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    reply(&mut stream, status, &h, body);
    let _ = reader.read(&mut [0u8; 1]);
}

/// A request's method, path and headers (names lower-cased), read with a timeout.
#[allow(clippy::type_complexity)]
fn read_request(
    stream: &TcpStream,
    secs: u64,
) -> Option<(BufReader<TcpStream>, String, String, HashMap<String, String>)> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(secs))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some((reader, method, path, headers))
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn embgraft(args: &[&str], env: &[(&str, &str)], cache: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_embgraft"));
    for k in ["HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE"] {
        c.env_remove(k);
    }
    // embgraft's own cache (which blobs it has checked) beside the Hub's, not in the home folder.
    c.env("HF_HUB_CACHE", cache).env("XDG_CACHE_HOME", cache.with_extension("own")).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn safetensors_bytes(dir: &Path, name: &str, dim: usize) -> Vec<u8> {
    let p = dir.join(name);
    embgraft::fixtures::write_gpt2_layout(&p, dim, 0.5, 3).unwrap();
    std::fs::read(p).unwrap()
}

#[test]
fn hub_donors_download_resume_cache_and_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let weights = safetensors_bytes(dir.path(), "w.safetensors", 8);
    let shard = safetensors_bytes(dir.path(), "s.safetensors", 8);
    let index = serde_json::json!({"metadata": {}, "weight_map": {
        "wte.weight": "model-00002-of-00002.safetensors", "h.0.ln_1.weight": "model-00001-of-00002.safetensors"}});
    let files: HashMap<String, HashMap<String, Vec<u8>>> = HashMap::from([
        ("tiny-org/tiny-model".into(), HashMap::from([("model.safetensors".into(), weights.clone())])),
        ("tiny-org/gated".into(), HashMap::from([("model.safetensors".into(), weights.clone())])),
        ("tiny-org/pickle-only".into(), HashMap::from([("pytorch_model.bin".into(), b"not read".to_vec())])),
        (
            "tiny-org/sharded".into(),
            HashMap::from([
                ("model.safetensors.index.json".into(), index.to_string().into_bytes()),
                ("model-00001-of-00002.safetensors".into(), b"never fetched".to_vec()),
                ("model-00002-of-00002.safetensors".into(), shard.clone()),
            ]),
        ),
    ]);
    let hub = Hub::start(files);
    let cache = dir.path().join("cache");
    let online = [("HF_ENDPOINT", hub.addr.as_str())];

    // A connection cut mid-file: a one-line error and no file in the cache's snapshot.
    hub.cut.store(true, Ordering::SeqCst);
    let o = embgraft(&["inspect", "tiny-org/tiny-model"], &online, &cache);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot download tiny-org/tiny-model/model.safetensors") && err.contains("rerun"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error") || l.contains("cannot")).count(), 1, "{err}");
    let snapshot = cache.join("models--tiny-org--tiny-model").join("snapshots").join(COMMIT).join("model.safetensors");
    assert!(!snapshot.exists());
    hub.cut.store(false, Ordering::SeqCst);

    // The rerun resumes where the cut left it (a Range request past 0) and gets the right bytes.
    let o = embgraft(&["inspect", "tiny-org/tiny-model"], &online, &cache);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("wte.weight"), "{}", text(&o));
    assert_eq!(std::fs::read(&snapshot).unwrap(), weights, "the cached file has other bytes than the server's");
    let resumed = hub.requests().iter().any(|(_, p, r)| {
        p.ends_with("/model.safetensors")
            && r.as_deref().is_some_and(|r| r.starts_with("bytes=") && !r.starts_with("bytes=0-"))
    });
    assert!(resumed, "no resuming Range request: {:?}", hub.requests());

    // A sharded model: only the index and the shard with the embedding are fetched.
    let o = embgraft(&["inspect", "tiny-org/sharded"], &online, &cache);
    assert!(o.status.success(), "{}", text(&o));
    let paths: Vec<String> = hub.requests().into_iter().map(|(_, p, _)| p).collect();
    assert!(paths.iter().any(|p| p.ends_with("model-00002-of-00002.safetensors")));
    assert!(!paths.iter().any(|p| p.contains("model-00001-of-00002")), "{paths:?}");

    // A gated repository: without the token a one-line error that says what to do; with it,
    // the download works and the token appears nowhere, neither in output nor in a run folder.
    let o = embgraft(&["inspect", "tiny-org/gated"], &online, &cache);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("private or gated") && err.contains("HF_TOKEN"), "{err}");
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, common::tiny_corpus()).unwrap();
    let out = dir.path().join("run");
    let with_token = [("HF_ENDPOINT", hub.addr.as_str()), ("HF_TOKEN", TOKEN)];
    let args = ["compare", "--donor", "tiny-org/gated", "--corpus", corpus.to_str().unwrap(), "--configs", "B"];
    let more = ["--seeds", "1", "--max-steps", "2", "--sample-tokens", "3", "--out", out.to_str().unwrap()];
    let o = embgraft(&[&args[..], &more[..]].concat(), &with_token, &cache);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(TOKEN));
    // Every file of the run folder, its subfolders (tables/) included.
    let mut folders = vec![out.clone()];
    while let Some(d) = folders.pop() {
        for f in std::fs::read_dir(&d).unwrap() {
            let path = f.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                "the token was saved in {}",
                path.display()
            );
        }
    }

    // Neither a repository that does not exist nor one without safetensors is read.
    let o = embgraft(&["inspect", "tiny-org/nope"], &online, &cache);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("tiny-org/nope") && err.trim().lines().count() == 1, "{err}");
    let o = embgraft(&["inspect", "tiny-org/pickle-only"], &online, &cache);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no safetensors weights") && err.contains("never pickle"), "{err}");
    assert!(!hub.requests().iter().any(|(_, p, _)| p.ends_with("pytorch_model.bin")));

    // With the server gone, the cache serves what was downloaded, also when offline is asked.
    drop(hub);
    let o = embgraft(&["inspect", "tiny-org/tiny-model"], &[("HF_ENDPOINT", "http://127.0.0.1:9")], &cache);
    assert!(o.status.success(), "{}", text(&o));
    let o = embgraft(&["inspect", "tiny-org/sharded"], &[("HF_HUB_OFFLINE", "1")], &cache);
    assert!(o.status.success(), "{}", text(&o));
    let o = embgraft(&["inspect", "tiny-org/other"], &[("HF_HUB_OFFLINE", "1")], &cache);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("HF_HUB_OFFLINE"), "{err}");
}

/// How the misbehaving Hub answers a file request, chosen by the repository's name.
fn misbehave(
    stream: &mut TcpStream,
    path: &str,
    headers: &HashMap<String, String>,
    cdn: &str,
    log: &Mutex<Vec<String>>,
) {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let auth = headers.get("authorization").cloned().unwrap_or_default();
    log.lock().unwrap().push(format!("{path} auth={auth}"));
    let head = |status: &str, extra: &[(&str, String)]| {
        let mut h = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in extra {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h + "\r\n"
    };
    let ids = |size: u64| {
        vec![
            ("ETag", "\"e0e0e0e0\"".to_string()),
            ("X-Repo-Commit", COMMIT.to_string()),
            ("Content-Range", format!("bytes 0-0/{size}")),
            ("Content-Length", "1".to_string()),
        ]
    };
    let ranged = headers.get("range").is_some_and(|r| r == "bytes=0-0");
    let data = common_weights();
    let send = |stream: &mut TcpStream, h: String, body: &[u8]| {
        let _ = stream.write_all(h.as_bytes());
        let _ = stream.write_all(body);
    };
    match seg.as_slice() {
        // The token's own host sends the client on to another host (a CDN).
        ["org", "cdn", "resolve", "main", "model.safetensors"] => {
            let mut h = ids(data.len() as u64);
            h.push(("Location", format!("{cdn}/blob")));
            send(stream, head("302 Found", &h[..2].iter().cloned().chain([h[4].clone()]).collect::<Vec<_>>()), b"");
        }
        ["blob"] if ranged => send(stream, head("206 Partial Content", &ids(data.len() as u64)), &data[..1]),
        ["blob"] => {
            let h = head("200 OK", &[("Content-Length", data.len().to_string())]);
            send(stream, h, &data);
        }
        ["org", "loop", ..] => send(stream, head("302 Found", &[("Location", path.to_string())]), b""),
        ["org", "huge", ..] => send(stream, head("206 Partial Content", &ids(10_000_000_000_000)), b"x"),
        ["org", "oversend", ..] if ranged => send(stream, head("206 Partial Content", &ids(100)), b"x"),
        // No length said, and twice the announced bytes.
        ["org", "oversend", ..] => send(stream, head("200 OK", &[]), &[7u8; 200]),
        ["org", "drip", ..] if ranged => send(stream, head("206 Partial Content", &ids(100_000)), b"x"),
        ["org", "drip", ..] => {
            send(stream, head("200 OK", &[("Content-Length", "100000".into())]), b"");
            for _ in 0..40 {
                if stream.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        // Answers nothing at all until the client gives up.
        ["org", "silent", ..] => std::thread::sleep(Duration::from_secs(6)),
        _ => send(
            stream,
            head("404 Not Found", &[("X-Error-Code", "EntryNotFound".into()), ("Content-Length", "0".into())]),
            b"",
        ),
    }
}

fn common_weights() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            safetensors_bytes(dir.path(), "w.safetensors", 8)
        })
        .clone()
}

/// A misbehaving server on `ip`, each connection in its own thread; it stops by itself after
/// `secs` or when `stop` is set.
fn start_misbehaving(
    ip: &str,
    cdn: Arc<Mutex<String>>,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind(format!("{ip}:0")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let (cdn, log) = (cdn.lock().unwrap().clone(), Arc::clone(&log));
                    std::thread::spawn(move || {
                        let Some((_, _, path, headers)) = read_request(&stream, 5) else { return };
                        misbehave(&mut stream, &path, &headers, &cdn, &log);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (addr, t)
}

#[test]
fn the_token_stays_home_and_every_download_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
    let cdn_addr = Arc::new(Mutex::new(String::new()));
    // The CDN is a second host: 127.0.0.2 (the whole 127/8 is this machine's loopback).
    let (cdn, cdn_thread) = start_misbehaving("127.0.0.2", Arc::clone(&cdn_addr), Arc::clone(&log), Arc::clone(&stop));
    *cdn_addr.lock().unwrap() = cdn.clone();
    let (home, home_thread) =
        start_misbehaving("127.0.0.1", Arc::clone(&cdn_addr), Arc::clone(&log), Arc::clone(&stop));
    let cache = dir.path().join("cache");
    let env = |token: &str| {
        vec![("HF_ENDPOINT", home.clone()), ("HF_TOKEN", token.to_string()), ("HF_HUB_DOWNLOAD_TIMEOUT", "1".into())]
    };
    let call = |args: &[&str], token: &str| {
        let env = env(token);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let t = Instant::now();
        let o = embgraft(args, &env, &cache);
        (o, t.elapsed())
    };

    // A token from a CRLF file is trimmed; it goes to the endpoint and not to the CDN.
    let (o, _) = call(&["inspect", "org/cdn"], &format!("{TOKEN}\r\n"));
    assert!(o.status.success(), "{}", text(&o));
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter().any(|l| l.starts_with("/org/cdn/") && l.ends_with(&format!("auth=Bearer {TOKEN}"))),
        "{seen:?}"
    );
    let to_cdn: Vec<&String> = seen.iter().filter(|l| l.starts_with("/blob")).collect();
    assert!(!to_cdn.is_empty() && to_cdn.iter().all(|l| l.ends_with("auth=")), "the token reached the CDN: {seen:?}");

    // A token that cannot be a header is refused without being printed.
    let (o, _) = call(&["inspect", "org/cdn2"], "hf_sécret");
    assert!(!o.status.success() && !text(&o).contains("sécret") && text(&o).contains("HF_TOKEN"), "{}", text(&o));

    // Each misbehaviour ends in one line, in bounded time, with nothing left in the snapshot.
    for (repo, want, within) in [
        ("org/silent", "cannot download org/silent/model.safetensors", 10),
        ("org/loop", "more than 5 redirects", 5),
        ("org/oversend", "sent more bytes for org/oversend/model.safetensors than it announced", 10),
        ("org/huge", "needs 9.1 TiB more but the cache", 5),
        ("org/drip", "too slow to finish", 30),
    ] {
        let before = log.lock().unwrap().len();
        let (o, took) = call(&["inspect", repo], TOKEN);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{repo}: {err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "{repo}: {err}");
        assert!(took < Duration::from_secs(within), "{repo} took {took:?}");
        assert!(!err.contains(TOKEN));
        let requests = log.lock().unwrap().len() - before;
        assert!(requests <= 8, "{repo}: {requests} requests");
        let name = repo.replace('/', "--");
        let snapshot = cache.join(format!("models--{name}")).join("snapshots");
        assert!(!snapshot.exists(), "{repo} left a snapshot");
    }
    // Silence is named as a time-out, with how long was waited.
    let (o, _) = call(&["inspect", "org/silent"], TOKEN);
    assert!(String::from_utf8_lossy(&o.stderr).contains("(timed out after 3 s with no answer;"), "{}", text(&o));
    stop.store(true, Ordering::SeqCst);
    home_thread.join().unwrap();
    cdn_thread.join().unwrap();
}

/// A cached blob whose bytes no longer hash to its name is fetched again once; offline, the
/// error names the files to delete. A password in HF_ENDPOINT is never printed.
#[test]
fn a_damaged_cached_blob_is_fetched_again_and_credentials_stay_unprinted() {
    let dir = tempfile::tempdir().unwrap();
    let weights = safetensors_bytes(dir.path(), "w.safetensors", 8);
    let files =
        HashMap::from([("tiny-org/tiny-model".into(), HashMap::from([("model.safetensors".into(), weights.clone())]))]);
    let hub = Hub::start(files);
    let cache = dir.path().join("cache");
    let online = [("HF_ENDPOINT", hub.addr.as_str())];
    let o = embgraft(&["inspect", "tiny-org/tiny-model"], &online, &cache);
    assert!(o.status.success(), "{}", text(&o));
    let blob = cache.join("models--tiny-org--tiny-model").join("blobs").join(sha256(&weights));
    let mut bad = std::fs::read(&blob).unwrap();
    let at = bad.len() - 9;
    bad[at] ^= 0x40;
    std::fs::write(&blob, &bad).unwrap();
    let fetched = hub.requests().len();

    // Offline: refused, naming what to delete.
    let o = embgraft(
        &["inspect", "tiny-org/tiny-model"],
        &[("HF_ENDPOINT", hub.addr.as_str()), ("HF_HUB_OFFLINE", "1")],
        &cache,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is damaged") && err.contains(&format!("delete {}", blob.display())),
        "{err}"
    );
    assert_eq!(hub.requests().len(), fetched);

    // Online: fetched again once, and the cache holds the server's bytes.
    let o = embgraft(&["inspect", "tiny-org/tiny-model"], &online, &cache);
    assert!(o.status.success() && text(&o).contains("fetching it again"), "{}", text(&o));
    assert_eq!(std::fs::read(&blob).unwrap(), weights);
    assert!(hub.requests().len() > fetched);

    // A user name and password in HF_ENDPOINT go nowhere in the output.
    let port = hub.addr.rsplit(':').next().unwrap().to_string();
    let with_password = format!("http://someone:s3cr3t-pw@127.0.0.1:{port}");
    let o = embgraft(&["inspect", "tiny-org/nope"], &[("HF_ENDPOINT", with_password.as_str())], &cache);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("s3cr3t-pw") && !text(&o).contains("someone"), "{}", text(&o));
    assert!(text(&o).contains(&format!("127.0.0.1:{port}")), "{}", text(&o));
    let o = embgraft(&["inspect", "tiny-org/nope"], &[("HF_ENDPOINT", "ht!tp://someone:s3cr3t-pw@host")], &cache);
    assert!(!o.status.success() && !text(&o).contains("s3cr3t-pw"), "{}", text(&o));
}
