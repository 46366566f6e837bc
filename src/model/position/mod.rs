//! Position encodings, each written once: absolute tables (learned, sinusoidal) added
//! to the embeddings, rotary applied to q and k, ALiBi added to the scores, or none.

pub mod absolute;
pub mod alibi;
pub mod rope;

use burn::module::Param;
use burn::prelude::*;

use crate::model::config::{ModelConfig, PositionConfig, PositionKind};
use crate::model::init::Init;
pub use rope::{Rotary, RowRotation};

/// Parameters owned by the position encoding: only the learned table has any.
#[derive(Module, Debug)]
pub struct PositionEmbedding<B: Backend> {
    /// Learned absolute table `[max_seq_len + offset, d_model]` (None for other kinds).
    pub table: Option<Param<Tensor<B, 2>>>,
}

/// What one forward pass needs from the position encoding, computed once and shared
/// by every layer.
#[derive(Clone, Debug)]
pub struct PositionContext<B: Backend> {
    /// Added to the token embeddings `[T, d]`.
    pub absolute: Option<Tensor<B, 2>>,
    /// Rotation of q and k.
    pub rotary: Option<Rotary<B>>,
    /// Added to the scores `[H, T, T]` (ALiBi).
    pub score_bias: Option<Tensor<B, 3>>,
}

impl<B: Backend> PositionEmbedding<B> {
    /// A fresh (for learned: N(0, std²)) encoding for `cfg`.
    pub fn init(cfg: &ModelConfig, std: f64, init: &mut Init<'_, B>) -> Self {
        let table = (cfg.position.kind == PositionKind::Learned).then(|| {
            let rows = cfg.max_seq_len + cfg.position.offset;
            init.normal([rows, cfg.d_model], std)
        });
        Self { table }
    }

    /// The tables for a sequence of `seq_len` tokens under the model's own position
    /// encoding (layer overrides aside).
    pub fn context(
        &self,
        cfg: &ModelConfig,
        seq_len: usize,
        device: &B::Device,
    ) -> PositionContext<B> {
        PositionContext {
            absolute: self.absolute(cfg, seq_len, device),
            ..layer_context(cfg, &cfg.position, seq_len, device)
        }
    }

    /// The absolute table added to the token embeddings `[T, d]`, if the model has one.
    pub fn absolute(
        &self,
        cfg: &ModelConfig,
        seq_len: usize,
        device: &B::Device,
    ) -> Option<Tensor<B, 2>> {
        let pos = &cfg.position;
        match pos.kind {
            PositionKind::Learned => self
                .table
                .as_ref()
                .map(|t| t.val().narrow(0, pos.offset, seq_len)),
            PositionKind::Sinusoidal => Some(Tensor::from_data(
                TensorData::new(
                    absolute::sinusoidal_table(seq_len, cfg.d_model, pos.offset),
                    [seq_len, cfg.d_model],
                ),
                device,
            )),
            _ => None,
        }
    }
}

/// What a layer encoding positions with `pos` needs inside attention (rotation, ALiBi
/// bias) for `seq_len` tokens; `absolute` is left empty.
pub fn layer_context<B: Backend>(
    cfg: &ModelConfig,
    pos: &PositionConfig,
    seq_len: usize,
    device: &B::Device,
) -> PositionContext<B> {
    let rotary = pos
        .is_rotary()
        .then(|| Rotary::new(pos, cfg.rotary_dim_of(pos), seq_len, device));
    let score_bias = (pos.kind == PositionKind::Alibi).then(|| {
        Tensor::from_data(
            TensorData::new(
                alibi::bias(cfg.n_heads, seq_len),
                [cfg.n_heads, seq_len, seq_len],
            ),
            device,
        )
    });
    PositionContext {
        absolute: None,
        rotary,
        score_bias,
    }
}
