//! Pretrained weights into the one sinkscope transformer: Hugging Face folders (local or
//! in the hub cache; safetensors or `pytorch_model.bin`, single or sharded; with or
//! without the output head; sentence-transformers folders) and llama.cpp GGUF files.
//!
//! [`load`] is the entry point: it resolves the MODEL argument ([`resolve`]), reads the
//! config into a [`ModelConfig`] through the family's switches ([`families`], or
//! [`gguf_model`] for GGUF), fills a lazily declared model from the checkpoint strictly
//! ([`weights`]: every parameter found with its shape, every tensor used or explicitly
//! ignorable), and loads the tokenizer ([`tokenizer`]).

pub mod charsmap;
pub mod error;
pub mod families;
pub mod gguf;
pub mod gguf_model;
pub mod hf_config;
pub mod json;
pub mod multimodal;
pub mod pytorch;
pub mod resolve;
pub mod safetensors;
pub mod sharded;
pub mod source;
pub mod spm;
pub mod tokenizer;
pub mod transform;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;

use crate::error::Result;
use crate::model::{ModelConfig, Transformer};

pub use error::{ImportError, ImportErrorKind};
pub use hf_config::HfConfig;
pub use resolve::{
    hub_cache_root, resolve, resolve_in, series, series_in, ModelLocation, Revision,
};
pub use tokenizer::{read_text_file, Encoded, TextTokenizer};
pub use weights::{CheckpointBlocks, Residence};

use families::Table;
use gguf::GgufFile;
use gguf_model::GgufSource;
use source::TensorSource;

/// A pretrained model ready to analyze.
#[derive(Debug)]
pub struct Imported<B: Backend> {
    /// The weights in sinkscope's transformer: all of them, or with the blocks read
    /// from the checkpoint when a forward pass reaches them ([`Residence`]).
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
    /// Whether the checkpoint has its output head. A head-less one (`BertModel`,
    /// sentence-transformers, `LlamaModel` without `lm_head`) is run with its embedding
    /// matrix as a read-out so the forward pass keeps one shape, but its logits are not
    /// the model's: loss, output KL and Fisher information are left out for it.
    pub head: bool,
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

/// Loads the model that `model` names (folder, `.gguf` file, or cached hub id) on `device`,
/// every weight in memory.
pub fn load<B: Backend>(model: &str, device: &B::Device) -> Result<Imported<B>> {
    load_with(model, Residence::InMemory, device)
}

/// Loads the model that `model` names with its blocks' weights in memory or read on
/// demand ([`Residence`]).
pub fn load_with<B: Backend>(
    model: &str,
    residence: Residence,
    device: &B::Device,
) -> Result<Imported<B>> {
    load_located(&resolve(model)?, residence, device)
}

/// Loads a resolved model location, every weight in memory.
pub fn load_from<B: Backend>(location: &ModelLocation, device: &B::Device) -> Result<Imported<B>> {
    load_located(location, Residence::InMemory, device)
}

/// Loads a resolved model location with its blocks in memory or read on demand.
pub fn load_located<B: Backend>(
    location: &ModelLocation,
    residence: Residence,
    device: &B::Device,
) -> Result<Imported<B>> {
    match location {
        ModelLocation::HfFolder(dir) => load_hf_folder(dir, residence, device),
        ModelLocation::Gguf(path) => load_gguf(path, residence, device),
    }
}

/// The family covering config.json's `model_type`; `field` is where the config keeps it.
fn family_of(path: &Path, hf: &HfConfig, field: &str) -> Result<&'static families::Family> {
    let Some(model_type) = hf.model_type.as_deref() else {
        return Err(HfConfig::error_at(path, hf_config::field_error(field, "missing")).into());
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

/// What config.json of a Hugging Face folder says.
struct FolderConfig {
    /// The config of the model analyzed: the text decoder's for a multimodal wrapper.
    hf: HfConfig,
    family: &'static families::Family,
    /// The validated sinkscope config.
    cfg: ModelConfig,
    /// The wrapper's `model_type` when the decoder sits inside a multimodal model.
    wrapper: Option<String>,
}

/// config.json of `dir`, its family, and the validated sinkscope config it resolves to.
/// A multimodal wrapper's decoder is read from `text_config` ([`multimodal`]), and
/// errors in it name the nested field.
fn read_hf_config(dir: &Path) -> Result<FolderConfig> {
    let path = dir.join("config.json");
    let outer = HfConfig::read(&path)?;
    let (hf, wrapper, nested) = match multimodal::text_decoder_config(&outer) {
        Some(text) => (text, outer.model_type, "text_config."),
        None => (outer, None, ""),
    };
    let family = family_of(&path, &hf, &format!("{nested}model_type"))?;
    let cfg = (family.config)(&hf).map_err(|(field, message)| {
        HfConfig::error_at(&path, (format!("{nested}{field}"), message))
    })?;
    cfg.validate_switches(&path.display().to_string())?;
    Ok(FolderConfig {
        hf,
        family,
        cfg,
        wrapper,
    })
}

/// The weights of `source` in a transformer for `cfg` through `table`, with the head
/// switched off when the checkpoint has none ([`weights::headless_config`]); notes what
/// was left out. Returns the model, the config it was built with, and whether it has
/// its head.
#[allow(
    clippy::too_many_arguments,
    reason = "the config and where it came from, the checkpoint, how to hold it"
)]
fn load_checked<B: Backend>(
    cfg: ModelConfig,
    config_file: &Path,
    table: &Table,
    source: Arc<dyn TensorSource>,
    family: &str,
    residence: Residence,
    device: &B::Device,
) -> Result<(Transformer<B>, ModelConfig, bool)> {
    check_size(&cfg, config_file, residence, source.as_ref())?;
    if let Some(note) = source::left_out_note(source.as_ref()) {
        tracing::info!("{note}");
    }
    let bindings = table.bindings(cfg.n_layers);
    let headless = weights::headless_config::<B>(&cfg, &bindings, source.as_ref(), device);
    let head = headless.is_none();
    let cfg = headless.unwrap_or(cfg);
    if !head {
        tracing::info!(
            "{}: the checkpoint has no output head; attention and hidden states are analyzed, \
             what needs the head (loss, output KL, Fisher) is left out",
            source.origin().display()
        );
    }
    let model = weights::load_weights(
        &cfg,
        &bindings,
        Arc::clone(&source),
        &|name| table.is_ignorable(name, cfg.tie_embeddings),
        family,
        residence,
        device,
    )?;
    Ok((model, cfg, head))
}

/// Refuses, before anything per layer is built, a model that cannot be held as
/// `residence` holds it: in memory, its whole f32 copy must fit in the available memory;
/// read on demand, the parts outside the blocks and one block must, and the checkpoint
/// must hold at least a tensor per block (a config claiming more layers than that is
/// refused with the size it claims). `config_file` names the config in the error.
fn check_size(
    cfg: &ModelConfig,
    config_file: &Path,
    residence: Residence,
    source: &dyn TensorSource,
) -> Result<()> {
    use crate::model::budget::{check_fits, human, model_bytes};
    let what = config_file.display().to_string();
    let refuse = |m: String| crate::Error::config(&what, "model", m);
    match residence {
        Residence::InMemory => check_fits("this model", model_bytes(cfg)).map_err(refuse),
        Residence::OnDemand => {
            let tensors = source.names().len();
            if cfg.n_layers > tensors {
                let claimed = model_bytes(cfg).map_or("more than 18 EB".into(), human);
                return Err(refuse(format!(
                    "{} layers ({claimed} in f32) in a checkpoint of {tensors} tensors",
                    cfg.n_layers
                )));
            }
            let one_block = ModelConfig {
                n_layers: 1,
                ..cfg.clone()
            };
            check_fits("this model read block by block", model_bytes(&one_block)).map_err(refuse)
        }
    }
}

/// Loads a Hugging Face model folder.
pub fn load_hf_folder<B: Backend>(
    dir: &Path,
    residence: Residence,
    device: &B::Device,
) -> Result<Imported<B>> {
    let FolderConfig {
        hf,
        family,
        cfg,
        wrapper,
    } = read_hf_config(dir)?;
    let table = (family.table)(&hf);
    let tokenizer = TextTokenizer::from_hf_folder(dir, hf.bos_id())?;
    let stored = source::open_folder(dir)?;
    let text_name = hf.model_type.unwrap_or_default();
    let (source, name): (Arc<dyn TensorSource>, String) = match wrapper {
        None => (Arc::from(stored), text_name),
        Some(wrapper) => {
            let text = multimodal::TextDecoderSource::new(stored);
            tracing::info!(
                "{}: a multimodal {wrapper} checkpoint; its text decoder ({text_name}) is \
                 analyzed, the other {} tensors (vision tower, projector) are left out",
                dir.display(),
                text.others()
            );
            (Arc::new(text), format!("{wrapper} ({text_name})"))
        }
    };
    let config_file = dir.join("config.json");
    let (model, config, head) = load_checked(
        cfg,
        &config_file,
        table,
        source,
        family.name,
        residence,
        device,
    )?;
    Ok(Imported {
        model,
        config,
        tokenizer,
        family: name,
        source: dir.to_path_buf(),
        head,
    })
}

/// Loads a llama.cpp GGUF file.
pub fn load_gguf<B: Backend>(
    path: &Path,
    residence: Residence,
    device: &B::Device,
) -> Result<Imported<B>> {
    let file = GgufFile::open(path)?;
    let cfg = gguf_model::config(&file)?;
    cfg.validate_switches(&path.display().to_string())?;
    let arch = file.architecture()?.to_string();
    let tokenizer = TextTokenizer::from_gguf_vocab(gguf_model::vocab(&file)?, path)?;
    let table = gguf_model::table(&file)?;
    let (model, config, head) = load_checked(
        cfg,
        path,
        table,
        Arc::new(GgufSource::new(file)?),
        &format!("GGUF {arch}"),
        residence,
        device,
    )?;
    Ok(Imported {
        model,
        config,
        tokenizer,
        family: format!("gguf:{arch}"),
        source: path.to_path_buf(),
        head,
    })
}

/// Every float tensor of a checkpoint as stored, for `spectra`: a `.safetensors`, `.bin`
/// or `.gguf` file (GGUF tensors dequantized), anything [`resolve`] accepts as a model
/// (safetensors or `pytorch_model.bin`, single or sharded), or a folder holding such
/// files without config.json (a sinkscope checkpoint).
pub fn open_tensors(path: &Path) -> Result<Box<dyn TensorSource>> {
    let ext = |e: &str| path.extension().is_some_and(|x| x.eq_ignore_ascii_case(e));
    if path.is_file() {
        return Ok(if ext("gguf") {
            Box::new(GgufSource::new(GgufFile::open(path)?)?)
        } else if ext("bin") || ext("pt") || ext("pth") {
            Box::new(pytorch::PytorchSource::open_file(path)?)
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".index.json"))
        {
            if path.to_string_lossy().ends_with(pytorch::INDEX_FILE) {
                Box::new(pytorch::PytorchSource::open_index(path)?)
            } else {
                Box::new(safetensors::SafetensorsSource::open_index(path)?)
            }
        } else {
            Box::new(safetensors::SafetensorsSource::open_file(path)?)
        });
    }
    match resolve(&path.to_string_lossy()) {
        Ok(ModelLocation::HfFolder(dir)) => Ok(source::open_folder(&dir)?),
        Ok(ModelLocation::Gguf(file)) => Ok(Box::new(GgufSource::new(GgufFile::open(&file)?)?)),
        // A folder of weights without config.json (a sinkscope checkpoint, a bare
        // download): its checkpoint files alone.
        Err(_) if path.is_dir() => Ok(source::open_folder(path)?),
        Err(e) => Err(e.into()),
    }
}
