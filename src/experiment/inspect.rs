//! `embgraft inspect` (and Python's `embgraft.inspect`): a donor's tensors, the embedding that
//! would be grafted, its tokenizer and config, and, asked for a tokenizer, its rows mapped onto
//! that vocabulary with the mapping counted and proved. One value both fronts format.

use std::path::{Path, PathBuf};

use crate::data::corpus::Tokenizer;
use crate::data::donor::{self, Donor, DonorConfig, DonorFiles, TensorInfo};
use crate::data::transplant::{self, Class, VocabMap};
use crate::error::{Error, Result};
use crate::experiment::inputs::{mapping_fits, tokenizer_fits};

/// What a donor holds, as read.
pub struct Inspection {
    pub files: DonorFiles,
    pub donor: Donor,
    pub tensors: Vec<TensorInfo>,
    /// The tensor that would be grafted, or why none would.
    pub embedding: std::result::Result<String, String>,
    pub config: Option<(PathBuf, DonorConfig)>,
    /// `--tensor`, as given.
    tensor: Option<String>,
}

/// Where `inspect --write-mapped` writes, and whether it may replace a regular file there.
pub struct MappedOut<'a> {
    pub path: &'a Path,
    pub force: bool,
}

impl Inspection {
    /// Opens the donor `spec` (a file, a folder, a Hub id); `tensor` names the embedding.
    pub fn open(spec: &str, tensor: Option<&str>) -> Result<Inspection> {
        let files = donor::locate(spec)?;
        let donor = Donor::open(&files.weights)?;
        let tensors = donor.tensors()?;
        let embedding = donor.embedding_name(tensor).map_err(|e| e.to_string());
        let config = match &files.config {
            Some(c) => Some((c.clone(), DonorConfig::read(c)?)),
            None => None,
        };
        Ok(Inspection { files, donor, tensors, embedding, config, tensor: tensor.map(String::from) })
    }

    /// The lines the command prints.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![self.files.weights.display().to_string()];
        out.extend(self.tensors.iter().map(|t| format!("  {:<50} {:<5} {:?}", t.name, t.dtype, t.shape)));
        out.push(match &self.embedding {
            Ok(name) => format!("embedding: {name}"),
            Err(e) => format!("embedding: none ({e})"),
        });
        out.push(match &self.files.tokenizer {
            Some(t) => format!("tokenizer: {}", t.display()),
            None => "tokenizer: none (GPT-2 BPE is used)".to_string(),
        });
        if let Some((path, dc)) = &self.config {
            let show = |v: Option<usize>| v.map_or("?".to_string(), |v| v.to_string());
            out.push(format!(
                "config: {} (width {}, heads {}, layers {}, positions {}) — Model 5 takes width and heads from it",
                path.display(),
                show(dc.n_embd),
                show(dc.n_head),
                show(dc.n_layer),
                show(dc.n_positions)
            ));
        }
        out
    }

    /// The same as JSON, for the Python front.
    pub fn to_json(&self) -> serde_json::Value {
        let tensors: Vec<serde_json::Value> = self
            .tensors
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "dtype": t.dtype.to_string(), "shape": t.shape}))
            .collect();
        serde_json::json!({
            "weights": self.files.weights.display().to_string(),
            "tensors": tensors,
            "embedding": self.embedding.as_ref().ok(),
            "tokenizer": self.files.tokenizer.as_ref().map(|t| t.display().to_string()),
            "config": self.files.config.as_ref().map(|t| t.display().to_string()),
        })
    }

    /// The donor's rows mapped onto `tokenizer`'s vocabulary (`gpt2` or a tokenizer.json),
    /// counted by class with examples, proved (exact rows bitwise, pieces rows their mean), and
    /// written to `out` if given. `max` bounds the memory the tokenizers and mapping may take.
    pub fn map_onto(
        &self,
        tokenizer: &str,
        how: VocabMap,
        max: Option<u64>,
        out: Option<MappedOut>,
    ) -> Result<Vec<String>> {
        let cap = crate::config::Data::default().max_input_size.0;
        let own = self.files.tokenizer.as_ref().ok_or_else(|| {
            Error::Input(format!(
                "donor {} has no tokenizer.json of its own, so its rows cannot be read as text; put the donor's \
                 tokenizer.json beside its weights",
                self.files.spec
            ))
        })?;
        tokenizer_fits(own, max)?;
        let donor_tok = Tokenizer::from_file(own, cap)?;
        tokenizer_fits(Path::new(tokenizer), max)?;
        let model = Tokenizer::from_flag(tokenizer, cap)?;
        if let Some(o) = &out {
            let mut inputs: Vec<&Path> = vec![&self.files.weights, own];
            inputs.extend(self.files.config.as_deref());
            if tokenizer != "gpt2" {
                inputs.push(Path::new(tokenizer));
            }
            crate::util::check_output_file(o.path, "--write-mapped", o.force, &inputs)?;
            let dir = o.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            crate::util::probe_writable(dir)
                .map_err(|e| Error::Output(format!("--write-mapped {}: {e}", o.path.display())))?;
        }
        // The donor's matrix is read into f32 beside the mapping: both refused before either,
        // from the header's shape (checked after the read only where the header gave none).
        let shape = self.embedding.as_ref().ok().and_then(|n| self.tensors.iter().find(|t| &t.name == n));
        let planned = match shape.map(|t| t.shape.as_slice()) {
            Some(&[rows, cols]) => Some((rows, cols)),
            _ => None,
        };
        if let Some((rows, cols)) = planned {
            mapping_fits(&model, cols, crate::experiment::memory::donor((rows * cols) as u64), max)?;
        }
        let emb = self.donor.embedding(self.tensor.as_deref())?;
        if planned.is_none() {
            mapping_fits(&model, emb.cols, 0, max)?;
        }
        let m = transplant::map(&model, &donor_tok, emb.rows, how)?;
        let mapped = transplant::apply(&m, &emb, transplant::VocabFallback::Mean, &mut rand::rng());
        let [exact, pieces] = transplant::verify(&m, &emb, &mapped)?;
        let c = m.counts();
        let share = |n: usize| 100.0 * n as f64 / m.class.len().max(1) as f64;
        let mut lines = vec![format!(
            "mapped onto {} ({} ids): {} exact ({:.1} %), {} pieces ({:.1} %), {} fallback ({:.1} %); proved: {exact} \
             exact rows bit for bit, {pieces} pieces rows their mean",
            model.name(),
            m.class.len(),
            c[0],
            share(c[0]),
            c[1],
            share(c[1]),
            c[2],
            share(c[2])
        )];
        for (class, name) in [(Class::Exact, "exact"), (Class::Pieces, "pieces"), (Class::Fallback, "fallback")] {
            let ids = (0..m.class.len()).filter(|&i| m.class[i] == class).take(6);
            let shown: Vec<String> = ids.map(|i| m.describe(i, &donor_tok)).collect();
            lines.push(format!("  {name}: {}", shown.join(", ")));
        }
        if let Some(o) = out {
            transplant::write_mapped(o.path, &m, &mapped, o.force)?;
            lines.push(format!(
                "wrote {} (wte [{}, {}] F32, class [{}] U8)",
                o.path.display(),
                mapped.rows,
                mapped.cols,
                mapped.rows
            ));
        }
        Ok(lines)
    }
}
