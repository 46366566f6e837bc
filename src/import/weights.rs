//! Filling a skeleton transformer from a checkpoint, strictly (nanoGPT's rule): every
//! parameter must find its tensor with a fitting shape, and every tensor in the checkpoint
//! must be used or be on the family's ignorable list, before any data is read. A silent
//! partial load is the worst bug an analysis tool can have.
//!
//! The tensors are then handed to burn-store as lazy snapshots: each is read, converted to
//! f32 and transformed only when burn applies it, so peak memory stays near one f32 copy
//! of the model. Or, [`Residence::OnDemand`], only the parts outside the blocks are read
//! now, and each block is read when a forward pass reaches it ([`CheckpointBlocks`]), so
//! memory holds one block in f32 at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use rayon::prelude::*;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, TensorSnapshot, TensorSnapshotError};
use burn::tensor::DType;

use crate::error::Result;
use crate::import::error::ImportErrorKind;
use crate::import::families::Binding;
use crate::import::source::TensorSource;
use crate::import::transform::{self, Op};
use crate::model::{BlockWeights, ModelConfig, OnDemand, Transformer};

/// Collects dotted names and shapes of float parameters without materialising them
/// (burn-store's collector reads each value, which would allocate a lazy skeleton).
#[derive(Default)]
struct LazyShapes {
    path: Vec<String>,
    out: Vec<(String, Vec<usize>)>,
}

impl<B: Backend> ModuleVisitor<B> for LazyShapes {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out
            .push((self.path.join("."), param.lazy_shape().to_vec()));
    }
}

/// Dotted name → shape of every float parameter of `model`, in module order, read without
/// initialising lazy parameters.
pub fn lazy_param_shapes<B: Backend>(model: &Transformer<B>) -> Vec<(String, Vec<usize>)> {
    let mut v = LazyShapes::default();
    model.visit(&mut v);
    v.out
}

/// The base-model prefixes checkpoints are published with: `bert.`/`roberta.` (encoders
/// saved from a task class), `model.` (Llama-style decoders, and encoders wrapped by other
/// libraries), `transformer.` (GPT-2), `gpt_neox.` (Pythia), and none (the bare base class:
/// `BertModel`, `LlamaModel`, sentence-transformers folders). A family's table names one
/// of them; the others are tried when its names are absent.
pub const PUBLISHED_PREFIXES: &[&str] =
    &["bert.", "roberta.", "model.", "transformer.", "gpt_neox."];

/// `name` without any published prefix.
fn bare(name: &str) -> &str {
    PUBLISHED_PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

/// The first of `candidates` the source holds, else the first one held under another
/// published prefix (or none), with its stored shape.
fn find_tensor(source: &dyn TensorSource, candidates: &[String]) -> Option<(String, Vec<usize>)> {
    let exact = candidates
        .iter()
        .find_map(|name| source.shape(name).map(|shape| (name.clone(), shape)));
    exact.or_else(|| {
        candidates.iter().find_map(|name| {
            let stem = bare(name);
            std::iter::once("")
                .chain(PUBLISHED_PREFIXES.iter().copied())
                .map(|p| format!("{p}{stem}"))
                .find_map(|n| source.shape(&n).map(|shape| (n, shape)))
        })
    })
}

/// Whether a sinkscope parameter belongs to the output head (BERT's transform, the LM
/// projection, a tied head's bias) rather than to the body every analysis runs on.
fn is_head_param(param: &str) -> bool {
    param.starts_with("head_transform.") || param.starts_with("lm_head.") || param == "lm_bias"
}

/// For a checkpoint published without its output head (`BertModel`, `XLMRobertaModel`,
/// sentence-transformers folders, a decoder's `*Model` class without `lm_head`): `cfg`
/// with the head switched off — no head transform, no bias, the embedding matrix as a
/// read-out — when every head parameter `cfg` asks for is absent from `source`. None when
/// the head is there (or is the tied embedding itself, as in GPT-2 and SmolLM2); a head
/// present only in part stays an error of the strict load. Logits of a head-less model
/// are not the checkpoint's outputs: callers must not report anything computed from them.
pub fn headless_config<B: Backend>(
    cfg: &ModelConfig,
    bindings: &[Binding],
    source: &dyn TensorSource,
    device: &B::Device,
) -> Option<ModelConfig> {
    let skeleton = Transformer::<B>::skeleton(cfg, device);
    let by_param: BTreeMap<&str, &Binding> =
        bindings.iter().map(|b| (b.param.as_str(), b)).collect();
    let head: Vec<String> = lazy_param_shapes(&skeleton)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| is_head_param(p))
        .collect();
    let absent = |p: &String| {
        by_param
            .get(p.as_str())
            .is_none_or(|b| find_tensor(source, &b.candidates).is_none())
    };
    (!head.is_empty() && head.iter().all(absent)).then(|| ModelConfig {
        head_transform: false,
        lm_head_bias: false,
        tie_embeddings: true,
        ..cfg.clone()
    })
}

/// A parameter's source, checked: the tensor found, its stored shape, the steps.
struct Planned {
    param: String,
    tensor: String,
    stored: Vec<usize>,
    expected: Vec<usize>,
    ops: Vec<Op>,
}

/// Matches every parameter of a skeleton for `cfg` with its tensor and checks shapes,
/// dtypes and leftovers; nothing is read yet.
fn plan<B: Backend>(
    skeleton: &Transformer<B>,
    cfg: &ModelConfig,
    bindings: &[Binding],
    source: &dyn TensorSource,
    is_ignorable: &dyn Fn(&str) -> bool,
    family: &str,
) -> Result<Vec<Planned>> {
    let by_param: BTreeMap<&str, &Binding> =
        bindings.iter().map(|b| (b.param.as_str(), b)).collect();
    let mut planned = Vec::new();
    let mut used = BTreeSet::new();
    for (param, expected) in lazy_param_shapes(skeleton) {
        let Some(binding) = by_param.get(param.as_str()) else {
            return Err(ImportErrorKind::Apply(format!(
                "the {family} table has no rule for parameter {param}"
            ))
            .at(source.origin())
            .into());
        };
        let found = find_tensor(source, &binding.candidates);
        let Some((tensor, stored)) = found else {
            return Err(ImportErrorKind::MissingTensor {
                tensor: binding.candidates[0].clone(),
                param,
            }
            .at(source.origin())
            .into());
        };
        let ops = binding.how.ops(cfg, expected.len());
        let fits = transform::derive_shape(&stored, &ops).is_ok_and(|s| s == expected);
        if !fits {
            return Err(ImportErrorKind::ShapeMismatch {
                tensor: tensor.clone(),
                shape: stored,
                param,
                expected,
                how: transform::describe(&ops),
            }
            .at(source.file_of(&tensor))
            .into());
        }
        source.check_readable(&tensor)?;
        used.insert(tensor.clone());
        planned.push(Planned {
            param,
            tensor,
            stored,
            expected,
            ops,
        });
    }
    let mut unused: Vec<String> = source
        .names()
        .into_iter()
        .filter(|n| !used.contains(n) && !is_ignorable(n))
        .collect();
    if !unused.is_empty() {
        unused.sort();
        return Err(ImportErrorKind::UnusedTensors {
            family: family.to_string(),
            tensors: unused,
        }
        .at(source.origin())
        .into());
    }
    Ok(planned)
}

impl Planned {
    /// Reads the tensor, converts it to f32 and transforms it into the parameter's shape.
    fn read(&self, source: &dyn TensorSource) -> Result<TensorData> {
        let data = source.read_f32(&self.tensor)?;
        let (data, shape) =
            transform::apply(data, self.stored.clone(), &self.ops).map_err(|e| {
                ImportErrorKind::Apply(format!("tensor `{}`: {e}", self.tensor))
                    .at(source.file_of(&self.tensor))
            })?;
        Ok(TensorData::new(data, shape))
    }
}

/// A snapshot that reads, converts and transforms its tensor only when burn applies it.
fn lazy_snapshot(source: &Arc<dyn TensorSource>, p: Planned) -> TensorSnapshot {
    let source = Arc::clone(source);
    let (param, expected) = (p.param.clone(), p.expected.clone());
    let read = move || -> Result<TensorData, TensorSnapshotError> {
        p.read(source.as_ref())
            .map_err(|e| TensorSnapshotError::DataError(e.to_string()))
    };
    TensorSnapshot::from_closure(
        Rc::new(read),
        DType::F32,
        expected.into(),
        param.split('.').map(str::to_string).collect(),
        Vec::new(),
        ParamId::new(),
    )
}

/// Where an imported model's block weights live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Residence {
    /// Every weight in memory as f32: what gradients of every weight need (`--fisher`),
    /// and faster for many forward passes (`ablate`, when the model fits).
    #[default]
    InMemory,
    /// Embeddings, final norm and head in memory; each block read from the checkpoint
    /// (memory-mapped) when a forward pass reaches it, converted to f32 for that block
    /// only and dropped after: memory holds one block instead of the model.
    OnDemand,
}

/// An imported model's blocks, read from its checkpoint one at a time. The plan was
/// checked when the model was loaded (every parameter found, shapes fit, dtypes
/// readable), so a read only converts.
pub struct CheckpointBlocks {
    source: Arc<dyn TensorSource>,
    /// Per block, its parameters, named inside the block.
    layers: Vec<Vec<Planned>>,
}

impl fmt::Debug for CheckpointBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CheckpointBlocks({}, {} blocks)",
            self.source.origin().display(),
            self.layers.len()
        )
    }
}

impl BlockWeights for CheckpointBlocks {
    fn read(&self, layer: usize) -> Result<Vec<(Vec<String>, TensorData)>> {
        let Some(params) = self.layers.get(layer) else {
            return Err(ImportErrorKind::Apply(format!(
                "no block {layer} (the model has {})",
                self.layers.len()
            ))
            .at(self.source.origin())
            .into());
        };
        // Tensors of a block converted side by side (bf16 → f32 is bound by memory
        // bandwidth; both cores are faster than one).
        params
            .par_iter()
            .map(|p| {
                let path = p.param.split('.').map(str::to_string).collect();
                Ok((path, p.read(self.source.as_ref())?))
            })
            .collect()
    }
}

/// `planned` split into the parameters outside the blocks and, per block, its own
/// (renamed from `blocks.{i}.attn.q.weight` to `attn.q.weight`).
fn split_blocks(planned: Vec<Planned>, n_layers: usize) -> (Vec<Planned>, Vec<Vec<Planned>>) {
    let mut outside = Vec::new();
    let mut layers: Vec<Vec<Planned>> = (0..n_layers).map(|_| Vec::new()).collect();
    for mut p in planned {
        let inside = p.param.strip_prefix("blocks.").and_then(|rest| {
            let (i, name) = rest.split_once('.')?;
            Some((i.parse::<usize>().ok()?, name.to_string()))
        });
        match inside {
            Some((i, name)) if i < n_layers => {
                p.param = name;
                layers[i].push(p);
            }
            _ => outside.push(p),
        }
    }
    (outside, layers)
}

/// A transformer for `cfg` on `device` with every parameter read from `source` through
/// `bindings` — all now, or the blocks' on demand ([`Residence`]); tensors nobody reads
/// must satisfy `is_ignorable`. `family` names the table in errors.
pub fn load_weights<B: Backend>(
    cfg: &ModelConfig,
    bindings: &[Binding],
    source: Arc<dyn TensorSource>,
    is_ignorable: &dyn Fn(&str) -> bool,
    family: &str,
    residence: Residence,
    device: &B::Device,
) -> Result<Transformer<B>> {
    let mut model = Transformer::<B>::skeleton(cfg, device);
    let planned = plan(&model, cfg, bindings, source.as_ref(), is_ignorable, family)?;
    let planned = match residence {
        Residence::InMemory => planned,
        Residence::OnDemand => {
            let (outside, layers) = split_blocks(planned, cfg.n_layers);
            model.blocks.clear();
            model.on_demand = Some(OnDemand(Arc::new(CheckpointBlocks {
                source: Arc::clone(&source),
                layers,
            })));
            outside
        }
    };
    let snapshots = planned
        .into_iter()
        .map(|p| lazy_snapshot(&source, p))
        .collect();
    let result = model.apply(snapshots, None, None, false);
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
        return Err(ImportErrorKind::Apply(format!(
            "errors {errors:?}, parameters left unfilled {missing:?}, snapshots unused {:?}",
            result.unused
        ))
        .at(source.origin())
        .into());
    }
    Ok(model)
}
