//! Shared helpers: small models and recipes for fast tests.

use std::path::PathBuf;

use sinkscope::model::{ModelConfig, PositionKind};
use sinkscope::train::recipe::{DataConfig, Recipe, TrainConfig};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tiny decoder config with the given position encoding.
pub fn tiny_model(kind: PositionKind) -> ModelConfig {
    let mut m = ModelConfig {
        vocab_size: 259,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        d_ff: 64,
        max_seq_len: 32,
        ..Default::default()
    };
    m.position.kind = kind;
    m
}

/// A recipe training `model` briefly on the bundled corpus.
pub fn tiny_recipe(model: ModelConfig, steps: usize) -> Recipe {
    Recipe {
        name: "test".into(),
        seed: 7,
        out: None,
        device: Default::default(),
        model,
        data: DataConfig {
            train: root().join("datasets/kjv/train.txt.gz"),
            heldout: Some(root().join("datasets/kjv/heldout.txt.gz")),
            seq_len: 32,
            bos: true,
            ..Default::default()
        },
        train: TrainConfig {
            steps,
            batch_size: 8,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 5,
            eval_every: 0,
            eval_batches: 2,
            checkpoint_every: 0,
            log_every: 0,
            ..Default::default()
        },
        hooks: Default::default(),
        base_dir: root(),
    }
}
