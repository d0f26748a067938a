//! The grid of an experiment: its groups (a donor/corpus pair at one value of each swept
//! setting, each with a folder of its own) and each group's cells (seed x configuration).
//! Plain functions of the settings, so the experiment, the report and the sweep analysis
//! agree on them without importing each other.

use std::path::Path;

use crate::config::{Axis, ExperimentConfig, Letter, Sweep};

/// The (seed, config) cells of a one-group experiment, in the order they run: seed by seed.
pub fn grid(cfg: &ExperimentConfig) -> Vec<(u64, Letter)> {
    cfg.seeds().into_iter().flat_map(|s| cfg.graft.configs.0.iter().map(move |&l| (s, l))).collect()
}

/// One group of an experiment's cells: a (donor, corpus) pair at one value of each swept
/// setting. Each group is one-donor, one-corpus, one-value config and a folder of its own.
pub struct Group {
    /// The folder it writes, relative to `--out`: empty for an experiment of one group (it
    /// writes into `--out` itself), else its pair's and swept values' names joined by `__`
    /// (`minilm__shakespeare__tokens-20k`).
    pub name: String,
    /// The pair's part of the name (empty for one pair): the groups of a sweep that share it
    /// and the other swept values form one series.
    pub pair: String,
    /// The swept settings' values at this group, in [`ExperimentConfig::sweeps`] order.
    pub point: Vec<(Axis, usize)>,
    pub cfg: ExperimentConfig,
}

/// Every group, donor by donor, then corpus, then vocabulary mapping, then swept values (data
/// size, layers, width). Pair folders are named after the corpus (one donor), the donor (one
/// corpus) or both (`donor__corpus`), made unique with `-2`, `-3`, …; several `--vocab-map`
/// values add `map-exact`, swept values `tokens-20k`, `layers-2`, `dim-256`.
pub fn groups(cfg: &ExperimentConfig) -> Vec<Group> {
    let donors: Vec<String> = if cfg.data.donor.is_empty() { vec!["gpt2".into()] } else { cfg.data.donor.clone() };
    let corpora: Vec<Option<String>> =
        if cfg.data.corpora.is_empty() { vec![None] } else { cfg.data.corpora.iter().cloned().map(Some).collect() };
    let maps = &cfg.data.vocab_map.0;
    let mut pairs: Vec<(String, ExperimentConfig)> = Vec::new();
    for d in &donors {
        for c in &corpora {
            let corpus = c.as_deref().map_or("timemachine".to_string(), corpus_name);
            let base = match (donors.len() > 1, corpora.len() > 1) {
                (true, true) => format!("{}__{corpus}", donor_name(d)),
                (true, false) => donor_name(d),
                (false, true) => corpus,
                (false, false) => String::new(),
            };
            let mut name = base.clone();
            let mut k = 2;
            while pairs.iter().any(|(n, _)| n.split("__map-").next() == Some(name.as_str())) {
                name = format!("{base}-{k}");
                k += 1;
            }
            // Several --vocab-map values: one group each, side by side like donors.
            for &m in maps {
                let mut one = cfg.clone();
                one.data.donor = vec![d.clone()];
                one.data.corpora = c.iter().cloned().collect();
                one.data.vocab_map = crate::config::VocabMaps(vec![m]);
                let named = match (maps.len() > 1, name.is_empty()) {
                    (false, _) => name.clone(),
                    (true, true) => format!("map-{}", m.name()),
                    (true, false) => format!("{name}__map-{}", m.name()),
                };
                pairs.push((named, one));
            }
        }
    }
    let mut out = Vec::new();
    for (pair, one) in pairs {
        // Every combination of the swept values, the last setting varying fastest.
        let mut points: Vec<Vec<(Axis, usize)>> = vec![Vec::new()];
        for (axis, values) in cfg.sweeps() {
            points = points
                .into_iter()
                .flat_map(|p| values.iter().map(move |&v| [p.clone(), vec![(axis, v)]].concat()))
                .collect();
        }
        for point in points {
            let cfg = point.iter().fold(one.clone(), |c, &(a, v)| c.at(a, v));
            let parts = std::iter::once(pair.clone())
                .filter(|p| !p.is_empty())
                .chain(point.iter().map(|&(a, v)| format!("{}-{}", a.short(), Sweep::show(v))));
            out.push(Group { name: parts.collect::<Vec<_>>().join("__"), pair: pair.clone(), point, cfg });
        }
    }
    out
}

/// A folder name for a donor: `gpt2`, a Hub id's `org_name`, a model folder's name, or a
/// .safetensors file's stem (its folder's name when the file is `model.safetensors`).
fn donor_name(spec: &str) -> String {
    let p = Path::new(spec);
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let is_file = spec.ends_with(".safetensors");
    let name = if !is_file && !p.exists() && spec.matches('/').count() == 1 {
        spec.replace('/', "_") // a Hub id
    } else if is_file && stem == "model" {
        p.parent().and_then(|d| d.file_name()).map_or(stem, |d| d.to_string_lossy().into_owned())
    } else {
        stem
    };
    corpus_name(&name)
}

/// A folder name for a corpus: its file name without extension, in safe characters.
pub fn corpus_name(path: &str) -> String {
    let stem = Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() {
        "corpus".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_name_their_folders() {
        let mut c = ExperimentConfig::default();
        assert_eq!(groups(&c).len(), 1);
        assert!(groups(&c)[0].name.is_empty());
        c.data.corpora = vec!["a/book.txt".into(), "b/book.txt".into()];
        assert_eq!(groups(&c).iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["book", "book-2"]);
        c.data.donor = vec!["gpt2".into(), "EleutherAI/pythia-70m".into(), "/m/minilm/model.safetensors".into()];
        let names: Vec<String> = groups(&c).into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "gpt2__book",
                "gpt2__book-2",
                "EleutherAI_pythia-70m__book",
                "EleutherAI_pythia-70m__book-2",
                "minilm__book",
                "minilm__book-2"
            ]
        );
        assert!(groups(&c).iter().all(|p| p.cfg.data.donor.len() == 1 && p.cfg.data.corpora.len() == 1));
        c.data.donor.truncate(1);
        c.data.vocab_map = "exact,pieces".parse().unwrap();
        let names: Vec<String> = groups(&c).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["book__map-exact", "book__map-pieces", "book-2__map-exact", "book-2__map-pieces"]);
        c.data.corpora.truncate(1);
        let names: Vec<String> = groups(&c).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["map-exact", "map-pieces"]);
        assert!(groups(&c).iter().all(|p| p.cfg.data.vocab_map.0.len() == 1));
    }
}
