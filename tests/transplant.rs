//! Donors read through another tokenizer than their own, end to end: two WordPiece donors of
//! one width transplanted into GPT-2's BPE share every random configuration's numbers and are
//! compared as paired questions; a transplanted experiment resumes and shards to the
//! one-process bytes; bits per byte agree with the byte counts; bad input stops in one line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use embgraft::config::{ExperimentConfig, Letters};
use embgraft::experiment::{compare_groups, groups, rebuild_report, Control, Shard};

mod common;

/// The words of the tiny corpus a WordPiece donor knows whole (lower-cased, as BERT's
/// normalizer leaves them); the rest it spells from letters.
const WORDS: &[&str] = &["the", "time", "machine", "traveller", "looked", "at", "of", "##s", ".", "garden", "i"];
const DIM: usize = 8;

/// A BERT-style donor folder: its tokenizer.json and an embedding whose values follow `seed`.
fn wordpiece_donor(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let n = embgraft::fixtures::write_wordpiece_tokenizer(&d.join("tokenizer.json"), WORDS).unwrap();
    // Multiples of 1/64: exact in f32, so a mean of pieces is a plain sum to check.
    let rows: Vec<f32> = (0..n * DIM).map(|i| ((i as u64 * 7919 + seed * 104_729) % 129) as f32 / 64.0 - 1.0).collect();
    let weights = [("embeddings.word_embeddings.weight".to_string(), vec![n, DIM], rows)];
    embgraft::fixtures::write_f32_tensors(&d.join("model.safetensors"), &weights).unwrap();
    d
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    corpus: PathBuf,
    x: PathBuf,
    y: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let corpus = root.join("corpus.txt");
    std::fs::write(&corpus, common::tiny_corpus()).unwrap();
    let (x, y) = (wordpiece_donor(&root, "minilm-x", 1), wordpiece_donor(&root, "minilm-y", 2));
    Setup { _dir: dir, root, corpus, x, y }
}

fn config(s: &Setup, donors: &[&Path], configs: &str, seeds: usize) -> ExperimentConfig {
    let mut c = ExperimentConfig::default();
    c.data.corpora = vec![s.corpus.display().to_string()];
    c.data.donor = donors.iter().map(|d| d.display().to_string()).collect();
    c.data.tokenizer = "gpt2".into();
    c.graft.configs = configs.parse::<Letters>().unwrap();
    c.run.seeds = seeds;
    c.run.sample_tokens = 4;
    c.protocol.batch_size = 16;
    c.protocol.max_steps = Some(12);
    c.protocol.eval_every = Some(4);
    c.optimizer.lr = 0.01;
    c
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Two donors of one width through one tokenizer: A and D, which use no donor, give the very
/// same numbers in both groups; B and C do not; the overview asks whether one donor's graft
/// helps more than the other's, for B and for C, with every seed paired.
#[test]
fn two_donors_on_one_tokenizer_pair_by_seed() {
    let s = setup();
    let c = config(&s, &[&s.x, &s.y], "A,B,C,D", 2);
    let out = s.root.join("two");
    compare_groups(&c, &out, &Control::default()).unwrap();
    let (gx, gy) = (out.join("minilm-x"), out.join("minilm-y"));
    for seed in 0..2 {
        for (l, same) in [("A", true), ("D", true), ("B", false), ("C", false)] {
            let f = format!("run-{l}-{seed}.json");
            let (a, b) = (json(&gx.join(&f)), json(&gy.join(&f)));
            assert_eq!(a["points"] == b["points"], same, "{f}: {} vs {}", a["points"], b["points"]);
        }
    }
    let overview = json(&out.join("summary.json"));
    let q = overview["donor_questions"]["questions"].as_array().unwrap();
    let keys: Vec<(&str, &str, &str)> = q
        .iter()
        .map(|q| (q["key"].as_str().unwrap(), q["first"].as_str().unwrap(), q["second"].as_str().unwrap()))
        .collect();
    assert_eq!(keys, [("graft_benefit_C", "minilm-x", "minilm-y"), ("graft_benefit_B", "minilm-x", "minilm-y")]);
    // With A and D equal across the donors, (A − C) under X − (A − C) under Y is C under Y − C under X.
    let sx = json(&gx.join("summary.json"));
    let sy = json(&gy.join("summary.json"));
    let final_test = |s: &serde_json::Value, l: &str, seed: u64| {
        let r = s["runs"].as_array().unwrap().iter().find(|r| r["config"] == l && r["seed"] == seed).unwrap();
        r["points"].as_array().unwrap().last().unwrap()["test_loss"].as_f64().unwrap()
    };
    for (seed, d) in
        q[0]["per_seed"].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
    {
        let want = final_test(&sy, "C", seed) - final_test(&sx, "C", seed);
        assert!((d - want).abs() < 1e-12, "seed {seed}: {d} vs {want}");
    }
    assert_eq!(q[0]["difference"]["n"], 2);
    assert!(q[0]["p_adjusted"].as_f64().unwrap() >= q[0]["p_value"].as_f64().unwrap());
    let md = String::from_utf8(read(&out.join("report.md"))).unwrap();
    assert!(md.contains("## Donors compared, paired by seed") && md.contains("minilm-x"), "{md}");
    assert!(out.join("donor-questions.png").is_file() && out.join("donor-questions.svg").is_file());

    // The mapping is counted and proved in each group's summary; every exact row is the donor's.
    let v = &sx["inputs"]["vocab_map"];
    let tokens: Vec<u64> = v["tokens"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    assert_eq!(tokens.iter().sum::<u64>(), 50257);
    assert!(tokens[0] > 20 && tokens[1] > 10_000, "{tokens:?}");
    assert_eq!(v["proved"][0].as_u64(), Some(tokens[0]));
    assert_eq!(v["proved"][1].as_u64(), Some(tokens[1]));
    let positions: u64 = v["test_positions"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(positions, sx["inputs"]["test_positions"].as_u64().unwrap());
    assert!(md.contains("BPB"), "the overview gives bits per byte");

    // Bits per byte: each final point's test loss times positions over ln 2 · bytes.
    let b = &sx["inputs"]["text_bytes"];
    assert_eq!(b["corpus_bytes"].as_u64().unwrap() as usize, common::tiny_corpus().len());
    let k = b["test_positions"].as_f64().unwrap() / (std::f64::consts::LN_2 * b["test_bytes"].as_f64().unwrap());
    for r in sx["runs"].as_array().unwrap() {
        let p = r["points"].as_array().unwrap().last().unwrap();
        let (loss, bpb) = (p["test_loss"].as_f64().unwrap(), p["test_bpb"].as_f64().unwrap());
        assert!((bpb - loss * k).abs() < 1e-12, "{bpb} vs {}", loss * k);
    }
    let csv = String::from_utf8(read(&gx.join("metrics.csv"))).unwrap();
    assert!(csv.starts_with("config,seed,epoch,step,split,loss,bpb\n"), "{csv}");
}

/// A transplanted experiment with `--vocab-map exact,pieces` (two groups on one token stream):
/// three shards merged by `report`, and a run stopped part way and resumed, give the
/// one-process run's metrics.csv in every group and the same donor questions.
#[test]
fn a_transplant_resumes_and_shards_to_the_one_process_bytes() {
    let s = setup();
    let mut c = config(&s, &[&s.x], "A,C,H", 2);
    c.data.vocab_map = "exact,pieces".parse().unwrap();
    let one = s.root.join("one");
    compare_groups(&c, &one, &Control::default()).unwrap();
    let names: Vec<String> = groups(&c).into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["map-exact", "map-pieces"]);
    let exact = json(&one.join("map-exact/summary.json"));
    let pieces = json(&one.join("map-pieces/summary.json"));
    let t = |s: &serde_json::Value| s["inputs"]["vocab_map"]["tokens"].clone();
    assert_eq!(t(&exact)[1], 0, "exact maps no pieces");
    assert_eq!(t(&exact)[0], t(&pieces)[0], "the same exact matches either way");
    let questions = |d: &Path| json(&d.join("summary.json"))["donor_questions"]["questions"].clone();
    assert_eq!(questions(&one).as_array().unwrap().len(), 2, "C and H, map-exact against map-pieces");

    let sharded = s.root.join("sharded");
    for k in 1..=3 {
        compare_groups(&c, &sharded, &Control { shard: Some(Shard { k, n: 3 }), ..Default::default() }).unwrap();
    }
    let rebuilt = rebuild_report(&sharded).unwrap();
    assert!(rebuilt.missing.is_empty() && rebuilt.cells == 12, "{:?}", rebuilt.missing);

    let resumed = s.root.join("resumed");
    let calls = AtomicUsize::new(0);
    let stop = || calls.fetch_add(1, Ordering::SeqCst) >= 20;
    let e = compare_groups(&c, &resumed, &Control { should_stop: &stop, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("continues"), "{e}");
    compare_groups(&c, &resumed, &Control { resume: true, ..Default::default() }).unwrap();

    for other in [&sharded, &resumed] {
        for g in &names {
            let f = |d: &Path| read(&d.join(g).join("metrics.csv"));
            assert!(f(&one) == f(other), "{g}: metrics.csv differs in {}", other.display());
            let i = |d: &Path| json(&d.join(g).join("summary.json"))["inputs"].clone();
            assert_eq!(i(&one), i(other), "{g}");
        }
        assert_eq!(questions(&one), questions(other), "{}", other.display());
    }
}

fn embgraft(cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_embgraft")).current_dir(cwd).args(args).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A byte-level BPE tokenizer.json holding `tokens` (ids in order; gaps where `ids` says).
fn bpe_tokenizer(path: &Path, tokens: &[(&str, usize)]) {
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().map(|(t, i)| (t.to_string(), serde_json::Value::from(*i))).collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
    });
    std::fs::write(path, json.to_string()).unwrap();
}

/// Bad input for a transplant stops in one line, with nothing written; `--vocab-map` on the
/// donor's own tokenizer is a note.
#[test]
fn bad_transplants_are_refused_in_one_line() {
    let s = setup();
    let r = &s.root;
    let no_match = r.join("no-match.json");
    bpe_tokenizer(&no_match, &[("Ġqqq", 0), ("Ġzzz", 1), ("xx", 2)]);
    let gaps = r.join("gaps.json");
    bpe_tokenizer(&gaps, &[("Ġthe", 0), ("a", 7)]);
    let bare = r.join("bare");
    std::fs::create_dir(&bare).unwrap();
    let rows = vec![0.5f32; 100 * DIM];
    embgraft::fixtures::write_f32_tensors(
        &bare.join("model.safetensors"),
        &[("wte.weight".into(), vec![100, DIM], rows)],
    )
    .unwrap();
    let (x, corpus) = (s.x.to_str().unwrap(), s.corpus.to_str().unwrap());
    let base = ["compare", "--corpus", corpus, "--configs", "A,C", "--seeds", "1", "--max-steps", "2", "--out"];
    let cases: [(&[&str], i32, &str); 5] = [
        (&["--donor", x, "--tokenizer", no_match.to_str().unwrap()], 1, "almost certainly the wrong tokenizer"),
        (&["--donor", x, "--tokenizer", gaps.to_str().unwrap()], 1, "past its own vocabulary of 2"),
        (&["--donor", bare.to_str().unwrap(), "--tokenizer", "gpt2"], 1, "no tokenizer of its own to map them through"),
        (&["--donor", x, "--tokenizer", "gpt2", "--vocab-map", "exact,exact"], 2, "names exact twice"),
        (&["--donor", x, "--tokenizer", "gpt2", "--vocab-map", "fvt"], 2, "fvt"),
    ];
    for (k, (more, code, want)) in cases.iter().enumerate() {
        let out = format!("bad-{k}");
        let args: Vec<&str> = base.iter().copied().chain([out.as_str()]).chain(more.iter().copied()).collect();
        let (got, e) = embgraft(r, &args);
        let last = e.trim().lines().last().unwrap_or_default();
        assert_eq!(got, Some(*code), "{more:?}: {e}");
        assert!(last.starts_with("error") && last.contains(want), "{more:?}: {e}");
        assert!(!r.join(&out).exists(), "{more:?} wrote {out}");
    }
    // On the donor's own tokenizer the mapping settings change nothing: a note, and it runs.
    let (got, e) = embgraft(r, &[&base[..], &["ok", "--donor", x, "--vocab-map", "exact"]].concat());
    assert_eq!(got, Some(0), "{e}");
    assert!(
        e.contains("note: --vocab-map and --vocab-fallback apply to a donor read through another tokenizer"),
        "{e}"
    );
    assert!(json(&r.join("ok/summary.json"))["inputs"].get("vocab_map").is_none());
}

/// The Python reference's mapping of its WordPiece donor onto GPT-2's vocabulary
/// (reference/transplant_reference.py, with the `tokenizers` package): every token's class,
/// the counts, and a sample of ids with their donor pieces and rows, replayed bit for bit.
#[test]
fn the_reference_mapping_replays_class_for_class_and_bit_for_bit() {
    use embgraft::data::corpus::Tokenizer;
    use embgraft::data::transplant::{self, VocabFallback, VocabMap};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/transplant_golden.json");
    let golden = json(&path);
    let dir = tempfile::tempdir().unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    std::fs::write(&tok_path, golden["donor_tokenizer"].to_string()).unwrap();
    let donor_tok = Tokenizer::from_file(&tok_path, 1 << 20).unwrap();
    let dim = golden["dim"].as_u64().unwrap() as usize;
    let n = donor_tok.vocab_size();
    let data: Vec<f32> =
        (0..n * dim).map(|k| (((k / dim) * 7919 + (k % dim) * 104_729) % 257) as f32 / 128.0 - 1.0).collect();
    let donor = embgraft::data::donor::Embedding {
        tensor: "embeddings.word_embeddings.weight".into(),
        source_dtype: "F32".into(),
        rows: n,
        cols: dim,
        data,
    };
    let m = transplant::map(&Tokenizer::gpt2().unwrap(), &donor_tok, n, VocabMap::Pieces).unwrap();
    let classes: String = m.class.iter().map(|&c| char::from(b'0' + c as u8)).collect();
    let want = golden["classes"].as_str().unwrap();
    let first = classes.chars().zip(want.chars()).position(|(a, b)| a != b);
    assert!(first.is_none(), "first different class at id {first:?}: {:?}", first.map(|i| &m.texts[i]));
    assert_eq!(classes.len(), want.len());
    let counts: Vec<u64> = golden["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
    assert_eq!(m.counts().map(|c| c as u64).to_vec(), counts);
    assert!(counts.iter().all(|&c| c > 100), "every class is exercised: {counts:?}");
    let mapped = transplant::apply(&m, &donor, VocabFallback::Mean, &mut rand::rng());
    let sample = golden["sample"].as_array().unwrap();
    assert!(sample.len() > 500);
    for s in sample {
        let id = s["id"].as_u64().unwrap() as usize;
        let sources: Vec<u32> = s["sources"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(m.sources[id], sources, "id {id}");
        let row: Vec<u32> =
            s["row"].as_array().unwrap().iter().map(|x| (x.as_f64().unwrap() as f32).to_bits()).collect();
        let got: Vec<u32> = mapped.data[id * dim..(id + 1) * dim].iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, row, "id {id}");
    }
}

/// Every name in `dir` with what it is and, for a file, its bytes.
fn listing(dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    let mut v: Vec<(String, String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = std::fs::symlink_metadata(e.path()).unwrap().file_type();
            let bytes = if t.is_file() { std::fs::read(e.path()).unwrap() } else { Vec::new() };
            (e.file_name().to_string_lossy().into_owned(), format!("{t:?}"), bytes)
        })
        .collect();
    v.sort();
    v
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// `inspect --write-mapped` and `bench --tokens-out` write a new regular file, or with --force
/// replace a regular file that is not one of their inputs; a FIFO, a device node, a link, a
/// folder or an input is refused by name and left as it was (private ones here, never the
/// system's).
#[test]
fn mapped_and_token_files_go_only_where_they_may() {
    let s = setup();
    let r = &s.root;
    let places = r.join("places");
    std::fs::create_dir(&places).unwrap();
    mkfifo(&places.join("fifo"));
    // A character device like /dev/null (1, 3), made here where we may (as root, as CI is).
    let dev = places.join("null-device");
    let c = std::ffi::CString::new(dev.to_str().unwrap()).unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }, 0);
    }
    std::fs::write(places.join("target"), "keep").unwrap();
    std::os::unix::fs::symlink(places.join("target"), places.join("link")).unwrap();
    std::fs::create_dir(places.join("folder")).unwrap();
    std::fs::write(places.join("existing.safetensors"), "old").unwrap();
    let x = s.x.to_str().unwrap();
    let p = |n: &str| places.join(n).to_str().unwrap().to_string();
    let mut cases: Vec<(String, bool, &str)> = vec![
        (p("fifo"), true, "is not a regular file (a device, FIFO or socket)"),
        (p("link"), true, "is a symbolic link"),
        (p("folder"), true, "is a folder"),
        (p("existing.safetensors"), false, "exists; give a new file path, or --force to replace it"),
        (s.x.join("model.safetensors").to_str().unwrap().to_string(), true, "which this command reads"),
        (s.x.join("tokenizer.json").to_str().unwrap().to_string(), true, "which this command reads"),
        (p("no-such-folder/mapped.safetensors"), false, "its folder"),
    ];
    if root {
        cases.push((p("null-device"), true, "is not a regular file (a device, FIFO or socket)"));
    }
    let donor_before = listing(&s.x);
    for (target, force, says) in &cases {
        let before = listing(&places);
        let mut a = vec!["inspect", x, "--tokenizer", "gpt2", "--write-mapped", target.as_str()];
        if *force {
            a.push("--force");
        }
        let (code, e) = embgraft(r, &a);
        let last = e.trim().lines().last().unwrap_or_default();
        assert_eq!(code, Some(1), "{target}: {e}");
        assert!(last.starts_with("error") && last.contains(says), "{target}: {e}");
        assert_eq!(listing(&places), before, "{target}");
    }
    assert_eq!(listing(&s.x), donor_before);
    // A new file, then --force over it: a mapped matrix each time.
    for force in [false, true] {
        let mut a = vec!["inspect", x, "--tokenizer", "gpt2", "--write-mapped", "places/mapped.safetensors"];
        if force {
            a.push("--force");
        }
        let (code, e) = embgraft(r, &a);
        assert_eq!(code, Some(0), "{e}");
        let bytes = std::fs::read(places.join("mapped.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("wte").unwrap().shape(), [50257, DIM]);
    }
    let (code, e) = embgraft(r, &["inspect", x, "--tokenizer", "auto"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("--tokenizer auto is the donor's own tokenizer, so there is nothing to map"), "{e}");
    let (code, e) = embgraft(r, &["inspect", x, "--force"]);
    assert_eq!(code, Some(2), "--force alone: {e}");

    // bench --tokens-out: the same rules, its inputs being --corpus and --batches.
    let corpus = s.corpus.to_str().unwrap();
    let small = ["--dim", "8", "--steps", "1", "--warmup", "0", "--shape", "4x8"];
    let bench = |out: &str, force: bool| {
        let mut a = vec!["bench", "--batches", "places/batches.safetensors", "--corpus", corpus, "--tokens-out", out];
        a.extend(small);
        if force {
            a.push("--force");
        }
        embgraft(r, &a)
    };
    for (target, force, says) in [
        (p("fifo"), true, "is not a regular file"),
        (corpus.to_string(), true, "which this command reads"),
        (p("existing.safetensors"), false, "exists; give a new file path, or --force"),
    ] {
        let before = listing(&places);
        let corpus_before = std::fs::read(&s.corpus).unwrap();
        let (code, e) = bench(&target, force);
        assert_eq!(code, Some(1), "{target}: {e}");
        assert!(e.trim().lines().last().unwrap_or_default().contains(says), "{target}: {e}");
        assert_eq!(listing(&places), before, "{target}");
        assert_eq!(std::fs::read(&s.corpus).unwrap(), corpus_before);
    }
    // --tokens-out naming the --batches file the bench is about to write (another spelling).
    let (code, e) = bench("./places/batches.safetensors", true);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("is places/batches.safetensors, which this command reads"), "{e}");
    assert!(!places.join("batches.safetensors").exists());
    let (code, e) = bench(&p("existing.safetensors"), true);
    assert_eq!(code, Some(0), "{e}");
    // Its result is a JSON line on stdout, where bench/*.sh read it.
    let args = [&["bench", "--batches", "places/batches.safetensors"][..], &small].concat();
    let o = Command::new(env!("CARGO_BIN_EXE_embgraft")).current_dir(r).args(args).output().unwrap();
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success() && serde_json::from_str::<serde_json::Value>(line.trim()).is_ok(), "{line}");
    let bytes = std::fs::read(places.join("existing.safetensors")).unwrap();
    assert!(safetensors::SafeTensors::deserialize(&bytes).unwrap().tensor("tokens").is_ok());
}

/// A WordLevel tokenizer.json of `n` entries: the donor's words first, then made-up ones.
fn big_tokenizer(path: &Path, n: usize) {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for w in ["the", "time", "machine"].iter().map(|w| w.to_string()).chain((0..).map(|i| format!("w{i:07}x"))) {
        if vocab.len() == n {
            break;
        }
        let id = vocab.len();
        vocab.insert(w, id.into());
    }
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(path, json.to_string()).unwrap();
}

/// A vocabulary of hundreds of thousands mapped onto a donor of width 384 is estimated and
/// refused before the mapping is built: under --max-memory and under an address-space limit
/// (where it used to abort allocating), with the tokenizer's vocabulary as the remedy.
#[test]
fn a_mapping_that_cannot_fit_is_refused_before_it_is_built() {
    use std::os::unix::process::CommandExt;
    let s = setup();
    let r = &s.root;
    let wide = r.join("wide");
    std::fs::create_dir(&wide).unwrap();
    let n = embgraft::fixtures::write_wordpiece_tokenizer(&wide.join("tokenizer.json"), WORDS).unwrap();
    let rows = vec![0.25f32; n * 384];
    embgraft::fixtures::write_f32_tensors(
        &wide.join("model.safetensors"),
        &[("embeddings.word_embeddings.weight".into(), vec![n, 384], rows)],
    )
    .unwrap();
    let big = r.join("big.json");
    big_tokenizer(&big, 600_000);
    let (w, b) = (wide.to_str().unwrap(), big.to_str().unwrap());
    // 600,000 x (384 x 4 + 160) bytes: about 970 MiB.
    let says = "mapping the donor's rows onto";
    let (code, e) = embgraft(r, &["inspect", w, "--tokenizer", b, "--max-memory", "300MiB"]);
    assert_eq!(code, Some(1), "{e}");
    let last = e.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains(says) && last.contains("(600000 ids x width 384)") && last.contains("smaller vocabulary"),
        "{last}"
    );
    assert!(last.contains("--max-memory"), "{last}");
    let corpus = s.corpus.to_str().unwrap();
    let run = ["compare", "--corpus", corpus, "--donor", w, "--tokenizer", b, "--max-memory", "300MiB", "--out", "no"];
    let (code, e) = embgraft(r, &run);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains(says) && e.contains("smaller vocabulary") && !r.join("no").exists(), "{e}");
    // The tokenizer itself, where even its tables could not fit.
    let (code, e) = embgraft(r, &["inspect", w, "--tokenizer", b, "--max-memory", "100MiB"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("reading tokenizer") && e.contains("smaller vocabulary"), "{e}");
    // Under a 1 GiB address-space limit, without --max-memory: refused, not aborted.
    let mut c = Command::new(env!("CARGO_BIN_EXE_embgraft"));
    c.current_dir(r).args(["inspect", w, "--tokenizer", b]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    let o = c.output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(says) && e.contains("address-space limit"), "{e}");
}

/// A tokenizer.json past the old hidden 64 MiB cap (padded with white space, as a pretty-printed
/// file of a big vocabulary is) maps when --max-input-size allows it: the mapping reads it under
/// the same cap as the run.
#[test]
fn the_mapping_reads_tokenizers_under_max_input_size() {
    let s = setup();
    let r = &s.root;
    let model = r.join("padded.json");
    bpe_tokenizer(&model, &[("Ġthe", 0), ("Ġtime", 1), ("Ġmachine", 2), ("Ġzebra", 3)]);
    let text = std::fs::read_to_string(&model).unwrap();
    let padded = text.replacen('{', &format!("{{{}", " ".repeat(70 << 20)), 1);
    std::fs::write(&model, padded).unwrap();
    let (x, m) = (s.x.to_str().unwrap(), model.to_str().unwrap());
    let (code, e) = embgraft(r, &["inspect", x, "--tokenizer", m]);
    assert_eq!(code, Some(0), "{e}");
    let out = Command::new(env!("CARGO_BIN_EXE_embgraft"))
        .current_dir(r)
        .args(["inspect", x, "--tokenizer", m])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("(4 ids): 3 exact"), "{said}");
    // The run reads it under --max-input-size too, both ways.
    let corpus = s.corpus.to_str().unwrap();
    let run = [
        "compare",
        "--corpus",
        corpus,
        "--donor",
        x,
        "--tokenizer",
        m,
        "--configs",
        "A",
        "--seeds",
        "1",
        "--max-steps",
        "1",
    ];
    let (code, e) = embgraft(r, &[&run[..], &["--max-input-size", "64MiB", "--out", "small"]].concat());
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("over the 64.0 MiB cap") && e.contains("--max-input-size"), "{e}");
}

/// `--vocab-map exact,pieces` runs two groups; each group's folder exports its own cell.
#[test]
fn each_vocab_map_group_exports() {
    let s = setup();
    let r = &s.root;
    let (x, corpus) = (s.x.to_str().unwrap(), s.corpus.to_str().unwrap());
    let args = [
        "compare",
        "--corpus",
        corpus,
        "--donor",
        x,
        "--tokenizer",
        "gpt2",
        "--vocab-map",
        "exact,pieces",
        "--configs",
        "C",
        "--seeds",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "16",
        "--save-weights",
        "--out",
        "maps",
    ];
    let (code, e) = embgraft(r, &args);
    assert_eq!(code, Some(0), "{e}");
    for g in ["map-exact", "map-pieces"] {
        let dest = format!("export-{g}");
        let (code, e) = embgraft(r, &["export", &format!("maps/{g}"), "--config", "C", "--out", &dest]);
        assert_eq!(code, Some(0), "{g}: {e}");
        assert_eq!(json(&r.join(&dest).join("embgraft.json"))["group"].as_str(), Some(g));
    }
}
