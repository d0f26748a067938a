//! A finished run's trained parameters (`--save-weights`): `weights-<config>-<seed>.safetensors`
//! in the run folder. Tensors are named as the model names its parameters (`wte`, `lm_head` for
//! Model 1; GPT-2's names for Model 5, projections kept (out, in) as the model holds them), f32.
//! A tensor that is bit for bit one of the donor's f32 tensors (a frozen graft) is not copied:
//! the header names the donor's tensor and the BLAKE3 of its bytes, and a reader takes it from
//! the donor file, checked against that hash. The header also holds what the run was made under
//! and which cell it is (the folder's provenance promise), and a BLAKE3 checksum of all of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::config::provenance::{CellId, MadeUnder, Stamp};
use crate::config::ModelKind;
use crate::data::donor::Donor;
use crate::error::{Error, Result};
use crate::model::model5::Model5Config;
use crate::model::params::Params;

const META_KEY: &str = "embgraft.weights";
const MADE_UNDER_KEY: &str = "embgraft.made_under";
const CHECKSUM_KEY: &str = "embgraft.blake3";

/// Which network the tensors belong to: enough to rebuild it without the run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub kind: ModelKind,
    pub describe: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model5: Option<Model5Config>,
}

impl ModelRecord {
    /// The record of a model built from `spec`, as it describes itself.
    pub fn of(spec: &crate::model::spec::ModelSpec, describe: String) -> ModelRecord {
        ModelRecord { kind: spec.kind(), describe, model5: spec.model5().cloned() }
    }

    /// The model this record is of; Model 1's sizes are not recorded (its file's tensors
    /// are them), so they come from the run (`vocab`, `dim`). None where Model 5's sizes are
    /// missing.
    pub fn spec(&self, vocab: usize, dim: usize) -> Option<crate::model::spec::ModelSpec> {
        use crate::model::spec::ModelSpec;
        match self.kind {
            ModelKind::Model1 => Some(ModelSpec::Model1 { vocab, dim }),
            ModelKind::Model5 => self.model5.clone().map(ModelSpec::Model5),
        }
    }
}

/// A tensor taken from the donor instead of stored: its name there and the hash of its bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DonorRef {
    pub tensor: String,
    pub blake3: String,
}

/// One parameter: its name and shape, and where its values are (here, or the donor's tensor).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub shape: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donor: Option<DonorRef>,
}

/// The donor file referenced tensors come from, as the run read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DonorFile {
    pub path: PathBuf,
    /// The donor's content fingerprint (the run's `fingerprints.donor`), for messages.
    pub fingerprint: String,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    model: ModelRecord,
    tensors: Vec<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    donor: Option<DonorFile>,
    cell: CellId,
}

/// A weights file read and verified: what it says, and where each stored tensor's bytes lie.
pub struct Saved {
    pub path: PathBuf,
    pub model: ModelRecord,
    pub tensors: Vec<Entry>,
    pub donor: Option<DonorFile>,
    /// Byte range in the file of each stored tensor.
    offsets: HashMap<String, (usize, usize)>,
}

/// Where one tensor's f32 values lie: a file and a byte offset (a weights file, or the donor).
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    pub name: String,
    pub shape: Vec<usize>,
    pub file: PathBuf,
    pub offset: usize,
}

/// A parameter read back: its name, shape and values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The checksum of the metadata and the stored tensors, in the order they are listed.
fn checksum<'a>(meta: &str, made: &str, tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = crate::util::Hasher::default();
    h.update(meta.as_bytes()).update(&[0]).update(made.as_bytes());
    for (name, bytes) in tensors {
        h.update(&[0]).update(name.as_bytes()).update(&(bytes.len() as u64).to_le_bytes()).update(bytes);
    }
    h.finish()
}

/// The donor's tensor that `name` is bit for bit, if any: the grafted embedding for the
/// embedding, the tensor of the same GPT-2 name for the rest; f32 and of the same shape only
/// (a converted or transposed copy is stored).
fn same_as_donor(donor: &Donor, embedding: &str, name: &str, shape: &[usize], bytes: &[u8]) -> Option<DonorRef> {
    let tensor = match name {
        "wte" | "wte.weight" => embedding.to_string(),
        other => donor.find(other).ok().flatten()?,
    };
    let st = SafeTensors::deserialize(donor.bytes()).ok()?;
    let view = st.tensor(&tensor).ok()?;
    (view.dtype() == Dtype::F32 && view.shape() == shape && view.data() == bytes)
        .then(|| DonorRef { tensor, blake3: crate::util::fingerprint(bytes) })
}

/// What [`save`] writes a run's weights from: its parameters, the network, and the donor file
/// with its grafted embedding's tensor name (for references; None for a donor given in memory).
pub struct Trained<'a> {
    pub params: &'a Params,
    pub model: ModelRecord,
    pub donor: Option<(&'a Donor, &'a str)>,
}

/// Writes `t`'s parameters to `path` atomically; returns the bytes written.
pub fn save(path: &Path, t: &Trained, made: Option<&MadeUnder>, cell: &CellId) -> Result<u64> {
    let fail = |e: String| Error::Output(format!("cannot write weights {}: {e}", path.display()));
    let mut values: Vec<(String, Vec<f32>)> = t.params.values()?;
    let mut entries = Vec::with_capacity(values.len());
    for ((name, var), (_, v)) in t.params.iter().zip(&values) {
        let shape = var.dims().to_vec();
        let donor = t.donor.and_then(|(d, emb)| same_as_donor(d, emb, name, &shape, crate::util::f32_bytes(v)));
        entries.push(Entry { name: name.clone(), shape, donor });
    }
    let referenced: Vec<bool> = entries.iter().map(|e| e.donor.is_some()).collect();
    let mut keep = referenced.iter().map(|r| !r);
    values.retain(|_| keep.next().unwrap_or(true));
    let meta = Meta {
        model: t.model.clone(),
        tensors: entries,
        donor: t.donor.filter(|_| referenced.contains(&true)).map(|(d, _)| DonorFile {
            path: d.path().to_path_buf(),
            fingerprint: made.map(|m| m.fingerprints.donor.clone()).unwrap_or_default(),
        }),
        cell: cell.clone(),
    };
    let stored: Vec<(&str, &[f32], Vec<usize>)> = meta
        .tensors
        .iter()
        .filter(|e| e.donor.is_none())
        .zip(&values)
        .map(|(e, (_, v))| (e.name.as_str(), &v[..], e.shape.clone()))
        .collect();
    let views: Vec<(String, TensorView)> = stored
        .iter()
        .map(|(n, v, shape)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), crate::util::f32_bytes(v))
                .map_err(|e| fail(e.to_string()))?;
            Ok((n.to_string(), view))
        })
        .collect::<Result<_>>()?;
    let meta = serde_json::to_string(&meta).map_err(|e| fail(e.to_string()))?;
    let made = made.map_or(Ok(String::new()), serde_json::to_string).map_err(|e| fail(e.to_string()))?;
    let sum = checksum(&meta, &made, stored.iter().map(|(n, v, _)| (*n, crate::util::f32_bytes(v))));
    let mut header = HashMap::from([(META_KEY.to_string(), meta), (CHECKSUM_KEY.to_string(), sum)]);
    if !made.is_empty() {
        header.insert(MADE_UNDER_KEY.to_string(), made);
    }
    let bytes = safetensors::serialize(views, Some(header)).map_err(|e| fail(e.to_string()))?;
    crate::util::write_atomic(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Reads and verifies a weights file (its checksum over everything stored); with it, what it
/// says it was made under and which cell it is.
pub fn open(path: &Path) -> Result<(Saved, Stamp)> {
    let bad = |why: String| {
        Error::Input(format!(
            "weights file {} is unusable ({why}); delete it and run that cell again with --save-weights",
            path.display()
        ))
    };
    let file = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !file.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    // SAFETY: read-only map; a file changed underneath fails the checksum below or is read as
    // the bytes it then holds (every reader verifies before it trusts).
    let bytes = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| bad(e.to_string()))?;
    let (header_len, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let map = header.metadata().clone().unwrap_or_default();
    let meta_json = map.get(META_KEY).ok_or_else(|| bad("no embgraft metadata: not a weights file".into()))?;
    let meta: Meta = serde_json::from_str(meta_json).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let data_start = 8 + header_len;
    let mut offsets = HashMap::new();
    let mut stored = Vec::new();
    for e in meta.tensors.iter().filter(|e| e.donor.is_none()) {
        let t = st.tensor(&e.name).map_err(|err| bad(format!("{}: {err}", e.name)))?;
        if t.dtype() != Dtype::F32 || t.shape() != e.shape {
            return Err(bad(format!("{} is not F32 of shape {:?}", e.name, e.shape)));
        }
        let info = header.info(&e.name).ok_or_else(|| bad(format!("{} has no offsets", e.name)))?;
        offsets.insert(e.name.clone(), (data_start + info.data_offsets.0, data_start + info.data_offsets.1));
        stored.push((e.name.as_str(), t.data()));
    }
    let made_json = map.get(MADE_UNDER_KEY).cloned().unwrap_or_default();
    let sum = map.get(CHECKSUM_KEY).ok_or_else(|| bad("its checksum is missing".into()))?;
    if checksum(meta_json, &made_json, stored.into_iter()) != *sum {
        return Err(bad("damaged: its checksum does not match its contents".into()));
    }
    let made = match made_json.as_str() {
        "" => None,
        j => Some(serde_json::from_str(j).map_err(|e| bad(e.to_string()))?),
    };
    let saved =
        Saved { path: path.to_path_buf(), model: meta.model, tensors: meta.tensors, donor: meta.donor, offsets };
    Ok((saved, Stamp { made, cell: Some(meta.cell), sealed: true }))
}

impl Saved {
    /// Where every tensor's values lie, in the model's order. A referenced tensor is looked up
    /// in `donor` (default: the file the run read) and checked against the hash it was saved
    /// with; a donor that is gone or changed is named with what to do.
    pub fn locate(&self, donor: Option<&Path>) -> Result<Vec<Located>> {
        let mut opened: Option<(PathBuf, Donor)> = None;
        let mut out = Vec::with_capacity(self.tensors.len());
        for e in &self.tensors {
            let (file, offset) = match &e.donor {
                None => (self.path.clone(), self.offsets[&e.name].0),
                Some(r) => {
                    let recorded = self.donor.as_ref().ok_or_else(|| {
                        Error::Input(format!("{} references a donor it does not name", self.path.display()))
                    })?;
                    if opened.is_none() {
                        let p = donor.map_or_else(|| recorded.path.clone(), Path::to_path_buf);
                        let d = Donor::open(&p).map_err(|err| self.donor_gone(recorded, &err.to_string()))?;
                        opened = Some((p, d));
                    }
                    let (p, d) = opened.as_ref().expect("opened above");
                    (p.clone(), self.donor_offset(d, e, r, recorded)?)
                }
            };
            out.push(Located { name: e.name.clone(), shape: e.shape.clone(), file, offset });
        }
        Ok(out)
    }

    fn donor_gone(&self, recorded: &DonorFile, why: &str) -> Error {
        Error::Input(format!(
            "{} takes frozen tensors from the donor {} (fingerprint {}), which cannot be read ({why}); restore that \
             file, or pass its new place",
            self.path.display(),
            recorded.path.display(),
            crate::config::provenance::short(&recorded.fingerprint)
        ))
    }

    /// The byte offset of `r`'s tensor in the donor `d`, once its bytes hash as saved.
    fn donor_offset(&self, d: &Donor, e: &Entry, r: &DonorRef, recorded: &DonorFile) -> Result<usize> {
        let changed = |why: &str| self.donor_gone(recorded, &format!("its {} {why}", r.tensor));
        let (header_len, header) =
            SafeTensors::read_metadata(d.bytes()).map_err(|err| changed(&format!("header: {err}")))?;
        let info = header.info(&r.tensor).ok_or_else(|| changed("is missing"))?;
        if info.dtype != Dtype::F32 || info.shape != e.shape {
            return Err(changed("has another type or shape"));
        }
        let (a, b) = (8 + header_len + info.data_offsets.0, 8 + header_len + info.data_offsets.1);
        let bytes = d.bytes().get(a..b).ok_or_else(|| changed("is truncated"))?;
        if crate::util::fingerprint(bytes) != r.blake3 {
            return Err(changed("differs from the one the run froze"));
        }
        Ok(a)
    }

    /// Every tensor's values, read (see [`Saved::locate`]).
    pub fn read(&self, donor: Option<&Path>) -> Result<Vec<NamedTensor>> {
        let mut maps: HashMap<PathBuf, memmap2::Mmap> = HashMap::new();
        let mut out = Vec::new();
        for l in self.locate(donor)? {
            if !maps.contains_key(&l.file) {
                let f = std::fs::File::open(&l.file)
                    .map_err(|e| Error::Input(format!("cannot read {}: {e}", l.file.display())))?;
                // SAFETY: read-only map of a file just verified.
                let m = unsafe { memmap2::Mmap::map(&f) }
                    .map_err(|e| Error::Input(format!("cannot map {}: {e}", l.file.display())))?;
                maps.insert(l.file.clone(), m);
            }
            let n: usize = l.shape.iter().product();
            let bytes = maps[&l.file]
                .get(l.offset..l.offset + 4 * n)
                .ok_or_else(|| Error::Input(format!("{} is truncated", l.file.display())))?;
            out.push((l.name, l.shape, crate::util::f32_from_bytes(bytes)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    fn params(wte: &[f32], head: &[f32]) -> Params {
        let mut p = Params::default();
        p.insert("wte", Var::from_tensor(&Tensor::from_slice(wte, (3, 2), &Device::Cpu).unwrap()).unwrap());
        p.insert("lm_head", Var::from_tensor(&Tensor::from_slice(head, (3, 2), &Device::Cpu).unwrap()).unwrap());
        p
    }

    #[test]
    fn frozen_donor_tensors_are_referenced_and_everything_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let donor_path = dir.path().join("donor.safetensors");
        let wte = [0.5f32, -0.0, 1.25, f32::MIN_POSITIVE, -3.0, 7.5];
        let bytes = |v: &[f32]| crate::util::f32_bytes(v).to_vec();
        crate::data::donor::tests::write_safetensors(
            &donor_path,
            &[("transformer.wte.weight", Dtype::F32, vec![3, 2], bytes(&wte))],
        );
        let donor = Donor::open(&donor_path).unwrap();
        let head = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let model = ModelRecord { kind: ModelKind::Model1, describe: "model1".into(), model5: None };
        let cell = CellId { group: String::new(), config: crate::config::Letter::B, seed: 2 };
        let path = dir.path().join("weights-B-2.safetensors");
        let p = params(&wte, &head);
        let t = Trained { params: &p, model: model.clone(), donor: Some((&donor, "transformer.wte.weight")) };
        save(&path, &t, None, &cell).unwrap();
        let (saved, stamp) = open(&path).unwrap();
        assert_eq!((stamp.cell, stamp.sealed, &saved.model), (Some(cell.clone()), true, &model));
        // wte equals the donor's tensor: referenced, not stored; the head is stored.
        assert_eq!(saved.tensors[0].donor.as_ref().map(|r| r.tensor.as_str()), Some("transformer.wte.weight"));
        assert!(saved.tensors[1].donor.is_none());
        let back = saved.read(None).unwrap();
        assert_eq!(back[0].2.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), wte.map(f32::to_bits).to_vec());
        assert_eq!(back[1].2, head.to_vec());
        assert_eq!(back[0].1, vec![3, 2]);
        // A trained wte (one element moved) is stored instead.
        let mut moved = wte;
        moved[3] = 0.0;
        let p2 = params(&moved, &head);
        let path2 = dir.path().join("weights-C-2.safetensors");
        let t2 = Trained { params: &p2, model: model.clone(), donor: Some((&donor, "transformer.wte.weight")) };
        save(&path2, &t2, None, &cell).unwrap();
        assert!(open(&path2).unwrap().0.tensors.iter().all(|e| e.donor.is_none()));
        // A donor changed after the run: refused by name, with what to do.
        let mut other = wte;
        other[0] = 0.25;
        crate::data::donor::tests::write_safetensors(
            &donor_path,
            &[("transformer.wte.weight", Dtype::F32, vec![3, 2], bytes(&other))],
        );
        let err = saved.read(None).unwrap_err().to_string();
        assert!(err.contains("differs from the one the run froze") && err.contains("restore"), "{err}");
        std::fs::remove_file(&donor_path).unwrap();
        let err = saved.read(None).unwrap_err().to_string();
        assert!(err.contains("cannot be read") && err.contains("donor.safetensors"), "{err}");
        // One flipped bit in a stored tensor: refused.
        let mut b = std::fs::read(&path2).unwrap();
        let at = b.len() - 3;
        b[at] ^= 1;
        std::fs::write(&path2, &b).unwrap();
        let err = open(&path2).err().unwrap().to_string();
        assert!(err.contains("checksum does not match") && err.contains("--save-weights"), "{err}");
    }
}
