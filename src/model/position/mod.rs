//! Position encodings, each written once: absolute tables (learned, sinusoidal) added
//! to the embeddings, rotary applied to q and k, ALiBi added to the scores, or none.

pub mod absolute;
pub mod alibi;
pub mod rope;

use burn::module::Param;
use burn::prelude::*;

use crate::model::config::{ModelConfig, PositionKind};
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
    pub fn init(cfg: &ModelConfig, std: f64, init: &mut Init<B>) -> Self {
        let table = (cfg.position.kind == PositionKind::Learned).then(|| {
            let rows = cfg.max_seq_len + cfg.position.offset;
            init.normal([rows, cfg.d_model], std)
        });
        Self { table }
    }

    /// The tables for a sequence of `seq_len` tokens.
    pub fn context(
        &self,
        cfg: &ModelConfig,
        seq_len: usize,
        device: &B::Device,
    ) -> PositionContext<B> {
        let pos = &cfg.position;
        let absolute = match pos.kind {
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
        };
        let rotary = pos
            .is_rotary()
            .then(|| Rotary::new(pos, cfg.rotary_dim(), seq_len, device));
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
            absolute,
            rotary,
            score_bias,
        }
    }
}
