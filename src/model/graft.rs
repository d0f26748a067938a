//! Grafting: copy a donor matrix into a model parameter, verify every element, and later prove
//! that a frozen parameter ended bit for bit where it started.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use rand::seq::SliceRandom;

use crate::config::{GraftScale, Source};
use crate::data::donor::{Donor, Embedding};
use crate::error::{Error, Result};
use crate::model::params::{Names, Params};
use crate::util::checksum;

/// What a graft did: per-tensor copy checks, a description, notes, and the grafted embedding
/// as copied (the start Model 1's drift is measured from).
#[derive(Default)]
pub struct Grafted {
    pub checks: Vec<CopyCheck>,
    pub what: Option<String>,
    pub notes: Vec<String>,
    pub start: Option<Embedding>,
}

/// The result of the copy check over the whole matrix (the course compared row 0 only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CopyCheck {
    pub tensor: String,
    pub elements: usize,
    /// Largest |donor − copy| over every element: must be exactly 0.
    pub max_abs_delta: f32,
    /// Elements whose bits differ (catches -0.0 vs 0.0 and NaN payloads that |Δ| misses).
    pub differing_bits: usize,
    pub donor_checksum: String,
    pub copy_checksum: String,
}

impl CopyCheck {
    pub fn passed(&self) -> bool {
        self.max_abs_delta == 0.0 && self.differing_bits == 0 && self.donor_checksum == self.copy_checksum
    }
}

/// Compares `expected` with the parameter's current value, element by element.
pub fn compare(tensor: &str, expected: &[f32], param: &Tensor) -> Result<CopyCheck> {
    let actual = param.flatten_all()?.to_vec1::<f32>()?;
    if actual.len() != expected.len() {
        return Err(Error::Donor(format!(
            "{tensor}: {} elements in the model, {} expected",
            actual.len(),
            expected.len()
        )));
    }
    let mut max_abs_delta = 0f32;
    let mut differing_bits = 0;
    // Bits decide: an element whose bits match is a perfect copy, whatever its value (a NaN
    // minus itself is NaN, which |Δ| alone would call a failure).
    for (a, b) in expected.iter().zip(&actual).filter(|(a, b)| a.to_bits() != b.to_bits()) {
        let d = (a - b).abs();
        max_abs_delta = if d.is_nan() { f32::INFINITY } else { max_abs_delta.max(d) };
        differing_bits += 1;
    }
    Ok(CopyCheck {
        tensor: tensor.to_string(),
        elements: expected.len(),
        max_abs_delta,
        differing_bits,
        donor_checksum: format!("{:016x}", checksum(expected)),
        copy_checksum: format!("{:016x}", checksum(&actual)),
    })
}

/// The matrix a configuration grafts: the donor's, with its rows shuffled across tokens
/// (`Permuted`) and/or rescaled (`Unit` always to standard deviation 1; `Donor` and `Permuted`
/// as `scale` says). Returns it with a one-line description for the report.
pub fn prepare(
    donor: &Embedding,
    source: Source,
    scale: GraftScale,
    init_std: f64,
    rng: &mut impl rand::Rng,
) -> (Embedding, String) {
    let mut out = donor.clone();
    let mut what = format!("donor {}", donor.tensor);
    if source == Source::Permuted {
        let mut perm: Vec<usize> = (0..donor.rows).collect();
        perm.shuffle(rng);
        for (r, &from) in perm.iter().enumerate() {
            out.data[r * donor.cols..(r + 1) * donor.cols]
                .copy_from_slice(&donor.data[from * donor.cols..(from + 1) * donor.cols]);
        }
        what.push_str(", rows permuted across tokens");
    }
    let target = match (source, scale) {
        (Source::Unit, _) | (_, GraftScale::Unit) => Some(1.0),
        (_, GraftScale::Init) => Some(init_std),
        _ => None,
    };
    if let Some(target) = target {
        let n = out.data.len() as f64;
        let mean = out.data.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (out.data.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let factor = if std > 0.0 { target / std } else { 1.0 };
        out.data.iter_mut().for_each(|x| *x = (*x as f64 * factor) as f32);
        what.push_str(&format!(", scaled x{factor:.3} from std {std:.4} to {target}"));
    }
    (out, what)
}

/// Copies the donor's embedding into `param` (an owned copy, never shared storage) and
/// verifies the whole matrix. A shape mismatch names both shapes.
pub fn graft(param: &Var, donor: &Embedding) -> Result<CopyCheck> {
    let want = param.dims();
    if want != [donor.rows, donor.cols] {
        return Err(Error::Donor(format!(
            "cannot graft {} of shape [{}, {}] into a parameter of shape {:?}",
            donor.tensor, donor.rows, donor.cols, want
        )));
    }
    param.set(&Tensor::from_slice(&donor.data, (donor.rows, donor.cols), param.device())?)?;
    compare(&donor.tensor, &donor.data, param.as_tensor())
}

/// Copies the donor's tensors into the parameters `names` selects, by their GPT-2 names, and
/// verifies each whole.
/// `wte` comes from `embedding` (the tensor already chosen, any known name); the others by
/// their GPT-2 name. Returns one check per tensor and notes for the report (a `wpe` cut to
/// the context, Conv1D transposes).
pub fn graft_by_name(
    params: &Params,
    donor: Option<&Donor>,
    embedding: &Embedding,
    names: &Names,
) -> Result<(Vec<CopyCheck>, Vec<String>)> {
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    let mut transposed = 0;
    for (name, var) in params.iter().filter(|(n, _)| names.contains(*n)) {
        let want = var.dims().to_vec();
        let (source, src_shape, data) = if name == "wte.weight" {
            (embedding.tensor.clone(), vec![embedding.rows, embedding.cols], embedding.data.clone())
        } else {
            let Some(donor) = donor else {
                return Err(Error::Donor(format!(
                    "the donor given in memory holds only its embedding, not {name}; graft only wte (--graft wte), or \
                     pass a model file"
                )));
            };
            let found = match donor.find(name)? {
                Some(n) => Some(n),
                // GPT-2 ties its head to wte: an untied head grafts the donor's embedding.
                None if name == "lm_head.weight" => {
                    notes.push(format!(
                        "lm_head.weight grafted from the donor's {} (GPT-2 ties its head)",
                        embedding.tensor
                    ));
                    None
                }
                None => {
                    return Err(Error::Donor(format!(
                        "donor {} has no tensor for {name}; graft fewer parts (e.g. --graft wte,wpe) or use a \
                         GPT-2-layout donor",
                        donor.path().display()
                    )))
                }
            };
            match found {
                Some(n) => {
                    let t = donor.read(&n)?;
                    (n, t.shape, t.data)
                }
                None => (embedding.tensor.clone(), vec![embedding.rows, embedding.cols], embedding.data.clone()),
            }
        };
        let mismatch = || {
            Error::Donor(format!(
                "cannot graft donor {source} of shape {src_shape:?} into {name} of shape {want:?}; give the model the \
                 donor's sizes (--dim, --context), or graft less (--graft)"
            ))
        };
        let expected: Vec<f32> = if is_conv1d(name) {
            // Conv1D (in, out) -> Linear (out, in).
            if src_shape != [want[1], want[0]] {
                return Err(mismatch());
            }
            transposed += 1;
            transpose(&data, src_shape[0], src_shape[1])
        } else if name == "wpe.weight" && src_shape.len() == 2 && src_shape[1] == want[1] && src_shape[0] > want[0] {
            notes.push(format!(
                "wpe: the donor's {} has {} positions; the first {} (--context) were grafted",
                source, src_shape[0], want[0]
            ));
            data[..want[0] * want[1]].to_vec()
        } else if src_shape != want {
            return Err(mismatch());
        } else {
            data
        };
        var.set(&Tensor::from_vec(expected.clone(), want.as_slice(), var.device())?)?;
        let mut check = compare(&source, &expected, var.as_tensor())?;
        check.tensor = format!("{source} -> {name}");
        checks.push(check);
    }
    if transposed > 0 {
        notes.push(format!("{transposed} Conv1D weights transposed from GPT-2's (in, out) to (out, in)"));
    }
    Ok((checks, notes))
}

/// Projection weights that GPT-2 stores transposed (Conv1D, (in, out)).
pub fn is_conv1d(name: &str) -> bool {
    name.starts_with("h.")
        && [".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Row-major (r, c) -> (c, r).
pub use crate::ops::decoder::transpose;

/// One check standing for several tensors: passes only if every one does.
pub fn sum_copy_checks(checks: &[CopyCheck]) -> Option<CopyCheck> {
    match checks {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(CopyCheck {
            tensor: format!("{} tensors", many.len()),
            elements: many.iter().map(|c| c.elements).sum(),
            max_abs_delta: many.iter().map(|c| c.max_abs_delta).fold(0.0, f32::max),
            differing_bits: many.iter().map(|c| c.differing_bits).sum(),
            donor_checksum: joint_checksum(many.iter().map(|c| c.donor_checksum.as_str())),
            copy_checksum: joint_checksum(many.iter().map(|c| c.copy_checksum.as_str())),
        }),
    }
}

pub fn sum_frozen_checks(checks: &[FrozenCheck]) -> Option<FrozenCheck> {
    match checks {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(FrozenCheck {
            parameter: format!("{} parameters", many.len()),
            elements: many.iter().map(|c| c.elements).sum(),
            changed_elements: many.iter().map(|c| c.changed_elements).sum(),
            checksum_before: joint_checksum(many.iter().map(|c| c.checksum_before.as_str())),
            checksum_after: joint_checksum(many.iter().map(|c| c.checksum_after.as_str())),
        }),
    }
}

/// FNV-1a over the checksums in order: equal lists give equal results.
fn joint_checksum<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    format!("{:016x}", crate::util::fnv1a(parts.flat_map(|p| p.bytes().chain([b'|']))))
}

/// Bit-identity of a frozen parameter after training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrozenCheck {
    pub parameter: String,
    pub elements: usize,
    pub changed_elements: usize,
    pub checksum_before: String,
    pub checksum_after: String,
}

impl FrozenCheck {
    pub fn passed(&self) -> bool {
        self.changed_elements == 0 && self.checksum_before == self.checksum_after
    }

    pub fn check(parameter: &str, before: &[f32], param: &Tensor) -> Result<Self> {
        let c = compare(parameter, before, param)?;
        Ok(FrozenCheck {
            parameter: parameter.into(),
            elements: c.elements,
            changed_elements: c.differing_bits,
            checksum_before: c.donor_checksum,
            checksum_after: c.copy_checksum,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv1d_names_and_transpose() {
        assert!(is_conv1d("h.3.attn.c_attn.weight") && is_conv1d("h.0.mlp.c_proj.weight"));
        assert!(!is_conv1d("h.0.attn.c_attn.bias") && !is_conv1d("wte.weight") && !is_conv1d("h.0.ln_1.weight"));
        assert_eq!(transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
    use candle_core::Device;

    fn emb(rows: usize, cols: usize) -> Embedding {
        let data = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
        Embedding { tensor: "wte.weight".into(), source_dtype: "F32".into(), rows, cols, data }
    }

    #[test]
    fn graft_copies_every_element() {
        let e = emb(6, 4);
        let p = Var::zeros((6, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let c = graft(&p, &e).unwrap();
        assert!(c.passed(), "{c:?}");
        assert_eq!(c.elements, 24);
        assert_eq!(p.flatten_all().unwrap().to_vec1::<f32>().unwrap(), e.data);
    }

    #[test]
    fn one_element_difference_is_caught() {
        let e = emb(6, 4);
        let mut off = e.data.clone();
        off[23] += 1e-6; // the last element: a row-0 check would miss it
        let p = Var::from_slice(&off, (6, 4), &Device::Cpu).unwrap();
        let c = compare("wte.weight", &e.data, p.as_tensor()).unwrap();
        assert!(!c.passed());
        assert_eq!(c.differing_bits, 1);
        assert!(c.max_abs_delta > 0.0);
        // Sign of zero: |Δ| = 0 but the bits differ.
        let z = Var::from_slice(&[-0.0f32], 1, &Device::Cpu).unwrap();
        assert!(!compare("z", &[0.0], z.as_tensor()).unwrap().passed());
    }

    #[test]
    fn controls_permute_rows_and_rescale() {
        use rand::SeedableRng;
        let e = emb(50, 3);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (p, what) = prepare(&e, Source::Permuted, GraftScale::Keep, 1.0, &mut rng);
        assert!(what.contains("permuted"));
        assert_ne!(p.data, e.data);
        // Same rows, other places: sorting the rows gives the donor back.
        let rows = |d: &[f32]| {
            let mut r: Vec<Vec<u32>> = d.chunks(3).map(|c| c.iter().map(|x| x.to_bits()).collect()).collect();
            r.sort();
            r
        };
        assert_eq!(rows(&p.data), rows(&e.data));
        let (u, what) = prepare(&e, Source::Unit, GraftScale::Keep, 1.0, &mut rng);
        let n = u.data.len() as f64;
        let mean = u.data.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (u.data.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((std - 1.0).abs() < 1e-6, "{std} ({what})");
        let (k, what) = prepare(&e, Source::Donor, GraftScale::Keep, 1.0, &mut rng);
        assert_eq!((k.data, what), (e.data.clone(), "donor wte.weight".to_string()));
        let (i, _) = prepare(&e, Source::Donor, GraftScale::Init, 0.5, &mut rng);
        assert!((i.data[1] / e.data[1] - i.data[7] / e.data[7]).abs() < 1e-6, "one factor for all");
    }

    #[test]
    fn shape_mismatch_names_both_shapes() {
        let p = Var::zeros((5, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let msg = graft(&p, &emb(6, 4)).unwrap_err().to_string();
        assert!(msg.contains("[6, 4]") && msg.contains("[5, 4]"), "{msg}");
    }
}
