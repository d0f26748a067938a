//! What a run folder promises, tried as a careless user, a flaky cluster and a hostile file
//! system would: every case drives the `embgraft` binary and expects either the untouched
//! experiment's bytes or one line that names the cause, with the promised exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{fixture, Fixture};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_embgraft"));
    for k in ["HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE"] {
        c.env_remove(k);
    }
    // Nothing here may reach a network: a Hub id would be asked of a closed port.
    c.env("HF_ENDPOINT", "http://127.0.0.1:9").env("HF_HUB_OFFLINE", "1");
    c
}

fn run_in(cwd: &Path, args: &[&str]) -> Output {
    bin().current_dir(cwd).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last line of stderr, which must be the one error line.
fn error_line(o: &Output) -> String {
    let e = stderr(o);
    let line = e.trim().lines().last().unwrap_or_default().to_string();
    assert!(line.starts_with("error: "), "expected an error line, got:\n{e}");
    line
}

/// A small experiment with paths relative to the fixture's folder; `more` adds flags or
/// overrides these.
fn args<'a>(out: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let base = [
        ("--corpus", "corpus.txt"),
        ("--donor", "gpt2-tiny"),
        ("--configs", "A,B"),
        ("--seeds", "1"),
        ("--batch-size", "16"),
        ("--max-steps", "12"),
        ("--eval-every", "4"),
        ("--lr", "0.01"),
        ("--sample-tokens", "5"),
        ("--out", out),
    ];
    let mut a = vec!["compare"];
    for (flag, v) in base {
        if !more.contains(&flag) {
            a.extend([flag, v]);
        }
    }
    a.extend_from_slice(more);
    a
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every file of a folder (not our lock files), with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), read(&e.path())))
        .filter(|(n, _)| !n.ends_with(".lock"))
        .collect();
    v.sort();
    v
}

fn reference(f: &Fixture) -> PathBuf {
    let o = run_in(&f.root, &args("reference", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    f.root.join("reference")
}

#[test]
fn resume_checks_inputs_and_settings_and_reads_from_any_folder() {
    let f = fixture();
    let refdir = reference(&f);
    let o = run_in(&f.root, &args("run", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let run = f.root.join("run");
    let d = run.to_str().unwrap();
    // The paths were given relative; config.toml holds them absolute, and fingerprints.
    let cfg = String::from_utf8(read(&run.join("config.toml"))).unwrap();
    assert!(cfg.contains(&format!("\"{}\"", f.corpus.display())), "{cfg}");
    assert!(cfg.contains("[fingerprints]") && cfg.contains("corpus = \""), "{cfg}");
    // B must train again when resumed.
    std::fs::remove_file(run.join("run-B-0.json")).unwrap();
    let before = snapshot(&run);

    // The corpus changed: refused, naming it, and the folder untouched.
    let original = read(&f.corpus);
    std::fs::write(&f.corpus, [&original[..], b" The end."].concat()).unwrap();
    let o = run_in(&f.root, &["compare", "--resume", d]);
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(
        line.contains(&format!("the corpus {} changed since this experiment started", f.corpus.display())),
        "{line}"
    );
    assert!(line.contains("fingerprint") && line.contains("start a new --out"), "{line}");
    assert_eq!(snapshot(&run), before);
    std::fs::write(&f.corpus, &original).unwrap();

    // config.toml edited: the kept cell was trained at another lr.
    let edited = cfg.replace("lr = 0.01", "lr = 0.02");
    assert_ne!(edited, cfg);
    std::fs::write(run.join("config.toml"), &edited).unwrap();
    let o = run_in(&f.root, &["compare", "--resume", d]);
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(line.contains("config.toml's lr is 0.02 but run-A-0.json was trained with 0.01"), "{line}");
    std::fs::write(run.join("config.toml"), &cfg).unwrap();
    assert_eq!(snapshot(&run), before);

    // A truncated config.toml: the file and the line are named.
    std::fs::write(run.join("config.toml"), &cfg[..cfg.find("[optimizer]").unwrap() + 5]).unwrap();
    let o = run_in(&f.root, &["compare", "--resume", d]);
    let line = error_line(&o);
    assert!(line.contains("config.toml is damaged (line") && line.contains("restore it"), "{line}");
    std::fs::write(run.join("config.toml"), &cfg).unwrap();

    // From another working folder, where `corpus.txt` is another text: the experiment's own
    // files are read, and the result is the uninterrupted run's.
    let elsewhere = f.root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("corpus.txt"), "a different book entirely ".repeat(400)).unwrap();
    let o = run_in(&elsewhere, &["compare", "--resume", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&run.join("metrics.csv")), read(&refdir.join("metrics.csv")));
}

#[test]
fn one_writer_at_a_time() {
    let f = fixture();
    // Two fresh runs started together into one folder, with different settings: exactly one
    // writes it; the other is refused in one line; every cell is the winner's.
    let start = |lr: &str| {
        bin()
            .current_dir(&f.root)
            .args(args("race", &["--lr", lr, "--max-steps", "60", "--configs", "A,B,C,D"]))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start("0.01"), start("0.001"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.success() as u8 + b.status.success() as u8, 1, "{}\n{}", stderr(&a), stderr(&b));
    let loser = if a.status.success() { &b } else { &a };
    let line = error_line(loser);
    assert!(line.contains("being written by another embgraft (pid") || line.contains("already holds files"), "{line}");
    let race = f.root.join("race");
    let cfg = String::from_utf8(read(&race.join("config.toml"))).unwrap();
    let lr = if cfg.contains("lr = 0.01\n") { "0.01" } else { "0.001" };
    for l in ["A", "B", "C", "D"] {
        let cell: serde_json::Value = serde_json::from_slice(&read(&race.join(format!("run-{l}-0.json")))).unwrap();
        assert_eq!(cell["made_under"]["settings"]["optimizer.lr"], lr, "{l}");
    }

    // A second --resume while one holds the folder: refused, naming the holder.
    let held = embgraft::experiment::folder::claim(&race, embgraft::experiment::folder::Mode::Exclusive).unwrap();
    let o = run_in(&f.root, &["compare", "--resume", race.to_str().unwrap()]);
    let line = error_line(&o);
    assert!(line.contains(&format!("pid {}", std::process::id())) && line.contains("wait for it"), "{line}");
    drop(held);
    let o = run_in(&f.root, &["compare", "--resume", race.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_stray_cell_is_refused_and_an_old_folder_still_reports_and_resumes() {
    let f = fixture();
    let o = run_in(&f.root, &args("fast", &["--lr", "0.01"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(&f.root, &args("slow", &["--lr", "0.001"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (fast, slow) = (f.root.join("fast"), f.root.join("slow"));
    std::fs::copy(fast.join("run-B-0.json"), slow.join("run-B-0.json")).unwrap();
    let o = run_in(&f.root, &["report", slow.to_str().unwrap(), "--complete"]);
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(line.contains("config.toml's lr is 0.001 but run-B-0.json was trained with 0.01"), "{line}");

    // inputs.json gone while cells are finished: named, not "not started".
    let info = read(&fast.join("inputs.json"));
    std::fs::remove_file(fast.join("inputs.json")).unwrap();
    let o = run_in(&f.root, &["report", fast.to_str().unwrap()]);
    let line = error_line(&o);
    assert!(line.contains("inputs.json is missing but 2 cells have finished"), "{line}");
    std::fs::write(fast.join("inputs.json"), &info).unwrap();

    // A folder as the previous version wrote it: no fingerprints anywhere. It reports, and a
    // resume finishes it to the same numbers, saying once that nothing could be checked.
    let strip = |p: &Path, keys: &[&str]| {
        let mut v: serde_json::Value = serde_json::from_slice(&read(p)).unwrap();
        keys.iter().for_each(|k| drop(v.as_object_mut().unwrap().remove(*k)));
        std::fs::write(p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    };
    let whole = read(&fast.join("metrics.csv"));
    strip(&fast.join("inputs.json"), &["fingerprints"]);
    // That version's run files had no record of their cell and no checksum either.
    strip(&fast.join("run-A-0.json"), &["made_under", "cell", "blake3"]);
    std::fs::remove_file(fast.join("run-B-0.json")).unwrap();
    let cfg = String::from_utf8(read(&fast.join("config.toml"))).unwrap();
    let cut = cfg.find("\n# What this experiment was made from").unwrap();
    std::fs::write(fast.join("config.toml"), &cfg[..cut]).unwrap();
    let o = run_in(&f.root, &["report", fast.to_str().unwrap()]);
    assert!(o.status.success() && stderr(&o).contains("without fingerprints"), "{}", stderr(&o));
    let o = run_in(&f.root, &["compare", "--resume", fast.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("without fingerprints").count(), 1, "{}", stderr(&o));
    assert_eq!(read(&fast.join("metrics.csv")), whole, "the old folder resumed to other numbers");
}

/// The offset and length of a tensor's bytes inside a safetensors file.
fn tensor_span(path: &Path, name: &str) -> (usize, usize) {
    let bytes = read(path);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let off = header[name]["data_offsets"].as_array().unwrap();
    let (a, b) = (off[0].as_u64().unwrap() as usize, off[1].as_u64().unwrap() as usize);
    (8 + n + a, b - a)
}

/// The folder `part` of the small experiment (`more` flags added) stopped after 18 steps: A
/// seed 0 finished (12 steps), B seed 0 six steps in, with its checkpoint, made by the library
/// as an interrupted run makes it.
fn stopped_inside_b0(f: &Fixture, more: &[&str]) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_, mut cfg) = embgraft::cli::parse_run(&args("x", more)).unwrap();
    cfg.data.corpora = vec![f.corpus.display().to_string()];
    cfg.data.donor = vec![f.donor.display().to_string()];
    let part = f.root.join("part");
    let steps = AtomicUsize::new(0);
    let stop = || steps.fetch_add(1, Ordering::SeqCst) + 1 >= 18;
    let ctl = embgraft::experiment::Control { should_stop: &stop, ..Default::default() };
    assert!(embgraft::experiment::compare(&cfg, &part, &ctl).is_err());
    assert!(part.join("checkpoint-B-0.safetensors").is_file());
    part
}

#[test]
fn a_damaged_checkpoint_is_refused_and_leftovers_go() {
    let f = fixture();
    let refdir = reference(&f);
    // Stopped inside B: a checkpoint, made by the library as an interrupted run makes it.
    let part = stopped_inside_b0(&f, &[]);
    let ckpt = part.join("checkpoint-B-0.safetensors");
    let good = read(&ckpt);
    let (at, len) = tensor_span(&ckpt, "param.lm_head");
    let mut bad = good.clone();
    for b in &mut bad[at + len / 2..at + len / 2 + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&ckpt, &bad).unwrap();
    let d = part.to_str().unwrap();
    let o = run_in(&f.root, &["compare", "--resume", d]);
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(
        line.contains("checkpoint-B-0.safetensors is unusable (damaged") && line.contains("delete it to restart"),
        "{line}"
    );

    // Leftovers of writes killed halfway (a checkpoint, a plot) go with the next run.
    std::fs::write(&ckpt, &good).unwrap();
    let leftovers = [".checkpoint-B-0.safetensors.Ab12Cd.tmp.safetensors", ".loss-curves.png.Zz98Yy.tmp.png"];
    for l in leftovers {
        std::fs::write(part.join(l), vec![7u8; 1 << 16]).unwrap();
    }
    let o = run_in(&f.root, &["compare", "--resume", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    for l in leftovers {
        assert!(!part.join(l).exists(), "{l} left behind");
    }
    assert_eq!(read(&part.join("metrics.csv")), read(&refdir.join("metrics.csv")));

    // --force clears the previous experiment's files instead of keeping them beside the new.
    let o = run_in(&f.root, &args("part", &["--configs", "A", "--force"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(part.join("run-A-0.json").exists() && !part.join("run-B-0.json").exists());
    assert!(stderr(&o).contains("--force: removed the previous experiment's"), "{}", stderr(&o));
}

/// Runs `args` with the address space capped, and fails the test past `limit`.
fn bounded(cwd: &Path, args: &[&str], limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = bin();
    c.current_dir(cwd).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 4 << 30, rlim_max: 4 << 30 };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("{args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn unbounded_and_bad_inputs_fail_at_once_in_one_line() {
    let f = fixture();
    let fifo = f.root.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let fifo = fifo.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--corpus", fifo], "not a regular file"),
        (vec!["--corpus", "/dev/zero"], "corpus /dev/zero is not a regular file"),
        (vec!["--donor", fifo], "is not a regular file"),
        (vec!["--tokenizer", "/dev/zero"], "tokenizer /dev/zero is not a regular file"),
        (vec!["--corpus", f.root.to_str().unwrap()], "is a folder"),
        (vec!["--max-input-size", "1KiB"], "cap on reads; raise it with --max-input-size"),
    ];
    for (extra, want) in cases {
        let out = f.root.join("never");
        let a = args(out.to_str().unwrap(), &extra);
        let o = bounded(&f.root, &a, Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", stderr(&o));
        let line = error_line(&o);
        assert!(line.contains(want), "{extra:?}: {line}");
        assert_eq!(stderr(&o).trim().lines().filter(|l| l.starts_with("error")).count(), 1);
        assert!(!out.exists(), "{extra:?} left a folder");
    }

    // EMBGRAFT_BLAS at a FIFO: refused at once (the dynamic loader would block in it forever,
    // holding its lock so that not even an interrupt could end the process).
    let mut c = bin();
    c.current_dir(&f.root).env("EMBGRAFT_GEMM", "blas").env("EMBGRAFT_BLAS", fifo).args(args("never", &[]));
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(30));
    let line = error_line(&o);
    assert!(
        line.contains("is not a regular file (a FIFO, device or folder)") && line.contains("EMBGRAFT_GEMM=gemm"),
        "{line}"
    );

    // Flag values that are not numbers are flag errors (exit 2), naming the flag.
    for (flag, v) in [("--lr", "nan"), ("--lr", "inf"), ("--test-fraction", "NaN"), ("--weight-decay", "-inf")] {
        let o = run_in(&f.root, &["compare", &format!("{flag}={v}"), "--out", "never"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {v}: {e}");
        assert!(e.contains(flag) && e.contains("give a finite number") && e.trim().lines().count() == 1, "{e}");
    }

    // A path that does not exist is not asked of the Hub when it looks like a path.
    std::fs::create_dir(f.root.join("donors")).unwrap();
    let o = run_in(&f.root, &["inspect", "donors/tiny"]);
    let line = error_line(&o);
    assert!(line.contains("donor donors/tiny does not exist (looked from"), "{line}");

    // A donor holding NaN: refused, naming the count and the first row.
    let nan = f.root.join("nan.safetensors");
    let mut wte = vec![0.25f32; 50257 * 8];
    wte[3 * 8 + 2] = f32::NAN;
    wte[9 * 8] = f32::INFINITY;
    embgraft::fixtures::write_f32_tensors(&nan, &[("wte.weight".into(), vec![50257, 8], wte)]).unwrap();
    let o = run_in(&f.root, &args("never", &["--donor", nan.to_str().unwrap()]));
    let line = error_line(&o);
    assert!(line.contains("holds 2 NaN or infinite values (the first in row 3)"), "{line}");

    // A closed stdout ends quietly (`embgraft inspect M | head -1`).
    let mut child = bin()
        .current_dir(&f.root)
        .args(["inspect", f.donor.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// A server on 127.0.0.1 that accepts and never answers, for `secs` at most.
fn silent_server(secs: u64) -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let mut held = Vec::new();
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Ok((s, _)) = l.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    (addr, t)
}

#[test]
fn sigterm_during_setup_stops_at_once() {
    let f = fixture();
    let (addr, server) = silent_server(8);
    let cache = f.root.join("cache");
    let mut child = bin()
        .current_dir(&f.root)
        .env("HF_ENDPOINT", &addr)
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HUB_CACHE", &cache)
        .args(["compare", "--donor", "tiny-org/tiny", "--corpus", "corpus.txt", "--out", "never"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    while child.try_wait().unwrap().is_none() && sent.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(3), "SIGTERM took {:?}", sent.elapsed());
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
    assert!(!f.root.join("never").exists());
    server.join().unwrap();
}

/// (tag, step, value) of every scalar in a run's event files, as written.
fn tensorboard_scalars(dir: &Path) -> Vec<(String, i64, f32)> {
    use embgraft::tfevents::{read_records, Kind, What};
    let mut out = Vec::new();
    for f in embgraft::tfevents::own_files(dir) {
        for e in read_records(&read(&f)).unwrap() {
            if let Some(What::Summary(s)) = e.what {
                for v in s.value {
                    if let Some(Kind::SimpleValue(x)) = v.value {
                        out.push((v.tag, e.step, x));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn tensorboard_series_hold_metrics_once_through_a_resume_and_force_clears_them() {
    let f = fixture();
    let o = run_in(&f.root, &args("tb", &["--tensorboard", "--seeds", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = String::from_utf8(read(&f.root.join("tb/metrics.csv"))).unwrap();
    let series = |root: &Path| -> Vec<(String, i64, f32)> {
        let mut all = Vec::new();
        for cell in ["A-0", "B-0", "A-1", "B-1"] {
            let mut s = tensorboard_scalars(&root.join("tensorboard").join(cell));
            s.retain(|(t, _, _)| t.starts_with("loss/"));
            all.extend(s.into_iter().map(|(t, step, v)| (format!("{cell}/{t}"), step, v)));
        }
        all
    };
    let got = series(&f.root.join("tb"));
    let want: Vec<(String, i64, f32)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (format!("{}-{}/loss/{}", c[0], c[1], c[4]), c[3].parse().unwrap(), c[5].parse().unwrap())
        })
        .collect();
    let key = |v: &[(String, i64, f32)]| {
        let mut k: Vec<(String, i64)> = v.iter().map(|(t, s, _)| (t.clone(), *s)).collect();
        k.sort();
        k
    };
    assert_eq!(key(&got), key(&want), "every metrics.csv point, once");
    for (t, s, v) in &got {
        let w = want.iter().find(|(wt, ws, _)| wt == t && ws == s).unwrap().2;
        assert!((v - w).abs() <= 1e-6 + 1e-6 * w.abs(), "{t} at {s}: {v} vs {w}");
    }
    let checks = tensorboard_scalars(&f.root.join("tb/tensorboard/B-0"));
    assert!(checks.iter().any(|(t, _, v)| t == "checks/frozen_values_changed" && *v == 0.0), "{checks:?}");
    assert_eq!(embgraft::tfevents::own_files(&f.root.join("tb/tensorboard/verdicts")).len(), 1);

    // A resume of a finished experiment keeps every series as it was: nothing doubles.
    let o = run_in(&f.root, &["compare", "--resume", "tb"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(key(&series(&f.root.join("tb"))), key(&want));

    // --force starts over: the old experiment's event files go with its other results.
    std::fs::write(f.root.join("tb/tensorboard/A-0/notes.txt"), "a user's file").unwrap();
    let o = run_in(&f.root, &args("tb", &["--force", "--configs", "B"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(embgraft::tfevents::own_files(&f.root.join("tb/tensorboard/A-0")).is_empty());
    assert!(f.root.join("tb/tensorboard/A-0/notes.txt").is_file(), "a file embgraft did not write stays");
    assert!(!f.root.join("tb/tensorboard/B-1").exists());
}

/// Waits (at most 60 s) until `path` exists.
fn wait_for(path: &Path) {
    let t = Instant::now();
    while std::fs::symlink_metadata(path).is_err() {
        assert!(t.elapsed() < Duration::from_secs(60), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_in(cwd: &Path, args: &[&str]) -> std::process::Child {
    bin().current_dir(cwd).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn the_folder_lock_cannot_be_deleted_or_redirected() {
    let f = fixture();
    let long = ["--max-steps", "100000", "--eval-every", "50"];
    // A run holds the folder; its note is deleted: a second --resume and a --force run with
    // another lr are still refused, and the folder stays the first run's.
    let mut first = spawn_in(&f.root, &args("live", &long));
    let note = f.root.join("live").join(".embgraft.lock");
    wait_for(&note);
    std::fs::remove_file(&note).unwrap();
    for second in [vec!["compare", "--resume", "live"], args("live", &["--force", "--lr", "0.5"])] {
        let o = run_in(&f.root, &second);
        assert_eq!(o.status.code(), Some(1), "{second:?}: {}", stderr(&o));
        let line = error_line(&o);
        assert!(line.contains("live is being written by another embgraft"), "{line}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let cfg = String::from_utf8(read(&f.root.join("live/config.toml"))).unwrap();
    assert!(cfg.contains("lr = 0.01\n"), "{cfg}");

    // The note's name held by a link (to a file, dangling) or a FIFO: the link's target is
    // untouched, nothing is created through it, nothing hangs, and the run is whole.
    let victim = f.root.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    for (i, kind) in ["link", "dangling", "fifo"].into_iter().enumerate() {
        let out = f.root.join(format!("odd-{i}"));
        std::fs::create_dir(&out).unwrap();
        let lock = out.join(".embgraft.lock");
        match kind {
            "link" => std::os::unix::fs::symlink(&victim, &lock).unwrap(),
            "dangling" => std::os::unix::fs::symlink(f.root.join("created-through-a-link"), &lock).unwrap(),
            _ => mkfifo(&lock),
        }
        let o = bounded(&f.root, &args(out.to_str().unwrap(), &[]), Duration::from_secs(60));
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        assert!(out.join("report.md").is_file(), "{kind}");
        assert!(std::fs::symlink_metadata(&lock).is_err(), "{kind}: the note is left behind");
    }
    assert_eq!(read(&victim), b"precious");
    assert!(!f.root.join("created-through-a-link").exists());

    // A note left by a run on another host: said as such, not as "ended without releasing".
    let out = f.root.join("elsewhere");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(".embgraft.lock"), "pid 4242 on other-node-7, started 20261201-101010 UTC").unwrap();
    let o = run_in(&f.root, &args("elsewhere", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("last held by pid 4242 on other-node-7") && e.contains("does not share locks"), "{e}");
    assert!(!e.contains("ended without releasing"), "{e}");
}

#[test]
fn cell_locks_cannot_be_redirected_and_a_deleted_one_stops_its_holder() {
    let f = fixture();
    let victim = f.root.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    for (i, kind) in ["link", "fifo"].into_iter().enumerate() {
        let out = f.root.join(format!("sh-{i}"));
        std::fs::create_dir(&out).unwrap();
        let lock = out.join(".cell-A-0.lock");
        match kind {
            "link" => std::os::unix::fs::symlink(&victim, &lock).unwrap(),
            _ => mkfifo(&lock),
        }
        let o = bounded(&f.root, &args(out.to_str().unwrap(), &["--shard", "1/1"]), Duration::from_secs(60));
        assert_eq!(o.status.code(), Some(1), "{kind}: {}", stderr(&o));
        let line = error_line(&o);
        let want = if kind == "link" { "is a symbolic link" } else { "is not a regular file" };
        assert!(line.contains(".cell-A-0.lock") && line.contains(want) && line.contains("delete it"), "{line}");
        assert!(!out.join("run-A-0.json").exists());
    }
    assert_eq!(read(&victim), b"precious");

    // A task's cell lock deleted while it trains: a second task takes the cell, and the first
    // stops at its next curve point with a line naming the lock, writing nothing more.
    let long = ["--configs", "A", "--shard", "1/1", "--max-steps", "100000", "--eval-every", "50"];
    let mut first = spawn_in(&f.root, &args("cells", &long));
    let lock = f.root.join("cells").join(".cell-A-0.lock");
    wait_for(&lock);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&lock).unwrap();
    let mut second = spawn_in(&f.root, &args("cells", &long));
    let t = Instant::now();
    while first.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(60), "the first task never noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = first.wait_with_output().unwrap();
    let _ = second.kill();
    second.wait().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(line.contains("cell lock") && line.contains("was deleted or replaced"), "{line}");
}

/// Rewrites the `__metadata__` of a safetensors file with `f`, the tensors as they were.
fn rewrite_metadata(path: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = read(path);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    f(header["__metadata__"].as_object_mut().unwrap());
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// A JSON file edited in place.
fn edit_json(p: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut v: serde_json::Value = serde_json::from_slice(&read(p)).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn provenance_is_required_where_it_exists_and_cells_know_who_they_are() {
    let f = fixture();
    std::fs::write(f.root.join("other.txt"), common::tiny_corpus().replace("Weena", "Filby")).unwrap();
    for (out, more) in [("x", vec!["--seeds", "2"]), ("y", vec!["--seeds", "2", "--corpus", "other.txt"])] {
        let o = run_in(&f.root, &args(out, &more));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (x, y) = (f.root.join("x"), f.root.join("y"));
    let report = || run_in(&f.root, &["report", "x", "--complete"]);
    let original = read(&x.join("run-B-0.json"));
    let restore = || std::fs::write(x.join("run-B-0.json"), &original).unwrap();
    let o = report();
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = read(&x.join("report.md"));

    // Another corpus's cell with its record stripped: refused by name, as damaged.
    std::fs::copy(y.join("run-B-0.json"), x.join("run-B-0.json")).unwrap();
    edit_json(&x.join("run-B-0.json"), |o| drop(o.remove("made_under")));
    let line = error_line(&report());
    assert!(line.contains("run-B-0.json is damaged") && line.contains("checksum"), "{line}");
    edit_json(&x.join("run-B-0.json"), |o| ["cell", "blake3"].iter().for_each(|k| drop(o.remove(*k))));
    let line = error_line(&report());
    assert!(line.contains("run-B-0.json is damaged") && line.contains("no record of what made it"), "{line}");
    restore();

    // A few keys of its settings deleted (and its checksum with them): incomplete.
    edit_json(&x.join("run-B-0.json"), |o| {
        ["cell", "blake3"].iter().for_each(|k| drop(o.remove(*k)));
        let s = o["made_under"]["settings"].as_object_mut().unwrap();
        ["optimizer.lr", "protocol.seq_len"].iter().for_each(|k| drop(s.remove(*k)));
    });
    let line = error_line(&report());
    assert!(line.contains("run-B-0.json is damaged") && line.contains("incomplete or edited"), "{line}");
    restore();

    // A run file copied over another cell's: refused, naming both cells.
    std::fs::copy(x.join("run-B-1.json"), x.join("run-B-0.json")).unwrap();
    let line = error_line(&report());
    assert!(line.contains("run-B-0.json holds B seed 1 but its name is B seed 0's"), "{line}");
    restore();
    let o = report();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&x.join("report.md")), whole);
}

#[test]
fn checkpoints_need_their_checksum_and_their_own_name() {
    let f = fixture();
    let refdir = f.root.join("reference");
    let o = run_in(&f.root, &args("reference", &["--seeds", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let part = stopped_inside_b0(&f, &["--seeds", "2"]);
    let ckpt = part.join("checkpoint-B-0.safetensors");
    let good = read(&ckpt);
    let d = part.to_str().unwrap();

    // Its checksum removed: refused as damaged, in a folder that records fingerprints.
    rewrite_metadata(&ckpt, |m| drop(m.remove("embgraft.blake3")));
    let line = error_line(&run_in(&f.root, &["compare", "--resume", d]));
    assert!(line.contains("checkpoint-B-0.safetensors is damaged: its checksum is missing"), "{line}");
    std::fs::write(&ckpt, &good).unwrap();

    // Renamed to another seed's name: seed 1 would continue from seed 0's state. Refused.
    std::fs::rename(&ckpt, part.join("checkpoint-B-1.safetensors")).unwrap();
    let line = error_line(&run_in(&f.root, &["compare", "--resume", d]));
    assert!(line.contains("checkpoint-B-1.safetensors holds B seed 0 but its name is B seed 1's"), "{line}");
    std::fs::rename(part.join("checkpoint-B-1.safetensors"), &ckpt).unwrap();
    let o = run_in(&f.root, &["compare", "--resume", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&part.join("metrics.csv")), read(&refdir.join("metrics.csv")));
}

#[test]
fn changed_settings_on_resume_are_refused_train_config_and_edits_included() {
    let f = fixture();
    let o = run_in(
        &f.root,
        &[
            "train",
            "--config",
            "C",
            "--corpus",
            "corpus.txt",
            "--donor",
            "gpt2-tiny",
            "--seeds",
            "1",
            "--max-steps",
            "8",
            "--out",
            "t",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&f.root.join("t"));
    let o = run_in(&f.root, &["train", "--config", "A", "--resume", "t"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let line = error_line(&o);
    assert!(line.contains("--config A would change it") && line.contains("give --config C"), "{line}");
    assert_eq!(snapshot(&f.root.join("t")), before);
    let o = run_in(&f.root, &["train", "--config", "C", "--resume", "t"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // config.toml edited with no cell left to tell: its own fingerprint does.
    let e = f.root.join("t");
    std::fs::remove_file(e.join("run-C-0.json")).unwrap();
    let cfg = String::from_utf8(read(&e.join("config.toml"))).unwrap();
    std::fs::write(e.join("config.toml"), cfg.replace("weight_decay = 0.01", "weight_decay = 0.02")).unwrap();
    let line = error_line(&run_in(&f.root, &["compare", "--resume", "t"]));
    assert!(line.contains("config.toml was edited after its experiment started"), "{line}");
    let line = error_line(&run_in(&f.root, &["report", "t"]));
    assert!(line.contains("config.toml was edited after its experiment started"), "{line}");

    // lr = nan in a config.toml: the file's key is named, not a JSON type.
    std::fs::write(e.join("config.toml"), cfg.replace("lr = 0.001", "lr = nan")).unwrap();
    assert!(cfg.contains("lr = 0.001"), "{cfg}");
    for a in [vec!["compare", "--resume", "t"], vec!["compare", "--config-file", "t/config.toml", "--out", "never"]] {
        let o = run_in(&f.root, &a);
        let line = error_line(&o);
        assert!(line.contains("[optimizer] lr = NaN is not a finite number") && !line.contains("null"), "{line}");
    }
    assert!(!f.root.join("never").exists());
}

#[test]
fn force_removes_only_what_the_previous_experiment_wrote() {
    let f = fixture();
    let o = run_in(&f.root, &args("f", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let d = f.root.join("f");
    for (dir, file) in [("backup", "config.toml"), ("backup", "summary.json"), ("app", "config.toml")] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
        std::fs::write(d.join(dir).join(file), "a user's file").unwrap();
    }
    std::fs::write(d.join("notes.txt"), "mine").unwrap();
    let o = run_in(&f.root, &args("f", &["--force", "--configs", "A"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    let said = e.lines().find(|l| l.starts_with("--force: removed")).unwrap_or_default();
    assert!(said.contains("files (") && said.contains("run-B-0.json") || said.contains("…"), "{e}");
    for p in ["backup/config.toml", "backup/summary.json", "app/config.toml", "notes.txt"] {
        assert!(d.join(p).is_file(), "{p} was removed");
    }
    assert!(!d.join("run-B-0.json").exists() && d.join("run-A-0.json").exists());
}

#[test]
fn what_cannot_fit_in_memory_is_refused_before_anything_is_written() {
    let f = fixture();
    let big = f.root.join("big.txt");
    std::fs::write(&big, common::tiny_corpus().repeat(30)).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--max-memory", "2MiB"], "donor tensor wte.weight [50257, 8] in f32 (and its copies) needs about"),
        (vec!["--max-memory", "20MiB", "--corpus", "big.txt"], "reading and tokenizing corpus"),
        (
            vec![
                "--model",
                "model5",
                "--corpus",
                "big.txt",
                "--seq-len",
                "16384",
                "--stride",
                "4096",
                "--batch-size",
                "1",
                "--max-memory",
                "1GiB",
            ],
            "try a smaller --batch-size or --seq-len",
        ),
    ];
    for (extra, want) in cases {
        let o = bounded(&f.root, &args("never", &extra), Duration::from_secs(60));
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", stderr(&o));
        let line = error_line(&o);
        assert!(line.contains(want) && line.contains("is available (--max-memory)"), "{extra:?}: {line}");
        assert!(!f.root.join("never").exists(), "{extra:?} left a folder");
    }
    // bench: a vocabulary that cannot fit, and one too small for the batches' ids.
    let batches = f.root.join("b.safetensors");
    let c = f.corpus.to_str().unwrap();
    let o = run_in(&f.root, &["bench", "--batches", batches.to_str().unwrap(), "--corpus", c, "--vocab", "1000000000"]);
    let line = error_line(&o);
    assert!(line.contains("bench at vocabulary 1000000000 x width 768 needs about"), "{line}");
    assert!(!batches.exists(), "the refused bench wrote its batches");
    let b = batches.to_str().unwrap();
    let o = run_in(&f.root, &["bench", "--batches", b, "--corpus", c, "--dim", "8", "--steps", "1", "--warmup", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(&f.root, &["bench", "--batches", b, "--vocab", "464"]);
    let line = error_line(&o);
    assert!(line.contains("--vocab 464 is too small") && line.contains("or more"), "{line}");
}

#[test]
fn a_closed_or_full_stderr_loses_messages_not_the_run() {
    let f = fixture();
    let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
    let o = bin().current_dir(&f.root).args(args("full", &[])).stderr(full).output().unwrap();
    assert!(o.status.success(), "exit {:?}", o.status.code());
    // `compare … 2>&1 | head -1`: the reader goes away after one line.
    let mut child = bin()
        .current_dir(&f.root)
        .args(args("closed", &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read(child.stderr.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for out in ["full", "closed"] {
        assert_eq!(read(&f.root.join(out).join("metrics.csv")), read(&f.root.join("full/metrics.csv")));
        assert!(f.root.join(out).join("report.md").is_file());
    }
}

#[test]
fn racing_resumes_name_the_holder_and_odd_places_are_refused_first() {
    let f = fixture();
    let o = run_in(&f.root, &args("race", &["--max-steps", "30"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut losers = 0;
    for _ in 0..6 {
        let kids: Vec<_> = (0..3).map(|_| spawn_in(&f.root, &["compare", "--resume", "race"])).collect();
        for k in kids {
            let o = k.wait_with_output().unwrap();
            if !o.status.success() {
                losers += 1;
                let line = error_line(&o);
                assert!(line.contains("race is being written by another embgraft (pid "), "{line}");
            }
        }
    }
    eprintln!("{losers} resumes lost the race");

    // A `tensorboard` that is a file: refused before anything is written.
    let tb = f.root.join("tb");
    std::fs::create_dir(&tb).unwrap();
    std::fs::write(tb.join("tensorboard"), "a file").unwrap();
    let o = run_in(&f.root, &args("tb", &["--tensorboard", "--force"]));
    let line = error_line(&o);
    assert!(line.contains("cannot write into") && line.contains("(it is a file, not a folder)"), "{line}");
    assert_eq!(std::fs::read_dir(&tb).unwrap().count(), 1, "something was written");

    // A donor of one value everywhere cannot be rescaled for G: refused, naming G.
    let flat = f.root.join("flat.safetensors");
    embgraft::fixtures::write_f32_tensors(&flat, &[("wte.weight".into(), vec![50257, 8], vec![0.0; 50257 * 8])])
        .unwrap();
    let o = run_in(&f.root, &args("never", &["--donor", flat.to_str().unwrap(), "--configs", "A,G"]));
    let line = error_line(&o);
    assert!(line.contains("standard deviation 0") && line.contains("configurations G"), "{line}");

    // Shards given different corpora: told so, not that the corpus changed.
    std::fs::write(f.root.join("other.txt"), common::tiny_corpus().replace("Weena", "Filby")).unwrap();
    let o = run_in(&f.root, &args("shared", &["--shard", "1/2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(&f.root, &args("shared", &["--shard", "2/2", "--corpus", "other.txt"]));
    let line = error_line(&o);
    assert!(line.contains("this shard's corpus") && line.contains("not the one the shards before it read"), "{line}");
}

/// A cell stopped under one matrix-product backend and resumed under another would finish with
/// numbers equal to neither uninterrupted run's: refused by name, the folder untouched; under
/// the same backend it resumes as ever. The stop is a real run's (the library, in this process,
/// with whatever backend this process has); the resume asks for the other one.
#[test]
fn a_resume_under_another_matrix_product_backend_is_refused() {
    let f = fixture();
    let part = stopped_inside_b0(&f, &[]);
    let then = embgraft::ops::gemm::kernels();
    let other = if then.starts_with("gemm crate") { "blas" } else { "gemm" };
    let before = snapshot(&part);
    let d = part.to_str().unwrap();
    let o = bin().current_dir(&f.root).env("EMBGRAFT_GEMM", other).args(["compare", "--resume", d]).output().unwrap();
    let line = error_line(&o);
    let no_blas = other == "blas" && !line.contains("was interrupted");
    if no_blas && std::env::var_os("EMBGRAFT_REQUIRE_BLAS").is_none() {
        eprintln!("skipped: no OpenBLAS to switch to here ({line}); CI installs one and sets EMBGRAFT_REQUIRE_BLAS");
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        line.contains(&format!("B seed 0 in {d} was interrupted with its matrix products computed by {then}"))
            && line.contains("equal neither uninterrupted run")
            && line.contains("EMBGRAFT_GEMM")
            && line.contains("checkpoint-B-0.safetensors"),
        "{line}"
    );
    assert_eq!(snapshot(&part), before);
    // The same backend as the stop: it finishes as an uninterrupted run does.
    let o = run_in(&f.root, &["compare", "--resume", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let refdir = reference(&f);
    assert_eq!(read(&part.join("metrics.csv")), read(&refdir.join("metrics.csv")));
}

#[test]
fn rayon_num_threads_is_bounded_before_any_thread_starts() {
    let f = fixture();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cap = embgraft::util::THREADS_PER_CORE * cores;
    for (value, says) in [
        ("100000".to_string(), format!("RAYON_NUM_THREADS=100000 is more than the {cap} threads")),
        (
            (cap + 1).to_string(),
            format!("is more than the {cap} threads embgraft runs on this process's {cores} cores"),
        ),
        ("many".to_string(), "RAYON_NUM_THREADS=\"many\" is not a thread count".to_string()),
    ] {
        let t = Instant::now();
        let o = bin().current_dir(&f.root).env("RAYON_NUM_THREADS", &value).args(args("t", &[])).output().unwrap();
        assert!(t.elapsed() < Duration::from_secs(20), "{value}: {:?}", t.elapsed());
        assert_eq!(o.status.code(), Some(1), "{value}: {}", stderr(&o));
        let line = error_line(&o);
        assert!(line.contains(&says) && line.contains("unset it"), "{line}");
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        assert!(!f.root.join("t").exists());
    }
    // At the cap it runs.
    let o = bin()
        .current_dir(&f.root)
        .env("RAYON_NUM_THREADS", cap.to_string())
        .args(args("t", &["--max-steps", "2"]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A `|` or a line break in a corpus or donor path stays inside its cell of report.md's tables.
#[test]
fn paths_with_pipes_and_newlines_keep_report_tables_whole() {
    let f = fixture();
    let odd = f.root.join("a|b\nc");
    std::fs::create_dir(&odd).unwrap();
    std::fs::copy(&f.corpus, odd.join("book|one\n.txt")).unwrap();
    std::fs::create_dir(odd.join("donor|x")).unwrap();
    std::fs::copy(f.donor.join("model.safetensors"), odd.join("donor|x").join("model.safetensors")).unwrap();
    let corpus = odd.join("book|one\n.txt");
    let donor = odd.join("donor|x");
    let two = f.root.join("two.txt");
    std::fs::copy(&f.corpus, &two).unwrap();
    let o = run_in(
        &f.root,
        &args(
            "odd",
            &[
                "--corpus",
                corpus.to_str().unwrap(),
                "--corpus",
                "two.txt",
                "--donor",
                donor.to_str().unwrap(),
                "--configs",
                "A",
                "--max-steps",
                "2",
            ],
        ),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut reports = vec![f.root.join("odd").join("report.md")];
    for e in std::fs::read_dir(f.root.join("odd")).unwrap() {
        let p = e.unwrap().path().join("report.md");
        if p.is_file() {
            reports.push(p);
        }
    }
    assert_eq!(reports.len(), 3, "{reports:?}");
    for r in reports {
        let text = std::fs::read_to_string(&r).unwrap();
        // Each table's rows have as many cells (unescaped |) as its header.
        let cells = |l: &str| l.replace("\\|", "").matches('|').count();
        let mut header: Option<usize> = None;
        for line in text.lines() {
            match (line.starts_with('|'), header) {
                (true, None) => header = Some(cells(line)),
                (true, Some(n)) => assert_eq!(cells(line), n, "{}: {line}", r.display()),
                (false, _) => header = None,
            }
        }
        assert!(text.contains("donor\\|x") || text.contains("book\\|one⏎.txt"), "{}", r.display());
        assert!(!text.contains("a|b\nc"), "a raw line break from a path: {}", r.display());
    }
}

#[test]
fn tokenizer_messages_name_a_remedy_the_user_has_not_tried() {
    let f = fixture();
    // A donor whose own tokenizer.json is broken, run with --tokenizer gpt2.
    let broken = f.root.join("broken-donor");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(f.donor.join("model.safetensors"), broken.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("tokenizer.json"), "{ not json").unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--tokenizer", "GPT2"], vec!["--tokenizer \"GPT2\" is neither auto, gpt2 nor a file", "lower-case"]),
        (vec!["--tokenizer", ""], vec!["--tokenizer is empty: give auto", "gpt2"]),
        (vec!["--tokenizer", "corpus.txt"], vec!["--tokenizer: cannot read tokenizer", "gpt2 for GPT-2's BPE"]),
        (
            vec!["--tokenizer", "gpt2", "--donor", "broken-donor"],
            vec!["the donor's own tokenizer: cannot read tokenizer", "broken-donor/tokenizer.json", "or remove it"],
        ),
    ];
    for (more, says) in cases {
        let o = run_in(&f.root, &args("tok", &more));
        assert_eq!(o.status.code(), Some(1), "{more:?}: {}", stderr(&o));
        let line = error_line(&o);
        for s in &says {
            assert!(line.contains(s), "{more:?}: {s:?} not in {line}");
        }
        if more.contains(&"gpt2") {
            assert!(!line.contains("--tokenizer gpt2"), "advises what was given: {line}");
        }
        assert!(!f.root.join("tok").exists());
    }
}
