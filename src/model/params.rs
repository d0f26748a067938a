//! Parameters by name, in the manner of candle's `VarMap`: one ordered map from a checkpoint
//! name (`wte`, `h.0.attn.c_attn.weight`) to its variable. Grafting, freezing, thaw groups,
//! learning-rate groups, the optimizer and checkpoints all address parameters through it.

use std::collections::{BTreeSet, HashMap};

use candle_core::Var;

use crate::error::{Error, Result};

/// Names of parameters: which are grafted, frozen, or live (differentiated and trained).
pub type Names = BTreeSet<String>;

#[derive(Clone, Default)]
pub struct Params {
    /// In declaration order: the order of checkpoints, optimizer slots and reports.
    order: Vec<(String, Var)>,
    index: HashMap<String, usize>,
}

impl Params {
    pub fn insert(&mut self, name: impl Into<String>, var: Var) {
        let name = name.into();
        self.index.insert(name.clone(), self.order.len());
        self.order.push((name, var));
    }

    /// The parameter called `name` (`wte` also finds `wte.weight`).
    pub fn get(&self, name: &str) -> Option<&Var> {
        let i = self.index.get(name).or_else(|| self.index.get(&format!("{name}.weight")))?;
        Some(&self.order[*i].1)
    }

    /// The parameter called `name`; a missing one is a bug in the model that declared it.
    pub fn var(&self, name: &str) -> &Var {
        self.get(name).unwrap_or_else(|| panic!("the model declares no parameter {name}"))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.order.iter().map(|(n, v)| (n, v))
    }

    pub fn names(&self) -> Vec<String> {
        self.order.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn elem_count(&self) -> usize {
        self.order.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The names a pattern list selects (see [`select`]); `flag` names the
    /// setting in the error when a pattern names nothing.
    pub fn select(&self, patterns: &str, flag: &str) -> Result<Names> {
        let names = self.names();
        let mask = select(patterns, &names, flag)?;
        Ok(names.into_iter().zip(mask).filter(|(_, on)| *on).map(|(n, _)| n).collect())
    }

    /// Every parameter's values, by name, in declaration order.
    pub fn values(&self) -> Result<Vec<(String, Vec<f32>)>> {
        self.order.iter().map(|(n, v)| Ok((n.clone(), v.flatten_all()?.to_vec1()?))).collect()
    }
}

/// Which parameters a list of patterns names, as a mask over `names`. Patterns are separated
/// by commas; each is dot-separated parts matched against a parameter name's leading parts:
/// a literal, `*` (any one part) or a range `0-5`. So `wte` names `wte.weight`, `h.0-5` every
/// parameter of blocks 0 to 5, `h.*.attn.*` every attention weight and bias. `none` (or an
/// empty list) names nothing, `all` everything. A pattern that names nothing is an error.
pub fn select(patterns: &str, names: &[String], flag: &str) -> Result<Vec<bool>> {
    let mut mask = vec![false; names.len()];
    let list = patterns.trim();
    if list.is_empty() || list == "none" {
        return Ok(mask);
    }
    for pat in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if pat == "all" {
            mask.iter_mut().for_each(|m| *m = true);
            continue;
        }
        let parts: Vec<&str> = pat.split('.').collect();
        let mut hit = false;
        for (i, name) in names.iter().enumerate() {
            let have: Vec<&str> = name.split('.').collect();
            if parts.len() <= have.len() && parts.iter().zip(&have).all(|(p, h)| part_matches(p, h)) {
                mask[i] = true;
                hit = true;
            }
        }
        if !hit {
            return Err(Error::Input(format!(
                "{flag} {pat} names no parameter; the model has {}",
                summarise_names(names)
            )));
        }
    }
    Ok(mask)
}

fn part_matches(pat: &str, have: &str) -> bool {
    if pat == "*" || pat == have {
        return true;
    }
    match (pat.split_once('-'), have.parse::<usize>()) {
        (Some((lo, hi)), Ok(n)) => match (lo.parse::<usize>(), hi.parse::<usize>()) {
            (Ok(lo), Ok(hi)) => lo <= n && n <= hi,
            _ => false,
        },
        _ => false,
    }
}

/// `wte, wpe, h.0-1.{…}, ln_f`: the model's parameter names, blocks folded.
pub fn summarise_names(names: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    let blocks: Vec<usize> =
        names.iter().filter_map(|n| n.strip_prefix("h.")?.split('.').next()?.parse::<usize>().ok()).collect();
    let (first, last) = (blocks.iter().min(), blocks.iter().max());
    for n in names {
        let module = n.trim_end_matches(".weight").trim_end_matches(".bias");
        let short = match (n.strip_prefix("h."), first, last) {
            (Some(_), Some(a), Some(b)) if a == b => format!("h.{a}.*"),
            (Some(_), Some(a), Some(b)) => format!("h.{a}-{b}.*"),
            _ => module.to_string(),
        };
        if !out.contains(&short) {
            out.push(short);
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_select_by_leading_parts_ranges_and_stars() {
        let names: Vec<String> = [
            "wte.weight",
            "wpe.weight",
            "h.0.attn.c_attn.weight",
            "h.0.mlp.c_fc.bias",
            "h.1.attn.c_proj.weight",
            "h.12.ln_1.weight",
            "ln_f.weight",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let on = |p: &str| -> Vec<usize> {
            select(p, &names, "--graft").unwrap().iter().enumerate().filter(|(_, &m)| m).map(|(i, _)| i).collect()
        };
        assert_eq!(on("wte"), vec![0]);
        assert_eq!(on("wte,wpe"), vec![0, 1]);
        assert_eq!(on("h.0-1"), vec![2, 3, 4]);
        assert_eq!(on("h.*.attn.*"), vec![2, 4]);
        assert_eq!(on("h.*.attn"), vec![2, 4]);
        assert_eq!(on("h.2-20"), vec![5]);
        assert_eq!(on("none"), Vec::<usize>::new());
        assert_eq!(on("all").len(), 7);
        // `h.1` is not a prefix match for block 12.
        assert_eq!(on("h.1"), vec![4]);
        assert_eq!(summarise_names(&names[4..]), "h.1-12.*, ln_f");
        assert_eq!(summarise_names(&names[2..4]), "h.0.*");
        let msg = select("h.7.mlp", &names, "--freeze").unwrap_err().to_string();
        assert!(msg.contains("--freeze h.7.mlp names no parameter") && msg.contains("h.0-12.*"), "{msg}");
    }
}
