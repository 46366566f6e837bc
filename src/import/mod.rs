//! Pretrained weights into the one sinkscope transformer: Hugging Face safetensors
//! folders (local or in the hub cache) and llama.cpp GGUF files.
//!
//! [`load`] is the entry point: it resolves the MODEL argument ([`resolve`]), reads the
//! config into a [`ModelConfig`] through the family's switches ([`families`], or
//! [`gguf_model`] for GGUF), fills a lazily declared model from the checkpoint strictly
//! ([`weights`]: every parameter found with its shape, every tensor used or explicitly
//! ignorable), and loads the tokenizer ([`tokenizer`]).

pub mod error;
pub mod families;
pub mod gguf;
pub mod gguf_model;
pub mod hf_config;
pub mod json;
pub mod resolve;
pub mod safetensors;
pub mod source;
pub mod spm;
pub mod tokenizer;
pub mod transform;
pub mod weights;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::prelude::*;

use crate::error::Result;
use crate::model::{ModelConfig, Transformer};

pub use error::{ImportError, ImportErrorKind};
pub use hf_config::HfConfig;
pub use resolve::{hub_cache_root, resolve, resolve_in, ModelLocation};
pub use tokenizer::{read_text_file, Encoded, TextTokenizer};

use self::safetensors::SafetensorsSource;
use gguf::GgufFile;
use gguf_model::GgufSource;

/// A pretrained model ready to analyze.
pub struct Imported<B: Backend> {
    /// The weights in sinkscope's transformer.
    pub model: Transformer<B>,
    /// The switches it was built with (also `model.config`).
    pub config: ModelConfig,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// The Hugging Face `model_type` (`llama`, `mistral`, `xlm-roberta`, …) or, for GGUF,
    /// `gguf:{architecture}`.
    pub family: String,
    /// The folder or file it was read from.
    pub source: PathBuf,
}

impl<B: Backend> Imported<B> {
    /// Tokenizes `text` and checks the ids fit the model: every id inside the embedding
    /// matrix and, for absolute positions, the length inside the position table (either
    /// would otherwise fail deep inside the forward pass).
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self.tokenizer.encode(text)?;
        let problem = if let Some(&id) = enc
            .ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            Some(format!(
                "token id {id} lies outside the model's {} embeddings",
                self.config.vocab_size
            ))
        } else if self.config.position.is_absolute() && enc.ids.len() > self.config.max_seq_len {
            Some(format!(
                "{} tokens exceed the {} positions the model has",
                enc.ids.len(),
                self.config.max_seq_len
            ))
        } else {
            None
        };
        match problem {
            Some(p) => Err(ImportErrorKind::Tokenizer(p).at(&self.source).into()),
            None => Ok(enc),
        }
    }
}

/// Loads the model that `model` names (folder, `.gguf` file, or cached hub id) on `device`.
pub fn load<B: Backend>(model: &str, device: &B::Device) -> Result<Imported<B>> {
    load_from(&resolve(model)?, device)
}

/// Loads a resolved model location.
pub fn load_from<B: Backend>(location: &ModelLocation, device: &B::Device) -> Result<Imported<B>> {
    match location {
        ModelLocation::HfFolder(dir) => load_hf_folder(dir, device),
        ModelLocation::Gguf(path) => load_gguf(path, device),
    }
}

/// The family covering config.json's `model_type`.
fn family_of(path: &Path, hf: &HfConfig) -> Result<&'static families::Family> {
    let Some(model_type) = hf.model_type.as_deref() else {
        return Err(
            HfConfig::error_at(path, hf_config::field_error("model_type", "missing")).into(),
        );
    };
    families::by_model_type(model_type).ok_or_else(|| {
        ImportErrorKind::UnknownModelType {
            found: model_type.to_string(),
            supported: families::supported_model_types(),
        }
        .at(path)
        .into()
    })
}

/// config.json of `dir`, its family, and the validated sinkscope config it resolves to.
fn read_hf_config(dir: &Path) -> Result<(HfConfig, &'static families::Family, ModelConfig)> {
    let path = dir.join("config.json");
    let hf = HfConfig::read(&path)?;
    let family = family_of(&path, &hf)?;
    let cfg = (family.config)(&hf).map_err(|e| HfConfig::error_at(&path, e))?;
    cfg.validate(&path.display().to_string())?;
    Ok((hf, family, cfg))
}

/// The sinkscope config of a Hugging Face folder, without reading weights.
pub fn hf_model_config(dir: &Path) -> Result<ModelConfig> {
    Ok(read_hf_config(dir)?.2)
}

/// Loads a Hugging Face model folder.
pub fn load_hf_folder<B: Backend>(dir: &Path, device: &B::Device) -> Result<Imported<B>> {
    let (hf, family, cfg) = read_hf_config(dir)?;
    let table = (family.table)(&hf);
    let tokenizer = TextTokenizer::from_hf_folder(dir, hf.bos_id())?;
    let source = SafetensorsSource::open_folder(dir)?;
    let model = weights::load_weights(
        &cfg,
        &table.bindings(cfg.n_layers),
        Rc::new(source),
        &|name| table.is_ignorable(name, cfg.tie_embeddings),
        family.name,
        device,
    )?;
    Ok(Imported {
        model,
        config: cfg,
        tokenizer,
        family: hf.model_type.unwrap_or_default(),
        source: dir.to_path_buf(),
    })
}

/// Loads a llama.cpp GGUF file.
pub fn load_gguf<B: Backend>(path: &Path, device: &B::Device) -> Result<Imported<B>> {
    let file = GgufFile::open(path)?;
    let cfg = gguf_model::config(&file)?;
    cfg.validate(&path.display().to_string())?;
    let arch = file.architecture()?.to_string();
    let tokenizer = TextTokenizer::from_gguf_vocab(gguf_model::vocab(&file)?, path)?;
    let table = gguf_model::table(&file)?;
    let model = weights::load_weights(
        &cfg,
        &table.bindings(cfg.n_layers),
        Rc::new(GgufSource::new(file)?),
        &|name| table.is_ignorable(name, cfg.tie_embeddings),
        &format!("GGUF {arch}"),
        device,
    )?;
    Ok(Imported {
        model,
        config: cfg,
        tokenizer,
        family: format!("gguf:{arch}"),
        source: path.to_path_buf(),
    })
}
