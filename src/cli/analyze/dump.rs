//! `analyze --dump FILE.safetensors`: the first text's `input_ids` [T] i64,
//! `attentions` [L, H, T, T] f32 and `hidden_states` [L + 1, T, d] f32 (the last state
//! after the final norm, as Hugging Face's `output_hidden_states`), written layer by
//! layer as the analysis streams the maps, so a long text's dump never holds more than
//! the layers in flight (30 × 9 × 2,048² maps would be 4.5 GB at once).

use std::path::{Path, PathBuf};

use anyhow::Context;
use safetensors::Dtype;

use crate::analysis::{AttentionMaps, HiddenStates};
use crate::io::safetensors_stream::{SafetensorsStream, TensorSpec};

/// A dump being written.
pub(super) struct Dump {
    path: PathBuf,
    stream: SafetensorsStream,
    /// Layers written so far (they must come in order).
    layers: usize,
    shape: [usize; 4],
    d_model: usize,
}

impl Dump {
    /// Starts the file for a model of `layers` × `heads` and width `d_model` on `ids`.
    pub(super) fn create(
        path: &Path,
        ids: &[u32],
        layers: usize,
        heads: usize,
        d_model: usize,
    ) -> anyhow::Result<Self> {
        let t = ids.len();
        let specs = [
            TensorSpec {
                name: "input_ids",
                dtype: Dtype::I64,
                shape: vec![t],
            },
            TensorSpec {
                name: "attentions",
                dtype: Dtype::F32,
                shape: vec![layers, heads, t, t],
            },
            TensorSpec {
                name: "hidden_states",
                dtype: Dtype::F32,
                shape: vec![layers + 1, t, d_model],
            },
        ];
        let cannot = || format!("{}: cannot write", path.display());
        let mut stream = SafetensorsStream::create(path, &specs).with_context(cannot)?;
        let ids: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
        // safetensors is little-endian, as every target sinkscope builds for
        stream
            .write(bytemuck::cast_slice(&ids))
            .with_context(cannot)?;
        Ok(Self {
            path: path.to_path_buf(),
            stream,
            layers: 0,
            shape: [layers, heads, t, t],
            d_model,
        })
    }

    /// Appends the next layer's `[1, H, T, T]` maps.
    pub(super) fn layer(&mut self, layer: usize, maps: &AttentionMaps) -> anyhow::Result<()> {
        let [layers, heads, t, _] = self.shape;
        anyhow::ensure!(
            layer == self.layers && layer < layers && maps.heads() == heads && maps.seq_len() == t,
            "{}: layer {layer} ({} heads × {} tokens) does not follow layer {} of [{layers}, {heads}, {t}, {t}]",
            self.path.display(),
            maps.heads(),
            maps.seq_len(),
            self.layers as isize - 1
        );
        self.stream
            .write(bytemuck::cast_slice(maps.data()))
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.layers += 1;
        Ok(())
    }

    /// Appends the hidden states and puts the file in place.
    pub(super) fn finish(
        mut self,
        hidden: Option<&HiddenStates>,
        final_hidden: Option<&[f32]>,
    ) -> anyhow::Result<()> {
        let hidden = hidden.context("no hidden states captured")?;
        let layers = self.shape[0];
        anyhow::ensure!(
            hidden.d_model() == self.d_model && hidden.len() == layers + 1,
            "hidden states of width {} for {} states, expected {} for {}",
            hidden.d_model(),
            hidden.len(),
            self.d_model,
            layers + 1
        );
        let cannot = || format!("{}: cannot write", self.path.display());
        for i in 0..=layers {
            let state = match (final_hidden, i == layers) {
                (Some(f), true) => f,
                _ => hidden.state(i),
            };
            self.stream
                .write(bytemuck::cast_slice(state))
                .with_context(cannot)?;
        }
        self.stream.finish().with_context(cannot)
    }
}
