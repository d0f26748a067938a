//! What the integration tests share: a tiny corpus and a GPT-2-layout donor, written into a
//! temporary folder (no network, no ../shared).
#![allow(dead_code)]

use std::path::PathBuf;

/// A few thousand words of deterministic, repetitive English: enough windows for both splits.
pub fn tiny_corpus() -> String {
    let subjects = ["The Time Traveller", "The Medical Man", "Weena", "The Psychologist", "I"];
    let verbs = ["looked at", "spoke of", "walked towards", "thought about", "laughed at"];
    let objects = ["the machine", "the sphinx", "the dim light", "the Morlocks", "the garden"];
    let mut s = String::new();
    for i in 0..600 {
        s.push_str(&format!("{} {} {}. ", subjects[i % 5], verbs[(i / 5) % 5], objects[(i * 7 + i / 25) % 5]));
        if i % 9 == 8 {
            s.push('\n');
        }
    }
    s
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub corpus: PathBuf,
    pub donor: PathBuf,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let corpus = root.join("corpus.txt");
    std::fs::write(&corpus, tiny_corpus()).unwrap();
    let donor = root.join("gpt2-tiny");
    std::fs::create_dir(&donor).unwrap();
    embgraft::fixtures::write_gpt2_layout(&donor.join("model.safetensors"), 8, 0.5, 1).unwrap();
    Fixture { _dir: dir, root, corpus, donor }
}

/// Compiles `tex` (a `tabular` a report wrote) inside a minimal article with booktabs, with
/// pdflatex in a scratch folder. Returns false, after saying why, where no pdflatex is
/// installed, unless EMBGRAFT_REQUIRE_LATEX is set (CI sets it after installing TeX), which
/// makes that a failure; a table LaTeX rejects is always a failure, with its log's errors.
pub fn compiles_with_latex(tex: &std::path::Path) -> bool {
    use std::process::Command;
    if Command::new("pdflatex").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("EMBGRAFT_REQUIRE_LATEX").is_none(),
            "EMBGRAFT_REQUIRE_LATEX is set but pdflatex is not installed (apt-get install texlive-latex-base \
             texlive-latex-recommended)"
        );
        eprintln!("pdflatex not installed: {} checked for structure only", tex.display());
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(tex, dir.path().join("table.tex")).unwrap();
    let doc =
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{table.tex}\n\\end{document}\n";
    std::fs::write(dir.path().join("doc.tex"), doc).unwrap();
    let out = Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with('!') || l.contains("Warning")).collect();
    assert!(out.status.success() && errors.is_empty(), "{} does not compile: {errors:?}", tex.display());
    assert!(dir.path().join("doc.pdf").is_file());
    true
}

/// A CSV file's rows as fields (RFC 4180 quoting), every row as wide as the header.
pub fn read_csv(path: &std::path::Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = Vec::new();
    for line in text.lines() {
        let (mut fields, mut field, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, line.chars().peekable());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        fields.push(field);
        rows.push(fields);
    }
    let width = rows[0].len();
    assert!(rows.iter().all(|r| r.len() == width), "{}: ragged rows", path.display());
    rows
}
