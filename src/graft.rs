//! Grafting: copy a donor matrix into a model parameter, verify every element, and later prove
//! that a frozen parameter ended bit for bit where it started.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use rand::seq::SliceRandom;

use crate::config::{GraftScale, Source};
use crate::donor::{Donor, Embedding};
use crate::error::{Error, Result};
use crate::params::{Names, Params};
use crate::util::checksum;

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
                    "the donor given in memory holds only its embedding, not {name}; graft only wte (--graft wte), or pass a model file"
                )));
            };
            let found = match donor.find(name)? {
                Some(n) => Some(n),
                // GPT-2 ties its head to wte: an untied head grafts the donor's embedding.
                None if name == "lm_head.weight" => {
                    notes.push(format!("lm_head.weight grafted from the donor's {} (GPT-2 ties its head)", embedding.tensor));
                    None
                }
                None => {
                    return Err(Error::Donor(format!(
                        "donor {} has no tensor for {name}; graft fewer parts (e.g. --graft wte,wpe) or use a GPT-2-layout donor",
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
                "cannot graft donor {source} of shape {src_shape:?} into {name} of shape {want:?}; give the model the donor's sizes (--dim, --context), or graft less (--graft)"
            ))
        };
        let expected: Vec<f32> = if crate::model5::is_conv1d(name) {
            // Conv1D (in, out) -> Linear (out, in).
            if src_shape != [want[1], want[0]] {
                return Err(mismatch());
            }
            transposed += 1;
            crate::model5::transpose(&data, src_shape[0], src_shape[1])
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

    #[test]
    fn shape_mismatch_names_both_shapes() {
        let p = Var::zeros((5, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let msg = graft(&p, &emb(6, 4)).unwrap_err().to_string();
        assert!(msg.contains("[6, 4]") && msg.contains("[5, 4]"), "{msg}");
    }
}
