//! Parameters by name, in the manner of candle's `VarMap`: one ordered map from a checkpoint
//! name (`wte`, `h.0.attn.c_attn.weight`) to its variable. Grafting, freezing, thaw groups,
//! learning-rate groups, the optimizer and checkpoints all address parameters through it.

use std::collections::{BTreeSet, HashMap};

use candle_core::Var;

use crate::error::Result;

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

    /// The names a pattern list selects (see [`crate::graft::select`]); `flag` names the
    /// setting in the error when a pattern names nothing.
    pub fn select(&self, patterns: &str, flag: &str) -> Result<Names> {
        let names = self.names();
        let mask = crate::graft::select(patterns, &names, flag)?;
        Ok(names.into_iter().zip(mask).filter(|(_, on)| *on).map(|(n, _)| n).collect())
    }

    /// Every parameter's values, by name, in declaration order.
    pub fn values(&self) -> Result<Vec<(String, Vec<f32>)>> {
        self.order.iter().map(|(n, v)| Ok((n.clone(), v.flatten_all()?.to_vec1()?))).collect()
    }
}
