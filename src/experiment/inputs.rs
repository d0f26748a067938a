//! Everything an experiment reads, read and checked before anything is written: the donor
//! (a file, a Hub id or an array in memory), its tokenizer, the corpus and its windows, Model
//! 5's sizes and the plan of grafts, with the inputs' fingerprints.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::config::provenance::{self, Fingerprints, MadeUnder};
use crate::config::{ExperimentConfig, Sweep};
use crate::data::corpus::{self, Dataset, Tokenizer};
use crate::data::counts::TokenCounts;
use crate::data::donor::{self, Donor, Embedding};
use crate::data::transplant::{self, Class, Mapping};
use crate::error::{Error, Result};
use crate::model::spec::ModelSpec;
use crate::rng::{stream, Stream};
use crate::train;
use crate::train::results::{InputSummary, TextBytes, VocabMapSummary};

/// Everything read from disk and derived before training.
pub struct Inputs {
    pub corpus_path: PathBuf,
    /// Words of the corpus (split at white space).
    pub words: usize,
    pub tokenizer: Tokenizer,
    pub donor_files: donor::DonorFiles,
    /// The donor file, memory-mapped: Model 5 grafts more of it than the embedding. None for a
    /// donor handed over in memory (the Python front's array), which holds the embedding only.
    pub donor: Option<Donor>,
    pub embedding: Embedding,
    /// The model, its sizes resolved against the settings and the donor.
    pub spec: ModelSpec,
    pub data: Dataset,
    pub test_counts: TokenCounts,
    /// The fixed training subset evaluated like the test set, and its (input, target) counts.
    pub train_eval_windows: Vec<usize>,
    pub train_eval_counts: TokenCounts,
    pub input_freq: Vec<u32>,
    pub bigram: crate::data::baseline::Bigram,
    /// Donor rows no token id can reach (tokenizer smaller than the donor's vocabulary).
    pub unused_rows: usize,
    /// Model 1's initial values, drawn once per seed for all its configurations.
    pub init: crate::model::model1::InitCache,
    /// The corpus, donor and tokenizer by content (the settings' fingerprint is the config's).
    pub prints: Fingerprints,
    /// The raw bytes behind each split's scored positions, for bits per byte.
    pub text_bytes: TextBytes,
    /// How the donor's rows were mapped onto the tokenizer's vocabulary, when it is not the
    /// donor's own.
    pub vocab_map: Option<VocabMapSummary>,
}

/// Reads the donor, tokenizer and corpus and cuts the windows. Nothing is written.
pub fn load_inputs(cfg: &ExperimentConfig) -> Result<Inputs> {
    load_inputs_with(cfg, None)
}

/// As [`load_inputs`], with the donor's embedding given in memory instead of read from
/// `--donor` (whose value then only names it in the report).
pub fn load_inputs_with(cfg: &ExperimentConfig, memory: Option<&Embedding>) -> Result<Inputs> {
    cfg.validate()?;
    let (donor_files, donor, own_embedding) = open_donor(cfg, memory)?;
    let (tokenizer, donor_tokenizer) = tokenizer_for(cfg, &donor_files, own_embedding.rows)?;
    let donor_print = donor_fingerprint(cfg, donor.as_ref(), &own_embedding, donor_tokenizer.as_ref());
    let (embedding, mapping) = graft_matrix(cfg, &tokenizer, donor_tokenizer.as_ref(), own_embedding)?;
    let spec = ModelSpec::resolve(cfg, &donor_files, &embedding)?;

    let cap = cfg.data.max_input_size.0;
    let ids = tokenizer.vocab_size();
    if ids > embedding.rows {
        return Err(Error::Input(format!(
            "tokenizer {} has {ids} ids but donor tensor {} has {} rows: ids would index past the matrix; use the \
             donor's own tokenizer",
            tokenizer.name(),
            embedding.tensor,
            embedding.rows
        )));
    }

    let corpus_path = match cfg.data.corpora.as_slice() {
        [] => corpus::time_machine()?,
        [one] => PathBuf::from(one),
        _ => unreachable!("one corpus at a time: compare splits the list"),
    };
    let max = cfg.run.max_memory.map(|m| m.0);
    if let Ok(m) = std::fs::metadata(&corpus_path) {
        let need = crate::experiment::memory::corpus(m.len(), tokenizer.encodes_whole(), cfg.protocol.stride);
        let what = format!("reading and tokenizing corpus {} ({})", corpus_path.display(), bytesize::ByteSize(m.len()));
        crate::experiment::memory::check(need, &what, "give a smaller corpus", max)?;
    }
    let text = corpus::read_text(&corpus_path, cap)?;
    let prints = Fingerprints {
        settings: String::new(),
        corpus: provenance::fingerprint(text.as_bytes()),
        donor: donor_print,
        tokenizer: tokenizer.fingerprint(),
    };
    let words = text.split_whitespace().count();
    let data = cut_windows(cfg, &tokenizer, &text, &corpus_path)?;
    if data.max_token() as usize >= embedding.rows {
        return Err(Error::Input(format!("token id {} is past the donor's {} rows", data.max_token(), embedding.rows)));
    }
    // The windows' pairs are counted by how often windows cover each position: a pass over the
    // text per split, whatever the windows' length and overlap.
    let test_counts = TokenCounts::from_windows(&data.tokens, &data.test, data.seq_len);
    let train_eval_windows = data.train_eval_windows();
    let train_eval_counts = TokenCounts::from_windows(&data.tokens, &train_eval_windows, data.seq_len);
    let bigram = crate::data::baseline::bigram(&data, embedding.rows);
    let mut input_freq = vec![0u32; embedding.rows];
    for &w in &data.train {
        data.inputs(w).iter().for_each(|&t| input_freq[t as usize] += 1);
    }
    check_plan(cfg, donor.as_ref(), &embedding, &spec)?;
    let (train_positions, train_bytes) = data.target_bytes(&data.train).unwrap_or_default();
    let (test_positions, test_bytes) = data.target_bytes(&data.test).unwrap_or_default();
    let text_bytes =
        TextBytes { corpus_bytes: text.len() as u64, train_positions, train_bytes, test_positions, test_bytes };
    let vocab_map = match (&mapping, &donor_tokenizer) {
        (Some((m, proved)), Some(own)) => Some(map_summary(cfg, m, *proved, own, &data)),
        _ => None,
    };
    Ok(Inputs {
        corpus_path,
        words,
        tokenizer,
        unused_rows: embedding.rows - ids,
        init: Default::default(),
        donor_files,
        donor,
        embedding,
        spec,
        data,
        test_counts,
        train_eval_windows,
        train_eval_counts,
        input_freq,
        bigram,
        prints,
        text_bytes,
        vocab_map,
    })
}

/// A vocabulary mapping and the rows its proof checked (exact, pieces).
type Proved = (Mapping, [usize; 2]);

/// The matrix the configurations graft: the donor's own, or, read through another tokenizer
/// than its own, its rows mapped onto that vocabulary and proved (every exact row bit for bit,
/// every pieces row the mean of its pieces, by code apart from the mapping's), with the
/// mapping and the rows the proof checked. Everything after sees the result as the donor's.
fn graft_matrix(
    cfg: &ExperimentConfig,
    tokenizer: &Tokenizer,
    donor_tokenizer: Option<&Tokenizer>,
    own: Embedding,
) -> Result<(Embedding, Option<Proved>)> {
    let Some(donor_tok) = donor_tokenizer else {
        if cfg.data.vocab_map.0 != [crate::config::VocabMap::Pieces]
            || cfg.data.vocab_fallback != crate::config::VocabFallback::Mean
        {
            crate::util::say(
                "note: --vocab-map and --vocab-fallback apply to a donor read through another tokenizer than its \
                 own; this one reads its own, so they change nothing",
            );
        }
        return Ok((own, None));
    };
    mapping_fits(tokenizer, own.cols, 0, cfg.run.max_memory.map(|m| m.0))?;
    let mapping = transplant::map(tokenizer, donor_tok, own.rows, cfg.data.vocab_map.0[0])?;
    let mut rng = stream(cfg.run.seed, Stream::VocabFallback);
    let mapped = transplant::apply(&mapping, &own, cfg.data.vocab_fallback, &mut rng);
    let proved = transplant::verify(&mapping, &own, &mapped)?;
    Ok((mapped, Some((mapping, proved))))
}

/// The mapping counted: over the vocabulary, over the training and test windows' target
/// positions, with the corpus's most frequent tokens of each class as examples.
fn map_summary(
    cfg: &ExperimentConfig,
    m: &Mapping,
    proved: [usize; 2],
    own: &Tokenizer,
    data: &Dataset,
) -> VocabMapSummary {
    let by_class = |windows: &[usize]| {
        let mut c = [0u64; 3];
        for &w in windows {
            data.targets(w).iter().for_each(|&t| c[m.class[t as usize] as usize] += 1);
        }
        c
    };
    let mut freq = vec![0u64; m.class.len()];
    data.tokens.iter().for_each(|&t| freq[t as usize] += 1);
    let examples = [Class::Exact, Class::Pieces, Class::Fallback].map(|class| {
        let mut ids: Vec<usize> = (0..m.class.len()).filter(|&i| m.class[i] == class && freq[i] > 0).collect();
        ids.sort_by_key(|&i| (std::cmp::Reverse(freq[i]), i));
        ids.iter().take(5).map(|&i| m.describe(i, own)).collect()
    });
    VocabMapSummary {
        donor_tokenizer: own.name(),
        map: cfg.data.vocab_map.0[0].name().into(),
        fallback: cfg.data.vocab_fallback.name().into(),
        tokens: m.counts(),
        train_positions: by_class(&data.train),
        test_positions: by_class(&data.test),
        proved,
        examples,
    }
}

/// The donor by content: the embedding's values; for Model 5, which grafts more of it, the
/// whole weights file too; read through another tokenizer, its own tokenizer too (the
/// mapping follows it).
fn donor_fingerprint(
    cfg: &ExperimentConfig,
    donor: Option<&Donor>,
    emb: &Embedding,
    own_tokenizer: Option<&Tokenizer>,
) -> String {
    let mut h = provenance::Hasher::default();
    h.update(crate::util::f32_bytes(&emb.data));
    if let (true, Some(d)) = (cfg.model.kind.row().grafts_by_name, donor) {
        h.update(d.bytes());
    }
    if let Some(t) = own_tokenizer {
        h.update(t.fingerprint().as_bytes());
    }
    h.finish()
}

/// The corpus's text tokenized and cut into the group's windows and split (the training part
/// cut to `--train-tokens`): the same windows from the same text and settings, every time.
pub fn cut_windows(cfg: &ExperimentConfig, tokenizer: &Tokenizer, text: &str, corpus: &Path) -> Result<Dataset> {
    let encoded = tokenizer.encode_owning(text)?;
    let mut data = Dataset::new(
        encoded.ids,
        cfg.protocol.seq_len,
        cfg.protocol.stride,
        cfg.protocol.split,
        cfg.protocol.test_fraction,
        &mut stream(cfg.run.seed, Stream::Split),
    )?
    .with_owned(encoded.owned)?;
    if let Some(n) = cfg.protocol.train_tokens.as_ref().map(Sweep::first) {
        cut_training_part(cfg, &mut data, n, corpus)?;
    }
    Ok(data)
}

/// `--train-tokens N`: only the training part's first N tokens train; refused when the
/// training part is shorter, or when what is left does not fill one batch.
fn cut_training_part(cfg: &ExperimentConfig, data: &mut Dataset, n: usize, corpus: &Path) -> Result<()> {
    let part = data.train_part_tokens();
    if n > part {
        return Err(Error::Input(format!(
            "--train-tokens {}: the training part of {} holds {part} tokens ({} split); use at most {part}, or a \
             longer corpus",
            Sweep::show(n),
            corpus.display(),
            data.split
        )));
    }
    data.keep_train_tokens(n);
    let (p, b) = (&cfg.protocol, cfg.protocol.batch_size);
    if data.train.len() < b {
        let need = b.saturating_sub(1).saturating_mul(p.stride).saturating_add(p.seq_len + 1);
        let need = match data.split {
            corpus::Split::Windows => (need as f64 / (1.0 - p.test_fraction)).ceil() as usize,
            corpus::Split::Contiguous => need,
        };
        return Err(Error::Input(format!(
            "--train-tokens {} leaves {} training windows, fewer than one batch of {b}; give at least about {need} \
             tokens, or a smaller --batch-size",
            Sweep::show(n),
            data.train.len()
        )));
    }
    Ok(())
}

/// The donor's files, its memory-mapped weights and the embedding to graft; a donor given in
/// memory has no files and no map.
fn open_donor(
    cfg: &ExperimentConfig,
    memory: Option<&Embedding>,
) -> Result<(donor::DonorFiles, Option<Donor>, Embedding)> {
    Ok(match memory {
        Some(e) => {
            donor::check_finite(&e.tensor, e.cols, &e.data)?;
            let files = donor::DonorFiles {
                spec: cfg.data.first_donor().to_string(),
                weights: PathBuf::from("(in memory)"),
                tokenizer: None,
                config: None,
            };
            (files, None, e.clone())
        }
        None => {
            let files = donor::locate(cfg.data.first_donor())?;
            let donor = Donor::open(&files.weights)?;
            // The matrix is read into f32 (then copied for the model): refused before that
            // when it cannot fit.
            let name = donor.embedding_name(cfg.data.tensor.as_deref())?;
            if let Some(t) = donor.tensors()?.into_iter().find(|t| t.name == name) {
                let elements = t.shape.iter().map(|&n| n as u64).fold(1u64, u64::saturating_mul);
                let what = format!("donor tensor {name} {:?} in f32 (and its copies)", t.shape);
                let need = crate::experiment::memory::donor(elements).saturating_mul(3);
                crate::experiment::memory::check(need, &what, "give a smaller donor", cfg.run.max_memory.map(|m| m.0))?;
            }
            let embedding = donor.embedding(Some(&name))?;
            (files, Some(donor), embedding)
        }
    })
}

/// `--tokenizer`: auto (the donor's own, else GPT-2's BPE), gpt2, or a tokenizer.json path;
/// with the donor's own tokenizer beside it when that is another one (its rows are then
/// mapped onto the chosen tokenizer's vocabulary). A donor without a tokenizer of its own is
/// taken to follow the chosen one's ids.
fn tokenizer_for(
    cfg: &ExperimentConfig,
    files: &donor::DonorFiles,
    rows: usize,
) -> Result<(Tokenizer, Option<Tokenizer>)> {
    let cap = cfg.data.max_input_size.0;
    let max = cfg.run.max_memory.map(|m| m.0);
    let own = files
        .tokenizer
        .as_ref()
        .map(|p| {
            tokenizer_fits(p, max)?;
            Tokenizer::from_file(p, cap).map_err(|e| {
                Error::Tokenizer(format!(
                    "the donor's own tokenizer: {e} (or remove it: the donor's rows are then taken to follow \
                     --tokenizer's ids)"
                ))
            })
        })
        .transpose()?;
    let chosen = match cfg.data.tokenizer.as_str() {
        "auto" => match own {
            Some(t) => return Ok((t, None)),
            None => Tokenizer::gpt2()?,
        },
        "gpt2" => Tokenizer::gpt2()?,
        value => {
            tokenizer_fits(Path::new(value), max)?;
            Tokenizer::from_flag(value, cap)?
        }
    };
    if let Tokenizer::HuggingFace { tok, path, .. } = &chosen {
        // Ids past the vocabulary's size would index past every matrix built for it.
        let n = tok.get_vocab_size(true);
        if let Some((t, id)) = tok.get_vocab(true).into_iter().find(|(_, id)| *id as usize >= n) {
            return Err(Error::Tokenizer(format!(
                "tokenizer {} gives {t:?} id {id}, past its own vocabulary of {n}; give a tokenizer.json whose ids \
                 run from 0 to its size",
                path.display()
            )));
        }
    }
    match own {
        Some(own) if own.fingerprint() == chosen.fingerprint() => Ok((own, None)),
        Some(own) if transplant::same_vocabulary(&chosen, &own)? => Ok((chosen, None)),
        Some(own) if let Some(extra) = transplant::holds_vocabulary(&own, &chosen)? => {
            crate::util::say(&format!(
                "note: the donor's tokenizer {} holds every token of {} under the same id, byte for byte (its {extra} \
                 tokens past them aside): its rows are grafted by id",
                own.name(),
                chosen.name()
            ));
            Ok((chosen, None))
        }
        Some(own) => Ok((chosen, Some(own))),
        None if chosen.vocab_size() > rows => Err(Error::Input(format!(
            "tokenizer {} has {} ids but the donor has {rows} rows and no tokenizer of its own to map them through; \
             put the donor's tokenizer.json beside its weights (or give a model folder that has one), or use the \
             tokenizer its rows follow",
            chosen.name(),
            chosen.vocab_size()
        ))),
        None => Ok((chosen, None)),
    }
}

/// A tokenizer.json refused before it is parsed where its tables could not fit in `max` (or
/// what the machine has available): a vocabulary of millions takes gigabytes.
pub fn tokenizer_fits(path: &Path, max: Option<u64>) -> Result<()> {
    let Ok(m) = std::fs::metadata(path) else { return Ok(()) };
    if !m.is_file() {
        return Ok(()); // refused by name when it is read
    }
    let what = format!("reading tokenizer {} ({})", path.display(), bytesize::ByteSize(m.len()));
    let fix = "give a tokenizer.json with a smaller vocabulary";
    crate::experiment::memory::check(crate::experiment::memory::tokenizer(m.len()), &what, fix, max)
}

/// Mapping a donor of width `cols` onto `tokenizer`'s vocabulary (with `also` bytes more that
/// the caller needs beside it, such as the donor's rows not read yet), refused before it is built
/// where it could not fit: its size grows with the vocabulary, not with the donor.
pub fn mapping_fits(tokenizer: &Tokenizer, cols: usize, also: u64, max: Option<u64>) -> Result<()> {
    let ids = tokenizer.vocab_size();
    let what = format!("mapping the donor's rows onto {} ({ids} ids x width {cols})", tokenizer.name());
    let fix = "give a tokenizer with a smaller vocabulary";
    let need = crate::experiment::memory::mapping(ids as u64, cols as u64).saturating_add(also);
    crate::experiment::memory::check(need, &what, fix, max)
}

/// Every pattern of every configuration names something, and every graft fits: found in the
/// donor with the right shape. Checked on a throwaway model before anything is written.
fn check_plan(cfg: &ExperimentConfig, donor: Option<&Donor>, emb: &Embedding, spec: &ModelSpec) -> Result<()> {
    let params = spec.probe_params()?;
    // A donor whose values are all equal has no spread to rescale to another standard
    // deviation: the configurations that rescale it are refused by name.
    let rescales = |l: crate::config::Letter| {
        use crate::config::{GraftScale, Source};
        let (g, _) = cfg.cell(l);
        let source = l.row().source;
        g != "none"
            && (source == Source::Unit || (source != Source::Random && cfg.graft.graft_scale != GraftScale::Keep))
    };
    let rescaled: Vec<String> = cfg.graft.configs.0.iter().filter(|&&l| rescales(l)).map(|l| l.to_string()).collect();
    if !rescaled.is_empty() && emb.data.windows(2).all(|w| w[0] == w[1]) {
        return Err(Error::Input(format!(
            "donor tensor {} holds one value everywhere (standard deviation 0), which configurations {} cannot \
             rescale to another spread; drop them from --configs, or give a donor whose values vary",
            emb.tensor,
            rescaled.join(",")
        )));
    }
    let mut union = crate::model::params::Names::new();
    for &l in &cfg.graft.configs.0 {
        let (g, f) = cfg.cell(l);
        union.extend(params.select(g, "--graft")?);
        params.select(f, "--freeze")?;
    }
    for g in &cfg.graft.lr_groups {
        params.select(&g.pattern, "--lr-group")?;
    }
    if spec.probe_grafts() && !union.is_empty() {
        crate::model::graft::graft_by_name(&params, donor, emb, &union)?;
    }
    Ok(())
}

impl Inputs {
    /// What every run on these inputs shares.
    pub fn shared<'a>(&'a self, device: &'a Device) -> train::Shared<'a> {
        train::Shared {
            data: &self.data,
            test: &self.test_counts,
            train_eval: &self.train_eval_counts,
            train_eval_windows: &self.train_eval_windows,
            input_freq: &self.input_freq,
            donor: &self.embedding,
            device,
            donor_file: self.donor.as_ref(),
            spec: &self.spec,
            init: &self.init,
        }
    }

    pub fn summary(&self, cfg: &ExperimentConfig) -> InputSummary {
        let (distinct_tokens, distinct_train_tokens) = self.data.distinct_tokens();
        InputSummary {
            corpus: self.corpus_path.display().to_string(),
            corpus_tokens: self.data.tokens.len(),
            tokenizer: self.tokenizer.name(),
            donor: self.donor_files.spec.clone(),
            donor_weights: self.donor_files.weights.display().to_string(),
            donor_tensor: self.embedding.tensor.clone(),
            donor_dtype: self.embedding.source_dtype.clone(),
            vocab: self.embedding.rows,
            dim: self.embedding.cols,
            unused_donor_rows: self.unused_rows,
            split: self.data.split.to_string(),
            train_windows: self.data.train.len(),
            test_windows: self.data.test.len(),
            test_positions: self.test_counts.positions,
            test_positions_seen_in_training: self.data.leakage(),
            bigram: self.bigram.clone(),
            steps_per_run: train::planned_steps(cfg, self.data.train.len()),
            model: self.spec.describe(),
            train_tokens_limit: cfg.protocol.train_tokens.as_ref().map(Sweep::first),
            train_tokens: self.data.train_part_tokens(),
            words: self.words,
            distinct_tokens,
            distinct_train_tokens,
            test_targets_unseen_in_training: self.data.test_unseen_in_training(),
            fingerprints: Some(Fingerprints { settings: provenance::settings_fingerprint(cfg), ..self.prints.clone() }),
            text_bytes: Some(self.text_bytes.clone()),
            vocab_map: self.vocab_map.clone(),
        }
    }
}

/// What a cell of this group is made under: its settings and the inputs' fingerprints.
pub(crate) fn made_under(cfg: &ExperimentConfig, info: &InputSummary) -> MadeUnder {
    MadeUnder { fingerprints: info.fingerprints.clone().unwrap_or_default(), settings: provenance::settings_of(cfg) }
}
