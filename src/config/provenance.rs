//! What a result was made from. Every input is fingerprinted by content (BLAKE3) and every
//! setting that shapes the numbers is recorded, in config.toml, inputs.json, each cell's
//! run file and each checkpoint, so that resume, shards and `embgraft report` can refuse to
//! mix two experiments and say exactly what differs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, Letter, RESUMABLE, SINCE_FINGERPRINTS};
use crate::error::{Error, Result};

/// Content fingerprints of one group's inputs and settings: hex of BLAKE3's first 128 bits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprints {
    /// The settings that shape the numbers (see [`settings_of`]).
    pub settings: String,
    /// The corpus file's bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub corpus: String,
    /// The donor's embedding values (and, for Model 5, which grafts more of it, the whole
    /// weights file).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub donor: String,
    /// The tokenizer.json file's bytes, or the name of the built-in GPT-2 BPE.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tokenizer: String,
}

/// What a cell's run file or checkpoint was made under: the fingerprints and the settings
/// themselves, so a mismatch can be named.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MadeUnder {
    pub fingerprints: Fingerprints,
    /// `section.key` -> the value as JSON text.
    pub settings: BTreeMap<String, String>,
}

pub use crate::util::{fingerprint, Hasher};

/// Which cell a result file holds: its group (empty in a one-group experiment; else the
/// group's folder name), configuration and seed. Stored in every run file and checkpoint and
/// covered by its checksum, so a file renamed or copied to another cell's name is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellId {
    pub group: String,
    pub config: Letter,
    pub seed: u64,
}

impl CellId {
    /// Refuses a file whose contents say it is another cell than its name does.
    pub fn check(&self, want: &CellId, file: &str) -> Result<()> {
        if self == want {
            return Ok(());
        }
        let show = |c: &CellId| match c.group.is_empty() {
            true => format!("{} seed {}", c.config, c.seed),
            false => format!("{} seed {} of group {}", c.config, c.seed, c.group),
        };
        Err(Error::Input(format!(
            "{file} holds {} but its name is {}'s: it was renamed or copied from another cell; put it back under \
             its own name, or delete it to run that cell again",
            show(self),
            show(want)
        )))
    }
}

/// What a cell's file (run file or checkpoint) says of itself: what made it, which cell it is,
/// and whether a checksum over it was there and matched.
#[derive(Clone, Debug, Default)]
pub struct Stamp {
    pub made: Option<MadeUnder>,
    pub cell: Option<CellId>,
    pub sealed: bool,
}

/// The fingerprints recorded in a config.toml's `[fingerprints]` table, if it has one.
pub fn recorded(config_toml: &str) -> Option<Fingerprints> {
    let mut table: toml::Table = config_toml.parse().ok()?;
    table.remove(crate::config::FINGERPRINTS)?.try_into().ok()
}

/// A config.toml whose settings no longer hash to the fingerprint written with them was edited
/// after its experiment started. Ok for one that records no fingerprint (an older embgraft's).
pub fn check_config_toml(text: &str, cfg: &ExperimentConfig, path: &std::path::Path) -> Result<()> {
    match recorded(text) {
        Some(p) if !p.settings.is_empty() && p.settings != settings_fingerprint(cfg) => Err(Error::Input(format!(
            "{} was edited after its experiment started: its settings no longer match the fingerprint written with \
             them ({}); restore the original (every cell's run file lists the settings it was made with), or start \
             a new --out",
            path.display(),
            short(&p.settings)
        ))),
        _ => Ok(()),
    }
}

/// A cell's record of what made it, in a folder that records fingerprints: it must be whole.
/// Its settings must still hash to the fingerprint beside them (keys deleted or edited by hand
/// do not), and every input the folder fingerprints must be fingerprinted in it too.
pub fn check_complete(folder: &Fingerprints, found: &MadeUnder, file: &str) -> Result<()> {
    let damaged = |why: &str| {
        Error::Input(format!(
            "{file} is damaged: {why}, in a folder that records what made every cell; delete it to run that cell again"
        ))
    };
    let f = &found.fingerprints;
    if f.settings.is_empty()
        || f.settings != fingerprint(serde_json::to_string(&found.settings).unwrap_or_default().as_bytes())
    {
        return Err(damaged("its record of the settings it was made with is incomplete or edited"));
    }
    for (what, want, got) in [
        ("corpus", &folder.corpus, &f.corpus),
        ("donor", &folder.donor, &f.donor),
        ("tokenizer", &folder.tokenizer, &f.tokenizer),
    ] {
        if !want.is_empty() && got.is_empty() {
            return Err(damaged(&format!("it has no fingerprint of its {what}")));
        }
    }
    Ok(())
}

/// config.toml as a run folder holds it: the settings, then the `[fingerprints]` of the
/// inputs and settings it was started with.
pub fn config_toml(cfg: &ExperimentConfig, prints: &Fingerprints) -> String {
    let table = std::collections::BTreeMap::from([(crate::config::FINGERPRINTS, prints)]);
    let mut text = cfg.to_toml();
    text.push_str(&format!(
        "\n# What this experiment was made from (BLAKE3): resume, shards and `embgraft report` check its cells \
         against it.\n{}",
        toml::to_string_pretty(&table).unwrap_or_default()
    ));
    text
}

/// How a fingerprint is shown in a message: enough to tell two apart at a glance.
pub fn short(fp: &str) -> String {
    format!("{}…", fp.get(..8).unwrap_or(fp))
}

/// The settings that shape the numbers, flattened to `section.key` -> value. Left out: where
/// it runs and how often it saves or how much it may read ([`RESUMABLE`]), and the paths of
/// the corpus, donor and tokenizer file, whose contents the fingerprints stand for (a folder
/// moved to another machine is the same experiment).
pub fn settings_of(cfg: &ExperimentConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(v) = serde_json::to_value(cfg) else { return out };
    let defaults = serde_json::to_value(ExperimentConfig::default()).unwrap_or_default();
    for (section, values) in v.as_object().into_iter().flatten() {
        for (key, value) in values.as_object().into_iter().flatten() {
            if RESUMABLE.contains(&key.as_str()) || (section == "data" && ["corpora", "donor"].contains(&key.as_str()))
            {
                continue;
            }
            if SINCE_FINGERPRINTS.contains(&key.as_str()) && defaults[section][key] == *value {
                continue;
            }
            let text = match (key.as_str(), value.as_str()) {
                ("tokenizer", Some(t)) if t != "auto" && t != "gpt2" => "\"file\"".to_string(),
                _ => value.to_string(),
            };
            out.insert(format!("{section}.{key}"), text);
        }
    }
    out
}

/// The fingerprint of `cfg`'s [`settings_of`].
pub fn settings_fingerprint(cfg: &ExperimentConfig) -> String {
    fingerprint(serde_json::to_string(&settings_of(cfg)).unwrap_or_default().as_bytes())
}

/// The name a setting goes by in messages (`optimizer.lr` -> `lr`).
fn setting_name(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(_, k)| k)
}

/// Whether a cell made under `found` belongs to the experiment `expected` describes; the error
/// names the first setting or input that differs. `file` is the cell's file name; `source`
/// says where the expected settings come from (`config.toml`). A setting the cell does not
/// record (it was made by an embgraft that did not have it) is no difference where the
/// experiment keeps that setting's default, which is what the older version did.
pub fn check_cell(expected: &MadeUnder, found: &MadeUnder, file: &str, source: &str) -> Result<()> {
    let defaults = settings_of(&ExperimentConfig::default());
    for (key, want) in &expected.settings {
        if !found.settings.contains_key(key) && defaults.get(key).is_some_and(|d| d != want) {
            return Err(Error::Input(format!(
                "{source}'s {} is {} but {file} has no record of it (made by an embgraft without that setting, at \
                 its default {}); restore {source}, or delete {file} to run that cell again",
                setting_name(key),
                plain(want),
                defaults.get(key).map_or("", |d| plain(d))
            )));
        }
        if let Some(got) = found.settings.get(key).filter(|got| *got != want) {
            return Err(Error::Input(format!(
                "{source}'s {} is {} but {file} was trained with {}; restore {source}, or delete {file} to run that \
                 cell again",
                setting_name(key),
                plain(want),
                plain(got)
            )));
        }
    }
    let (e, f) = (&expected.fingerprints, &found.fingerprints);
    for (what, want, got) in
        [("corpus", &e.corpus, &f.corpus), ("donor", &e.donor, &f.donor), ("tokenizer", &e.tokenizer, &f.tokenizer)]
    {
        if want != got && !want.is_empty() && !got.is_empty() {
            return Err(Error::Input(format!(
                "{file} was made from another {what} (fingerprint {}, this experiment's {}); delete {file} to run \
                 that cell again, or use the {what} it was made from",
                short(got),
                short(want)
            )));
        }
    }
    Ok(())
}

/// Whether the inputs read now are the ones an experiment started with (`then`, from its
/// inputs.json); the error names the input that changed and its path. For a `shard`, `then`
/// is what the shards before it read.
pub fn check_inputs(then: &Fingerprints, now: &Fingerprints, paths: [&str; 3], shard: bool) -> Result<()> {
    let [corpus, donor, tokenizer] = paths;
    for (what, path, a, b) in [
        ("corpus", corpus, &then.corpus, &now.corpus),
        ("donor", donor, &then.donor, &now.donor),
        ("tokenizer", tokenizer, &then.tokenizer, &now.tokenizer),
    ] {
        if a != b && !a.is_empty() && shard {
            return Err(Error::Input(format!(
                "this shard's {what} {path} is not the one the shards before it read (fingerprint {} there, {} \
                 here); give every shard the same {what}, or another --out",
                short(a),
                short(b)
            )));
        }
        if a != b && !a.is_empty() {
            return Err(Error::Input(format!(
                "the {what} {path} changed since this experiment started (fingerprint {} then, {} now); put the \
                 original back, or start a new --out",
                short(a),
                short(b)
            )));
        }
    }
    Ok(())
}

/// A setting's JSON text as a person writes it (`"windows"` -> `windows`).
fn plain(v: &str) -> &str {
    v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings a default experiment's fingerprint covers, and that fingerprint, pinned:
    /// every run folder ever made records it, so a new setting or a changed default that moved
    /// it would make every existing folder refuse to resume or report. A new setting joins
    /// `SINCE_FINGERPRINTS` (hashed only where it differs from its default), and this list does
    /// not change.
    #[test]
    fn a_default_experiments_settings_fingerprint_never_moves() {
        let covered: Vec<String> = settings_of(&ExperimentConfig::default()).into_keys().collect();
        let pinned = [
            "data.tensor",
            "data.tokenizer",
            "graft.configs",
            "graft.freeze",
            "graft.freeze_base",
            "graft.graft",
            "graft.graft_base",
            "graft.graft_scale",
            "graft.lr_groups",
            "graft.thaw_after",
            "graft.thaw_every",
            "model.context",
            "model.dim",
            "model.heads",
            "model.kind",
            "model.layers",
            "model.untied",
            "optimizer.beta1",
            "optimizer.beta2",
            "optimizer.eps",
            "optimizer.lr",
            "optimizer.weight_decay",
            "protocol.batch_size",
            "protocol.epochs",
            "protocol.eval_every",
            "protocol.eval_windows",
            "protocol.max_steps",
            "protocol.seq_len",
            "protocol.split",
            "protocol.stride",
            "protocol.test_fraction",
            "protocol.train_tokens",
            "run.sample_tokens",
            "run.seed",
            "run.seeds",
        ];
        let new: Vec<&String> = covered.iter().filter(|k| !pinned.contains(&k.as_str())).collect();
        assert!(
            new.is_empty(),
            "{new:?} would change every existing run folder's fingerprint: add them to SINCE_FINGERPRINTS"
        );
        assert_eq!(covered, pinned, "a setting left the fingerprint: every existing folder's would change");
        assert_eq!(settings_fingerprint(&ExperimentConfig::default()), "9786f43afd9c1ea0c4bef5d97e69b2e1");
    }

    fn made(cfg: &ExperimentConfig, corpus: &str) -> MadeUnder {
        let fingerprints =
            Fingerprints { settings: settings_fingerprint(cfg), corpus: corpus.into(), ..Default::default() };
        MadeUnder { fingerprints, settings: settings_of(cfg) }
    }

    #[test]
    fn a_changed_setting_or_input_is_named_and_where_it_runs_is_not() {
        let a = ExperimentConfig::default();
        let mut b = a.clone();
        b.optimizer.lr = 0.01;
        let err = check_cell(&made(&a, "x"), &made(&b, "x"), "run-B-0.json", "config.toml").unwrap_err().to_string();
        assert!(err.contains("config.toml's lr is 0.001 but run-B-0.json was trained with 0.01"), "{err}");
        let err = check_cell(&made(&a, "x"), &made(&a, "y"), "run-B-0.json", "config.toml").unwrap_err().to_string();
        assert!(err.contains("another corpus"), "{err}");
        let mut c = a.clone();
        (c.run.device, c.data.corpora) = ("cuda:1".into(), vec!["/elsewhere/book.txt".into()]);
        c.run.checkpoint_every = "30s".parse().unwrap();
        assert_eq!(settings_fingerprint(&a), settings_fingerprint(&c));
        check_cell(&made(&a, "x"), &made(&c, "x"), "run-B-0.json", "config.toml").unwrap();
        // A setting that only a newer version writes is not a difference.
        let mut newer = made(&a, "x");
        newer.settings.insert("model.future".into(), "1".into());
        check_cell(&made(&a, "x"), &newer, "f", "config.toml").unwrap();
        assert_ne!(fingerprint(b"a"), fingerprint(b"b"));
        assert_eq!(fingerprint(b"a").len(), 32);
    }
}
