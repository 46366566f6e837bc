//! Model + probe inputs → captured attention maps, value-vector norms, residual stream
//! and weights as plain host arrays: the only place where burn tensors become analysis
//! inputs, used alike by training hooks, `analyze` on imported models and `ablate`.

use burn::prelude::*;
use burn::store::{ModuleSnapshot, TensorSnapshot};

use crate::analysis::{AttentionMaps, HiddenStates, ValueNorms};
use crate::error::{Error, Result};
use crate::model::{Batch, ForwardOptions, LayerTaps, SoftmaxKind, Taps, Transformer};

/// One probe sequence as the model saw it.
#[derive(Clone, Debug)]
pub struct SequenceCapture {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// `[L, H, T, T]` attention probabilities.
    pub maps: AttentionMaps,
    /// `[L, Hkv, T]` value-vector norms, if captured.
    pub values: Option<ValueNorms>,
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
        .map_err(|e| Error::Device(format!("cannot read a tensor back from the device: {e:?}")))
}

/// One layer's maps of one sequence of a batch, as [`capture_layers`] hands them out.
#[derive(Debug)]
pub struct LayerCapture {
    /// `[1, H, T, T]` maps cropped to the sequence's own length (rows renormalized for a
    /// quiet softmax).
    pub maps: AttentionMaps,
    /// `[1, Hkv, T]` norms of the value vectors, cropped alike.
    pub values: ValueNorms,
    /// Mean share of attention given to nothing before renormalizing (quiet softmax).
    pub null_mass: Option<f64>,
}

/// What [`capture_layers`] returns per sequence besides the maps.
#[derive(Debug)]
pub struct SequenceStates {
    /// `[L + 1, T, d]` residual stream, if captured.
    pub hidden: Option<HiddenStates>,
    /// `[T, d]` hidden state after the final norm, if captured.
    pub final_hidden: Option<Vec<f32>>,
}

/// Runs `model` on `sequences` as one batch (unequal lengths are right-padded and
/// masked; `pad_id` fills the padding, its value never reaches a real token) and hands
/// each layer's maps and value norms, per sequence and cropped to its length, to
/// `on_layer` as soon as the forward pass has computed them; returns the residual
/// streams (when `residuals`). An error from `on_layer` stops the handing out and is
/// returned after the pass.
pub fn capture_layers<B: Backend>(
    model: &Transformer<B>,
    sequences: &[Vec<u32>],
    pad_id: u32,
    residuals: bool,
    device: &B::Device,
    on_layer: &mut dyn FnMut(usize, Vec<LayerCapture>) -> Result<()>,
) -> Result<Vec<SequenceStates>> {
    let n = sequences.len();
    let t = sequences.iter().map(Vec::len).max().unwrap_or(0);
    if n == 0 || t == 0 {
        return Err(Error::Input("no probe tokens to analyze".into()));
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
    let (h, kv, dh, d) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim(), cfg.d_model);
    let quiet = cfg.softmax == SoftmaxKind::Quiet;
    let mut failure = None;
    let mut visit = |layer: usize, taps: LayerTaps<B>| {
        if failure.is_some() {
            return;
        }
        let host = |t: Option<Tensor<B, 4>>| {
            t.ok_or_else(|| {
                Error::Internal("the forward pass skipped a tap it was asked for".into())
            })
            .and_then(to_host)
        };
        let result = host(taps.probs).and_then(|mut probs| {
            let values = host(taps.values)?;
            let mut out = Vec::with_capacity(n);
            for (b, seq) in sequences.iter().enumerate() {
                let tb = seq.len();
                // One unpadded sequence: its maps are the whole buffer, taken rather than
                // copied (at 2,048 tokens a layer's maps are 151 MB; a copy doubled them).
                let mut maps = if n == 1 && tb == t {
                    std::mem::take(&mut probs)
                } else {
                    let mut maps = Vec::with_capacity(h * tb * tb);
                    for head in 0..h {
                        for i in 0..tb {
                            let row = ((b * h + head) * t + i) * t;
                            maps.extend_from_slice(&probs[row..row + tb]);
                        }
                    }
                    maps
                };
                let mut vectors = Vec::with_capacity(kv * tb * dh);
                for head in 0..kv {
                    let start = (b * kv + head) * t * dh;
                    vectors.extend_from_slice(&values[start..start + tb * dh]);
                }
                let null_mass = quiet.then(|| renormalize_rows(&mut maps, 1, h * tb, tb)[0]);
                out.push(LayerCapture {
                    maps: AttentionMaps::new(1, h, tb, maps).map_err(|e| e.in_layer(layer))?,
                    values: ValueNorms::from_vectors(1, kv, tb, dh, &vectors)?,
                    null_mass,
                });
            }
            drop((probs, values));
            on_layer(layer, out)
        });
        if let Err(e) = result {
            failure = Some(e);
        }
    };
    let mut taps = Taps::PROBS | Taps::VALUES;
    taps.residuals = residuals;
    let out = model.forward_visit(&batch, &ForwardOptions::capture(taps), &mut visit)?;
    if let Some(e) = failure {
        return Err(e);
    }
    let captured = out.captured;
    let states: Vec<Vec<f32>> = captured
        .residuals
        .into_iter()
        .map(to_host)
        .collect::<Result<_>>()?;
    let final_hidden = captured.final_hidden.map(to_host).transpose()?;
    sequences
        .iter()
        .enumerate()
        .map(|(b, seq)| {
            let tb = seq.len();
            let hidden = if residuals {
                let mut data = Vec::with_capacity(states.len() * tb * d);
                for s in &states {
                    data.extend_from_slice(&s[b * t * d..(b * t + tb) * d]);
                }
                Some(HiddenStates::new(states.len(), tb, d, data)?)
            } else {
                None
            };
            Ok(SequenceStates {
                hidden,
                final_hidden: final_hidden
                    .as_ref()
                    .map(|f| f[b * t * d..(b * t + tb) * d].to_vec()),
            })
        })
        .collect()
}

/// Runs `model` on `sequences` (batched; unequal lengths are right-padded and masked)
/// and returns each sequence's maps and value norms cropped to its own length, every
/// layer at once (see [`capture_layers`] for one layer at a time). `pad_id` fills the padding (its value
/// never reaches a real token: padded keys are masked out).
pub fn capture<B: Backend>(
    model: &Transformer<B>,
    sequences: &[Vec<u32>],
    pad_id: u32,
    residuals: bool,
    device: &B::Device,
) -> Result<Vec<SequenceCapture>> {
    let mut layers: Vec<Vec<LayerCapture>> = Vec::new();
    let states = capture_layers(model, sequences, pad_id, residuals, device, &mut |_, l| {
        layers.push(l);
        Ok(())
    })?;
    let mut per_seq: Vec<Vec<LayerCapture>> = sequences.iter().map(|_| Vec::new()).collect();
    for layer in layers {
        for (b, c) in layer.into_iter().enumerate() {
            per_seq[b].push(c);
        }
    }
    let quiet = model.config.softmax == SoftmaxKind::Quiet;
    sequences
        .iter()
        .zip(per_seq)
        .zip(states)
        .map(|((seq, layers), st)| {
            let null_mass = quiet.then(|| layers.iter().filter_map(|c| c.null_mass).collect());
            let (maps, values): (Vec<_>, Vec<_>) =
                layers.into_iter().map(|c| (c.maps, c.values)).unzip();
            Ok(SequenceCapture {
                tokens: seq.clone(),
                maps: AttentionMaps::stack(maps)?,
                values: Some(ValueNorms::stack(values)?),
                hidden: st.hidden,
                final_hidden: st.final_hidden,
                null_mass,
            })
        })
        .collect()
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

/// The 2-D weights among `snapshots` on the host, named `{prefix}{path}` without
/// `.weight`.
fn matrices(snapshots: Vec<TensorSnapshot>, prefix: &str) -> Result<Vec<NamedMatrix>> {
    let mut out = Vec::new();
    for snap in snapshots {
        let shape = snap.shape.to_vec();
        if shape.len() != 2 {
            continue;
        }
        let path = format!("{prefix}{}", snap.full_path());
        let data = snap
            .to_data()
            .map_err(|e| Error::Device(format!("cannot read weight {path}: {e:?}")))?
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::Device(format!("cannot read weight {path}: {e:?}")))?;
        out.push(NamedMatrix {
            name: path.strip_suffix(".weight").unwrap_or(&path).to_string(),
            rows: shape[0],
            cols: shape[1],
            data,
        });
    }
    Ok(out)
}

/// Parameters that come before the blocks in the model's order (embeddings, position
/// table, segment embeddings), by name prefix.
const BEFORE_BLOCKS: [&str; 3] = ["embed", "position", "token_type"];

/// Every 2-D weight of `model` on the host, named by its parameter path, handed to `each`
/// one group at a time in the model's order: the weights before the blocks, each block
/// (read from storage and dropped after for a model whose blocks are read on demand),
/// then those after (head). Host memory holds one group, not the model.
pub fn visit_weight_matrices<B: Backend>(
    model: &Transformer<B>,
    each: &mut dyn FnMut(Vec<NamedMatrix>) -> Result<()>,
) -> Result<()> {
    let outside: Vec<TensorSnapshot> = model
        .collect(None, None, false)
        .into_iter()
        .filter(|s| !s.full_path().starts_with("blocks."))
        .collect();
    let (before, after): (Vec<NamedMatrix>, Vec<NamedMatrix>) = matrices(outside, "")?
        .into_iter()
        .partition(|m| BEFORE_BLOCKS.iter().any(|p| m.name.starts_with(p)));
    each(before)?;
    let device = model.embed.weight.device();
    for layer in 0..model.config.n_layers {
        let block = model.block(layer, &device)?;
        each(matrices(
            block.collect(None, None, false),
            &format!("blocks.{layer}."),
        )?)?;
    }
    each(after)
}

/// Every 2-D weight of `model` on the host, named by its parameter path.
pub fn weight_matrices<B: Backend>(model: &Transformer<B>) -> Result<Vec<NamedMatrix>> {
    let mut out = Vec::new();
    visit_weight_matrices(model, &mut |group| {
        out.extend(group);
        Ok(())
    })?;
    Ok(out)
}
