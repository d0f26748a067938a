//! Checkpoints: a run's [`Checkpoint`] as one safetensors file. Tensors hold the parameters
//! (`param.wte`, `param.h.0.ln_1.weight`, …) and AdamW moments (`m.0`, `v.0`, …); the header's
//! metadata holds the counters, the RNG position, the optimizer's parameter order, thaws and
//! the curve so far as JSON (floats round-trip exactly), what it was made under (settings and
//! input fingerprints), and a BLAKE3 checksum of all of that, verified before it is trusted.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::config::provenance::{CellId, MadeUnder, Stamp};
use crate::error::{Error, Result};
use crate::model::graft::FrozenCheck;
use crate::train::results::{Point, Thaw};
use crate::util::f32_bytes;

#[derive(Serialize, Deserialize)]
struct Meta {
    epoch: usize,
    /// Absent in checkpoints from before mid-epoch saves: they were all at an epoch's end.
    #[serde(default)]
    batch: usize,
    step: usize,
    adam_step: u64,
    /// u128 as a decimal string: JSON numbers cannot carry it.
    shuffle_word_pos: String,
    points: Vec<Point>,
    #[serde(default)]
    loss_since_point: (f64, usize),
    last_finite_loss: Option<f64>,
    params: Vec<String>,
    slots: Vec<String>,
    slot_steps: Vec<u64>,
    thaws: Vec<Thaw>,
    frozen_checks: Vec<FrozenCheck>,
    /// Which cell this is; absent in checkpoints of embgraft versions before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cell: Option<CellId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    matmul: Option<String>,
}

/// A run's state after some step: parameters, AdamW state, the batch-order RNG's position,
/// the curve and the thaws so far. Restoring it continues the run exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Whole epochs done.
    pub epoch: usize,
    /// Batches of the next epoch done (0 at an epoch's end).
    pub batch: usize,
    pub step: usize,
    pub adam_step: u64,
    /// The batch-order stream's position where the next (or unfinished) epoch draws its order.
    pub shuffle_word_pos: u128,
    pub points: Vec<Point>,
    /// Sum and count of the batch losses since the last curve point.
    pub loss_since_point: (f64, usize),
    pub last_finite_loss: Option<f64>,
    /// Every parameter by name.
    pub params: Vec<(String, Vec<f32>)>,
    /// The optimizer's parameters in its order, with their own step counts and (m, v).
    pub slots: Vec<String>,
    pub slot_steps: Vec<u64>,
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
    pub thaws: Vec<Thaw>,
    pub frozen_checks: Vec<FrozenCheck>,
    /// What computed the matrix products up to here ([`crate::train::matmul_of`]): a resume
    /// under another backend would finish with numbers equal to neither uninterrupted run's, so
    /// it is refused. None in checkpoints of versions before it was recorded.
    pub matmul: Option<String>,
}

const META_KEY: &str = "embgraft.checkpoint";
const MADE_UNDER_KEY: &str = "embgraft.made_under";
const CHECKSUM_KEY: &str = "embgraft.blake3";

/// A checkpoint's tensors in the one order they are stored, read and checksummed in: every
/// parameter (`param.<name>`), then each optimizer slot's moments (`m.<i>`, `v.<i>`).
fn tensor_names(params: &[String], slots: usize) -> Vec<String> {
    params
        .iter()
        .map(|n| format!("param.{n}"))
        .chain((0..slots).flat_map(|i| [format!("m.{i}"), format!("v.{i}")]))
        .collect()
}

/// The checksum of a checkpoint's metadata and tensors, in the order they are listed.
fn checksum<'a>(meta: &str, made: &str, tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = crate::config::provenance::Hasher::default();
    h.update(meta.as_bytes()).update(&[0]).update(made.as_bytes());
    for (name, bytes) in tensors {
        h.update(&[0]).update(name.as_bytes()).update(&(bytes.len() as u64).to_le_bytes()).update(bytes);
    }
    h.finish()
}

/// Writes `c` to `path` through a temporary file and a rename: an interrupted write leaves
/// the previous checkpoint intact. `made` is what the run was made under, `cell` which cell it is.
pub fn save(path: &Path, c: &Checkpoint, made: Option<&MadeUnder>, cell: Option<&CellId>) -> Result<()> {
    let meta = Meta {
        epoch: c.epoch,
        batch: c.batch,
        step: c.step,
        adam_step: c.adam_step,
        shuffle_word_pos: c.shuffle_word_pos.to_string(),
        points: c.points.clone(),
        loss_since_point: c.loss_since_point,
        last_finite_loss: c.last_finite_loss,
        params: c.params.iter().map(|(n, _)| n.clone()).collect(),
        slots: c.slots.clone(),
        slot_steps: c.slot_steps.clone(),
        thaws: c.thaws.clone(),
        frozen_checks: c.frozen_checks.clone(),
        cell: cell.cloned(),
        matmul: c.matmul.clone(),
    };
    let values = c.params.iter().map(|(_, v)| v).chain(c.moments.iter().flat_map(|(m, v)| [m, v]));
    let named: Vec<(String, &[f32])> =
        tensor_names(&meta.params, c.moments.len()).into_iter().zip(values.map(|v| &v[..])).collect();
    let fail = |e: String| Error::Output(format!("cannot write checkpoint {}: {e}", path.display()));
    let views: Vec<(String, TensorView)> = named
        .iter()
        .map(|(n, v)| {
            let view = TensorView::new(Dtype::F32, vec![v.len()], f32_bytes(v)).map_err(|e| fail(e.to_string()))?;
            Ok((n.clone(), view))
        })
        .collect::<Result<_>>()?;
    let meta = serde_json::to_string(&meta).map_err(|e| fail(e.to_string()))?;
    let made = made.map_or(Ok(String::new()), serde_json::to_string).map_err(|e| fail(e.to_string()))?;
    let sum = checksum(&meta, &made, named.iter().map(|(n, v)| (n.as_str(), f32_bytes(v))));
    let mut header = HashMap::from([(META_KEY.to_string(), meta), (CHECKSUM_KEY.to_string(), sum)]);
    if !made.is_empty() {
        header.insert(MADE_UNDER_KEY.to_string(), made);
    }
    let bytes = safetensors::serialize(views, Some(header)).map_err(|e| fail(e.to_string()))?;
    crate::util::write_atomic(path, &bytes)
}

/// Reads and verifies a checkpoint; with it, what it says of itself: what it was made under
/// (None for checkpoints from before fingerprints), which cell it is, and whether it carried
/// a checksum. A checkpoint whose checksum does not match is refused.
pub fn load(path: &Path) -> Result<(Checkpoint, Stamp)> {
    let bad = |why: String| {
        Error::Input(format!(
            "checkpoint {} is unusable ({why}); delete it to restart that cell from step 0",
            path.display()
        ))
    };
    let file = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !file.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let header = header.metadata().clone().unwrap_or_default();
    let meta_json = header.get(META_KEY).ok_or_else(|| bad("no embgraft metadata".into()))?;
    let meta: Meta = serde_json::from_str(meta_json).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let read = |name: &str| -> Result<Vec<f32>> {
        let t = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
        if t.dtype() != Dtype::F32 {
            return Err(bad(format!("{name} is not F32")));
        }
        Ok(crate::util::f32_from_bytes(t.data()))
    };
    if meta.slot_steps.len() != meta.slots.len() {
        return Err(bad("optimizer state is inconsistent".into()));
    }
    let names = tensor_names(&meta.params, meta.slots.len());
    let values = names.iter().map(|n| read(n)).collect::<Result<Vec<_>>>()?;
    let made_json = header.get(MADE_UNDER_KEY).cloned().unwrap_or_default();
    let sealed = header.contains_key(CHECKSUM_KEY);
    if let Some(stored) = header.get(CHECKSUM_KEY) {
        let now =
            checksum(meta_json, &made_json, names.iter().map(String::as_str).zip(values.iter().map(|v| f32_bytes(v))));
        if &now != stored {
            return Err(bad("damaged: its checksum does not match its contents".into()));
        }
    }
    let mut values = values.into_iter();
    let params: Vec<(String, Vec<f32>)> = meta.params.iter().cloned().zip(values.by_ref()).collect();
    let mut moments = Vec::with_capacity(meta.slots.len());
    while let (Some(m), Some(v)) = (values.next(), values.next()) {
        moments.push((m, v));
    }
    let made = match made_json.as_str() {
        "" => None,
        j => Some(serde_json::from_str(j).map_err(|e| bad(e.to_string()))?),
    };
    Ok((
        Checkpoint {
            epoch: meta.epoch,
            batch: meta.batch,
            step: meta.step,
            adam_step: meta.adam_step,
            shuffle_word_pos: meta.shuffle_word_pos.parse().map_err(|_| bad("bad RNG position".into()))?,
            points: meta.points,
            loss_since_point: meta.loss_since_point,
            last_finite_loss: meta.last_finite_loss,
            params,
            slots: meta.slots,
            slot_steps: meta.slot_steps,
            moments,
            thaws: meta.thaws,
            frozen_checks: meta.frozen_checks,
            matmul: meta.matmul,
        },
        Stamp { made, cell: meta.cell, sealed },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let c = Checkpoint {
            epoch: 2,
            batch: 3,
            step: 17,
            adam_step: 17,
            shuffle_word_pos: u128::MAX - 5,
            points: vec![Point {
                epoch: 1,
                step: 9,
                train_loss: 0.1 + 0.2,
                test_loss: std::f64::consts::PI,
                train_eval_loss: Some(2.5),
                eval_windows: None,
                test_bpb: Some(1.0 / 7.0),
                train_eval_bpb: None,
            }],
            loss_since_point: (0.1 + 0.7, 3),
            last_finite_loss: Some(1.0 / 3.0),
            params: vec![("wte".into(), vec![1.5, -0.0, f32::MIN_POSITIVE]), ("h.0.ln_1.bias".into(), vec![2.0; 3])],
            slots: vec!["h.0.ln_1.bias".into()],
            slot_steps: vec![9],
            moments: vec![(vec![0.1; 3], vec![0.2; 3])],
            thaws: vec![Thaw { step: 8, epoch: 1, params: vec!["h.0.ln_1.bias".into()] }],
            frozen_checks: Vec::new(),
            matmul: Some("gemm crate, AVX-512 kernels".into()),
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        let cell = CellId { group: "dim-64".into(), config: crate::config::Letter::B, seed: 1 };
        save(&p, &c, None, Some(&cell)).unwrap();
        let (back, stamp) = load(&p).unwrap();
        assert_eq!((back.clone(), stamp.made, stamp.cell, stamp.sealed), (c.clone(), None, Some(cell), true));
        assert_eq!(back.params[0].1[1].to_bits(), (-0.0f32).to_bits());
        // One flipped bit in a tensor: refused by name, with what to do.
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.len() - 5;
        bytes[at] ^= 0x10;
        std::fs::write(&p, &bytes).unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("damaged") && err.contains("c.safetensors") && err.contains("step 0"), "{err}");
        std::fs::write(&p, b"garbage").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("delete it"));
    }
}
