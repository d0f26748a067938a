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
