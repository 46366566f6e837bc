//! Filling a skeleton transformer from a checkpoint, strictly (nanoGPT's rule): every
//! parameter must find its tensor with a fitting shape, and every tensor in the checkpoint
//! must be used or be on the family's ignorable list, before any data is read. A silent
//! partial load is the worst bug an analysis tool can have.
//!
//! The tensors are then handed to burn-store as lazy snapshots: each is read, converted to
//! f32 and transformed only when burn applies it, so peak memory stays near one f32 copy
//! of the model.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, TensorSnapshot, TensorSnapshotError};
use burn::tensor::DType;

use crate::error::Result;
use crate::import::error::ImportErrorKind;
use crate::import::families::Binding;
use crate::import::source::TensorSource;
use crate::import::transform::{self, Op};
use crate::model::{ModelConfig, Transformer};

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

/// A snapshot that reads, converts and transforms its tensor only when burn applies it.
fn lazy_snapshot(source: &Rc<dyn TensorSource>, p: Planned) -> TensorSnapshot {
    let Planned {
        param,
        tensor,
        stored,
        expected,
        ops,
    } = p;
    let source = Rc::clone(source);
    let read = move || -> Result<TensorData, TensorSnapshotError> {
        let data = source
            .read_f32(&tensor)
            .map_err(|e| TensorSnapshotError::DataError(e.to_string()))?;
        let (data, shape) = transform::apply(data, stored.clone(), &ops)
            .map_err(|e| TensorSnapshotError::DataError(format!("tensor `{tensor}`: {e}")))?;
        Ok(TensorData::new(data, shape))
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

/// A transformer for `cfg` on `device` with every parameter read from `source` through
/// `bindings`; tensors nobody reads must satisfy `is_ignorable`. `family` names the table
/// in errors.
pub fn load_weights<B: Backend>(
    cfg: &ModelConfig,
    bindings: &[Binding],
    source: Rc<dyn TensorSource>,
    is_ignorable: &dyn Fn(&str) -> bool,
    family: &str,
    device: &B::Device,
) -> Result<Transformer<B>> {
    let mut model = Transformer::<B>::skeleton(cfg, device);
    let planned = plan(&model, cfg, bindings, source.as_ref(), is_ignorable, family)?;
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
