//! The settings checked on their own and in combination: each refusal names the flag, the value
//! given and what to do instead.

use crate::config::{Axis, ExperimentConfig, Letter, Sweep};
use crate::error::{Error, Result};

/// Largest values that still describe a run a machine can hold; past them the arithmetic that
/// sizes a run (steps, windows, allocations) could overflow.
const MAX_SEQ_LEN: usize = 1 << 20;
const MAX_SAMPLE_TOKENS: usize = 100_000;
/// Seeds per configuration: every seed is a run of its own.
const MAX_SEEDS: usize = 100_000;

fn bad(msg: String) -> Result<()> {
    Err(Error::Input(msg))
}

impl ExperimentConfig {
    /// Checks every value on its own and in combination, naming the flag and the value given.
    pub fn validate(&self) -> Result<()> {
        self.check_protocol()?;
        self.check_optimizer()?;
        self.check_grid()?;
        self.check_model()
    }

    /// Window, batch, epoch, seed and sample counts.
    fn check_protocol(&self) -> Result<()> {
        let (p, r) = (&self.protocol, &self.run);
        for (flag, v) in [
            ("--seq-len", p.seq_len),
            ("--stride", p.stride),
            ("--batch-size", p.batch_size),
            ("--epochs", p.epochs),
            ("--seeds", r.seeds),
        ] {
            if v == 0 {
                return bad(format!("{flag} must be at least 1"));
            }
        }
        for (flag, v) in
            [("--max-steps", p.max_steps), ("--eval-every", p.eval_every), ("--eval-windows", p.eval_windows)]
        {
            if v == Some(0) {
                return bad(format!("{flag} must be at least 1"));
            }
        }
        if p.seq_len > MAX_SEQ_LEN {
            return bad(format!("--seq-len {} is longer than {MAX_SEQ_LEN} tokens; use a shorter window", p.seq_len));
        }
        if r.seeds > MAX_SEEDS {
            return bad(format!("--seeds {} is over {MAX_SEEDS} runs per configuration; use fewer seeds", r.seeds));
        }
        if r.sample_tokens > MAX_SAMPLE_TOKENS {
            return bad(format!("--sample-tokens {} is over {MAX_SAMPLE_TOKENS}; sample fewer", r.sample_tokens));
        }
        if r.seed.checked_add(r.seeds as u64 - 1).is_none() {
            return bad(format!(
                "--seed {} with --seeds {} runs past the largest seed {}; use a smaller --seed",
                r.seed,
                r.seeds,
                u64::MAX
            ));
        }
        if !(p.test_fraction > 0.0 && p.test_fraction < 1.0) {
            return bad(format!("--test-fraction must be between 0 and 1, not {}", p.test_fraction));
        }
        Ok(())
    }

    /// AdamW's constants.
    fn check_optimizer(&self) -> Result<()> {
        let o = &self.optimizer;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return bad(format!("--lr must be positive and finite, not {}", o.lr));
        }
        if !(o.weight_decay >= 0.0 && o.weight_decay.is_finite()) {
            return bad(format!("--weight-decay must be non-negative and finite, not {}", o.weight_decay));
        }
        for (flag, b) in [("--beta1", o.beta1), ("--beta2", o.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{flag} must be in [0, 1), not {b}"));
            }
        }
        if !(o.eps > 0.0 && o.eps.is_finite()) {
            return bad(format!("--eps must be positive and finite, not {}", o.eps));
        }
        Ok(())
    }

    /// The configurations, the thaw schedule and the sweeps.
    fn check_grid(&self) -> Result<()> {
        let g = &self.graft;
        if g.configs.0.is_empty() {
            return bad("--configs is empty; give letters from A,B,C,D".into());
        }
        let maps = &self.data.vocab_map.0;
        if maps.is_empty() {
            return bad("--vocab-map is empty; give pieces, exact or exact,pieces".into());
        }
        if g.thaw_every.is_some() && g.thaw_after.is_none() {
            return bad("--thaw-every needs --thaw-after (when the first group thaws)".into());
        }
        for (axis, values) in Axis::ALL.iter().filter_map(|&a| self.axis_values(a).map(|v| (a, v))) {
            if values.values().contains(&0) {
                return bad(format!("{} must be at least 1, not {values}", axis.flag()));
            }
        }
        Ok(())
    }

    /// What the chosen model allows, from its row of [`crate::config::table::MODELS`]: sizes
    /// only for a model with blocks, other parts than `wte` only for one grafted by name, the
    /// controls E-H only for a model that takes them.
    fn check_model(&self) -> Result<()> {
        let (p, m, g) = (&self.protocol, &self.model, &self.graft);
        let row = m.kind.row();
        if !row.sized {
            for axis in [Axis::Layers, Axis::Dim] {
                if let Some(v) = self.axis_values(axis).filter(|v| v.is_sweep()) {
                    return bad(format!(
                        "{} {v} sweeps Model 5's size, but {} has no blocks and the donor's width; \
                         add --model model5, or sweep --train-tokens",
                        axis.flag(),
                        row.name
                    ));
                }
            }
        }
        if !row.grafts_by_name {
            for (flag, v) in [("--graft", &g.graft), ("--graft-base", &g.graft_base)] {
                if !matches!(v.trim(), "wte" | "none" | "") {
                    return bad(format!(
                        "{flag} {v}: {} can graft only wte; use --model model5 to graft other parts",
                        row.name
                    ));
                }
            }
        }
        if !row.controls {
            if let Some(l) = g.configs.0.iter().find(|l| !Letter::LECTURE.contains(l)) {
                return bad(format!(
                    "config {l} is a Model 1 control; with --model {} use A-D \
                     (set what they graft with --graft/--freeze/--grid)",
                    row.flag
                ));
            }
        }
        if row.sized {
            for (flag, v) in [("--heads", m.heads), ("--context", m.context)] {
                if v == Some(0) {
                    return bad(format!("{flag} must be at least 1"));
                }
            }
            for d in m.dim.as_ref().map_or(&[][..], Sweep::values) {
                if let Some(h) = m.heads.filter(|h| d % h != 0) {
                    return bad(format!(
                        "--dim {d} is not divisible by --heads {h}; pick a head count that divides the width"
                    ));
                }
            }
            if let Some(c) = m.context.filter(|&c| c < p.seq_len) {
                return bad(format!(
                    "--context {c} is shorter than --seq-len {}; the model must see a whole window",
                    p.seq_len
                ));
            }
        }
        Ok(())
    }
}
