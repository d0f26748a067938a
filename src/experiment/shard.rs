//! Shards: one experiment's cells cut into N slices that run as separate tasks (a Slurm array)
//! into one folder, balanced by steps, each writing the folder's config.toml and inputs.json
//! once or checking that the ones there are its own.

use std::path::Path;

use crate::config::provenance;
use crate::config::{ExperimentConfig, Letter};
use crate::error::{Error, Result};
use crate::experiment::{grid, groups, Group, Inputs};
use crate::train;
use crate::train::results::InputSummary;

/// The K-th of N slices of an experiment's cells (K from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl Shard {
    /// `K/N`, or `slurm`: K and N from the Slurm job array this runs in (`SLURM_ARRAY_TASK_ID`
    /// and `SLURM_ARRAY_TASK_COUNT`, or MIN/MAX/STEP), read through `env`.
    pub fn parse(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        if s.trim() == "slurm" {
            return Self::from_slurm(env);
        }
        let bad = || Error::Input(format!("--shard {s} is not K/N with 1 <= K <= N (e.g. 2/4), or slurm"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }

    fn from_slurm(env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        let num = |name: &str| -> Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| Error::Input(format!("--shard slurm: {name}={v} is not a number")))
                })
                .transpose()
        };
        let id = num("SLURM_ARRAY_TASK_ID")?.ok_or_else(|| {
            Error::Input(
                "--shard slurm needs SLURM_ARRAY_TASK_ID: run it in an sbatch --array job, or give --shard K/N".into(),
            )
        })?;
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let n =
            match (num("SLURM_ARRAY_TASK_COUNT")?, num("SLURM_ARRAY_TASK_MAX")?) {
                (Some(c), _) => c,
                (None, Some(max)) if max >= min => (max - min) / step + 1,
                _ => return Err(Error::Input(
                    "--shard slurm: neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is set; give --shard K/N"
                        .into(),
                )),
            };
        if id < min || (id - min) % step != 0 || (id - min) / step >= n {
            return Err(Error::Input(format!(
                "--shard slurm: task {id} is not in the array ({n} tasks from {min} by {step}); give --shard K/N"
            )));
        }
        Ok(Shard { k: (id - min) / step + 1, n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// Which shard (from 0) runs each cell, given each cell's planned steps: the longest cells
/// first (ties in grid order), each to the shard with the fewest steps so far (ties: the
/// lowest). Deterministic, so every shard computes the same assignment on its own.
pub fn assign_shards(steps: &[usize], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by(|&a, &b| steps[b].cmp(&steps[a]).then(a.cmp(&b)));
    let mut load = vec![0usize; n.max(1)];
    let mut shard = vec![0; steps.len()];
    for i in order {
        let least = (0..load.len()).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        shard[i] = least;
        load[least] = load[least].saturating_add(steps[i]);
    }
    shard
}

/// Each group's cells that shard `sh` runs.
pub(super) fn shard_cells(groups: &[Group], inputs: &[Inputs], sh: Shard) -> Vec<Vec<(u64, Letter)>> {
    let cells: Vec<(usize, (u64, Letter))> =
        groups.iter().enumerate().flat_map(|(i, p)| grid(&p.cfg).into_iter().map(move |c| (i, c))).collect();
    let steps: Vec<usize> =
        cells.iter().map(|(i, _)| train::planned_steps(&groups[*i].cfg, inputs[*i].data.train.len())).collect();
    let owner = assign_shards(&steps, sh.n);
    let mut mine = vec![Vec::new(); groups.len()];
    for ((i, cell), o) in cells.into_iter().zip(owner) {
        if o + 1 == sh.k {
            mine[i].push(cell);
        }
    }
    mine
}

/// config.toml in a folder shards share: written by the first shard (create-new, atomic), and
/// every other shard's settings checked equal to it (where it runs, how often it saves and the
/// input paths may differ: the inputs are checked by content), so a shard with other settings
/// stops before it trains.
pub(super) fn write_once_or_check_config(out: &Path, cfg: &ExperimentConfig, info: &InputSummary) -> Result<()> {
    let prints = info.fingerprints.clone().unwrap_or_default();
    check_shared_config(out, cfg, &provenance::config_toml(cfg, &prints))
}

pub(super) fn check_shared_config(out: &Path, cfg: &ExperimentConfig, text: &str) -> Result<()> {
    let path = out.join("config.toml");
    if crate::util::write_new(&path, text.as_bytes())? {
        return Ok(());
    }
    let text =
        crate::util::read_small(&path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let theirs = ExperimentConfig::from_toml(&text)
        .map_err(|e| Error::Input(format!("{} is not an embgraft config ({e}); use another --out", path.display())))?;
    provenance::check_config_toml(&text, &theirs, &path)?;
    let names = |c: &ExperimentConfig| groups(c).into_iter().map(|g| g.name).collect::<Vec<_>>();
    let (a, b) = (provenance::settings_of(&theirs), provenance::settings_of(cfg));
    if a == b && names(&theirs) == names(cfg) {
        return Ok(());
    }
    let diff = a.iter().find(|(k, v)| b.get(*k) != Some(v)).map_or_else(
        || "its donors or corpora".to_string(),
        |(k, v)| {
            let name = k.rsplit_once('.').map_or(k.as_str(), |(_, n)| n);
            format!("`{name} = {v}` there, `{name} = {}` here", b.get(k).map_or("absent", String::as_str))
        },
    );
    Err(Error::Input(format!(
        "{} holds another experiment's settings ({diff}); give every shard the same settings, or another --out",
        path.display()
    )))
}

/// inputs.json beside it: what every shard read (tokens, windows, vocabulary) must agree.
pub(super) fn write_once_or_check_inputs(out: &Path, info: &InputSummary) -> Result<()> {
    let path = out.join("inputs.json");
    let text = inputs_json(info)?;
    if crate::util::write_new(&path, text.as_bytes())? {
        return Ok(());
    }
    let old =
        crate::util::read_small(&path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let (a, b): (serde_json::Value, serde_json::Value) = match (serde_json::from_str(&old), serde_json::from_str(&text))
    {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(Error::Input(format!("{} is unreadable; delete it and rerun", path.display()))),
    };
    // Where the files were read from may differ between machines; what was read may not.
    let key = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("corpus");
            o.remove("donor_weights");
        }
        v
    };
    match key(&a) == key(&b) {
        true => Ok(()),
        false => Err(Error::Input(format!(
            "{}: this shard read other inputs than the shards before it ({} tokens, vocabulary {} here); every shard \
             must read the same donor and corpus",
            path.display(),
            info.corpus_tokens,
            info.vocab
        ))),
    }
}

pub(super) fn inputs_json(info: &InputSummary) -> Result<String> {
    serde_json::to_string_pretty(info).map_err(|e| Error::Output(e.to_string()))
}
