//! The benchmark models, data and step shared by `train.rs` (criterion) and `peer.rs`
//! (the Rust side of `torch_peer.py`).

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::optim::adaptor::OptimizerAdaptor;
use sinkscope::model::{ModelConfig, Transformer};
use sinkscope::train::adamw::FusedAdamW;
use sinkscope::train::data::{bytes, Corpus};
use sinkscope::train::recipe::{DataConfig, TrainConfig};
use sinkscope::train::trainer::{adamw, optimizer_step};

/// The training backend of `sinkscope train` on a CPU.
pub(crate) type B = Autodiff<Flex>;

/// The benchmark decoders: byte vocabulary, d_ff = 4d, the crate's defaults
/// otherwise (pre-LN, LayerNorm, GELU, RoPE, tied embeddings, no biases).
pub(crate) fn model(d: usize, layers: usize, heads: usize, t: usize) -> ModelConfig {
    ModelConfig {
        vocab_size: bytes::VOCAB_SIZE,
        d_model: d,
        n_layers: layers,
        n_heads: heads,
        d_ff: 4 * d,
        max_seq_len: t,
        ..Default::default()
    }
}

/// The bundled corpus in windows of `t` tokens.
pub(crate) fn corpus(t: usize) -> Corpus {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = DataConfig {
        train: root.join("datasets/kjv/train.txt.gz"),
        heldout: Some(root.join("datasets/kjv/heldout.txt.gz")),
        seq_len: t,
        bos: true,
        ..Default::default()
    };
    Corpus::load(&data, true, |p| p.to_path_buf()).expect("bundled corpus")
}

/// A model, its optimiser and its data, stepped one full optimiser step at a time.
pub(crate) struct Trainer {
    model: Option<Transformer<B>>,
    optim: OptimizerAdaptor<FusedAdamW, Transformer<B>, B>,
    data: Corpus,
    batch: usize,
    step: usize,
}

impl Trainer {
    /// The benchmark model `cfg` (seed 1) with batches of `batch` windows.
    pub(crate) fn new(cfg: &ModelConfig, batch: usize) -> Self {
        // As the `sinkscope` binary does at start-up.
        sinkscope::model::kernels::retain_freed_memory();
        Self {
            model: Some(Transformer::<B>::init(cfg, 1, &Default::default())),
            optim: adamw::<B>(&TrainConfig::default()),
            data: corpus(cfg.max_seq_len),
            batch,
            step: 0,
        }
    }

    /// One step: forward, loss, backward, global clipping at 1.0, AdamW at 1e-3.
    pub(crate) fn step(&mut self) -> f32 {
        self.step += 1;
        let dev = Default::default();
        let hb = self.data.train_batch(1, self.step, self.batch);
        let (next, loss, _) = optimizer_step(
            self.model.take().expect("put back after every step"),
            &mut self.optim,
            std::slice::from_ref(&hb),
            std::slice::from_ref(&dev),
            1e-3,
            1.0,
        );
        self.model = Some(next);
        loss
    }
}
