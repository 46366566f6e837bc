//! SmolLM3 (transformers `modeling_smollm3.py`): a Llama decoder in which some layers
//! rotate q and k and others do not (`no_rope_layers`: 1 = RoPE, 0 = NoPE; by default
//! every `no_rope_layer_interval`-th layer is NoPE) — the paper's position-encoding
//! question inside one network. Llama's tensor names; the NoPE layers are a
//! [`LayerOverride`] each.

use crate::import::families::llama;
use crate::import::families::{Family, Table};
use crate::import::hf_config::{field_error, FieldError, HfConfig};
use crate::model::{LayerOverride, ModelConfig, PositionConfig, PositionKind};

/// The family.
pub const FAMILY: Family = Family {
    name: "smollm3",
    model_types: &["smollm3"],
    config,
    table,
};

fn table(hf: &HfConfig) -> &'static Table {
    llama::table(hf)
}

fn config(hf: &HfConfig) -> Result<ModelConfig, FieldError> {
    let mut cfg = llama::config(hf)?;
    let n = cfg.n_layers;
    let rope_layers: Vec<u8> = match &hf.no_rope_layers {
        Some(v) if v.len() == n => v.clone(),
        Some(v) => {
            return Err(field_error(
                "no_rope_layers",
                format!("lists {} layers, the model has {n}", v.len()),
            ))
        }
        None => {
            let every = hf.no_rope_layer_interval.unwrap_or(4).max(1);
            (0..n).map(|i| u8::from((i + 1) % every != 0)).collect()
        }
    };
    let nope: Vec<usize> = (0..n).filter(|&i| rope_layers[i] == 0).collect();
    if !nope.is_empty() {
        cfg.layers.push(LayerOverride {
            layers: nope,
            position: Some(PositionConfig {
                kind: PositionKind::None,
                ..cfg.position
            }),
            ..LayerOverride::default()
        });
    }
    Ok(cfg)
}
