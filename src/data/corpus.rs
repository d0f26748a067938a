//! Text -> token ids -> windows -> train/test split -> batch order.
//!
//! Everything random here draws from streams of the run's one seed (see [`crate::rng`]), so
//! every configuration of one `compare` sees the same split and the same batches.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

pub use crate::data::tokenizer::{cut_points, Encoded, Tokenizer, GPT2_VOCAB, PIECE};
use crate::error::{Error, Result};

/// Project Gutenberg eBook 35, the edition the course downloads (header and licence included).
pub const TIME_MACHINE_URL: &str = "https://www.gutenberg.org/files/35/35-0.txt";

/// A mean loss in nats over `positions` target positions in bits per byte of the `bytes` their
/// tokens own: the summed loss over ln 2 times the bytes.
pub fn per_byte(nats: f64, positions: u64, bytes: u64) -> f64 {
    nats * positions as f64 / (std::f64::consts::LN_2 * bytes as f64)
}

/// Reads a UTF-8 text file; invalid UTF-8 is an error that says where.
pub fn read_text(path: &Path, cap: u64) -> Result<String> {
    let bytes = crate::util::read_input(path, "corpus", cap, "raise it with --max-input-size, or give a smaller file")?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Input(format!(
            "corpus {} is not valid UTF-8 (byte {at}, line {line}); convert it to UTF-8 first",
            path.display()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(Error::Input(format!("corpus {} is empty; pass a text file with content", path.display())));
    }
    Ok(text)
}

/// The default corpus: The Time Machine, downloaded once into the user's cache.
pub fn time_machine() -> Result<PathBuf> {
    let dir = dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("embgraft");
    let path = dir.join("timemachine.txt");
    if path.exists() {
        return Ok(path);
    }
    crate::util::say(&format!("downloading The Time Machine from {TIME_MACHINE_URL} into {}", path.display()));
    let fail = |why: String| {
        Error::Download(format!(
            "cannot download The Time Machine ({why}); you may be offline: pass --corpus PATH with a local text file"
        ))
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(15))
        .timeout_read(std::time::Duration::from_secs(30))
        .redirects(5)
        .build();
    let resp = agent.get(TIME_MACHINE_URL).call().map_err(|e| fail(e.to_string()))?;
    // The book is about 200 KB: a server sending far more is not sending the book.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(resp.into_reader(), 16 << 20), &mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| fail("the answer is not UTF-8 text".into()))?;
    if text.len() < 100_000 || !text.contains("Time Machine") {
        return Err(fail(format!("{TIME_MACHINE_URL} did not return the book ({} bytes)", text.len())));
    }
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    crate::util::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The course: a random 90/10 split of the (overlapping) windows. Test windows share text
    /// with training windows, so the test loss is optimistic.
    Windows,
    /// The first 90 % of the token stream trains, the last 10 % tests; no window crosses the cut.
    Contiguous,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Windows => "windows",
            Split::Contiguous => "contiguous",
        })
    }
}

/// Token stream cut into windows: window `s` has inputs `tokens[s..s+L]` and targets
/// `tokens[s+1..s+L+1]`. Windows are stored as start offsets, never copied.
pub struct Dataset {
    pub tokens: Vec<u32>,
    /// The bytes of the raw text each token owns ([`Encoded::owned`]); empty when unknown.
    pub owned: Vec<u32>,
    pub seq_len: usize,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    pub split: Split,
}

/// Start offsets of every window of `seq_len` (+1 target) inside `lo..hi`, `stride` apart.
fn window_starts(lo: usize, hi: usize, seq_len: usize, stride: usize) -> Vec<usize> {
    match lo.checked_add(seq_len).and_then(|x| x.checked_add(1)) {
        Some(end) if end <= hi && stride > 0 => (lo..=hi - seq_len - 1).step_by(stride).collect(),
        _ => Vec::new(),
    }
}

impl Dataset {
    pub fn new(
        tokens: Vec<u32>,
        seq_len: usize,
        stride: usize,
        split: Split,
        test_fraction: f64,
        rng: &mut impl rand::Rng,
    ) -> Result<Self> {
        if seq_len == 0 || stride == 0 {
            return Err(Error::Input("--seq-len and --stride must be at least 1".into()));
        }
        let n = tokens.len();
        let (train, test) = match split {
            Split::Windows => {
                let mut all = window_starts(0, n, seq_len, stride);
                all.shuffle(rng);
                // As torch.utils.data.random_split(ds, [0.9, 0.1]): floor each share, and hand
                // the remainder to the first split.
                let n_test = (all.len() as f64 * test_fraction).floor() as usize;
                let test = all.split_off(all.len() - n_test);
                (all, test)
            }
            Split::Contiguous => {
                let cut = ((n as f64) * (1.0 - test_fraction)).round() as usize;
                (window_starts(0, cut, seq_len, stride), window_starts(cut, n, seq_len, stride))
            }
        };
        if train.is_empty() || test.is_empty() {
            return Err(Error::Input(format!(
                "corpus too short: {n} tokens give {} train and {} test windows of --seq-len {seq_len}; \
                 use a longer corpus or a smaller --seq-len",
                train.len(),
                test.len()
            )));
        }
        Ok(Dataset { tokens, owned: Vec::new(), seq_len, train, test, split })
    }

    /// The token stream with the bytes each token owns, for bits per byte.
    pub fn with_owned(mut self, owned: Vec<u32>) -> Result<Self> {
        if owned.len() != self.tokens.len() {
            return Err(Error::Input(format!("{} tokens but {} byte counts", self.tokens.len(), owned.len())));
        }
        self.owned = owned;
        Ok(self)
    }

    /// (target positions, the raw bytes their tokens own) over `windows`, each position
    /// counted once per window that scores it; None without byte counts.
    pub fn target_bytes(&self, windows: &[usize]) -> Option<(u64, u64)> {
        if self.owned.is_empty() {
            return None;
        }
        let bytes =
            windows.iter().map(|&w| self.owned[w + 1..=w + self.seq_len].iter().map(|&b| b as u64).sum::<u64>());
        Some(((windows.len() * self.seq_len) as u64, bytes.sum()))
    }

    /// A mean loss in nats per target position over `windows` in bits per byte: the summed
    /// loss over ln 2 times the bytes the targets own.
    pub fn bits_per_byte(&self, loss: f64, windows: &[usize]) -> Option<f64> {
        let (positions, bytes) = self.target_bytes(windows)?;
        (bytes > 0).then(|| per_byte(loss, positions, bytes))
    }

    pub fn inputs(&self, start: usize) -> &[u32] {
        &self.tokens[start..start + self.seq_len]
    }

    pub fn targets(&self, start: usize) -> &[u32] {
        &self.tokens[start + 1..start + 1 + self.seq_len]
    }

    /// (input, target) pairs of a list of windows, flattened position by position.
    pub fn pairs(&self, windows: &[usize]) -> (Vec<u32>, Vec<u32>) {
        let mut xs = Vec::with_capacity(windows.len() * self.seq_len);
        let mut ys = Vec::with_capacity(windows.len() * self.seq_len);
        for &w in windows {
            xs.extend_from_slice(self.inputs(w));
            ys.extend_from_slice(self.targets(w));
        }
        (xs, ys)
    }

    /// Train windows in this epoch's order; the caller's RNG makes it the same for every config.
    pub fn epoch_order(&self, rng: &mut impl rand::Rng) -> Vec<usize> {
        let mut order = self.train.clone();
        order.shuffle(rng);
        order
    }

    /// Share of test-window positions (inputs and the last target) that some training window
    /// also covers at the same place in the text: the course's random window split lets the
    /// model see most of the test text during training; the contiguous split makes this 0.
    pub fn leakage(&self) -> f64 {
        let covered = self.train_coverage();
        let seen: usize = self.test.iter().map(|&s| covered[s..=s + self.seq_len].iter().filter(|&&c| c).count()).sum();
        seen as f64 / (self.test.len() * (self.seq_len + 1)) as f64
    }

    /// A fixed set of training windows as many as the test windows, spread evenly over the
    /// training list: the train split evaluated exactly as the test split is.
    pub fn train_eval_windows(&self) -> Vec<usize> {
        let n = self.test.len().min(self.train.len());
        (0..n).map(|i| self.train[i * self.train.len() / n]).collect()
    }

    /// Which text positions the training windows cover (inputs and the last target).
    fn train_coverage(&self) -> Vec<bool> {
        let mut covered = vec![false; self.tokens.len()];
        for &s in &self.train {
            covered[s..=s + self.seq_len].iter_mut().for_each(|c| *c = true);
        }
        covered
    }

    /// Tokens of text the training windows cover: the training part's size.
    pub fn train_part_tokens(&self) -> usize {
        self.train_coverage().iter().filter(|&&c| c).count()
    }

    /// Keeps the training windows that lie within the first `n` tokens of the training part
    /// (the text the training windows cover, in text order); the test windows stay as they
    /// are, so test losses compare across sizes. For the contiguous split that is the windows
    /// inside the text's first `n` tokens; for the course's window split, the training
    /// windows among the text's first tokens, as many as cover `n` of them. `n` beyond the
    /// training part keeps everything (the caller refuses it first).
    pub fn keep_train_tokens(&mut self, n: usize) {
        let covered = self.train_coverage();
        let mut seen = 0;
        let Some(last) = covered.iter().position(|&c| {
            seen += c as usize;
            seen == n
        }) else {
            return;
        };
        self.train.retain(|&s| s + self.seq_len <= last);
    }

    /// Share of the test windows' target positions whose token never occurs in a training
    /// window: the test text's words the model can only have learnt from the donor.
    pub fn test_unseen_in_training(&self) -> f64 {
        let mut seen = vec![false; self.max_token() as usize + 1];
        for &s in &self.train {
            self.tokens[s..=s + self.seq_len].iter().for_each(|&t| seen[t as usize] = true);
        }
        let (mut unseen, mut all) = (0usize, 0usize);
        for &s in &self.test {
            for &t in self.targets(s) {
                unseen += !seen[t as usize] as usize;
                all += 1;
            }
        }
        unseen as f64 / all.max(1) as f64
    }

    /// Distinct token ids in the whole text, and in the training windows.
    pub fn distinct_tokens(&self) -> (usize, usize) {
        let mut all = vec![0u8; self.max_token() as usize + 1];
        self.tokens.iter().for_each(|&t| all[t as usize] = 1);
        for &s in &self.train {
            self.tokens[s..=s + self.seq_len].iter().for_each(|&t| all[t as usize] = 2);
        }
        (all.iter().filter(|&&c| c > 0).count(), all.iter().filter(|&&c| c == 2).count())
    }

    pub fn max_token(&self) -> u32 {
        self.tokens.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn gpt2_ids_match_openai() {
        let t = Tokenizer::gpt2().unwrap();
        assert_eq!(t.encode("Hello world").unwrap(), vec![15496, 995]);
        assert_eq!(t.vocab_size(), 50257);
        // Literal special-token text is ordinary text, never id 50256.
        assert!(!t.encode("<|endoftext|>").unwrap().contains(&50256));
        assert_eq!(t.decode(&[50256]), "<|endoftext|>");
        assert_eq!(t.decode(&[15496, 995]), "Hello world");
    }

    /// A size keeps exactly the training windows inside the training part's first N tokens:
    /// every kept window lies inside them, every dropped one reaches past them, the test
    /// windows never change, and the kept windows cover N tokens up to a stride's slack.
    #[test]
    fn train_tokens_cut_the_training_part_exactly() {
        let tokens: Vec<u32> = (0..2000u32).map(|i| (i * 7919) % 101).collect();
        for split in [Split::Contiguous, Split::Windows] {
            let make = || {
                let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
                Dataset::new(tokens.clone(), 8, 2, split, 0.1, &mut r).unwrap()
            };
            let full = make();
            let part = full.train_part_tokens();
            assert!(part > 1500, "{split}: {part}");
            for n in [9, 10, 57, 500, 1000, part - 1, part] {
                let mut d = make();
                d.keep_train_tokens(n);
                assert_eq!(d.test, full.test, "{split} {n}: the test part moved");
                let covered = full.train_coverage();
                // The text position of the N-th token of the training part.
                let last = (0..covered.len()).filter(|&i| covered[i]).nth(n - 1).unwrap();
                assert!(d.train.iter().all(|&s| s + 8 <= last), "{split} {n}: a kept window reaches past");
                let dropped: Vec<usize> = full.train.iter().copied().filter(|s| !d.train.contains(s)).collect();
                assert!(dropped.iter().all(|&s| s + 8 > last), "{split} {n}: a window inside was dropped");
                let kept = d.train_part_tokens();
                assert!(kept <= n, "{split} {n}: covers {kept}");
                if split == Split::Contiguous {
                    // The training part starts the text: the first N tokens, less a stride's slack.
                    assert!(kept + 2 > n && d.train.iter().all(|&s| s + 8 < n), "{split} {n}: covers {kept}");
                }
            }
        }
    }

    /// A WordLevel tokenizer.json that, like BERT-style donors, pads to 16, truncates at 4 and
    /// wraps every encoding in [CLS] ... [SEP].
    const PADDED_TOKENIZER: &str = include_str!("../../tests/data/wordlevel-padded-tokenizer.json");

    #[test]
    fn donor_tokenizer_never_pads_truncates_or_adds_specials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        std::fs::write(&p, PADDED_TOKENIZER).unwrap();
        let t = Tokenizer::from_file(&p, 1 << 30).unwrap();
        assert_eq!(t.vocab_size(), 8);
        let text = "The Time Machine. The machine\n\nthe time the time .";
        assert_eq!(t.encode(text).unwrap(), vec![4, 5, 6, 7, 4, 6, 4, 5, 4, 5, 7]);
    }

    #[test]
    fn invalid_utf8_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.txt");
        std::fs::write(&p, b"line one\nline \xff two").unwrap();
        let msg = read_text(&p, 1 << 30).unwrap_err().to_string();
        assert!(msg.contains("not valid UTF-8 (byte 14, line 2)"), "{msg}");
        std::fs::write(&p, b"  \n ").unwrap();
        assert!(read_text(&p, 1 << 30).unwrap_err().to_string().contains("is empty"));
    }

    #[test]
    fn windows_and_targets_are_shifted_by_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let tokens: Vec<u32> = (0..100).collect();
        let d = Dataset::new(tokens, 8, 2, Split::Windows, 0.1, &mut rng).unwrap();
        // (100 - 9) / 2 + 1 = 46 windows, floor(4.6) = 4 test.
        assert_eq!(d.train.len() + d.test.len(), 46);
        assert_eq!(d.test.len(), 4);
        let w = d.train[0];
        assert_eq!(d.inputs(w), &(w as u32..w as u32 + 8).collect::<Vec<_>>()[..]);
        assert_eq!(d.targets(w), &(w as u32 + 1..w as u32 + 9).collect::<Vec<_>>()[..]);
        let mut all: Vec<usize> = d.train.iter().chain(&d.test).copied().collect();
        all.sort();
        assert_eq!(all, (0..=90).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn contiguous_split_never_shares_a_token_position() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let d = Dataset::new((0..1000).collect(), 8, 2, Split::Contiguous, 0.1, &mut rng).unwrap();
        let train_last = d.train.iter().map(|&s| s + 8).max().unwrap(); // last target position
        let test_first = *d.test.iter().min().unwrap();
        assert!(train_last < test_first, "train reaches {train_last}, test starts {test_first}");
        assert_eq!(test_first, 900);
        assert!(d.test.iter().all(|&s| s + 9 <= 1000));
    }

    #[test]
    fn leakage_is_counted_by_text_position() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let contiguous = Dataset::new((0..1000).collect(), 8, 2, Split::Contiguous, 0.1, &mut rng).unwrap();
        assert_eq!(contiguous.leakage(), 0.0);
        // By hand: tokens 0..20, L = 2, stride 3: windows at 0, 3, 6, 9, 12, 15 cover 3 positions
        // each. Train {0, 6, 12} covers 0-2, 6-8, 12-14; test {3, 9, 15}: none of theirs.
        let mut d = Dataset::new((0..20).collect(), 2, 3, Split::Contiguous, 0.5, &mut rng).unwrap();
        d.train = vec![0, 6, 12];
        d.test = vec![3, 9, 15];
        assert_eq!(d.leakage(), 0.0);
        d.train = vec![0, 3, 6];
        d.test = vec![2, 9]; // 2 is covered (by 0), 3 and 4 (by 3): 3 of 6 positions
        assert_eq!(d.leakage(), 0.5);
        let windows = Dataset::new((0..1000).collect(), 8, 2, Split::Windows, 0.1, &mut rng).unwrap();
        assert!(windows.leakage() > 0.9, "overlapping windows leak: {}", windows.leakage());
        let sub = windows.train_eval_windows();
        assert_eq!(sub.len(), windows.test.len());
        assert!(sub.iter().all(|w| windows.train.contains(w)));
    }

    #[test]
    fn too_short_corpus_is_an_error() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let err = Dataset::new((0..12).collect(), 8, 2, Split::Windows, 0.1, &mut rng).err().unwrap();
        assert!(err.to_string().contains("corpus too short"), "{err}");
    }

    /// A small BERT-style WordPiece tokenizer.json (lowercasing normalizer, BERT's
    /// pre-tokenizer), or the same with another pre-tokenizer.
    fn wordpiece_json(pre_tokenizer: &str) -> String {
        let mut vocab = vec!["[UNK]".to_string()];
        for c in ('a'..='z').chain('0'..='9') {
            vocab.push(c.to_string());
            vocab.push(format!("##{c}"));
        }
        for w in ["the", "time", "machine", "##ing", "##ed", ".", ",", "!", "'", "-", "é", "##é", "東", "京"] {
            vocab.push(w.to_string());
        }
        let vocab: serde_json::Map<String, serde_json::Value> =
            vocab.into_iter().enumerate().map(|(i, t)| (t, serde_json::Value::from(i))).collect();
        serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": true}],
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                           "strip_accents": null, "lowercase": true},
            "pre_tokenizer": serde_json::from_str::<serde_json::Value>(pre_tokenizer).unwrap(),
            "post_processor": null, "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": vocab}
        })
        .to_string()
    }

    /// Bits per byte by hand, for a lossless tokenizer (GPT-2's BPE: each token owns its own
    /// bytes) and a lossy one (uncased WordPiece drops spaces and case: the spaces go with the
    /// token after them), on a text with a double space, a comma, a newline and a word spelled
    /// in pieces.
    #[test]
    fn bits_per_byte_by_hand() {
        let text = "The Time  Machine,\nok";
        let gpt2 = Tokenizer::gpt2().unwrap().encode_owning(text).unwrap();
        // "The", " Time", " ", " Machine", ",", "\n", "ok"
        assert_eq!(gpt2.owned, [3, 5, 1, 8, 1, 1, 2]);
        let dir = tempfile::tempdir().unwrap();
        let bert = dir.path().join("bert.json");
        std::fs::write(&bert, wordpiece_json(r#"{"type": "BertPreTokenizer"}"#)).unwrap();
        let wp = Tokenizer::from_file(&bert, 1 << 20).unwrap().encode_owning(text).unwrap();
        // "the", "time" (with the space before it), "machine" (with both), ",", "o" (with the
        // newline), "##k"
        assert_eq!(wp.owned, [3, 5, 9, 1, 2, 1]);
        for e in [&gpt2, &wp] {
            assert_eq!(e.owned.iter().sum::<u32>() as usize, text.len());
        }
        // Windows of 2 at 0 and 2 score the targets at positions 1, 2 and 3, 4.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let d =
            Dataset::new(wp.ids.clone(), 2, 1, Split::Contiguous, 0.5, &mut rng).unwrap().with_owned(wp.owned).unwrap();
        assert_eq!(d.target_bytes(&[0, 2]), Some((4, 5 + 9 + 1 + 2)));
        let want = 1.5 * 4.0 / (std::f64::consts::LN_2 * 17.0);
        assert!((d.bits_per_byte(1.5, &[0, 2]).unwrap() - want).abs() < 1e-15);
        let g = Dataset::new(gpt2.ids.clone(), 2, 1, Split::Contiguous, 0.5, &mut rng)
            .unwrap()
            .with_owned(gpt2.owned)
            .unwrap();
        let want = 1.5 * 4.0 / (std::f64::consts::LN_2 * (5 + 1 + 8 + 1) as f64);
        assert!((g.bits_per_byte(1.5, &[0, 2]).unwrap() - want).abs() < 1e-15);
        // Without byte counts there is no BPB, and counts of the wrong length are refused.
        let bare = Dataset::new(gpt2.ids.clone(), 2, 1, Split::Contiguous, 0.5, &mut rng).unwrap();
        assert_eq!(bare.bits_per_byte(1.5, &[0]), None);
        assert!(Dataset::new(gpt2.ids, 2, 1, Split::Contiguous, 0.5, &mut rng).unwrap().with_owned(vec![1]).is_err());
    }

    /// Texts of every shape a corpus takes: prose with newlines, one long line with none,
    /// blank lines and runs of spaces, tabs, CRLF, digits, punctuation runs, accents and CJK.
    fn shapes() -> Vec<String> {
        let words = ["The", "Time", "Machine", "was", "running,", "1895", "--", "café", "東京", "don't", "!!!", "x"];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut prose = String::new();
        let mut line = String::new();
        for i in 0..6000 {
            use rand::Rng;
            prose.push_str(words[rng.random_range(0..words.len())]);
            line.push_str(words[i % words.len()]);
            line.push(' ');
            prose.push_str(match rng.random_range(0..20) {
                0 => "\n",
                1 => "\n\n",
                2 => "  ",
                3 => "\t",
                4 => "\r\n",
                5 => " \n",
                _ => " ",
            });
        }
        vec![prose, line.clone(), line.replace(' ', "\n"), line.replace(' ', "")]
    }

    /// Encoding in pieces gives exactly the ids of encoding whole, for GPT-2's BPE and for a
    /// WordPiece tokenizer.json, at piece sizes that cut the text hundreds of times.
    #[test]
    fn pieces_give_the_whole_texts_ids() {
        let dir = tempfile::tempdir().unwrap();
        let bert = dir.path().join("bert.json");
        std::fs::write(&bert, wordpiece_json(r#"{"type": "BertPreTokenizer"}"#)).unwrap();
        let meta = dir.path().join("meta.json");
        let metaspace = r#"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}"#;
        std::fs::write(&meta, wordpiece_json(metaspace)).unwrap();
        let tokenizers = [Tokenizer::gpt2().unwrap(), Tokenizer::from_file(&bert, 1 << 20).unwrap()];
        assert!(matches!(tokenizers[1], Tokenizer::HuggingFace { in_pieces: true, .. }));
        let whole_only = Tokenizer::from_file(&meta, 1 << 20).unwrap();
        assert!(matches!(whole_only, Tokenizer::HuggingFace { in_pieces: false, .. }), "Metaspace goes whole");
        for text in shapes() {
            for tok in &tokenizers {
                let whole = tok.encode_in_pieces(&text, usize::MAX).unwrap();
                assert_eq!(whole.owned.iter().map(|&b| b as usize).sum::<usize>(), text.len(), "{}", tok.name());
                for piece in [97, 1000, 4096] {
                    let cuts = cut_points(&text, piece);
                    if text.contains(' ') || text.contains('\n') {
                        assert!(cuts.len() > text.len() / piece / 2, "{} cuts at {piece}", cuts.len());
                    }
                    assert_eq!(tok.encode_in_pieces(&text, piece).unwrap(), whole, "{} at {piece}", tok.name());
                }
            }
        }
    }
}
