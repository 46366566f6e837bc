//! Model + probe inputs → captured attention maps, residual stream and weights as
//! plain host arrays: the only place where burn tensors become analysis inputs, used
//! alike by training hooks, `analyze` on imported models and `ablate`.

use burn::prelude::*;
use burn::store::ModuleSnapshot;

use crate::analysis::{AttentionMaps, HiddenStates};
use crate::error::{Error, Result};
use crate::model::{Batch, ForwardOptions, SoftmaxKind, Transformer};

/// One probe sequence as the model saw it.
#[derive(Clone, Debug)]
pub struct SequenceCapture {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// `[L, H, T, T]` attention probabilities.
    pub maps: AttentionMaps,
    /// `[L + 1, T, d]` residual stream (embeddings output first), if captured.
    pub hidden: Option<HiddenStates>,
    /// `[T, d]` hidden state after the final norm, if captured.
    pub final_hidden: Option<Vec<f32>>,
    /// Per layer, mean share of attention a quiet-softmax head gave to nothing
    /// (1 − row sum) before the rows were renormalised for analysis. None for the
    /// standard softmax.
    pub null_mass: Option<Vec<f64>>,
}

/// A named 2-D weight matrix on the host (for weight spectra).
#[derive(Clone, Debug)]
pub struct NamedMatrix {
    /// Parameter name without `.weight` (`blocks.2.attn.q`).
    pub name: String,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row-major values.
    pub data: Vec<f32>,
}

fn to_host<const D: usize, B: Backend>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| Error::Other(format!("cannot read a tensor back from the device: {e:?}")))
}

/// Runs `model` on `sequences` (batched; unequal lengths are right-padded and masked)
/// and returns each sequence's maps cropped to its own length. `pad_id` fills the
/// padding (its value never reaches a real token: padded keys are masked out).
pub fn capture<B: Backend>(
    model: &Transformer<B>,
    sequences: &[Vec<u32>],
    pad_id: u32,
    residuals: bool,
    device: &B::Device,
) -> Result<Vec<SequenceCapture>> {
    let n = sequences.len();
    let t = sequences.iter().map(Vec::len).max().unwrap_or(0);
    if n == 0 || t == 0 {
        return Err(Error::Other("no probe tokens to analyze".into()));
    }
    let cfg = &model.config;
    let mut ids = Vec::with_capacity(n * t);
    let mut pad = Vec::with_capacity(n * t);
    for s in sequences {
        ids.extend(s.iter().map(|&x| x as i64));
        ids.extend(std::iter::repeat_n(pad_id as i64, t - s.len()));
        pad.extend((0..t).map(|i| i >= s.len()));
    }
    let padded = sequences.iter().any(|s| s.len() < t);
    let batch = Batch {
        ids: Tensor::from_data(TensorData::new(ids, [n, t]), device),
        padding: padded.then(|| Tensor::from_data(TensorData::new(pad, [n, t]), device)),
    };
    let out = model.forward(
        &batch,
        &ForwardOptions {
            attentions: true,
            residuals,
            ablation: None,
        },
    );
    let (l, h, d) = (cfg.n_layers, cfg.n_heads, cfg.d_model);
    let layers: Vec<Vec<f32>> = out
        .attentions
        .into_iter()
        .map(to_host)
        .collect::<Result<_>>()?;
    let states: Vec<Vec<f32>> = out
        .residuals
        .into_iter()
        .map(to_host)
        .collect::<Result<_>>()?;
    let final_hidden = out.final_hidden.map(to_host).transpose()?;

    let mut result = Vec::with_capacity(n);
    for (b, seq) in sequences.iter().enumerate() {
        let tb = seq.len();
        let mut maps = Vec::with_capacity(l * h * tb * tb);
        for layer in &layers {
            for head in 0..h {
                for i in 0..tb {
                    let row = ((b * h + head) * t + i) * t;
                    maps.extend_from_slice(&layer[row..row + tb]);
                }
            }
        }
        let null_mass =
            (cfg.softmax == SoftmaxKind::Quiet).then(|| renormalize_rows(&mut maps, l, h * tb, tb));
        let hidden = if residuals {
            let mut data = Vec::with_capacity((l + 1) * tb * d);
            for s in &states {
                data.extend_from_slice(&s[b * t * d..(b * t + tb) * d]);
            }
            Some(HiddenStates::new(l + 1, tb, d, data)?)
        } else {
            None
        };
        result.push(SequenceCapture {
            tokens: seq.clone(),
            maps: AttentionMaps::new(l, h, tb, maps)?,
            hidden,
            final_hidden: final_hidden
                .as_ref()
                .map(|f| f[b * t * d..(b * t + tb) * d].to_vec()),
            null_mass,
        });
    }
    Ok(result)
}

/// Scales every row to sum 1; returns the mean missing mass per layer.
fn renormalize_rows(maps: &mut [f32], layers: usize, rows_per_layer: usize, t: usize) -> Vec<f64> {
    let mut missing = vec![0.0; layers];
    for (r, row) in maps.chunks_mut(t).enumerate() {
        let sum: f32 = row.iter().sum();
        missing[r / rows_per_layer] += (1.0 - sum as f64) / rows_per_layer as f64;
        if sum > 0.0 {
            row.iter_mut().for_each(|x| *x /= sum);
        }
    }
    missing
}

/// Every 2-D weight of `model` on the host, named by its parameter path.
pub fn weight_matrices<B: Backend>(model: &Transformer<B>) -> Result<Vec<NamedMatrix>> {
    let mut out = Vec::new();
    for snap in model.collect(None, None, false) {
        let shape = snap.shape.to_vec();
        if shape.len() != 2 {
            continue;
        }
        let path = snap.full_path();
        let data = snap
            .to_data()
            .map_err(|e| Error::Other(format!("cannot read weight {path}: {e:?}")))?
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::Other(format!("cannot read weight {path}: {e:?}")))?;
        out.push(NamedMatrix {
            name: path.strip_suffix(".weight").unwrap_or(&path).to_string(),
            rows: shape[0],
            cols: shape[1],
            data,
        });
    }
    Ok(out)
}
