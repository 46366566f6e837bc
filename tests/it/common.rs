//! Shared helpers: the binary, small models and recipes for fast tests.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use sinkscope::model::{ModelConfig, PositionKind};
use sinkscope::train::recipe::{DataConfig, Recipe, TrainConfig};

/// The repository root.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary from the repository root with `env` set, checks that it did not
/// panic, and returns its exit code, stdout and stderr.
pub(crate) fn sinkscope_with<K, V>(args: &[&str], env: &[(K, V)]) -> (i32, String, String)
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_sinkscope"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root())
        .output()
        .expect("run sinkscope");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("internal error")
            && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr,
    )
}

/// [`sinkscope_with`] without extra environment.
pub(crate) fn sinkscope(args: &[&str]) -> (i32, String, String) {
    sinkscope_with::<&str, &str>(args, &[])
}

/// A tiny decoder config with the given position encoding.
pub(crate) fn tiny_model(kind: PositionKind) -> ModelConfig {
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
pub(crate) fn tiny_recipe(model: ModelConfig, steps: usize) -> Recipe {
    Recipe {
        name: "test".into(),
        seed: 7,
        out: None,
        device: Default::default(),
        devices: Vec::new(),
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
