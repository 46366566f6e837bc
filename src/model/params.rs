//! Parameter names and identities.
//!
//! burn keys optimiser state by `ParamId`, a random number drawn when a parameter is
//! created. Weights reloaded from safetensors into a fresh model get new ids, so a
//! checkpoint records name → id and [`with_param_ids`] restores them, letting the
//! saved AdamW moments find their parameters again.

use std::collections::BTreeMap;

use burn::module::{ModuleMapper, Param, ParamId};
use burn::prelude::*;
use burn::store::ModuleSnapshot;

use crate::error::{Error, Result};
use crate::model::Transformer;

/// Dotted name (`blocks.0.attn.q.weight`) → parameter id of every float parameter.
pub fn param_ids<B: Backend>(model: &Transformer<B>) -> BTreeMap<String, u64> {
    model
        .collect(None, None, false)
        .into_iter()
        .filter_map(|s| s.tensor_id.map(|id| (s.full_path(), id.val())))
        .collect()
}

/// Dotted name → shape of every float parameter.
pub fn param_shapes<B: Backend>(model: &Transformer<B>) -> BTreeMap<String, Vec<usize>> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect()
}

struct AssignIds<'a> {
    ids: &'a BTreeMap<String, u64>,
    path: Vec<String>,
    missing: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for AssignIds<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.path.join(".");
        match self.ids.get(&name) {
            Some(&id) => {
                let (_, value, mapper) = param.consume();
                Param::from_mapped_value(ParamId::from(id), value, mapper)
            }
            None => {
                self.missing.push(name);
                param
            }
        }
    }
}

/// Gives every parameter of `model` the id recorded for its name.
pub fn with_param_ids<B: Backend>(
    model: Transformer<B>,
    ids: &BTreeMap<String, u64>,
) -> Result<Transformer<B>> {
    let mut m = AssignIds {
        ids,
        path: Vec::new(),
        missing: Vec::new(),
    };
    let model = model.map(&mut m);
    if m.missing.is_empty() {
        Ok(model)
    } else {
        Err(Error::Checkpoint(format!(
            "checkpoint records no id for {}",
            m.missing.join(", ")
        )))
    }
}
